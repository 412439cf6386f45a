"""The one-shot pass (``--run-once``, ``--dry-run``): every selected connection once.

The connections run concurrently; the results map to the exit code (docs/architecture.md
§2.1): 0 all ok, 1 any failure or a signal, 3 (``LockHeld``) when every selected
connection is being synced by another instance. SIGTERM/SIGINT cancel the pass and each connection
records ``interrupted``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from sync.config import Config
from sync.coord.locks import instance_lock
from sync.db import Mirror
from sync.engine.run import RunResult
from sync.errors import LockHeld
from sync.progress import TerminalProgress, for_terminal
from sync.runner import Selection, run_connections


def run_once(
    mirror: Mirror, config: Config, names: Sequence[str], *, dry_run: bool, force: bool
) -> int:
    """One pass over ``names``; returns the exit code (0 ok, 1 any failure, 3 all locked)."""
    lock = None if dry_run else instance_lock(mirror, "run-once")
    progress = for_terminal()
    if lock is not None:
        lock.acquire()  # LockHeld -> exit 3
    try:
        results = _run_with_signals(
            run_connections(
                mirror,
                config,
                Selection(names, dry_run=dry_run, force=force, progress=progress),
                report=lambda line: print(line, flush=True),
            )
        )
    finally:
        if lock is not None:
            lock.release()
    if isinstance(progress, TerminalProgress):
        progress.done()
    if results is None:
        return 1  # interrupted by a signal
    if dry_run:
        _print_totals(results)
    if all(isinstance(r, LockHeld) for r in results):
        raise LockHeld("every selected connection is being synced by another instance")
    ok = all(isinstance(r, LockHeld) or r.ok for r in results)
    return 0 if ok else 1


def _print_totals(results: Sequence[RunResult | LockHeld]) -> None:
    planned = sum(r.planned for r in results if isinstance(r, RunResult))
    print(f"dry run: {planned} planned change(s) in {len(results)} connection(s); nothing written")


def _run_with_signals(
    coro: Coroutine[Any, Any, list[RunResult | LockHeld]],
) -> list[RunResult | LockHeld] | None:
    """Run ``coro``; SIGTERM/SIGINT cancel it (each connection records ``interrupted``)."""

    async def main() -> list[RunResult | LockHeld] | None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            print(
                "ticketsync: interrupted; the next run resumes where this one stopped",
                file=sys.stderr,
            )
            return None

    return asyncio.run(main())
