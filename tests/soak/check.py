"""The soak's checks, run on the quiet world (docs/architecture.md §8.4):

- **agreement**: every active link's vendor ticket holds the mirror's value of every field
  the vendor writes, as its map spells it (the "newest" policy makes both sides converge);
- **duplicates**: no vendor holds two tickets with one create marker, and no stray was
  recorded;
- **lost edits**: each final local edit is in the mirror and at every linked vendor that
  writes the field, or a later remote edit of that field superseded it and the journal
  shows it pulled after the local edit;
- **settled**: every vendor ticket is imported, no create intent is left, and no ticket
  is waiting to be pushed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.soak.chaos import Edits
from tests.soak.vendors import FIELDS, VENDORS
from tests.soak.world import World


@dataclass
class Report:
    """What the checks found; ``ok`` when nothing."""

    disagreements: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    #: Superseded local edits (not failures): a later remote edit won, journaled.
    superseded: int = 0
    #: (ticket id, field) of each lost edit, for the journal excerpt.
    lost_fields: list[tuple[int, str]] = field(default_factory=list)
    links: int = 0
    tickets: int = 0

    @property
    def ok(self) -> bool:
        return not (self.disagreements or self.duplicates or self.lost or self.unsettled)

    def lines(self, limit: int = 10) -> list[str]:
        found = []
        for title, items in (
            ("disagreement", self.disagreements),
            ("duplicate", self.duplicates),
            ("lost edit", self.lost),
            ("unsettled", self.unsettled),
        ):
            found += [f"  {title}: {item}" for item in items[:limit]]
            if len(items) > limit:
                found.append(f"  ... and {len(items) - limit} more of {title}")
        return found


def check(world: World, edits: Edits) -> Report:
    """Run every check against the mirror and the emulators as they are now."""
    report = Report()
    mirror = {
        int(row[0]): dict(zip(FIELDS, row[1:], strict=True))
        for row in world.sql(f"SELECT id, {', '.join(FIELDS)} FROM tickets")
    }
    report.tickets = len(mirror)
    links: dict[int, dict[str, str]] = defaultdict(dict)
    for connection, ticket_id, external_id, state in world.sql(
        "SELECT connection, ticket_id, external_id, state FROM ticket_links"
    ):
        if state == "active":
            links[int(ticket_id)][str(connection)] = str(external_id)
            report.links += 1
        elif state == "creating":
            report.unsettled.append(f"{connection}: ticket #{ticket_id}: create intent left")
    remote = {name: world.vendor_tickets(name) for name in VENDORS}
    _unlinked(world, remote, report)
    _duplicates(world, remote, report)
    _agreement(mirror, links, remote, report)
    _lost(world, edits, mirror, links, remote, report)
    for connection, count in world.sql(
        "SELECT connection, count(*) FROM ticket_dirty GROUP BY connection"
    ):
        report.unsettled.append(f"{connection}: {count} ticket(s) still to push")
    return report


def _unlinked(world: World, remote: dict[str, dict[str, Any]], report: Report) -> None:
    """Every vendor ticket is imported (linked), or recorded as a stray."""
    known = {
        (str(c), str(e))
        for c, e in world.sql(
            "SELECT connection, external_id FROM ticket_links WHERE external_id IS NOT NULL "
            "UNION SELECT connection, external_id FROM sync_strays"
        )
    }
    for name, tickets in remote.items():
        report.unsettled += [f"{name}: {i} not imported" for i in tickets if (name, i) not in known]


def _duplicates(world: World, remote: dict[str, dict[str, Any]], report: Report) -> None:
    for name, tickets in remote.items():
        markers = Counter(VENDORS[name].marker(t) for t in tickets.values())
        markers.pop(None, None)
        report.duplicates += [
            f"{name}: {n} tickets carry marker {m}" for m, n in markers.items() if n > 1
        ]
    for connection, external_id, marker in world.sql(
        "SELECT connection, external_id, marker FROM sync_strays"
    ):
        report.duplicates.append(f"{connection}: stray {external_id} (marker {marker})")


def _agreement(
    mirror: dict[int, dict[str, Any]],
    links: dict[int, dict[str, str]],
    remote: dict[str, dict[str, Any]],
    report: Report,
) -> None:
    for ticket_id, linked in sorted(links.items()):
        for name, external_id in sorted(linked.items()):
            vendor = VENDORS[name]
            ticket = remote[name].get(external_id)
            if ticket is None:
                report.disagreements.append(f"{name}: {external_id} is linked but gone")
                continue
            for field_name in sorted(vendor.writable):
                theirs = vendor.canonical(ticket, field_name)
                ours = mirror.get(ticket_id, {}).get(field_name)
                if theirs != ours:
                    report.disagreements.append(
                        f"ticket #{ticket_id} {field_name}: mirror {ours!r}, "
                        f"{name} {external_id} {theirs!r}"
                    )


def _lost(
    world: World,
    edits: Edits,
    mirror: dict[int, dict[str, Any]],
    links: dict[int, dict[str, str]],
    remote: dict[str, dict[str, Any]],
    report: Report,
) -> None:
    pulls = _pulls(world)
    by_external = {
        (name, external_id): ticket_id
        for ticket_id, linked in links.items()
        for name, external_id in linked.items()
    }
    later: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for name, external_id, field_name, _, moment in edits.remote:
        ticket_id = by_external.get((name, external_id))
        if ticket_id is not None:
            later[(ticket_id, field_name)].append(moment)
    for (ticket_id, field_name), (value, moment) in sorted(edits.local.items()):
        if ticket_id not in mirror:
            continue
        if mirror[ticket_id].get(field_name) == value:
            for name, external_id in sorted(links.get(ticket_id, {}).items()):
                vendor = VENDORS[name]
                ticket = remote[name].get(external_id)
                if (
                    field_name in vendor.writable
                    and ticket is not None
                    and vendor.canonical(ticket, field_name) != value
                ):
                    report.lost.append(
                        f"ticket #{ticket_id} {field_name}={value!r} never reached "
                        f"{name} {external_id}"
                    )
                    report.lost_fields.append((ticket_id, field_name))
            continue
        superseded = any(t > moment for t in later[(ticket_id, field_name)]) and any(
            t > moment for t in pulls.get((ticket_id, field_name), ())
        )
        if superseded:
            report.superseded += 1
        else:
            report.lost.append(
                f"ticket #{ticket_id} {field_name}={value!r} (local, {moment:%H:%M:%S.%f}) "
                f"became {mirror[ticket_id].get(field_name)!r} with no later journaled "
                "remote edit"
            )
            report.lost_fields.append((ticket_id, field_name))


def _pulls(world: World) -> dict[tuple[int, str], list[datetime]]:
    """(ticket id, field) -> when the journal shows a vendor's value pulled into it."""
    found: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for ticket_id, field_name, moment in world.sql(
        "SELECT ticket_id, field, at FROM journal WHERE action IN ('pull', 'resolve') "
        "AND ticket_id IS NOT NULL AND field IS NOT NULL"
    ):
        found[(int(ticket_id), str(field_name))].append(moment)
    return found


def journal_excerpt(world: World, report: Report, limit: int = 3) -> list[str]:
    """The journal of the first ``limit`` lost edits' tickets and fields, to see why."""
    lines = []
    for ticket_id, field_name in report.lost_fields[:limit]:
        lines.append(f"  journal of ticket #{ticket_id} {field_name}:")
        for row in world.sql(
            "SELECT at, connection, action, field, old_value, new_value, note FROM journal "
            "WHERE ticket_id = :t AND (field = :f OR field IS NULL) ORDER BY id",
            t=ticket_id,
            f=field_name,
        ):
            at, connection, action, name, old, new, note = row
            lines.append(
                f"    {at:%H:%M:%S.%f} {connection} {action} {name or ''} "
                f"{old!r} -> {new!r} {note or ''}"
            )
    return lines
