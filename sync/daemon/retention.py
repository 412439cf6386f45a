"""Retention of the ``runs`` table (docs/architecture.md §8.6).

Wake-ups and webhooks add a run per burst of changes, so ``runs`` grows faster than one
row per interval. ``Retention`` deletes, once at start and then every ``EVERY_S``, the
finished runs that started more than ``service.runs_keep_days`` ago. Journal entries keep
their ``run_id``; ``journal --run`` still finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete

from sync.db import Mirror
from sync.db.models import Run, utcnow

log = logging.getLogger("sync.service")

#: Seconds between two prunings.
EVERY_S = 3600.0


def prune_runs(mirror: Mirror, keep_days: float, now: datetime | None = None) -> int:
    """Delete the finished runs started before ``now - keep_days``; return how many."""
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    with mirror.write() as session:
        result = session.execute(
            delete(Run).where(Run.started_at < cutoff, Run.outcome != "running")
        )
        return int(getattr(result, "rowcount", 0) or 0)


class Retention:
    """Prunes ``runs`` in a worker thread, at start and every ``EVERY_S`` seconds."""

    def __init__(self, mirror: Mirror, keep_days: Callable[[], float]) -> None:
        self.mirror = mirror
        self.keep_days = keep_days
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                pruned = await asyncio.to_thread(prune_runs, self.mirror, self.keep_days())
                if pruned:
                    log.info(
                        "deleted %d run record(s) older than %g day(s)", pruned, self.keep_days()
                    )
            except Exception as exc:  # the database is away: the next round retries
                log.warning("could not prune old run records: %s", exc)
            await asyncio.sleep(EVERY_S)
