"""A run's cost follows the number of changed tickets, not the mirror's size (docs/architecture.md
§3.4).

The same 100 changes (50 local edits through raw SQL, 50 remote edits at the vendor) cost
the same number of SQL statements on a 1,000-ticket and on a 50,000-ticket mirror. The
mirrors are built with bulk SQL, not through the engine: tickets before the connection is
registered (so the change feed marks none of them), then the links and the connection's
row with a cursor past every vendor ticket, as if they had been synced long ago.

SQLite only: the point is the statement count, which the dialect does not change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from sync.db import Mirror, migrate
from sync.vendors.memory.adapter import EPOCH, MemoryVendor, _Record, reset_stores
from tests.unit.engine_helpers import sql, sync, vendor

CHANGES = 100
SMALL, BIG = 1_000, 50_000
STAMP = "2026-01-01 00:00:00.000000"


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def external(i: int) -> str:
    return str(100_000 + i)


def build(path: Path, size: int, v: MemoryVendor) -> Mirror:
    """A mirror of ``size`` tickets, each linked to a vendor ticket that agrees with it."""
    mirror = Mirror(f"sqlite:///{path}")
    migrate(mirror)
    sql(
        mirror,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :size)"
        " INSERT INTO tickets (id, title, status, priority, queue, created_at, updated_at)"
        " SELECT i, 'T' || i, 'open', 'normal', 'billing', :t, :t FROM n",
        size=size,
        t=STAMP,
    )
    links = []
    for i in range(1, size + 1):
        title = f"T{i}"
        base = {
            "title": {"local": title, "remote": title},
            "status": {"local": "open", "remote": "Open"},
            "priority": {"local": "normal", "remote": "P3"},
            "queue": {"local": "billing", "remote": "billing"},
        }
        eid = external(i)
        links.append((i, "mem", eid, eid, "active", json.dumps(base), STAMP, STAMP, STAMP))
        v.records[external(i)] = _Record(
            {"title": title, "status": "Open", "priority": "P3", "queue": "billing"}, EPOCH
        )
    v._clock = EPOCH + timedelta(seconds=1)
    with mirror.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO ticket_links (ticket_id, connection, external_id, external_key, state,"
            " base, remote_modified_at, fail_count, missing_count, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
            links,
        )
        conn.exec_driver_sql(
            "INSERT INTO sync_connections (name, vendor, cursor, creates, registered_at,"
            " consecutive_failures, credentials) VALUES (?, 'memory', ?, 0, ?, 0, 'unknown')",
            ("mem", json.dumps(v._clock.isoformat()), STAMP),
        )
    return mirror


Statement = tuple[str, Any]


def query_plans(mirror: Mirror, statements: list[Statement]) -> dict[str, list[str]]:
    """SQLite's plan of every distinct statement that reads or writes existing rows."""
    plans = {}
    with mirror.engine.connect() as conn:
        for statement, parameters in statements:
            if statement in plans or statement.split()[0] not in ("SELECT", "UPDATE", "DELETE"):
                continue
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans[statement] = [row[3] for row in rows]
    return plans


def cost_of_changes(
    tmp_path: Path, size: int, plans: dict[str, list[str]] | None = None
) -> list[Statement]:
    """Every statement (with its parameters) of a run that syncs the same 100 changes."""
    plans = {} if plans is None else plans
    v = vendor()
    mirror = build(tmp_path / f"mirror-{size}.db", size, v)
    try:
        settle = sync(mirror)
        assert settle.outcome == "ok", settle.error
        assert settle.counts.as_dict() == dict.fromkeys(settle.counts.as_dict(), 0)
        # the same 100 tickets, spread over the mirror, whatever its size
        step = size // CHANGES
        ids = [1 + k * step for k in range(CHANGES)]
        for i in ids[::2]:
            sql(mirror, "UPDATE tickets SET status = 'closed' WHERE id = :i", i=i)
        for i in ids[1::2]:
            v.edit(external(i), priority="P1")
        statements: list[Statement] = []

        def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
            statements.append((statement, parameters))

        event.listen(mirror.engine, "before_cursor_execute", before)
        result = sync(mirror)
        event.remove(mirror.engine, "before_cursor_execute", before)
        assert result.outcome == "ok", result.error
        assert (result.counts.pushed, result.counts.pulled) == (CHANGES // 2, CHANGES // 2)
        plans.update(query_plans(mirror, statements))
        return statements
    finally:
        mirror.dispose()
        reset_stores()


def test_a_run_costs_the_same_statements_on_a_small_and_a_big_mirror(tmp_path: Path) -> None:
    small = [statement for statement, _ in cost_of_changes(tmp_path, SMALL)]
    big = [statement for statement, _ in cost_of_changes(tmp_path, BIG)]
    assert len(small) == len(big), (len(small), len(big))
    # and the statements themselves are the same ones, in the same order
    assert small == big
    # a handful per changed ticket, not one per ticket of the mirror
    assert len(small) < 20 * CHANGES


#: A plan that visits every row of a table, or every link of the connection (the partial
#: index of failing links holds only those: reading it costs what fails).
FULL_SCAN = re.compile(
    r"^SCAN (tickets|ticket_links|ticket_dirty)\b"
    r"|^SEARCH ticket_links USING (COVERING )?INDEX (?!ix_ticket_links_failing )\S+ "
    r"\(connection=\?\)$"
)


def test_no_statement_reads_every_link_or_ticket(tmp_path: Path) -> None:
    plans: dict[str, list[str]] = {}
    cost_of_changes(tmp_path, SMALL, plans)
    scans = {s: p for s, p in plans.items() if any(FULL_SCAN.search(line) for line in p)}
    assert scans == {}
