"""Spreading connections over the daemons that share one PostgreSQL database (docs/architecture.md
§3.4, §7.3).

PostgreSQL is the only coordinator: no protocol between the instances, only rows.

- **Registry.** Each daemon has a row in ``sync_instances`` (id, host, pid, started_at,
  seen_at, lock_key), refreshed by its heartbeat every third of ``sync.lease_seconds`` and
  removed on a clean stop. An instance is *live* while ``seen_at`` (database time) is
  younger than ``sync.lease_seconds`` and it still holds its liveness lock
  (``sync.coord.liveness``: ``lock_key`` in ``pg_locks``; none is held behind transaction
  pooling). A dead instance's lock is gone at once; a paused one's row goes stale after a
  lease time, when its leases expire too, so its connections move then, not a lease later.
- **Sticky leases.** A daemon keeps the leases it holds between runs and renews them all
  in the same heartbeat (the instance row first, so a dead instance's row goes stale
  before its leases expire), so a connection stays on the instance that syncs it.
- **Fair share.** With M connections (the ones this daemon is configured for; run every
  instance with the same set) and N live instances, ``share = ceil(M / N)``. Before a run
  of a connection it does not hold, an instance tries its lease only while it holds fewer
  than its share *and* no other live instance holds fewer than it does: the least loaded
  instance takes, so a connection that was handed over is not snatched back. After a run,
  an instance that holds more than its share, or two more than some live instance while
  no connection is free, releases that connection (the run is over, so nothing is cut
  short). A joining instance
  therefore picks up its share within about one interval per connection, and nobody
  restarts.
- **Orphans.** A lease free or expired for longer than one lease time (instances with
  different connection sets, say) is taken by whoever runs it next, share or not, so no
  connection stays unsynced.
- **Takeover.** A dead instance's session ends with it, and its liveness lock too: its
  leases stop counting at once, the others are under their new share and take its
  connections on their next runs, within one interval (and its jitter). A paused or
  partitioned one keeps its lock: its connections move once its leases expire, within
  ``sync.lease_seconds`` plus one interval.

A run under a sticky lease is fenced exactly like any other (``sync.coord.lease``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import ParamSpec, TypeVar

from sqlalchemy import text

from sync.coord.lease import INSTANCE, Lease
from sync.coord.liveness import Liveness, live_sql
from sync.daemon.metrics import Metrics
from sync.db import Mirror
from sync.engine.run import RunResult
from sync.errors import LeaseLost

log = logging.getLogger("sync.spread")
P = ParamSpec("P")
T = TypeVar("T")

#: Rows of instances unseen for this many lease times are deleted by any heartbeat.
PRUNE_AFTER_LEASES = 100

_REGISTER = text(
    "INSERT INTO sync_instances (id, host, pid, started_at, seen_at, lock_key) "
    "VALUES (:i, :h, :p, now(), now(), :k) "
    "ON CONFLICT (id) DO UPDATE SET seen_at = now(), lock_key = EXCLUDED.lock_key"
)
#: A row (alias ``{t}``) whose holder took a liveness lock that is gone: its holder is dead.
_DEAD = "({t}.lock_key IS NOT NULL AND NOT {live})"
_PRUNE = text("DELETE FROM sync_instances WHERE seen_at < now() - :old")
_DEREGISTER = text("DELETE FROM sync_instances WHERE id = :i")
_LOADS = text(
    """
    SELECT i.id, count(l.connection)
    FROM sync_instances i
    LEFT JOIN sync_leases l ON l.instance = i.id AND l.expires_at > now() AND NOT {dead_l}
    WHERE i.id = :i OR (i.seen_at > now() - :ttl AND (i.lock_key IS NULL OR {live_i}))
    GROUP BY i.id
    """.format(dead_l=_DEAD.format(t="l", live=live_sql("l")), live_i=live_sql("i"))
)
_LEASE_STATE = text(
    """
    SELECT instance, expires_at > now() AND NOT {dead}, expires_at < now() - :ttl
    FROM sync_leases s WHERE connection = :c
    """.format(dead=_DEAD.format(t="s", live=live_sql("s")))
)


@dataclass(frozen=True)
class Load:
    """Current leases of this instance (``mine``) and of every other live one (``others``),
    for ``total`` connections."""

    mine: int
    others: tuple[int, ...]
    total: int

    @property
    def share(self) -> int:
        return max(1, math.ceil(self.total / (len(self.others) + 1)))

    def may_take(self) -> bool:
        """Under the share, and no live instance is less loaded."""
        return self.mine < self.share and all(self.mine <= n for n in self.others)

    @property
    def free(self) -> int:
        """Connections no live instance holds (released, expired, or never taken)."""
        return max(0, self.total - self.mine - sum(self.others))

    def should_release(self) -> bool:
        """Over the share; or two leases more than some live instance while none is free
        for it to take (a free one would even the load without our help)."""
        if self.mine > self.share:
            return True
        return self.free == 0 and any(self.mine - n >= 2 for n in self.others)


class Registry:
    """This instance's row in ``sync_instances`` and what the live instances hold."""

    def __init__(
        self,
        mirror: Mirror,
        seconds: float,
        instance: str = INSTANCE,
        liveness: Liveness | None = None,
    ) -> None:
        self.mirror = mirror
        self.instance = instance
        self.ttl = timedelta(seconds=seconds)
        self.liveness = liveness

    def register(self) -> None:
        """Insert (or refresh) this instance's row, with its liveness lock's key; forget
        instances long gone."""
        key = self.liveness.key if self.liveness is not None else None
        with self.mirror.engine.begin() as conn:
            conn.execute(_PRUNE, {"old": self.ttl * PRUNE_AFTER_LEASES})
            conn.execute(
                _REGISTER,
                {"i": self.instance, "h": socket.gethostname(), "p": os.getpid(), "k": key},
            )

    beat = register

    def deregister(self) -> None:
        with contextlib.suppress(Exception), self.mirror.engine.begin() as conn:
            conn.execute(_DEREGISTER, {"i": self.instance})

    def load(self, total: int) -> Load:
        with self.mirror.engine.begin() as conn:
            rows = conn.execute(_LOADS, {"ttl": self.ttl, "i": self.instance}).all()
        counts = {str(instance): int(held) for instance, held in rows}
        mine = counts.pop(self.instance, 0)
        return Load(mine, tuple(counts.values()), total)

    def lease_state(self, connection: str) -> tuple[str | None, bool, bool]:
        """(holder, current, orphaned) of ``connection``'s lease; (None, False, False): none yet."""
        with self.mirror.engine.begin() as conn:
            row = conn.execute(_LEASE_STATE, {"c": connection, "ttl": self.ttl}).first()
        if row is None:
            return None, False, False
        return str(row[0]), bool(row[1]), bool(row[2])


