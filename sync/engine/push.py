"""Push: send every dirty ticket's local changes to the vendor, or create it there.

The change feed marks each ticket a local write touched (``ticket_dirty``), so the cost
follows the number of changes, not the mirror's size (docs/architecture.md §3.2, §3.4).
``route`` decides per dirty ticket; a push merges the mirror's values against the base
(the vendor's last known values), sends only the fields that changed and, once the vendor
acknowledged, hands an ``Ack`` to the group commit (``acks``): the new base, the journal
rows and the cleared dirty mark are recorded together. A killed run leaves the ticket
dirty, and the next merge finds the vendor already agreeing (or pushes again: an update
repeated only after a lost reply).
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sync.db.models import Ticket, TicketLink
from sync.engine import store
from sync.engine.acks import Ack, Acks
from sync.engine.crash import crashpoint
from sync.engine.create import create, wants_create
from sync.engine.journal import Sends, link_error, ticket_failure
from sync.engine.merge import TicketMerge, agrees_with_base, merge_ticket
from sync.engine.pull import apply_remote_merge, remote_merge
from sync.engine.refused import WriteRefusals
from sync.engine.state import RunState
from sync.errors import ItemError, NotFound, VendorError
from sync.vendors.base import RemoteTicket

Batch = tuple[list[tuple[int, int]], dict[int, Ticket], dict[int, TicketLink]]


class Route(StrEnum):
    CLEAR = "clear"  # nothing for this connection to send: only the dirty mark goes
    CREATE = "create"  # no link yet and the create rule matches
    WAIT = "wait"  # waiting out its backoff: stays dirty
    PUSH = "push"  # merge against the base and send what changed


def route(
    ticket: Ticket | None,
    link: TicketLink | None,
    *,
    direction: str,
    now: datetime,
    wants_create: Callable[[Ticket], bool],
    holds: Callable[[int], bool] = lambda ticket_id: False,
) -> Route:
    """What the push does with one dirty ticket (``ticket`` None: deleted meanwhile).
    ``holds``: a create matching holds back (docs/architecture.md §8.7)."""
    if ticket is None:
        return Route.CLEAR
    if link is None:
        # not linked here: create it if the rule says so, once matching lets it
        if not wants_create(ticket):
            return Route.CLEAR
        return Route.WAIT if holds(ticket.id) else Route.CREATE
    if link.state != "active" or direction == "pull":
        # a create intent, an orphan, or a connection that never sends
        return Route.CLEAR
    if link.next_retry_at is not None and link.next_retry_at > now:
        return Route.WAIT
    return Route.PUSH


def push_merge(state: RunState, link: TicketLink, ticket: Ticket) -> TicketMerge:
    """Merge the local ticket against the vendor's last known values (the base).

    A field whose vendor value is not known yet (``unseen``: ``merge.activation``) is left
    out: only a read of the vendor's value may settle its base."""
    remote = {
        k: v.get("remote")
        for k, v in link.base.items()
        if isinstance(v, dict) and not v.get("unseen")
    }
    return merge_ticket(
        link.base,
        store.local_values(ticket),
        remote,
        state.rules.contexts(ticket.updated_at, link.remote_modified_at),
    )


