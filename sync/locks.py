"""Locks that keep two instances from syncing the same connection at once (§7.3).

SQLite: one daemon per database file. ``InstanceLock`` is an ``flock`` on
``<database>.lock``; the holder writes who it is into the file, so ``status`` can name
it. The kernel releases the lock when the process dies, however it dies.

PostgreSQL: ``ConnectionLock`` is a session-level advisory lock per connection, held on a
connection of its own for the run; a dead instance's lock goes with its session.
(Leases with fencing for several instances are the scale-out issue's.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, text

from sync.db import Mirror
from sync.errors import LockHeld


class InstanceLock:
    """An exclusive, non-blocking lock on a SQLite mirror, for the life of a process."""

    def __init__(self, database: Path, role: str) -> None:
        self.path = database.with_name(database.name + ".lock")
        self.role = role
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")  # noqa: SIM115  (held open for the process's life)
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


class ConnectionLock:
    """A PostgreSQL advisory lock on one connection's name; ``try_acquire`` never waits."""

    def __init__(self, mirror: Mirror, name: str) -> None:
        self.mirror = mirror
        self.key = zlib.crc32(f"ticketsync:{name}".encode())
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        conn = self.mirror.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        conn.commit()
        if got:
            self._conn = conn
        else:
            conn.close()
        return bool(got)

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._conn.commit()
            self._conn.close()
            self._conn = None
