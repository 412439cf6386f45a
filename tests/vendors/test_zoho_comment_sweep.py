"""The comment sweep against the Zoho Desk emulator (docs/architecture.md §8.5): a comment
added at the vendor that does not move ``modifiedTime`` is found by the sweep of
``commentCount``, and not before ``options.comment_sweep_seconds`` has passed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from sync.config.model import CommentSettings
from sync.db import Mirror
from sync.engine.context import SyncRules
from sync.engine.run import ConnectionRun, RunOptions
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.sandbox.zoho_desk_data import iso_ms
from sync.vendors.zoho_desk.adapter import ZohoDeskAdapter
from sync.vendors.zoho_desk.options import ZohoOptions, validate_options
from tests.unit.engine_helpers import Clock
from tests.vendors.conftest import MakeAdapter

FIELDS: dict[str, Mapping[str, str] | None] = {
    "title": None,
    "status": {"open": "Open", "on_hold": "On Hold", "closed": "Closed"},
}
SEARCH = "/api/v1/tickets/search"


async def sync_once(mirror: Mirror, adapter: ZohoDeskAdapter, clock: Clock) -> None:
    rules = SyncRules.build(FIELDS, {}, adapter.capabilities, direction="both", tie_break="local")
    result = await ConnectionRun(
        mirror,
        adapter.name,
        adapter,
        rules,
        create_when={},
        options=RunOptions(),
        clock=clock,
        comments=CommentSettings(direction="both", history=True),
    ).run()
    assert result.outcome == "ok", result.error


def sweeps(emulator: ZohoDeskEmulator) -> list[dict[str, Any]]:
    return [e for e in emulator.requests("GET", SEARCH) if "id" in e["query"]]


def imported(mirror: Mirror) -> list[str]:
    with mirror.read() as session:
        return [r[0] for r in session.execute(text("SELECT body FROM ticket_comments"))]


async def test_a_comment_that_leaves_modified_time_is_found_by_the_sweep_in_time(
    mirror: Mirror, make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, tmp_path: Path
) -> None:
    # modified long before the pull's look-back window, so only the sweep can see them again
    old = iso_ms(datetime.now(UTC) - timedelta(days=2))
    zoho_emulator.seed(subject="Printer", modifiedTime=old)
    quiet = zoho_emulator.seed(subject="Scanner", modifiedTime=old)["id"]
    zoho_emulator.seed(subject="Closed one", status="Closed", modifiedTime=old)
    later = iso_ms(datetime.now(UTC) - timedelta(days=1))
    zoho_emulator.seed(subject="Later", modifiedTime=later)  # the pull's cursor
    adapter = make_zoho(options={"comment_sweep_seconds": 300})
    clock = Clock()
    clock.now = datetime.now(UTC)
    await sync_once(mirror, adapter, clock)
    (first,) = sweeps(zoho_emulator)
    assert first["status"] == 200, "the enabling run sweeps the three open tickets in one search"

    reads = f"/api/v1/tickets/{quiet}/comments"
    assert len(zoho_emulator.requests("GET", reads)) == 1, "history: a ticket new to us is read"
    modified = zoho_emulator.tickets[quiet]["modifiedTime"]
    zoho_emulator.add_comment(quiet, content="The toner is out", contentType="plainText")
    assert zoho_emulator.tickets[quiet]["modifiedTime"] == modified
    assert zoho_emulator.tickets[quiet]["commentCount"] == "1"

    clock.now += timedelta(seconds=299)
    await sync_once(mirror, adapter, clock)
    assert len(sweeps(zoho_emulator)) == 1 and imported(mirror) == [], "not before its time"

    clock.now += timedelta(seconds=1)
    await sync_once(mirror, adapter, clock)
    assert len(sweeps(zoho_emulator)) == 2
    assert imported(mirror) == ["The toner is out"]
    assert len(zoho_emulator.requests("GET", reads)) == 2, "read once more, when it moved"
    assert zoho_emulator.deviations() == []


async def test_counters_are_read_for_many_ids_in_one_search(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    ids = [zoho_emulator.seed(subject=f"T{i}")["id"] for i in range(100)]
    zoho_emulator.add_comment(ids[7], content="one", contentType="plainText")
    adapter = make_zoho()
    assert adapter.comment_sweep_seconds == 600, "the documented default"
    counters = await adapter.comment_counters([*ids[:99], "1892000000999993"])
    assert len(zoho_emulator.requests("GET", SEARCH)) == 1
    assert len(counters) == 99, "an id Zoho does not have is left out"
    assert counters[ids[7]] == "1" and counters[ids[8]] == "0"
    assert await adapter.comment_counters([]) == {}
    assert zoho_emulator.deviations() == []


def test_the_sweep_interval_option_is_checked() -> None:
    assert validate_options({"comment_sweep_seconds": 900}) == []
    assert validate_options({"comment_sweep_seconds": -1}) == [
        "options.comment_sweep_seconds: expected a number of seconds >= 0"
    ]
    assert ZohoOptions.from_mapping({"comment_sweep_seconds": 60}).comment_sweep_seconds == 60
