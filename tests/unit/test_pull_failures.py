"""One bad record is one ticket's problem (docs/architecture.md §8.2).

A record that did not parse fails alone: the rest of its page is merged and committed and
the cursor moves; an unlinked one is kept in ``sync_pull_failures`` and read again on every
run until it reads cleanly. A field the adapter could not read waits with a per-field error
while the rest syncs; a new ticket is imported with that field NULL. The output names every
failing ticket, at most 20 per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sync import redact
from sync.db import Mirror
from sync.db.models import SyncConnection
from sync.engine import failures, record
from sync.engine.pull import Changes, Pull
from sync.engine.run import RunResult
from sync.engine.state import Counts, RunState
from sync.errors import Unreadable
from sync.runner import _report_failing
from sync.status import collect
from sync.vendors.base import FieldProblem, Page, RecordFailure, RemoteTicket
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import (
    link_row,
    make_run,
    make_state,
    memory_config,
    sql,
    sync,
    tickets,
    vendor,
)

T1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIELDS = {"title": "A", "status": "Open", "priority": "P3", "queue": "q"}
SUB_STATUS = FieldProblem("Escalated", "unknown sub-status (add it to options.sub_statuses)")


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def pull(state: RunState, *pages: Page) -> None:
    asyncio.run(Pull(state).run(Changes(None, tuple(pages))))


def started(mirror: Mirror) -> RunState:
    state = make_state(mirror)
    record.start(state)
    return state


def stored_cursor(mirror: Mirror) -> object:
    with mirror.read() as session:
        row = session.get(SyncConnection, "mem")
        return row.cursor if row is not None else None


def failing_rows(mirror: Mirror) -> list[tuple[str, str, str | None]]:
    return [
        tuple(r)
        for r in sql(mirror, "SELECT external_id, error, raw_value FROM sync_pull_failures")
    ]


def unreadable(external_id: str, what: str = "garbled") -> Unreadable:
    return Unreadable(
        f"mem: ticket {external_id}: {what}", external_id=external_id, raw={"id": external_id}
    )


def test_a_record_that_did_not_parse_fails_alone_and_is_read_again_until_clean(
    mirror: Mirror,
) -> None:
    good, bad = vendor().seed(**FIELDS), vendor().seed(**{**FIELDS, "title": "B"})
    state = started(mirror)
    failure = RecordFailure.of(unreadable(bad))
    pull(state, Page([RemoteTicket(good, FIELDS, T1)], "c1", [failure]))
    assert [t["title"] for t in tickets(mirror).values()] == ["A"]  # the rest of the page
    assert stored_cursor(mirror) == "c1"  # the cursor moved past the page
    assert failing_rows(mirror) == [(bad, f"mem: ticket {bad}: garbled", f'{{"id": "{bad}"}}')]
    assert state.counts.errors == 1 and len(state.new_failures) == 1
    assert vendor().calls == []  # not read again in the run that just failed it

    vendor().fail("get", unreadable(bad))
    again = started(mirror)
    pull(again)  # still unreadable: read again, kept, not announced again
    assert vendor().calls == [("get", bad)]
    assert len(failing_rows(mirror)) == 1 and again.new_failures == []

    third = started(mirror)
    pull(third)  # reads cleanly now: imported, and the failure is gone
    assert sorted(t["title"] for t in tickets(mirror).values()) == ["A", "B"]
    assert failing_rows(mirror) == []


def test_a_failure_the_vendor_no_longer_has_is_dropped(mirror: Mirror) -> None:
    state = started(mirror)
    pull(state, Page([], "c1", [RecordFailure.of(unreadable("9999"))]))
    assert len(failing_rows(mirror)) == 1
    pull(started(mirror))
    assert failing_rows(mirror) == []


def test_a_linked_ticket_that_fails_to_read_keeps_its_link_and_recovers(mirror: Mirror) -> None:
    eid = vendor().seed(**FIELDS)
    state = started(mirror)
    pull(state, Page([RemoteTicket(eid, FIELDS, T1)], "c1"))
    ((tid, _),) = tickets(mirror).items()
    pull(started(mirror), Page([], "c2", [RecordFailure.of(unreadable(eid))]))
    link = link_row(mirror, tid)
    assert link["last_error_kind"] == failures.UNREADABLE
    assert f"ticket #{tid} <-> {eid}" in link["last_error"]
    pull(started(mirror))  # read again by id: clean
    assert link_row(mirror, tid)["last_error"] is None


def test_an_unreadable_field_waits_while_the_rest_syncs(mirror: Mirror) -> None:
    state = started(mirror)
    fields = {k: v for k, v in FIELDS.items() if k != "status"}
    pull(state, Page([RemoteTicket("77", fields, T1, unreadable={"status": SUB_STATUS})], "c1"))
    ((tid, ticket),) = tickets(mirror).items()
    assert ticket["status"] is None and ticket["title"] == "A"  # imported with status NULL
    error = link_row(mirror, tid)["last_error"]
    assert "status 'Escalated'" in error and "options.sub_statuses" in error

    renamed = {**fields, "title": "renamed"}
    page = Page([RemoteTicket("77", renamed, T1, unreadable={"status": SUB_STATUS})], "c2")
    pull(started(mirror), page)  # a valid edit still comes in; the status still waits
    assert tickets(mirror)[tid]["title"] == "renamed"
    assert link_row(mirror, tid)["last_error"] is not None

    pull(started(mirror), Page([RemoteTicket("77", {**renamed, "status": "Closed"}, T1)], "c3"))
    assert tickets(mirror)[tid]["status"] == "resolved"
    assert link_row(mirror, tid)["last_error"] is None


def _fail_many(mirror: Mirror, count: int) -> None:
    ids = [str(5000 + i) for i in range(count)]
    for eid in ids:
        vendor().fail("get", unreadable(eid))
    cursor = T1.isoformat()  # a memory vendor's cursor
    pull(started(mirror), Page([], cursor, [RecordFailure.of(unreadable(i)) for i in ids]))


def test_run_once_names_every_failing_ticket_up_to_twenty(mirror: Mirror) -> None:
    _fail_many(mirror, 25)
    result = asyncio.run(make_run(mirror).run())
    assert result.ok and result.failing == 25
    lines = result.failing_lines
    assert len(lines) == 21 and lines[-1] == "... and 5 more (see `ticketsync status`)"
    assert lines[0] == (
        "mem: ticket (not imported) <-> 5000: ticket 5000: garbled; "
        "read again every run until it reads cleanly"
    )
    printed: list[str] = []
    _report_failing(result, printed.append)
    assert printed == lines
    assert collect(memory_config("mem"), mirror)["connections"]["mem"]["failing_tickets"] == 25


def test_the_daemon_logs_a_failure_when_it_appears_then_only_a_count(
    mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sync.run")
    eid = vendor().seed(**FIELDS)
    vendor().edit(eid, status="Escalated")  # no entry in the status map
    first = sync(mirror)
    assert len(first.new_failures) == 1 and first.failing == 1
    _report_failing(first, None)
    assert [r.getMessage() for r in caplog.records] == first.new_failures
    caplog.clear()
    second = sync(mirror)
    assert second.new_failures == [] and second.failing == 1
    _report_failing(second, None)
    assert [r.getMessage() for r in caplog.records] == [
        "mem: 1 tickets still failing (see `ticketsync status`)"
    ]


def test_a_result_without_failures_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sync.run")
    printed: list[str] = []
    result = RunResult("mem", "ok", Counts(), 0.1)
    _report_failing(result, printed.append)
    _report_failing(result, None)
    assert printed == [] and caplog.records == []


def test_the_raw_value_is_redacted_and_capped(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sentinel-secret-4711"
    monkeypatch.setattr(redact, "_current", redact.Redactor([secret]))
    raw = {"id": "9", "note": f"token={secret}", "filler": "x" * 5000}
    failure = RecordFailure.of(Unreadable(f"mem: ticket 9: bad {secret}", external_id="9", raw=raw))
    assert secret not in failure.raw and len(failure.raw) <= Unreadable.RAW_CAP
    vendor().fail("get", Unreadable("mem: ticket 9: bad", external_id="9", raw=raw))
    pull(started(mirror), Page([], "c1", [failure]))
    dumped = repr(sql(mirror, "SELECT * FROM sync_pull_failures"))
    assert "9" in dumped and secret not in dumped
