"""Reading ProProfs's ticket list: date windows of at most three months, pages by link.

The list (``options.list_path``, UNCONFIRMED) takes creation-date, modification-date and
ticket-id range filters; a date range must fall within three months, and the answer holds
up to 25 tickets with ``next_page_link`` (and first/previous/last links, ``total_tickets``,
``page``) when there are more (DOC [P-list], docs/vendor-apis.md §2.4).

- ``windows`` splits a span into consecutive ranges of 89 days: three calendar months are
  never shorter than 89 days, so whichever way ProProfs counts "3 months" they pass.
- ``ListReader.scan`` follows ``next_page_link`` until it is absent (or null, or empty:
  which one marks the last page is UNCONFIRMED). Only the link's path and query are used,
  against the connection's own host: the credentials travel in every request's body and
  must never go to a host named in a reply. The filters are sent again with every page.
- Sort order is UNCONFIRMED. Offset pages can skip a ticket when an edit during the pass
  moves it behind the current page (an ascending order would), so a pass whose distinct
  tickets fall short of ``total_tickets`` is read once more; a second shortfall is logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from yarl import URL

from sync.errors import ProtocolError
from sync.vendors.proprofs.mapping import BadRecord, record_id

log = logging.getLogger(__name__)

PAGE_SIZE = 25  # DOC: "up to 25 ticket details at a time"
WINDOW = timedelta(days=89)
#: Keys that may hold the page's tickets: UNCONFIRMED (the example reply was not captured).
ITEM_KEYS = ("tickets", "data", "ticket_list")
_MAX_PAGES = 100_000  # a bound for replies without total_tickets

#: POSTs the list's filters to a path (with query); returns the parsed reply. The third
#: argument names what is read, for messages.
Post = Callable[[str, Mapping[str, Any], str], Awaitable[Any]]


def windows(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive ``(from, to)`` ranges of at most ``WINDOW`` covering ``start``..``end``."""
    while start < end:
        stop = min(start + WINDOW, end)
        yield start, stop
        start = stop


def page_items(document: Any) -> tuple[list[Any], int | None, str | None]:
    """``(tickets, total_tickets, next_page_link)`` of one list reply; ``BadRecord`` if none."""
    if isinstance(document, list):
        return document, None, None
    if not isinstance(document, Mapping):
        raise BadRecord(f"the list reply is {type(document).__name__}, not an object")
    items: Any = None
    for key in ITEM_KEYS:
        if key in document:
            items = document[key]
            break
    else:
        if _count(document.get("total_tickets")) != 0:
            raise BadRecord("the list reply holds no tickets (under 'tickets' or 'data')")
        items = []  # an empty result may come without a ticket list at all
    if isinstance(items, Mapping):  # keyed by ticket id instead of a list (UNCONFIRMED)
        items = list(items.values())
    if not isinstance(items, list):
        raise BadRecord(f"the list reply's tickets are {type(items).__name__}, not a list")
    link = document.get("next_page_link")
    return items, _count(document.get("total_tickets")), link if isinstance(link, str) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class ListReader:
    """Pages of one connection's ticket list; see the module docstring."""

    def __init__(self, connection: str, list_path: str, post: Post) -> None:
        self.connection = connection
        self.list_path = list_path
        self._post = post

    async def first_page(self, filters: Mapping[str, Any], what: str) -> list[Any]:
        """The first page only (``check``, and gets that one page answers)."""
        items, _, _ = self._parse(await self._post(self.list_path, filters, what), what)
        return items

    async def scan(self, filters: Mapping[str, Any], what: str) -> AsyncIterator[list[Any]]:
        """Every ticket matching ``filters``, in pages, each (id, modified time) once."""
        yielded: set[tuple[str, str]] = set()
        for attempt in (1, 2):
            counted: set[str] = set()
            total: int | None = None
            async for items, announced in self._walk(filters, what):
                total = announced
                fresh = []
                for item in items:
                    key = _identity(item)
                    counted.add(key[0])
                    if key not in yielded:
                        yielded.add(key)
                        fresh.append(item)
                if fresh:
                    yield fresh
            if total is None or len(counted) >= total:
                return
            if attempt == 1:
                log.info(
                    "%s: %s: %d of %d announced tickets seen; reading the range once more",
                    self.connection,
                    what,
                    len(counted),
                    total,
                )
        log.warning(
            "%s: %s: ProProfs announced %s tickets but its pages held %d, twice",
            self.connection,
            what,
            total,
            len(counted),
        )

    async def _walk(
        self, filters: Mapping[str, Any], what: str
    ) -> AsyncIterator[tuple[list[Any], int | None]]:
        target = self.list_path
        visited: set[str] = set()
        while True:
            visited.add(target)
            items, total, link = self._parse(await self._post(target, filters, what), what)
            yield items, total
            following = self._next(link)
            if following is None:
                return
            target = following
            limit = _MAX_PAGES if total is None else total // PAGE_SIZE + 2
            if target in visited or len(visited) >= limit:
                raise ProtocolError(
                    f"{self.connection}: {what}: ProProfs's next_page_link does not end "
                    f"(page {len(visited) + 1} of {total} tickets would be {target})",
                    connection=self.connection,
                )

    def _next(self, link: str | None) -> str | None:
        """The path and query to POST for ``link``, on our own host; None when absent."""
        if link is None or not link.strip():
            return None
        url = URL(link.strip())
        if url.is_absolute() or link.startswith("/"):
            return url.path_qs
        if link.startswith("?"):
            return self.list_path + link
        return str(URL(self.list_path).join(url))

    def _parse(self, document: Any, what: str) -> tuple[list[Any], int | None, str | None]:
        try:
            return page_items(document)
        except BadRecord as exc:
            raise ProtocolError(
                f"{self.connection}: {what}: {exc}", connection=self.connection
            ) from None


def _identity(item: Any) -> tuple[str, str]:
    if not isinstance(item, Mapping):
        return repr(item), ""
    try:
        ticket = record_id(item)
    except BadRecord:
        ticket = repr(item.get("ticket_id"))
    return ticket, str(item.get("modified_date_time"))
