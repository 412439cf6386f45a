"""The plan phase alone: what it reads, what it counts, and the guard before any write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sync.db import Mirror
from sync.engine import record
from sync.engine.guard import Guard
from sync.engine.plan import plan, read_changes
from sync.errors import GuardHeld
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import dump, make_state, sql, sync, tickets, vendor


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def _linked(mirror: Mirror, n: int) -> list[str]:
    v = vendor()
    ids = [v.seed(title=f"t{i}", status="Open", priority="P3", queue="q") for i in range(n)]
    assert sync(mirror).outcome == "ok"
    return ids


def test_a_first_import_streams_instead_of_reading_up_front(mirror: Mirror) -> None:
    vendor().seed(title="t", status="Open", priority="P3", queue="q")
    state = make_state(mirror)
    changes = asyncio.run(read_changes(state, None))
    assert changes.pages is None
    assert vendor().calls == []


def test_a_dry_run_counts_and_prints_every_planned_write(mirror: Mirror) -> None:
    ids = _linked(mirror, 3)
    vendor().edit(ids[0], status="Closed")
    sql(mirror, "UPDATE tickets SET priority = 'urgent' WHERE title = 't1'")
    lines: list[str] = []
    state = make_state(mirror, dry_run=True, report=lines.append)
    cursor = record.start(state)
    before = dump(mirror)

    decided = asyncio.run(plan(state, cursor))

    assert decided.planned == 2
    assert decided.changes.pages is not None and len(decided.changes.pages) >= 1
    assert any("(pull)" in line for line in lines) and any("(push)" in line for line in lines)
    assert lines[-1] == "mem: 2 planned change(s)"
    assert dump(mirror) == before  # planning writes nothing


def test_the_guard_holds_before_any_write(mirror: Mirror) -> None:
    _linked(mirror, 4)
    sql(mirror, "UPDATE tickets SET priority = 'urgent'")
    state = make_state(mirror, guard=Guard(share=0.5, min_count=2))
    cursor = record.start(state)
    with pytest.raises(GuardHeld):
        asyncio.run(plan(state, cursor))
    assert [t["priority"] for t in tickets(mirror).values()] == ["urgent"] * 4
    assert all(r.fields["priority"] == "P3" for r in vendor().records.values())


def test_force_returns_the_upper_bound_without_merging(mirror: Mirror) -> None:
    _linked(mirror, 4)
    sql(mirror, "UPDATE tickets SET priority = 'urgent'")
    state = make_state(mirror, guard=Guard(share=0.5, min_count=2), force=True)
    cursor = record.start(state)
    decided = asyncio.run(plan(state, cursor))
    # the vendor hands back the last ticket it showed (unchanged); a merge would not count it
    reread = sum(len(p.tickets) for p in decided.changes.pages or ())
    assert reread >= 1
    assert decided.planned == reread + 4  # the bound: changed remote tickets + dirty marks
