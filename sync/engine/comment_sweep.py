"""Comment sweep: read the comment counters of the open linked tickets in bulk, at most
every ``Adapter.comment_sweep_seconds`` (docs/architecture.md §8.5).

For vendors where a new comment may not show in ``changed_since`` (Zoho: whether a
comment moves ``modifiedTime`` is unconfirmed), the pull alone could miss it. An adapter
with ``capabilities.comment_counters`` reads ``counters_per_call`` tickets' counters per
request; each batch is recorded in its own transaction exactly as a pull page's counters
are (``comment_store.note_counters``), so a counter that moved makes the ticket's
comments due and ``CommentPull`` reads them in the same run. The end of a complete sweep
is stored on ``sync_connections.comments_swept_at``: a sweep that is killed halfway, or
meets a transient or auth error (which fails the run, as in the pull), is done again by
the next run. A reply the adapter cannot use (``ProtocolError``, ``ItemError``: say, a
vendor refusing the id search) is reported and counted as an error without failing the
run, and the sweep waits its interval before it tries again, so the rest of the run
(pushes, posts) goes on. Tickets resolved or closed in the mirror are left out (a comment
on one shows when its ticket changes).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select

from sync.db.models import SyncConnection, Ticket, TicketLink
from sync.engine import comment_store
from sync.engine.comments_pull import wants_pull
from sync.engine.state import RunState
from sync.errors import ItemError, ProtocolError

#: Mirror statuses whose tickets the sweep leaves out.
DONE = ("resolved", "closed")


def interval(state: RunState) -> timedelta | None:
    """How often the connection sweeps, or None when it does not."""
    seconds = state.adapter.comment_sweep_seconds
    if not (wants_pull(state) and state.caps.comment_counters) or seconds is None:
        return None
    return timedelta(seconds=seconds)


def swept_at(state: RunState) -> datetime | None:
    with state.mirror.read() as session:
        row = session.get(SyncConnection, state.name)
        return None if row is None else row.comments_swept_at


def is_due(state: RunState) -> bool:
    """Whether this run sweeps: the connection sweeps and its time has come (never swept:
    now, so the run that enables comments records every counter as a baseline)."""
    every = interval(state)
    if every is None:
        return False
    last = swept_at(state)
    return last is None or state.clock() - last >= every


def open_links(state: RunState) -> list[tuple[int, str]]:
    """(ticket id, external id) of the connection's active links to open tickets."""
    with state.mirror.read() as session:
        rows = session.execute(
            select(TicketLink.ticket_id, TicketLink.external_id)
            .join(Ticket, Ticket.id == TicketLink.ticket_id)
            .where(
                TicketLink.connection == state.name,
                TicketLink.state == "active",
                TicketLink.external_id.is_not(None),
                Ticket.status.not_in(DONE) | Ticket.status.is_(None),
            )
            .order_by(TicketLink.ticket_id)
        ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


class CommentSweep:
    """Sweep the open linked tickets' comment counters when the connection's time has come."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def run(self) -> int:
        """Sweep if due; return how many counter requests were sent."""
        state = self.state
        if not is_due(state):
            return 0
        started = state.clock()
        links = open_links(state)
        size = max(1, state.adapter.counters_per_call)
        requests = 0
        for start in range(0, len(links), size):
            state.check_stop()
            requests += 1
            try:
                await self._batch(links[start : start + size])
            except (ItemError, ProtocolError) as exc:
                state.counts.errors += 1
                state.report(f"{state.name}: comment counter sweep: {exc}")
                break
        with state.write() as session:
            row = session.get(SyncConnection, state.name)
            if row is not None:
                row.comments_swept_at = started
        return requests

    async def _batch(self, batch: list[tuple[int, str]]) -> None:
        state = self.state
        ids = [external_id for _, external_id in batch]
        counters = await state.vendor(partial(state.adapter.comment_counters, ids))
        found = {state.adapter.id_key(k): v for k, v in counters.items()}
        seen = {
            ticket_id: found[key]
            for ticket_id, external_id in batch
            if (key := state.adapter.id_key(external_id)) in found
        }
        baseline = None
        if state.comments_enabled_now and not state.comments.history:
            baseline = state.comments_since  # what the vendor holds now is history
        with state.write() as session:
            comment_store.note_counters(session, state.name, seen, baseline=baseline)
