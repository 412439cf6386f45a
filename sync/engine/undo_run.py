"""Undo a run, carried out by a connection's pass (docs/architecture.md §8.7).

``ticketsync undo`` records a request (``undo_requests``), as ``guard approve`` leaves an
approval; the connection's next pass, the daemon's or the command's own, executes it,
so the undo is itself a run: journaled (``undo`` entries pointing back at the undone run
through ``undo_of``), guarded, fenced, and shown by ``status``.

- ``prepare``, before any write of the pass: the requests to carry out; one the
  mass-change guard holds (tickets restored, counted as §7.5 counts) is marked ``held``
  and ends the pass, unless it was asked with ``--force`` or the guard was approved.
- ``execute``, after the pull (so the mirror and bases are fresh) and before the push
  (which sends a restored pull to this vendor; other connections' passes fan it out).

Each change is decided again where it is carried out (``undo.decide``): a pull is
restored in one transaction with its journal entry, re-read under lock; a pushed field's
vendor value is read fresh, then the base moves to the old vendor value *before* the
update is sent, so a kill between the two leaves the next run's undo, which reads the
vendor again, to send it again or find it done. The request stays ``running`` until
every change is settled, so a killed pass's request is executed again, and the steps
``DONE`` / ``LISTED`` make that repeat a no-op for what was finished.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from sync.db.models import TicketLink, UndoRequest
from sync.engine import store
from sync.engine.crash import crashpoint
from sync.engine.journal import Sends, ticket_failure
from sync.engine.mapping import column_value
from sync.engine.state import RunState
from sync.engine.undo import UNDO_POLICY, Decision, Step, decide, plan, touched
from sync.errors import GuardHeld, ItemError, VendorError

#: Request states a pass carries out (``running``: a killed pass's, done again).
OPEN = ("pending", "running")


def prepare(state: RunState, *, approved: bool) -> list[int]:
    """Ids of this connection's open undo requests, oldest first; hold the guard first.

    Raises ``GuardHeld`` (after marking the request ``held``) for a request that would
    restore more tickets than the guard lets through, unless forced or ``approved``.
    """
    with state.mirror.read() as session:
        rows = session.scalars(
            select(UndoRequest)
            .where(UndoRequest.connection == state.name, UndoRequest.state.in_(OPEN))
            .order_by(UndoRequest.id)
        ).all()
        links = store.count_links(session, state.name)
        planned = {
            r.id: (r.run_id, r.force, touched(plan(session, state.name, r.run_id, r.ticket_id)))
            for r in rows
        }
    free = state.options.force or approved
    for request_id, (run_id, force, count) in planned.items():
        if free or force or not state.options.guard.trips(count, links):
            continue
        message = (
            f"{state.name}: undo request #{request_id} of run #{run_id} held by the "
            f"mass-change guard: {count} ticket(s) to restore against {links} linked; "
            f"inspect with `ticketsync undo {run_id} --dry-run`, then ask again with --force"
        )
        _finish(state, request_id, "held", {"held": message, "planned": count})
        raise GuardHeld(message, connection=state.name)
    return list(planned)


async def execute(state: RunState, request_ids: list[int]) -> None:
    """Carry out each request; the run's message names the runs it undid."""
    undone = []
    for request_id in request_ids:
        run_id = await _one(state, request_id)
        if run_id is not None:
            undone.append(f"#{run_id}")
    if undone:
        state.note = f"undo of run {', '.join(undone)}"


async def _one(state: RunState, request_id: int) -> int | None:
    """Carry out one request; return the undone run's id (None: nothing to do)."""
    with state.write() as session:
        request = session.get(UndoRequest, request_id)
        if request is None or request.state not in OPEN:
            return None
        request.state = "running"
        request.started_at = request.started_at or state.clock()
        request.executed_by = state.run_id
        run_id, ticket_id = request.run_id, request.ticket_id
    with state.mirror.read() as session:
        decisions = plan(session, state.name, run_id, ticket_id)
    steps: Counter[str] = Counter()
    for d in decisions:
        state.check_stop()
        steps[await _carry_out(state, run_id, d)] += 1
        crashpoint("mid_undo")
    _finish(state, request_id, "done", {s.value: steps.get(s.value, 0) for s in Step} | dict(steps))
    return run_id


def _finish(state: RunState, request_id: int, outcome: str, result: dict[str, Any]) -> None:
    with state.write() as session:
        request = session.get(UndoRequest, request_id)
        if request is not None:
            request.state, request.result = outcome, result
            request.finished_at = state.clock()
            request.executed_by = state.run_id


async def _carry_out(state: RunState, run_id: int, d: Decision) -> str:
    """Carry out one decision as it stands now; return the step taken ("failed" too)."""
    if d.change.direction == "push" and d.step not in (Step.GONE, Step.LEGACY):
        d = await _fresh(state, d)
    if d.step is Step.RESTORE and d.change.direction == "pull":
        d = _restore_pull(state, run_id, d)
    elif d.step is Step.RESTORE:
        return await _restore_push(state, run_id, d)
    if d.step is Step.CONFLICT:
        _conflict(state, run_id, d)
    return d.step.value