class StickyLeases:
    """The daemon's leases: kept between runs, renewed together, spread by fair share.

    Implements ``sync.coord.lease.LeaseSource``. Database work runs in worker threads, one at a
    time (``_lock``), so the event loop never waits on the database and a renewal never
    races a release of the same lease.
    """

    def __init__(
        self,
        mirror: Mirror,
        seconds: float,
        names: Sequence[str],
        *,
        instance: str = INSTANCE,
        metrics: Metrics | None = None,
    ) -> None:
        self.mirror = mirror
        self.seconds = seconds
        self.names = list(names)
        self.instance = instance
        self.metrics = metrics
        self.liveness = Liveness(mirror)
        self.registry = Registry(mirror, seconds, instance, self.liveness)
        self.held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._beat_task: asyncio.Task[None] | None = None

    # -- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Take the liveness lock, register this instance and start the heartbeat."""
        await self._db(self._live)
        self.liveness.start_pinging()
        self._beat_task = asyncio.ensure_future(self._beat())

    async def stop(self) -> None:
        """Stop the heartbeat, release every lease and deregister: the others take over now."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        for name in list(self.held):
            await self._release(name)
        await self._db(self.registry.deregister)
        await self.liveness.stop()

    def set_connections(self, names: Sequence[str]) -> None:
        """The connections this instance syncs (after SIGHUP); others are released by the
        next heartbeat."""
        self.names = list(names)

    # -- LeaseSource ---------------------------------------------------------------

    async def take(self, connection: str) -> Lease | None:
        """The lease to run ``connection`` under, or None: not ours to sync now."""
        lease = self.held.get(connection)
        if lease is not None and await self._db(self._still_ours, lease):
            return lease
        if lease is not None:
            self._forget(connection, lease)
        lease = await self._db(self._claim, connection)
        if lease is not None:
            self.held[connection] = lease
            self._observe_held()
        return lease

    async def done(self, connection: str, lease: Lease, result: RunResult | None) -> None:
        """After a run: forget a lost lease; hand the connection over when over our share."""
        if lease.lost or (result is not None and isinstance(result.error, LeaseLost)):
            self._forget(connection, lease)
            return
        try:
            load = await self._db(self.registry.load, len(self.names))
        except Exception as exc:  # the database is unreachable: decide after the next run
            log.warning("%s: could not read the instances' load: %s", connection, exc)
            return
        if load.should_release():
            log.info(
                "%s: handing over to a less loaded instance (%d held, share %d)",
                connection,
                load.mine,
                load.share,
            )
            await self._release(connection)

    # -- inside --------------------------------------------------------------------

    async def _db(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work`` in a worker thread, after any other database work of ours."""

        def locked() -> T:
            with self._lock:
                return work(*args, **kwargs)

        return await asyncio.to_thread(locked)

    def _still_ours(self, lease: Lease) -> bool:
        """A held lease is used as is while the heartbeat keeps it; else renewed first."""
        if lease.lost:
            return False
        return lease.remaining > self.seconds / 3 or lease.renew()

    def _live(self) -> None:
        """Hold the liveness lock (a new one after a lost session) and register with it."""
        if not self.liveness.running or self.liveness.lost:
            self.liveness.start()
            self.registry.register()

    def _claim(self, connection: str) -> Lease | None:
        self._live()
        holder, current, orphaned = self.registry.lease_state(connection)
        if current and holder != self.instance:
            log.debug("%s: held by %s; skipping", connection, holder)
            return None
        load = self.registry.load(len(self.names))
        if not (orphaned or load.may_take()):
            log.debug(
                "%s: not this instance's share (%d held, share %d); skipping",
                connection,
                load.mine,
                load.share,
            )
            return None
        lease = Lease(
            self.mirror,
            connection,
            self.seconds,
            instance=self.instance,
            on_lost=self._lost,
            liveness=self.liveness,
        )
        if not lease.acquire():
            log.debug("%s: another instance took the lease first; skipping", connection)
            return None
        log.info("%s: lease acquired (generation %d)", connection, lease.generation)
        if lease.took_over and self.metrics is not None:
            self.metrics.lease_takeovers.labels(connection).inc()
        return lease

    def _lost(self, connection: str) -> None:
        if self.metrics is not None:
            self.metrics.leases_lost.labels(connection).inc()

    def _forget(self, connection: str, lease: Lease) -> None:
        if self.held.get(connection) is lease:
            del self.held[connection]
            self._observe_held()

    async def _release(self, connection: str) -> None:
        lease = self.held.pop(connection, None)
        self._observe_held()
        if lease is not None:
            await self._db(lease.release)

    def _observe_held(self) -> None:
        if self.metrics is not None:
            self.metrics.leases_held.set(len(self.held))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self._db(self._beat_once, list(self.held.values()))
            except Exception as exc:  # the database is unreachable: the fences decide
                log.warning("lease heartbeat failed: %s", exc)
            for name, lease in list(self.held.items()):
                if lease.lost:
                    self._forget(name, lease)
                elif name not in self.names:
                    await self._release(name)

    def _beat_once(self, leases: Sequence[Lease]) -> None:
        self.registry.beat()
        for lease in leases:
            lease.renew()
