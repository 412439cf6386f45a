"""SIGHUP: the reloaded configuration's secrets are masked, and so are the ones it replaced."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import redact
from sync.config import load_config
from sync.daemon.service import Service
from sync.db import Mirror, migrate
from sync.redact import RedactingFilter, Redactor

CONFIG = """\
database: {{url: "sqlite:///{db}"}}
connections:
  kap:
    vendor: kapture
    base_url: https://acme.kapturecrm.com/
    credentials: {{token: "{token}"}}
"""
OLD, NEW = "SENTINEL-old-token-5a1", "SENTINEL-new-token-9c2"


@pytest.fixture(autouse=True)
def _no_lasting_filters() -> Iterator[None]:
    """A reload installs the redacting filter on the root handlers; take it off again, so
    later tests in this process see their log records as logged (exc_info included)."""
    yield
    for handler in logging.getLogger().handlers:
        for installed in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(installed)


async def test_reload_masks_old_and_new_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "m.db", token=OLD))
    path.chmod(0o600)
    config = load_config(path)
    monkeypatch.setattr(redact, "_current", Redactor(config.secrets()))
    monkeypatch.setattr(redact, "_minted", deque(maxlen=redact.MINTED_KEPT))
    mirror = Mirror(config.database.url)
    migrate(mirror)
    service = Service(mirror, config, ["kap"], path)
    try:
        path.write_text(CONFIG.format(db=tmp_path / "m.db", token=NEW))
        service._on_reload()
        assert service.config.connections["kap"].credential("token") == NEW
        assert redact.current().redact(f"{OLD} {NEW}") == "*** ***"
    finally:
        mirror.dispose()
