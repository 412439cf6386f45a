"""Crash tests: the real CLI killed with SIGKILL at each named point, then run again.

After every kill the next runs must converge: no lost edit, no duplicate ticket at the
vendor, no link to the wrong ticket, and a quiet run that writes nothing (design §3.3).
The vendor lives in its own process, so only ticketsync dies.
"""

from __future__ import annotations

import collections
import signal

import pytest

from sync.engine.crash import POINTS
from tests.system.harness import PLUGINS, Setup


@pytest.fixture(params=sorted(PLUGINS))
def setup(request, tmp_path):
    s = Setup(PLUGINS[request.param], tmp_path)
    yield s
    s.stop()


def _prepare(setup: Setup) -> dict[int, str]:
    """An imported mirror, then pending work of every kind: local edits, a remote edit on
    two tickets (one pull page of two), and a local insert to create."""
    plugin = setup.plugin
    setup.vendor.seed(*(plugin.remote_ticket(i) for i in range(4)))
    assert setup.run().returncode == 0
    links = dict(setup.sql("SELECT ticket_id, external_id FROM ticket_links"))
    remote = {t[plugin.id_key]: t for t in setup.vendor.tickets()}
    setup.sql("UPDATE tickets SET status = 'closed' WHERE id = 1")
    setup.sql("UPDATE tickets SET status = 'pending' WHERE id = 2")
    for tid in (3, 4):
        setup.vendor.seed({plugin.id_key: links[tid], **plugin.remote_edit(remote[links[tid]])})
    setup.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Local billing question', 'open', 'normal', 'billing', 'l@example.com')"
    )
    return links


def _assert_converged(setup: Setup) -> None:
    plugin = setup.plugin
    remote = {t[plugin.id_key]: t for t in setup.vendor.tickets()}
    markers = collections.Counter(plugin.marker_of(t) for t in remote.values())
    markers.pop(None, None)
    assert all(n == 1 for n in markers.values()), f"duplicate creates: {markers}"
    assert len(remote) == 5, "four seeded tickets and one created"
    links = setup.sql("SELECT ticket_id, external_id, state FROM ticket_links")
    assert len(links) == 5 and all(state == "active" for *_, state in links)
    assert len({e for _, e, _ in links}) == 5 and len({t for t, _, _ in links}) == 5
    for ticket_id, external_id, _ in links:
        ((status,),) = setup.sql("SELECT status FROM tickets WHERE id = ?", ticket_id)
        assert plugin.status_of(remote[external_id]) == status, (ticket_id, external_id)
    assert setup.sql("SELECT status FROM tickets WHERE id IN (1, 2) ORDER BY id") == [
        ("closed",),
        ("pending",),
    ], "the local edits survived"
    assert setup.sql("SELECT priority FROM tickets WHERE id IN (3, 4)") == [("high",)] * 2
    writes = setup.vendor_writes()
    quiet = setup.run()
    assert quiet.returncode == 0, quiet.stderr
    assert setup.vendor_writes() == writes, "a converged mirror makes no further write"


@pytest.mark.parametrize("point", POINTS)
def test_killed_run_converges(setup, point):
    _prepare(setup)
    killed = setup.run(env={"TICKETSYNC_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr)
    for _ in range(2):  # the rerun, and one more to settle what the rerun pushed
        rerun = setup.run()
        assert rerun.returncode == 0, rerun.stderr
    _assert_converged(setup)


def test_killed_twice_in_a_row_still_converges(setup):
    _prepare(setup)
    for point in ("after_vendor_ack", "after_create_intent"):
        killed = setup.run(env={"TICKETSYNC_CRASH_AT": point})
        assert killed.returncode == -signal.SIGKILL
    assert setup.run().returncode == 0
    assert setup.run().returncode == 0
    _assert_converged(setup)
