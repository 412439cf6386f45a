"""Pull: merge the vendor's changed tickets into the mirror, page by page.

Each page is one transaction, and the cursor moves in the transaction of the page it
follows, so a killed run repeats at most one page, and repeats are no-ops
(docs/architecture.md §3.2, §3.3). Per remote ticket: a link found by its external id
(or by a create marker, which activates the intent; a marker whose mirror ticket is
already linked here makes it a stray, ``sync.engine.strays``) is merged three-way against its base
(``merge.merge_ticket``), after ``merge.late_writes`` took our own late writes out of the
vendor's changes; a ticket without a link is staged and imported with the whole page.
The writes written here are recorded with this connection as their origin, so its own
change feed skips them while every other connection sees them as local changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from sync.db.models import SyncConnection, Ticket, TicketLink
from sync.engine import failures, store, strays
from sync.engine.acks import Imports, Staged
from sync.engine.comments_pull import note_page
from sync.engine.context import CREATE_FIELDS
from sync.engine.crash import crashpoint
from sync.engine.create import activate
from sync.engine.failures import failing_keys, unreadable_links
from sync.engine.journal import link_error, problems
from sync.engine.mapping import Unmapped, column_value
from sync.engine.merge import (
    Action,
    FieldDecision,
    TicketMerge,
    late_writes,
    merge_ticket,
    remote_changes,
    without_late_writes,
)
from sync.engine.state import RunState
from sync.vendors.base import Page, RemoteTicket, Watch

#: How far back (in lease times) a superseded generation's send can still land late.
LATE_WRITE_LEASES = 10


@dataclass(frozen=True)
class Changes:
    """What the pull goes through: the stored cursor, and the changed pages read up front
    (None: streamed from the cursor, as a first import does to keep memory bounded)."""

    cursor: Any
    pages: tuple[Page, ...] | None


@dataclass(frozen=True)
class Pulled:
    """What the pull hands on: when it started, and how much it went through."""

    started_at: datetime
    pages: int
    tickets: int


def stream(state: RunState, cursor: Any) -> AsyncIterator[Page]:
    """The vendor's pages of tickets changed since ``cursor`` (none on a push-only run)."""
    if state.direction == "push":
        return _empty()
    return state.adapter.changed_since(cursor, watch(state))


def watch(state: RunState) -> Sequence[str]:
    """Linked tickets to re-poll (vendors without a changed-since API): tickets not yet
    resolved or closed first, then the others, each in ticket order (docs/architecture.md §7.12)."""
    if state.caps.changed_since:
        return Watch()
    done = Ticket.status.in_(("resolved", "closed"))
    with state.mirror.read() as session:
        rows = session.execute(
            select(TicketLink.external_id, case((done, 1), else_=0))
            .join(Ticket, Ticket.id == TicketLink.ticket_id)
            .where(TicketLink.connection == state.name, TicketLink.state == "active")
            .order_by(Ticket.id)
        ).all()
    ids = [(external_id, closed) for external_id, closed in rows if external_id]
    return Watch([e for e, c in ids if not c], [e for e, c in ids if c])


def page_links(state: RunState, session: Session, page: Page) -> dict[str, TicketLink]:
    """The links of a page's tickets (and failed records) by external key, their tickets
    loaded: two queries per page, not two per ticket (``session.get`` then finds each
    ticket loaded)."""
    ids = [r.external_id for r in page.tickets]
    ids += [f.external_id for f in page.failures if f.external_id is not None]
    keys = [state.adapter.id_key(i) for i in ids]
    links = store.links_by_external(session, state.name, keys)
    store.tickets_by_id(session, [link.ticket_id for link in links.values()])
    return links


def remote_merge(
    state: RunState, base: dict[str, Any], ticket: Ticket, remote: RemoteTicket
) -> TicketMerge:
    """Merge the vendor's values of ``remote`` with the mirror's ``ticket`` over ``base``.
    A field the adapter could not read waits with a per-field error (docs/architecture.md
    §8.2): it neither pulls nor pushes, and its base stays."""
    contexts = state.rules.contexts(ticket.updated_at, remote.modified_at)
    merge = merge_ticket(base, store.local_values(ticket), remote.fields, contexts)
    for name, problem in remote.unreadable.items():
        if name in contexts and name not in remote.fields:
            error = problem.describe(name)
            merge.decisions.append(
                FieldDecision(name, Action.ERROR, error=error, was_remote=problem.value or "")
            )
    return merge


