"""Undo a run (docs/architecture.md §8.7), through the engine and the in-memory vendor,
on SQLite and PostgreSQL (the ``mirror`` fixture).

``undone`` seeds three vendor tickets, imports them, then one run (the one undone)
pushes a local status edit of A, pulls a vendor priority edit of B, and on C pulls a
vendor title edit and pushes a local priority edit; afterwards C's title is edited
again in the mirror, so that change is one a person must settle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sync.db import Mirror
from sync.engine import conflicts as conflict_cmd
from sync.engine.guard import Guard
from sync.undo_cmd import UndoAsk, preview, record, result_line
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import (
    conflicts,
    dump,
    links,
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


@dataclass(frozen=True)
class Undone:
    run: int  # the run to undo
    ids: dict[str, int]  # "A", "B", "C" -> mirror ticket id
    ext: dict[str, str]  # "A", "B", "C" -> vendor id


@pytest.fixture
def undone(mirror: Mirror) -> Undone:
    mem = vendor("mem")
    ext = {
        name: mem.seed(title=name, status="Open", priority="P3", queue="billing") for name in "ABC"
    }
    assert sync(mirror).ok
    by_ext = {e: t for t, e in links(mirror).items()}
    ids = {name: by_ext[e] for name, e in ext.items()}
    update_ticket(mirror, ids["A"], status="pending")
    mem.edit(ext["B"], priority="P2")
    mem.edit(ext["C"], title="C from the vendor")
    update_ticket(mirror, ids["C"], priority="low")
    assert sync(mirror).ok
    (run,) = sql(mirror, "SELECT max(id) FROM runs")[0]
    update_ticket(mirror, ids["C"], title="C edited later")
    return Undone(run, ids, ext)


def ask_undo(mirror: Mirror, run: int, **kw: object) -> int:
    return record(mirror, "mem", UndoAsk(run, **kw))  # type: ignore[arg-type]


def test_journal_rows_hold_the_canonical_and_the_vendor_value(mirror, undone):
    rows = sql(
        mirror,
        "SELECT action, field, old_canonical, new_canonical, old_vendor, new_vendor"
        " FROM journal WHERE run_id = :r AND action IN ('pull', 'push') ORDER BY id",
        r=undone.run,
    )
    assert sorted(rows) == [
        ("pull", "priority", "normal", "high", "P3", "P2"),
        ("pull", "title", "C", "C from the vendor", "C", "C from the vendor"),
        ("push", "priority", "normal", "low", "P3", "P4"),
        ("push", "status", "open", "pending", "Open", "Pending"),
    ]


def test_undo_restores_both_sides_and_leaves_later_edits_alone(mirror, undone):
    mem, ids, ext = vendor("mem"), undone.ids, undone.ext
    request = ask_undo(mirror, undone.run)
    assert sync(mirror).ok
    local = tickets(mirror)
    # a push is restored at the vendor only: the mirror keeps its values
    assert mem.records[ext["A"]].fields["status"] == "Open"
    assert local[ids["A"]]["status"] == "pending"
    assert mem.records[ext["C"]].fields["priority"] == "P3"
    assert local[ids["C"]]["priority"] == "low"
    # a pull is restored in the mirror, and sent on to the vendor
    assert local[ids["B"]]["priority"] == "normal"
    assert mem.records[ext["B"]].fields["priority"] == "P3"
    # the title changed again since: left alone on both sides, listed for a person
    assert local[ids["C"]]["title"] == "C edited later"
    assert mem.records[ext["C"]].fields["title"] == "C edited later"
    (conflict,) = conflicts(mirror)
    assert (conflict["ticket_id"], conflict["field"], conflict["policy"]) == (
        ids["C"],
        "title",
        "undo",
    )
    assert (conflict["local"], conflict["resolution"]) == ("C edited later", "pending")
    # the undo is a run of its own, journaled back to the undone run
    ((undo_run, message),) = sql(mirror, "SELECT id, message FROM runs ORDER BY id DESC LIMIT 1")
    assert message == f"undo of run #{undone.run}"
    entries = sql(
        mirror,
        "SELECT run_id, undo_of, ticket_id, field FROM journal WHERE action = 'undo'",
    )
    assert sorted(entries) == sorted(
        [
            (undo_run, undone.run, ids["A"], "status"),
            (undo_run, undone.run, ids["B"], "priority"),
            (undo_run, undone.run, ids["C"], "priority"),
        ]
    )
    line = result_line(mirror, request)
    assert f"done by run #{undo_run}" in line and "3 restore" in line and "1 conflict" in line
    # settled: further runs write nothing, and the vendor-only restores stay
    writes = len(mem.writes())
    assert sync(mirror).ok and sync(mirror).ok
    assert len(mem.writes()) == writes
    assert tickets(mirror)[ids["A"]]["status"] == "pending"
    assert mem.records[ext["A"]].fields["status"] == "Open"


def test_undoing_again_finds_everything_done(mirror, undone):
    ask_undo(mirror, undone.run)
    assert sync(mirror).ok
    before = dump(mirror, ("tickets", "conflicts")), bases(mirror)
    writes = len(vendor("mem").writes())
    again = ask_undo(mirror, undone.run)
    assert sync(mirror).ok
    assert (dump(mirror, ("tickets", "conflicts")), bases(mirror)) == before
    assert len(vendor("mem").writes()) == writes
    line = result_line(mirror, again)
    assert "3 done" in line and "1 listed" in line


def bases(mirror: Mirror) -> list[object]:
    return sql(mirror, "SELECT ticket_id, base FROM ticket_links ORDER BY ticket_id")


def test_one_ticket_only(mirror, undone):
    ask_undo(mirror, undone.run, ticket_id=undone.ids["B"])
    assert sync(mirror).ok
    local = tickets(mirror)
    assert local[undone.ids["B"]]["priority"] == "normal"
    assert vendor("mem").records[undone.ext["A"]].fields["status"] == "Pending"
    assert conflicts(mirror) == []


def test_dry_run_prints_the_plan_and_changes_nothing(mirror, undone):
    before = dump(mirror, (*DUMPED, "undo_requests"))
    writes = len(vendor("mem").writes())
    lines: list[str] = []
    assert preview(mirror, "mem", UndoAsk(undone.run), lines.append) == 0
    assert dump(mirror, (*DUMPED, "undo_requests")) == before
    assert len(vendor("mem").writes()) == writes
    text = "\n".join(lines)
    assert f"#{undone.ids['B']} priority: 'high' -> 'normal'  (mirror edit" in text
    assert f"#{undone.ids['A']} status: 'Pending' -> 'Open'  (at mem only)" in text
    assert "title: changed since the run" in text
    assert lines[-1].endswith("3 ticket(s) to restore; nothing written")


DUMPED = ("tickets", "ticket_links", "ticket_dirty", "journal", "conflicts", "runs")


def test_a_conflict_settled_for_the_undo_puts_the_old_value_back(mirror, undone):
    ask_undo(mirror, undone.run)
    assert sync(mirror).ok
    (row,) = conflict_cmd.pending(mirror)
    assert "changed since an undone run" in conflict_cmd.render([row])
    conflict_cmd.resolve(mirror, memory_config("mem"), row["id"], "remote")
    assert sync(mirror).ok
    assert tickets(mirror)[undone.ids["C"]]["title"] == "C"
    assert vendor("mem").records[undone.ext["C"]].fields["title"] == "C"
    assert conflict_cmd.pending(mirror) == []


def test_the_guard_holds_a_large_undo_unless_forced(mirror, undone):
    guard = Guard(share=0.1, min_count=1)
    held = ask_undo(mirror, undone.run)
    result = sync(mirror, guard=guard)
    assert result.outcome == "held"
    assert "ask again with --force" in result_line(mirror, held)
    assert vendor("mem").records[undone.ext["A"]].fields["status"] == "Pending"
    assert sync(mirror, guard=guard).ok, "a held request is not tried again"
    ask_undo(mirror, undone.run, force=True)
    assert sync(mirror, guard=guard).ok
    assert vendor("mem").records[undone.ext["A"]].fields["status"] == "Open"


def test_a_vendor_edit_since_the_run_is_left_alone_and_listed(mirror, undone):
    mem = vendor("mem")
    mem.edit(undone.ext["A"], status="Closed")
    ask_undo(mirror, undone.run, ticket_id=undone.ids["A"])
    assert sync(mirror).ok
    assert mem.records[undone.ext["A"]].fields["status"] == "Closed"
    assert tickets(mirror)[undone.ids["A"]]["status"] == "resolved"
    (conflict,) = conflicts(mirror)
    assert (conflict["ticket_id"], conflict["field"], conflict["policy"]) == (
        undone.ids["A"],
        "status",
        "undo",
    )
