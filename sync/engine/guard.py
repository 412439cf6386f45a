"""The mass-change guard (docs/architecture.md §7.5): hold a run that would change too much, before
any write.

It counts, per run, planned updates of linked tickets in either direction plus creates at
the vendor; imports and a first import are not counted. The run is held when the count
exceeds both ``min_count`` and ``share`` of the connection's links (with no links yet,
when creates alone exceed ``min_count``). ``--force`` passes it for one run;
``ticketsync guard approve NAME`` records an approval the next pass consumes.

The count spans a window (docs/architecture.md §8.6): to the run's own planned writes it
adds the writes of the connection's runs that started in the last ``window_seconds``
(``runs.guarded``; default: the connection's interval), so one-second wake-ups cannot
split a runaway script's thousand edits into runs too small to trip it. A run that
passed by ``--force`` or an approval records 0: its writes were approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync.db import Mirror
from sync.db.models import Run, SyncConnection
from sync.errors import GuardHeld


@dataclass(frozen=True)
class Guard:
    share: float = 0.5
    min_count: int = 10
    #: Seconds back whose runs' writes count with this run's (0: this run's only).
    window_seconds: float = 0.0

    def trips(self, planned: int, links: int) -> bool:
        if planned <= self.min_count:
            return False
        return links == 0 or planned > self.share * links

    def recent(self, session: Session, name: str, now: datetime, run_id: int | None) -> int:
        """The guarded writes of ``name``'s other runs that started in the window."""
        if self.window_seconds <= 0:
            return 0
        since = now - timedelta(seconds=self.window_seconds)
        query = select(func.coalesce(func.sum(Run.guarded), 0)).where(
            Run.connection == name, Run.started_at >= since
        )
        if run_id is not None:
            query = query.where(Run.id != run_id)
        return int(session.scalar(query) or 0)

    def check(
        self,
        name: str,
        planned: int,
        links: int,
        mirror: Mirror,
        now: datetime,
        recent: int = 0,
    ) -> None:
        """Raise ``GuardHeld`` (and record it for ``status``) when the run must wait;
        ``planned`` includes the window's ``recent`` writes."""
        if not self.trips(planned, links):
            _set_held(mirror, name, None)
            return
        _set_held(mirror, name, {"held_since": now.isoformat(), "planned": planned, "links": links})
        within = f" ({recent} of them made in the last {self.window_seconds:g}s)" if recent else ""
        raise GuardHeld(
            f"{name}: held by the mass-change guard: {planned} planned change(s){within} against "
            f"{links} linked ticket(s) (limit: more than {self.min_count} and more than "
            f"{self.share:.0%} of links). Inspect with `ticketsync --dry-run --connection {name}`,"
            f" then run once with --force, or let the daemon pass with "
            f"`ticketsync guard approve {name}`",
            connection=name,
        )


def _set_held(mirror: Mirror, name: str, held: dict[str, object] | None) -> None:
    with mirror.write() as session:
        row = session.get(SyncConnection, name)
        if row is not None and row.guard_held != held:
            row.guard_held = held


def approve(mirror: Mirror, name: str, now: datetime) -> bool:
    """Record a one-time approval; False when the connection has never run."""
    with mirror.write() as session:
        row = session.get(SyncConnection, name)
        if row is None:
            return False
        row.guard_approved_at = now
        return True


def consume_approval(mirror: Mirror, name: str) -> bool:
    """Take the connection's approval, if any; True when there was one (an undo request
    of this pass passes the guard with it too)."""
    with mirror.write() as session:
        row = session.get(SyncConnection, name)
        if row is not None and row.guard_approved_at is not None:
            row.guard_approved_at = None
            return True
        return False
