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
from tests.unit.engine_helpers import insert_ticket, link_row, make_state, vendor

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def intent(created_at: datetime = T0, last_error_kind: str | None = None) -> Any:
    return SimpleNamespace(created_at=created_at, last_error_kind=last_error_kind)


def decide(link: Any, **kw: Any) -> Recovery:
    args: dict[str, Any] = {"finds_markers": False, "by_pull": False, "pulled_since": None}
    return recovery(link, **{**args, **kw})


def test_a_vendor_that_finds_markers_is_asked() -> None:
    assert decide(intent(), finds_markers=True) is Recovery.FIND
    assert decide(intent(), finds_markers=True, by_pull=True) is Recovery.FIND


def test_markers_in_pull_wait_for_a_complete_pull() -> None:
    assert decide(intent(), by_pull=True) is Recovery.LATER
    # recorded after the pull started: the pull may not have seen it yet
    assert decide(intent(T0), by_pull=True, pulled_since=T0) is Recovery.LATER


def test_markers_in_pull_an_intent_older_than_the_pull_is_created_again() -> None:
    since = T0 + timedelta(seconds=1)
    assert decide(intent(T0), by_pull=True, pulled_since=since) is Recovery.CREATE


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
