"""Recover: finish the create intents a killed or failed run left behind.

Whether an intent reached the vendor is asked of the vendor (``finds_markers``: look for
the marker), or learnt from the pull (``markers_in_pull``: the pull activates an intent
whose marker it sees). An intent is sent again only when it is known not to be at the
vendor (docs/architecture.md §8.4):

- where one read settles it (``one_look``: the vendor's list, not a search index), after
  one look that misses;
- else after two looks that miss, the second at least ``Adapter.look_apart()`` (the pull
  lookback) after the first, whose time ``ticket_links.first_look_at`` keeps across runs;
- for vendors known by the pull, after two complete pulls that started after the intent
  and did not bring its marker, at least ``look_apart()`` apart.

Where neither is possible, an intent whose outcome is unknown waits for the operator; one
that failed with an answer is created again. ``recovery`` decides, per intent; ``recover``
carries the decisions out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sync.db.models import TicketLink
from sync.engine import store
from sync.engine.create import activate, new_ticket, send_create
from sync.engine.journal import ticket_failure
from sync.engine.mapping import Unmapped
from sync.engine.state import RunState


class Recovery(StrEnum):
    LATER = "later"  # not looked for yet, or the second look is not due
    SURFACE = "surface"  # the outcome is unknown and cannot be searched: ask the operator
    FIND = "find"  # look for the marker; if missed, create again or note the first miss
    NOTE = "note"  # a complete pull missed the marker: note the first look
    CREATE = "create"  # known not to have reached the vendor: create again


def recovery(
    link: TicketLink,
    *,
    finds_markers: bool,
    by_pull: bool,
    pulled_since: datetime | None,
    now: datetime,
    apart: timedelta,
) -> Recovery:
    """What to do with the create intent ``link`` at ``now``.

    ``by_pull``: the pull finds markers; ``pulled_since``: when the complete pull of this
    run started (None before it); ``apart``: how far apart two looks must be.
    """
    first = link.first_look_at
    if finds_markers:
        # the vendor can be asked; a second look waits until it is due
        return Recovery.LATER if first is not None and now < first + apart else Recovery.FIND
    if by_pull:
        if pulled_since is None or link.created_at >= pulled_since:
            # the pull has not looked yet, or it started too early to see the intent
            return Recovery.LATER
        if first is None:
            return Recovery.NOTE
        # a second complete pull, started at least ``apart`` after the first, missed it too
        due = pulled_since > first and pulled_since >= first + apart
        return Recovery.CREATE if due else Recovery.LATER
    if link.last_error_kind not in ("item", "not_found"):
        # no answer was seen: the ticket may exist at the vendor
        return Recovery.SURFACE
    # the vendor answered with a refusal: nothing was created
    return Recovery.CREATE


async def recover(state: RunState, pulled_since: datetime | None = None) -> None:
    """Finish the connection's create intents that are due (docs/architecture.md §3.3, §8.4).

    Called before the pull, and (vendors that cannot be searched) again after a complete
    pull with ``pulled_since``, the time that pull started.
    """
    by_pull = state.caps.markers_in_pull and state.direction != "push"
    apart = state.adapter.look_apart()
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
            now=state.clock(),
            apart=apart,
        )
        if step is Recovery.LATER:
            continue
        if step is Recovery.SURFACE:
            _surface_unknown_create(state, link)
            continue
        if step is Recovery.NOTE:
            assert pulled_since is not None
            _note_first_look(state, link, pulled_since)
            continue
        if step is Recovery.FIND:
            if await _found(state, link):
                continue
            if not state.caps.one_look and link.first_look_at is None:
                # one miss proves nothing where a search index may lag: look again later
                _note_first_look(state, link, state.clock())
                continue
        try:
            new = new_ticket(state, ticket)
        except Unmapped as exc:
            ticket_failure(state, link, exc, backoff=True)
            continue
        _note_first_look(state, link, None)  # a new send: its own looks start afresh
        await send_create(state, link, new.values)


async def _found(state: RunState, link: TicketLink) -> bool:
    """Look for the intent's marker at the vendor; activate the link if found."""
    assert link.marker is not None
    marker = link.marker
    found = await state.vendor(lambda: state.adapter.find_marker(marker, since=link.created_at))
    if found is None:
        return False
    with state.write() as session:
        current = session.get(TicketLink, link.id)
        if current is not None:
            activate(state, session, current, found, note="recovered by marker")
    state.counts.created += 1
    return True


def _note_first_look(state: RunState, link: TicketLink, when: datetime | None) -> None:
    """Keep when the first look missed the intent (None: forget it, before a new send)."""
    if link.first_look_at == when:
        return
    with state.write() as session:
        current = session.get(TicketLink, link.id)
        if current is not None and current.state == "creating":
            current.first_look_at = when
    link.first_look_at = when


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
