"""The Zoho access token: masked once minted, cached through an unpredictable private file."""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

import pytest

from sync import redact
from sync.redact import Redactor
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from tests.vendors.conftest import MakeAdapter, ZohoVendor


@pytest.fixture
def fresh_redactor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_current", Redactor())
    monkeypatch.setattr(redact, "_minted", deque(maxlen=redact.MINTED_KEPT))


@pytest.fixture
def vendor(zoho_emulator: ZohoDeskEmulator) -> ZohoVendor:
    return ZohoVendor(zoho_emulator)


def _cached_token(tmp_path: Path) -> str:
    return str(json.loads((tmp_path / "zoho-zoho-test.token.json").read_text())["access_token"])


async def test_a_minted_token_is_masked_from_then_on(
    make_zoho: MakeAdapter, vendor: ZohoVendor, tmp_path: Path, fresh_redactor: None
) -> None:
    await make_zoho().get(vendor.seed())
    token = _cached_token(tmp_path)
    assert redact.current().redact(f"echoed {token} back") == "echoed *** back"


async def test_a_cached_token_is_masked_in_the_next_process(
    make_zoho: MakeAdapter, vendor: ZohoVendor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    external_id = vendor.seed()
    await make_zoho().get(external_id)
    monkeypatch.setattr(redact, "_current", Redactor())  # as a new process starts
    monkeypatch.setattr(redact, "_minted", deque(maxlen=redact.MINTED_KEPT))
    await make_zoho().get(external_id)
    token = _cached_token(tmp_path)
    assert token not in redact.current().redact(token)


async def test_cache_temp_file_never_follows_a_planted_symlink(
    make_zoho: MakeAdapter, vendor: ZohoVendor, tmp_path: Path
) -> None:
    target = tmp_path / "victim"
    target.write_text("untouched")
    for pid in range(os.getpid() - 5, os.getpid() + 5):  # the names a guessable scheme used
        (tmp_path / f".zoho-zoho-test.token.json.{pid}.tmp").symlink_to(target)
    await make_zoho().get(vendor.seed())
    assert target.read_text() == "untouched"
    cache = tmp_path / "zoho-zoho-test.token.json"
    assert not cache.is_symlink() and _cached_token(tmp_path)
    assert not [p for p in tmp_path.glob(".zoho-*.tmp") if not p.is_symlink()]
