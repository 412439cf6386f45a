"""The engine's reads and writes of comments (docs/architecture.md §8.5), in small steps.

As in ``store``, every function takes an open session and does not commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sync.db.models import (
    CommentCounter,
    CommentDirty,
    CommentLink,
    SyncConnection,
    TicketComment,
    TicketLink,
)


def digest(body: str) -> str:
    """A short fingerprint of a comment's text, to notice an edit at the vendor."""
    return hashlib.sha256(body.strip().encode()).hexdigest()[:32]


def enable(session: Session, connection: str, on: bool, now: datetime) -> datetime | None:
    """Record when comments were enabled on ``connection`` (cleared while off); return it."""
    row = session.get(SyncConnection, connection)
    if row is None:
        return None
    if on and row.comments_since is None:
        row.comments_since = now
    elif not on and row.comments_since is not None:
        row.comments_since = None
    return row.comments_since


def is_history(created_at: datetime | None, enabled: datetime | None) -> bool:
    """Whether a comment dated ``created_at`` is older than the moment comments were
    ``enabled`` on a connection (docs/architecture.md §8.5). Vendors date comments to the
    second (Sirportly, Kapture, ProProfs), so the comparison is to the second: a comment
    of the second comments were enabled is not history. Undated: not history."""
    if created_at is None:
        return False
    if enabled is None:
        return True
    return created_at < enabled.replace(microsecond=0)


def since(session: Session, connection: str) -> datetime | None:
    row = session.get(SyncConnection, connection)
    return None if row is None else row.comments_since


def private_stopped(session: Session, connection: str) -> str | None:
    """Why private posts stopped on ``connection``, or None when they go on."""
    row = session.get(SyncConnection, connection)
    return None if row is None else row.private_comments_stopped


def stop_private(session: Session, connection: str, reason: str) -> None:
    """Stop private posts on ``connection`` (a reply showed another visibility than asked)."""
    row = session.get(SyncConnection, connection)
    if row is not None and row.private_comments_stopped is None:
        row.private_comments_stopped = reason


def note_counters(
    session: Session,
    connection: str,
    seen: Mapping[int, str | None],
    *,
    baseline: datetime | None = None,
) -> None:
    """Record the counters a pull page saw (ticket id -> counter); a ticket whose comments
    must be read becomes ``due``: its counter moved, it is new to us, or it has none.

    ``baseline`` (the time): a ticket new to us is taken as read at its counter, not made
    due. For the run that enables comments without history: every comment the vendor
    holds then is older than that moment, so reading it would import nothing.
    """
    if not seen:
        return
    rows = {
        row.ticket_id: row
        for row in session.scalars(
            select(CommentCounter).where(
                CommentCounter.connection == connection, CommentCounter.ticket_id.in_(list(seen))
            )
        )
    }
    for ticket_id, counter in seen.items():
        row = rows.get(ticket_id)
        if row is None and baseline is not None and counter is not None:
            session.add(
                CommentCounter(
                    connection=connection,
                    ticket_id=ticket_id,
                    counter=counter,
                    seen=counter,
                    due=False,
                    read_at=baseline,
                )
            )
        elif row is None:
            session.add(
                CommentCounter(connection=connection, ticket_id=ticket_id, seen=counter, due=True)
            )
        elif counter is None or counter != row.counter or row.read_at is None:
            row.seen, row.due = counter, True


def due_batch(
    session: Session, connection: str, after: int, limit: int
) -> list[tuple[int, str, str | None]]:
    """Up to ``limit`` (ticket id, external id, counter seen) of tickets past ``after``
    whose comments are due, on active links."""
    rows = session.execute(
        select(CommentCounter.ticket_id, TicketLink.external_id, CommentCounter.seen)
        .join(
            TicketLink,
            (TicketLink.ticket_id == CommentCounter.ticket_id)
            & (TicketLink.connection == connection),
        )
        .where(
            CommentCounter.connection == connection,
            CommentCounter.due.is_(True),
            CommentCounter.ticket_id > after,
            TicketLink.state == "active",
            TicketLink.external_id.is_not(None),
        )
        .order_by(CommentCounter.ticket_id)
        .limit(limit)
    )
    return [(r[0], str(r[1]), r[2]) for r in rows]


