"""Conversations end to end: ``ticketsync --run-once`` with a connection to each of the
Zoho Desk, Sirportly, Kapture and ProProfs emulators on one mirror (docs/architecture.md
§8.5).

One scenario, four subprocess runs: a create everywhere and an import, then comments
added at Zoho Desk, at Sirportly, at ProProfs and inserted into the mirror; two runs carry
them everywhere they may go, and a last run proves there is no echo and no duplicate.
"""

from __future__ import annotations

import collections

import pytest

from tests.system.harness import MultiSetup

ZOHO_BILLING = "1892000000082069"


@pytest.fixture
def multi(tmp_path, db_url):
    # Sirportly posts a mapped author as that user (comments_as_user), others as
    # options.comment_user with the attribution line
    authors = {"comments": {"direction": "both", "authors": {"alice@example.com": "erin"}}}
    setup = MultiSetup(tmp_path, db_url=db_url, extra={"sirp": authors})
    yield setup
    setup.stop()


def _ok(setup: MultiSetup) -> None:
    result = setup.run()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def _texts(comments: list[dict], key: str) -> list[str]:
    return [str(c.get(key) or "") for c in comments]


def _count(texts: list[str], needle: str) -> int:
    return sum(needle in t for t in texts)


def _vendor_state(setup: MultiSetup) -> dict[str, list]:
    return {
        name: [setup.comments(name, ext) for _, ext in sorted(setup.links(1).items())]
        for name in ("zoho", "sirp", "kap")
    }


def test_comments_travel_between_every_vendor_and_the_mirror(multi):
    zoho, pp = multi.vendors["zoho"], multi.vendors["pp"]
    multi.migrate()
    multi.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Invoice twice', 'open', 'normal', 'billing', 'c@example.com')"
    )
    (p,) = pp.seed({"subject": "PP question", "status": "Open", "priority": "normal"})
    _ok(multi)  # ticket 1 is created at Zoho Desk, Sirportly and Kapture; ProProfs' imported
    links = multi.links(1)
    assert set(links) == {"zoho", "sirp", "kap"}, links
    z = {"id": links["zoho"]}

    # a comment and a private note at Zoho Desk (the priority edit makes the pull see the
    # ticket: that a comment moves modifiedTime is unconfirmed, §8.5's sweep covers it)
    multi.add_comment("zoho", z["id"], content="<p>Public from Zoho</p>", isPublic=True)
    multi.add_comment("zoho", z["id"], content="Internal from Zoho", isPublic=False)
    zoho.seed({"id": z["id"], "priority": "High"})
    multi.add_comment("sirp", links["sirp"], message="Public from Sirportly", user="dana")
    multi.add_comment("pp", p["ticket_id"], message="Message from ProProfs")
    multi.sql(
        "INSERT INTO ticket_comments (ticket_id, body, author_name, author_email, is_public) "
        "VALUES (1, 'Public from the mirror', 'Alice', 'alice@example.com', ?)",
        True,
    )
    multi.sql(
        "INSERT INTO ticket_comments (ticket_id, body, author_name, author_email, is_public) "
        "VALUES (1, 'Private from the mirror', 'Alice', 'alice@example.com', ?)",
        False,
    )
    _ok(multi)
    _ok(multi)  # a comment pulled by one connection is posted by the others next run

    mirror = multi.sql("SELECT ticket_id, source, is_public, body FROM ticket_comments")
    bodies = collections.Counter(body for *_, body in mirror)
    assert all(n == 1 for n in bodies.values()), f"a comment came back: {bodies}"
    by_body = {body: (tid, source, bool(public)) for tid, source, public, body in mirror}
    assert by_body["Public from Zoho"] == (1, "zoho", True)
    assert by_body["Internal from Zoho"] == (1, "zoho", False)
    assert by_body["Public from Sirportly"] == (1, "sirp", True)
    assert by_body["Message from ProProfs"][1:] == ("pp", False)  # §8.5: stored as not public
    assert len(mirror) == 6

    travelled = ("Public from Zoho", "Public from Sirportly", "Public from the mirror")
    private = ("Internal from Zoho", "Private from the mirror")
    at_zoho = multi.comments("zoho", links["zoho"])
    at_sirp = multi.comments("sirp", links["sirp"])
    at_kap = multi.comments("kap", links["kap"])
    zoho_public = {c["content"]: c["isPublic"] for c in at_zoho}
    for needle in travelled:
        assert _count(_texts(at_zoho, "content"), needle) == 1, (needle, at_zoho)
        assert _count(_texts(at_sirp, "message"), needle) == 1, (needle, at_sirp)
        assert _count(_texts(at_kap, "detail"), needle) == 1, (needle, at_kap)
    for needle in private:
        assert _count(_texts(at_zoho, "content"), needle) == 1
        assert _count(_texts(at_sirp, "message"), needle) == 1
        assert _count(_texts(at_kap, "detail"), needle) == 0, "Kapture gets public only"
    # visibility as the vendors store it: private stays private, public stays public
    for content, public in zoho_public.items():
        assert public == ("Public" in content), content
    for update in at_sirp:
        if any(n in update["message"] for n in travelled + private):
            assert update["private"] == any(n in update["message"] for n in private)
    # the mirror's insert is attributed where the vendor posts as the API user
    assert any("Alice via ticketsync:" in c["detail"] for c in at_kap)
    by_message = {u["message"].split("\n\n[ticketsync:")[0]: u for u in at_sirp}
    alice = by_message["Public from the mirror"]
    assert alice["author"]["username"] == "erin", "posted as the mapped user, unprefixed"
    zoho_reply = next(u for m, u in by_message.items() if "Public from Zoho" in m)
    assert zoho_reply["author"]["username"] == "charlie"
    assert zoho_reply["message"].startswith("George Vincent via zoho:")
    assert not any("Message from ProProfs" in t for t in _texts(at_zoho, "content"))

    state = _vendor_state(multi)
    links_before = multi.sql("SELECT count(*) FROM comment_links")
    _ok(multi)
    assert _vendor_state(multi) == state, "a quiet run posts nothing"
    assert multi.sql("SELECT count(*) FROM ticket_comments") == [(6,)]
    assert multi.sql("SELECT count(*) FROM comment_links") == links_before
    stuck = multi.sql("SELECT connection, state, error FROM comment_links WHERE state = 'posting'")
    assert stuck == []
