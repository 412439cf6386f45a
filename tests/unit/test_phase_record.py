"""The run's record and its shared state alone: outcomes, start and finish, the fence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from sync.db import Mirror
from sync.engine import record
from sync.engine.run import Counts, RunOptions, RunResult
from sync.errors import (
    AuthRejected,
    GuardHeld,
    Interrupted,
    LeaseLost,
    SyncError,
    VendorError,
)
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import make_state, sql


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


@pytest.mark.parametrize(
    ("error", "dry_run", "expected"),
    [
        (None, False, "ok"),
        (None, True, "dry-run"),
        (GuardHeld("held"), False, "held"),
        (Interrupted("stop"), False, "interrupted"),
        (LeaseLost("lost"), False, "interrupted"),
        (VendorError("down"), False, "failed"),
    ],
)
def test_outcome(error: SyncError | None, dry_run: bool, expected: str) -> None:
    assert record.outcome(error, dry_run=dry_run) == expected


def _runs(mirror: Mirror) -> list[tuple[Any, ...]]:
    return sql(mirror, "SELECT id, outcome FROM runs ORDER BY id")


def test_start_marks_a_killed_run_interrupted(mirror: Mirror) -> None:
    first = make_state(mirror)
    record.start(first)
    second = make_state(mirror)
    record.start(second)
    assert _runs(mirror) == [(first.run_id, "interrupted"), (second.run_id, "running")]


def test_a_dry_run_start_writes_nothing(mirror: Mirror) -> None:
    state = make_state(mirror, dry_run=True)
    assert record.start(state) is None
    assert _runs(mirror) == [] and state.run_id is None


def _finish(mirror: Mirror, outcome: str, error: SyncError | None) -> tuple[Any, ...]:
    state = make_state(mirror)
    record.start(state)
    record.finish(state, RunResult("mem", outcome, Counts(pulled=2), 0.1, error))
    return sql(
        mirror,
        "SELECT consecutive_failures, credentials, last_success_at IS NOT NULL"
        " FROM sync_connections",
    )[0]


def test_finish_keeps_the_connections_health(mirror: Mirror) -> None:
    assert _finish(mirror, "ok", None) == (0, "ok", True)
    assert sql(mirror, "SELECT outcome, pulled FROM runs") == [("ok", 2)]
    assert _finish(mirror, "failed", AuthRejected("no")) == (1, "rejected", True)


def test_finish_after_a_lost_lease_leaves_the_connection_to_the_new_holder(
    mirror: Mirror,
) -> None:
    assert _finish(mirror, "interrupted", LeaseLost("lost")) == (0, "unknown", False)
    assert sql(mirror, "SELECT outcome FROM runs") == [("interrupted",)]


class RefusingFence:
    generation: int | None = 1
    seconds = 30.0

    def before_commit(self, session: Any) -> None:
        raise LeaseLost("taken over")

    def before_send(self, call_seconds: float) -> None:
        raise LeaseLost("taken over")


def test_the_states_writes_commit_only_under_the_lease(mirror: Mirror) -> None:
    state = make_state(mirror)
    record.start(state)
    state.options = RunOptions(fence=RefusingFence())
    with pytest.raises(LeaseLost), state.write() as session:
        session.execute(text("UPDATE runs SET outcome = 'ok'"))
    assert _runs(mirror) == [(state.run_id, "running")]
    with pytest.raises(LeaseLost):
        state.before_send()
