"""The engine's reads and writes of the mirror, in small named steps.

Every function takes an open session and does not commit: the caller owns the
transaction, so a page or a ticket is committed whole or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, literal, select, text, update
from sqlalchemy.orm import Session

from sync.db.models import (
    Conflict,
    JournalEntry,
    SyncConnection,
    Ticket,
    TicketDirty,
    TicketLink,
    utcnow,
)
from sync.engine.mapping import canonical_text, same_vendor_value
from sync.vendors.base import SYNC_FIELDS


def register(session: Session, name: str, vendor: str, creates: bool) -> SyncConnection:
    """The connection's state row, created on first sight.

    A connection that creates tickets and is new (or newly creates) marks every existing
    ticket dirty for itself once, so its create rule sees tickets that predate it.
    """
    row = session.get(SyncConnection, name)
    if row is None:
        row = SyncConnection(name=name, vendor=vendor, creates=False)
        session.add(row)
        session.flush()
    if creates and not row.creates:
        session.execute(
            insert(TicketDirty).from_select(
                ["connection", "ticket_id", "version", "changed_at"],
                select(
                    literal(name), Ticket.id, literal(1), literal(utcnow(), Ticket.updated_at.type)
                ).where(
                    ~Ticket.id.in_(
                        select(TicketDirty.ticket_id).where(TicketDirty.connection == name)
                    )
                ),
            )
        )
    row.creates = creates
    row.vendor = vendor
    return row


def local_values(ticket: Ticket) -> dict[str, str | None]:
    """The ticket's synced columns as canonical strings."""
    return {name: canonical_text(getattr(ticket, name)) for name in SYNC_FIELDS}


def links_by_external(
    session: Session, connection: str, keys: Iterable[str]
) -> dict[str, TicketLink]:
    """Links by normalised external id (``external_key``, see ``Adapter.id_key``)."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    rows = session.scalars(
        select(TicketLink).where(
            TicketLink.connection == connection, TicketLink.external_key.in_(wanted)
        )
    )
    return {row.external_key: row for row in rows if row.external_key is not None}


def links_by_marker(
    session: Session, connection: str, markers: Iterable[str]
) -> dict[str, TicketLink]:
    wanted = [m for m in dict.fromkeys(markers) if m]
    if not wanted:
        return {}
    rows = session.scalars(
        select(TicketLink).where(
            TicketLink.connection == connection,
            TicketLink.state == "creating",
            TicketLink.marker.in_(wanted),
        )
    )
    return {row.marker: row for row in rows if row.marker is not None}


def links_by_ticket(
    session: Session, connection: str, ticket_ids: Iterable[int]
) -> dict[int, TicketLink]:
    ids = list(dict.fromkeys(ticket_ids))
    if not ids:
        return {}
    rows = session.scalars(
        select(TicketLink).where(TicketLink.connection == connection, TicketLink.ticket_id.in_(ids))
    )
    return {row.ticket_id: row for row in rows}


def links_by_id(session: Session, ids: Iterable[int]) -> dict[int, TicketLink]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    return {
        row.id: row for row in session.scalars(select(TicketLink).where(TicketLink.id.in_(wanted)))
    }


def tickets_by_id(session: Session, ids: Iterable[int], *, lock: bool = False) -> dict[int, Ticket]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    query = select(Ticket).where(Ticket.id.in_(wanted))
    if lock:
        query = query.with_for_update()
    return {t.id: t for t in session.scalars(query)}


def dirty_batch(session: Session, connection: str, after: int, limit: int) -> list[tuple[int, int]]:
    """Up to ``limit`` (ticket_id, version) marks of ``connection`` past ticket ``after``."""
    rows = session.execute(
        select(TicketDirty.ticket_id, TicketDirty.version)
        .where(TicketDirty.connection == connection, TicketDirty.ticket_id > after)
        .order_by(TicketDirty.ticket_id)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


_DIRTY = cast(Table, TicketDirty.__table__)
#: Built once: a statement made per call spends more CPU in SQLAlchemy than in the database.
_CLEAR_DIRTY = delete(_DIRTY).where(
    _DIRTY.c.connection == bindparam("c"),
    _DIRTY.c.ticket_id == bindparam("t"),
    _DIRTY.c.version == bindparam("v"),
)


def clear_dirty(session: Session, connection: str, ticket_id: int, version: int) -> None:
    """Remove the mark, unless a writer touched the ticket again since ``version`` was read."""
    clear_dirty_many(session, connection, [(ticket_id, version)])


#: PostgreSQL: a mark another transaction holds (a writer bumping its version, right now)
#: is skipped, not waited for. It is about to change, so the version match would fail
#: anyway; and a group commit that never waits on marks cannot deadlock with a bulk
#: UPDATE whose trigger locks the same marks in another order.
_CLEAR_DIRTY_PG = text(
    "DELETE FROM ticket_dirty WHERE (connection, ticket_id) IN ("
    "SELECT connection, ticket_id FROM ticket_dirty "
    "WHERE connection = :c AND ticket_id = :t AND version = :v FOR UPDATE SKIP LOCKED)"
)


def clear_dirty_many(session: Session, connection: str, marks: Sequence[tuple[int, int]]) -> None:
    """``clear_dirty`` for each (ticket_id, version) of ``marks``, in one call.

    On PostgreSQL a mark locked by another transaction stays (see ``_CLEAR_DIRTY_PG``):
    the ticket is looked at again on the next run, which finds nothing to do.
    """
    if not marks:
        return
    statement = _CLEAR_DIRTY_PG if session.get_bind().dialect.name == "postgresql" else _CLEAR_DIRTY
    session.connection().execute(statement, [{"c": connection, "t": t, "v": v} for t, v in marks])


def mark_dirty(session: Session, connection: str, ticket_id: int) -> None:
    """Make ``connection`` look at the ticket again on its next run."""
    row = session.get(TicketDirty, (connection, ticket_id))
    if row is None:
        session.add(
            TicketDirty(connection=connection, ticket_id=ticket_id, version=1, changed_at=utcnow())
        )
    else:
        row.version += 1


def count_dirty(session: Session, connection: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TicketDirty)
            .where(TicketDirty.connection == connection)
        )
        or 0
    )


def count_links(session: Session, connection: str, state: str = "active") -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TicketLink)
            .where(TicketLink.connection == connection, TicketLink.state == state)
        )
        or 0
    )


def creating_links(session: Session, connection: str, now: datetime) -> Sequence[TicketLink]:
    """Create intents that are due: the vendor may or may not have the ticket."""
    return session.scalars(
        select(TicketLink).where(
            TicketLink.connection == connection,
            TicketLink.state == "creating",
            (TicketLink.next_retry_at.is_(None)) | (TicketLink.next_retry_at <= now),
        )
    ).all()


_TICKETS = cast(Table, Ticket.__table__)
_INSERT_TICKETS = insert(_TICKETS).returning(_TICKETS.c.id, sort_by_parameter_order=True)


def insert_tickets(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert new tickets (``rows``: column values) in one statement; their ids, in order."""
    columns = sorted({name for row in rows for name in row}) or ["title"]
    params = [{name: row.get(name) for name in columns} for row in rows]
    result = session.connection().execute(_INSERT_TICKETS, params)
    return [row[0] for row in result]


