"""A ticket dated beyond the vendor's clock plus the skew (docs/architecture.md §8.2): merged
with its time unknown, counted once per run as ``future_dated``, journaled, and shown in the
run's record and ``status``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sync.db import Mirror
from sync.engine import record
from sync.engine.pull import Changes, Pull
from sync.engine.state import RunResult
from sync.status import collect, render
from sync.vendors.base import Page, RemoteTicket
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import journal, make_state, memory_config, sql, tickets

T1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FUTURE = T1 + timedelta(days=400)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def future(status: str) -> RemoteTicket:
    fields = {"title": "A", "status": status, "priority": "P3", "queue": "q"}
    return RemoteTicket("77", fields, None, future_at=FUTURE)


def test_a_future_dated_ticket_is_merged_and_counted_once(mirror: Mirror) -> None:
    state = make_state(mirror)
    record.start(state)
    pages = (Page([future("Open")], "c1"), Page([future("Closed")], "c2"))
    asyncio.run(Pull(state).run(Changes(None, pages)))
    ((_, ticket),) = tickets(mirror).items()
    assert ticket["status"] == "resolved"  # merged all the same
    assert state.counts.future_dated == 1  # named on two pages, counted once
    entries = [e for e in journal(mirror) if e["action"] == "future_dated"]
    assert len(entries) == 1 and entries[0]["external_id"] == "77"
    record.finish(state, RunResult("mem", "ok", state.counts, 0.1))
    assert sql(mirror, "SELECT future_dated FROM runs")[0][0] == 1
    shown = collect(memory_config("mem"), mirror)
    assert shown["connections"]["mem"]["last_run"]["future_dated"] == 1
    assert "future-dated 1" in render(shown)
