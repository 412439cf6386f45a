"""Writes the vendor refused before applying them, sent again within the same run.

A 429, or a 503 with ``Retry-After``, says the vendor did not apply the write
(docs/architecture.md §8.2). ``sync.http`` never re-sends a write itself; the push phase
waits and sends an update again (merged anew, so absolute values), and a create answered
429 again with the same marker. A create answered 503 or timed out keeps the lost-reply path.
"""

from __future__ import annotations

import asyncio

from sync.config.model import HttpSettings
from sync.engine.state import RunState
from sync.errors import Retriable, VendorError


class WriteRefusals:
    """Writes the vendor refused before applying them (429, or 503 with ``Retry-After``).

    ``sync.http`` never sends a write twice; the push waits as the vendor said and sends it
    again within the same run. Each such retry spends one of the connection's
    ``http.retry_budget`` retries for this run; a wait longer than ``http.retry_after_cap``
    is not made. The lease is checked when the write is sent again (``RunState.vendor``).
    """

    def __init__(self, state: RunState) -> None:
        http = getattr(state.adapter.connection, "http", None) or HttpSettings()
        self.cap = http.retry_after_cap
        self.left = http.retry_budget
        self.fallback = http.backoff_base

    @staticmethod
    def refused(exc: VendorError, *, create: bool = False) -> bool:
        """Whether ``exc`` says the write was refused unapplied: 429, or for an update also
        503 with ``Retry-After`` (a create answered 503 follows the lost-reply path)."""
        if not isinstance(exc, Retriable):
            return False
        if exc.status == 429:
            return True
        return not create and exc.status == 503 and exc.retry_after is not None

    async def wait(self, exc: VendorError, *, create: bool = False) -> bool:
        """Wait out a refusal and return True, or False when it may not be retried."""
        if not self.refused(exc, create=create) or self.left <= 0:
            return False
        delay = exc.retry_after if isinstance(exc, Retriable) else None
        delay = self.fallback if delay is None else delay
        if delay > self.cap:
            return False
        self.left -= 1
        await asyncio.sleep(delay)
        return True
