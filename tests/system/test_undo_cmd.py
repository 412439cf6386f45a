"""``ticketsync undo`` as a real process against an emulator in its own process
(docs/architecture.md §8.7): killed with SIGKILL mid-undo it converges on the next run;
its dry run writes nothing; its mistakes exit 2; a held lock leaves the request queued.

``undone`` imports three Zoho tickets, then one run (the one undone) pushes a local
status edit of ticket 1 and pulls a vendor priority edit of ticket 2.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from sync.coord.locks import InstanceLock
from sync.engine.crash import UNDO_POINTS
from tests.system.conftest import run_cli
from tests.system.harness import PLUGINS, Setup, sqlite_only


@pytest.fixture
def setup(tmp_path, db_url):
    s = Setup(PLUGINS["zoho_desk"], tmp_path, db_url=db_url)
    yield s
    s.stop()


def undone(setup: Setup) -> tuple[int, dict[int, str]]:
    """Import, then the run to undo; its id and the links (ticket id -> vendor id)."""
    plugin = setup.plugin
    setup.vendor.seed(*(plugin.remote_ticket(i) for i in range(3)))
    assert setup.run().returncode == 0
    links = dict(setup.sql("SELECT ticket_id, external_id FROM ticket_links"))
    setup.sql("UPDATE tickets SET status = 'closed' WHERE id = 1")
    setup.vendor.seed({"id": links[2], "priority": "High"})
    assert setup.run().returncode == 0
    ((run_id,),) = setup.sql("SELECT max(id) FROM runs")
    return run_id, links


def undo(setup: Setup, *args: str, env: dict[str, str] | None = None):
    return run_cli("--config", str(setup.config), "undo", *args, env=env)


def vendor_ticket(setup: Setup, external_id: str) -> dict:
    return next(t for t in setup.vendor.tickets() if t["id"] == external_id)


@pytest.mark.parametrize("point", UNDO_POINTS)
def test_a_killed_undo_converges_on_the_next_run(setup, point):
    if point == "undo_before_send":
        sqlite_only(setup)  # the same database work as after the ack; CI time
    run_id, links = undone(setup)
    killed = undo(setup, str(run_id), env={"TICKETSYNC_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    for _ in range(2):  # the rerun carries the request out; one more settles its pushes
        rerun = setup.rerun()
        assert rerun.returncode == 0, rerun.stderr
    assert vendor_ticket(setup, links[1])["status"] == "Open", "the push undone at the vendor"
    assert setup.sql("SELECT status FROM tickets WHERE id = 1") == [("closed",)]
    assert setup.sql("SELECT priority FROM tickets WHERE id = 2") == [("normal",)]
    assert vendor_ticket(setup, links[2])["priority"] == "Medium", "the pull undone everywhere"
    ((state, result),) = setup.sql("SELECT state, result FROM undo_requests")
    assert state == "done", result
    assert setup.sql("SELECT count(*) FROM conflicts") == [(0,)]
    requests = setup.status()["undo_requests"]
    assert [(r["run_id"], r["state"]) for r in requests] == [(run_id, "done")]
    writes = setup.vendor_writes()
    assert setup.run().returncode == 0
    assert setup.vendor_writes() == writes, "converged: a further run writes nothing"


def test_undo_dry_run_writes_nothing_and_undo_then_carries_it_out(setup):
    sqlite_only(setup)
    run_id, links = undone(setup)
    tables = ("tickets", "ticket_links", "journal", "runs", "undo_requests")
    before = {t: setup.sql(f"SELECT * FROM {t} ORDER BY 1") for t in tables}
    writes = setup.vendor_writes()
    dry = undo(setup, str(run_id), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "status: 'Closed' -> 'Open'  (at v only)" in dry.stdout
    assert "priority: 'high' -> 'normal'  (mirror edit" in dry.stdout
    assert {t: setup.sql(f"SELECT * FROM {t} ORDER BY 1") for t in tables} == before
    assert setup.vendor_writes() == writes
    done = undo(setup, str(run_id))
    assert done.returncode == 0, done.stderr
    assert "undo request #1: done by run #" in done.stdout
    assert vendor_ticket(setup, links[1])["status"] == "Open"


def test_undo_mistakes_exit_2(setup):
    sqlite_only(setup)
    run_id, _ = undone(setup)
    missing = undo(setup, "999")
    assert missing.returncode == 2 and "run #999 does not exist" in missing.stderr
    other = undo(setup, str(run_id), "--connection", "w")
    assert other.returncode == 2 and f"run #{run_id} is a run of v, not of w" in other.stderr
    assert setup.sql("SELECT count(*) FROM undo_requests") == [(0,)]


def test_a_held_lock_leaves_the_request_for_the_holder(setup):
    sqlite_only(setup)
    run_id, links = undone(setup)
    with InstanceLock(Path(str(setup.engine.url.database)), "daemon"):
        queued = undo(setup, str(run_id))
    assert queued.returncode == 0, queued.stderr
    assert "its next pass carries out request #1" in queued.stdout
    assert setup.sql("SELECT state FROM undo_requests") == [("pending",)]
    assert setup.run().returncode == 0
    assert setup.sql("SELECT state FROM undo_requests") == [("done",)]
    assert vendor_ticket(setup, links[1])["status"] == "Open"
    status = json.loads(run_cli("--config", str(setup.config), "status", "--json").stdout)
    assert status["connections"]["v"]["undo_requests"][0]["state"] == "done"
