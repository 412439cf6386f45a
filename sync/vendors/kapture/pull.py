"""Kapture's reads: tickets by id in batches, tickets by created day, and the pull cursor.

Kapture has no changed-since API (docs/vendor-apis.md §1.4), so a pull is two passes:

1. *Created-date pull*: ``select-ticket-between-start-and-end-dates`` for each tenant-local
   day from the cursor's ``created_day`` to today, one day per call (a call returns at most
   24 hours of data), paged with ``limit``/``offset``. A day stays in the cursor until it is
   over (plus ``DAY_GRACE`` for late indexing), so today's tickets are read again each run.
2. *Re-poll*: the linked ids the engine passes in ``watch`` (not-closed first), read through
   ``search-ticket-by-ticket-id`` with comma-separated ``ticket_ids``, at most
   ``repoll_budget`` ids per run, cycling through the list across runs; the cursor's
   ``repoll`` is the position where the next run starts.

The cursor is ``{"created_day": "YYYY-MM-DD", "repoll": <int>}``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sync.errors import NotFound, ProtocolError, Unreadable
from sync.vendors.base import Cursor, Page, RecordFailure, RemoteTicket
from sync.vendors.kapture.mapping import BadRecord, Reader
from sync.vendors.kapture.wire import KaptureWire

#: A day's created-date pull is repeated until this long after the day ended (tenant time),
#: for tickets that reach Kapture's index late or a clock running behind Kapture's.
DAY_GRACE = timedelta(hours=1)
#: The share of each run's re-poll budget that goes to resolved and closed tickets, so a
#: reopen is seen too, while open tickets, which change more, are re-read more often.
CLOSED_SHARE = 0.2


@dataclass(frozen=True)
class PullCursor:
    created_day: date | None = None
    repoll: int = 0
    repoll_closed: int = 0

    def dump(self) -> dict[str, Any]:
        day = self.created_day.isoformat() if self.created_day else None
        return {"created_day": day, "repoll": self.repoll, "repoll_closed": self.repoll_closed}

    @classmethod
    def load(cls, cursor: Cursor | None, connection: str) -> PullCursor:
        if cursor is None:
            return cls()
        try:
            day = cursor.get("created_day")
            positions = [cursor.get("repoll", 0), cursor.get("repoll_closed", 0)]
            for value in positions:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(value)
            return cls(date.fromisoformat(day) if day else None, *positions)
        except (AttributeError, TypeError, ValueError):
            raise ProtocolError(
                f"{connection}: stored cursor {cursor!r} is not a Kapture cursor",
                connection=connection,
            ) from None


@dataclass(frozen=True)
class PullSettings:
    zone: tzinfo
    page_size: int
    batch_size: int
    repoll_budget: int
    initial_days: int
    #: Ask get-ticket for the conversation notes too (``options.read_notes``).
    read_notes: bool = False


class KaptureReads:
    """The read calls of one connection (``wire``) and their parsing (``reader``)."""

    def __init__(
        self,
        connection: str,
        wire: KaptureWire,
        reader: Reader,
        settings: PullSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connection = connection
        self.wire = wire
        self.reader = reader
        self.settings = settings
        self.clock = clock

    # -- the pull ------------------------------------------------------------------------

    async def pages(self, cursor: Cursor | None, watch: Sequence[str]) -> AsyncIterator[Page]:
        state = PullCursor.load(cursor, self.connection)
        today = self.today()
        first = state.created_day or today - timedelta(days=self.settings.initial_days - 1)
        resume = min(first, today)  # a cursor from a clock that ran ahead starts today
        day = resume
        while day <= today:
            complete = self.clock() >= self.day_end(day) + DAY_GRACE
            failures: list[RecordFailure] = []
            async for tickets, last in self.created_on(day, failures):
                if last and complete and resume == day:
                    resume = day + timedelta(days=1)
                yield Page(tickets, replace(state, created_day=resume).dump(), tuple(failures))
            day += timedelta(days=1)
        state = replace(state, created_day=resume)
        async for page in self._repoll(watch, state):
            yield page

    def _shares(self, open_ids: int, closed_ids: int) -> tuple[int, int]:
        """The budget split: closed tickets get ``CLOSED_SHARE`` of it, unless the open ones
        leave more; neither side takes more than it has."""
        budget = self.settings.repoll_budget
        closed = min(closed_ids, math.ceil(budget * CLOSED_SHARE)) if closed_ids else 0
        opened = min(open_ids, budget - closed)
        return opened, min(closed_ids, budget - opened)

    async def _repoll(self, watch: Sequence[str], state: PullCursor) -> AsyncIterator[Page]:
        open_count = getattr(watch, "open_count", len(watch))
        active = list(dict.fromkeys(watch[:open_count]))
        closed = [i for i in dict.fromkeys(watch[open_count:]) if i not in set(active)]
        take_open, take_closed = self._shares(len(active), len(closed))
        size = self.settings.batch_size
        for ids, take, field in (
            (active, take_open, "repoll"),
            (closed, take_closed, "repoll_closed"),
        ):
            if not take:
                continue
            start = getattr(state, field) % len(ids)
            chosen = [ids[(start + i) % len(ids)] for i in range(take)]
            for done in range(0, take, size):
                batch = chosen[done : done + size]
                failed: list[RecordFailure] = []
                tickets = await self.by_ids(batch, failed)
                state = replace(state, **{field: (start + done + len(batch)) % len(ids)})
                yield Page(tickets, state.dump(), failed)

    async def reread(self, ids: Sequence[str]) -> AsyncIterator[Page]:
        """Tickets whose records failed before, read again in batches (not stored cursors)."""
        size = self.settings.batch_size
        for done in range(0, len(ids), size):
            failures: list[RecordFailure] = []
            tickets = await self.by_ids(ids[done : done + size], failures)
            yield Page(tickets, None, failures)

    def today(self) -> date:
        return self.clock().astimezone(self.settings.zone).date()

    def day_end(self, day: date) -> datetime:
        midnight = datetime.combine(day + timedelta(days=1), time(), self.settings.zone)
        return midnight.astimezone(UTC)

    # -- created-date pull ---------------------------------------------------------------

    async def created_on(
        self, day: date, failures: list[RecordFailure] | None = None
    ) -> AsyncGenerator[tuple[list[RemoteTicket], bool], None]:
        """Pages of the tickets created on ``day`` (tenant-local), each with "is last".
        Records that do not parse go to ``failures`` (cleared before each page) instead."""
        size = self.settings.page_size
        offset = 0
        seen: set[str] = set()
        what = f"tickets created on {day.isoformat()}"
        while True:
            # Strings, as the public client sends them; offset paging is 3P [K-nm], the
            # documented ``limit`` alone could not page (docs/vendor-apis.md §1.4, UNCONFIRMED).
            body = [
                {
                    "start_date": day.isoformat(),
                    "end_date": day.isoformat(),
                    "limit": str(size),
                    "offset": str(offset),
                }
            ]
            items, total = await self._pull_call(body, what)
            if failures is not None:
                failures.clear()
            tickets = self._parse_all([(item, item) for item in items], what, failures)
            fresh = {t.external_id for t in tickets} - seen
            if tickets and not fresh:
                raise ProtocolError(
                    f"{self.connection}: {what}: the page at offset {offset} repeats earlier "
                    "tickets; this tenant seems to ignore offset paging, so the day cannot be "
                    "read completely",
                    connection=self.connection,
                )
            seen |= fresh
            offset += len(items)
            # A page longer than ``limit`` means the tenant does not paginate: all was sent.
            last = len(items) != size or (total is not None and offset >= total)
            yield tickets, last
            if last:
                return

    async def _pull_call(self, body: Any, what: str) -> tuple[list[Mapping[str, Any]], int | None]:
        try:
            document = await self.wire.call("pull", body, what)
        except NotFound:
            return [], 0  # "No Data found": nothing was created that day
        if not isinstance(document, Mapping):
            raise self._shape(what, "a JSON object with the tickets under 'message'")
        message = _lowered(document).get("message")
        total = _lowered(document).get("totalcount")
        # One public client accepts the tickets as a list, one object, or a text when there
        # are none (docs/vendor-apis.md §1.4): all three are read.
        if isinstance(message, str) or message is None:
            items: list[Any] = []
        elif isinstance(message, Mapping):
            items = [message]
        elif isinstance(message, list):
            items = message
        else:
            raise self._shape(what, "tickets under 'message'")
        if not all(isinstance(item, Mapping) for item in items):
            raise self._shape(what, "a list of ticket objects under 'message'")
        count = total if isinstance(total, int) and not isinstance(total, bool) else None
        return items, count

    # -- by id ---------------------------------------------------------------------------

    async def by_ids(
        self, ids: Sequence[str], failures: list[RecordFailure] | None = None
    ) -> list[RemoteTicket]:
        """The tickets with these ids that exist; a short batch answer is completed singly.
        Records that do not parse go to ``failures`` (without it: ``Unreadable``)."""
        failed: list[RecordFailure] = []
        found = await self._search(ids, failed)
        if len(ids) > 1:
            # Batch answers are 3P, not guaranteed (docs/vendor-apis.md §1.3): whatever is missing
            # from one is asked for on its own, so a short answer loses nothing.
            answered = set(found) | {f.external_id for f in failed}
            for external_id in [i for i in ids if i not in answered]:
                single = await self._search([external_id], failed)
                found.update(single)
        if failures is None and failed:
            first = failed[0]
            raise Unreadable(first.error, connection=self.connection, external_id=first.external_id)
        if failures is not None:
            failures.extend(failed)
        return [found[i] for i in ids if i in found]

    async def one(self, external_id: str) -> RemoteTicket | None:
        found = await self.by_ids([external_id])
        return found[0] if found else None

    async def _search(
        self, ids: Sequence[str], failures: list[RecordFailure]
    ) -> dict[str, RemoteTicket]:
        what = f"ticket {ids[0]}" if len(ids) == 1 else f"tickets {ids[0]}..{ids[-1]}"
        try:
            body = {"ticket_ids": ",".join(ids)}
            if self.settings.read_notes:  # 3P [K-sync]: notes come back per ticket (§6.3)
                body["conversation_type"] = "notes"
            document = await self.wire.call("get", body, what)
        except NotFound:
            return {}
        if isinstance(document, Mapping) and "status" in _lowered(document):
            document = _lowered(document).get("message")  # a success envelope around it
            if isinstance(document, str) or document is None:
                return {}
        elements = [document] if isinstance(document, Mapping) else document
        if not isinstance(elements, list) or not all(isinstance(e, Mapping) for e in elements):
            raise self._shape(what, "a JSON array of tickets")
        records = []
        for element in elements:
            details = element.get("task_details", element)
            if not isinstance(details, Mapping):
                raise self._shape(what, "'task_details' objects")
            records.append((details, element))
        found = {t.external_id: t for t in self._parse_all(records, what, failures)}
        if len(ids) == 1 and found and ids[0] not in found:
            raise ProtocolError(
                f"{self.connection}: ticket {ids[0]}: Kapture answered with ticket(s) "
                f"{', '.join(sorted(found))} instead",
                connection=self.connection,
            )
        return found

    # -- parsing -------------------------------------------------------------------------

    def _parse_all(
        self,
        records: Sequence[tuple[Mapping[str, Any], Any]],
        what: str,
        failures: list[RecordFailure] | None,
    ) -> list[RemoteTicket]:
        """The records as tickets; one that does not parse is that ticket's failure
        (docs/architecture.md §8.2), or raises ``Unreadable`` when ``failures`` is None."""
        tickets = []
        for flat, whole in records:
            try:
                tickets.append(self._parse(flat, whole, what))
            except Unreadable as exc:
                if failures is None:
                    raise
                failures.append(RecordFailure.of(exc))
        return tickets

    def _parse(self, flat: Mapping[str, Any], whole: Any, what: str) -> RemoteTicket:
        try:
            return self.reader.ticket(flat, whole)
        except BadRecord as exc:
            ticket = next((str(flat[k]) for k in ("ticketId", "ticket_id") if k in flat), None)
            where = f"ticket {ticket}" if ticket else what
            raise Unreadable(
                f"{self.connection}: {where}: unreadable Kapture record: {exc}",
                connection=self.connection,
                external_id=ticket,
                raw=whole,
            ) from None

    def _shape(self, what: str, expected: str) -> ProtocolError:
        return ProtocolError(
            f"{self.connection}: {what}: Kapture's reply is not {expected}",
            connection=self.connection,
        )


def _lowered(document: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in document.items()}
