"""Helpers to drive the engine against the in-memory vendor in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text

from sync.db import Mirror
from sync.db.models import utcnow
from sync.engine.context import SyncRules
from sync.engine.guard import Guard
from sync.engine.run import ConnectionRun, RunOptions, RunResult
from sync.vendors.memory import MemoryAdapter, MemoryVendor, store

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
            dry_run=dry_run, force=force, guard=guard or Guard(share=1.0, min_count=10**6)
        ),
        clock=clock or utcnow,
        report=report,
    )


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
