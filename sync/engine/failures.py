"""Tickets the pull could not read, and the list of failing tickets (docs/architecture.md §8.2).

A record that did not parse (``Page.failures``) is one ticket's error, never its page's:

- linked: the error goes on the link (``last_error_kind = "unreadable"``);
- not linked: a row of ``sync_pull_failures`` (error, redacted and capped raw value, first
  and last seen);
- without an id: counted and named in this run's output only (nothing can read it again).

Both kinds are read again on every run (``Adapter.reread``, batched where the vendor
allows) until they read cleanly, which clears them; a ticket the vendor no longer has is
dropped from the table. ``listing`` names every failing ticket of a connection for the
output (``--run-once`` on every pass, up to ``LINES`` lines; the daemon only logs what is
new or changed, noted through ``RunState.note_failure``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from sync.db.models import PullFailure, TicketLink
from sync.engine.state import RunState
from sync.vendors.base import RecordFailure

#: ``TicketLink.last_error_kind`` of a linked ticket whose record could not be read.
UNREADABLE = "unreadable"
#: Failing tickets named per connection and run; the rest are counted.
LINES = 20
#: What the operator can do about a record that could not be read.
READ_AGAIN = "read again every run until it reads cleanly"


@dataclass(frozen=True)
class Listing:
    """The failing tickets of one connection: how many, and the first ``LINES`` named."""

    total: int = 0
    lines: list[str] = field(default_factory=list)

    def render(self, limit: int = LINES) -> list[str]:
        """The lines to print, then "... and N more" when some were left out."""
        more = self.total - min(len(self.lines), limit)
        tail = [f"... and {more} more (see `ticketsync status`)"] if more > 0 else []
        return self.lines[:limit] + tail


def failing_keys(state: RunState, session: Session) -> dict[str, str]:
    """The unlinked failing tickets of the connection: external key -> external id."""
    ids = session.scalars(
        select(PullFailure.external_id).where(PullFailure.connection == state.name)
    )
    return {state.adapter.id_key(i): i for i in ids}


def unreadable_links(state: RunState, session: Session) -> list[str]:
    """External ids of the linked tickets whose last record could not be read."""
    return [
        i
        for i in session.scalars(
            select(TicketLink.external_id).where(
                TicketLink.connection == state.name,
                # an unreadable link always has its error: the partial index of failing
                # links then answers, at the cost of the failures
                TicketLink.last_error.is_not(None),
                TicketLink.last_error_kind == UNREADABLE,
            )
        )
        if i
    ]


def record(
    state: RunState, session: Session, failure: RecordFailure, link: TicketLink | None
) -> None:
    """Record one record that did not parse: on its link, in the table, or (without an id)
    in this run's output only."""
    state.counts.errors += 1
    if failure.external_id is None:
        state.note_failure(f"{state.name}: a record without a ticket id: {failure.error}")
        return
    if link is not None:
        message = state.ticket_message(link, f"{_own(state.name, failure.error)}; {READ_AGAIN}")
        if (link.last_error, link.last_error_kind) != (message, UNREADABLE):
            link.last_error, link.last_error_kind = message, UNREADABLE
            state.note_failure(message)
        return
    now = state.clock()
    row = session.scalars(
        select(PullFailure).where(
            PullFailure.connection == state.name, PullFailure.external_id == failure.external_id
        )
    ).first()
    if row is None:
        row = PullFailure(
            connection=state.name, external_id=failure.external_id, first_seen=now, error=""
        )
        session.add(row)
    if row.error != failure.error:
        row.error = failure.error
        state.note_failure(_unlinked_line(state.name, failure.external_id, failure.error))
    row.raw_value = failure.raw or None
    row.last_seen = now


def clear(state: RunState, session: Session, external_ids: Collection[str]) -> None:
    """Forget the unlinked failures of these tickets (they read cleanly, or are gone)."""
    if external_ids:
        session.execute(
            delete(PullFailure).where(
                PullFailure.connection == state.name,
                PullFailure.external_id.in_(list(external_ids)),
            )
        )


def listing(state: RunState, limit: int = LINES) -> Listing:
    """Every failing ticket of the connection: links with an error, then unlinked failures."""
    failing = (TicketLink.connection == state.name, TicketLink.last_error.is_not(None))
    with state.mirror.read() as session:
        linked = session.scalar(select(func.count()).select_from(TicketLink).where(*failing)) or 0
        unlinked = (
            session.scalar(
                select(func.count())
                .select_from(PullFailure)
                .where(PullFailure.connection == state.name)
            )
            or 0
        )
        lines = list(
            session.scalars(
                select(TicketLink.last_error).where(*failing).order_by(TicketLink.ticket_id)
            ).fetchmany(limit)
        )
        rows = session.execute(
            select(PullFailure.external_id, PullFailure.error)
            .where(PullFailure.connection == state.name)
            .order_by(PullFailure.external_id)
            .limit(max(0, limit - len(lines)))
        ).all()
    lines += [_unlinked_line(state.name, e, error) for e, error in rows]
    return Listing(linked + unlinked, [line for line in lines if line])


def _unlinked_line(connection: str, external_id: str, error: str) -> str:
    text = _own(connection, error)
    return f"{connection}: ticket (not imported) <-> {external_id}: {text}; {READ_AGAIN}"


def _own(connection: str, error: str) -> str:
    """An adapter's message without its leading ``connection: `` (the line names it)."""
    return error.removeprefix(f"{connection}: ")
