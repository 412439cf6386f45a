"""Leases on PostgreSQL: at most one instance syncs a connection, with fencing
(docs/architecture.md §3.4, §7.3).

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

A holder that is gone is seen at once (``sync.coord.liveness``): each lease row records the
holder's liveness lock, and a lease whose holder no longer holds it may be taken before it
expires (with the generation raised, as on expiry).

Who holds a lease between runs is the caller's choice: ``PerRunLeases`` (``--run-once``)
takes it for one run and releases it after; the daemon keeps it between runs and spreads
the connections over the live instances (``sync.coord.spread``). A lease that is found gone
(renewal or a fence fails) is *lost*: ``on_lost`` is told once per generation.
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
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.orm import Session

from sync.coord.liveness import Liveness, live_sql
from sync.db import Mirror
from sync.engine.run import RunResult
from sync.errors import LeaseLost

log = logging.getLogger("sync.lease")

_ACQUIRE = text(
    """
    INSERT INTO sync_leases (connection, instance, host, pid, generation, acquired_at,
                             expires_at, lock_key)
    VALUES (:c, :i, :h, :p, 1, now(), now() + :ttl, :k)
    ON CONFLICT (connection) DO UPDATE SET
        instance = EXCLUDED.instance,
        host = EXCLUDED.host,
        pid = EXCLUDED.pid,
        lock_key = EXCLUDED.lock_key,
        generation = sync_leases.generation
            + CASE WHEN sync_leases.instance = EXCLUDED.instance THEN 0 ELSE 1 END,
        acquired_at = CASE WHEN sync_leases.instance = EXCLUDED.instance
            THEN sync_leases.acquired_at ELSE now() END,
        expires_at = EXCLUDED.expires_at
    WHERE sync_leases.expires_at < now() OR sync_leases.instance = EXCLUDED.instance
        OR (sync_leases.lock_key IS NOT NULL AND NOT {live})
    RETURNING generation, acquired_at = now() AS fresh
    """.format(live=live_sql("sync_leases"))
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
    """One connection's lease, held by this process.

    After ``acquire`` returned True, ``took_over`` tells whether another instance held the
    connection before (the generation grew); ``lost`` becomes True once a renewal or a
    fence finds the lease gone, and ``on_lost(connection)`` is called then, once.
    """

    def __init__(
        self,
        mirror: Mirror,
        connection: str,
        seconds: float,
        *,
        instance: str = INSTANCE,
        clock: Callable[[], float] = time.monotonic,
        on_lost: Callable[[str], None] | None = None,
        heartbeat: float | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.mirror = mirror
        self.connection = connection
        self.seconds = seconds
        self.instance = instance
        self.clock = clock
        self.on_lost = on_lost
        #: Seconds between the heartbeat's renewals: a third of the lease unless given.
        self.heartbeat = seconds / 3 if heartbeat is None else heartbeat
        #: This instance's liveness lock (PostgreSQL): recorded in the row, so a holder that
        #: is gone is seen at once; None: the lease moves on expiry only.
        self.liveness = liveness
        self.generation: int | None = None
        self.took_over = False
        self.lost = False
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
            row = conn.execute(
                _ACQUIRE,
                {
                    **self._params(),
                    "h": socket.gethostname(),
                    "p": os.getpid(),
                    "k": self.liveness.key if self.liveness is not None else None,
                },
            ).first()
        if row is None:
            return False
        if self.liveness is not None:
            self.liveness.forget(self._lose)
            self.liveness.on_lost(self._lose)
        generation, fresh = int(row[0]), bool(row[1])
        self.took_over = fresh and generation > 1
        if self.took_over:
            log.info("%s: lease taken over (generation %d)", self.connection, generation)
        self.generation = generation
        self.lost = False
        self._deadline = started + self.seconds
        return True

    @property
    def remaining(self) -> float:
        """Seconds the lease is known to last on the monotonic clock (0 when lost)."""
        return max(0.0, self._deadline - self.clock())

    def _lose(self) -> None:
        self._deadline = 0.0
        if self.lost:
            return
        self.lost = True
        log.warning(
            "%s: lease lost (generation %s): another instance took the connection over or "
            "the lease expired; this instance stops writing for it",
            self.connection,
            self.generation,
        )
        if self.on_lost is not None:
            self.on_lost(self.connection)

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
            self._lose()
        return ok

    def release(self) -> None:
        """Give the lease up at once (it expires now), so another instance may take it."""
        if self.generation is None:
            return
        with contextlib.suppress(Exception), self.mirror.engine.begin() as conn:
            conn.execute(_RELEASE, self._params())
        if self.liveness is not None:
            self.liveness.forget(self._lose)
        self.generation = None

    def before_commit(self, session: Session) -> None:
        """Raise ``LeaseLost`` unless this transaction may commit under our lease."""
        if session.execute(_FENCE, self._params()).scalar() is None:
            self._lose()
            raise LeaseLost(
                f"{self.connection}: our lease (generation {self.generation}) was taken over; "
                "this run stops without committing",
                connection=self.connection,
            )

    def before_send(self, call_seconds: float) -> None:
        """Raise ``LeaseLost`` unless the lease outlives one vendor call of ``call_seconds``
        and, with a liveness lock, its session answered a ping less than a second ago."""
        if self.liveness is not None and not self.liveness.ensure_fresh():
            self._lose()
            raise LeaseLost(
                f"{self.connection}: this instance's liveness session is lost, so another "
                "instance may take the connection at once; this run stops before writing",
                connection=self.connection,
            )
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
            await asyncio.sleep(self.heartbeat)
            try:
                alive = await asyncio.to_thread(self.renew)
            except Exception as exc:  # the database is unreachable: the fence decides
                log.warning("%s: lease renewal failed: %s", self.connection, exc)
                continue
            if not alive:
                return


class LeaseSource(Protocol):
    """Where a run gets its connection's lease, and gives it back (``runner.run_connection``).

    ``take`` returns the lease to run under, or None when this instance is not to sync the
    connection now (another instance holds it, or it is not this instance's share);
    ``done`` is called after the run, with its result (None when the run raised).
    """

    async def take(self, connection: str) -> Lease | None: ...

    async def done(self, connection: str, lease: Lease, result: RunResult | None) -> None: ...


class PerRunLeases:
    """Take the lease for one run, renew it while the run lasts, release it after.

    What ``--run-once`` does: a pass holds nothing once it is over. While it holds the
    lease it holds a liveness lock too (``sync.coord.liveness``), so a pass that is killed leaves
    nothing that makes the next one wait.
    """

    def __init__(self, mirror: Mirror, seconds: float) -> None:
        self.mirror = mirror
        self.seconds = seconds
        self.liveness = Liveness(mirror)

    async def take(self, connection: str) -> Lease | None:
        await asyncio.to_thread(self.liveness.start)
        lease = Lease(self.mirror, connection, self.seconds, liveness=self.liveness)
        if not await asyncio.to_thread(lease.acquire):
            await self.liveness.stop()
            return None
        self.liveness.start_pinging()
        lease.start_heartbeat()
        return lease

    async def done(self, connection: str, lease: Lease, result: RunResult | None) -> None:
        await lease.stop_heartbeat()
        lease.release()
        await self.liveness.stop()
