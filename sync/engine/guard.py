"""The mass-change guard (docs/architecture.md §7.5): hold a run that would change too much, before
any write.

It counts, per run, planned updates of linked tickets in either direction plus creates at
the vendor; imports and a first import are not counted. The run is held when the count
exceeds both ``min_count`` and ``share`` of the connection's links (with no links yet,
when creates alone exceed ``min_count``). ``--force`` passes it for one run;
``ticketsync guard approve NAME`` records an approval the next pass consumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sync.db import Mirror
from sync.db.models import SyncConnection
from sync.errors import GuardHeld


@dataclass(frozen=True)
class Guard:
    share: float = 0.5
    min_count: int = 10

    def trips(self, planned: int, links: int) -> bool:
        if planned <= self.min_count:
            return False
        return links == 0 or planned > self.share * links

    def check(self, name: str, planned: int, links: int, mirror: Mirror, now: datetime) -> None:
        """Raise ``GuardHeld`` (and record it for ``status``) when the run must wait."""
        if not self.trips(planned, links):
            _set_held(mirror, name, None)
            return
        _set_held(mirror, name, {"held_since": now.isoformat(), "planned": planned, "links": links})
        raise GuardHeld(
            f"{name}: held by the mass-change guard: {planned} planned change(s) against "
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
