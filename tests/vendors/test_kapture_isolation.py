"""One bad Kapture ticket never holds up the rest (issue 19, docs/architecture.md §8.2).

A ticket whose sub-status is missing from ``options.sub_statuses`` used to fail the whole
run ("unreadable Kapture record"), and a valid edit on another ticket in the same run was
not pulled. Now its status waits with a per-field error that names the ticket, the field,
the value and the fix, and everything else syncs. In-process, against the emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sync.config import Config, parse_config
from sync.db import Mirror
from sync.engine.run import RunResult
from sync.runner import Selection, run_connection
from sync.sandbox.kapture import KaptureEmulator
from tests.unit.engine_helpers import sql


@pytest.fixture
async def emulator() -> AsyncIterator[KaptureEmulator]:
    server = KaptureEmulator()
    await server.start()
    yield server
    await server.stop()


async def sync_once(mirror: Mirror, config: Config) -> RunResult:
    printed: list[str] = []
    result = await run_connection(
        mirror, config, config.connections["kap"], Selection(["kap"]), printed.append
    )
    assert printed == result.failing_lines
    return result


def titles(mirror: Mirror) -> dict[str, Any]:
    rows = sql(
        mirror,
        "SELECT l.external_id, t.title, t.status FROM tickets t"
        " JOIN ticket_links l ON l.ticket_id = t.id",
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_an_unknown_sub_status_fails_one_field_and_the_run_goes_on(
    mirror: Mirror, emulator: KaptureEmulator
) -> None:
    config = parse_config({"connections": {"kap": emulator.demo_connection()}}, env={})
    good = emulator.seed(title="good")["ticketId"]
    bad = emulator.seed(title="bad")["ticketId"]
    assert (await sync_once(mirror, config)).ok
    emulator.sub_statuses["ESC"] = ("Escalated", "P")  # added at Kapture, not in the config
    emulator.edit(bad, substatus="ESC", title="bad, renamed")
    emulator.edit(good, title="good, edited")

    result = await sync_once(mirror, config)

    assert result.ok and result.counts.errors >= 1
    assert titles(mirror)[good] == ("good, edited", "open")  # the other ticket's edit came in
    assert titles(mirror)[bad] == ("bad, renamed", "open")  # the rest of the bad one, too
    (line,) = result.failing_lines
    assert line.startswith("kap: ticket #") and f"<-> {bad}:" in line
    assert "status 'Escalated'" in line and "options.sub_statuses" in line


async def test_a_push_to_a_ticket_with_an_unknown_sub_status_names_it(
    mirror: Mirror, emulator: KaptureEmulator
) -> None:
    config = parse_config({"connections": {"kap": emulator.demo_connection()}}, env={})
    bad = emulator.seed(title="bad")["ticketId"]
    assert (await sync_once(mirror, config)).ok
    emulator.sub_statuses["ESC"] = ("Escalated", "P")
    emulator.edit(bad, substatus="ESC")
    await sync_once(mirror, config)
    sql(mirror, "UPDATE tickets SET queue = 'billing'")  # a local edit Kapture must take

    result = await sync_once(mirror, config)

    assert result.ok  # the ticket fails alone
    (line,) = result.failing_lines
    assert f"<-> {bad}:" in line and "'Escalated'" in line and "options.sub_statuses" in line
