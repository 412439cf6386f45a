"""The mass-change guard over a window (issue 23, docs/architecture.md §8.6): the writes
of the runs in ``guard.window_seconds`` count together, so wake-ups cannot split a
runaway script's edits into runs too small to trip it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sync.config import parse_config
from sync.db import Mirror
from sync.engine.guard import Guard
from sync.errors import GuardHeld
from sync.runner import _window
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import Clock, links, sql, sync, update_ticket, vendor


@pytest.fixture(autouse=True)
def stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def _linked(mirror: Mirror, count: int) -> list[int]:
    for i in range(count):
        vendor().seed(title=f"T{i}", status="Open", priority="P3", queue="billing")
    assert sync(mirror).ok
    return sorted(links(mirror))


def _edit(mirror: Mirror, ids: list[int], title: str) -> None:
    for ticket_id in ids:
        update_ticket(mirror, ticket_id, title=title)


def test_small_runs_in_the_window_add_up_and_trip_the_guard(mirror: Mirror) -> None:
    ids = _linked(mirror, 20)
    clock = Clock()
    guard = Guard(share=0.5, min_count=10, window_seconds=60)
    for batch in (ids[0:4], ids[4:8]):  # two woken runs of 4 edits: 8 in the window
        _edit(mirror, batch, "runaway")
        assert sync(mirror, guard=guard, clock=clock).ok
        clock.now += timedelta(seconds=1)
    _edit(mirror, ids[8:12], "runaway")
    result = sync(mirror, guard=guard, clock=clock)
    assert result.outcome == "held"
    assert isinstance(result.error, GuardHeld)
    assert "12 planned change(s) (8 of them made in the last 60s)" in str(result.error)
    assert len(vendor().writes()) == 8, "the held run wrote nothing"

    clock.now += timedelta(seconds=61)  # the window has moved past the earlier runs
    assert sync(mirror, guard=guard, clock=clock).counts.pushed == 4


def test_without_a_window_each_run_counts_alone(mirror: Mirror) -> None:
    ids = _linked(mirror, 20)
    guard = Guard(share=0.5, min_count=10, window_seconds=0)
    for start in range(0, 16, 4):
        _edit(mirror, ids[start : start + 4], "edited")
        assert sync(mirror, guard=guard).ok


def test_an_approved_run_does_not_count_against_the_next(mirror: Mirror) -> None:
    ids = _linked(mirror, 20)
    guard = Guard(share=0.5, min_count=10, window_seconds=3600)
    _edit(mirror, ids[:15], "bulk")
    assert sync(mirror, guard=guard).outcome == "held"
    assert sync(mirror, guard=guard, force=True).counts.pushed == 15
    _edit(mirror, ids[15:17], "small")
    assert sync(mirror, guard=guard).ok
    rows = sql(mirror, "SELECT guarded FROM runs ORDER BY id")
    assert [r[0] for r in rows] == [0, 0, 0, 2], "import, held, forced, then 2 pushes"


def _connection(**guard: Any) -> Any:
    block = {"vendor": "memory", "base_url": "http://127.0.0.1:9", "interval": 45}
    if guard:
        block["guard"] = guard
    return parse_config({"connections": {"m": block}}, env={}).connections["m"]


def test_the_window_defaults_to_the_interval() -> None:
    assert _window(_connection()) == 45
    assert _window(_connection(window_seconds=5)) == 5
    assert _window(_connection(window_seconds=0)) == 0
    assert _window(_connection(window_seconds=None)) == 45