def base_without_late_writes(
    state: RunState, session: Session, link: TicketLink, remote: RemoteTicket, *, apply: bool
) -> dict[str, Any]:
    """The link's base, with late writes of ours taken out of the vendor's changes.

    Under a lease (docs/architecture.md §7.3) the ``send`` journal of superseded generations is
    asked for the
    changed fields (``merge.late_writes`` is the rule). Only sends of the last
    ``LATE_WRITE_LEASES`` lease times count; a value that old is history, not a request
    still on its way. ``apply``: give the link that base and journal each late write.
    """
    fence = state.options.fence
    if fence is None or fence.generation is None:
        return link.base
    changed = remote_changes(link.base, remote.fields)
    if not changed:
        return link.base
    since = state.clock() - timedelta(seconds=fence.seconds * LATE_WRITE_LEASES)
    sent = store.superseded_sends(
        session, state.name, link.ticket_id, fence.generation, since, list(changed)
    )
    late = late_writes(link.base, changed, sent)
    if not late:
        return link.base
    base = without_late_writes(link.base, late)
    if apply:
        link.base = base
        for name, value in late.items():
            state.journal(
                session,
                "late_write",
                link.ticket_id,
                link.external_id,
                field=name,
                new=value,
                note="a superseded lease generation's update; the mirror's value is sent again",
            )
    return base


