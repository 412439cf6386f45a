"""A state folder that group or others can write to never holds private files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sync import statedir
from sync.config import parse_config
from sync.errors import ConfigError


def _config(state_dir: Path) -> dict[str, object]:
    return {
        "sync": {"state_dir": str(state_dir)},
        "connections": {
            "m": {"vendor": "memory", "base_url": "http://127.0.0.1:9"},
        },
    }


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_an_explicit_writable_state_dir_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(ConfigError, match=r"sync\.state_dir: .*group or others can write"):
        parse_config(_config(folder))


@pytest.mark.parametrize("exists", [True, False])
def test_a_private_or_missing_state_dir_is_accepted(tmp_path: Path, exists: bool) -> None:
    folder = tmp_path / "state"
    if exists:
        folder.mkdir(mode=0o755)
    assert parse_config(_config(folder)).sync.state_dir == folder


def test_a_writable_default_folder_falls_through_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statedir, "_warned", set())
    tmp_path.chmod(0o777)
    with caplog.at_level(logging.WARNING, "sync.statedir"):
        assert statedir.default(tmp_path) is None
        assert statedir.default(tmp_path) is None
    assert len(caplog.records) == 1
    assert str(tmp_path) in caplog.records[0].getMessage()
    tmp_path.chmod(0o700)
    assert statedir.default(tmp_path) == tmp_path


def test_runner_uses_no_writable_default_folder(tmp_path: Path) -> None:
    from sync.db import Mirror
    from sync.runner import state_dir

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    config = parse_config(
        {"connections": {"m": {"vendor": "memory", "base_url": "http://127.0.0.1:9"}}}
    )
    mirror = Mirror(f"sqlite:///{folder / 'mirror.db'}")
    assert state_dir(config, mirror) is None
    folder.chmod(0o700)
    assert state_dir(config, mirror) == folder
