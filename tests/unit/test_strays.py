"""Strays: a vendor ticket carrying the create marker of a ticket already linked on that
connection is reported (table, journal, status, metric), never imported or fanned out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync import status
from sync.daemon.metrics import Metrics
from sync.db import Mirror
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import (
    insert_ticket,
    journal,
    links,
    memory_config,
    sql,
    sync,
    tickets,
    vendor,
)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def test_a_second_vendor_ticket_with_a_linked_tickets_marker_is_a_stray(mirror: Mirror) -> None:
    ticket_id = insert_ticket(mirror, title="A", status="open", priority="normal", queue="q")
    first = sync(mirror, "mem", create_when={})
    assert first.counts.created == 1
    (original,) = vendor("mem").records
    marker = vendor("mem").records[original].marker
    assert marker is not None
    # The same create reached the vendor twice (a send after a lost lease, say).
    duplicate = vendor("mem").seed(title="A", status="Open", priority="P3", queue="q")
    vendor("mem").records[duplicate].marker = marker

    result = sync(mirror, "mem", create_when={})
    sync(mirror, "other", create_when={})  # fan-out: the other vendor gets one ticket
    again = sync(mirror, "mem", create_when={})  # seen again: recorded once

    assert result.ok and again.ok, (result.error, again.error)
    assert list(tickets(mirror)) == [ticket_id], "never imported as a new mirror ticket"
    assert links(mirror, "mem") == {ticket_id: original}, "linked nowhere"
    assert len(vendor("other").records) == 1, "never fanned out"
    assert result.counts.strays == 1 and again.counts.strays == 0
    assert sql(mirror, "SELECT connection, external_id, ticket_id, marker FROM sync_strays") == [
        ("mem", duplicate, ticket_id, marker)
    ]
    strays = [e for e in journal(mirror) if e["action"] == "stray"]
    assert [(e["ticket_id"], e["external_id"]) for e in strays] == [(ticket_id, duplicate)]

    shown = status.collect(memory_config("mem", "other"), mirror)
    assert [(s["connection"], s["external_id"], s["ticket_id"]) for s in shown["strays"]] == [
        ("mem", duplicate, ticket_id)
    ]
    assert shown["strays"][0]["marker"] == marker and shown["strays"][0]["first_seen"]
    assert f"vendor ticket {duplicate} duplicates ticket #{ticket_id}" in status.render(shown)

    metrics = Metrics()
    for run in (first, result, again):
        metrics.observe_run(run)
    assert metrics.registry.get_sample_value("ticketsync_strays_total", {"connection": "mem"}) == 1


def test_a_marker_of_a_creating_intent_still_activates_it(mirror: Mirror) -> None:
    """The rule is only for tickets already linked: a found intent is not a stray."""
    insert_ticket(mirror, title="A", status="open", priority="normal", queue="q")
    vendor("mem").lose_reply("create")
    sync(mirror, "mem", create_when={})  # the reply is lost: the intent stays
    result = sync(mirror, "mem", create_when={})
    assert result.counts.strays == 0
    assert sql(mirror, "SELECT count(*) FROM sync_strays") == [(0,)]
    assert len(vendor("mem").records) == 1


def test_a_dry_run_plans_a_stray_as_a_stray_not_an_import(mirror: Mirror) -> None:
    insert_ticket(mirror, title="A", status="open", priority="normal", queue="q")
    sync(mirror, "mem", create_when={})
    (original,) = vendor("mem").records
    duplicate = vendor("mem").seed(title="A", status="Open", priority="P3", queue="q")
    vendor("mem").records[duplicate].marker = vendor("mem").records[original].marker
    lines: list[str] = []
    sync(mirror, "mem", create_when={}, dry_run=True, report=lines.append)
    assert f"mem: stray <- {duplicate}: a duplicate, not imported" in lines
    assert not any("import" in line and "not imported" not in line for line in lines)
    assert sql(mirror, "SELECT count(*) FROM sync_strays") == [(0,)], "a dry run writes nothing"
