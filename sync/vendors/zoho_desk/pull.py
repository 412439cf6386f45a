"""Paging Zoho Desk's ticket search past its ``from`` limit, each ticket once.

``GET /api/v1/tickets/search`` with ``modifiedTimeRange=<from>,<to>``,
``sortBy=modifiedTime`` (ascending) and ``limit=100``; Zoho refuses ``from`` beyond 999, so
a window holding more cannot be paged by offset alone. Instead each full page restarts the
window at the last ``modifiedTime`` seen, 1 ms early (so it works whether Zoho's range start
is inclusive or exclusive, which is UNCONFIRMED), skipping tickets already yielded with the
same ``modifiedTime``; ``from`` steps by 100 only while a page ends within 1 ms of the window's
start (many tickets changed at once, e.g. by ``updateMany``). Restarting on every page, not
only every 1,000 tickets, also keeps an edit made during the pass (which moves a ticket to the
window's end) from shifting unseen tickets below an offset already read. Should more than
1,000 tickets share one millisecond, that instant is paged by ``createdTime`` the same way.

Memory stays bounded: only the ids of tickets at the window's current start are remembered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.errors import ProtocolError
from sync.vendors.zoho_desk.mapping import parse_time, zoho_time

PAGE = 100
LAST_FROM = 900  # from + limit may not pass Zoho's 999 + 100
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # Zoho's range pattern admits years 19xx-20xx
TICK = timedelta(milliseconds=1)

#: Sends one search with these parameters; returns its items (empty for 204).
Search = Callable[[Mapping[str, str]], Awaitable[list[dict[str, Any]]]]


@dataclass
class _Window:
    """One pass keyed on ``key`` (``modifiedTime`` or ``createdTime``) over [start, end]."""

    key: str
    start: datetime
    end: datetime
    fixed: Mapping[str, str]  # further search parameters of this pass
    offset: int = 0

    def params(self) -> dict[str, str]:
        range_param = "modifiedTimeRange" if self.key == "modifiedTime" else "createdTimeRange"
        return {
            **self.fixed,
            range_param: f"{zoho_time(self.start)},{zoho_time(self.end)}",
            "sortBy": self.key,
            "limit": str(PAGE),
            "from": str(self.offset),
        }


class WindowScan:
    """Yields the search items of tickets modified in [start, end], in pages, each once."""

    def __init__(self, connection: str, search: Search) -> None:
        self.connection = connection
        self._search = search

    def pages(self, start: datetime, end: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        return self._scan(_Window("modifiedTime", start, end, {}))

    async def _scan(
        self, window: _Window, outer: Mapping[str, str] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        seen: dict[str, str] = {}  # id -> window.key value, for tickets at or after its start
        while True:
            items = await self._search(window.params())
            fresh = [i for i in items if not _already(i, window.key, seen, outer)]
            for item in items:
                seen[str(item.get("id"))] = str(item.get(window.key))
            if fresh:
                yield fresh
            if len(items) < PAGE:
                return
            last = self._time(items[-1], window.key)
            if last - TICK > window.start:  # progress: restart the window at the page's end
                window.start, window.offset = last - TICK, 0
                seen = {k: v for k, v in seen.items() if _at_or_after(v, window.start)}
            elif window.offset < LAST_FROM:  # a crowd within 1 ms of the start: page into it
                window.offset += PAGE
            else:
                async for page in self._crowded(window, seen):
                    yield page
                window.start, window.offset = window.start + TICK, 0

    async def _crowded(
        self, window: _Window, seen: dict[str, str]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Over 1,000 tickets modified within 1 ms of the start: page them by createdTime."""
        if window.key != "modifiedTime":
            raise ProtocolError(
                f"{self.connection}: more than 1,000 tickets share a modified and a created "
                "time; Zoho's search cannot page past them",
                connection=self.connection,
            )
        instant = f"{zoho_time(window.start)},{zoho_time(window.start + TICK)}"
        inner = _Window("createdTime", EPOCH, window.end, {"modifiedTimeRange": instant})
        async for page in self._scan(inner, outer=seen):
            for item in page:
                seen[str(item.get("id"))] = str(item.get("modifiedTime"))
            yield page

    def _time(self, item: Mapping[str, Any], key: str) -> datetime:
        try:
            moment = parse_time(item.get(key))
        except ValueError:
            moment = None
        if moment is None:
            raise ProtocolError(
                f"{self.connection}: a search result has no valid {key}: {item.get(key)!r}",
                connection=self.connection,
            )
        return moment


def _already(
    item: Mapping[str, Any], key: str, seen: Mapping[str, str], outer: Mapping[str, str] | None
) -> bool:
    """Whether this hit was yielded before with the same time (windows overlap by design)."""
    ticket_id = str(item.get("id"))
    if seen.get(ticket_id) == str(item.get(key)):
        return True
    return outer is not None and outer.get(ticket_id) == str(item.get("modifiedTime"))


def _at_or_after(value: str, start: datetime) -> bool:
    try:
        moment = parse_time(value)
    except ValueError:
        return False
    return moment is not None and moment >= start
