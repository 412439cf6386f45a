"""Scenario tests of one connection's run against the in-memory vendor (docs/architecture.md §3.2,
§3.3).

Each test runs on SQLite and PostgreSQL (the ``mirror`` fixture). Local edits are raw
SQL, as another program would make them; remote edits go through ``MemoryVendor``.
The vendor's clock starts at 2026-01-01 and ticks a second per write, so a local edit
(stamped with the real time by the triggers) is newer than any vendor edit unless a test
sets the ticket's ``updated_at`` to ``OLD``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from sync.db import Mirror
from sync.engine import conflicts as conflict_ops
from sync.engine.guard import Guard
from sync.errors import GuardHeld, ItemError, NotFound, Retriable
from sync.vendors.memory.adapter import MemoryAdapter, reset_stores
from tests.unit.engine_helpers import (
    OLD,
    Clock,
    conflicts,
    dirty,
    dump,
    insert_ticket,
    journal,
    link_row,
    links,
    make_run,
    memory_config,
    sql,
    sync,
    tickets,
    update_ticket,
    vendor,
)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every update the memory adapter receives: (external id, changes)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    original = MemoryAdapter.update

    async def spy(self: MemoryAdapter, external_id: str, changes: Mapping[str, Any]) -> Any:
        calls.append((external_id, dict(changes)))
        return await original(self, external_id, changes)

    monkeypatch.setattr(MemoryAdapter, "update", spy)
    return calls


def ok(result: Any) -> Any:
    assert result.outcome == "ok", result.error
    return result


def imported(mirror: Mirror, n: int = 1, **fields: str) -> list[tuple[int, str]]:
    """Seed ``n`` vendor tickets, import them; return [(ticket id, external id)]."""
    v = vendor()
    values = {"status": "Open", "priority": "P3", "queue": "billing", **fields}
    eids = [v.seed(title=f"T{i}", **values) for i in range(n)]
    ok(sync(mirror))
    by_external = {e: t for t, e in links(mirror).items()}
    return [(by_external[e], e) for e in eids]


# -- import, push, pull, echo ------------------------------------------------------------


def test_import_maps_vendor_values_and_links_each_ticket(mirror: Mirror) -> None:
    v = vendor()
    a = v.seed(title="A", status="Open", priority="P1", queue="billing")
    b = v.seed(title="B", status="Pending", priority="P4", queue="support")
    result = ok(sync(mirror))
    assert result.counts.pulled == 2
    assert sorted(tickets(mirror).values(), key=lambda t: t["title"]) == [
        {"title": "A", "status": "open", "priority": "urgent", "queue": "billing"},
        # many-to-one: 'Pending' comes back as the first canonical value listed
        {"title": "B", "status": "pending", "priority": "low", "queue": "support"},
    ]
    assert sorted(links(mirror).values()) == [a, b]
    assert [e["action"] for e in journal(mirror)] == ["import", "import"]
    assert v.writes() == []
    assert dirty(mirror) == set()


def test_push_of_a_raw_sql_local_edit_sends_only_the_changed_field(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    ((tid, eid),) = imported(mirror)
    update_ticket(mirror, tid, status="closed")
    result = ok(sync(mirror))
    assert result.counts.pushed == 1
    assert sent == [(eid, {"status": "Closed"})]
    assert vendor().records[eid].fields["status"] == "Closed"
    assert dirty(mirror) == set()


def test_pull_of_a_remote_edit(mirror: Mirror) -> None:
    ((tid, eid),) = imported(mirror)
    vendor().edit(eid, priority="P2", title="renamed")
    result = ok(sync(mirror))
    assert result.counts.pulled == 1
    assert tickets(mirror)[tid] == {
        "title": "renamed",
        "status": "open",
        "priority": "high",
        "queue": "billing",
    }
    assert vendor().writes() == []


def test_no_echo_a_second_run_writes_nothing(mirror: Mirror) -> None:
    (first, second) = imported(mirror, 2)
    update_ticket(mirror, first[0], status="closed")
    vendor().edit(second[1], priority="P1")
    ok(sync(mirror))
    writes = len(vendor().writes())
    entries = journal(mirror)
    before = dump(mirror, ("tickets", "ticket_links", "ticket_dirty", "journal", "conflicts"))
    result = ok(sync(mirror))
    assert result.counts.as_dict() == dict.fromkeys(result.counts.as_dict(), 0)
    assert len(vendor().writes()) == writes
    assert journal(mirror) == entries
    assert dump(mirror, tuple(before)) == before


def test_the_journal_records_old_and_new_values_of_pushes_and_pulls(mirror: Mirror) -> None:
    ((tid, eid),) = imported(mirror)
    update_ticket(mirror, tid, status="closed")
    vendor().edit(eid, priority="P1")
    ok(sync(mirror))
    changes = [e for e in journal(mirror) if e["action"] in ("push", "pull")]
    common = {"connection": "mem", "ticket_id": tid, "external_id": eid, "note": None}
    assert sorted(changes, key=lambda e: e["action"]) == [
        # a pull is journaled in canonical values, a push in the vendor's values
        {**common, "action": "pull", "field": "priority", "old": "normal", "new": "urgent"},
        {**common, "action": "push", "field": "status", "old": "Open", "new": "Closed"},
    ]


# -- fan-out --------------------------------------------------------------------------


@pytest.mark.parametrize("b_first", [True, False])
def test_fan_out_across_two_connections_never_bounces_back(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]], b_first: bool
) -> None:
    a, b = vendor("A"), vendor("B")
    a_id = a.seed(title="from A", status="Open", priority="P3", queue="billing")
    a.seed(title="not for B", status="Open", priority="P3", queue="support")
    run_b: dict[str, Any] = {"create_when": {"queue": ("billing",)}}
    if b_first:
        # B registered: the import from A is a change the feed shows B
        ok(sync(mirror, "B", **run_b))
    # else B's first run looks at every ticket that predates it
    ok(sync(mirror, "A"))
    result = ok(sync(mirror, "B", **run_b))
    assert result.counts.created == 1
    ((b_id, record),) = b.records.items()
    assert record.fields["title"] == "from A"
    assert record.marker is not None
    (tid,) = (t for t, e in links(mirror, "A").items() if e == a_id)
    assert links(mirror, "B") == {tid: b_id}

    # a change pulled from A reaches B ...
    a.edit(a_id, priority="P1")
    ok(sync(mirror, "A"))
    assert dirty(mirror, "A") == set()
    ok(sync(mirror, "B", **run_b))
    assert b.records[b_id].fields["priority"] == "P1"
    assert sent == [(b_id, {"priority": "P1"})]
    # ... and never bounces back to A, however often both run
    for _ in range(2):
        ok(sync(mirror, "A"))
        ok(sync(mirror, "B", **run_b))
    assert a.writes() == []
    assert len(b.writes()) == 2  # the create and the one update
    assert dirty(mirror, "A") == dirty(mirror, "B") == set()


# -- lossy maps --------------------------------------------------------------------------


def test_lossy_map_makes_no_phantom_change(mirror: Mirror) -> None:
    ((tid, eid),) = imported(mirror, status="Pending")
    assert tickets(mirror)[tid]["status"] == "pending"
    # pending -> on_hold locally: both map to 'Pending', nothing to send
    update_ticket(mirror, tid, status="on_hold")
    ok(sync(mirror))
    assert vendor().writes() == []
    # the vendor edits another field: on_hold is not rewritten to pending
    vendor().edit(eid, priority="P1")
    ok(sync(mirror))
    assert tickets(mirror)[tid]["status"] == "on_hold"
    assert tickets(mirror)[tid]["priority"] == "urgent"
    entries = journal(mirror)
    ok(sync(mirror))
    assert vendor().writes() == []
    assert journal(mirror) == entries


# -- conflicts ---------------------------------------------------------------------------


def _conflicting(mirror: Mirror, *, local_old: bool = False) -> tuple[int, str]:
    ((tid, eid),) = imported(mirror)
    update_ticket(mirror, tid, status="closed", **({"updated_at": OLD} if local_old else {}))
    vendor().edit(eid, status="Pending")
    return tid, eid


@pytest.mark.parametrize(
    ("policy", "local_old", "winner"),
    [
        ("newest", False, "local"),  # the local edit is newer
        ("newest", True, "remote"),  # the vendor edit is newer
        ("local", True, "local"),
        ("remote", False, "remote"),
    ],
)
def test_conflict_policy_end_to_end(
    mirror: Mirror, policy: str, local_old: bool, winner: str
) -> None:
    tid, eid = _conflicting(mirror, local_old=local_old)
    result = ok(sync(mirror, policy=policy))
    assert result.counts.conflicts == 1
    if winner == "local":
        assert vendor().records[eid].fields["status"] == "Closed"
        assert tickets(mirror)[tid]["status"] == "closed"
    else:
        assert vendor().records[eid].fields["status"] == "Pending"
        assert tickets(mirror)[tid]["status"] == "pending"
    (conflict,) = conflicts(mirror)
    assert conflict["policy"] == policy
    assert conflict["resolution"] == winner
    assert (conflict["base"], conflict["local"]) == ("open", "closed")
    assert conflict["remote"] == "Pending"
    # both values are journaled, so the loser is not lost
    (entry,) = [e for e in journal(mirror) if e["action"] == "conflict"]
    assert (entry["field"], entry["old"], entry["new"]) == ("status", "closed", "Pending")
    # settled: the next run is quiet
    writes = len(vendor().writes())
    again = ok(sync(mirror, policy=policy))
    assert again.counts.conflicts == 0
    assert len(vendor().writes()) == writes


def test_newest_without_a_vendor_time_goes_to_the_tie_break(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = MemoryAdapter._remote

    def timeless(self: MemoryAdapter, external_id: str, record: Any) -> Any:
        return replace(original(self, external_id, record), modified_at=None)

    monkeypatch.setattr(MemoryAdapter, "_remote", timeless)
    # the local edit is older, but without a vendor time the order cannot be known
    tid, eid = _conflicting(mirror, local_old=True)
    ok(sync(mirror, tie_break="local"))
    assert vendor().records[eid].fields["status"] == "Closed"
    assert conflicts(mirror)[0]["resolution"] == "local"

    update_ticket(mirror, tid, status="open")
    vendor().edit(eid, status="Pending")
    ok(sync(mirror, tie_break="remote"))
    assert tickets(mirror)[tid]["status"] == "pending"
    assert conflicts(mirror)[1]["resolution"] == "remote"


def test_conflict_won_locally_through_a_lossy_map_is_pushed(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    # the local value 'on_hold' maps onto the base's old vendor value 'Pending': the push
    # must still go out, or the vendor's 'Closed' would come back and undo the local win
    ((tid, eid),) = imported(mirror, status="Pending")
    update_ticket(mirror, tid, status="on_hold")
    vendor().edit(eid, status="Closed")
    result = ok(sync(mirror))
    assert result.counts.conflicts == 1
    assert sent == [(eid, {"status": "Pending"})]
    assert tickets(mirror)[tid]["status"] == "on_hold"
    ok(sync(mirror))
    assert tickets(mirror)[tid]["status"] == "on_hold"
    assert vendor().records[eid].fields["status"] == "Pending"
    (push,) = [e for e in journal(mirror) if e["action"] == "push"]
    assert (push["old"], push["new"]) == ("Closed", "Pending")  # the value overwritten


def test_conflict_won_locally_waits_for_its_push_without_conflicting_again(
    mirror: Mirror,
) -> None:
    clock = Clock()
    tid, eid = _conflicting(mirror)
    v = vendor()
    v.fail("update", ItemError("try later"))
    result = ok(sync(mirror, clock=clock))
    assert result.counts.conflicts == 1
    assert v.records[eid].fields["status"] == "Pending"
    # the vendor shows the ticket again (lookback): the local win stands, no new conflict
    for _ in range(2):
        assert ok(sync(mirror, clock=clock)).counts.conflicts == 0
    clock.now += timedelta(hours=1)
    ok(sync(mirror, clock=clock))
    assert v.records[eid].fields["status"] == "Closed"
    assert tickets(mirror)[tid]["status"] == "closed"
    assert len(conflicts(mirror)) == 1


def test_a_field_the_vendor_ticket_has_no_value_for_is_still_pushed(mirror: Mirror) -> None:
    v = vendor()
    eid = v.seed(title="A", status="Open")  # no priority at the vendor
    ok(sync(mirror))
    ((tid, _),) = links(mirror).items()
    assert tickets(mirror)[tid]["priority"] is None
    update_ticket(mirror, tid, priority="high")
    assert ok(sync(mirror)).counts.pushed == 1
    assert v.records[eid].fields["priority"] == "P2"


def test_manual_conflict_waits_while_other_fields_keep_syncing(mirror: Mirror) -> None:
    (first, second) = imported(mirror, 2)
    v = vendor()
    for tid, eid in (first, second):
        update_ticket(mirror, tid, status="closed")
        v.edit(eid, status="Pending")
    result = ok(sync(mirror, policy="manual"))
    assert result.counts.conflicts == 2
    pending = conflict_ops.pending(mirror)
    assert [(c["ticket_id"], c["field"], c["local"], c["remote"]) for c in pending] == [
        (first[0], "status", "closed", "Pending"),
        (second[0], "status", "closed", "Pending"),
    ]
    assert "2 open conflict(s)" in conflict_ops.render(pending)
    # nothing moved on the conflicting field
    assert v.records[first[1]].fields["status"] == "Pending"
    assert tickets(mirror)[first[0]]["status"] == "closed"

    # while it waits, other fields of the same ticket keep syncing both ways
    update_ticket(mirror, first[0], title="local title")
    v.edit(first[1], priority="P1")
    ok(sync(mirror, policy="manual"))
    assert v.records[first[1]].fields["title"] == "local title"
    assert tickets(mirror)[first[0]]["priority"] == "urgent"
    assert v.records[first[1]].fields["status"] == "Pending"
    assert tickets(mirror)[first[0]]["status"] == "closed"
    assert len(conflicts(mirror)) == 2  # still the same two, not recorded again

    config = memory_config("mem")
    # take local: the mirror's value is pushed on the next run
    conflict_ops.resolve(mirror, config, pending[0]["id"], "local")
    # take remote: the vendor's value is written into the mirror, and not pushed back
    conflict_ops.resolve(mirror, config, pending[1]["id"], "remote")
    assert tickets(mirror)[second[0]]["status"] == "pending"
    assert conflict_ops.pending(mirror) == []
    writes = len(v.writes())
    ok(sync(mirror, policy="manual"))
    assert v.records[first[1]].fields["status"] == "Closed"
    assert v.records[second[1]].fields["status"] == "Pending"
    assert len(v.writes()) == writes + 1
    assert [c["resolution"] for c in conflicts(mirror)] == ["local", "remote"]
    assert [e["note"] for e in journal(mirror) if e["action"] == "resolve"] == [
        f"conflict #{pending[0]['id']}: operator took local",
        f"conflict #{pending[1]['id']}: operator took remote",
    ]
    # quiet afterwards
    writes = len(v.writes())
    ok(sync(mirror, policy="manual"))
    assert len(v.writes()) == writes
    assert tickets(mirror)[second[0]]["status"] == "pending"


@pytest.mark.parametrize("take", ["local", "remote"])
def test_manual_conflict_settles_against_the_vendors_latest_value(
    mirror: Mirror, take: str
) -> None:
    (first, second) = imported(mirror, 2)
    tid, eid = first
    v = vendor()
    update_ticket(mirror, tid, status="pending")
    v.edit(eid, status="Closed")
    ok(sync(mirror, policy="manual"))
    # the vendor moves on while the conflict waits, then the cursor moves past the ticket
    v.edit(eid, status="Open")
    ok(sync(mirror, policy="manual"))
    v.edit(second[1], title="later")
    ok(sync(mirror, policy="manual"))
    (pending,) = conflict_ops.pending(mirror)
    assert (pending["local"], pending["remote"]) == ("pending", "Open")
    conflict_ops.resolve(mirror, memory_config("mem"), pending["id"], take)
    for _ in range(2):
        ok(sync(mirror, policy="manual"))
    expected = {"local": ("pending", "Pending"), "remote": ("open", "Open")}[take]
    assert (tickets(mirror)[tid]["status"], v.records[eid].fields["status"]) == expected


def test_manual_conflict_take_local_pushes_a_value_reverted_to_the_base(mirror: Mirror) -> None:
    ((tid, eid),) = imported(mirror)
    v = vendor()
    update_ticket(mirror, tid, status="closed")
    v.edit(eid, status="Pending")
    ok(sync(mirror, policy="manual"))
    update_ticket(mirror, tid, status="open")  # back to the base value while it waits
    ok(sync(mirror, policy="manual"))
    (pending,) = conflict_ops.pending(mirror)
    conflict_ops.resolve(mirror, memory_config("mem"), pending["id"], "local")
    ok(sync(mirror, policy="manual"))
    assert v.records[eid].fields["status"] == "Open"
    assert tickets(mirror)[tid]["status"] == "open"


# -- unwritable and unmapped values -------------------------------------------------------

WRITABLE = {"writable": ["title", "priority", "queue"]}


def test_unwritable_field_is_not_pushed_nor_retried_and_is_reported(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    v = vendor()
    eid = v.seed(title="A", status="Open", priority="P3", queue="billing")
    ok(sync(mirror, options=WRITABLE))
    ((tid, _),) = links(mirror).items()
    update_ticket(mirror, tid, status="closed", title="B")
    ok(sync(mirror, options=WRITABLE))
    # the writable field went, the unwritable one did not
    assert sent == [(eid, {"title": "B"})]
    assert v.records[eid].fields["status"] == "Open"
    for _ in range(2):
        ok(sync(mirror, options=WRITABLE))
    assert len(sent) == 1  # not retried run after run
    assert tickets(mirror)[tid]["status"] == "closed"  # the local value stays
    assert make_run(mirror, options=WRITABLE).rules.unwritable() == ["status"]
    assert make_run(mirror).rules.unwritable() == []


def test_unmapped_local_value_is_not_pushed_and_other_tickets_are_fine(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    (first, second) = imported(mirror, 2)
    update_ticket(mirror, first[0], status="closd")
    update_ticket(mirror, second[0], status="closed")
    result = ok(sync(mirror))
    assert result.counts.errors == 1
    assert sent == [(second[1], {"status": "Closed"})]
    error = link_row(mirror, first[0])["last_error"]
    assert "closd" in error and f"#{first[0]}" in error
    assert link_row(mirror, second[0])["last_error"] is None
    # corrected locally: pushed, and the error goes away
    update_ticket(mirror, first[0], status="closed")
    ok(sync(mirror))
    assert sent[-1] == (first[1], {"status": "Closed"})
    assert link_row(mirror, first[0])["last_error"] is None


def test_unmapped_remote_value_is_never_written_into_the_mirror(mirror: Mirror) -> None:
    v = vendor()
    odd = v.seed(title="odd", status="Escalated", priority="P3", queue="billing")
    (first,) = imported(mirror)
    odd_tid = next(t for t, e in links(mirror).items() if e == odd)
    # on import: the value is left out, the rest of the ticket comes in
    assert tickets(mirror)[odd_tid]["status"] is None
    assert tickets(mirror)[odd_tid]["title"] == "odd"
    assert "Escalated" in link_row(mirror, odd_tid)["last_error"]
    # on a later pull: the mirror keeps its value, other fields still come in
    v.edit(first[1], status="Weird", priority="P1")
    result = ok(sync(mirror))
    assert result.counts.errors >= 1
    assert tickets(mirror)[first[0]]["status"] == "open"
    assert tickets(mirror)[first[0]]["priority"] == "urgent"
    assert "Weird" in link_row(mirror, first[0])["last_error"]
    assert v.writes() == []
    # a push of another field does not clear the problem: it never looked at the vendor's value
    update_ticket(mirror, first[0], title="renamed")
    ok(sync(mirror))
    assert v.records[first[1]].fields["title"] == "renamed"
    assert "Weird" in link_row(mirror, first[0])["last_error"]
    assert tickets(mirror)[first[0]]["status"] == "open"


# -- creates -----------------------------------------------------------------------------


def test_create_rule_by_queue(mirror: Mirror) -> None:
    billing = {"queue": ("billing",)}
    ok(sync(mirror, create_when=billing))
    wanted = insert_ticket(mirror, title="bill me", status="open", priority="high", queue="billing")
    other = insert_ticket(mirror, title="not me", status="open", priority="high", queue="support")
    result = ok(sync(mirror, create_when=billing))
    assert result.counts.created == 1
    ((eid, record),) = vendor().records.items()
    assert record.fields["title"] == "bill me"
    assert record.fields["priority"] == "P2"
    assert links(mirror) == {wanted: eid}
    # the other ticket is dropped from the feed and never created
    assert dirty(mirror) == set()
    ok(sync(mirror, create_when=billing))
    assert len(vendor().records) == 1
    # re-queued into billing later: now it is created
    update_ticket(mirror, other, queue="billing")
    ok(sync(mirror, create_when=billing))
    assert set(links(mirror)) == {wanted, other}
    assert len(vendor().records) == 2


def test_create_rule_with_empty_when_creates_every_ticket(mirror: Mirror) -> None:
    # a ticket that predates the connection is created too
    before = insert_ticket(mirror, title="old", status="open", queue="support")
    ok(sync(mirror, create_when={}))
    after = insert_ticket(mirror, title="new", status="pending", queue="billing")
    ok(sync(mirror, create_when={}))
    assert set(links(mirror)) == {before, after}
    assert sorted(r.fields["title"] for r in vendor().records.values()) == ["new", "old"]
    # no create rule: nothing created
    insert_ticket(mirror, title="ignored", status="open")
    ok(sync(mirror, "other"))
    assert vendor("other").records == {}


def test_lost_reply_on_create_is_found_by_its_marker(mirror: Mirror) -> None:
    when = {"queue": ("billing",)}
    ok(sync(mirror, create_when=when))
    tid = insert_ticket(mirror, title="once", status="open", queue="billing")
    v = vendor()
    v.lose_reply("create")
    result = sync(mirror, create_when=when)
    assert result.outcome == "failed"
    assert isinstance(result.error, Retriable)
    assert link_row(mirror, tid)["state"] == "creating"
    ((eid, record),) = v.records.items()
    result = ok(sync(mirror, create_when=when))
    assert result.counts.created == 1
    assert len(v.records) == 1  # exactly one vendor ticket
    assert [c for c in v.writes() if c[0] == "create"] == [("create", record.marker)]
    assert links(mirror) == {tid: eid}
    assert ("create", "recovered by marker") in [(e["action"], e["note"]) for e in journal(mirror)]
    ok(sync(mirror, create_when=when))
    assert len(v.records) == 1


def test_remote_edit_between_a_lost_create_reply_and_its_recovery_is_kept(
    mirror: Mirror,
) -> None:
    when = {"queue": ("billing",)}
    ok(sync(mirror, create_when=when))
    tid = insert_ticket(mirror, title="once", status="open", priority="low", queue="billing")
    v = vendor()
    v.lose_reply("create")
    assert sync(mirror, create_when=when).outcome == "failed"
    ((eid, _),) = v.records.items()
    v.edit(eid, priority="P1")  # an agent edits the new ticket before we recover it
    ok(sync(mirror, create_when=when))
    ok(sync(mirror, create_when=when))
    assert v.records[eid].fields["priority"] == "P1"
    assert tickets(mirror)[tid]["priority"] == "urgent"


# -- failures ----------------------------------------------------------------------------


def test_lost_reply_on_update_converges_without_a_conflict(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    ((tid, eid),) = imported(mirror)
    update_ticket(mirror, tid, status="closed")
    vendor().lose_reply("update")
    result = sync(mirror)
    assert result.outcome == "failed"
    assert vendor().records[eid].fields["status"] == "Closed"  # applied, reply lost
    result = ok(sync(mirror))
    assert result.counts.conflicts == 0
    assert conflicts(mirror) == []
    assert tickets(mirror)[tid]["status"] == "closed"
    assert len(sent) == 1
    ok(sync(mirror))
    assert len(sent) == 1
    assert dirty(mirror) == set()


def test_item_error_on_update_backs_off_that_ticket_only(
    mirror: Mirror, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    clock = Clock()
    (first, second) = imported(mirror, 2)
    update_ticket(mirror, first[0], status="closed")
    update_ticket(mirror, second[0], status="closed")
    v = vendor()
    v.fail("update", ItemError("the vendor rejected the status"))
    result = ok(sync(mirror, clock=clock))
    assert result.counts.errors == 1
    assert result.counts.pushed == 1
    assert v.records[second[1]].fields["status"] == "Closed"
    assert v.records[first[1]].fields["status"] == "Open"
    link = link_row(mirror, first[0])
    assert link["next_retry_at"] is not None and link["fail_count"] == 1
    assert "rejected" in link["last_error"]
    # not retried before its time
    clock.now += timedelta(seconds=10)
    ok(sync(mirror, clock=clock))
    assert len(sent) == 2
    assert first[0] in dirty(mirror)
    # retried once the clock passes it
    clock.now += timedelta(minutes=5)
    ok(sync(mirror, clock=clock))
    assert v.records[first[1]].fields["status"] == "Closed"
    link = link_row(mirror, first[0])
    assert (link["next_retry_at"], link["fail_count"], link["last_error"]) == (None, 0, None)
    assert dirty(mirror) == set()


def test_not_found_twice_orphans_the_link_until_the_ticket_reappears(mirror: Mirror) -> None:
    clock = Clock()
    ((tid, eid),) = imported(mirror)
    v = vendor()
    record = v.records.pop(eid)
    update_ticket(mirror, tid, status="closed")
    ok(sync(mirror, clock=clock))
    link = link_row(mirror, tid)
    assert (link["state"], link["missing_count"]) == ("active", 1)
    assert link["last_error_kind"] == NotFound.kind
    clock.now += timedelta(hours=2)
    ok(sync(mirror, clock=clock))
    assert link_row(mirror, tid)["state"] == "orphaned"
    assert links(mirror) == {}
    # the mirror row stays; deletes are never propagated
    assert tickets(mirror)[tid]["status"] == "closed"
    clock.now += timedelta(hours=2)
    gets = len([c for c in v.calls if c[0] == "get"])
    ok(sync(mirror, clock=clock))
    assert len([c for c in v.calls if c[0] == "get"]) == gets  # orphaned: left alone
    # it comes back when the vendor shows the ticket again, and the edit goes out
    v.records[eid] = record
    record.modified_at = v.tick()
    ok(sync(mirror, clock=clock))
    assert link_row(mirror, tid)["state"] == "active"
    ok(sync(mirror, clock=clock))
    assert v.records[eid].fields["status"] == "Closed"


def test_retriable_failure_fails_the_run_and_the_next_run_pushes(mirror: Mirror) -> None:
    ((tid, eid),) = imported(mirror)
    update_ticket(mirror, tid, priority="urgent")
    vendor().fail("update", Retriable("timed out"))
    result = sync(mirror)
    assert result.outcome == "failed"
    assert tid in dirty(mirror)
    ok(sync(mirror))
    assert vendor().records[eid].fields["priority"] == "P1"


# -- guard, dry run, direction -----------------------------------------------------------


def test_guard_holds_a_mass_local_change_before_any_write(mirror: Mirror) -> None:
    pairs = imported(mirror, 4)
    for tid, _ in pairs[:3]:
        update_ticket(mirror, tid, status="closed")
    v = vendor()
    guard = Guard(share=0.5, min_count=2)
    before = dump(mirror, ("tickets", "ticket_links", "ticket_dirty", "journal"))
    result = sync(mirror, guard=guard)
    assert result.outcome == "held"
    assert isinstance(result.error, GuardHeld)
    assert "3 planned change(s) against 4 linked ticket(s)" in str(result.error)
    assert v.writes() == []
    assert dump(mirror, tuple(before)) == before
    ((held,),) = sql(mirror, "SELECT guard_held FROM sync_connections WHERE name = 'mem'")
    assert held is not None
    # --force passes it
    result = ok(sync(mirror, guard=guard, force=True))
    assert result.counts.pushed == 3
    assert [v.records[e].fields["status"] for _, e in pairs] == ["Closed"] * 3 + ["Open"]


def test_guard_lets_a_small_change_through(mirror: Mirror) -> None:
    pairs = imported(mirror, 4)
    for tid, _ in pairs[:2]:
        update_ticket(mirror, tid, status="closed")
    result = ok(sync(mirror, guard=Guard(share=0.5, min_count=2)))
    assert result.counts.pushed == 2


def test_dry_run_writes_nothing_and_reports_every_planned_action(mirror: Mirror) -> None:
    when = {"queue": ("billing",)}
    v = vendor()
    eid = v.seed(title="A", status="Open", priority="P3", queue="billing")
    ok(sync(mirror, create_when=when))
    ((tid, _),) = links(mirror).items()
    update_ticket(mirror, tid, status="closed")
    v.edit(eid, priority="P1")
    new_remote = v.seed(title="B", status="Open", priority="P3", queue="support")
    new_local = insert_ticket(mirror, title="C", status="open", queue="billing")
    before = dump(mirror)
    records = {e: dict(r.fields) for e, r in v.records.items()}
    lines: list[str] = []
    result = sync(mirror, create_when=when, dry_run=True, report=lines.append)
    assert result.outcome == "dry-run"
    assert dump(mirror) == before
    assert {e: dict(r.fields) for e, r in v.records.items()} == records
    assert v.writes() == []
    assert f"mem: #{tid} -> {eid}  status: 'Open' -> 'Closed'  (push)" in lines
    assert f"mem: #{tid} <- {eid}  priority: 'normal' -> 'urgent'  (pull)" in lines
    assert f"mem: new <- {new_remote}: import" in lines
    assert f"mem: #{new_local} -> new: create" in lines
    assert lines[-1] == "mem: 3 planned change(s)"
    # the real run then does what was planned
    result = ok(sync(mirror, create_when=when))
    assert (result.counts.pushed, result.counts.created) == (1, 1)


def test_dry_run_before_the_first_run_writes_nothing(mirror: Mirror) -> None:
    vendor().seed(title="A", status="Open")
    before = dump(mirror)
    lines: list[str] = []
    result = sync(mirror, dry_run=True, report=lines.append)
    assert result.outcome == "dry-run"
    assert dump(mirror) == before
    assert any(line.endswith(": import") for line in lines)


def test_direction_pull_never_writes_to_the_vendor(mirror: Mirror) -> None:
    v = vendor()
    eid = v.seed(title="A", status="Open", priority="P3", queue="billing")
    pull: dict[str, Any] = {"direction": "pull", "create_when": {}}
    ok(sync(mirror, **pull))
    ((tid, _),) = links(mirror).items()
    insert_ticket(mirror, title="local only", status="open", queue="billing")
    update_ticket(mirror, tid, title="local title", status="closed")
    v.edit(eid, status="Pending")
    ok(sync(mirror, **pull))
    ok(sync(mirror, **pull))
    assert v.writes() == []
    assert len(v.records) == 1
    # the vendor's value wins a conflict; a local-only change just stays local
    assert tickets(mirror)[tid]["status"] == "pending"
    assert tickets(mirror)[tid]["title"] == "local title"
    assert v.records[eid].fields["title"] == "A"
