"""The folder where adapters keep private files (the Zoho token cache), checked before use.

A folder that group or others may write to lets another local user plant or swap files in
it (a symlink where the token cache goes), so it is never used:

- ``sync.state_dir`` set explicitly: the configuration is refused (``sync.config`` asks
  ``unsafe_reason``), naming the folder and the fix;
- otherwise the default candidates (``resolve``), in order: ``$STATE_DIRECTORY`` (systemd's
  first state folder), the SQLite mirror's folder, the user's state folder
  (``$XDG_STATE_HOME/ticketsync``, else ``~/.local/state/ticketsync``, created 0700). An
  unsafe candidate is skipped with a warning (``default``) and the next one is tried, so a
  PostgreSQL mirror keeps its Zoho token across runs too. Only when every candidate fails do
  adapters run without private files (a Zoho connection then mints its access token once
  per run instead of reusing a cached one).

A folder that does not exist yet is accepted: it is created private when first needed.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("sync.statedir")


def unsafe_reason(folder: Path) -> str | None:
    """Why ``folder`` may not hold private files, or None when it may (or does not exist)."""
    try:
        mode = folder.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect it ({exc.strerror or exc})"
    if not stat.S_ISDIR(mode):
        return "it is not a folder"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"group or others can write to it (mode {stat.S_IMODE(mode):o})"
    return None


def default(folder: Path) -> Path | None:
    """``folder`` (the default candidate) when safe; else None, with one warning per folder."""
    reason = unsafe_reason(folder)
    if reason is None:
        return folder
    if folder not in _warned:
        _warned.add(folder)
        log.warning(
            "not keeping private files (token caches) in %s: %s; set sync.state_dir to a "
            "private folder",
            folder,
            reason,
        )
    return None


def resolve(
    explicit: Path | None,
    sqlite_path: Path | None,
    env: Mapping[str, str] | None = None,
) -> Path | None:
    """The state folder: ``sync.state_dir`` when set, else the first safe default candidate
    (``$STATE_DIRECTORY``, the SQLite file's folder, the user's state folder); None when
    none is safe."""
    if explicit is not None:
        return explicit
    env = os.environ if env is None else env
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd and (found := default(Path(systemd))) is not None:
        return found
    if sqlite_path is not None and (found := default(sqlite_path.parent)) is not None:
        return found
    return _user_folder(env)


def user_state_folder(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/ticketsync`` (an absolute one), else ``~/.local/state/ticketsync``."""
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "ticketsync"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "ticketsync"


def _user_folder(env: Mapping[str, str]) -> Path | None:
    folder = user_state_folder(env)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        if folder not in _warned:
            _warned.add(folder)
            log.warning("cannot create the state folder %s: %s", folder, exc.strerror or exc)
        return None
    return default(folder)


_warned: set[Path] = set()
