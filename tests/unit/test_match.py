"""Matching before creating (docs/architecture.md §8.7): scoring, and the engine's passes
against the in-memory vendor, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sync.config import parse_config
from sync.config.model import MatchSettings
from sync.db import Mirror
from sync.engine import candidates
from sync.engine.matching import MirrorIndex, Side, best_pairs, normal_subject, score
from sync.errors import ConfigError
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import (
    insert_ticket,
    journal,
    links,
    make_run,
    sql,
    sync,
    vendor,
)

MATCH = MatchSettings(on_first_import=True)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


# -- scoring (pure) -----------------------------------------------------------------------


def test_subjects_compare_without_reply_prefixes_tags_case_or_punctuation() -> None:
    assert normal_subject("RE: Fwd: [#123] Printer  is BROKEN!") == "printer is broken"
    assert normal_subject("Café au lait") == normal_subject("cafe AU lait")
    assert normal_subject("Re:") is None
    assert normal_subject(None) is None


def test_a_pair_scores_the_weights_of_the_keys_it_agrees_on() -> None:
    mirror = Side("7", "a@x.org", "printer", T0)
    assert score(mirror, Side("k", "a@x.org", "printer", T0), MATCH) == (
        1.0,
        ("requester_email", "subject", "created_at"),
    )
    late = T0 + timedelta(days=3)
    assert score(mirror, Side("k", "a@x.org", "printer", late), MATCH) == (
        0.8,
        ("requester_email", "subject"),
    )
    # the creation time confirms a subject, never an e-mail alone: one customer, one day,
    # two tickets is common
    assert score(mirror, Side("k", "a@x.org", "other", T0), MATCH) == (0.4, ("requester_email",))
    assert score(mirror, Side("k", "b@x.org", "printer", T0), MATCH) == (
        0.6,
        ("subject", "created_at"),
    )
    no_subject = MatchSettings(keys=("requester_email", "created_at"))
    assert score(mirror, Side("k", "a@x.org", "other", T0), no_subject) == (
        1.0,
        ("requester_email", "created_at"),
    )
    assert score(mirror, Side("k", "b@x.org", "other", T0, "7"), MATCH) == (1.0, ("reference",))
    only_subject = MatchSettings(keys=("subject",))
    assert score(mirror, Side("k", "b@x.org", "printer", late), only_subject)[0] == 1.0


def test_pairs_are_scored_within_blocks_and_assigned_once_deterministically() -> None:
    def index() -> MirrorIndex:
        return MirrorIndex(
            [
                (1, Side("1", "a@x.org", "printer", T0)),
                (2, Side("2", "a@x.org", "printer", T0 + timedelta(hours=2))),
                (3, Side("3", "c@x.org", "scanner", T0)),
            ]
        )

    remotes = [
        Side("v2", "a@x.org", "printer", T0 + timedelta(hours=2)),
        Side("v1", "a@x.org", "printer", T0),
        Side("v9", "z@x.org", "nothing alike", T0),  # shares only a time: never scored
    ]
    first = best_pairs(index(), remotes, MATCH)
    assert [(p.ticket_id, p.external_key) for p in first] == [(1, "v1"), (2, "v2")]
    assert best_pairs(index(), list(reversed(remotes)), MATCH) == first
    taken = index()
    best_pairs(taken, remotes[:1], MATCH)
    assert 2 not in taken.sides, "a mirror ticket is claimed once"


# -- the engine -----------------------------------------------------------------------------


def _seed(mirror: Mirror, same: int = 50, differ: int = 10) -> dict[int, str]:
    """``same`` tickets on both sides (the vendor's subjects in another spelling), and
    ``differ`` at the vendor only; the mirror ticket id -> its vendor twin's id."""
    pairs = {}
    for n in range(same):
        ticket_id = insert_ticket(
            mirror,
            title=f"Printer {n} is broken",
            requester_email=f"user{n}@example.com",
            status="open",
            priority="high" if n < 5 else "normal",
        )
        pairs[ticket_id] = vendor().seed(
            title=f"RE: printer {n} is BROKEN",
            requester_email=f"User{n}@Example.com",
            status="Open",
            priority="P3",
        )
    for n in range(differ):
        vendor().seed(
            title=f"Invoice {n}", requester_email=f"billing{n}@example.net", status="Open"
        )
    return pairs


def _candidates(mirror: Mirror) -> list[tuple[int, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in sql(
            mirror, "SELECT ticket_id, external_id, state FROM match_candidates ORDER BY ticket_id"
        )
    ]


def _decide(mirror: Mirror, state: str) -> None:
    with mirror.write() as session:
        ids = candidates.at_least(session, 0.0, ["mem"])
        candidates.decide(session, ids, state, datetime.now(UTC))


def test_a_first_import_makes_candidates_creates_nothing_and_approval_links_the_pairs(
    mirror: Mirror,
) -> None:
    pairs = _seed(mirror)
    first = sync(mirror, create_when={}, match=MATCH)
    assert first.ok, first.error
    found = _candidates(mirror)
    assert len(found) == 50 and {s for _, _, s in found} == {"pending"}
    assert {t: e for t, e, _ in found} == pairs
    assert first.counts.created == 0 and vendor().writes() == []
    assert first.counts.pulled == 10, "the ten that differ are imported"
    assert sql(mirror, "SELECT count(*) FROM tickets") == [(60,)]
    assert not set(links(mirror)) & set(pairs), "no candidate is linked before review"

    vendor().edit(pairs[min(pairs)], status="Pending")  # a pending candidate stays out
    again = sync(mirror, create_when={}, match=MATCH)
    assert again.counts.created == 0 and again.counts.pulled == 0
    assert sql(mirror, "SELECT count(*) FROM tickets") == [(60,)]

    _decide(mirror, "approved")
    linked = sync(mirror, create_when={}, match=MATCH)
    assert linked.ok, linked.error
    assert linked.counts.created == 0 and not [w for w in vendor().writes() if w[0] == "create"]
    assert {t: e for t, e in links(mirror).items() if t in pairs} == pairs
    assert {s for _, _, s in _candidates(mirror)} == {"linked"}
    assert sum(1 for e in journal(mirror) if e["action"] == "match") == 50


def test_an_approved_pair_leaves_differing_fields_to_the_conflict_policy(mirror: Mirror) -> None:
    pairs = _seed(mirror, same=6, differ=0)
    sync(mirror, create_when={}, match=MATCH)
    _decide(mirror, "approved")
    result = sync(mirror, create_when={}, match=MATCH, policy="local")
    assert result.ok, result.error
    rows = sql(mirror, "SELECT id, title, priority FROM tickets ORDER BY id")
    first = min(pairs)
    # the subjects differ (in spelling): the policy kept the mirror's and sent it
    assert rows[0][1] == "Printer 0 is broken"
    assert vendor().records[pairs[first]].fields["title"] == "Printer 0 is broken"
    # priorities differ on the first five only; the sixth agreed and is not a conflict
    conflicted = {e["ticket_id"] for e in journal(mirror) if e["field"] == "priority"}
    assert conflicted == set(sorted(pairs)[:5])
    assert vendor().records[pairs[first]].fields["priority"] == "P2"
    assert all(r[2] == "high" for r in rows[:5]) and rows[5][2] == "normal"


def test_a_rejected_candidate_is_imported_and_its_mirror_ticket_created(mirror: Mirror) -> None:
    pairs = _seed(mirror, same=1, differ=0)
    sync(mirror, create_when={}, match=MATCH)
    _decide(mirror, "rejected")
    result = sync(mirror, create_when={}, match=MATCH)
    assert result.ok, result.error
    assert result.counts.pulled == 1 and result.counts.created == 1
    assert sql(mirror, "SELECT count(*) FROM tickets") == [(2,)]
    (ticket_id,) = pairs
    assert links(mirror)[ticket_id] != pairs[ticket_id]
    assert _candidates(mirror) == [(ticket_id, pairs[ticket_id], "rejected")]
    assert sql(mirror, "SELECT count(*) FROM match_candidates WHERE done_at IS NULL") == [(0,)]


def test_unmatched_mirror_tickets_are_created_once_the_match_pass_is_done(mirror: Mirror) -> None:
    _seed(mirror, same=2, differ=0)
    alone = insert_ticket(mirror, title="Nobody has this", requester_email="x@y.z", status="open")
    result = sync(mirror, create_when={}, match=MATCH)
    assert result.counts.created == 1
    calls = [c[0] for c in vendor().calls]
    assert calls.index("create") > max(i for i, c in enumerate(calls) if c == "changed_since")
    assert alone in links(mirror) and len(_candidates(mirror)) == 2


def test_pairs_above_auto_link_above_are_linked_in_the_first_run(mirror: Mirror) -> None:
    pairs = _seed(mirror, same=3, differ=0)
    auto = MatchSettings(on_first_import=True, auto_link_above=0.8)
    result = sync(mirror, create_when={}, match=auto)
    assert result.ok and result.counts.created == 0
    assert {t: e for t, e in links(mirror).items()} == pairs


def test_without_matching_the_first_import_imports_and_creates_everything(mirror: Mirror) -> None:
    _seed(mirror, same=3, differ=0)
    result = sync(mirror, create_when={})
    assert result.counts.created == 3 and result.counts.pulled == 3
    assert _candidates(mirror) == []


def test_no_create_leaves_before_the_first_import_and_its_match_pass(mirror: Mirror) -> None:
    _seed(mirror, same=2, differ=0)
    woken = make_run(mirror, create_when={}, match=MATCH)
    woken.state.options = replace(woken.state.options, push_only=True)  # lists nothing
    result = asyncio.run(woken.run())
    assert result.ok and result.counts.created == 0 and vendor().writes() == []
    assert sync(mirror, create_when={}, match=MATCH).counts.created == 0
    assert len(_candidates(mirror)) == 2


# -- the config ------------------------------------------------------------------------------


def _connection(**extra: object) -> dict[str, object]:
    return {"vendor": "memory", "base_url": "http://127.0.0.1:9", **extra}


def test_match_defaults_follow_the_create_rule() -> None:
    config = parse_config(
        {"connections": {"a": _connection(create={"when": {}}), "b": _connection()}}
    )
    assert config.connections["a"].match == MatchSettings(on_first_import=True)
    assert config.connections["b"].match.on_first_import is False
    given = parse_config(
        {
            "connections": {
                "a": _connection(
                    create={"when": {}},
                    match={
                        "on_first_import": False,
                        "min_score": 0.6,
                        "auto_link_above": 0.9,
                        "window_seconds": 600,
                        "keys": ["subject", "requester_email"],
                    },
                )
            }
        }
    )
    assert given.connections["a"].match == MatchSettings(
        False, 0.6, 0.9, 600.0, ("requester_email", "subject")
    )


def test_every_match_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "connections": {
                    "a": _connection(
                        match={
                            "min_score": 0,
                            "auto_link_above": 2,
                            "window_seconds": -1,
                            "keys": ["subject", "colour"],
                            "extra": 1,
                        }
                    )
                }
            }
        )
    text = "\n".join(caught.value.problems)
    for key in ("min_score", "auto_link_above", "window_seconds", "keys", "extra"):
        assert f"connections.a.match.{key}" in text


