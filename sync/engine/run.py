"""One connection's run, as phases (docs/architecture.md §3.2).

``ConnectionRun.run`` calls, in order:

1. ``record.start``: register the connection, open the run record, read the cursor;
2. ``plan.plan``: read the vendor's changes, count the planned writes, hold the
   mass-change guard before any write (a dry run stops here);
3. ``recover.recover``: finish the create intents a killed run left behind;
4. ``pull.Pull``: merge the changed pages into the mirror, page by page, cursor with them
   (then ``recover`` again, where only a complete pull can tell an intent's fate), with
   ``adopt`` holding back the vendor tickets that may be mirror tickets already, then
   ``adopt.settle``: the match approvals and rejections recorded since; a push-only run
   (``RunOptions.push_only``, a daemon wake-up) lists and pulls nothing;
5. ``undo_run.execute``: carry out the ``ticketsync undo`` requests ``undo_run.prepare``
   took (and held at the guard) before any write (docs/architecture.md §8.7);
6. ``push.Push``: push every dirty ticket, or create it (``create``);
   ``comment_sweep`` (after the pull, when due: the open linked tickets' counters in
   bulk), ``comments_pull`` (the comments of tickets whose counters moved) and
   ``comments_push`` (after the push: the comment feed, crash-safe posts) carry the
   conversations (docs/architecture.md §8.5);
7. ``record.finish``: the outcome and counts, the connection's health.

Crash safety (docs/architecture.md §3.3) rests on three rules: the pull commits page by page with
its cursor;
a push commits after the vendor acknowledged; a create records its intent with a marker
before the call. Each phase's module shows its rule. Every rule that decides a field's
value is in ``merge``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from sync.config.model import CommentSettings
from sync.db import Mirror
from sync.db.models import utcnow
from sync.engine import adopt, comment_store, failures, record, undo_run
from sync.engine.comment_sweep import CommentSweep
from sync.engine.comments_pull import CommentPull
from sync.engine.comments_push import CommentPush
from sync.engine.context import SyncRules
from sync.engine.crash import crashpoint
from sync.engine.guard import consume_approval
from sync.engine.plan import plan
from sync.engine.pull import Pull
from sync.engine.push import Push
from sync.engine.recover import recover
from sync.engine.state import Counts, Fence, RunOptions, RunResult, RunState
from sync.errors import GuardHeld, Interrupted, SyncError
from sync.vendors.base import Adapter

__all__ = ["ConnectionRun", "Counts", "Fence", "RunOptions", "RunResult"]

log = logging.getLogger(__name__)


class ConnectionRun:
    """Sync one connection once. ``run()`` never raises for vendor or data reasons."""

    def __init__(
        self,
        mirror: Mirror,
        name: str,
        adapter: Adapter,
        rules: SyncRules,
        *,
        direction: str = "both",
        create_when: dict[str, tuple[str, ...]] | None = None,
        options: RunOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
        report: Callable[[str], None] | None = None,
        comments: CommentSettings | None = None,
    ) -> None:
        self._planned = 0
        self.state = RunState(
            mirror,
            name,
            adapter,
            rules,
            direction=direction,
            create_when=create_when,
            options=options or RunOptions(),
            clock=clock,
            report=report or (lambda line: None),
            comments=comments,
        )

    @property
    def rules(self) -> SyncRules:
        return self.state.rules

    async def run(self) -> RunResult:
        state = self.state
        started = time.monotonic()
        error: SyncError | None = None
        self._planned = 0
        try:
            await self._phases()
        except GuardHeld as exc:
            error = exc
        except asyncio.CancelledError:
            self._finish_cancelled(started)
            raise
        except SyncError as exc:
            error = exc
            log.warning("%s", exc)
        result = RunResult(
            state.name,
            record.outcome(error, dry_run=state.options.dry_run),
            state.counts,
            time.monotonic() - started,
            error,
            self._planned,
            state.actions,
            state.comment_summary,
        )
        if not state.options.dry_run:
            record.finish(state, result)
            _failing(state, result)
        return result

    async def _phases(self) -> None:
        """Run the phases in order; a dry run stops after the plan."""
        state = self.state
        cursor = record.start(state)
        state.holds = adopt.holds(state)
        decided = await plan(state, cursor)
        self._planned = decided.planned
        undos: list[int] = []
        if not state.options.dry_run:
            approved = consume_approval(state.mirror, state.name)
            undos = undo_run.prepare(state, approved=approved)
        crashpoint("after_plan")
        if state.options.dry_run:
            return
        await recover(state)
        if not state.options.push_only:
            first = adopt.first_pass(state)
            state.matcher = adopt.Matcher(state, scoring=first)
            pulled = await Pull(state).run(decided.changes)
            if not state.caps.finds_markers:
                await recover(state, pulled_since=pulled.started_at)
            if first and state.direction == "push":  # nothing was pulled: list to match
                await adopt.scan(state)
            await adopt.settle(state)
            if first:
                adopt.finish_first_pass(state)
            state.holds = adopt.holds(state)
            await CommentSweep(state).run()
            await CommentPull(state).run()
        await undo_run.execute(state, undos)
        await Push(state).run()
        await CommentPush(state).run()
        if state.comments.direction != "off":
            with state.mirror.read() as session:
                state.comment_summary = comment_store.summary(session, state.name)

    def _finish_cancelled(self, started: float) -> None:
        state = self.state
        if state.options.dry_run or state.run_id is None:
            return
        error = Interrupted(f"{state.name}: interrupted by a signal", connection=state.name)
        duration = time.monotonic() - started
        record.finish(
            state,
            RunResult(state.name, "interrupted", state.counts, duration, error, self._planned),
        )


def _failing(state: RunState, result: RunResult) -> None:
    """Name the connection's failing tickets in ``result`` (docs/architecture.md §8.2)."""
    listing = failures.listing(state)
    result.failing, result.failing_lines = listing.total, listing.render()
    result.new_failures = list(state.new_failures)
