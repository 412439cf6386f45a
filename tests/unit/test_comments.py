"""Conversations on the in-memory vendor (docs/architecture.md §8.5): both directions,
fan-out, no echo, private notes kept private, crash-safe posts, counters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.config.model import CommentSettings
from sync.db import Mirror
from sync.engine import comment_store
from sync.engine.run import RunResult
from sync.errors import ItemError
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import (
    Clock,
    journal,
    links,
    make_run,
    sql,
    vendor,
)

BOTH = CommentSettings(direction="both")
#: Before the memory vendor's first timestamp, so ``history: false`` keeps every comment.
ENABLED = datetime(2025, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def clock(at: datetime = ENABLED) -> Clock:
    c = Clock()
    c.now = at
    return c


def run(mirror: Mirror, name: str, comments: CommentSettings = BOTH, **kw: Any) -> RunResult:
    kw.setdefault("clock", clock())
    kw.setdefault("create_when", {})
    result = asyncio.run(make_run(mirror, name, comments=comments, **kw).run())
    assert result.outcome in ("ok", "dry-run"), result.error
    return result


def settle(mirror: Mirror, *names: str, rounds: int = 2, **kw: Any) -> None:
    for _ in range(rounds):
        for name in names:
            run(mirror, name, **kw)


def paired(mirror: Mirror, **kw: Any) -> tuple[int, str, str]:
    """A ticket seeded at ``a``, imported and created at ``b``: (ticket id, a's id, b's id)."""
    eid_a = vendor("a").seed(title="Printer", status="Open", priority="P3")
    settle(mirror, "a", "b", rounds=1, **kw)
    ((tid, eid_b),) = links(mirror, "b").items()
    return tid, eid_a, eid_b


def add_local(mirror: Mirror, ticket_id: int, body: str, *, public: bool, **extra: Any) -> int:
    """INSERT a comment with plain SQL, as another program would; return its id."""
    ((cid,),) = sql(
        mirror,
        "INSERT INTO ticket_comments (ticket_id, body, is_public, author_name, author_email)"
        " VALUES (:t, :b, :p, :n, :e) RETURNING id",
        t=ticket_id,
        b=body,
        p=public,
        n=extra.get("author_name"),
        e=extra.get("author_email"),
    )
    return int(cid)


def bodies(name: str, external_id: str) -> list[tuple[str, bool]]:
    return [(c.body, c.is_public) for c in vendor(name).comments(external_id)]


def mirror_comments(mirror: Mirror) -> list[tuple[str, bool, str]]:
    rows = sql(mirror, "SELECT body, is_public, source FROM ticket_comments ORDER BY id")
    return [(r[0], bool(r[1]), r[2]) for r in rows]


def test_a_vendor_comment_reaches_the_mirror_and_fans_out_with_no_echo(mirror: Mirror) -> None:
    _tid, eid_a, eid_b = paired(mirror)
    vendor("a").comment(eid_a, "The toner is out", author_name="Alice")
    settle(mirror, "a", "b")
    assert mirror_comments(mirror) == [("The toner is out", True, "a")]
    ((body, public),) = bodies("b", eid_b)
    assert public and body.startswith("Alice via a:\nThe toner is out\n\n[ticketsync:")
    assert len(vendor("a").comments(eid_a)) == 1, "never echoed back to its source"
    settle(mirror, "a", "b")
    assert len(mirror_comments(mirror)) == 1, "our own post is never imported again"
    assert [e["action"] for e in journal(mirror) if e["action"].startswith("comment")] == [
        "comment_pull",
        "comment_post",
    ]
    with mirror.read() as s:
        assert comment_store.summary(s, "b") == {
            "synced": 1,
            "pending": 0,
            "failed": 0,
            "skipped": 0,
        }


def test_a_local_insert_reaches_every_linked_connection(mirror: Mirror) -> None:
    tid, eid_a, eid_b = paired(mirror)
    updated = sql(mirror, "SELECT updated_at FROM tickets WHERE id = :t", t=tid)
    add_local(mirror, tid, "Called the customer", public=True, author_email="bob@example.com")
    assert sql(mirror, "SELECT count(*) FROM ticket_dirty") == [(0,)], "comments never dirty"
    assert sql(mirror, "SELECT updated_at FROM tickets WHERE id = :t", t=tid) == updated
    settle(mirror, "a", "b")
    for name, eid in (("a", eid_a), ("b", eid_b)):
        ((body, public),) = bodies(name, eid)
        assert public and body.startswith("bob@example.com via ticketsync:\nCalled the customer")
    assert len(mirror_comments(mirror)) == 1


def test_a_mapped_author_posts_as_that_user_without_attribution(mirror: Mirror) -> None:
    tid, eid_a, _ = paired(mirror)
    mapped = CommentSettings(direction="both", authors={"bob@example.com": "agent-7"})
    add_local(mirror, tid, "Hello", public=True, author_email="Bob@Example.com")
    run(mirror, "a", comments=mapped)
    (comment,) = vendor("a").comments(eid_a)
    assert comment.author_name == "agent-7"
    assert comment.body.startswith("Hello\n")
    add_local(mirror, tid, "Again", public=True, author_email="bob@example.com")
    run(mirror, "a", comments=mapped, options={"comments_as_user": False})
    assert (
        vendor("a").comments(eid_a)[1].body.startswith("bob@example.com via ticketsync:\nAgain")
    ), "a vendor that posts as the API user always gets the attribution line"


def test_a_private_note_is_skipped_where_the_vendor_cannot_keep_it_private(
    mirror: Mirror,
) -> None:
    opts = {"private_comments": False}
    _tid, eid_a, eid_b = paired(mirror)
    vendor("a").comment(eid_a, "Internal: customer is difficult", is_public=False)
    run(mirror, "a")
    run(mirror, "b", options=opts)
    assert vendor("b").comments(eid_b) == []
    assert mirror_comments(mirror) == [("Internal: customer is difficult", False, "a")]
    skips = [e for e in journal(mirror, "b") if e["action"] == "comment_skip"]
    assert len(skips) == 1 and "cannot post private notes" in skips[0]["note"]
    with mirror.read() as s:
        assert comment_store.summary(s, "b")["skipped"] == 1


def test_visibility_public_keeps_notes_out_both_ways(mirror: Mirror) -> None:
    public_only = CommentSettings(direction="both", visibility="public")
    tid, eid_a, eid_b = paired(mirror)
    vendor("a").comment(eid_a, "a note", is_public=False)
    add_local(mirror, tid, "another note", public=False)
    settle(mirror, "a", "b", comments=public_only)
    assert mirror_comments(mirror) == [("another note", False, "local")], "not imported"
    assert vendor("b").comments(eid_b) == [] and len(vendor("a").comments(eid_a)) == 1


def test_pull_only_imports_and_posts_nothing(mirror: Mirror) -> None:
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "local", public=True)
    vendor("a").comment(eid_a, "remote")
    run(mirror, "a", comments=CommentSettings(direction="pull"))
    assert [c.body for c in vendor("a").comments(eid_a)] == ["remote"]
    assert len(mirror_comments(mirror)) == 2
    assert sql(mirror, "SELECT count(*) FROM comment_dirty WHERE connection = 'a'") == [(0,)]


def test_history_false_neither_imports_nor_posts_older_comments(mirror: Mirror) -> None:
    late = datetime(2027, 1, 1, tzinfo=UTC)
    tid, eid_a, eid_b = paired(mirror, comments=CommentSettings(), clock=clock(late))
    vendor("a").comment(eid_a, "old remote")
    add_local(mirror, tid, "old local", public=True)
    settle(mirror, "a", "b", clock=clock(late))
    assert mirror_comments(mirror) == [("old local", True, "local")]
    assert vendor("b").comments(eid_b) == []
    assert [c.body for c in vendor("a").comments(eid_a)] == ["old remote"]


def test_a_comment_dated_to_the_second_comments_were_enabled_is_carried(mirror: Mirror) -> None:
    # vendors date comments to the second (Sirportly, Kapture): found by the system test
    enabled = datetime(2027, 1, 1, 12, 0, 0, 600_000, tzinfo=UTC)
    _tid, eid_a, _ = paired(
        mirror, comments=CommentSettings(direction="both"), clock=clock(enabled)
    )
    a = vendor("a")
    a._clock = enabled.replace(microsecond=0) - timedelta(seconds=1)  # the next tick: 12:00:00
    a.comment(eid_a, "same second")
    run(mirror, "a", comments=CommentSettings(direction="both"), clock=clock(enabled))
    assert ("same second", True, "a") in mirror_comments(mirror)


def test_history_is_decided_to_the_second_on_both_sides() -> None:
    from sync.engine.comment_store import is_history

    enabled = datetime(2027, 1, 1, 12, 0, 0, 600_000, tzinfo=UTC)
    same_second = enabled.replace(microsecond=0)
    assert not is_history(same_second, enabled), "a vendor's second-dated comment is kept"
    assert is_history(same_second - timedelta(microseconds=1), enabled)
    assert not is_history(None, enabled)
    assert is_history(same_second, None)


def test_counters_spare_the_reads_of_unchanged_tickets(mirror: Mirror) -> None:
    _tid, eid_a, _ = paired(mirror)
    a = vendor("a")
    assert not any(c[0] == "list_comments" for c in a.calls), (
        "the run that enables comments without history reads none: all of them are history"
    )
    other = a.seed(title="Other", status="Open", priority="P3")
    a.calls.clear()
    run(mirror, "a")
    listed = [c for c in a.calls if c[0] == "list_comments"]
    assert listed == [("list_comments", other)], "a ticket new to us is read once"
    a.calls.clear()
    run(mirror, "a")
    assert [c for c in a.calls if c[0] == "list_comments"] == []
    a.comment(eid_a, "new")
    a.calls.clear()
    run(mirror, "a")
    assert [c for c in a.calls if c[0] == "list_comments"] == [("list_comments", eid_a)]


def test_edits_and_deletions_at_the_vendor_are_journaled_once_not_applied(
    mirror: Mirror,
) -> None:
    _tid, eid_a, _ = paired(mirror)
    cid = vendor("a").comment(eid_a, "first")
    run(mirror, "a")
    vendor("a").edit_comment(eid_a, cid, "first, edited")
    run(mirror, "a")
    run(mirror, "a")
    vendor("a").delete_comment(eid_a, cid)
    run(mirror, "a")
    run(mirror, "a")
    actions = [e["action"] for e in journal(mirror, "a") if e["action"].startswith("comment")]
    assert actions == ["comment_pull", "comment_edited", "comment_deleted"]
    assert mirror_comments(mirror) == [("first", True, "a")]


def test_the_trigger_fills_the_feed_on_a_plain_insert_except_for_the_origin(
    mirror: Mirror,
) -> None:
    tid, _, _ = paired(mirror)
    cid = add_local(mirror, tid, "x", public=True)
    rows = sql(mirror, "SELECT connection, comment_id FROM comment_dirty ORDER BY 1")
    assert rows == [("a", cid), ("b", cid)]
    with mirror.write(origin="a") as s:
        s.add(comment_store_comment(tid))
    rows = sql(mirror, "SELECT connection FROM comment_dirty WHERE comment_id <> :c", c=cid)
    assert rows == [("b",)]


def comment_store_comment(ticket_id: int) -> Any:
    from sync.db.models import TicketComment

    return TicketComment(ticket_id=ticket_id, body="y", is_public=True, source="a")


def test_a_refused_post_is_retried_and_then_lands(mirror: Mirror) -> None:
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "x", public=True)
    vendor("a").fail("post_comment", ItemError("a: rejected", connection="a"))
    run(mirror, "a")
    with mirror.read() as s:
        assert comment_store.summary(s, "a")["failed"] == 1
    run(mirror, "a")
    assert len(vendor("a").comments(eid_a)) == 1
    with mirror.read() as s:
        assert comment_store.summary(s, "a") == {
            "synced": 1,
            "pending": 0,
            "failed": 0,
            "skipped": 0,
        }


def test_a_lost_reply_is_found_by_its_marker_not_posted_twice(mirror: Mirror) -> None:
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "x", public=True)
    vendor("a").lose_reply("post_comment")
    failed = asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock()).run())
    assert failed.outcome == "failed"
    settle(mirror, "a", "b")
    assert len(vendor("a").comments(eid_a)) == 1
    assert len(mirror_comments(mirror)) == 1


def test_a_lost_reply_where_comments_cannot_be_read_becomes_unknown(mirror: Mirror) -> None:
    opts = {"comments_read": False}
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "x", public=True)
    vendor("a").lose_reply("post_comment")
    failed = asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock(), options=opts).run())
    assert failed.outcome == "failed"
    run(mirror, "a", options=opts)
    run(mirror, "a", options=opts)
    assert len(vendor("a").comments(eid_a)) == 1, "never sent again"
    assert sql(mirror, "SELECT state FROM comment_links WHERE connection = 'a'") == [("unknown",)]


def test_a_lost_reply_is_confirmed_by_the_comment_count_going_up_by_one(mirror: Mirror) -> None:
    # Kapture without read_notes: comments cannot be read back, only counted (§8.5)
    opts = {"comments_read": False, "counts_comments": True}
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "x", public=True)
    vendor("a").lose_reply("post_comment")
    failed = asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock(), options=opts).run())
    assert failed.outcome == "failed"
    ((marker,),) = sql(mirror, "SELECT marker FROM comment_links WHERE connection = 'a'")
    assert marker.endswith("-n0"), "the count before the post rides on the marker"
    run(mirror, "a", options=opts)
    run(mirror, "a", options=opts)
    assert len(vendor("a").comments(eid_a)) == 1, "never sent again"
    ((state, note),) = sql(
        mirror,
        "SELECT l.state, j.note FROM comment_links l, journal j WHERE l.connection = 'a' "
        "AND j.action = 'comment_post' AND j.connection = 'a'",
    )
    assert state == "active" and "confirmed by the comment count (0 -> 1)" in note


def test_a_lost_reply_with_another_comment_meanwhile_becomes_unknown(mirror: Mirror) -> None:
    opts = {"comments_read": False, "counts_comments": True}
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "x", public=True)
    vendor("a").lose_reply("post_comment")
    failed = asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock(), options=opts).run())
    assert failed.outcome == "failed"
    vendor("a").comment(eid_a, "someone else, meanwhile")
    run(mirror, "a", options=opts)
    assert sql(mirror, "SELECT state FROM comment_links WHERE connection = 'a'") == [("unknown",)]
    assert len(vendor("a").comments(eid_a)) == 2, "ours is never sent again"


def test_dry_run_lists_planned_posts_and_the_guard_counts_tickets_once(mirror: Mirror) -> None:
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "one", public=True)
    add_local(mirror, tid, "two", public=False)
    lines: list[str] = []
    run(mirror, "a", dry_run=True, report=lines.append)
    posts = [line for line in lines if ": post (" in line]
    assert len(posts) == 2 and posts[1].endswith("post (private)")
    assert lines[-1] == "a: 1 planned change(s)", "two comments on one ticket count once"
    assert vendor("a").comments(eid_a) == []


def test_status_and_metrics_show_synced_pending_failed_and_skipped(mirror: Mirror) -> None:
    from sync import status
    from sync.config import parse_config
    from sync.daemon.metrics import Metrics

    tid, _, _ = paired(mirror)
    add_local(mirror, tid, "public", public=True)
    add_local(mirror, tid, "private", public=False)
    results = [run(mirror, "a"), run(mirror, "b", options={"private_comments": False})]
    add_local(mirror, tid, "waiting", public=True)
    connections = {
        n: {
            "vendor": "memory",
            "base_url": "http://127.0.0.1:9",
            "comments": {"direction": "both"},
            "options": {"private_comments": n == "a"},
        }
        for n in ("a", "b")
    }
    shown = status.collect(parse_config({"connections": connections}), mirror)
    b = shown["connections"]["b"]["comments"]
    assert b["direction"] == "both" and b["can_post_private"] is False
    assert {k: b[k] for k in ("synced", "pending", "failed", "skipped")} == {
        "synced": 1,
        "pending": 1,
        "failed": 0,
        "skipped": 1,
    }
    assert shown["schema"] == 1
    text = status.render(shown)
    assert "comments:        both (both): synced 1, pending 1, failed 0, skipped 1" in text
    assert "private notes are not posted here" in text
    metrics = Metrics()
    for result in results:
        metrics.observe_run(result)
    sample = metrics.registry.get_sample_value
    assert sample("ticketsync_comments_total", {"connection": "a", "action": "posted"}) == 2
    assert sample("ticketsync_comments_total", {"connection": "b", "action": "skipped"}) == 1
    assert sample("ticketsync_comment_states", {"connection": "b", "state": "synced"}) == 1


def test_an_untrusted_reply_to_a_private_post_stops_private_posts(mirror: Mirror) -> None:
    from sync import status
    from sync.config import parse_config

    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "note 1", public=False)
    vendor("a").garble("post_comment")
    failed = asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock()).run())
    assert failed.outcome == "failed"
    add_local(mirror, tid, "note 2", public=False)
    add_local(mirror, tid, "reply", public=True)
    run(mirror, "a")
    assert [(c.body.split("\n")[1], c.is_public) for c in vendor("a").comments(eid_a)] == [
        ("reply", True)
    ]
    states = sql(mirror, "SELECT state FROM comment_links WHERE connection = 'a' ORDER BY id")
    assert states == [("skipped",), ("skipped",), ("active",)]
    connections = {"a": {"vendor": "memory", "base_url": "http://127.0.0.1:9"}}
    shown = status.collect(parse_config({"connections": connections}), mirror)
    assert "could not trust" in shown["connections"]["a"]["comments"]["private_stopped"]


def test_a_comment_insert_wakes_the_daemon_probe(mirror: Mirror) -> None:
    from sync.daemon.wake import DirtyProbe

    tid, _, _ = paired(mirror)
    woken: list[str] = []
    probe = DirtyProbe(mirror, woken.append)
    assert probe.probe() == []
    add_local(mirror, tid, "x", public=True)
    assert sorted(probe.probe()) == ["a", "b"]
    assert probe.probe() == [], "an idle feed wakes nobody"


def test_a_failed_read_of_comments_is_done_by_a_later_run(mirror: Mirror) -> None:
    from sync.errors import Retriable

    _, eid_a, _ = paired(mirror)
    a = vendor("a")
    a.comment(eid_a, "hello")
    a.fail("list_comments", Retriable("a: down", connection="a"))
    failed = asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock()).run())
    assert failed.outcome == "failed"
    due = sql(mirror, "SELECT due FROM comment_counters WHERE connection = 'a'")
    assert [bool(d) for (d,) in due] == [True], "recorded with the page, before the read"
    a.calls.clear()
    asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock(), direction="push").run())
    assert ("list_comments", eid_a) in a.calls, "read without the pull seeing it again"
    assert not any(c[0] == "changed_since" for c in a.calls)
    assert mirror_comments(mirror) == [("hello", True, "a")]


def test_history_true_imports_what_the_vendor_already_holds(mirror: Mirror) -> None:
    a = vendor("a")
    first = a.seed(title="One", status="Open", priority="P3")
    a.comment(first, "from before", is_public=False)
    history = CommentSettings(direction="both", history=True)
    run(mirror, "a", comments=history, clock=clock(datetime(2027, 1, 1, tzinfo=UTC)))
    assert mirror_comments(mirror) == [("from before", False, "a")]


def test_the_guard_counts_a_ticket_with_field_and_comment_changes_once(mirror: Mirror) -> None:
    from tests.unit.engine_helpers import update_ticket

    tid, _, _ = paired(mirror)
    update_ticket(mirror, tid, status="closed")
    add_local(mirror, tid, "closing it", public=True)
    lines: list[str] = []
    run(mirror, "a", dry_run=True, report=lines.append)
    assert any("(push)" in line for line in lines) and any(": post (" in line for line in lines)
    assert lines[-1] == "a: 1 planned change(s)"


def test_a_garbled_comment_list_is_one_tickets_error_not_the_runs(mirror: Mirror) -> None:
    _, eid_a, _ = paired(mirror)
    vendor("a").comment(eid_a, "hello")
    vendor("a").garble("list_comments")
    result = run(mirror, "a")
    assert result.counts.errors == 1 and mirror_comments(mirror) == []
    run(mirror, "a")
    assert mirror_comments(mirror) == [("hello", True, "a")], "read again, since still due"


def test_a_hundred_new_comments_cost_one_post_each_and_a_read_per_ticket(
    mirror: Mirror,
) -> None:
    a = vendor("a")
    ids = [a.seed(title=f"T{i}", status="Open", priority="P3") for i in range(10)]
    run(mirror, "a")
    tickets = [r[0] for r in sql(mirror, "SELECT id FROM tickets ORDER BY id")]
    for n in range(100):
        add_local(mirror, tickets[n % 10], f"comment {n}", public=True)
    a.calls.clear()
    run(mirror, "a")
    assert [c[0] for c in a.calls].count("post_comment") == 100
    a.calls.clear()
    run(mirror, "a")  # our posts moved the counters: each ticket is read once more
    assert sorted(c[1] for c in a.calls if c[0] == "list_comments") == sorted(ids)
    assert not any(c[0] == "post_comment" for c in a.calls)
    a.calls.clear()
    run(mirror, "a")
    assert not any(c[0] in ("list_comments", "post_comment") for c in a.calls), "idle"
    assert len(mirror_comments(mirror)) == 100
