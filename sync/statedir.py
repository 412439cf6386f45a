"""The folder where adapters keep private files (the Zoho token cache), checked before use.

A folder that group or others may write to lets another local user plant or swap files in
it (a symlink where the token cache goes), so it is never used:

- ``sync.state_dir`` set explicitly: the configuration is refused (``sync.config`` asks
  ``unsafe_reason``), naming the folder and the fix;
- otherwise the default candidate, the SQLite mirror's folder (``default``): skipped with a
  warning; there is no further candidate, so adapters run without private files (a Zoho
  connection then mints its access token once per run instead of reusing a cached one).

A folder that does not exist yet is accepted: it is created private when first needed.
"""

from __future__ import annotations

import logging
import stat
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


_warned: set[Path] = set()
