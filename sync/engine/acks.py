"""Work recorded in groups: finished pushes (docs/architecture.md §7.3) and a page's new tickets.

A push is recorded once the vendor acknowledged it: the link's new base, its journal rows,
the ticket's dirty mark cleared. One transaction per ticket costs a commit (and, under a
lease, a fence check) for every ticket, which at high concurrency is the largest share of
a push's CPU. ``Acks`` holds finished tickets for at most ``window`` seconds or ``limit``
entries, and the run records them in one transaction.

Why this is safe: a run killed between a vendor's acknowledgement and the group's commit
leaves those tickets dirty with their old base, exactly like a kill before a per-ticket
commit. The next run's merge finds the vendor agreeing, or sends the same update again:
an update repeated only after its reply was lost, which docs/architecture.md §7.3 allows. Nothing is
acknowledged to the vendor or to the mirror out of order: a ticket's entry is recorded
whole, in the transaction of its group, or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sync.engine.merge import TicketMerge
from sync.vendors.base import RemoteTicket


@dataclass(frozen=True)
class Ack:
    """One dirty ticket this run is done with.

    ``link_id`` None: nothing to settle on a link (a deleted ticket, one this connection
    does not sync); only the dirty mark is cleared.
    """

    ticket_id: int
    version: int
    link_id: int | None = None
    external_id: str | None = None
    merge: TicketMerge | None = None
    #: The vendor's modification time from its reply to the update, when it gave one.
    modified_at: datetime | None = None
    #: Problems with mirror values the merge found (unmapped values).
    errors: tuple[str | None, ...] = ()

    @property
    def pushed(self) -> bool:
        return self.merge is not None and bool(self.merge.pushes)


@dataclass
class Acks:
    """Finished tickets waiting for their group's commit."""

    limit: int = 32
    window: float = 0.05
    clock: Callable[[], float] = time.monotonic
    entries: list[Ack] = field(default_factory=list)
    _first: float = 0.0

    def add(self, ack: Ack) -> None:
        if not self.entries:
            self._first = self.clock()
        self.entries.append(ack)

    def due(self) -> bool:
        """True when the group is full or its oldest entry has waited ``window`` seconds."""
        return bool(self.entries) and (
            len(self.entries) >= self.limit or self.clock() - self._first >= self.window
        )

    def take(self) -> list[Ack]:
        entries, self.entries = self.entries, []
        return entries


@dataclass(frozen=True)
class Staged:
    """A remote ticket the page imports: its mirror columns, link base and problems."""

    remote: RemoteTicket
    values: dict[str, Any]
    base: dict[str, Any]
    problems: list[str]


@dataclass
class Imports:
    """A page's new tickets by external key, written together at the end of the page (or
    earlier, when the page names one of them twice)."""

    staged: dict[str, Staged] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self.staged

    def stage(self, key: str, item: Staged) -> None:
        self.staged[key] = item

    def take(self) -> dict[str, Staged]:
        staged, self.staged = self.staged, {}
        return staged
