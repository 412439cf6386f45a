"""The changed-since cursor of the time-based adapters (docs/architecture.md §8.2).

A pull's cursor follows the vendor's clock, not only the data, so an idle run after a burst
costs the API minimum once the burst is older than the lookback:

- A *complete* pull ends with ``{"vendor_now", "newest_seen"}``: ``vendor_now`` is the
  ``Date`` header of the pull's first reply minus 1 s (the header's resolution), and
  ``newest_seen`` the newest modified time seen that was not in the future.
- The next pull starts at ``max(vendor_now, min(newest_seen, vendor_now + skew)) - lookback``
  (``skew`` is ``sync.clock_skew_seconds``), never later, so index lag stays covered.
- The pages *during* a pull carry the adapter's per-page cursor of old, ``{key: newest}``, so
  an incomplete pull resumes as it always did; such cursors, and those stored before this
  rule, are read as ``newest - lookback`` (the on-the-fly migration).
- A ticket dated beyond the vendor's now plus the skew never moves the cursor: its time is
  unknown to the merge (``RemoteTicket.future_at``; ``sync.tie_break`` decides) and the
  engine counts it as ``future_dated``.

Without a readable ``Date`` (UNCONFIRMED that every vendor sends one), the complete cursor
falls back to the per-page form and the future bound to this host's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.errors import ProtocolError
from sync.reply import Response
from sync.vendors.base import Adapter, Cursor, RemoteTicket

#: The ``Date`` header counts whole seconds: its reading may be up to 1 s late.
DATE_RESOLUTION = timedelta(seconds=1)

#: Parses a stored time (the adapter's own spelling); raises ValueError when it cannot.
Parse = Callable[[Any], datetime | None]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CursorRule:
    """How one connection reads and writes its cursor.

    ``key``: the per-page cursor's key (``modified_after``, ``updated_after``); ``parse``:
    the adapter's time parser for it; ``lookback`` and ``skew``: the connection's settings.
    """

    connection: str
    key: str
    parse: Parse
    lookback: timedelta
    skew: timedelta

    def resume(self, cursor: Cursor | None) -> datetime | None:
        """The time the previous pull vouches for (None: no cursor, a first import)."""
        if cursor is None:
            return None
        try:
            if isinstance(cursor, Mapping) and "vendor_now" in cursor:
                vendor_now = _required(self.parse(cursor["vendor_now"]))
                seen = cursor.get("newest_seen")
                newest = self.parse(seen) if seen is not None else None
                if newest is None:
                    return vendor_now
                return max(vendor_now, min(newest, vendor_now + self.skew))
            return _required(self.parse(cursor[self.key]))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ProtocolError(
                f"{self.connection}: stored cursor {cursor!r} is not a cursor of this vendor",
                connection=self.connection,
            ) from None

    def start(self, cursor: Cursor | None) -> datetime | None:
        """Where the next pull starts: ``resume`` minus the lookback (None: from the start)."""
        resume = self.resume(cursor)
        return None if resume is None else resume - self.lookback

    def pull(self, cursor: Cursor | None) -> PullClock:
        """The bookkeeping of one pull from ``cursor``."""
        return PullClock(self, self.resume(cursor))


@dataclass
class PullClock:
    """One pull's reading of the vendor's clock, and the newest time it saw."""

    rule: CursorRule
    #: What the stored cursor vouched for; the per-page cursor never falls behind it.
    resumed: datetime | None
    vendor_now: datetime | None = None
    newest: datetime | None = None
    local_start: datetime = field(default_factory=lambda: datetime.now(UTC))
    _observed: bool = False

    def observe(self, response: Response) -> None:
        """Read the ``Date`` of the pull's first reply; later replies are ignored."""
        if self._observed:
            return
        self._observed = True
        date = response.date
        if date is not None:
            self.vendor_now = date - DATE_RESOLUTION

    @property
    def future_bound(self) -> datetime:
        """Modified times after this are in the future (vendor now plus the skew)."""
        return (self.vendor_now or self.local_start) + self.rule.skew

    def stamp(self, ticket: RemoteTicket) -> RemoteTicket:
        """``ticket`` as the merge sees it: a future time becomes unknown (``future_at``)
        and never counts as seen; any other time may move the cursor."""
        moment = ticket.modified_at
        if moment is None:
            return ticket
        if moment > self.future_bound:
            return replace(ticket, modified_at=None, future_at=moment)
        self.see(moment)
        return ticket

    def see(self, moment: datetime | None) -> None:
        """Count ``moment`` as seen (unless it is in the future)."""
        if moment is None or moment > self.future_bound:
            return
        if self.newest is None or moment > self.newest:
            self.newest = moment

    def page_cursor(self) -> Cursor | None:
        """The per-page cursor: the newest time seen, never behind what the pull resumed."""
        moment = _latest(self.resumed, self.newest)
        return None if moment is None else {self.rule.key: _iso(moment)}

    def complete(self) -> Cursor | None:
        """The cursor once the pull has read everything (see the module docstring)."""
        if self.vendor_now is None:
            return self.page_cursor()
        newest = _latest(self.resumed, self.newest)
        return {
            "vendor_now": _iso(self.vendor_now),
            "newest_seen": None if newest is None else _iso(newest),
        }


def rule_for(adapter: Adapter, key: str, parse: Parse, lookback: float | None) -> CursorRule:
    """``adapter``'s cursor rule for per-page key ``key`` (``lookback``: the connection's
    ``options.lookback_seconds``, None for ``sync.lookback_seconds``)."""
    return CursorRule(
        adapter.name,
        key,
        parse,
        adapter.lookback(lookback),
        timedelta(seconds=adapter.context.clock_skew_seconds),
    )


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def _required(moment: datetime | None) -> datetime:
    if moment is None:
        raise ValueError("no time")
    return moment
