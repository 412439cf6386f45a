"""A state folder that group or others can write to never holds private files."""

from __future__ import annotations

import logging
import stat
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


def test_runner_uses_no_writable_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync.db import Mirror
    from sync.runner import state_dir

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    config = parse_config(
        {"connections": {"m": {"vendor": "memory", "base_url": "http://127.0.0.1:9"}}}
    )
    mirror = Mirror(f"sqlite:///{folder / 'mirror.db'}")
    # the writable folder is skipped: the next candidate, the user's state folder, is used
    assert state_dir(config, mirror) == tmp_path / "xdg" / "ticketsync"
    folder.chmod(0o700)
    assert state_dir(config, mirror) == folder


def test_default_candidates_fall_back_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statedir, "_warned", set())
    systemd, sqlite, xdg = tmp_path / "systemd", tmp_path / "db", tmp_path / "xdg"
    for folder in (systemd, sqlite):
        folder.mkdir(mode=0o700)
    env = {"STATE_DIRECTORY": f"{systemd}:/elsewhere", "XDG_STATE_HOME": str(xdg)}
    assert statedir.resolve(tmp_path / "set", sqlite / "m.db", env) == tmp_path / "set"
    assert statedir.resolve(None, sqlite / "m.db", env) == systemd
    systemd.chmod(0o777)  # unsafe: falls through to the SQLite file's folder
    assert statedir.resolve(None, sqlite / "m.db", env) == sqlite
    # PostgreSQL (no SQLite file): the user's state folder, created private
    assert statedir.resolve(None, None, {"XDG_STATE_HOME": str(xdg)}) == xdg / "ticketsync"
    assert stat.S_IMODE((xdg / "ticketsync").stat().st_mode) == 0o700
    home = {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": "relative"}
    assert statedir.user_state_folder(home) == tmp_path / "home/.local/state/ticketsync"
