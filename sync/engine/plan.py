"""Plan and guard: read the vendor's changes, count the writes they and the dirty tickets
would make, and hold the run before any write when that is too many (the mass-change
guard, docs/architecture.md §7.5). On a dry run the plan is all there is: one line per
planned action and the totals (docs/architecture.md §7.7).

The plan previews the pull and the push with their own decisions (``pull.remote_merge``,
``push.route``, ``push.push_merge``), read-only; what it hands on is a ``Plan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from sync.db.models import SyncConnection, Ticket, TicketLink
from sync.engine import comment_store, store, strays
from sync.engine.adopt import Matcher, first_pass
from sync.engine.comments_push import preview_comments, wants_push
from sync.engine.create import wants_create
from sync.engine.journal import describe
from sync.engine.merge import Action
from sync.engine.pull import Changes, base_without_late_writes, page_links, remote_merge, stream
from sync.engine.push import Route, push_merge, route
from sync.engine.state import RunState
from sync.vendors.base import Page, RemoteTicket


@dataclass(frozen=True)
class Plan:
    """What the plan hands the pull: the vendor's changes, and the planned writes (exact
    on a dry run or when the guard had to look closely, else an upper bound)."""

    changes: Changes
    planned: int


async def read_changes(state: RunState, cursor: Any) -> Changes:
    """Read every changed page up front (not on a first import, which streams); a
    push-only run lists nothing (``Changes.pages`` is empty)."""
    if state.options.push_only:
        return Changes(cursor, ())
    if state.direction == "push" or (cursor is None and not state.options.dry_run):
        return Changes(cursor, None)
    return Changes(cursor, tuple([page async for page in stream(state, cursor)]))


async def plan(state: RunState, cursor: Any) -> Plan:
    """Read the changes since ``cursor`` and plan them; raise ``GuardHeld`` if need be."""
    changes = await read_changes(state, cursor)
    return Plan(changes, count(state, changes.pages))


def count(state: RunState, pages: tuple[Page, ...] | None) -> int:
    """Count (and, on a dry run, print) the planned writes; hold the guard if need be.

    A real run plans in detail only when the guard could hold it: the changed remote
    tickets plus the dirty marks bound the planned writes from above, and a bound that
    cannot trip the guard (or ``--force``, or an approval) makes the per-ticket merge
    pass unneeded, so the pushes start at once. The count returned is then that bound.
    """
    options = state.options
    with state.mirror.read() as session:
        links = store.count_links(session, state.name)
        approved = _guard_approved(state, session)
        recent = 0
        if not options.dry_run:
            bound = sum(len(p.tickets) for p in pages or ())
            bound += store.count_dirty(session, state.name)
            if wants_push(state):
                bound += comment_store.count_feed(session, state.name)
            if options.force or approved:
                state.guard_passed = True
                return bound
            recent = options.guard.recent(session, state.name, state.clock(), state.run_id)
            if not options.guard.trips(bound + recent, links):
                guard = options.guard
                guard.check(state.name, bound + recent, links, state.mirror, state.clock(), recent)
                return bound
        pulled: set[int] = set()
        # a dry run names the match candidates a first import would hold back
        matcher = (
            Matcher(state, scoring=first_pass(state), record=False) if options.dry_run else None
        )
        for page in pages or ():
            known = page_links(state, session, page)
            held = matcher.screen(session, page, known) if matcher is not None else set()
            for remote in page.tickets:
                if state.adapter.id_key(remote.external_id) in held:
                    continue  # named as a candidate
                if (ticket_id := preview_remote(state, session, remote, known)) is not None:
                    pulled.add(ticket_id)
        creates, pushed = preview_dirty(state, session)
        planned = creates + len(pulled) + len(pushed)
        if wants_push(state):
            # a ticket's comments count only when its fields do not already (§8.5)
            planned += len(preview_comments(state, session) - pulled - pushed)
    if options.dry_run:
        state.report(f"{state.name}: {planned} planned change(s)")
        return planned
    options.guard.check(state.name, planned + recent, links, state.mirror, state.clock(), recent)
    return planned


def _guard_approved(state: RunState, session: Session) -> bool:
    row = session.get(SyncConnection, state.name)
    return row is not None and row.guard_approved_at is not None


def preview_remote(
    state: RunState, session: Session, remote: RemoteTicket, links: dict[str, TicketLink]
) -> int | None:
    """Plan the merge of one remote ticket (read-only); the ticket's id if it updates a
    linked ticket, else None."""
    link = links.get(state.adapter.id_key(remote.external_id))
    if link is None and remote.marker:
        link = store.links_by_marker(session, state.name, [remote.marker]).get(remote.marker)
        if link is None and strays.marker_owner(session, state.name, remote.marker):
            state.act(f"{state.name}: stray <- {remote.external_id}: a duplicate, not imported")
            return None
    if link is None:
        state.act(f"{state.name}: new <- {remote.external_id}: import")
        return None
    ticket = session.get(Ticket, link.ticket_id)
    if ticket is None:
        return None
    base = base_without_late_writes(state, session, link, remote, apply=False)
    merge = remote_merge(state, base, ticket, remote)
    describe(state, link, merge, only=(Action.PULL, Action.CONFLICT, Action.MANUAL))
    return link.ticket_id if merge.pulls or merge.of(Action.CONFLICT, Action.MANUAL) else None


def preview_dirty(state: RunState, session: Session) -> tuple[int, set[int]]:
    """Plan the pushes and creates of every dirty ticket (read-only); return the number
    of creates and the ids of the linked tickets an update would touch."""
    planned = 0
    updated: set[int] = set()
    after = 0
    while True:
        batch = store.dirty_batch(session, state.name, after, state.options.batch_size)
        if not batch:
            return planned, updated
        after = batch[-1][0]
        ids = [t for t, _ in batch]
        links = store.links_by_ticket(session, state.name, ids)
        tickets = store.tickets_by_id(session, ids)
        now = state.clock()
        for ticket_id, _ in batch:
            ticket, link = tickets.get(ticket_id), links.get(ticket_id)
            step = route(
                ticket,
                link,
                direction=state.direction,
                now=now,
                wants_create=lambda t: wants_create(state, t),
                holds=state.holds,
            )
            if step is Route.CREATE:
                planned += 1
                state.act(f"{state.name}: #{ticket_id} -> new: create")
            elif step in (Route.PUSH, Route.WAIT) and link is not None:
                # a backoff does not lower the plan; a create held by matching is no write
                assert ticket is not None
                merge = push_merge(state, link, ticket)
                if merge.pushes:
                    updated.add(ticket_id)
                    describe(state, link, merge, only=(Action.PUSH,))