async def _fresh(state: RunState, d: Decision) -> Decision:
    """Decide a pushed change again with the vendor's current value, read now."""
    c = d.change
    with state.mirror.read() as session:
        ticket = store.tickets_by_id(session, [c.ticket_id]).get(c.ticket_id)
        link = store.links_by_ticket(session, state.name, [c.ticket_id]).get(c.ticket_id)
    if ticket is None or link is None or link.external_id is None:
        return Decision(c, Step.GONE)
    external_id = link.external_id
    remote = await state.vendor(lambda: state.adapter.get(external_id))
    if remote is None:
        return Decision(c, Step.GONE)
    value = remote.fields.get(c.field)
    return decide(
        c,
        ticket,
        link,
        vendor_now=None if value is None else str(value),
        listed=d.step is Step.LISTED,
    )


def _restore_pull(state: RunState, run_id: int, d: Decision) -> Decision:
    """Write the old value into the mirror as a local edit: no origin, so every
    connection, this one included, pushes it. Decided again under the row's lock."""
    c = d.change
    with state.write() as session:
        ticket = store.tickets_by_id(session, [c.ticket_id], lock=True).get(c.ticket_id)
        again = decide(c, ticket, None, vendor_now=None, listed=d.step is Step.LISTED)
        if again.step is not Step.RESTORE:
            return again
        old, new = c.canonical
        store.write_ticket(session, c.ticket_id, {c.field: column_value(c.field, old)})
        state.journal(
            session,
            "undo",
            c.ticket_id,
            c.external_id,
            field=c.field,
            old=new,
            new=old,
            canonical=(new, old),
            vendor=(c.vendor[1], c.vendor[0]),
            undo_of=run_id,
            note=f"pull of run #{run_id} put back in the mirror",
        )
    return again


async def _restore_push(state: RunState, run_id: int, d: Decision) -> str:
    """Send the old vendor value to this vendor only, the base moved first (see above)."""
    c = d.change
    old_v, new_v = c.vendor
    if c.field not in state.rules.writable:
        return "failed"
    with state.write() as session:
        link = store.links_by_ticket(session, state.name, [c.ticket_id]).get(c.ticket_id)
        if link is None or link.external_id is None:
            return Step.GONE.value
        before = link.base.get(c.field)
        link.base = {**link.base, c.field: {"local": d.now, "remote": old_v}}
        state.journal(
            session,
            "undo",
            c.ticket_id,
            link.external_id,
            field=c.field,
            old=new_v,
            new=old_v,
            canonical=c.canonical[::-1],
            vendor=(new_v, old_v),
            undo_of=run_id,
            note=f"push of run #{run_id} put back at {state.name} only",
        )
        external_id, link_id = link.external_id, link.id
    values = {c.field: old_v}
    Sends(state).journal([(link, values)])
    crashpoint("undo_before_send")
    try:
        await state.vendor(lambda: state.adapter.update(external_id, values), write=True)
    except ItemError as exc:
        _put_base_back(state, link_id, c.field, before)
        ticket_failure(state, link, exc, backoff=True)
        return "failed"
    except VendorError:
        _put_base_back(state, link_id, c.field, before)
        raise
    crashpoint("undo_after_vendor_ack")
    state.counts.pushed += 1
    return Step.RESTORE.value


def _put_base_back(state: RunState, link_id: int, name: str, entry: Any) -> None:
    """The update was not applied: the field's base is what it was."""
    with state.write() as session:
        link = session.get(TicketLink, link_id)
        if link is not None:
            base = {k: v for k, v in link.base.items() if k != name}
            link.base = base if entry is None else {**base, name: entry}


def _conflict(state: RunState, run_id: int, d: Decision) -> None:
    """List a change made again since the run for a person (``ticketsync conflicts``):
    ``local`` is the value now, ``remote_canonical`` the one the undo would put back."""
    c = d.change
    old, new = c.canonical
    with state.write() as session:
        conflict = store.record_conflict(
            session,
            connection=state.name,
            ticket_id=c.ticket_id,
            external_id=c.external_id,
            field=c.field,
            base_value=new,
            local_value=d.now,
            remote_value=d.vendor_now if c.direction == "push" else c.vendor[0],
            remote_canonical=old,
            policy=UNDO_POLICY,
            resolution="pending",
            run_id=state.run_id,
        )
        state.journal(
            session,
            "conflict",
            c.ticket_id,
            c.external_id,
            field=c.field,
            old=d.now,
            new=old,
            undo_of=run_id,
            note=f"conflict #{conflict.id}: undo of run #{run_id}: changed since, left for a "
            "person",
        )
    state.counts.conflicts += 1
