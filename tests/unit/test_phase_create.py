"""The create phase alone: the create rule, what a create sends, intent then activation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sync.db import Mirror
from sync.engine import record, store
from sync.engine.create import create, new_ticket, wants_create
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import insert_ticket, link_row, make_state, sql, vendor


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def _ticket(mirror: Mirror, **values: str) -> store.Ticket:
    ticket_id = insert_ticket(mirror, **{"title": "T", "status": "open", **values})
    with mirror.read() as session:
        return store.tickets_by_id(session, [ticket_id])[ticket_id]


def test_the_create_rule(mirror: Mirror) -> None:
    state = make_state(mirror, create_when={"queue": ("billing",)})
    assert wants_create(state, _ticket(mirror, queue="billing"))
    assert not wants_create(state, _ticket(mirror, queue="sales"))
    assert not wants_create(make_state(mirror), _ticket(mirror, queue="billing"))


def test_a_create_sends_mapped_values_and_they_make_the_base(mirror: Mirror) -> None:
    state = make_state(mirror, create_when={})
    new = new_ticket(state, _ticket(mirror, priority="urgent", queue="billing"))
    assert new.values["status"] == "Open" and new.values["priority"] == "P1"
    assert new.values["title"] == "T"
    assert new.base["priority"] == {"local": "urgent", "remote": "P1"}


def test_create_records_the_intent_then_activates_the_link(mirror: Mirror) -> None:
    state = make_state(mirror, create_when={})
    record.start(state)
    ticket = _ticket(mirror, priority="normal", queue="q")

    assert asyncio.run(create(state, ticket, version=1))

    row = link_row(mirror, ticket.id)
    (external_id,) = vendor().records
    assert (row["state"], row["external_id"]) == ("active", external_id)
    assert vendor().records[external_id].marker == row["marker"]
    assert state.counts.created == 1


def test_an_unmapped_value_creates_nothing(mirror: Mirror) -> None:
    state = make_state(mirror, create_when={})
    record.start(state)
    ticket = _ticket(mirror, priority="whenever", queue="q")

    assert not asyncio.run(create(state, ticket, version=1))

    assert vendor().writes() == []
    assert sql(mirror, "SELECT count(*) FROM ticket_links") == [(0,)]
    assert state.counts.errors == 1
