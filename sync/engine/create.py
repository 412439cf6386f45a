"""Create: local tickets that match the connection's create rule and have no link yet.

Creates are not idempotent at the vendors (docs/architecture.md §3.3): a create records its
intent first, a link in state ``creating`` with a marker the vendor keeps on the ticket,
in the same transaction that clears the ticket's dirty mark. Only then is the vendor
called. A run killed in between leaves the intent, and the next run's ``recover`` finds
the ticket by its marker instead of creating it twice. Once the vendor answers (or the
ticket is found), ``activate`` makes the link active; which of the values we sent count
as landed is ``merge.activation``'s rule.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from sync.db.models import Ticket, TicketLink
from sync.engine import comment_store, store
from sync.engine.context import CREATE_FIELDS
from sync.engine.crash import crashpoint
from sync.engine.journal import connection_error, ticket_failure
from sync.engine.mapping import Unmapped
from sync.engine.merge import activation
from sync.engine.refused import WriteRefusals
from sync.engine.state import RunState
from sync.errors import ItemError, VendorError
from sync.vendors.base import RemoteTicket


@dataclass(frozen=True)
class NewTicket:
    """What a create sends: vendor values by field, and the link base they make."""

    values: dict[str, str | None]
    base: dict[str, Any]


def wants_create(state: RunState, ticket: Ticket) -> bool:
    """True when the connection creates tickets and ``ticket`` matches its create rule."""
    if not state.creates or state.create_when is None:
        return False
    local = store.local_values(ticket)
    return all(local.get(k) in values for k, values in state.create_when.items())


def new_ticket(state: RunState, ticket: Ticket) -> NewTicket:
    """The vendor values to create ``ticket`` with, and their base; may raise Unmapped."""
    local = store.local_values(ticket)
    values: dict[str, str | None] = {}
    base: dict[str, Any] = {}
    for name in dict.fromkeys([*CREATE_FIELDS, *state.rules.maps]):
        if name not in state.caps.readable and name not in state.caps.writable:
            continue
        vendor = state.rules.create_map(name).to_vendor(local.get(name))
        values[name] = vendor
        if name in state.rules.maps:
            base[name] = {"local": local.get(name), "remote": vendor}
    return NewTicket(values, base)


async def create(
    state: RunState, ticket: Ticket, version: int, *, refusals: WriteRefusals | None = None
) -> bool:
    """Record the intent to create ``ticket`` (clearing its dirty mark ``version``), then
    create it. False when a value cannot be mapped: nothing is recorded, and the caller
    clears the dirty mark. ``refusals``: a create answered 429 is sent again through it."""
    try:
        new = new_ticket(state, ticket)
    except Unmapped as exc:
        state.counts.errors += 1
        connection_error(state, exc, ticket.id)
        return False
    marker = f"tsync-{ticket.id}-{secrets.token_hex(4)}"
    with state.write() as session:
        link = TicketLink(
            ticket_id=ticket.id,
            connection=state.name,
            state="creating",
            marker=marker,
            base=new.base,
        )
        session.add(link)
        session.flush()
        store.clear_dirty(session, state.name, ticket.id, version)
    crashpoint("after_create_intent")
    await send_create(state, link, new.values, refusals=refusals)
    return True


async def send_create(
    state: RunState,
    link: TicketLink,
    values: dict[str, str | None],
    *,
    refusals: WriteRefusals | None = None,
) -> None:
    """Create the ticket of the intent ``link`` at the vendor and activate the link.

    A 429 means the vendor did not create it: with ``refusals`` it is sent again, same marker.
    Where the vendor can be searched for markers, it is searched first, in case the 429
    answered a second call of the create (Kapture sets the sub-status with one).
    """
    assert link.marker is not None
    marker = link.marker
    refused = False
    while True:
        try:
            found = await _find(state, link) if refused else None
            remote: RemoteTicket = (
                found
                if found is not None
                else await state.vendor(lambda: state.adapter.create(values, marker), write=True)
            )
            break
        except ItemError as exc:
            ticket_failure(state, link, exc, backoff=True)
            return
        except VendorError as exc:
            refused = refusals is not None and await refusals.wait(exc, create=True)
            if refused:
                continue
            ticket_failure(state, link, exc, backoff=False)
            raise
    crashpoint("after_vendor_ack")
    with state.write() as session:
        current = session.get(TicketLink, link.id)
        if current is not None:
            activate(state, session, current, remote, note="created")
    state.counts.created += 1


async def _find(state: RunState, link: TicketLink) -> RemoteTicket | None:
    """The ticket carrying the intent's marker where the vendor can be searched for it,
    else None."""
    marker = link.marker
    if not state.caps.finds_markers or marker is None:
        return None
    return await state.vendor(lambda: state.adapter.find_marker(marker, since=link.created_at))


def activate(
    state: RunState, session: Session, link: TicketLink, remote: RemoteTicket, note: str
) -> None:
    """A create intent found its ticket at the vendor: the link becomes active.

    The base settles per field as ``merge.activation`` says; a field that did not land is
    marked for the next push, and the ticket is marked dirty so that push happens.
    """
    settled = activation(
        link.base, remote.fields, state.rules.writable, state.caps.create_followups
    )
    link.base = settled.base
    if settled.pending:
        store.mark_dirty(session, state.name, link.ticket_id)
    link.external_id = remote.external_id
    link.external_key = state.adapter.id_key(remote.external_id)
    link.state = "active"
    link.remote_modified_at = remote.modified_at
    link.fail_count, link.next_retry_at = 0, None
    link.last_error = link.last_error_kind = None
    link.first_look_at = None
    state.journal(session, "create", link.ticket_id, remote.external_id, note=note)
    if state.comments.pushes:
        # a ticket created by fan-out gets the mirror's comments, in order (§8.5)
        comment_store.enqueue_ticket(session, state.name, link.ticket_id, state.clock())
