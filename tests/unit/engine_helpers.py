"""Helpers to drive the engine against the in-memory vendor in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text

from sync.config.model import CommentSettings, MatchSettings
from sync.db import Mirror
from sync.db.models import utcnow
from sync.engine.context import SyncRules
from sync.engine.guard import Guard
from sync.engine.run import ConnectionRun, RunOptions, RunResult
from sync.engine.state import RunState
from sync.vendors.memory.adapter import MemoryAdapter, MemoryVendor, store

STATUS = {
    "open": "Open",
    "pending": "Pending",
    "on_hold": "Pending",
    "resolved": "Closed",
    "closed": "Closed",
}
PRIORITY = {"low": "P4", "normal": "P3", "high": "P2", "urgent": "P1"}
FIELDS: dict[str, Mapping[str, str] | None] = {
    "title": None,
    "status": STATUS,
    "priority": PRIORITY,
    "queue": None,
}


class Clock:
    """A settable clock for backoffs."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def make_run(
    mirror: Mirror,
    name: str = "mem",
    *,
    fields: Mapping[str, Mapping[str, str] | None] = FIELDS,
    policy: str | Mapping[str, str] = "newest",
    create_when: dict[str, tuple[str, ...]] | None = None,
    direction: str = "both",
    options: Mapping[str, Any] | None = None,
    guard: Guard | None = None,
    dry_run: bool = False,
    force: bool = False,
    clock: Clock | None = None,
    tie_break: str = "local",
    report: Any = None,
    comments: CommentSettings | None = None,
    match: MatchSettings | None = None,
) -> ConnectionRun:
    connection = SimpleNamespace(name=name, options=dict(options or {}))
    adapter = MemoryAdapter(connection)
    policies = dict.fromkeys(fields, policy) if isinstance(policy, str) else dict(policy)
    rules = SyncRules.build(
        fields, policies, adapter.capabilities, direction=direction, tie_break=tie_break
    )
    return ConnectionRun(
        mirror,
        name,
        adapter,
        rules,
        direction=direction,
        create_when=create_when,
        options=RunOptions(
            dry_run=dry_run,
            force=force,
            guard=guard or Guard(share=1.0, min_count=10**6),
            match=match or MatchSettings(),
        ),
        clock=clock or utcnow,
        report=report,
        comments=comments,
    )


def make_state(mirror: Mirror, name: str = "mem", **kw: Any) -> RunState:
    """The shared state of a run as ``make_run`` builds it, for testing one phase alone."""
    return make_run(mirror, name, **kw).state


def sync(mirror: Mirror, name: str = "mem", **kw: Any) -> RunResult:
    return asyncio.run(make_run(mirror, name, **kw).run())


def vendor(name: str = "mem") -> MemoryVendor:
    return store(name)


def sql(mirror: Mirror, statement: str, **params: Any) -> list[Any]:
    """Run raw SQL as another program would (its own connection, no origin)."""
    with mirror.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def tickets(mirror: Mirror) -> dict[int, dict[str, Any]]:
    rows = sql(mirror, "SELECT id, title, status, priority, queue FROM tickets ORDER BY id")
    return {r[0]: {"title": r[1], "status": r[2], "priority": r[3], "queue": r[4]} for r in rows}


def links(mirror: Mirror, name: str = "mem") -> dict[int, str]:
    rows = sql(
        mirror,
        "SELECT ticket_id, external_id FROM ticket_links"
        " WHERE connection = :c AND state = 'active'",
        c=name,
    )
    return {r[0]: r[1] for r in rows}


#: A local ``updated_at`` older than any vendor time the memory vendor hands out.
OLD = "2020-01-01 00:00:00.000000"

#: Every table the engine may write, in a fixed order (for before/after dumps).
TABLES = (
    "tickets",
    "ticket_links",
    "ticket_dirty",
    "sync_connections",
    "sync_origin",
    "journal",
    "conflicts",
    "runs",
    "ticket_comments",
    "comment_links",
    "comment_dirty",
    "comment_counters",
)


def dump(mirror: Mirror, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every engine table, as plain tuples in a stable order."""
    return {t: [tuple(r) for r in sql(mirror, f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables}


def insert_ticket(mirror: Mirror, **values: Any) -> int:
    """INSERT a ticket through raw SQL, as another program would; return its id."""
    columns = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    ((ticket_id,),) = sql(
        mirror, f"INSERT INTO tickets ({columns}) VALUES ({params}) RETURNING id", **values
    )
    return int(ticket_id)


def update_ticket(mirror: Mirror, ticket_id: int, **values: Any) -> None:
    """UPDATE a ticket through raw SQL, as another program would."""
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    sql(mirror, f"UPDATE tickets SET {assignments} WHERE id = :_id", _id=ticket_id, **values)


def journal(mirror: Mirror, name: str | None = None) -> list[dict[str, Any]]:
    rows = sql(
        mirror,
        "SELECT connection, action, ticket_id, external_id, field, old_value, new_value, note"
        " FROM journal ORDER BY id",
    )
    keys = ("connection", "action", "ticket_id", "external_id", "field", "old", "new", "note")
    entries = [dict(zip(keys, r, strict=True)) for r in rows]
    return [e for e in entries if name is None or e["connection"] == name]


def conflicts(mirror: Mirror) -> list[dict[str, Any]]:
    rows = sql(
        mirror,
        "SELECT id, connection, ticket_id, field, base_value, local_value, remote_value,"
        " policy, resolution FROM conflicts ORDER BY id",
    )
    keys = ("id", "connection", "ticket_id", "field", "base", "local", "remote", "policy")
    return [dict(zip((*keys, "resolution"), r, strict=True)) for r in rows]


def link_row(mirror: Mirror, ticket_id: int, name: str = "mem") -> dict[str, Any]:
    """The link of ``ticket_id`` to ``name`` (any state), as a dict."""
    keys = ("external_id", "state", "marker", "fail_count", "next_retry_at", "last_error")
    keys += ("first_look_at",)
    rows = sql(
        mirror,
        f"SELECT {', '.join(keys)}, missing_count, last_error_kind FROM ticket_links"
        " WHERE connection = :c AND ticket_id = :t",
        c=name,
        t=ticket_id,
    )
    assert len(rows) == 1, rows
    return dict(zip((*keys, "missing_count", "last_error_kind"), rows[0], strict=True))


def dirty(mirror: Mirror, name: str = "mem") -> set[int]:
    rows = sql(mirror, "SELECT ticket_id FROM ticket_dirty WHERE connection = :c", c=name)
    return {r[0] for r in rows}


def memory_config(*names: str, fields: Mapping[str, Mapping[str, str] | None] = FIELDS) -> Any:
    """A validated ``Config`` with memory connections ``names`` (for conflicts.resolve)."""
    from sync.config import parse_config

    connections = {
        n: {"vendor": "memory", "base_url": "http://127.0.0.1:9", "fields": dict(fields)}
        for n in names
    }
    return parse_config({"connections": connections})