class Push:
    """Push or create every dirty ticket of one connection, ``concurrency`` at once."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.sends = Sends(state)
        self._acks = Acks(limit=max(32, 4 * state.options.concurrency), window=0.2)
        self.refusals = WriteRefusals(state)

    async def run(self) -> None:
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
                while len(pending) > self.state.options.concurrency and not failures:
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

    def _dirty_batch(self, after: int) -> Batch | None:
        """The next batch of dirty marks past ticket ``after``, with tickets and links."""
        state = self.state
        with state.mirror.read() as session:
            batch = store.dirty_batch(session, state.name, after, state.options.batch_size)
            if not batch:
                return None
            ids = [t for t, _ in batch]
            return (
                batch,
                store.tickets_by_id(session, ids),
                store.links_by_ticket(session, state.name, ids),
            )

    def _dirty_work(
        self,
        batch: Sequence[tuple[int, int]],
        tickets: dict[int, Ticket],
        links: dict[int, TicketLink],
    ) -> list[Coroutine[Any, Any, None]]:
        state = self.state

        async def one(ticket_id: int, version: int) -> None:
            state.check_stop()
            await self._one_dirty(tickets.get(ticket_id), links.get(ticket_id), ticket_id, version)

        if state.options.fence is not None and state.direction != "pull":
            self.sends.journal(
                [
                    (link, push_merge(state, link, ticket).pushes)
                    for ticket_id, _ in batch
                    if (ticket := tickets.get(ticket_id)) is not None
                    and (link := links.get(ticket_id)) is not None
                    and link.state == "active"
                ]
            )
        return [one(t, v) for t, v in batch]

    async def _one_dirty(
        self, ticket: Ticket | None, link: TicketLink | None, ticket_id: int, version: int
    ) -> None:
        state = self.state
        step = route(
            ticket,
            link,
            direction=state.direction,
            now=state.clock(),
            wants_create=lambda t: wants_create(state, t),
            holds=state.holds,
        )
        if step is Route.CREATE:
            assert ticket is not None
            if not await create(state, ticket, version, refusals=self.refusals):
                self._clear(ticket_id, version)
        elif step is Route.PUSH:
            assert ticket is not None and link is not None
            await self._push(ticket, link, version)
        elif step is Route.CLEAR:
            self._clear(ticket_id, version)

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
        state = self.state
        journal: list[dict[str, Any]] = []
        with state.write() as session:
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
            store.clear_dirty_many(session, state.name, cleared)
        state.counts.pushed += sum(1 for a in acks if a.pushed and a.link_id in links)

    def _settle_push(self, link: TicketLink, ack: Ack) -> list[dict[str, Any]]:
        """Give ``link`` the base ``ack``'s push agreed on; return its journal rows."""
        assert ack.merge is not None
        before = link.base
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
        link_error(self.state, link, ack.errors, saw_remote=False)
        return [
            self.state.journal_row(
                "push",
                ticket_id=ack.ticket_id,
                external_id=ack.external_id,
                field=d.field,
                old=d.was_remote,
                new=d.remote,
                canonical=((before.get(d.field) or {}).get("local"), d.local),
                vendor=(d.was_remote, d.remote),
            )
            for d in ack.merge.decisions
            if d.pushes
        ]

    async def _refresh(self, ticket: Ticket, link: TicketLink) -> tuple[Ticket, TicketLink] | None:
        """Read the ticket at the vendor and merge it in first (``fetch_before_update``).

        Returns the ticket and link as they stand after that merge, or None when the
        vendor failed for this ticket only (recorded on the link).
        """
        state = self.state
        assert link.external_id is not None
        try:
            external_id = link.external_id
            fresh = await state.vendor(lambda: state.adapter.get(external_id))
            if fresh is None:
                raise NotFound(
                    f"{state.name}: ticket {link.external_id} not found", connection=state.name
                )
        except ItemError as exc:
            await self._push_failed(link, exc)
            return None
        except VendorError as exc:
            ticket_failure(state, link, exc, backoff=False)
            raise
        if agrees_with_base(link.base, fresh.fields):
            return ticket, link  # nothing changed at the vendor: nothing to merge in
        with state.write(origin=state.name) as session:
            current = session.get(TicketLink, link.id)
            now = session.get(Ticket, ticket.id)
            if current is None or now is None:
                return None
            merge = remote_merge(state, current.base, now, fresh)
            apply_remote_merge(state, session, current, now, fresh, merge)
        with state.mirror.read() as session:
            refreshed = session.get(Ticket, ticket.id), session.get(TicketLink, link.id)
        if refreshed[0] is None or refreshed[1] is None:
            return None
        return refreshed[0], refreshed[1]

    async def _push(self, ticket: Ticket, link: TicketLink, version: int) -> None:
        state = self.state
        merge = push_merge(state, link, ticket)
        if merge.pushes and state.caps.fetch_before_update:
            refreshed = await self._refresh(ticket, link)
            if refreshed is None:
                return
            ticket, link = refreshed
            merge = push_merge(state, link, ticket)
        errors = [d.error for d in merge.decisions if d.error]
        pushes = merge.pushes
        reply: RemoteTicket | None = None
        if pushes:
            assert link.external_id is not None
            self.sends.journal([(link, pushes)])  # a no-op unless the refresh changed them
            try:
                external_id = link.external_id
                reply = await state.vendor(
                    lambda: state.adapter.update(external_id, pushes), write=True
                )
            except ItemError as exc:
                await self._push_failed(link, exc)
                return
            except VendorError as exc:
                if await self.refusals.wait(exc):
                    # refused before it was applied: merge again and send the values anew
                    await self._push_again(ticket.id, link.id, version)
                    return
                ticket_failure(state, link, exc, backoff=False)
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

    async def _push_again(self, ticket_id: int, link_id: int, version: int) -> None:
        """Push a ticket again after a refused update, from the mirror as it stands now."""
        with self.state.mirror.read() as session:
            ticket, link = session.get(Ticket, ticket_id), session.get(TicketLink, link_id)
        if ticket is None or link is None or link.state != "active":
            self._clear(ticket_id, version)  # gone meanwhile: nothing to send
            return
        await self._push(ticket, link, version)

    async def _push_failed(self, link: TicketLink, exc: ItemError) -> None:
        missing = False
        if isinstance(exc, NotFound) and link.external_id is not None:
            missing = await self.state.adapter.get(link.external_id) is None
        ticket_failure(self.state, link, exc, backoff=True, missing=missing)


def _failures(done: Iterable[asyncio.Future[None]]) -> list[BaseException]:
    return [exc for task in done if not task.cancelled() and (exc := task.exception())]
