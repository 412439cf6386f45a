"""Matching before creating, through the real CLI against the Zoho Desk emulator
(docs/architecture.md §8.7): a first import that finds the mirror's tickets at the vendor
creates none of them; ``match list``, ``approve`` and ``reject`` settle the pairs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.system.conftest import run_cli
from tests.system.harness import PLUGINS, Setup


@pytest.fixture
def setup(tmp_path: Any, db_url: str) -> Iterator[Setup]:
    s = Setup(PLUGINS["zoho_desk"], tmp_path, db_url=db_url)
    yield s
    s.stop()


def _cli(setup: Setup, *args: str) -> Any:
    result = run_cli("--config", str(setup.config), *args)
    assert result.returncode == 0, result.stderr
    return result


def _creates(setup: Setup) -> int:
    return sum(
        1 for e in setup.vendor.log() if e["method"] == "POST" and e["path"] == "/api/v1/tickets"
    )


def test_first_import_review_and_approval_through_the_cli(setup: Setup) -> None:
    _cli(setup, "db", "upgrade")
    for n in range(5):
        setup.sql(
            "INSERT INTO tickets (title, status, priority, queue, requester_email) "
            "VALUES (?, 'open', 'normal', 'billing', ?)",
            f"Order {n} did not arrive",
            f"buyer{n}@example.com",
        )
    shared = [
        {
            "subject": f"Re: Order {n} did not arrive",
            "status": "Open",
            "priority": "Medium",
            "email": f"buyer{n}@example.com",
        }
        for n in range(5)
    ]
    other = [
        {
            "subject": f"Unrelated {n}",
            "status": "Open",
            "priority": "Medium",
            "email": f"x{n}@example.org",
        }
        for n in range(2)
    ]
    seeded = setup.vendor.seed(*shared, *other)
    twins = {n + 1: str(t["id"]) for n, t in enumerate(seeded[:5])}

    first = setup.run()
    assert first.returncode == 0, first.stderr
    assert _creates(setup) == 0
    assert setup.sql("SELECT count(*) FROM tickets") == [(7,)], "only the two others imported"

    listed = json.loads(_cli(setup, "match", "list", "--json").stdout)["candidates"]
    assert {c["ticket_id"]: c["external_id"] for c in listed} == twins
    assert all(c["score"] == 1.0 and c["state"] == "pending" for c in listed)

    by_ticket = {c["ticket_id"]: c["id"] for c in listed}
    _cli(setup, "match", "reject", str(by_ticket[5]))
    approved = _cli(setup, "match", "approve", "--all-above", "0.9")
    assert "4 candidate(s) approved" in approved.stdout

    links = dict(setup.sql("SELECT ticket_id, external_id FROM ticket_links"))
    assert {t: links[t] for t in range(1, 5)} == {t: twins[t] for t in range(1, 5)}
    assert links[5] != twins[5], "the rejected pair stays two tickets"
    assert _creates(setup) == 1, "only the rejected pair's mirror ticket is created"
    assert setup.sql("SELECT count(*) FROM tickets") == [(8,)]
    assert setup.sql("SELECT state, count(*) FROM match_candidates GROUP BY state ORDER BY 1") == [
        ("linked", 4),
        ("rejected", 1),
    ]

    setup.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Refund please', 'open', 'normal', 'support', 'late@example.com')"
    )
    setup.vendor.seed(
        {
            "subject": "REFUND please!",
            "status": "Open",
            "priority": "Medium",
            "email": "late@example.com",
        }
    )
    scored = _cli(setup, "match", "v")
    assert "1 new candidate" in scored.stdout
    assert setup.status()["pending_matches"] == 1
    shown = _cli(setup, "match", "list").stdout
    assert "mirror #9: 'Refund please'" in shown and "'REFUND please!'" in shown
