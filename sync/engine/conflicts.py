"""Conflicts left for the operator (``manual`` policy): list them, settle one.

Settling writes the chosen value where it must go: ``--take remote`` writes the vendor's
value into the mirror (attributed to the connection, so it is not pushed back);
``--take local`` keeps the mirror's value and marks the ticket so the next run pushes
it. Either way the field's base moves past the conflict and the choice is journaled.

A conflict an undo left (policy ``undo``, docs/architecture.md §8.7: the field changed
again after the undone run) holds the value now as ``local`` and the value the undo would
put back as ``remote_canonical``: ``--take remote`` writes that value into the mirror as
a local edit, which every connection sends on; ``--take local`` keeps the value now.
"""

from __future__ import annotations

from typing import Any

from sync.config import Config
from sync.db import Mirror
from sync.db.models import Conflict, Ticket, TicketLink, utcnow
from sync.engine import store
from sync.engine.mapping import FieldMap, column_value
from sync.engine.undo import UNDO_POLICY
from sync.errors import UserError


def pending(mirror: Mirror) -> list[dict[str, Any]]:
    """Open conflicts, oldest first."""
    with mirror.read() as session:
        rows = (
            session.query(Conflict)
            .filter(Conflict.resolution == "pending")
            .order_by(Conflict.id)
            .all()
        )
        return [
            {
                "id": c.id,
                "connection": c.connection,
                "ticket_id": c.ticket_id,
                "external_id": c.external_id,
                "field": c.field,
                "base": c.base_value,
                "local": c.local_value,
                "remote": c.remote_value,
                "since": c.created_at.isoformat(),
                "policy": c.policy,
            }
            for c in rows
        ]


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no open conflicts"
    lines = [f"{len(rows)} open conflict(s):"]
    for r in rows:
        if r.get("policy") == UNDO_POLICY:
            lines.append(
                f"  #{r['id']}  {r['connection']}  ticket #{r['ticket_id']}  {r['field']}: "
                f"changed since an undone run: now {r['local']!r}; remote = the undo's "
                f"value (the run wrote {r['base']!r})"
            )
            continue
        lines.append(
            f"  #{r['id']}  {r['connection']}  ticket #{r['ticket_id']} <-> {r['external_id']}"
            f"  {r['field']}: local {r['local']!r}, remote {r['remote']!r} (was {r['base']!r})"
        )
    lines.append("settle one with: ticketsync conflicts resolve ID --take local|remote")
    return "\n".join(lines)


def resolve(mirror: Mirror, config: Config, conflict_id: int, take: str) -> str:
    """Settle conflict ``conflict_id`` in favour of ``take``; return a one-line summary."""
    with mirror.read() as session:
        conflict = session.get(Conflict, conflict_id)
        if conflict is None or conflict.resolution != "pending":
            raise UserError(f"conflict #{conflict_id} does not exist or is already settled")
        connection = conflict.connection
        if conflict.policy == UNDO_POLICY:
            return _resolve_undo(mirror, conflict_id, take)
    fields = config.connections[connection].fields if connection in config.connections else {}
    fmap = FieldMap(conflict.field, fields.get(conflict.field))
    with mirror.write(origin=connection) as session:
        conflict = session.get(Conflict, conflict_id)
        assert conflict is not None
        link = (
            session.query(TicketLink)
            .filter_by(connection=connection, ticket_id=conflict.ticket_id)
            .one_or_none()
        )
        ticket = session.get(Ticket, conflict.ticket_id)
        if link is None or ticket is None:
            raise UserError(f"conflict #{conflict_id}: its ticket or link no longer exists")
        base = {k: dict(v) for k, v in link.base.items()}
        if take == "remote":
            canonical = fmap.to_canonical(conflict.remote_value, conflict.local_value)
            store.write_ticket(
                session, ticket.id, {conflict.field: column_value(conflict.field, canonical)}
            )
            base[conflict.field] = {"local": canonical, "remote": conflict.remote_value}
        else:
            # keep the local value; the vendor's value becomes the base and the local side is
            # marked still to send, so it is pushed even if it went back to the old base value
            base[conflict.field] = {
                "local": conflict.base_value,
                "remote": conflict.remote_value,
                "pending_push": True,
            }
            store.mark_dirty(session, connection, ticket.id)
        link.base = base
        conflict.resolution = take
        conflict.resolved_at = utcnow()
        store.journal(
            session,
            run_id=None,
            connection=connection,
            action="resolve",
            ticket_id=ticket.id,
            external_id=link.external_id,
            field=conflict.field,
            old=conflict.local_value,
            new=conflict.remote_value,
            note=f"conflict #{conflict_id}: operator took {take}",
        )
    return f"conflict #{conflict_id} settled: {take} value kept for {conflict.field}"


def _resolve_undo(mirror: Mirror, conflict_id: int, take: str) -> str:
    """Settle an undo's conflict: ``remote`` puts the undone value back as a local edit
    (no origin: every connection sends it on), ``local`` keeps the value now."""
    with mirror.write() as session:
        conflict = session.get(Conflict, conflict_id)
        assert conflict is not None
        if take == "remote":
            if session.get(Ticket, conflict.ticket_id) is None:
                raise UserError(f"conflict #{conflict_id}: its ticket no longer exists")
            value = column_value(conflict.field, conflict.remote_canonical)
            store.write_ticket(session, conflict.ticket_id, {conflict.field: value})
        conflict.resolution = take
        conflict.resolved_at = utcnow()
        store.journal(
            session,
            run_id=None,
            connection=conflict.connection,
            action="resolve",
            ticket_id=conflict.ticket_id,
            external_id=conflict.external_id,
            field=conflict.field,
            old=conflict.local_value,
            new=conflict.remote_canonical if take == "remote" else conflict.local_value,
            note=f"conflict #{conflict_id} (undo): operator took {take}",
        )
    kept = "the undone value put back" if take == "remote" else "the value now kept"
    return f"conflict #{conflict_id} settled: {kept} for {conflict.field}"
