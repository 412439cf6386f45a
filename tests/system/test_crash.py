"""Crash tests: the real CLI killed with SIGKILL at each named point, then run again.

After every kill the next runs must converge: no lost edit, no duplicate ticket at the
vendor, no link to the wrong ticket, and a quiet run that writes nothing (docs/architecture.md
§3.3).
The vendor lives in its own process, so only ticketsync dies.
"""

from __future__ import annotations

import signal

import pytest

from sync.engine.crash import POINTS
from tests.system.harness import PLUGINS, Setup, assert_converged, prepare_pending, sqlite_only


@pytest.fixture(params=sorted(PLUGINS))
def setup(request, tmp_path, db_url):
    # A lost create is sent again after two looks a lookback apart (docs/architecture.md
    # §8.4): with no lookback, the two reruns after a kill are those two looks.
    s = Setup(PLUGINS[request.param], tmp_path, db_url=db_url, sync={"lookback_seconds": 0})
    yield s
    s.stop()


@pytest.mark.parametrize("point", POINTS)
def test_killed_run_converges(setup, point):
    prepare_pending(setup)
    killed = setup.run(env={"TICKETSYNC_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr)
    for _ in range(2):  # the rerun, and one more to settle what the rerun pushed
        rerun = setup.rerun()
        assert rerun.returncode == 0, rerun.stderr
    assert_converged(setup)


def test_killed_twice_in_a_row_still_converges(setup):
    sqlite_only(setup)
    prepare_pending(setup)
    for point in ("after_vendor_ack", "after_plan"):
        killed = setup.rerun(env={"TICKETSYNC_CRASH_AT": point})
        assert killed.returncode == -signal.SIGKILL
    assert setup.rerun().returncode == 0
    assert setup.run().returncode == 0
    assert_converged(setup)


def test_killed_between_the_create_reply_and_our_commit(setup):
    """Only a create is pending, so the first acknowledgement is the vendor's create reply."""
    sqlite_only(setup)
    plugin = setup.plugin
    setup.vendor.seed(plugin.remote_ticket(0))
    assert setup.run().returncode == 0
    setup.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Only a create', 'open', 'normal', 'billing', 'c@example.com')"
    )
    killed = setup.run(env={"TICKETSYNC_CRASH_AT": "after_vendor_ack"})
    assert killed.returncode == -signal.SIGKILL
    assert setup.sql("SELECT state FROM ticket_links WHERE ticket_id = 2") == [("creating",)]
    assert len(setup.vendor.tickets()) == 2, "the vendor has the ticket; we have no reply"
    assert setup.rerun().returncode == 0
    assert len(setup.vendor.tickets()) == 2, "found by its marker, not created again"
    ((state, external_id),) = setup.sql(
        "SELECT state, external_id FROM ticket_links WHERE ticket_id = 2"
    )
    assert state == "active" and external_id