def test_a_push_only_connection_lists_the_vendor_once_to_match(mirror: Mirror) -> None:
    pairs = _seed(mirror, same=3, differ=1)
    result = sync(mirror, create_when={}, match=MATCH, direction="push")
    assert result.ok, result.error
    assert result.counts.created == 0 and result.counts.pulled == 0
    assert {t: e for t, e, _ in _candidates(mirror)} == pairs
    assert sql(mirror, "SELECT count(*) FROM tickets") == [(3,)], (
        "a push connection imports nothing"
    )


def test_migration_0015_counts_established_connections_as_matched(mirror: Mirror) -> None:
    from alembic import command

    from sync.db.migrate import _alembic_config, migrate

    with mirror.engine.connect() as conn:
        command.downgrade(_alembic_config(conn), "0010")
        conn.commit()
    for name, cursor in (("old", '"2026-01-01T00:00:00"'), ("new", None)):
        sql(
            mirror,
            "INSERT INTO sync_connections (name, vendor, cursor, creates, registered_at,"
            " consecutive_failures, credentials) VALUES (:n, 'memory', :c, true,"
            " '2026-01-01 00:00:00', 0, 'ok')",
            n=name,
            c=cursor,
        )
    migrate(mirror)
    rows = sql(mirror, "SELECT name, first_match_at IS NOT NULL FROM sync_connections ORDER BY 1")
    assert [(n, bool(m)) for n, m in rows] == [("new", False), ("old", True)]
    assert sql(mirror, "SELECT count(*) FROM match_candidates") == [(0,)]


def test_a_dry_run_names_the_candidates_and_writes_nothing(mirror: Mirror) -> None:
    _seed(mirror, same=2, differ=1)
    lines: list[str] = []
    result = sync(mirror, create_when={}, match=MATCH, dry_run=True, report=lines.append)
    assert result.outcome == "dry-run"
    assert sum("match candidate, score 0.8" in line for line in lines) == 2
    assert sum(": import" in line for line in lines) == 1
    assert not any("create" in line for line in lines), lines
    assert _candidates(mirror) == [] and vendor().writes() == []
