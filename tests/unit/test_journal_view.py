"""``ticketsync journal``'s reading and rendering, on a mirror that real syncs wrote.

Each test runs on SQLite and PostgreSQL (the ``mirror`` fixture). The seeded journal
(``seeded``) holds three runs: ``mem`` imports two tickets, ``other`` imports one, then
``mem`` pushes a local status edit of the first, pulls a vendor queue edit of the first
and a vendor priority edit of the second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sync.db import Mirror
from sync.errors import UserError
from sync.journal_view import DEFAULT_LIMIT, JournalQuery, collect, render
from sync.redact import Redactor
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import journal, links, sql, sync, update_ticket, vendor


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


@dataclass(frozen=True)
class Seeded:
    runs: tuple[int, int, int]  # mem's import, other's import, mem's push and pull
    pushed: int  # the ticket whose status was pushed
    pulled: int  # the ticket whose priority was pulled
    other: int  # the ticket other imported


@pytest.fixture
def seeded(mirror: Mirror) -> Seeded:
    mem = vendor("mem")
    a = mem.seed(title="A", status="Open", priority="P3", queue="billing")
    b = mem.seed(title="B", status="Open", priority="P3", queue="billing")
    assert sync(mirror, "mem").ok
    vendor("other").seed(title="C", status="Open", priority="P3", queue="support")
    assert sync(mirror, "other").ok
    ids = {e: t for t, e in links(mirror, "mem").items()}
    update_ticket(mirror, ids[a], status="closed")
    mem.edit(b, priority="P1")
    mem.edit(a, queue="support")
    assert sync(mirror, "mem").ok
    runs = tuple(r[0] for r in sql(mirror, "SELECT id FROM runs ORDER BY id"))
    assert len(runs) == 3
    (other,) = links(mirror, "other")
    return Seeded(runs=runs, pushed=ids[a], pulled=ids[b], other=other)  # type: ignore[arg-type]


def everything(mirror: Mirror, **kw: object) -> dict[str, object]:
    return collect(mirror, JournalQuery(limit=None, **kw))  # type: ignore[arg-type]


def test_collect_returns_every_entry_newest_first_with_its_run(
    mirror: Mirror, seeded: Seeded
) -> None:
    report = everything(mirror)
    stored = journal(mirror)
    entries = report["entries"]
    assert isinstance(entries, list)
    assert report["schema"] == 1
    assert report["total"] == report["shown"] == len(entries) == len(stored)
    assert report["omitted"] == 0 and report["limit"] is None
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert {e["run_id"] for e in entries} == set(seeded.runs)
    for entry in entries:
        assert entry["at"].endswith("Z")
        assert entry["run"]["connection"] == entry["connection"]
        assert entry["run"]["outcome"] == "ok"
        assert entry["run"]["started_at"].endswith("Z")
    push = next(e for e in entries if e["action"] == "push")
    assert (push["ticket_id"], push["field"], push["old_value"], push["new_value"]) == (
        seeded.pushed,
        "status",
        "Open",
        "Closed",
    )
    json.dumps(report)  # the --json output is exactly this object


def test_run_ticket_and_connection_filters_select_only_their_entries(
    mirror: Mirror, seeded: Seeded
) -> None:
    last = everything(mirror, run=seeded.runs[2])["entries"]
    assert {e["run_id"] for e in last} == {seeded.runs[2]}
    assert {(e["action"], e["ticket_id"]) for e in last} >= {
        ("push", seeded.pushed),
        ("pull", seeded.pulled),
    }
    assert "import" not in {e["action"] for e in last}

    ticket = everything(mirror, ticket=seeded.pulled)["entries"]
    assert [(e["action"], e["field"]) for e in ticket] == [("pull", "priority"), ("import", None)]

    other = everything(mirror, connections=("other",))["entries"]
    assert [(e["action"], e["ticket_id"]) for e in other] == [("import", seeded.other)]

    both = everything(mirror, run=seeded.runs[0], ticket=seeded.pushed)["entries"]
    assert [(e["action"], e["ticket_id"]) for e in both] == [("import", seeded.pushed)]


def test_a_filter_matching_nothing_is_an_empty_result_that_says_so(
    mirror: Mirror, seeded: Seeded
) -> None:
    report = everything(mirror, ticket=999_999, connections=("nope",))
    assert report["entries"] == [] and report["total"] == 0
    assert render(report) == "no journal entries match --ticket 999999 --connection nope"
    mixed = everything(mirror, run=seeded.runs[1], connections=("mem",))
    assert render(mixed) == f"no journal entries match --run {seeded.runs[1]} --connection mem"


def test_an_unknown_run_is_a_user_error_naming_the_newest_run(
    mirror: Mirror, seeded: Seeded
) -> None:
    with pytest.raises(
        UserError, match=rf"--run 999: no such run \(the newest run is #{seeded.runs[2]}\)"
    ):
        everything(mirror, run=999)


def test_an_empty_journal_says_nothing_has_changed(mirror: Mirror) -> None:
    with pytest.raises(UserError, match="no run has been recorded yet"):
        everything(mirror, run=1)
    assert render(collect(mirror, JournalQuery())) == (
        "the journal is empty: no sync has changed anything yet"
    )


def test_the_limit_keeps_the_newest_entries_and_counts_the_rest(
    mirror: Mirror, seeded: Seeded
) -> None:
    full = everything(mirror)["entries"]
    report = collect(mirror, JournalQuery(limit=2))
    assert [e["id"] for e in report["entries"]] == [e["id"] for e in full[:2]]
    assert (report["shown"], report["total"], report["omitted"]) == (2, len(full), len(full) - 2)
    closing = render(report).splitlines()[-1]
    assert closing.startswith(f"showing the newest 2 of {len(full)} entries; {len(full) - 2} older")
    assert "--limit 0" in closing
    assert (
        render(everything(mirror)).splitlines()[-1] == f"{len(full)} entries shown, all that match"
    )
    assert JournalQuery().limit == DEFAULT_LIMIT


def test_the_connection_filter_limit_keeps_that_connections_newest(
    mirror: Mirror, seeded: Seeded
) -> None:
    mem = everything(mirror, connections=("mem",))["entries"]
    report = collect(mirror, JournalQuery(connections=("mem",), limit=3))
    assert [e["id"] for e in report["entries"]] == [e["id"] for e in mem[:3]]
    assert report["omitted"] == len(mem) - 3


def test_render_groups_by_run_newest_first_then_ticket_oldest_entry_first(
    mirror: Mirror, seeded: Seeded
) -> None:
    text = render(everything(mirror))
    headings = [line for line in text.splitlines() if line.startswith("run #")]
    assert [h.split()[0:3] for h in headings] == [
        ["run", f"#{seeded.runs[2]}", "mem"],
        ["run", f"#{seeded.runs[1]}", "other"],
        ["run", f"#{seeded.runs[0]}", "mem"],
    ]
    assert all("  ok  started " in h for h in headings)
    last_run, _, first_runs = text.partition(headings[1])
    block = last_run.split(f"  ticket #{seeded.pushed}  mem ")[1].split("  ticket #")[0]
    actions = [line.split()[1] for line in block.splitlines()[1:]]
    run3 = everything(mirror, run=seeded.runs[2], ticket=seeded.pushed)["entries"]
    expected = [e["action"] for e in reversed(run3)]
    assert sorted(expected) == ["pull", "push"]
    assert actions == expected, "a ticket's entries read oldest first"
    tickets = [line.split()[1] for line in first_runs.splitlines() if line.startswith("  ticket")]
    assert tickets == [
        f"#{seeded.other}",
        f"#{min(seeded.pushed, seeded.pulled)}",
        f"#{max(seeded.pushed, seeded.pulled)}",
    ], "ascending ticket ids in a run"
    assert re.search(r"  push +status +'Open' -> 'Closed'\n", last_run)
    assert re.search(r"  pull +priority +'normal' -> 'urgent'\n", last_run)


def test_notes_go_through_the_redactor(mirror: Mirror, seeded: Seeded) -> None:
    sql(
        mirror,
        "INSERT INTO journal (at, run_id, connection, ticket_id, external_id, action, note)"
        " VALUES (:at, NULL, 'mem', :t, 'x', 'resolve', :note)",
        at="2030-01-01 00:00:00.000000",
        t=seeded.pushed,
        note="took s3cret; Authorization: Bearer abc123",
    )
    report = collect(mirror, JournalQuery(limit=1), redactor=Redactor(["s3cret"]))
    (entry,) = report["entries"]
    assert entry["note"] == "took ***; Authorization: ***"
    text = render(report)
    assert "abc123" not in text and "s3cret" not in text
    assert text.splitlines()[0].startswith("outside any run")
    default = render(collect(mirror, JournalQuery(limit=1)))
    assert "abc123" not in default, "the process redactor masks credential shapes"


def test_the_run_filter_has_an_index(mirror: Mirror) -> None:
    if mirror.dialect == "sqlite":
        plan = sql(mirror, "EXPLAIN QUERY PLAN SELECT * FROM journal WHERE run_id = 7")
        assert any("ix_journal_run_id" in str(row[-1]) for row in plan), plan
    else:
        found = sql(
            mirror,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_journal_run_id' "
            "AND schemaname = current_schema()",
        )
        assert len(found) == 1 and "(run_id)" in found[0][0], found
