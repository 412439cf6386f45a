"""The recover phase alone: its decision per create intent, and carrying one out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from sync.db import Mirror
from sync.db.models import TicketLink
from sync.engine import record
from sync.engine.recover import Recovery, recover, recovery
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import Clock, insert_ticket, link_row, make_state, vendor

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


LOOKBACK = timedelta(minutes=5)


def intent(
    created_at: datetime = T0,
    last_error_kind: str | None = None,
    first_look_at: datetime | None = None,
) -> Any:
    return SimpleNamespace(
        created_at=created_at, last_error_kind=last_error_kind, first_look_at=first_look_at
    )


def decide(link: Any, **kw: Any) -> Recovery:
    args: dict[str, Any] = {
        "finds_markers": False,
        "by_pull": False,
        "pulled_since": None,
        "now": T0 + timedelta(hours=1),
        "apart": LOOKBACK,
    }
    return recovery(link, **{**args, **kw})


def test_a_vendor_that_finds_markers_is_asked() -> None:
    assert decide(intent(), finds_markers=True) is Recovery.FIND
    assert decide(intent(), finds_markers=True, by_pull=True) is Recovery.FIND


def test_the_second_look_waits_a_lookback_after_the_first() -> None:
    looked = intent(first_look_at=T0)
    early = T0 + LOOKBACK - timedelta(seconds=1)
    assert decide(looked, finds_markers=True, now=early) is Recovery.LATER
    assert decide(looked, finds_markers=True, now=T0 + LOOKBACK) is Recovery.FIND


def test_markers_in_pull_wait_for_a_complete_pull() -> None:
    assert decide(intent(), by_pull=True) is Recovery.LATER
    # recorded after the pull started: the pull may not have seen it yet
    assert decide(intent(T0), by_pull=True, pulled_since=T0) is Recovery.LATER


def test_markers_in_pull_the_first_complete_pull_is_only_noted() -> None:
    since = T0 + timedelta(seconds=1)
    assert decide(intent(T0), by_pull=True, pulled_since=since) is Recovery.NOTE


def test_markers_in_pull_a_second_pull_a_lookback_later_creates_again() -> None:
    first = T0 + timedelta(seconds=1)
    looked = intent(T0, first_look_at=first)
    assert decide(looked, by_pull=True, pulled_since=first) is Recovery.LATER
    too_soon = first + LOOKBACK - timedelta(seconds=1)
    assert decide(looked, by_pull=True, pulled_since=too_soon) is Recovery.LATER
    assert decide(looked, by_pull=True, pulled_since=first + LOOKBACK) is Recovery.CREATE


@pytest.mark.parametrize("kind", [None, "retriable", "unknown_create"])
def test_no_way_to_look_and_no_answer_surfaces_to_the_operator(kind: str | None) -> None:
    assert decide(intent(last_error_kind=kind)) is Recovery.SURFACE


@pytest.mark.parametrize("kind", ["item", "not_found"])
def test_no_way_to_look_after_a_refusal_creates_again(kind: str) -> None:
    assert decide(intent(last_error_kind=kind)) is Recovery.CREATE


def _intent(mirror: Mirror, marker: str) -> int:
    ticket_id = insert_ticket(mirror, title="T", status="open", priority="normal", queue="q")
    with mirror.write() as session:
        session.add(
            TicketLink(
                ticket_id=ticket_id, connection="mem", state="creating", marker=marker, base={}
            )
        )
    return ticket_id


def test_recover_activates_an_intent_the_vendor_holds_without_creating_again(
    mirror: Mirror,
) -> None:
    state = make_state(mirror)
    record.start(state)
    v = vendor()
    ticket_id = _intent(mirror, "tsync-x-1")
    external_id = v.seed(title="T", status="Open", priority="P3", queue="q")
    v.records[external_id].marker = "tsync-x-1"

    asyncio.run(recover(state))

    assert v.writes() == []
    row = link_row(mirror, ticket_id)
    assert (row["state"], row["external_id"]) == ("active", external_id)
    assert state.counts.created == 1


def test_recover_creates_an_intent_the_vendor_does_not_hold(mirror: Mirror) -> None:
    state = make_state(mirror)
    record.start(state)
    ticket_id = _intent(mirror, "tsync-x-2")

    asyncio.run(recover(state))

    assert [c[0] for c in vendor().writes()] == ["create"]
    assert link_row(mirror, ticket_id)["state"] == "active"


def _creates() -> int:
    return sum(1 for call in vendor().writes() if call[0] == "create")


def test_two_looks_a_lookback_apart_before_a_create_is_sent_again(mirror: Mirror) -> None:
    clock = Clock()
    state = make_state(mirror, options={"one_look": False}, clock=clock)
    record.start(state)
    ticket_id = _intent(mirror, "tsync-x-3")

    asyncio.run(recover(state))  # the first look misses: noted, not sent
    assert _creates() == 0
    assert link_row(mirror, ticket_id)["first_look_at"] is not None
    clock.now += state.adapter.look_apart() - timedelta(seconds=1)
    asyncio.run(recover(state))  # not due: no look, no send
    assert _creates() == 0 and link_row(mirror, ticket_id)["state"] == "creating"

    clock.now += timedelta(seconds=1)
    asyncio.run(recover(state))  # the second look misses too: sent again
    assert _creates() == 1
    row = link_row(mirror, ticket_id)
    assert (row["state"], row["first_look_at"]) == ("active", None)


def test_a_ticket_the_first_look_missed_is_found_by_the_second(mirror: Mirror) -> None:
    clock = Clock()
    state = make_state(mirror, options={"one_look": False}, clock=clock)
    record.start(state)
    ticket_id = _intent(mirror, "tsync-x-4")
    asyncio.run(recover(state))
    # the create had landed; the vendor only listed it late (a search index's lag)
    external_id = vendor().seed(title="T", status="Open", priority="P3", queue="q")
    vendor().records[external_id].marker = "tsync-x-4"
    clock.now += state.adapter.look_apart()

    asyncio.run(recover(state))

    assert _creates() == 0
    assert (link_row(mirror, ticket_id)["external_id"]) == external_id
