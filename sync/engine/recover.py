"""Recover: finish the create intents a killed or failed run left behind.

Whether an intent reached the vendor is asked of the vendor (``finds_markers``: search
for the marker), or learnt from the pull (``markers_in_pull``: the pull activates an
intent whose marker it sees, so an intent older than a complete pull that is still
``creating`` never reached the vendor). Where neither is possible, an intent whose outcome
is unknown waits for the operator; one that failed with an answer is created again.
``recovery`` decides, per intent; ``recover`` carries the decisions out.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sync.db.models import TicketLink
from sync.engine import store
from sync.engine.create import activate, new_ticket, send_create
from sync.engine.journal import ticket_failure
from sync.engine.mapping import Unmapped
from sync.engine.state import RunState


class Recovery(StrEnum):
    LATER = "later"  # the pull has not looked for its marker yet
    SURFACE = "surface"  # the outcome is unknown and cannot be searched: ask the operator
    FIND = "find"  # search the vendor for the marker; create again if it is not there
    CREATE = "create"  # known not to have reached the vendor: create again


def recovery(
    link: TicketLink, *, finds_markers: bool, by_pull: bool, pulled_since: datetime | None
) -> Recovery:
    """What to do with the create intent ``link``.

    ``by_pull``: the pull finds markers; ``pulled_since``: when the complete pull of this
    run started (None before it).
    """
    if finds_markers:
        # the vendor can be asked
        return Recovery.FIND
    if by_pull:
        # an intent from before a complete pull that did not link it never landed
        if pulled_since is None or link.created_at >= pulled_since:
            return Recovery.LATER
        return Recovery.CREATE
    if link.last_error_kind not in ("item", "not_found"):
        # no answer was seen: the ticket may exist at the vendor
        return Recovery.SURFACE
    # the vendor answered with a refusal: nothing was created
    return Recovery.CREATE


async def recover(state: RunState, pulled_since: datetime | None = None) -> None:
    """Finish the connection's create intents that are due (docs/architecture.md §3.3).

    Called before the pull, and (vendors that cannot be searched) again after a complete
    pull with ``pulled_since``, the time that pull started.
    """
    by_pull = state.caps.markers_in_pull and state.direction != "push"
    with state.mirror.read() as session:
        pending = list(store.creating_links(session, state.name, state.clock()))
        tickets = store.tickets_by_id(session, [link.ticket_id for link in pending])
    for link in pending:
        ticket = tickets.get(link.ticket_id)
        if ticket is None:
            continue
        step = recovery(
            link,
            finds_markers=state.caps.finds_markers,
            by_pull=by_pull,
            pulled_since=pulled_since,
        )
        if step is Recovery.LATER:
            continue
        if step is Recovery.SURFACE:
            _surface_unknown_create(state, link)
            continue
        if step is Recovery.FIND and await _found(state, link):
            continue
        try:
            new = new_ticket(state, ticket)
        except Unmapped as exc:
            ticket_failure(state, link, exc, backoff=True)
            continue
        await send_create(state, link, new.values)


async def _found(state: RunState, link: TicketLink) -> bool:
    """Search the vendor for the intent's marker; activate the link if found."""
    assert link.marker is not None
    found = await state.adapter.find_marker(link.marker, since=link.created_at)
    if found is None:
        return False
    with state.write() as session:
        current = session.get(TicketLink, link.id)
        if current is not None:
            activate(state, session, current, found, note="recovered by marker")
    state.counts.created += 1
    return True


def _surface_unknown_create(state: RunState, link: TicketLink) -> None:
    message = (
        f"the outcome of creating ticket #{link.ticket_id} is unknown and "
        f"{state.adapter.vendor} cannot be searched for marker {link.marker}; check the "
        "vendor for that ticket before letting ticketsync create it again"
    )
    with state.write() as session:
        current = session.get(TicketLink, link.id)
        if current is not None and current.last_error_kind != "unknown_create":
            current.last_error = state.ticket_message(current, message)
            current.last_error_kind = "unknown_create"
    state.counts.errors += 1