class Pull:
    """Apply the vendor's changed pages to the mirror, one transaction per page."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self._pages = self._seen = 0
        self._future: set[str] = set()
        #: Unlinked failing tickets (key -> external id), loaded with the first page.
        self._failing: dict[str, str] | None = None
        #: Keys this run has read (cleanly or not): not read again by ``reread``.
        self._read: set[str] = set()
        #: Keys of the current page's vendor tickets held back by matching (not imported).
        self._held: set[str] = set()

    async def run(self, changes: Changes) -> Pulled:
        started = self.state.clock()
        if changes.pages is None:
            async for page in stream(self.state, changes.cursor):
                self.state.check_stop()
                self.apply_page(page)
        else:
            for page in changes.pages:
                self.state.check_stop()
                self.apply_page(page)
        if self.state.direction != "push":
            await self.reread()
        return Pulled(started, self._pages, self._seen)

    async def reread(self) -> None:
        """Read again the tickets whose records failed before and that this run has not
        read yet (docs/architecture.md §8.2); a ticket the vendor no longer has leaves the
        table of unlinked failures."""
        state = self.state
        with state.mirror.read() as session:
            failing = failing_keys(state, session)
            linked = unreadable_links(state, session)
        key = state.adapter.id_key
        wanted = [i for i in (*failing.values(), *linked) if key(i) not in self._read]
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return
        self._failing = failing
        async for page in state.adapter.reread(wanted):
            state.check_stop()
            self.apply_page(page, keep_cursor=True)
        gone = [i for i in failing.values() if i in wanted and key(i) not in self._read]
        with state.write(origin=state.name) as session:
            failures.clear(state, session, gone)

    def apply_page(self, page: Page, *, keep_cursor: bool = False) -> None:
        """Merge one page and move the cursor past it (``keep_cursor``: a re-read's page
        does not), in one transaction. Its failed records are each one ticket's error."""
        state = self.state
        self._pages += 1
        self._seen += len(page.tickets)
        with state.write(origin=state.name) as session:
            if self._failing is None:
                self._failing = failing_keys(state, session)
            links = page_links(state, session, page)
            if state.matcher is not None:
                self._held = state.matcher.screen(session, page, links)
            imports = Imports()
            half = len(page.tickets) // 2
            for i, remote in enumerate(page.tickets):
                if i == half:
                    crashpoint("mid_page")
                self.merge_remote(session, remote, links, imports)
            self.write_imports(session, imports, links)
            note_page(state, session, page, links)
            self.record_failures(session, page, links)
            if not keep_cursor:
                row = session.get(SyncConnection, state.name)
                assert row is not None
                row.cursor = page.cursor
        if state.options.progress is not None:
            state.options.progress(state.name, self._pages, self._seen)

    def record_failures(self, session: Session, page: Page, links: dict[str, TicketLink]) -> None:
        """Record the page's records that did not parse; clear the table's rows of the
        tickets that read cleanly."""
        state = self.state
        key = state.adapter.id_key
        failing = self._failing
        assert failing is not None  # loaded by apply_page
        read = [key(r.external_id) for r in page.tickets]
        cleared = [failing.pop(k) for k in read if k in failing]
        failures.clear(state, session, cleared)
        for failure in page.failures:
            link = None
            if failure.external_id is not None:
                self._read.add(key(failure.external_id))
                link = links.get(key(failure.external_id))
            failures.record(state, session, failure, link)
            if failure.external_id is not None and link is None:
                failing[key(failure.external_id)] = failure.external_id

    def merge_remote(
        self,
        session: Session,
        remote: RemoteTicket,
        links: dict[str, TicketLink],
        imports: Imports,
    ) -> None:
        """Merge one remote ticket into the mirror, or stage it in ``imports``.

        ``links``: the page's links by external key (``page_links``); a ticket this merge
        links is added to it, so a page that names a ticket twice never imports it twice.
        """
        state = self.state
        key = state.adapter.id_key(remote.external_id)
        self._read.add(key)
        if remote.future_at is not None:
            self.future_dated(session, key, remote, links.get(key))
        if key in imports:  # named twice in one page
            self.write_imports(session, imports, links)
        link = links.get(key)
        if link is None and remote.marker:
            link = store.links_by_marker(session, state.name, [remote.marker]).get(remote.marker)
            if link is not None:
                activate(state, session, link, remote, note="found by its create marker")
                links[key] = link
            elif (owner := strays.marker_owner(session, state.name, remote.marker)) is not None:
                strays.record(state, session, remote, owner)  # a duplicate: never imported
                return
        if link is None:
            if key not in self._held:  # a match candidate is neither imported nor merged
                imports.stage(key, self.import_values(remote))
            return
        ticket = session.get(Ticket, link.ticket_id)
        if ticket is None:
            return
        base = base_without_late_writes(state, session, link, remote, apply=True)
        merge = remote_merge(state, base, ticket, remote)
        if link.state == "orphaned":
            link.state, link.missing_count = "active", 0
        if link.last_error_kind == failures.UNREADABLE:  # it reads cleanly again
            link.last_error = link.last_error_kind = None
        apply_remote_merge(state, session, link, ticket, remote, merge)

    def future_dated(
        self, session: Session, key: str, remote: RemoteTicket, link: TicketLink | None
    ) -> None:
        """Count and journal, once per run, a ticket dated beyond the vendor's now plus
        the skew: merged with its time unknown (docs/architecture.md §8.2)."""
        if key in self._future:
            return
        self._future.add(key)
        state = self.state
        state.counts.future_dated += 1
        assert remote.future_at is not None
        state.journal(
            session,
            "future_dated",
            link.ticket_id if link is not None else None,
            remote.external_id,
            new=remote.future_at.isoformat(),
            note="modified time beyond the vendor's clock plus sync.clock_skew_seconds: "
            "taken as unknown (sync.tie_break decides)",
        )

    def import_values(self, remote: RemoteTicket) -> Staged:
        """A new remote ticket's mirror columns, link base and unmapped-value problems."""
        values: dict[str, Any] = {}
        base: dict[str, Any] = {}
        found = []
        for name, fmap in self.state.rules.maps.items():
            if name not in remote.fields:
                continue
            try:
                canonical = fmap.to_canonical(remote.fields[name])
            except Unmapped as exc:
                found.append(str(exc))
                continue
            values[name] = column_value(name, canonical)
            base[name] = {"local": canonical, "remote": remote.fields[name]}
        for name in CREATE_FIELDS:
            if name not in values and name in remote.fields and name not in self.state.rules.maps:
                values[name] = column_value(name, remote.fields[name])
        # a field the adapter could not read is imported NULL, with its error (§8.2)
        found += [p.describe(n) for n, p in remote.unreadable.items() if n not in remote.fields]
        return Staged(remote, values, base, found)

    def write_imports(
        self, session: Session, imports: Imports, links: dict[str, TicketLink]
    ) -> None:
        """Write the staged new tickets, their links and journal rows: three statements."""
        state = self.state
        staged = imports.take()
        if not staged:
            return
        ids = store.insert_tickets(session, [s.values for s in staged.values()])
        new_links = []
        for (key, item), ticket_id in zip(staged.items(), ids, strict=True):
            link = TicketLink(
                ticket_id=ticket_id,
                connection=state.name,
                external_id=item.remote.external_id,
                external_key=key,
                state="active",
                base=item.base,
                remote_modified_at=item.remote.modified_at,
            )
            link_error(state, link, remote=item.problems)
            new_links.append(link)
            links[key] = link
        session.add_all(new_links)
        session.flush()
        state.counts.pulled += len(staged)
        state.counts.imported += len(staged)
        store.journal_many(
            session,
            [
                state.journal_row("import", ticket_id=link.ticket_id, external_id=link.external_id)
                for link in new_links
            ],
        )


