"""One connection's run: recover, plan, guard, pull, push, create, record (design §3.2).

Crash safety (§3.3) rests on three rules, each visible below:

- the pull commits page by page, and the cursor moves in the same transaction as the
  page it follows, so a killed run repeats at most one page, and repeats are no-ops;
- a push commits after the vendor acknowledged; a killed run leaves the ticket dirty,
  and the next merge finds the vendor already agreeing (or pushes again: an update
  repeated only after a lost reply);
- a create records its intent (a link in state ``creating`` with a marker) before the
  call; the next run finds the ticket by its marker instead of creating it twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from asyncio import FIRST_COMPLETED
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from sync.db import Mirror
from sync.db.models import Run, SyncConnection, Ticket, TicketLink, utcnow
from sync.engine import store
from sync.engine.acks import Ack, Acks, Imports, Staged
from sync.engine.context import CREATE_FIELDS, SyncRules
from sync.engine.crash import crashpoint
from sync.engine.guard import Guard, consume_approval
from sync.engine.mapping import Unmapped, canonical_text, column_value
from sync.engine.merge import (
    Action,
    TicketMerge,
    activation,
    agrees_with_base,
    late_writes,
    merge_ticket,
    remote_changes,
    without_late_writes,
)
from sync.errors import (
    AuthRejected,
    GuardHeld,
    Interrupted,
    ItemError,
    LeaseLost,
    NotFound,
    SyncError,
    VendorError,
)
from sync.vendors.base import Adapter, Page, RemoteTicket, Watch

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_BASE = timedelta(seconds=30)
#: How far back (in lease times) a superseded generation's send can still land late.
LATE_WRITE_LEASES = 10
RETRY_CAP = timedelta(hours=1)


@dataclass
class Counts:
    pulled: int = 0
    pushed: int = 0
    created: int = 0
    conflicts: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    connection: str
    outcome: str  # ok | failed | held | interrupted | dry-run
    counts: Counts
    duration_s: float
    error: SyncError | None = None
    #: Planned writes: exact on a dry run, else at most this many (see ``_plan``).
    planned: int = 0
    actions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "dry-run")


class Fence(Protocol):
    """What a run asks of its lease before it commits or writes to the vendor (§7.3)."""

    #: The lease's generation (None before it was taken) and its length in seconds.
    generation: int | None
    seconds: float

    def before_commit(self, session: Session) -> None: ...

    def before_send(self, call_seconds: float) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    force: bool = False
    batch_size: int = 100
    #: Tickets pushed or created at once (the connection's ``http.concurrency``).
    concurrency: int = 1
    guard: Guard = field(default_factory=Guard)
    #: Asked between pages and tickets; True stops the run cleanly (daemon shutdown).
    should_stop: Callable[[], bool] = lambda: False
    #: Told (connection, pages, tickets) after each committed pull page.
    progress: Callable[[str, int, int], None] | None = None
    #: The lease's fence (PostgreSQL with several instances); None: nothing to check.
    fence: Fence | None = None
    #: The longest one vendor call may take (the connection's ``http.total_timeout``).
    call_seconds: float = 60.0


class ConnectionRun:
    """Sync one connection once. ``run()`` never raises for vendor or data reasons."""

    def __init__(
        self,
        mirror: Mirror,
        name: str,
        adapter: Adapter,
        rules: SyncRules,
        *,
        direction: str = "both",
        create_when: dict[str, tuple[str, ...]] | None = None,
        options: RunOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.mirror = mirror
        self.name = name
        self.adapter = adapter
        self.rules = rules
        self.direction = direction
        self.create_when = create_when
        self.options = options or RunOptions()
        self.clock = clock
        self.report = report or (lambda line: None)
        self.counts = Counts()
        self.run_id: int | None = None
        self._actions: list[str] = []
        self._pages = self._seen = 0
        self._gate = asyncio.Semaphore(max(1, self.options.concurrency))
        #: (link id, field) -> the value a ``send`` entry of this run holds (§7.3).
        self._sent: dict[tuple[int, str], Any] = {}
        self._acks = Acks(limit=max(32, 4 * self.options.concurrency), window=0.2)

    @property
    def caps(self) -> Any:
        return self.adapter.capabilities

    @property
    def creates(self) -> bool:
        return self.create_when is not None and self.direction != "pull" and self.caps.can_create

    # -- the run -------------------------------------------------------------------

    async def run(self) -> RunResult:
        started = time.monotonic()
        error: SyncError | None = None
        planned = 0
        try:
            cursor = self._start()
            pages = await self._read_pages(cursor)
            planned = self._plan(pages)
            if not self.options.dry_run:
                consume_approval(self.mirror, self.name)
            crashpoint("after_plan")
            if not self.options.dry_run:
                await self._recover()
                pull_started = self.clock()
                await self._pull(pages if pages is not None else self._stream(cursor))
                if not self.caps.finds_markers:
                    await self._recover(pulled_since=pull_started)
                await self._push_and_create()
        except GuardHeld as exc:
            error = exc
        except asyncio.CancelledError:
            self._finish_cancelled(started, planned)
            raise
        except SyncError as exc:
            error = exc
            log.warning("%s", exc)
        outcome = self._outcome(error)
        result = RunResult(
            self.name,
            outcome,
            self.counts,
            time.monotonic() - started,
            error,
            planned,
            self._actions,
        )
        if not self.options.dry_run:
            self._finish(result)
        return result

    def _finish_cancelled(self, started: float, planned: int) -> None:
        if self.options.dry_run or self.run_id is None:
            return
        error = Interrupted(f"{self.name}: interrupted by a signal", connection=self.name)
        self._finish(
            RunResult(
                self.name, "interrupted", self.counts, time.monotonic() - started, error, planned
            )
        )

    def _check_stop(self) -> None:
        if self.options.should_stop():
            raise Interrupted(f"{self.name}: stopped for shutdown", connection=self.name)

    def _outcome(self, error: SyncError | None) -> str:
        if isinstance(error, GuardHeld):
            return "held"
        if isinstance(error, Interrupted | LeaseLost):
            return "interrupted"
        if error is not None:
            return "failed"
        return "dry-run" if self.options.dry_run else "ok"

    def _start(self) -> Any:
        """Register the connection, open the run record; return the stored cursor."""
        if self.options.dry_run:
            with self.mirror.read() as session:
                row = session.get(SyncConnection, self.name)
                return row.cursor if row is not None else None
        with self.mirror.write() as session:
            row = store.register(session, self.name, self.adapter.vendor, self.creates)
            session.query(Run).filter(Run.connection == self.name, Run.outcome == "running").update(
                {"outcome": "interrupted"}
            )
            run = Run(connection=self.name, started_at=self.clock(), outcome="running")
            session.add(run)
            session.flush()
            self.run_id = run.id
            return row.cursor

    def _finish(self, result: RunResult) -> None:
        now = self.clock()
        with self.mirror.write() as session:
            run = session.get(Run, self.run_id)
            if run is not None:
                run.finished_at = now
                run.duration_s = result.duration_s
                run.outcome = result.outcome
                for key, value in result.counts.as_dict().items():
                    setattr(run, key, value)
                run.message = str(result.error) if result.error else None
            row = session.get(SyncConnection, self.name)
            assert row is not None
            if isinstance(result.error, LeaseLost):
                return  # the connection's state belongs to the instance that took it over
            if result.outcome == "ok":
                row.last_success_at = now
                row.consecutive_failures = 0
                row.credentials = "ok"
            else:
                row.consecutive_failures += 1
            if isinstance(result.error, AuthRejected):
                row.credentials = "rejected"
            if result.error is not None and not isinstance(result.error, GuardHeld):
                row.last_error = {
                    "at": now.isoformat(),
                    "kind": result.error.kind,
                    "message": str(result.error),
                    "ticket_id": None,
                    "external_id": None,
                }

    @contextmanager
    def _write(self, origin: str | None = None) -> Iterator[Session]:
        """A write transaction of the sync proper: it commits only under a current lease."""
        with self.mirror.write(origin) as session:
            yield session
            if self.options.fence is not None:
                self.options.fence.before_commit(session)

    async def _vendor(self, call: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        """One vendor call under the concurrency gate.

        The gate is released as soon as the vendor answers, and the caller yields once
        before its commit, so the next call goes out while this one's bookkeeping runs
        (otherwise replies that arrive together would be committed in lock-step, each
        holding up the next request).
        """
        async with self._gate:
            if write:  # checked inside the gate: a call queued before a pause is fenced too
                self._before_send()
            result = await call()
        await asyncio.sleep(0)
        return result

    def _before_send(self) -> None:
        if self.options.fence is not None:
            self.options.fence.before_send(self.options.call_seconds)

    # -- plan and guard ------------------------------------------------------------

    async def _read_pages(self, cursor: Any) -> list[Page] | None:
        """Read every changed page up front (None on a first import, which streams)."""
        if self.direction == "push" or (cursor is None and not self.options.dry_run):
            return None
        return [page async for page in self._stream(cursor)]

    def _stream(self, cursor: Any) -> AsyncIterator[Page]:
        if self.direction == "push":
            return _empty()
        return self.adapter.changed_since(cursor, self._watch())

    def _watch(self) -> Sequence[str]:
        """Linked tickets to re-poll (vendors without a changed-since API): tickets not yet
        resolved or closed first, then the others, each in ticket order (§7.12)."""
        if self.caps.changed_since:
            return Watch()
        done = Ticket.status.in_(("resolved", "closed"))
        with self.mirror.read() as session:
            rows = session.execute(
                select(TicketLink.external_id, case((done, 1), else_=0))
                .join(Ticket, Ticket.id == TicketLink.ticket_id)
                .where(TicketLink.connection == self.name, TicketLink.state == "active")
                .order_by(Ticket.id)
            ).all()
        ids = [(external_id, closed) for external_id, closed in rows if external_id]
        return Watch([e for e, c in ids if not c], [e for e, c in ids if c])

    def _plan(self, pages: list[Page] | None) -> int:
        """Count (and, on a dry run, print) the planned writes; hold the guard if need be.

        A real run plans in detail only when the guard could hold it: the changed remote
        tickets plus the dirty marks bound the planned writes from above, and a bound that
        cannot trip the guard (or ``--force``, or an approval) makes the per-ticket merge
        pass unneeded, so the pushes start at once. The count returned is then that bound.
        """
        with self.mirror.read() as session:
            links = store.count_links(session, self.name)
            approved = self._guard_approved(session)
            if not self.options.dry_run:
                bound = sum(len(p.tickets) for p in pages or ())
                bound += store.count_dirty(session, self.name)
                if self.options.force or approved:
                    return bound
                if not self.options.guard.trips(bound, links):
                    self.options.guard.check(self.name, bound, links, self.mirror, self.clock())
                    return bound
            planned = 0
            for page in pages or ():
                known = self._page_links(session, page)
                planned += sum(self._merge_remote(session, r, known) for r in page.tickets)
            planned += self._plan_dirty(session)
        if self.options.dry_run:
            self.report(f"{self.name}: {planned} planned change(s)")
            return planned
        self.options.guard.check(self.name, planned, links, self.mirror, self.clock())
        return planned

    def _guard_approved(self, session: Session) -> bool:
        row = session.get(SyncConnection, self.name)
        return row is not None and row.guard_approved_at is not None

    # -- pull ----------------------------------------------------------------------

    async def _pull(self, pages: Iterable[Page] | AsyncIterator[Page]) -> None:
        if isinstance(pages, AsyncIterator):
            async for page in pages:
                self._check_stop()
                self._apply_page(page)
        else:
            for page in pages:
                self._check_stop()
                self._apply_page(page)

    def _apply_page(self, page: Page) -> None:
        self._pages += 1
        self._seen += len(page.tickets)
        with self._write(origin=self.name) as session:
            links = self._page_links(session, page)
            imports = Imports()
            half = len(page.tickets) // 2
            for i, remote in enumerate(page.tickets):
                if i == half:
                    crashpoint("mid_page")
                self._merge_remote(session, remote, links, imports=imports)
            self._write_imports(session, imports, links)
            row = session.get(SyncConnection, self.name)
            assert row is not None
            row.cursor = page.cursor
        if self.options.progress is not None:
            self.options.progress(self.name, self._pages, self._seen)

    def _page_links(self, session: Session, page: Page) -> dict[str, TicketLink]:
        """The links of a page's tickets by external key, their tickets loaded: two queries
        per page, not two per ticket (``session.get`` then finds each ticket loaded)."""
        keys = [self.adapter.id_key(r.external_id) for r in page.tickets]
        links = store.links_by_external(session, self.name, keys)
        store.tickets_by_id(session, [link.ticket_id for link in links.values()])
        return links

    def _merge_remote(
        self,
        session: Session,
        remote: RemoteTicket,
        links: dict[str, TicketLink],
        *,
        imports: Imports | None = None,
    ) -> int:
        """Merge one remote ticket into the mirror; return 1 if it updates a linked ticket.

        ``imports`` None: plan only (read-only). Otherwise new tickets are staged in it
        and written for the whole page by ``_write_imports``. ``links``: the page's links
        by external key (``_page_links``); a ticket this merge links is added to it, so a
        page that names a ticket twice never imports it twice.
        """
        apply = imports is not None
        key = self.adapter.id_key(remote.external_id)
        if imports is not None and key in imports:  # named twice in one page
            self._write_imports(session, imports, links)
        link = links.get(key)
        if link is None and remote.marker:
            link = store.links_by_marker(session, self.name, [remote.marker]).get(remote.marker)
            if link is not None and apply:
                self._activate(session, link, remote, note="found by its create marker")
                links[key] = link
        if link is None:
            if imports is not None:
                imports.stage(key, self._import_values(remote))
            else:
                self._act(f"{self.name}: new <- {remote.external_id}: import")
            return 0
        ticket = session.get(Ticket, link.ticket_id)
        if ticket is None:
            return 0
        base = self._without_late_writes(session, link, remote, apply=apply)
        merge = merge_ticket(
            base,
            store.local_values(ticket),
            remote.fields,
            self.rules.contexts(ticket.updated_at, remote.modified_at),
        )
        if not apply:
            self._describe(link, merge, only=(Action.PULL, Action.CONFLICT, Action.MANUAL))
            return int(bool(merge.pulls or merge.of(Action.CONFLICT, Action.MANUAL)))
        if link.state == "orphaned":
            link.state, link.missing_count = "active", 0
        self._apply_remote_merge(session, link, ticket, remote, merge)
        return 0

    def _without_late_writes(
        self, session: Session, link: TicketLink, remote: RemoteTicket, *, apply: bool
    ) -> dict[str, Any]:
        """The link's base, with late writes of ours taken out of the vendor's changes.

        Under a lease (§7.3), a vendor value that an update of a superseded lease
        generation sent is a late write of ours (a request a paused holder sent before the
        takeover, applied since), not an agent's edit: the base takes it as the vendor's
        value with ``pending_push``, so the merge pushes the mirror's value again instead
        of pulling the stale one. Only sends of the last ``LATE_WRITE_LEASES`` lease times
        count; a value that old is history, not a request still on its way.
        """
        fence = self.options.fence
        if fence is None or fence.generation is None:
            return link.base
        changed = remote_changes(link.base, remote.fields)
        if not changed:
            return link.base
        since = self.clock() - timedelta(seconds=fence.seconds * LATE_WRITE_LEASES)
        sent = store.superseded_sends(
            session, self.name, link.ticket_id, fence.generation, since, list(changed)
        )
        late = late_writes(link.base, changed, sent)
        if not late:
            return link.base
        base = without_late_writes(link.base, late)
        if apply:
            link.base = base
            for name, value in late.items():
                self._journal(
                    session,
                    "late_write",
                    link.ticket_id,
                    link.external_id,
                    field=name,
                    new=value,
                    note="a superseded lease generation's update; the mirror's value is sent again",
                )
        return base

    def _import_values(self, remote: RemoteTicket) -> Staged:
        """A new remote ticket's mirror columns, link base and unmapped-value problems."""
        values: dict[str, Any] = {}
        base: dict[str, Any] = {}
        problems = []
        for name, fmap in self.rules.maps.items():
            if name not in remote.fields:
                continue
            try:
                canonical = fmap.to_canonical(remote.fields[name])
            except Unmapped as exc:
                problems.append(str(exc))
                continue
            values[name] = column_value(name, canonical)
            base[name] = {"local": canonical, "remote": remote.fields[name]}
        for name in CREATE_FIELDS:
            if name not in values and name in remote.fields and name not in self.rules.maps:
                values[name] = column_value(name, remote.fields[name])
        return Staged(remote, values, base, problems)

    def _write_imports(
        self, session: Session, imports: Imports, links: dict[str, TicketLink]
    ) -> None:
        """Write the staged new tickets, their links and journal rows: three statements."""
        staged = imports.take()
        if not staged:
            return
        ids = store.insert_tickets(session, [s.values for s in staged.values()])
        new_links = []
        for (key, item), ticket_id in zip(staged.items(), ids, strict=True):
            link = TicketLink(
                ticket_id=ticket_id,
                connection=self.name,
                external_id=item.remote.external_id,
                external_key=key,
                state="active",
                base=item.base,
                remote_modified_at=item.remote.modified_at,
            )
            self._link_error(link, remote=item.problems)
            new_links.append(link)
            links[key] = link
        session.add_all(new_links)
        session.flush()
        self.counts.pulled += len(staged)
        store.journal_many(
            session,
            [
                store.journal_row(
                    run_id=self.run_id,
                    connection=self.name,
                    action="import",
                    ticket_id=link.ticket_id,
                    external_id=link.external_id,
                )
                for link in new_links
            ],
        )

    def _apply_remote_merge(
        self,
        session: Session,
        link: TicketLink,
        ticket: Ticket,
        remote: RemoteTicket,
        merge: TicketMerge,
    ) -> None:
        pulls = merge.pulls
        store.write_ticket(session, ticket.id, {k: column_value(k, v) for k, v in pulls.items()})
        base = merge.new_base(link.base, pushed=False)
        for d in merge.decisions:
            if d.pulls:
                self._journal(
                    session,
                    "pull",
                    ticket.id,
                    link.external_id,
                    field=d.field,
                    old=d.was_local,
                    new=d.local,
                )
            if d.action in (Action.CONFLICT, Action.MANUAL):
                base = self._conflict(session, link, d, base)
            if d.action is Action.WAITING:
                self._still_waiting(session, link, d)
        if merge.pushes:
            store.mark_dirty(session, self.name, ticket.id)
        if pulls:
            self.counts.pulled += 1
        if base != link.base:
            link.base = base
        if remote.modified_at is not None and remote.modified_at != link.remote_modified_at:
            link.remote_modified_at = remote.modified_at
        self._link_error(link, *_problems(merge))

    def _still_waiting(self, session: Session, link: TicketLink, d: Any) -> None:
        """A manual conflict waits; the vendor's value it holds stays the latest one."""
        conflict_id = (link.base.get(d.field) or {}).get("conflict")
        conflict = store.refresh_pending_conflict(session, conflict_id, d.remote)
        if conflict is not None:
            self._journal(
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
        self, session: Session, link: TicketLink, d: Any, base: dict[str, Any]
    ) -> dict[str, Any]:
        resolution = "pending" if d.action is Action.MANUAL else d.winner
        conflict = store.record_conflict(
            session,
            connection=self.name,
            ticket_id=link.ticket_id,
            external_id=link.external_id,
            field=d.field,
            base_value=(link.base.get(d.field) or {}).get("local"),
            local_value=d.was_local,
            remote_value=d.was_remote,
            remote_canonical=d.local if d.winner == "remote" else None,
            policy=self.rules.policies.get(d.field, "newest"),
            resolution=resolution,
            run_id=self.run_id,
            resolved_at=None if resolution == "pending" else self.clock(),
        )
        self._journal(
            session,
            "conflict",
            link.ticket_id,
            link.external_id,
            field=d.field,
            old=d.was_local,
            new=d.was_remote,
            note=f"conflict #{conflict.id}: {resolution}",
        )
        self.counts.conflicts += 1
        if resolution == "pending":
            entry = dict(base.get(d.field) or {})
            entry["conflict"] = conflict.id
            base = {**base, d.field: entry}
        return base

    def _link_error(
        self,
        link: TicketLink,
        local: Sequence[str | None] = (),
        remote: Sequence[str | None] = (),
        *,
        saw_remote: bool = True,
    ) -> None:
        """Record the ticket's unmapped values on its link, or clear those that are gone.

        ``local`` / ``remote``: problems with a mirror / a vendor value. A problem with a
        vendor value is cleared only by a merge that saw the vendor's values (``saw_remote``).
        """
        found = [p for p in (*local, *remote) if p]
        kind = "unmapped_remote" if any(remote) else "unmapped"
        if found:
            message = self._ticket_message(link, "; ".join(found))
            if (link.last_error, link.last_error_kind) != (message, kind):
                link.last_error, link.last_error_kind = message, kind
            self.counts.errors += 1
        elif link.last_error_kind == "unmapped" or (
            saw_remote and link.last_error_kind == "unmapped_remote"
        ):
            link.last_error = link.last_error_kind = None

    def _ticket_message(self, link: TicketLink, text: str) -> str:
        return (
            f"{self.name}: ticket #{link.ticket_id} <-> {link.external_id or '(creating)'}: {text}"
        )

    def _journal(
        self,
        session: Session,
        action: str,
        ticket_id: int | None,
        external_id: str | None,
        **entry: Any,
    ) -> None:
        """Journal one entry of this run (``entry``: field, old, new, note)."""
        store.journal(
            session,
            run_id=self.run_id,
            connection=self.name,
            action=action,
            ticket_id=ticket_id,
            external_id=external_id,
            **entry,
        )

    # -- push and create -----------------------------------------------------------

    def _plan_dirty(self, session: Session) -> int:
        """Plan the pushes and creates of every dirty ticket (read-only); return the count."""
        planned = 0
        after = 0
        while True:
            batch = store.dirty_batch(session, self.name, after, self.options.batch_size)
            if not batch:
                return planned
            after = batch[-1][0]
            ids = [t for t, _ in batch]
            links = store.links_by_ticket(session, self.name, ids)
            tickets = store.tickets_by_id(session, ids)
            for ticket_id, _ in batch:
                ticket = tickets.get(ticket_id)
                if ticket is None:
                    continue
                link = links.get(ticket_id)
                if link is None:
                    if self._wants_create(ticket):
                        planned += 1
                        self._act(f"{self.name}: #{ticket_id} -> new: create")
                elif link.state == "active" and self.direction != "pull":
                    merge = self._push_merge(link, ticket)
                    if merge.pushes:
                        planned += 1
                        self._describe(link, merge, only=(Action.PUSH,))

    async def _push_and_create(self) -> None:
        """Push or create every dirty ticket, ``concurrency`` vendor calls in flight.

        Batches are pipelined: the next batch is read once the backlog has fallen to the
        gate's width, so the vendor calls never wait for a batch's slowest ticket. The
        database work of a ticket runs between awaits, so transactions never interleave.
        The first connection-level failure stops reading batches and ends the run once the
        tickets already started are done.
        """
        after = 0
        pending: set[asyncio.Future[None]] = set()
        failures: list[BaseException] = []
        try:
            while not failures:
                batch = self._dirty_batch(after)
                if not batch:
                    break
                after = batch[0][-1][0]
                pending |= {asyncio.ensure_future(work) for work in self._dirty_work(*batch)}
                while len(pending) > self.options.concurrency and not failures:
                    done, pending = await asyncio.wait(pending, return_when=FIRST_COMPLETED)
                    failures += _failures(done)
            if pending:
                done, pending = await asyncio.wait(pending)
                failures += _failures(done)
        finally:
            for task in pending:  # cancelled run: stop what has not finished
                task.cancel()
            self._record_acks()
        if failures:
            raise failures[0]

    def _dirty_batch(
        self, after: int
    ) -> tuple[list[tuple[int, int]], dict[int, Ticket], dict[int, TicketLink]] | None:
        """The next batch of dirty marks past ticket ``after``, with tickets and links."""
        with self.mirror.read() as session:
            batch = store.dirty_batch(session, self.name, after, self.options.batch_size)
            if not batch:
                return None
            ids = [t for t, _ in batch]
            return (
                batch,
                store.tickets_by_id(session, ids),
                store.links_by_ticket(session, self.name, ids),
            )

    def _dirty_work(
        self,
        batch: Sequence[tuple[int, int]],
        tickets: dict[int, Ticket],
        links: dict[int, TicketLink],
    ) -> list[Coroutine[Any, Any, None]]:
        async def one(ticket_id: int, version: int) -> None:
            self._check_stop()
            await self._one_dirty(tickets.get(ticket_id), links.get(ticket_id), ticket_id, version)

        if self.options.fence is not None and self.direction != "pull":
            self._journal_sends(
                [
                    (link, self._push_merge(link, ticket).pushes)
                    for ticket_id, _ in batch
                    if (ticket := tickets.get(ticket_id)) is not None
                    and (link := links.get(ticket_id)) is not None
                    and link.state == "active"
                ]
            )
        return [one(t, v) for t, v in batch]

    def _journal_sends(self, pushes: Sequence[tuple[TicketLink, dict[str, Any]]]) -> None:
        """Journal the updates about to be sent with the lease generation (§7.3): one
        transaction for a batch, before any of its sends. Without a lease: nothing."""
        fence = self.options.fence
        if fence is None:
            return
        rows = []
        for link, values in pushes:
            unsent = {k: v for k, v in values.items() if self._sent.get((link.id, k)) != v}
            for name, value in unsent.items():
                self._sent[(link.id, name)] = value
                rows.append(
                    store.journal_row(
                        run_id=self.run_id,
                        connection=self.name,
                        action="send",
                        ticket_id=link.ticket_id,
                        external_id=link.external_id,
                        field=name,
                        new=canonical_text(value),
                        generation=fence.generation,
                    )
                )
        if rows:
            with self._write() as session:
                store.journal_many(session, rows)

    async def _one_dirty(
        self, ticket: Ticket | None, link: TicketLink | None, ticket_id: int, version: int
    ) -> None:
        now = self.clock()
        if ticket is None:
            self._clear(ticket_id, version)
        elif link is None:
            if self._wants_create(ticket):
                await self._create(ticket, version)
            else:
                self._clear(ticket_id, version)
        elif link.state != "active" or self.direction == "pull":
            self._clear(ticket_id, version)
        elif link.next_retry_at is not None and link.next_retry_at > now:
            return  # waiting out its backoff; stays dirty
        else:
            await self._push(ticket, link, version)

    def _clear(self, ticket_id: int, version: int) -> None:
        self._finished(Ack(ticket_id, version))

    def _finished(self, ack: Ack) -> None:
        """Hand a finished ticket to the group commit; commit the group when it is due."""
        self._acks.add(ack)
        if self._acks.due():
            self._record_acks()

    def _record_acks(self) -> None:
        """Record every finished ticket of the group in one transaction (see ``acks``)."""
        acks = self._acks.take()
        if not acks:
            return
        journal: list[dict[str, Any]] = []
        with self._write() as session:
            links = store.links_by_id(session, [a.link_id for a in acks if a.link_id])
            cleared = []
            for ack in acks:
                link = links.get(ack.link_id) if ack.link_id is not None else None
                if ack.link_id is not None and link is None:
                    continue  # the ticket went away meanwhile
                if link is not None:
                    journal += self._settle_push(link, ack)
                cleared.append((ack.ticket_id, ack.version))
            store.journal_many(session, journal)
            store.clear_dirty_many(session, self.name, cleared)
        self.counts.pushed += sum(1 for a in acks if a.pushed and a.link_id in links)

    def _settle_push(self, link: TicketLink, ack: Ack) -> list[dict[str, Any]]:
        """Give ``link`` the base ``ack``'s push agreed on; return its journal rows."""
        assert ack.merge is not None
        link.base = ack.merge.new_base(link.base)
        if ack.modified_at is not None:
            link.remote_modified_at = ack.modified_at
        if ack.pushed:
            link.fail_count, link.next_retry_at = 0, None
            if link.last_error_kind != "unmapped_remote":  # not a failure to send
                link.last_error = link.last_error_kind = None
            link.missing_count = 0
        # the push merged against the base, not the vendor's values: a problem with a
        # vendor value the pull reported is still there
        self._link_error(link, ack.errors, saw_remote=False)
        return [
            store.journal_row(
                run_id=self.run_id,
                connection=self.name,
                action="push",
                ticket_id=ack.ticket_id,
                external_id=ack.external_id,
                field=d.field,
                old=d.was_remote,
                new=d.remote,
            )
            for d in ack.merge.decisions
            if d.pushes
        ]

    def _push_merge(self, link: TicketLink, ticket: Ticket) -> TicketMerge:
        """Merge the local ticket against the vendor's last known values (the base)."""
        remote = {k: v.get("remote") for k, v in link.base.items() if isinstance(v, dict)}
        return merge_ticket(
            link.base,
            store.local_values(ticket),
            remote,
            self.rules.contexts(ticket.updated_at, link.remote_modified_at),
        )

    async def _refresh(self, ticket: Ticket, link: TicketLink) -> tuple[Ticket, TicketLink] | None:
        """Read the ticket at the vendor and merge it in first (``fetch_before_update``).

        Returns the ticket and link as they stand after that merge, or None when the
        vendor failed for this ticket only (recorded on the link).
        """
        assert link.external_id is not None
        try:
            external_id = link.external_id
            fresh = await self._vendor(lambda: self.adapter.get(external_id))
            if fresh is None:
                raise NotFound(
                    f"{self.name}: ticket {link.external_id} not found", connection=self.name
                )
        except ItemError as exc:
            await self._push_failed(link, exc)
            return None
        except VendorError as exc:
            self._record_ticket_failure(link, exc, backoff=False)
            raise
        if agrees_with_base(link.base, fresh.fields):
            return ticket, link  # nothing changed at the vendor: nothing to merge in
        with self._write(origin=self.name) as session:
            current = session.get(TicketLink, link.id)
            now = session.get(Ticket, ticket.id)
            if current is None or now is None:
                return None
            merge = merge_ticket(
                current.base,
                store.local_values(now),
                fresh.fields,
                self.rules.contexts(now.updated_at, fresh.modified_at),
            )
            self._apply_remote_merge(session, current, now, fresh, merge)
        with self.mirror.read() as session:
            refreshed = session.get(Ticket, ticket.id), session.get(TicketLink, link.id)
        if refreshed[0] is None or refreshed[1] is None:
            return None
        return refreshed[0], refreshed[1]

    async def _push(self, ticket: Ticket, link: TicketLink, version: int) -> None:
        merge = self._push_merge(link, ticket)
        if merge.pushes and self.caps.fetch_before_update:
            refreshed = await self._refresh(ticket, link)
            if refreshed is None:
                return
            ticket, link = refreshed
            merge = self._push_merge(link, ticket)
        errors = [d.error for d in merge.decisions if d.error]
        pushes = merge.pushes
        reply: RemoteTicket | None = None
        if pushes:
            assert link.external_id is not None
            self._journal_sends([(link, pushes)])  # a no-op unless the refresh changed them
            try:
                external_id = link.external_id
                reply = await self._vendor(
                    lambda: self.adapter.update(external_id, pushes), write=True
                )
            except ItemError as exc:
                await self._push_failed(link, exc)
                return
            except VendorError as exc:
                self._record_ticket_failure(link, exc, backoff=False)
                raise
            crashpoint("after_vendor_ack")
        self._finished(
            Ack(
                ticket.id,
                version,
                link_id=link.id,
                external_id=link.external_id,
                merge=merge,
                modified_at=reply.modified_at if reply is not None else None,
                errors=tuple(errors),
            )
        )

    async def _push_failed(self, link: TicketLink, exc: ItemError) -> None:
        missing = False
        if isinstance(exc, NotFound) and link.external_id is not None:
            missing = await self.adapter.get(link.external_id) is None
        self._record_ticket_failure(link, exc, backoff=True, missing=missing)

    def _record_ticket_failure(
        self, link: TicketLink, exc: VendorError, *, backoff: bool, missing: bool = False
    ) -> None:
        self.counts.errors += 1
        now = self.clock()
        with self._write() as session:
            current = session.get(TicketLink, link.id)
            if current is None:
                return
            current.fail_count += 1
            current.last_error = self._ticket_message(current, str(exc))
            current.last_error_kind = exc.kind
            if backoff:
                current.next_retry_at = now + _backoff(current.fail_count)
            if missing:
                current.missing_count += 1
                if current.missing_count >= 2:
                    current.state = "orphaned"
            row = session.get(SyncConnection, self.name)
            if row is not None:
                row.last_error = {
                    "at": now.isoformat(),
                    "kind": exc.kind,
                    "message": current.last_error,
                    "ticket_id": current.ticket_id,
                    "external_id": current.external_id,
                }

    def _wants_create(self, ticket: Ticket) -> bool:
        if not self.creates or self.create_when is None:
            return False
        local = store.local_values(ticket)
        return all(local.get(k) in values for k, values in self.create_when.items())

    def _create_values(self, ticket: Ticket) -> tuple[dict[str, str | None], dict[str, Any]]:
        """Vendor values to create the ticket with, and the base they make; may raise Unmapped."""
        local = store.local_values(ticket)
        values: dict[str, str | None] = {}
        base: dict[str, Any] = {}
        for name in dict.fromkeys([*CREATE_FIELDS, *self.rules.maps]):
            if name not in self.caps.readable and name not in self.caps.writable:
                continue
            vendor = self.rules.create_map(name).to_vendor(local.get(name))
            values[name] = vendor
            if name in self.rules.maps:
                base[name] = {"local": local.get(name), "remote": vendor}
        return values, base

    async def _create(self, ticket: Ticket, version: int) -> None:
        try:
            values, base = self._create_values(ticket)
        except Unmapped as exc:
            self.counts.errors += 1
            self._connection_error(exc, ticket.id)
            self._clear(ticket.id, version)
            return
        marker = f"tsync-{ticket.id}-{secrets.token_hex(4)}"
        with self._write() as session:
            link = TicketLink(
                ticket_id=ticket.id,
                connection=self.name,
                state="creating",
                marker=marker,
                base=base,
            )
            session.add(link)
            session.flush()
            store.clear_dirty(session, self.name, ticket.id, version)
        crashpoint("after_create_intent")
        await self._send_create(link, values)

    async def _send_create(self, link: TicketLink, values: dict[str, str | None]) -> None:
        assert link.marker is not None
        try:
            marker = link.marker
            remote = await self._vendor(lambda: self.adapter.create(values, marker), write=True)
        except ItemError as exc:
            self._record_ticket_failure(link, exc, backoff=True)
            return
        except VendorError as exc:
            self._record_ticket_failure(link, exc, backoff=False)
            raise
        crashpoint("after_vendor_ack")
        with self._write() as session:
            current = session.get(TicketLink, link.id)
            if current is not None:
                self._activate(session, current, remote, note="created")
        self.counts.created += 1

    def _activate(
        self, session: Session, link: TicketLink, remote: RemoteTicket, note: str
    ) -> None:
        """A create intent found its ticket at the vendor: the link becomes active.

        Where the vendor holds another value than we sent, either our value did not land
        or someone edited the ticket since. A field the adapter sets in a second call of the
        create (``create_followups``: Kapture's sub-status, Sirportly's first message) is
        taken as not landed: the base takes the vendor's value and, where the vendor can
        write it, is marked ``pending_push`` so the next merge sends the mirror's value. A
        field the vendor cannot write takes the vendor's value (we cannot have set it). Any
        other difference is an edit at the vendor: the base keeps what we sent, and the
        next merge pulls it (or settles a conflict).
        """
        settled = activation(
            link.base, remote.fields, self.rules.writable, self.caps.create_followups
        )
        link.base = settled.base
        if settled.pending:
            store.mark_dirty(session, self.name, link.ticket_id)
        link.external_id = remote.external_id
        link.external_key = self.adapter.id_key(remote.external_id)
        link.state = "active"
        link.remote_modified_at = remote.modified_at
        link.fail_count, link.next_retry_at = 0, None
        link.last_error = link.last_error_kind = None
        self._journal(
            session,
            "create",
            link.ticket_id,
            remote.external_id,
            note=note,
        )

    async def _recover(self, pulled_since: datetime | None = None) -> None:
        """Finish create intents a killed or failed run left behind (§3.3).

        Whether the vendor has the ticket is asked of the vendor (``finds_markers``), or
        learnt from the pull (``markers_in_pull``): called again after a complete pull with
        ``pulled_since``, the time that pull started, an intent recorded before it that the
        pull did not link by its marker never reached the vendor, and is created again.
        Where neither is possible, an intent whose outcome is unknown waits for the operator.
        """
        by_pull = self.caps.markers_in_pull and self.direction != "push"
        with self.mirror.read() as session:
            pending = list(store.creating_links(session, self.name, self.clock()))
            tickets = store.tickets_by_id(session, [link.ticket_id for link in pending])
        for link in pending:
            ticket = tickets.get(link.ticket_id)
            if ticket is None:
                continue
            if not self.caps.finds_markers and by_pull:
                if pulled_since is None or link.created_at >= pulled_since:
                    continue  # the pull has not looked for it yet
            elif not self.caps.finds_markers:
                if link.last_error_kind not in ("item", "not_found"):
                    self._surface_unknown_create(link)
                    continue
            else:
                assert link.marker is not None
                found = await self.adapter.find_marker(link.marker, since=link.created_at)
                if found is not None:
                    with self._write() as session:
                        current = session.get(TicketLink, link.id)
                        if current is not None:
                            self._activate(session, current, found, note="recovered by marker")
                    self.counts.created += 1
                    continue
            try:
                values, _ = self._create_values(ticket)
            except Unmapped as exc:
                self._record_ticket_failure(link, exc, backoff=True)
                continue
            await self._send_create(link, values)

    def _surface_unknown_create(self, link: TicketLink) -> None:
        message = (
            f"the outcome of creating ticket #{link.ticket_id} is unknown and "
            f"{self.adapter.vendor} cannot be searched for marker {link.marker}; check the "
            "vendor for that ticket before letting ticketsync create it again"
        )
        with self._write() as session:
            current = session.get(TicketLink, link.id)
            if current is not None and current.last_error_kind != "unknown_create":
                current.last_error = self._ticket_message(current, message)
                current.last_error_kind = "unknown_create"
        self.counts.errors += 1

    def _connection_error(self, exc: VendorError, ticket_id: int | None) -> None:
        with self._write() as session:
            row = session.get(SyncConnection, self.name)
            if row is not None:
                row.last_error = {
                    "at": self.clock().isoformat(),
                    "kind": exc.kind,
                    "message": f"{self.name}: ticket #{ticket_id}: {exc}",
                    "ticket_id": ticket_id,
                    "external_id": None,
                }

    # -- reporting -----------------------------------------------------------------

    def _act(self, line: str) -> None:
        self._actions.append(line)
        if self.options.dry_run:
            self.report(line)

    def _describe(self, link: TicketLink, merge: TicketMerge, only: tuple[Action, ...]) -> None:
        for d in merge.decisions:
            if d.action not in only:
                continue
            ids = f"#{link.ticket_id} {{}} {link.external_id}  {d.field}:"
            if d.pushes:
                line = f"{ids.format('->')} {d.was_remote!r} -> {d.remote!r}  (push)"
            elif d.pulls:
                line = f"{ids.format('<-')} {d.was_local!r} -> {d.local!r}  (pull)"
            else:
                line = (
                    f"{ids.format('<>')} local {d.was_local!r}, remote {d.was_remote!r}"
                    "  (conflict, manual)"
                )
            self._act(f"{self.name}: {line}")


def _problems(merge: TicketMerge) -> tuple[list[str | None], list[str | None]]:
    """A merge's unmapped values: with a mirror value, and with a vendor value."""
    errors = merge.of(Action.ERROR)
    local = [d.error for d in errors if d.was_remote is None]
    return local, [d.error for d in errors if d.was_remote is not None]


def _failures(done: Iterable[asyncio.Future[None]]) -> list[BaseException]:
    return [exc for task in done if not task.cancelled() and (exc := task.exception())]


def _backoff(failures: int) -> timedelta:
    return min(RETRY_CAP, RETRY_BASE * (2 ** max(0, failures - 1)))


async def _empty() -> AsyncIterator[Page]:
    return
    yield  # pragma: no cover