def write_ticket(session: Session, ticket_id: int, values: Mapping[str, Any]) -> None:
    if values:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


_JOURNAL = insert(cast(Table, JournalEntry.__table__))


def journal_row(
    *,
    run_id: int | None,
    connection: str,
    action: str,
    ticket_id: int | None = None,
    external_id: str | None = None,
    field: str | None = None,
    old: str | None = None,
    new: str | None = None,
    note: str | None = None,
    generation: int | None = None,
    canonical: tuple[str | None, str | None] = (None, None),
    vendor: tuple[str | None, str | None] = (None, None),
    undo_of: int | None = None,
) -> dict[str, Any]:
    """One journal entry as the parameters ``journal_many`` writes.

    ``canonical`` / ``vendor``: a field change's (old, new) in the mirror's and in the
    vendor's values (docs/architecture.md §8.1); ``undo_of``: the run an undo takes back.
    """
    return {
        "at": utcnow(),
        "run_id": run_id,
        "connection": connection,
        "action": action,
        "ticket_id": ticket_id,
        "external_id": external_id,
        "field": field,
        "old_value": old,
        "new_value": new,
        "note": note,
        "generation": generation,
        "old_canonical": canonical[0],
        "new_canonical": canonical[1],
        "old_vendor": vendor[0],
        "new_vendor": vendor[1],
        "undo_of": undo_of,
    }


def journal(session: Session, **entry: Any) -> None:
    """Write one journal entry (``entry``: the arguments of ``journal_row``)."""
    journal_many(session, [journal_row(**entry)])


def journal_many(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    # Core, with one statement built once: journal rows are never read back in the
    # transaction that writes them
    if rows:
        session.connection().execute(_JOURNAL, list(rows))


def superseded_sends(
    session: Session,
    connection: str,
    ticket_id: int,
    generation: int,
    since: datetime,
    fields: Sequence[str],
) -> dict[str, list[str | None]]:
    """Values that updates of lease generations before ``generation`` sent for ``fields``
    of the ticket since ``since``, by field (``send`` journal entries, docs/architecture.md
    §7.3)."""
    rows = session.execute(
        select(JournalEntry.field, JournalEntry.new_value).where(
            JournalEntry.ticket_id == ticket_id,
            JournalEntry.connection == connection,
            JournalEntry.action == "send",
            JournalEntry.generation < generation,
            JournalEntry.at >= since,
            JournalEntry.field.in_(fields),
        )
    )
    found: dict[str, list[str | None]] = {}
    for name, value in rows:
        found.setdefault(str(name), []).append(value)
    return found


def refresh_pending_conflict(
    session: Session, conflict_id: int | None, remote: str | None
) -> Conflict | None:
    """Give a pending conflict the vendor's latest value; return it if that value changed.

    Settling ``--take remote`` writes the conflict's vendor value into the mirror, and
    ``--take local`` pushes against it: a value the vendor has since replaced would leave
    the two sides apart, since the pull's cursor has moved past that ticket.
    """
    conflict = session.get(Conflict, conflict_id) if conflict_id is not None else None
    if conflict is None or conflict.resolution != "pending":
        return None
    if same_vendor_value(conflict.remote_value, remote):
        return None
    conflict.remote_value = remote
    return conflict


def record_conflict(session: Session, **values: Any) -> Conflict:
    conflict = Conflict(**values)
    session.add(conflict)
    session.flush()
    return conflict
