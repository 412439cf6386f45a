"""Progress of long pulls on a terminal: one self-overwriting line per connection.

Shown only when stderr is a terminal and not systemd's journal; elsewhere the summary
log line per run says everything (docs/architecture.md §6).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: Pages before a pull counts as long enough to show.
SHOW_AFTER_PAGES = 3


class TerminalProgress:
    """``(connection, pages, tickets)`` -> a line like ``zoho: 12 pages, 1,200 tickets, 340/s``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started: dict[str, float] = {}
        self.shown = False

    def __call__(self, connection: str, pages: int, tickets: int) -> None:
        start = self.started.setdefault(connection, time.monotonic())
        if pages < SHOW_AFTER_PAGES:
            return
        rate = tickets / max(time.monotonic() - start, 1e-6)
        self.shown = True
        self.stream.write(
            f"\r{connection}: {pages:,} pages, {tickets:,} tickets, {rate:,.0f}/s\033[K"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def for_terminal() -> Callable[[str, int, int], None] | None:
    """A progress reporter when stderr is an interactive terminal, else None."""
    if os.environ.get("JOURNAL_STREAM") or not sys.stderr.isatty():
        return None
    return TerminalProgress(sys.stderr)
