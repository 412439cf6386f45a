"""The push phase alone: its route per dirty ticket, its merge, and a push without a pull."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from sync.db import Mirror
from sync.engine import record, store
from sync.engine.push import Push, Route, push_merge, route
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import dirty, make_state, sql, sync, tickets, vendor

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICKET: Any = SimpleNamespace(id=1)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def link(state: str = "active", next_retry_at: datetime | None = None) -> Any:
    return SimpleNamespace(state=state, next_retry_at=next_retry_at)


def step(ticket: Any, lnk: Any, *, direction: str = "both", wants: bool = False) -> Route:
    return route(ticket, lnk, direction=direction, now=NOW, wants_create=lambda t: wants)


def test_a_deleted_ticket_only_clears_its_mark() -> None:
    assert step(None, link()) is Route.CLEAR


def test_an_unlinked_ticket_is_created_only_when_the_rule_matches() -> None:
    assert step(TICKET, None, wants=True) is Route.CREATE
    assert step(TICKET, None, wants=False) is Route.CLEAR


@pytest.mark.parametrize("state", ["creating", "orphaned"])
def test_a_link_that_is_not_active_is_not_pushed(state: str) -> None:
    assert step(TICKET, link(state)) is Route.CLEAR


def test_a_pull_only_connection_never_pushes() -> None:
    assert step(TICKET, link(), direction="pull") is Route.CLEAR


def test_a_ticket_in_its_backoff_waits_and_stays_dirty() -> None:
    assert step(TICKET, link(next_retry_at=NOW + timedelta(seconds=1))) is Route.WAIT
    assert step(TICKET, link(next_retry_at=NOW)) is Route.PUSH
    assert step(TICKET, link()) is Route.PUSH


def test_push_merges_against_the_base_and_sends_only_changes(mirror: Mirror) -> None:
    v = vendor()
    a = v.seed(title="A", status="Open", priority="P3", queue="q")
    assert sync(mirror).outcome == "ok"
    ((tid, _),) = tickets(mirror).items()
    sql(mirror, "UPDATE tickets SET status = 'closed' WHERE id = :i", i=tid)
    state = make_state(mirror)
    record.start(state)
    with mirror.read() as session:
        ticket = store.tickets_by_id(session, [tid])[tid]
        lnk = store.links_by_ticket(session, "mem", [tid])[tid]
        assert push_merge(state, lnk, ticket).pushes == {"status": "Closed"}

    asyncio.run(Push(state).run())  # no plan, no pull: the dirty mark is all it needs

    assert v.records[a].fields["status"] == "Closed"
    assert v.writes() == [("update", a)]
    assert dirty(mirror) == set()
    assert state.counts.pushed == 1


def test_a_push_leaves_a_field_whose_vendor_value_is_unseen_to_the_next_read(
    mirror: Mirror,
) -> None:
    """A create left the vendor's value of an unwritable field unknown (``unseen``): a push
    of another field must not settle that base with the value we had sent, or the next
    pull would take the vendor's own choice for an agent's edit."""
    v = vendor()
    v.seed(title="A", status="Open", priority="P3", queue="q")
    assert sync(mirror).outcome == "ok"
    ((tid, _),) = tickets(mirror).items()
    unseen = {"local": "closed", "remote": "Closed", "unseen": True}
    sql(mirror, "UPDATE tickets SET title = 'B', status = 'closed' WHERE id = :i", i=tid)
    state = make_state(mirror)
    record.start(state)
    with mirror.read() as session:
        ticket = store.tickets_by_id(session, [tid])[tid]
        lnk = store.links_by_ticket(session, "mem", [tid])[tid]
        lnk.base = {**lnk.base, "status": unseen}
        merge = push_merge(state, lnk, ticket)
    assert merge.pushes == {"title": "B"}
    assert merge.new_base(lnk.base)["status"] == unseen
