"""A ``--run-once`` posting a comment to the Zoho Desk emulator, killed with SIGKILL
between the post intent and the post, or between the vendor's reply and our commit; the
next run converges with exactly one copy of the comment at the vendor
(docs/architecture.md §8.5, §3.3). The vendor lives in its own process."""

from __future__ import annotations

import signal

import pytest

from tests.system.harness import PLUGINS, Setup, migrate_mirror

MARKER_BODY = "Please refund the second charge"


@pytest.fixture
def setup(tmp_path, db_url):
    # history: the comment is inserted before the first run, the one that enables comments
    comments = {"comments": {"direction": "both", "history": True}}
    s = Setup(PLUGINS["zoho_desk"], tmp_path, connection=comments, db_url=db_url)
    yield s
    s.stop()


@pytest.mark.parametrize("point", ["after_comment_ack", "after_comment_intent"])
def test_killed_comment_post_converges_to_one_copy(setup, point):
    if point == "after_comment_intent" and setup.engine.dialect.name != "sqlite":
        pytest.skip("one kill point runs on PostgreSQL too (CI time); this one on SQLite")
    migrate_mirror(setup.url)
    setup.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Charged twice', 'open', 'normal', 'billing', 'c@example.com')"
    )
    setup.sql(
        "INSERT INTO ticket_comments (ticket_id, body, author_name, is_public) "
        f"VALUES (1, '{MARKER_BODY}', 'Alice', ?)",
        True,
    )
    killed = setup.run(env={"TICKETSYNC_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    ((external_id,),) = setup.sql("SELECT external_id FROM ticket_links WHERE ticket_id = 1")
    assert setup.sql("SELECT state FROM comment_links") == [("posting",)]
    landed = 1 if point == "after_comment_ack" else 0
    assert len(_ours(setup, external_id)) == landed

    rerun = setup.rerun()
    assert rerun.returncode == 0, rerun.stderr
    (posted,) = _ours(setup, external_id)
    assert posted["isPublic"] is True
    ((state, linked),) = setup.sql("SELECT state, external_id FROM comment_links")
    assert (state, linked) == ("active", posted["id"])

    quiet = setup.run()
    assert quiet.returncode == 0, quiet.stderr
    assert len(_ours(setup, external_id)) == 1, "never posted twice"
    assert setup.sql("SELECT count(*) FROM ticket_comments") == [(1,)], "no echo"


def _ours(setup: Setup, external_id: str) -> list[dict]:
    stored = setup.vendor.call("GET", f"/_sandbox/comments?ticket={external_id}")["comments"]
    return [c for c in stored if MARKER_BODY in c["content"]]
