"""Locks that keep two instances from syncing the same connection at once (docs/architecture.md
§7.3).

SQLite: one daemon per database file. ``InstanceLock`` is an ``flock`` on
``<database>.lock``; the holder writes who it is into the file, so ``status`` can name
it. The kernel releases the lock when the process dies, however it dies. The lock file
takes the database file's mode (``database.file_mode``), never a umask-widened one.

PostgreSQL: several instances may share the database; each connection's run holds a lease
with fencing instead (``sync.coord.lease``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sync.db import Mirror
from sync.db.engine import private_file, side_file_mode
from sync.errors import LockHeld


class InstanceLock:
    """An exclusive, non-blocking lock on a SQLite mirror, for the life of a process."""

    def __init__(self, database: Path, role: str) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self.role = role
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        fd = private_file(self.path, side_file_mode(self.database), os.O_RDWR | os.O_APPEND)
        handle = open(fd, "a+")  # noqa: SIM115  (held open for the process's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            holder = read_holder(self.path)
            who = f" ({holder['role']} pid {holder['pid']} on {holder['host']})" if holder else ""
            raise LockHeld(
                f"another ticketsync instance{who} holds {self.path}; "
                "stop it, or wait for its run to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder(self.role)))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(lock_path: Path) -> dict[str, Any] | None:
    """Who holds the SQLite lock file, or None when nobody does."""
    try:
        handle = open(lock_path)  # noqa: SIM115  (closed by the with below)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                data = json.loads(handle.read() or "null")
            except ValueError:
                return {"instance": None, "host": None, "pid": None, "since": None, "role": "?"}
            return data if isinstance(data, dict) else None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _holder(role: str) -> dict[str, Any]:
    host = socket.gethostname()
    return {
        "instance": f"{host}:{os.getpid()}",
        "host": host,
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(),
        "role": role,
    }


def instance_lock(mirror: Mirror, role: str) -> InstanceLock | None:
    """The file lock of a ``role`` on an SQLite mirror; None on PostgreSQL (leases instead)."""
    path = mirror.sqlite_path
    return InstanceLock(path, role) if path is not None else None
