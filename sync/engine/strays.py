"""Strays: a second vendor ticket for one mirror ticket, reported and never imported.

A pulled vendor ticket that carries one of our create markers, while the marker's mirror
ticket already has a link on this connection (any state but an intent waiting for that
very marker), is a duplicate: a create that reached the vendor twice
(docs/architecture.md §8.4). It is linked nowhere, never imported as a new mirror ticket,
never fanned out, matched or given comments. It is recorded once in ``sync_strays``,
journaled (action ``stray``), counted in the run's ``counts.strays``
(``ticketsync_strays_total``), listed by ``status``, and never deleted by ticketsync.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sync.db.models import SyncStray, TicketLink
from sync.engine.state import RunState
from sync.vendors.base import RemoteTicket

log = logging.getLogger(__name__)

#: Our create markers: ``tsync-<ticket id>-<random hex>`` (``create.intend``).
_MARKER = re.compile(r"^tsync-(\d+)-[0-9a-f]+$")


def marker_owner(session: Session, connection: str, marker: str) -> TicketLink | None:
    """The link on ``connection`` of the mirror ticket ``marker`` was made for: the link
    that carries the marker, else any link of the ticket the marker names; None if none."""
    match = _MARKER.match(marker)
    ticket_id = int(match.group(1)) if match else None
    wanted = [TicketLink.marker == marker]
    if ticket_id is not None:
        wanted.append(TicketLink.ticket_id == ticket_id)
    rows = session.scalars(
        select(TicketLink).where(TicketLink.connection == connection, or_(*wanted))
    ).all()
    return next((r for r in rows if r.marker == marker), rows[0] if rows else None)


def record(state: RunState, session: Session, remote: RemoteTicket, owner: TicketLink) -> None:
    """Record ``remote`` as a stray of ``owner``'s ticket: once, journaled, counted."""
    assert remote.marker is not None
    seen = session.scalar(
        select(SyncStray.id).where(
            SyncStray.connection == state.name, SyncStray.external_id == remote.external_id
        )
    )
    if seen is not None:
        return
    session.add(
        SyncStray(
            connection=state.name,
            external_id=remote.external_id,
            ticket_id=owner.ticket_id,
            marker=remote.marker,
            first_seen=state.clock(),
        )
    )
    session.flush()
    state.counts.strays += 1
    state.journal(
        session,
        "stray",
        owner.ticket_id,
        remote.external_id,
        note=f"duplicate of {owner.external_id or '(creating)'}: carries marker "
        f"{remote.marker}; not imported, left at the vendor",
    )
    log.warning(
        "%s: vendor ticket %s is a duplicate of ticket #%d (marker %s); not imported, "
        "see `ticketsync status`",
        state.name,
        remote.external_id,
        owner.ticket_id,
        remote.marker,
    )