def apply_remote_merge(
    state: RunState,
    session: Session,
    link: TicketLink,
    ticket: Ticket,
    remote: RemoteTicket,
    merge: TicketMerge,
) -> None:
    """Carry out a merge of the vendor's values: write the pulls, record the conflicts,
    mark what must be pushed, and give the link its new base."""
    pulls = merge.pulls
    store.write_ticket(session, ticket.id, {k: column_value(k, v) for k, v in pulls.items()})
    base = merge.new_base(link.base, pushed=False)
    for d in merge.decisions:
        if d.pulls:
            state.journal(
                session,
                "pull",
                ticket.id,
                link.external_id,
                field=d.field,
                old=d.was_local,
                new=d.local,
                canonical=(d.was_local, d.local),
                vendor=((link.base.get(d.field) or {}).get("remote"), d.remote),
            )
        if d.action in (Action.CONFLICT, Action.MANUAL):
            base = _conflict(state, session, link, d, base)
        if d.action is Action.WAITING:
            _still_waiting(state, session, link, d)
    if merge.pushes:
        store.mark_dirty(session, state.name, ticket.id)
    if pulls:
        state.counts.pulled += 1
    if base != link.base:
        link.base = base
    if remote.modified_at is not None and remote.modified_at != link.remote_modified_at:
        link.remote_modified_at = remote.modified_at
    link_error(state, link, *problems(merge))


def _still_waiting(state: RunState, session: Session, link: TicketLink, d: FieldDecision) -> None:
    """A manual conflict waits; the vendor's value it holds stays the latest one."""
    conflict_id = (link.base.get(d.field) or {}).get("conflict")
    conflict = store.refresh_pending_conflict(session, conflict_id, d.remote)
    if conflict is not None:
        state.journal(
            session,
            "conflict",
            link.ticket_id,
            link.external_id,
            field=d.field,
            old=d.local,
            new=d.remote,
            note=f"conflict #{conflict.id}: pending, the vendor's value changed",
        )


def _conflict(
    state: RunState, session: Session, link: TicketLink, d: FieldDecision, base: dict[str, Any]
) -> dict[str, Any]:
    """Record a conflict the merge settled (or left for the operator); return the base."""
    resolution = "pending" if d.action is Action.MANUAL else d.winner
    conflict = store.record_conflict(
        session,
        connection=state.name,
        ticket_id=link.ticket_id,
        external_id=link.external_id,
        field=d.field,
        base_value=(link.base.get(d.field) or {}).get("local"),
        local_value=d.was_local,
        remote_value=d.was_remote,
        remote_canonical=d.local if d.winner == "remote" else None,
        policy=state.rules.policies.get(d.field, "newest"),
        resolution=resolution,
        run_id=state.run_id,
        resolved_at=None if resolution == "pending" else state.clock(),
    )
    state.journal(
        session,
        "conflict",
        link.ticket_id,
        link.external_id,
        field=d.field,
        old=d.was_local,
        new=d.was_remote,
        note=f"conflict #{conflict.id}: {resolution}",
    )
    state.counts.conflicts += 1
    if resolution == "pending":
        entry = dict(base.get(d.field) or {})
        entry["conflict"] = conflict.id
        base = {**base, d.field: entry}
    return base


async def _empty() -> AsyncIterator[Page]:
    return
    yield  # pragma: no cover
