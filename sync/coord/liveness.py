"""Liveness on PostgreSQL: one session-level advisory lock (docs/architecture.md §8.4).

While an instance holds leases it keeps one dedicated database session holding
``pg_advisory_lock(key)``, with a random ``key`` written into its lease and instance rows
(``lock_key``). When the process dies, however it dies, its session ends and the server
drops the lock at once: the other instances read ``pg_locks`` (never try-lock and unlock)
and may take its leases without waiting for them to expire, raising the generation, so
fencing still stops a holder that only lost its database connection.

- The session is pinged every ``PING_SECONDS``; a failed ping loses every lease of the
  instance (``on_lost``), since another instance may now take them at once.
- ``fresh()``: the last successful ping is less than ``FRESH_SECONDS`` old. ``before_send``
  requires it as well as the lease deadline.
- A paused or partitioned holder keeps its lock (the server does not notice a silent peer
  until TCP keepalive gives up), so lease expiry stays the authority there.
- Behind transaction pooling (pgbouncer in transaction mode) a session cannot be kept:
  ``pg_backend_pid()`` differs between two statements. Then no lock is taken,
  ``key`` is None (``lock_key`` NULL) and only lease expiry counts, as ``pooled`` tells.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection

from sync.db import Mirror

log = logging.getLogger("sync.liveness")

PING_SECONDS = 0.5
FRESH_SECONDS = 1.0

#: True when the instance whose row holds ``lock_key`` still holds its lock; SQL for the
#: WHERE clause of the lease and instance queries (alias ``{t}``).
LIVE_SQL = """(
    {t}.lock_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_locks k
        WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
          AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND k.classid = (({t}.lock_key >> 32) & 4294967295)::oid
          AND k.objid = ({t}.lock_key & 4294967295)::oid
    )
)"""


def live_sql(alias: str) -> str:
    """``LIVE_SQL`` for the table alias ``alias``."""
    return LIVE_SQL.format(t=alias)


class Liveness:
    """This instance's liveness lock and its pings.

    ``start()`` opens the session and takes the lock (or finds transaction pooling);
    ``key`` is what lease rows record. ``ping()`` checks the session; after a failed one,
    ``lost`` is True, every ``on_lost`` callback has run, and ``start()`` must run again
    (with a new key) before leases are taken again. ``stop()`` ends the session.
    """

    def __init__(
        self,
        mirror: Mirror,
        *,
        clock: Callable[[], float] = time.monotonic,
        ping_seconds: float = PING_SECONDS,
        fresh_seconds: float = FRESH_SECONDS,
    ) -> None:
        self.mirror = mirror
        self.clock = clock
        self.ping_seconds = ping_seconds
        self.fresh_seconds = fresh_seconds
        self.key: int | None = None
        self.pooled = False
        self.lost = False
        self._conn: Connection | None = None
        self._pid: int | None = None
        self._last_ok = float("-inf")
        self._lock = threading.Lock()
        self._on_lost: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._conn is not None or self.pooled

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a ping fails (the leases it guards are lost)."""
        self._on_lost.append(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._on_lost.remove(callback)

    def start(self) -> None:
        """Open the session and take the lock, unless running already (idempotent)."""
        with self._lock:
            if self.running and not self.lost:
                return
            self._close()
            conn = self.mirror.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                if first != second:
                    conn.close()
                    self.pooled, self.key, self.lost = True, None, False
                    log.warning(
                        "the database connection is pooled per transaction: a session lock "
                        "cannot be held, so a dead instance's leases move only on expiry"
                    )
                    return
                key = secrets.randbits(63) * (1 if secrets.randbits(1) else -1)
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            except Exception:
                conn.invalidate()
                conn.close()
                raise
            self._conn, self._pid, self.key = conn, int(first), key
            self.pooled, self.lost = False, False
            self._last_ok = self.clock()

    def ping(self) -> bool:
        """One ping of the session; False (and the leases lost) when it failed."""
        with self._lock:
            if self.pooled:
                return True
            if self._conn is None or self.lost:
                return False
            started = self.clock()
            try:
                pid = self._conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                ok = pid == self._pid
            except Exception as exc:
                log.warning("liveness ping failed: %s", str(exc).splitlines()[0])
                ok = False
            if ok:
                self._last_ok = started
                return True
            self.lost = True
            self._close()
            callbacks = list(self._on_lost)
        log.warning("liveness session lost: every lease of this instance is lost")
        for callback in callbacks:
            callback()
        return False

    def fresh(self) -> bool:
        """A successful ping is less than ``fresh_seconds`` old (always, when pooled)."""
        if self.pooled:
            return True
        return not self.lost and self.clock() - self._last_ok < self.fresh_seconds

    def ensure_fresh(self) -> bool:
        """``fresh()``, pinging once first when the last ping is too old."""
        return self.fresh() or (self.ping() and self.fresh())

    def start_pinging(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._pings())

    async def stop(self) -> None:
        """Stop pinging and end the session (the lock goes with it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        with self._lock:
            self._close()
            self.pooled = False

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()  # closes the session itself: no pooled lock lives on
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            self._pid = None

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self.ping_seconds)
            if self._conn is not None and not self.lost:
                await asyncio.to_thread(self.ping)


def pooled(mirror: Mirror) -> bool:
    """True when one connection's statements run on different server sessions
    (transaction pooling): session locks cannot be held there."""
    with mirror.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        pids = {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for _ in range(3)}
    return len(pids) > 1


def failover(database_url: str) -> str | None:
    """How a dead instance's leases move, for ``check``; None off PostgreSQL."""
    mirror = Mirror(database_url)
    try:
        if mirror.dialect != "postgresql":
            return None
        try:
            is_pooled = pooled(mirror)
        except Exception as exc:
            return f"unknown (database unreachable: {str(exc).splitlines()[0]})"
    finally:
        mirror.dispose()
    if is_pooled:
        return (
            "on lease expiry only: the connection is pooled per transaction (pgbouncer in "
            "transaction mode?), so instances cannot hold liveness locks"
        )
    return "at once when an instance dies (liveness locks); on lease expiry when it hangs"