def read_done(
    session: Session, connection: str, ticket_id: int, counter: str | None, now: datetime
) -> None:
    """The ticket's comments were read at ``counter``: not due until it moves again (unless
    the pull saw it move meanwhile)."""
    row = session.get(CommentCounter, (connection, ticket_id))
    if row is None:
        return
    row.counter, row.read_at = counter, now
    row.due = row.seen != counter


def ticket_links_of(session: Session, connection: str, ticket_id: int) -> Sequence[CommentLink]:
    """Every comment link of ``connection`` on the ticket's comments."""
    return session.scalars(
        select(CommentLink)
        .join(TicketComment, TicketComment.id == CommentLink.comment_id)
        .where(CommentLink.connection == connection, TicketComment.ticket_id == ticket_id)
    ).all()


def dirty_batch(session: Session, connection: str, after: int, limit: int) -> list[int]:
    """Up to ``limit`` comment ids of ``connection``'s feed past ``after``, oldest first."""
    return list(
        session.scalars(
            select(CommentDirty.comment_id)
            .where(CommentDirty.connection == connection, CommentDirty.comment_id > after)
            .order_by(CommentDirty.comment_id)
            .limit(limit)
        )
    )


def clear_dirty(session: Session, connection: str, comment_ids: Iterable[int]) -> None:
    ids = list(comment_ids)
    if ids:
        session.execute(
            delete(CommentDirty).where(
                CommentDirty.connection == connection, CommentDirty.comment_id.in_(ids)
            )
        )


def count_feed(session: Session, connection: str) -> int:
    """How many comments wait in ``connection``'s feed."""
    return (
        session.scalar(
            select(func.count())
            .select_from(CommentDirty)
            .where(CommentDirty.connection == connection)
        )
        or 0
    )


def clear_feed(session: Session, connection: str) -> int:
    """Drop the connection's whole comment feed (it does not post comments); return how many."""
    result = session.execute(delete(CommentDirty).where(CommentDirty.connection == connection))
    return int(getattr(result, "rowcount", 0) or 0)


def enqueue_ticket(session: Session, connection: str, ticket_id: int, now: datetime) -> None:
    """Put every comment of the ticket without a link on ``connection`` into its feed (a
    ticket created there by fan-out gets the mirror's comments, in order)."""
    linked = select(CommentLink.comment_id).where(CommentLink.connection == connection)
    queued = select(CommentDirty.comment_id).where(CommentDirty.connection == connection)
    ids = session.scalars(
        select(TicketComment.id).where(
            TicketComment.ticket_id == ticket_id,
            TicketComment.id.not_in(linked),
            TicketComment.id.not_in(queued),
        )
    ).all()
    session.add_all(CommentDirty(connection=connection, comment_id=i, changed_at=now) for i in ids)


def posting_links(session: Session, connection: str) -> Sequence[tuple[CommentLink, str | None]]:
    """Post intents left by earlier runs, with their ticket's external id on ``connection``."""
    rows = session.execute(
        select(CommentLink, TicketLink.external_id)
        .join(TicketComment, TicketComment.id == CommentLink.comment_id)
        .outerjoin(
            TicketLink,
            (TicketLink.ticket_id == TicketComment.ticket_id)
            & (TicketLink.connection == connection),
        )
        .where(CommentLink.connection == connection, CommentLink.state == "posting")
        .order_by(CommentLink.comment_id)
    ).all()
    return [(r[0], r[1]) for r in rows]


def summary(session: Session, connection: str) -> dict[str, int]:
    """``synced``, ``pending``, ``failed`` and ``skipped`` comments of ``connection``.

    Synced: linked at the vendor. Pending: waiting in the feed, or a post intent with no
    error yet. Failed: a post the vendor refused, or one whose fate is ``unknown``.
    """
    states = dict(
        session.execute(
            select(CommentLink.state, func.count())
            .where(CommentLink.connection == connection)
            .group_by(CommentLink.state)
        ).all()
    )
    refused = (
        session.scalar(
            select(func.count())
            .select_from(CommentLink)
            .where(
                CommentLink.connection == connection,
                CommentLink.state == "posting",
                CommentLink.error.is_not(None),
            )
        )
        or 0
    )
    queued = (
        session.scalar(
            select(func.count())
            .select_from(CommentDirty)
            .where(CommentDirty.connection == connection)
        )
        or 0
    )
    return {
        "synced": int(states.get("active", 0)),
        "pending": int(queued) + int(states.get("posting", 0)) - int(refused),
        "failed": int(refused) + int(states.get("unknown", 0)),
        "skipped": int(states.get("skipped", 0)),
    }
