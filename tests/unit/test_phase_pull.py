"""The pull phase alone: pages handed to it import, merge and move the cursor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sync.db import Mirror
from sync.engine import record
from sync.engine.pull import Changes, Pull
from sync.engine.state import RunState
from sync.vendors.base import Page, RemoteTicket
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import journal, links, make_state, sql, tickets, vendor

T1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def remote(status: str, at: datetime) -> RemoteTicket:
    fields = {"title": "A", "status": status, "priority": "P3", "queue": "q"}
    return RemoteTicket("77", fields, at)


def pull(state: RunState, *pages: Page) -> None:
    asyncio.run(Pull(state).run(Changes(None, tuple(pages))))


def cursor(mirror: Mirror) -> object:
    return sql(mirror, "SELECT cursor FROM sync_connections WHERE name = 'mem'")[0][0]


def test_pages_handed_to_the_pull_import_then_merge(mirror: Mirror) -> None:
    state = make_state(mirror)
    record.start(state)
    pull(state, Page([remote("Open", T1)], "c1"))
    ((tid, t),) = tickets(mirror).items()
    assert t["status"] == "open" and links(mirror) == {tid: "77"}
    assert state.counts.pulled == 1

    pull(state, Page([remote("Closed", T2)], "c2"))

    assert tickets(mirror)[tid]["status"] == "resolved"
    assert [(e["action"], e["field"]) for e in journal(mirror)] == [
        ("import", None),
        ("pull", "status"),
    ]
    assert vendor().calls == []  # the pull phase only reads what it is handed


def test_the_cursor_moves_with_each_page(mirror: Mirror) -> None:
    state = make_state(mirror)
    record.start(state)
    pull(state, Page([remote("Open", T1)], "c1"), Page([], "c2"))
    assert "c2" in str(cursor(mirror))


def test_a_ticket_named_twice_in_one_page_is_imported_once(mirror: Mirror) -> None:
    state = make_state(mirror)
    record.start(state)
    pull(state, Page([remote("Open", T1), remote("Pending", T2)], "c1"))
    ((_, t),) = tickets(mirror).items()
    assert t["status"] == "pending"
