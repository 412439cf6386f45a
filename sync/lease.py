"""Leases on PostgreSQL: at most one instance syncs a connection, with fencing (§3.4, §7.3).

A lease is a row of ``sync_leases``. ``acquire`` takes it in one statement when it is free,
expired, or already ours; a takeover raises ``generation``. The holder renews it in the
background (every third of ``sync.lease_seconds``); an instance that dies simply stops
renewing, and another takes the connection over once the lease has expired.

Fencing, so a paused instance that wakes up after a takeover cannot do harm:

- ``before_commit(session)`` runs inside every write transaction of a run: it locks the
  lease row (``FOR SHARE``) and checks that the generation is still ours and unexpired in
  database time. A takeover's UPDATE waits for that lock, so no commit of the old holder
  can land after the new holder has started;
- ``before_send()`` runs right before every vendor write: on the monotonic clock, the lease
  must have more left than one HTTP call may take (its total timeout), else it is renewed
  first, and a lease that cannot be renewed stops the run before the write.

Expiry is judged in database time (``now()``), so the instances' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from sync.db import Mirror
from sync.errors import LeaseLost

log = logging.getLogger("sync.lease")

_ACQUIRE = text(
    """
    INSERT INTO sync_leases (connection, instance, host, pid, generation, acquired_at,
                             expires_at)
    VALUES (:c, :i, :h, :p, 1, now(), now() + :ttl)
    ON CONFLICT (connection) DO UPDATE SET
        instance = EXCLUDED.instance,
        host = EXCLUDED.host,
        pid = EXCLUDED.pid,
        generation = sync_leases.generation
            + CASE WHEN sync_leases.instance = EXCLUDED.instance THEN 0 ELSE 1 END,
        acquired_at = CASE WHEN sync_leases.instance = EXCLUDED.instance
            THEN sync_leases.acquired_at ELSE now() END,
        expires_at = EXCLUDED.expires_at
    WHERE sync_leases.expires_at < now() OR sync_leases.instance = EXCLUDED.instance
    RETURNING generation
    """
)
_RENEW = text(
    "UPDATE sync_leases SET expires_at = now() + :ttl "
    "WHERE connection = :c AND instance = :i AND generation = :g AND expires_at > now() "
    "RETURNING generation"
)
_FENCE = text(
    "SELECT generation FROM sync_leases "
    "WHERE connection = :c AND instance = :i AND generation = :g AND expires_at > now() "
    "FOR SHARE"
)
_RELEASE = text(
    "UPDATE sync_leases SET expires_at = now() "
    "WHERE connection = :c AND instance = :i AND generation = :g"
)

#: This process's identity in lease rows: host, pid and a random part (pids are reused).
INSTANCE = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Lease:
    """One connection's lease, held by this process."""

    def __init__(
        self,
        mirror: Mirror,
        connection: str,
        seconds: float,
        *,
        instance: str = INSTANCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mirror = mirror
        self.connection = connection
        self.seconds = seconds
        self.instance = instance
        self.clock = clock
        self.generation: int | None = None
        self._deadline = 0.0
        self._heartbeat: asyncio.Task[None] | None = None

    def _params(self) -> dict[str, object]:
        return {
            "c": self.connection,
            "i": self.instance,
            "g": self.generation,
            "ttl": timedelta(seconds=self.seconds),
        }

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or ours; False when another instance holds it."""
        started = self.clock()
        with self.mirror.engine.begin() as conn:
            generation = conn.execute(
                _ACQUIRE, {**self._params(), "h": socket.gethostname(), "p": os.getpid()}
            ).scalar()
        if generation is None:
            return False
        if self.generation is not None and generation != self.generation:
            log.info("%s: lease taken over (generation %d)", self.connection, generation)
        self.generation = int(generation)
        self._deadline = started + self.seconds
        return True

    def renew(self) -> bool:
        """Extend the lease; False (and the lease is lost) when it is no longer ours."""
        if self.generation is None:
            return False
        started = self.clock()
        with self.mirror.engine.begin() as conn:
            ok = conn.execute(_RENEW, self._params()).scalar() is not None
        if ok:
            self._deadline = started + self.seconds
        else:
            self._deadline = 0.0
            log.warning("%s: lease lost to another instance; stopping", self.connection)
        return ok

    def release(self) -> None:
        if self.generation is None:
            return
        with contextlib.suppress(Exception), self.mirror.engine.begin() as conn:
            conn.execute(_RELEASE, self._params())
        self.generation = None

    def before_commit(self, session: Session) -> None:
        """Raise ``LeaseLost`` unless this transaction may commit under our lease."""
        if session.execute(_FENCE, self._params()).scalar() is None:
            raise LeaseLost(
                f"{self.connection}: our lease (generation {self.generation}) was taken over; "
                "this run stops without committing",
                connection=self.connection,
            )

    def before_send(self, call_seconds: float) -> None:
        """Raise ``LeaseLost`` unless the lease outlives one vendor call of ``call_seconds``."""
        if self._deadline - self.clock() > call_seconds:
            return
        if not self.renew() or self._deadline - self.clock() <= call_seconds:
            raise LeaseLost(
                f"{self.connection}: the lease cannot outlast a vendor call "
                f"({call_seconds:.0f}s); this run stops before writing to the vendor",
                connection=self.connection,
            )

    def start_heartbeat(self) -> None:
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                alive = await asyncio.to_thread(self.renew)
            except Exception as exc:  # the database is unreachable: the fence decides
                log.warning("%s: lease renewal failed: %s", self.connection, exc)
                continue
            if not alive:
                return
