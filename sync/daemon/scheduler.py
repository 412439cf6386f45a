"""The daemon's APScheduler 3.x wiring: one job per connection.

The daemon runs one interval job per connection with
``max_instances=1`` and ``coalesce=True``, a misfire grace time and jitter, so a slow
connection never delays another; a connection that keeps failing is rescheduled with a
growing, capped delay (``sync.retry.connection_backoff``) and recovers by itself. A run
that an unforeseen exception ended comes back from ``sync.runner`` as outcome ``internal``
and counts as a failure here like any other (backoff, metrics, ``/healthz``). Signals
and systemd live in ``service``.

Wake-ups (``sync.daemon.wake``) add push-only runs between the scheduled ones, and full
runs when a vendor webhook asked for a pull. Each
connection's runs, scheduled or woken, take turns on one ``asyncio.Lock``, so a woken run
never overlaps a scheduled one and nothing is pushed twice. A woken run waits out the
failure backoff and a rate-limit cool-down: during either, the wake-up is dropped and the
scheduled run (which the backoff already moved) takes the change.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import OperationalError

from sync.config import Config
from sync.coord.lease import LeaseSource
from sync.daemon.metrics import Metrics
from sync.db import Mirror
from sync.db.models import SyncConnection
from sync.engine.run import RunResult
from sync.errors import LeaseLost, LockHeld
from sync.retry import connection_backoff
from sync.runner import Selection, run_connection

log = logging.getLogger("sync.scheduler")


class Jobs:
    """One APScheduler interval job per connection, with failure backoff."""

    def __init__(
        self,
        mirror: Mirror,
        config: Config,
        names: Sequence[str],
        should_stop: Callable[[], bool] = lambda: False,
        metrics: Metrics | None = None,
        leases: LeaseSource | None = None,
    ) -> None:
        self.should_stop = should_stop
        self.metrics = metrics
        self.leases = leases
        self.mirror = mirror
        self.config = config
        self.names = list(names)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.running: set[asyncio.Task[Any]] = set()
        self.results: dict[str, RunResult] = {}
        #: Per connection, the turn that scheduled and woken runs take.
        self.turns: dict[str, asyncio.Lock] = {}
        #: How many woken (push-only) runs each connection has had.
        self.woken: dict[str, int] = {}

    def start(self) -> None:
        self._add_jobs(first_delay=0.0)
        self.scheduler.start()

    def _add_jobs(self, first_delay: float) -> None:
        now = datetime.now(UTC)
        for name in self.names:
            interval = self.config.connections[name].interval
            self.scheduler.add_job(
                self._job,
                "interval",
                seconds=interval,
                args=[name],
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval)),
                jitter=min(5.0, interval * 0.1),
                next_run_time=now + timedelta(seconds=first_delay + random.uniform(0, 0.5)),
                replace_existing=True,
            )

    def reload(self, config: Config, names: Sequence[str]) -> None:
        """Replace the jobs with ``config``'s (after SIGHUP)."""
        self.config = config
        self.names = list(names)
        self.scheduler.remove_all_jobs()
        self._add_jobs(first_delay=0.0)

    def run_all_now(self) -> None:
        now = datetime.now(UTC)
        for job in self.scheduler.get_jobs():
            job.modify(next_run_time=now)

    async def _job(self, name: str) -> None:
        """The scheduled run of ``name``: a full pass."""
        async with self._turn(name):
            await self._run(name, push_only=False, kind="scheduled")

    async def wake(self, name: str, pull: bool = False) -> None:
        """A woken run of ``name``: push only unless ``pull`` (a vendor webhook), after the
        run in hand, outside any backoff or cool-down; never raises."""
        async with self._turn(name):
            if self.should_stop() or name not in self.names or self._resting(name):
                return
            self.woken[name] = self.woken.get(name, 0) + 1
            try:
                await self._run(name, push_only=not pull, kind="webhook" if pull else "woken")
            except Exception:  # a wake-up must never end its loop
                log.exception("%s: woken run failed", name)

    def _turn(self, name: str) -> asyncio.Lock:
        return self.turns.setdefault(name, asyncio.Lock())

    def _resting(self, name: str) -> bool:
        """True while ``name`` waits out its failure backoff or a rate-limit cool-down."""
        now = datetime.now(UTC)
        with self.mirror.read() as session:
            row = session.get(SyncConnection, name)
            if row is None:
                return False
            until = (row.next_retry_at, row.cooldown_until)
            return any(at is not None and at > now for at in until)

    async def _run(self, name: str, *, push_only: bool, kind: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            result = await run_connection(
                self.mirror,
                self.config,
                self.config.connections[name],
                Selection(
                    [name],
                    should_stop=self.should_stop,
                    on_result=self.metrics.observe_run if self.metrics else None,
                    http_hook=self.metrics.http_hook if self.metrics else None,
                    leases=self.leases,
                    push_only=push_only,
                    kind=kind,
                ),
            )
        except LockHeld:
            return  # another instance syncs it: skip quietly (docs/architecture.md §7.3)
        except OperationalError as exc:
            # The database went away mid-run (restart, pg_terminate_backend, network): the
            # pool reconnects on the next checkout, and the next run resumes.
            log.warning("%s: database error; the next run retries: %s", name, _first_line(exc))
            return
        finally:
            self.running.discard(task)
        self.results[name] = result
        if isinstance(result.error, LeaseLost):
            return  # the connection's schedule belongs to the instance that took it over
        self._reschedule(name, result)

    def _reschedule(self, name: str, result: RunResult) -> None:
        """After a failure, wait interval * 2**failures (capped) before the next try."""
        with self.mirror.write() as session:
            row = session.get(SyncConnection, name)
            failures = row.consecutive_failures if row else 0
            interval = self.config.connections[name].interval
            if result.ok or failures == 0:
                if row is not None:
                    row.next_retry_at = None
                return
            delay = connection_backoff(interval, failures)
            when = datetime.now(UTC) + timedelta(seconds=delay)
            if row is not None:
                row.next_retry_at = when
        job = self.scheduler.get_job(name)
        if job is not None:
            job.modify(next_run_time=when)
        log.warning("%s: failed %d time(s) in a row; next try in %.0fs", name, failures, delay)

    async def stop(self, timeout: float) -> None:
        """Stop scheduling; let runs in hand finish for up to ``timeout``, then cancel them."""
        self.scheduler.shutdown(wait=False)
        if not self.running:
            return
        _, pending = await asyncio.wait(set(self.running), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
