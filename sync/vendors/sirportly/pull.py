"""Listing changed Sirportly tickets: SPQL on ``tickets.updated_at``, else ``tickets/all``.

SPQL (docs/vendor-apis.md §3.4 option B, the documented query API)::

    SELECT tickets.reference, tickets.updated_at, tickets.last_update_posted_at FROM tickets
    WHERE (tickets.updated_at >= 'YYYY-MM-DD HH:MM:SS'
           OR tickets.last_update_posted_at >= 'YYYY-MM-DD HH:MM:SS')
    ORDER BY tickets.updated_at LIMIT o,n

The ``last_update_posted_at`` half (docs/architecture.md §8.5) finds tickets that only got a
new update (a comment): whether posting one moves ``updated_at`` is UNCONFIRMED
(docs/vendor-apis.md §6.2). Such rows sort by their older ``updated_at``, before every row
the window's start admits, so they come in the first page(s) of a window and stay in
``seen`` while their post time is within it; a restart never yields them twice.

``LIMIT offset,count`` is what public clients use (3P); the absolute date literal is
UNCONFIRMED (only relative dates such as ``3.months.ago`` are documented), so a 422 for the
query sends the adapter to the fallback. The literal is UTC; whether Sirportly reads it in
the account's time zone is also unconfirmed, which ``lookback_seconds`` can absorb.

Paging by offset alone would skip a ticket whenever an edit during the pass moves one from
below the offset to the end, so each full page restarts the window at its last
``updated_at`` (offset 0), skipping rows already yielded with the same time; the offset steps
only while a whole page shares the window's start (a bulk change within one second).

Fallback ``tickets/all`` with ``sort_by=updated_at`` and ``order=desc`` (3P: the official
value list and page size are UNCONFIRMED): newest first, page by page, until a record older
than the window's start. An edit during the pass moves a ticket to page 1, which only repeats
a record on the next page, never skips one. That the vendor really sorts is checked: a record
newer than the one before it is a ``ProtocolError``, not a silent gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sync.errors import ProtocolError
from sync.vendors.sirportly.mapping import parse_time

PAGE = 100
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COLUMNS = ("tickets.reference", "tickets.updated_at", "tickets.last_update_posted_at")

#: Runs one SPQL query; returns the decoded reply.
Query = Callable[[str], Awaitable[Any]]
#: Fetches one page (1-based) of ``tickets/all``; returns the decoded reply.
Lister = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class Row:
    """One SPQL result: a ticket's reference, ``updated_at`` and ``last_update_posted_at``."""

    reference: str
    updated_at: datetime
    posted_at: datetime | None = None

    @property
    def changed_at(self) -> datetime:
        """The later of the two times: what the cursor and the window compare."""
        return max(self.updated_at, self.posted_at or self.updated_at)


def spql_query(start: datetime, offset: int, count: int) -> str:
    literal = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"SELECT {', '.join(COLUMNS)} FROM tickets WHERE (tickets.updated_at >= '{literal}' "
        f"OR tickets.last_update_posted_at >= '{literal}') "
        f"ORDER BY tickets.updated_at LIMIT {offset},{count}"
    )


def _column(fields: Any, column: str, position: int) -> int:
    # How the reply names its fields is UNCONFIRMED ("tickets.reference" or "reference"):
    # either is found, and without a usable list the columns are taken in query order.
    if isinstance(fields, list):
        names = [str(f).lower() for f in fields]
        for wanted in (column, column.split(".", 1)[1]):
            if wanted in names:
                return names.index(wanted)
    return position


def parse_rows(document: Any, connection: str) -> list[Row]:
    """The rows of an SPQL reply ``{"query", "fields", "results": [[...], ...]}``."""
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list):
        raise ProtocolError(
            f"{connection}: Sirportly's SPQL reply has no list of results", connection=connection
        )
    fields = document.get("fields")
    ref_at, time_at, posted_at = (_column(fields, c, i) for i, c in enumerate(COLUMNS))
    rows = []
    for result in results:
        try:
            reference, updated = result[ref_at], parse_time(result[time_at])
            posted = parse_time(result[posted_at]) if len(result) > posted_at else None
        except (IndexError, KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(
                f"{connection}: an SPQL result is not (reference, updated_at): {result!r} ({exc})",
                connection=connection,
            ) from None
        if not isinstance(reference, str) or not reference or updated is None:
            raise ProtocolError(
                f"{connection}: an SPQL result lacks a reference or updated_at: {result!r}",
                connection=connection,
            )
        rows.append(Row(reference, updated, posted))
    return rows


class SpqlScan:
    """Yields the SPQL rows of tickets updated at or after ``start``, in pages, each once."""

    def __init__(self, connection: str, query: Query) -> None:
        self.connection = connection
        self._query = query

    async def pages(self, start: datetime) -> AsyncIterator[list[Row]]:
        start = start.replace(microsecond=0)
        offset = 0
        seen: dict[str, Row] = {}  # reference -> its row, for rows changed at or after start
        while True:
            rows = parse_rows(await self._query(spql_query(start, offset, PAGE)), self.connection)
            self._check_order(rows)
            fresh = [r for r in rows if seen.get(r.reference) != r]
            seen.update((r.reference, r) for r in rows)
            if fresh:
                yield fresh
            if len(rows) < PAGE:
                return
            last = rows[-1].updated_at
            if last > start:  # progress: restart the window at the page's end
                start, offset = last, 0
                seen = {k: v for k, v in seen.items() if v.changed_at >= start}
            else:  # a whole page within the window's first second: page into it
                offset += PAGE

    def _check_order(self, rows: Sequence[Row]) -> None:
        for before, after in pairwise(rows):
            if after.updated_at < before.updated_at:
                raise ProtocolError(
                    f"{self.connection}: Sirportly's SPQL results are not ordered by "
                    f"updated_at ({before.reference} before {after.reference})",
                    connection=self.connection,
                )


def record_time(record: Mapping[str, Any], connection: str) -> datetime:
    """A list record's ``updated_at``; the fallback cannot page without it."""
    try:
        moment = parse_time(record.get("updated_at"))
    except ValueError:
        moment = None
    if moment is None:
        raise ProtocolError(
            f"{connection}: ticket {record.get('reference')}: tickets/all gave no valid "
            f"updated_at ({record.get('updated_at')!r}); changes cannot be paged without it",
            connection=connection,
        )
    return moment


def _records(document: Any, connection: str) -> tuple[list[dict[str, Any]], int | None]:
    records = document.get("records") if isinstance(document, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ProtocolError(
            f"{connection}: Sirportly's tickets/all reply has no list of records",
            connection=connection,
        )
    pagination = document.get("pagination")
    pages = pagination.get("pages") if isinstance(pagination, dict) else None
    return records, pages if isinstance(pages, int) else None


class ListScan:
    """Yields the ``tickets/all`` records updated at or after ``start``, newest first."""

    def __init__(self, connection: str, lister: Lister) -> None:
        self.connection = connection
        self._list = lister

    async def pages(self, start: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        page, previous = 1, None
        while True:
            records, pages = _records(await self._list(page), self.connection)
            fresh = []
            for record in records:
                moment = record_time(record, self.connection)
                if previous is not None and moment > previous:
                    raise ProtocolError(
                        f"{self.connection}: tickets/all ignored sort_by=updated_at&order=desc "
                        f"(ticket {record.get('reference')} is newer than the one before it)",
                        connection=self.connection,
                    )
                previous = moment
                if moment < start:
                    break
                fresh.append(record)
            if fresh:
                yield fresh
            if len(fresh) < len(records) or not records or (pages is not None and page >= pages):
                return
            page += 1
