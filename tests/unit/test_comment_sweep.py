"""The comment sweep (docs/architecture.md §8.5) on the in-memory vendor: a comment that
does not move its ticket is found by the bulk counter read once the sweep's time has
come, 100 tickets per request, open linked tickets only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.config.model import CommentSettings
from sync.db import Mirror
from sync.engine.run import RunResult
from sync.errors import ProtocolError, Retriable
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import Clock, make_run, sql, vendor

BOTH = CommentSettings(direction="both")
SWEEP = {"comment_sweep_seconds": 600, "comments_move_ticket": False}
ENABLED = datetime(2025, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.now = ENABLED
    return c


def run(mirror: Mirror, clock: Clock, options: Any = SWEEP, **kw: Any) -> RunResult:
    kw.setdefault("comments", BOTH)
    result = asyncio.run(
        make_run(mirror, "a", options=options, clock=clock, create_when={}, **kw).run()
    )
    assert result.outcome == "ok", result.error
    return result


def calls(method: str) -> list[str | None]:
    return [arg for name, arg in vendor("a").calls if name == method]


def imported(mirror: Mirror) -> list[str]:
    return [r[0] for r in sql(mirror, "SELECT body FROM ticket_comments ORDER BY id")]


def test_a_quiet_comment_is_found_by_the_sweep_and_not_before_its_time(
    mirror: Mirror, clock: Clock
) -> None:
    eid = vendor("a").seed(title="Printer", status="Open", priority="P3")
    later = vendor("a").seed(title="Later", status="Open", priority="P3")  # the pull's cursor
    run(mirror, clock)
    assert calls("comment_counters") == [f"{eid},{later}"], "the enabling run sweeps (baseline)"
    assert calls("list_comments") == []
    vendor("a").comment(eid, "The toner is out")
    vendor("a").calls.clear()
    clock.now += timedelta(seconds=599)
    run(mirror, clock)
    assert calls("comment_counters") == [] and imported(mirror) == [], "not before its time"
    clock.now += timedelta(seconds=1)
    run(mirror, clock)
    assert calls("comment_counters") == [f"{eid},{later}"]
    assert calls("list_comments") == [eid]
    assert imported(mirror) == ["The toner is out"]
    vendor("a").calls.clear()
    run(mirror, clock)
    assert calls("comment_counters") == [], "the sweep's time is stored"


def test_open_tickets_are_swept_100_per_request_and_closed_ones_left_out(
    mirror: Mirror, clock: Clock
) -> None:
    a = vendor("a")
    for i in range(150):
        a.seed(title=f"T{i}", status="Open", priority="P3")
    closed = [a.seed(title=f"C{i}", status="Closed", priority="P3") for i in range(5)]
    run(mirror, clock)
    swept = [arg.split(",") for arg in calls("comment_counters") if arg is not None]
    assert [len(ids) for ids in swept] == [100, 50]
    assert not set(closed) & {i for ids in swept for i in ids}


@pytest.mark.parametrize(
    ("options", "comments"),
    [
        ({"comments_move_ticket": False}, BOTH),  # the adapter offers no bulk counters
        (SWEEP, CommentSettings(direction="push")),
        (SWEEP, CommentSettings(direction="off")),
    ],
)
def test_no_sweep_without_the_capability_or_without_pulled_comments(
    mirror: Mirror, clock: Clock, options: Any, comments: CommentSettings
) -> None:
    vendor("a").seed(title="Printer", status="Open", priority="P3")
    run(mirror, clock, options, comments=comments)
    clock.now += timedelta(hours=1)
    run(mirror, clock, options, comments=comments)
    assert calls("comment_counters") == []


def test_a_failed_sweep_is_done_again_by_the_next_run(mirror: Mirror, clock: Clock) -> None:
    eid = vendor("a").seed(title="Printer", status="Open", priority="P3")
    vendor("a").seed(title="Later", status="Open", priority="P3")  # the pull's cursor
    run(mirror, clock)
    vendor("a").comment(eid, "first")
    clock.now += timedelta(seconds=600)
    vendor("a").fail("comment_counters", Retriable("vendor busy", connection="a"))
    result = asyncio.run(
        make_run(mirror, "a", options=SWEEP, clock=clock, create_when={}, comments=BOTH).run()
    )
    assert result.outcome != "ok" and imported(mirror) == []
    vendor("a").calls.clear()
    run(mirror, clock)
    assert len(calls("comment_counters")) == 1 and imported(mirror) == ["first"]


def test_a_refused_sweep_is_reported_and_waits_its_interval(mirror: Mirror, clock: Clock) -> None:
    eid = vendor("a").seed(title="Printer", status="Open", priority="P3")
    vendor("a").seed(title="Later", status="Open", priority="P3")  # the pull's cursor
    run(mirror, clock)
    vendor("a").comment(eid, "first")
    clock.now += timedelta(seconds=600)
    vendor("a").fail("comment_counters", ProtocolError("the reply is not a list", connection="a"))
    lines: list[str] = []
    result = run(mirror, clock, report=lines.append)
    assert result.counts.errors == 1 and any("comment counter sweep" in x for x in lines)
    assert imported(mirror) == []
    vendor("a").calls.clear()
    clock.now += timedelta(seconds=599)
    run(mirror, clock)
    assert calls("comment_counters") == [], "not on every run: after its interval"
    clock.now += timedelta(seconds=1)
    run(mirror, clock)
    assert imported(mirror) == ["first"]
