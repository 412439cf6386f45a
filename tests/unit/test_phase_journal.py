"""The journal module alone: send entries, ticket failures and their backoff, link errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from sync.db import Mirror
from sync.db.models import TicketLink
from sync.engine import record
from sync.engine.journal import Sends, link_error, ticket_failure
from sync.engine.run import RunOptions
from sync.engine.state import RunState
from sync.errors import ItemError
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import Clock, link_row, make_state, sql, sync, tickets, vendor


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


class FakeFence:
    generation: int | None = 7
    seconds = 30.0

    def before_commit(self, session: Any) -> None:
        pass

    def before_send(self, call_seconds: float) -> None:
        pass


def _linked(mirror: Mirror) -> tuple[int, TicketLink]:
    vendor().seed(title="A", status="Open", priority="P3", queue="q")
    assert sync(mirror).outcome == "ok"
    ((tid, _),) = tickets(mirror).items()
    with mirror.read() as session:
        (link,) = session.query(TicketLink).all()
    return tid, link


def _sends(mirror: Mirror) -> list[tuple[Any, ...]]:
    return sql(mirror, "SELECT field, new_value, generation FROM journal WHERE action = 'send'")


def test_sends_are_journaled_once_with_the_generation(mirror: Mirror) -> None:
    _, link = _linked(mirror)
    state = make_state(mirror)
    state.options = RunOptions(fence=FakeFence())
    record.start(state)
    sends = Sends(state)
    sends.journal([(link, {"status": "Closed"})])
    sends.journal([(link, {"status": "Closed", "priority": "P1"})])  # status already journaled
    assert _sends(mirror) == [("status", "Closed", 7), ("priority", "P1", 7)]


def test_without_a_lease_nothing_is_journaled(mirror: Mirror) -> None:
    _, link = _linked(mirror)
    state = make_state(mirror)
    Sends(state).journal([(link, {"status": "Closed"})])
    assert _sends(mirror) == []


def test_a_ticket_failure_backs_off_and_a_second_missing_orphans(mirror: Mirror) -> None:
    tid, link = _linked(mirror)
    clock = Clock()
    state: RunState = make_state(mirror, clock=clock)
    ticket_failure(state, link, ItemError("gone"), backoff=True, missing=True)
    first = link_row(mirror, tid)
    assert (first["fail_count"], first["state"]) == (1, "active")
    assert "gone" in first["last_error"]
    ticket_failure(state, link, ItemError("gone"), backoff=True, missing=True)
    second = link_row(mirror, tid)
    assert (second["fail_count"], second["state"], second["missing_count"]) == (2, "orphaned", 2)
    assert state.counts.errors == 2
    due = sql(mirror, "SELECT next_retry_at FROM ticket_links")[0][0]
    assert str(clock.now + timedelta(seconds=60))[:19] in str(due).replace("T", " ")


def test_link_errors_are_recorded_and_cleared() -> None:
    state: Any = SimpleNamespace(name="mem", counts=SimpleNamespace(errors=0))
    state.ticket_message = lambda link, text: f"#{link.ticket_id}: {text}"
    noted: list[str] = []
    state.note_failure = noted.append
    link: Any = SimpleNamespace(ticket_id=1, external_id="9", last_error=None, last_error_kind=None)
    link_error(state, link, remote=["bad vendor value"])
    assert (link.last_error, link.last_error_kind) == ("#1: bad vendor value", "unmapped_remote")
    assert noted == ["#1: bad vendor value"]  # a new error is named once (§8.2)
    link_error(state, link, saw_remote=False)  # a push never saw the vendor's value
    assert link.last_error_kind == "unmapped_remote"
    link_error(state, link)
    assert link.last_error is None and state.counts.errors == 1
