"""Matching before creating, in a connection's run (docs/architecture.md §8.7).

- ``Matcher.screen``: on each pulled page, the unlinked vendor tickets that have a waiting
  candidate are held back from the import; on the first import (until
  ``sync_connections.first_match_at`` is set) the others are scored against the unlinked
  mirror tickets (``sync.engine.matching``), and those scoring at least
  ``match.min_score`` become candidates instead of tickets, in the page's transaction.
- ``holds``: which mirror tickets the push must not create: every one until the first
  import's match pass is done, then those with a waiting candidate.
- ``settle``: the requests the ``match`` commands recorded. An approved pair is linked
  with a base that holds the values both sides agree on and NULL where they differ, then
  merged like any pulled ticket, so the conflict policy decides and the journal shows it.
  A rejected candidate's vendor ticket is imported as usual.
- ``scan``: ``ticketsync match NAME`` (and a push-only connection's first pass): list the
  vendor's tickets and score the unlinked ones without importing anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sync.db.models import MatchCandidate, SyncConnection, Ticket, TicketLink
from sync.engine import candidates, store
from sync.engine.acks import Imports
from sync.engine.matching import MirrorIndex, best_pairs
from sync.engine.pull import Pull, apply_remote_merge, page_links, remote_merge
from sync.engine.state import RunState
from sync.errors import ItemError
from sync.vendors.base import Page, RemoteTicket

log = logging.getLogger(__name__)


def first_pass(state: RunState) -> bool:
    """True while the connection matches on its first import and has not finished it."""
    if not state.options.match.on_first_import:
        return False
    with state.mirror.read() as session:
        row = session.get(SyncConnection, state.name)
        return row is None or row.first_match_at is None


def finish_first_pass(state: RunState) -> None:
    """Record that the first import and its match pass are done: creates may start."""
    with state.write() as session:
        row = session.get(SyncConnection, state.name)
        if row is not None and row.first_match_at is None:
            row.first_match_at = state.clock()


def holds(state: RunState) -> Callable[[int], bool]:
    """Whether the push must hold back the create of a mirror ticket (by id)."""
    if first_pass(state):
        return lambda ticket_id: True
    with state.mirror.read() as session:
        waiting = candidates.waiting_tickets(session, state.name)
    return waiting.__contains__


class Matcher:
    """Screens the pulled pages of one run; ``scoring``: new candidates may be made;
    ``record``: they are written (a dry run only names them)."""

    def __init__(self, state: RunState, *, scoring: bool, record: bool = True) -> None:
        self.state = state
        self.scoring = scoring
        self.record = record
        self.created = 0
        self._index: MirrorIndex | None = None

    def screen(self, session: Session, page: Page, links: dict[str, TicketLink]) -> set[str]:
        """The keys of ``page``'s vendor tickets not to import: those with a waiting
        candidate, and (when scoring) those that just became one."""
        state = self.state
        loose: dict[str, RemoteTicket] = {}
        for remote in page.tickets:
            key = state.adapter.id_key(remote.external_id)
            if key not in links and not remote.marker:  # ours (a marker) never match
                loose[key] = remote
        known = candidates.states_by_key(session, state.name, list(loose))
        held = {key for key, value in known.items() if value in candidates.WAITING}
        if not self.scoring:
            return held
        fresh = {key: remote for key, remote in loose.items() if key not in known}
        keys = {key: state.adapter.match_keys(remote) for key, remote in fresh.items()}
        sides = [candidates.remote_side(key, keys[key]) for key in fresh]
        settings = state.options.match
        above = settings.auto_link_above
        for pair in best_pairs(self._mirror(session), sides, settings):
            key = pair.external_key
            approved = above is not None and pair.score >= above
            if self.record:
                candidates.record(
                    session,
                    state.name,
                    pair,
                    fresh[key],
                    keys[key],
                    approved=approved,
                    now=state.clock(),
                )
            state.act(
                f"{state.name}: #{pair.ticket_id} ~ {fresh[key].external_id}: "
                f"match candidate, score {pair.score:g} ({', '.join(pair.reasons)})"
            )
            held.add(key)
            self.created += 1
        return held

    def _mirror(self, session: Session) -> MirrorIndex:
        if self._index is None:
            self._index = MirrorIndex(candidates.unlinked_tickets(session, self.state.name))
        return self._index


async def scan(state: RunState) -> int:
    """Score every unlinked vendor ticket against the unlinked mirror tickets, importing
    nothing; one transaction per page. Returns the number of new candidates."""
    matcher = Matcher(state, scoring=True)
    async for page in state.adapter.changed_since(None):
        state.check_stop()
        made = matcher.created
        try:
            with state.write() as session:
                matcher.screen(session, page, page_links(state, session, page))
        except IntegrityError:  # a run scored the same vendor ticket meanwhile: keep its
            matcher.created = made
            log.info("%s: a page's candidates were recorded meanwhile; skipped", state.name)
    return matcher.created


async def settle(state: RunState) -> None:
    """Carry out the approvals and rejections recorded for this connection."""
    with state.mirror.read() as session:
        todo = [(row.id, row.external_id) for row in candidates.requests(session, state.name)]
    for candidate_id, external_id in todo:
        state.check_stop()
        try:
            remote = await _fetch(state, external_id)
        except ItemError as exc:  # this ticket only: the next pass asks again
            log.warning("%s: match candidate #%d: %s", state.name, candidate_id, exc)
            continue
        with state.write(origin=state.name) as session:
            row = session.get(MatchCandidate, candidate_id)
            if row is None:
                continue
            if row.state == "approved":
                _link(state, session, row, remote)
            elif row.state == "rejected" and row.done_at is None:
                _import(state, session, row, remote)


async def _fetch(state: RunState, external_id: str) -> RemoteTicket | None:
    return await state.vendor(lambda: state.adapter.get(external_id))


def agreed_base(state: RunState, ticket: Ticket, remote: RemoteTicket) -> dict[str, Any]:
    """The base of a matched pair: per synced field, both sides' values where they agree,
    NULL on both sides where they differ (so the merge sees a change on each side)."""
    local = store.local_values(ticket)
    base: dict[str, Any] = {}
    for name, fmap in state.rules.maps.items():
        if name not in remote.fields:
            continue
        vendor = remote.fields[name]
        try:
            agree = fmap.holds(local.get(name), vendor)
        except ItemError:  # a value without a map entry: the merge reports it
            agree = False
        base[name] = (
            {"local": local.get(name), "remote": vendor}
            if agree
            else {"local": None, "remote": None}
        )
    return base


def _link(
    state: RunState, session: Session, row: MatchCandidate, remote: RemoteTicket | None
) -> None:
    """Link an approved pair, or fall back when one side is gone or linked meanwhile."""
    if remote is None:  # deleted at the vendor: the mirror ticket is created as usual
        row.state, row.done_at = "rejected", state.clock()
        return
    ticket = session.get(Ticket, row.ticket_id)
    taken = ticket is None or store.links_by_ticket(session, state.name, [row.ticket_id])
    if taken or store.links_by_external(session, state.name, [row.external_key]):
        row.state = "rejected"  # the vendor ticket is imported unless it is linked already
        _import(state, session, row, remote)
        return
    assert ticket is not None
    base = agreed_base(state, ticket, remote)
    link = TicketLink(
        ticket_id=ticket.id,
        connection=state.name,
        external_id=remote.external_id,
        external_key=row.external_key,
        state="active",
        base=base,
    )
    session.add(link)
    session.flush()
    state.journal(
        session,
        "match",
        ticket.id,
        remote.external_id,
        note=f"linked by match candidate #{row.id} (score {row.score:g})",
    )
    apply_remote_merge(
        state, session, link, ticket, remote, remote_merge(state, base, ticket, remote)
    )
    row.state, row.done_at = "linked", state.clock()


def _import(
    state: RunState, session: Session, row: MatchCandidate, remote: RemoteTicket | None
) -> None:
    """Import a rejected candidate's vendor ticket, as a pull would have."""
    row.done_at = state.clock()
    if remote is None or store.links_by_external(session, state.name, [row.external_key]):
        return
    pull = Pull(state)
    imports = Imports()
    imports.stage(row.external_key, pull.import_values(remote))
    pull.write_imports(session, imports, {})
