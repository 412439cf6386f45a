"""Undo a run, the plan (docs/architecture.md §8.7): what the run changed, and what to do
with each change now. Pure but for the reads in ``changes`` and ``plan``.

The journal holds every field a run changed, in both spellings (canonical and the
vendor's, docs/architecture.md §8.1). Per (ticket, field, direction) the run's first old
value and last new value make one ``Change``; creates, imports and comments are never
undone. ``decide`` is the decision table, one branch per line:

=========  ====================================  =========================================
change     the field now                          step
=========  ====================================  =========================================
any        ticket or link gone                    GONE: nothing to restore
any        journaled before undo existed          LEGACY: one spelling only, left alone
pull       the mirror holds the run's new value   RESTORE: a local mirror edit (fans out)
pull       the mirror holds the run's old value   DONE: already back (a killed undo's work)
push       mirror and vendor hold the run's new   RESTORE: at that vendor only, base moved
push       the vendor holds the run's old value   DONE: already back
any        anything else (changed again since)    CONFLICT for a person (LISTED: already)
=========  ====================================  =========================================

For a push, "the vendor holds" is the link's base in a plan, and a fresh read of the
ticket when the undo is carried out (``sync.engine.undo_run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.db.models import Conflict, JournalEntry, Ticket, TicketLink
from sync.engine import store
from sync.engine.mapping import canonical_text, same_vendor_value

#: The journal actions an undo takes back: field changes only (never create, import,
#: conflict records or comments).
UNDONE_ACTIONS = ("pull", "push")
#: ``conflicts.policy`` of a conflict an undo left for a person.
UNDO_POLICY = "undo"


class Step(StrEnum):
    RESTORE = "restore"
    DONE = "done"
    CONFLICT = "conflict"
    LISTED = "listed"
    GONE = "gone"
    LEGACY = "legacy"


@dataclass(frozen=True)
class Change:
    """One field a run changed on one ticket: ``direction`` ``pull`` (into the mirror) or
    ``push`` (to the run's vendor), with its (old, new) in both spellings."""

    ticket_id: int
    external_id: str | None
    field: str
    direction: str
    canonical: tuple[str | None, str | None]
    vendor: tuple[str | None, str | None]

    @property
    def legacy(self) -> bool:
        """Journaled before both spellings were: all four values unknown."""
        return self.canonical == (None, None) and self.vendor == (None, None)


@dataclass(frozen=True)
class Decision:
    """What the undo does with one ``Change``; ``now``: the field's current value
    (canonical in the mirror, and the vendor's for a push)."""

    change: Change
    step: Step
    now: str | None = None
    vendor_now: str | None = None


def changes(session: Session, run_id: int, ticket_id: int | None = None) -> list[Change]:
    """The field changes of run ``run_id`` (of one ticket, when given), oldest first."""
    query = select(JournalEntry).where(
        JournalEntry.run_id == run_id, JournalEntry.action.in_(UNDONE_ACTIONS)
    )
    if ticket_id is not None:
        query = query.where(JournalEntry.ticket_id == ticket_id)
    merged: dict[tuple[int, str, str], Change] = {}
    for row in session.scalars(query.order_by(JournalEntry.id)):
        if row.ticket_id is None or row.field is None:
            continue
        key = (row.ticket_id, row.field, row.action)
        first = merged.get(key)
        merged[key] = Change(
            row.ticket_id,
            row.external_id,
            row.field,
            row.action,
            (first.canonical[0] if first else row.old_canonical, row.new_canonical),
            (first.vendor[0] if first else row.old_vendor, row.new_vendor),
        )
    return list(merged.values())


def decide(
    change: Change,
    ticket: Ticket | None,
    link: TicketLink | None,
    *,
    vendor_now: str | None,
    listed: bool,
) -> Decision:
    """Decide one change against the field as it stands (see the module's table).

    ``vendor_now``: the vendor's current value of a pushed field (its base in a plan, a
    fresh read when carried out); ``listed``: an undo conflict for it is already open.
    """
    if ticket is None or (change.direction == "push" and link is None):
        return Decision(change, Step.GONE)
    now = canonical_text(getattr(ticket, change.field, None))
    if change.legacy:
        return Decision(change, Step.LEGACY, now)
    old, new = change.canonical
    if change.direction == "pull":
        if now == new:
            return Decision(change, Step.RESTORE, now)
        if now == old:
            return Decision(change, Step.DONE, now)
    else:
        old_v, new_v = change.vendor
        if now == new and same_vendor_value(vendor_now, new_v):
            return Decision(change, Step.RESTORE, now, vendor_now)
        if same_vendor_value(vendor_now, old_v):
            return Decision(change, Step.DONE, now, vendor_now)
    return Decision(change, Step.LISTED if listed else Step.CONFLICT, now, vendor_now)


def base_vendor(link: TicketLink | None, name: str) -> str | None:
    """The vendor value the link's base holds for ``name`` (the last one both agreed on)."""
    entry = (link.base.get(name) if link is not None else None) or {}
    value = entry.get("remote")
    return None if value is None else str(value)


def open_conflicts(session: Session, connection: str, ticket_ids: Sequence[int]) -> set[Any]:
    """(ticket id, field) of the undo conflicts still open on ``connection``."""
    if not ticket_ids:
        return set()
    rows = session.execute(
        select(Conflict.ticket_id, Conflict.field).where(
            Conflict.connection == connection,
            Conflict.policy == UNDO_POLICY,
            Conflict.resolution == "pending",
            Conflict.ticket_id.in_(list(ticket_ids)),
        )
    )
    return {(t, f) for t, f in rows}


def plan(
    session: Session, connection: str, run_id: int, ticket_id: int | None = None
) -> list[Decision]:
    """Decide every change of the run from the mirror alone (a pushed field's vendor value
    is its base): the preview ``undo --dry-run`` prints and the guard counts."""
    found = changes(session, run_id, ticket_id)
    ids = [c.ticket_id for c in found]
    tickets = store.tickets_by_id(session, ids)
    links = store.links_by_ticket(session, connection, ids)
    listed = open_conflicts(session, connection, ids)
    return [
        decide(
            c,
            tickets.get(c.ticket_id),
            links.get(c.ticket_id),
            vendor_now=base_vendor(links.get(c.ticket_id), c.field),
            listed=(c.ticket_id, c.field) in listed,
        )
        for c in found
    ]


def touched(decisions: Sequence[Decision]) -> int:
    """Tickets an undo writes (what the mass-change guard counts, once per ticket)."""
    return len({d.change.ticket_id for d in decisions if d.step is Step.RESTORE})


def describe(connection: str, run_id: int, d: Decision) -> str:
    """One line of the plan: ticket, field, the value now -> the value restored, and how."""
    c = d.change
    ids = f"{connection}: undo run #{run_id}: #{c.ticket_id} {c.field}:"
    old, new = c.canonical
    if d.step is Step.RESTORE and c.direction == "pull":
        return f"{ids} {new!r} -> {old!r}  (mirror edit, sent to every connection)"
    if d.step is Step.RESTORE:
        return f"{ids} {c.vendor[1]!r} -> {c.vendor[0]!r}  (at {connection} only)"
    if d.step in (Step.CONFLICT, Step.LISTED):
        shown = d.now if c.direction == "pull" else f"{d.now!r}, vendor {d.vendor_now!r}"
        return (
            f"{ids} changed since the run (now {shown!s}; the run wrote {new!r} over "
            f"{old!r}): {'already ' if d.step is Step.LISTED else ''}a conflict for a person"
        )
    reason = {
        Step.DONE: "already back to its old value",
        Step.GONE: "the ticket or its link is gone",
        Step.LEGACY: "journaled before undo was possible; left alone",
    }[d.step]
    return f"{ids} {reason}"


def totals(decisions: Sequence[Decision]) -> Mapping[str, int]:
    """How many decisions took each step (every step named, zeros included)."""
    return {step.value: sum(1 for d in decisions if d.step is step) for step in Step}
