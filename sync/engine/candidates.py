"""The ``match_candidates`` table: what the engine and the ``match`` commands read and write.

docs/architecture.md §8.7. A candidate's ``state`` moves ``pending`` -> ``approved`` ->
``linked``, or ``pending`` -> ``rejected`` (``done_at`` set once the vendor ticket is
imported). ``approved`` and ``rejected`` without ``done_at`` are requests: the
connection's next pass carries them out (``sync.engine.adopt.settle``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from sync.db.models import MatchCandidate, Ticket, TicketLink
from sync.engine.matching import Pair, Side, normal_email, normal_subject
from sync.vendors.base import MatchKeys, RemoteTicket

#: States in which neither side of a candidate is imported or created on its connection.
WAITING = ("pending", "approved")
#: The longest text kept in a snapshot.
SNAPSHOT_CHARS = 200


def states_by_key(session: Session, connection: str, keys: Sequence[str]) -> dict[str, str]:
    """The candidate state of each of ``keys`` (vendor id keys) that has a candidate."""
    if not keys:
        return {}
    rows = session.execute(
        select(MatchCandidate.external_key, MatchCandidate.state).where(
            MatchCandidate.connection == connection, MatchCandidate.external_key.in_(keys)
        )
    )
    return {key: state for key, state in rows}


def waiting_tickets(session: Session, connection: str) -> set[int]:
    """Mirror tickets with a pending or approved candidate on ``connection``."""
    return set(
        session.scalars(
            select(MatchCandidate.ticket_id).where(
                MatchCandidate.connection == connection, MatchCandidate.state.in_(WAITING)
            )
        )
    )


def unlinked_tickets(session: Session, connection: str) -> Iterator[tuple[int, Side]]:
    """The mirror tickets with no link and no waiting candidate on ``connection``, as sides."""
    linked = select(TicketLink.ticket_id).where(TicketLink.connection == connection)
    waiting = select(MatchCandidate.ticket_id).where(
        MatchCandidate.connection == connection, MatchCandidate.state.in_(WAITING)
    )
    rows = session.execute(
        select(Ticket.id, Ticket.requester_email, Ticket.title, Ticket.created_at)
        .where(Ticket.id.not_in(linked), Ticket.id.not_in(waiting))
        .order_by(Ticket.id)
        .execution_options(yield_per=1000)
    )
    for ticket_id, email, title, created_at in rows:
        yield (
            ticket_id,
            Side(str(ticket_id), normal_email(email), normal_subject(title), created_at),
        )


def remote_side(key: str, keys: MatchKeys) -> Side:
    """A vendor ticket's normalised keys."""
    return Side(
        key,
        normal_email(keys.requester_email),
        normal_subject(keys.subject),
        keys.created_at,
        (keys.reference or "").strip() or None,
    )


def snapshot(remote: RemoteTicket, keys: MatchKeys) -> dict[str, Any]:
    """What the reviewer sees of the vendor side: its keys and status, each capped."""

    def cap(value: str | None) -> str | None:
        return None if value is None else value[:SNAPSHOT_CHARS]

    return {
        "external_id": cap(remote.external_id),
        "subject": cap(keys.subject),
        "requester_email": cap(keys.requester_email),
        "created_at": keys.created_at.isoformat() if keys.created_at else None,
        "reference": cap(keys.reference),
        "status": cap(remote.fields.get("status")),
    }


def record(
    session: Session,
    connection: str,
    pair: Pair,
    remote: RemoteTicket,
    keys: MatchKeys,
    *,
    approved: bool,
    now: datetime,
) -> MatchCandidate:
    """Add the candidate of ``pair``; ``approved`` when its score passes ``auto_link_above``."""
    row = MatchCandidate(
        connection=connection,
        ticket_id=pair.ticket_id,
        external_id=remote.external_id,
        external_key=pair.external_key,
        score=pair.score,
        reasons=list(pair.reasons),
        snapshot=snapshot(remote, keys),
        state="approved" if approved else "pending",
        created_at=now,
        decided_at=now if approved else None,
    )
    session.add(row)
    return row


def requests(session: Session, connection: str) -> list[MatchCandidate]:
    """The decisions a pass is to carry out: approved pairs, rejected ones not yet imported."""
    return list(
        session.scalars(
            select(MatchCandidate)
            .where(
                MatchCandidate.connection == connection,
                or_(
                    MatchCandidate.state == "approved",
                    and_(MatchCandidate.state == "rejected", MatchCandidate.done_at.is_(None)),
                ),
            )
            .order_by(MatchCandidate.id)
        )
    )


def pending_counts(session: Session) -> dict[str, int]:
    """Pending candidates per connection (for ``status``)."""
    rows = session.execute(
        select(MatchCandidate.connection, func.count())
        .where(MatchCandidate.state == "pending")
        .group_by(MatchCandidate.connection)
    )
    return {connection: int(count) for connection, count in rows}


def listed(session: Session, connections: Iterable[str] | None = None) -> list[MatchCandidate]:
    """Candidates still waiting (pending, or approved and not yet linked), best first."""
    query = select(MatchCandidate).where(MatchCandidate.state.in_(WAITING))
    if connections is not None:
        query = query.where(MatchCandidate.connection.in_(list(connections)))
    return list(
        session.scalars(
            query.order_by(
                MatchCandidate.connection, MatchCandidate.score.desc(), MatchCandidate.id
            )
        )
    )


def decide(session: Session, ids: Iterable[int], state: str, now: datetime) -> list[MatchCandidate]:
    """Mark the pending candidates ``ids`` ``approved`` or ``rejected``; the changed rows."""
    wanted = list(dict.fromkeys(ids))
    rows = list(
        session.scalars(
            select(MatchCandidate)
            .where(MatchCandidate.id.in_(wanted), MatchCandidate.state == "pending")
            .order_by(MatchCandidate.id)
        )
    )
    for row in rows:
        row.state, row.decided_at = state, now
    return rows


def at_least(session: Session, score: float, connections: Iterable[str]) -> list[int]:
    """The pending candidates scoring at least ``score`` on ``connections``."""
    return list(
        session.scalars(
            select(MatchCandidate.id)
            .where(
                MatchCandidate.state == "pending",
                MatchCandidate.score >= score,
                MatchCandidate.connection.in_(list(connections)),
            )
            .order_by(MatchCandidate.id)
        )
    )
