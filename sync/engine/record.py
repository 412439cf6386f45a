"""The run's own record: its ``runs`` row, and the connection's health (``status``).

``start`` registers the connection (and when its comments were enabled) and opens the
run (a run still marked ``running`` was killed: it becomes ``interrupted``); ``finish``
closes it with the outcome and counts, and keeps the connection's last success, failure
count, credentials state and last error. A run that lost its lease leaves the
connection's state to the instance that took over.
"""

from __future__ import annotations

from typing import Any

from sync.db.models import Run, SyncConnection
from sync.engine import comment_store, store
from sync.engine.state import RunResult, RunState
from sync.errors import AuthRejected, GuardHeld, Interrupted, LeaseLost, SyncError


def start(state: RunState) -> Any:
    """Register the connection, open the run record; return the stored cursor.

    A dry run writes nothing: it only reads the cursor.
    """
    if state.options.dry_run:
        with state.mirror.read() as session:
            row = session.get(SyncConnection, state.name)
            state.comments_since = comment_store.since(session, state.name)
            state.private_stopped = comment_store.private_stopped(session, state.name)
            return row.cursor if row is not None else None
    with state.mirror.write() as session:
        row = store.register(session, state.name, state.adapter.vendor, state.creates)
        on = state.comments.direction != "off"
        state.comments_enabled_now = on and row.comments_since is None
        state.comments_since = comment_store.enable(session, state.name, on, state.clock())
        state.private_stopped = row.private_comments_stopped
        session.query(Run).filter(Run.connection == state.name, Run.outcome == "running").update(
            {"outcome": "interrupted"}
        )
        run = Run(
            connection=state.name,
            started_at=state.clock(),
            outcome="running",
            kind=state.options.kind,
        )
        session.add(run)
        session.flush()
        state.run_id = run.id
        return row.cursor


def outcome(error: SyncError | None, *, dry_run: bool) -> str:
    """The run's outcome: ok | failed | held | interrupted | dry-run."""
    if isinstance(error, GuardHeld):
        return "held"
    if isinstance(error, Interrupted | LeaseLost):
        return "interrupted"
    if error is not None:
        return "failed"
    return "dry-run" if dry_run else "ok"


def finish(state: RunState, result: RunResult) -> None:
    """Close the run record and update the connection's health from ``result``."""
    now = state.clock()
    with state.mirror.write() as session:
        run = session.get(Run, state.run_id)
        if run is not None:
            run.finished_at = now
            run.duration_s = result.duration_s
            run.outcome = result.outcome
            for key, value in result.counts.as_dict().items():
                setattr(run, key, value)
            # An approved run's writes were approved: they do not count against the next.
            run.guarded = 0 if state.guard_passed else result.counts.guarded()
            run.message = str(result.error) if result.error else state.note
        row = session.get(SyncConnection, state.name)
        assert row is not None
        if isinstance(result.error, LeaseLost):
            return  # the connection's state belongs to the instance that took it over
        if result.outcome == "ok":
            row.last_success_at = now
            row.consecutive_failures = 0
            row.credentials = "ok"
        else:
            row.consecutive_failures += 1
        if isinstance(result.error, AuthRejected):
            row.credentials = "rejected"
        if result.error is not None and not isinstance(result.error, GuardHeld):
            row.last_error = {
                "at": now.isoformat(),
                "kind": result.error.kind,
                "message": str(result.error),
                "ticket_id": None,
                "external_id": None,
            }
