"""``ticketsync --run-once`` against each vendor's emulator, as a subprocess (docs/architecture.md
§4).

Initial import, push of local edits, pull of remote edits, create from a local INSERT,
and a further run that writes nothing, on a real database file.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.system.conftest import run_cli
from tests.system.harness import PLUGINS, Setup, sqlite_only


@pytest.fixture(params=sorted(PLUGINS))
def setup(request, tmp_path, db_url):
    s = Setup(PLUGINS[request.param], tmp_path, db_url=db_url)
    yield s
    s.stop()


def _mirror_state(setup: Setup) -> list[tuple]:
    """Tickets, links and bases; a base field still ``unseen`` (a value the vendor chose at
    create time and has not shown yet, e.g. ProProfs' status) counts as its value: the
    next read settles it without a write (docs/architecture.md §8.4)."""
    rows = setup.sql(
        "SELECT t.id, t.title, t.status, t.priority, t.queue, l.external_id, l.state, l.base "
        "FROM tickets t LEFT JOIN ticket_links l ON l.ticket_id = t.id ORDER BY t.id"
    )
    return [(*row[:-1], _settled(row[-1])) for row in rows]


def _settled(base: str | dict | None) -> dict | None:
    data = json.loads(base) if isinstance(base, str) else base
    if not isinstance(data, dict):
        return data
    return {k: {n: v for n, v in f.items() if n != "unseen"} for k, f in data.items()}


def test_full_cycle(setup):
    plugin = setup.plugin
    setup.vendor.seed(*(plugin.remote_ticket(i) for i in range(3)))

    first = setup.run()
    assert first.returncode == 0, first.stderr
    rows = setup.sql("SELECT id, status FROM tickets ORDER BY id")
    assert [status for _, status in rows] == ["open"] * 3

    remote = {t[plugin.id_key]: t for t in setup.vendor.tickets()}
    links = dict(setup.sql("SELECT ticket_id, external_id FROM ticket_links"))
    column, (value, _) = plugin.local_field, plugin.local_values
    setup.sql(f"UPDATE tickets SET {column} = ? WHERE id = 1", value)
    setup.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Local billing question', 'open', 'normal', 'billing', 'l@example.com')"
    )
    target = links[2]
    setup.vendor.seed({plugin.id_key: target, **plugin.remote_edit(remote[target])})

    second = setup.run()
    assert second.returncode == 0, second.stderr
    remote = {t[plugin.id_key]: t for t in setup.vendor.tickets()}
    assert plugin.local_of(remote[links[1]]) == value
    assert setup.sql("SELECT priority FROM tickets WHERE id = 2") == [("high",)]
    created = setup.sql("SELECT external_id, state FROM ticket_links WHERE ticket_id = 4")
    assert created and created[0][1] == "active"
    assert plugin.marker_of(remote[created[0][0]])
    assert len(remote) == 4

    writes, state = setup.vendor_writes(), _mirror_state(setup)
    journal = setup.sql("SELECT count(*) FROM journal")
    third = setup.run()
    assert third.returncode == 0, third.stderr
    assert setup.vendor_writes() == writes, "a quiet run sends no write"
    assert _mirror_state(setup) == state
    assert setup.sql("SELECT count(*) FROM journal") == journal
    deviations = setup.vendor.call("GET", "/_sandbox/log")["deviations"]
    assert deviations == []


def test_one_vendor_down_fails_only_its_connection(setup):
    sqlite_only(setup)
    data = yaml.safe_load(setup.config.read_text())
    down = dict(data["connections"]["v"], base_url="http://127.0.0.1:9")
    down["http"] = {**down.get("http", {}), "backoff_cap": 0.02, "max_attempts": 2}
    if "accounts_url" in down.get("credentials", {}):
        down["credentials"] = dict(down["credentials"], accounts_url="http://127.0.0.1:9")
    data["connections"]["down"] = down
    setup.config.write_text(yaml.safe_dump(data))
    setup.vendor.seed(setup.plugin.remote_ticket(0))

    result = setup.run()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    report = json.loads(run_cli("--config", str(setup.config), "status", "--json").stdout)
    assert report["connections"]["v"]["last_run"]["outcome"] == "ok"
    assert report["connections"]["v"]["last_run"]["pulled"] == 1
    assert report["connections"]["down"]["last_run"]["outcome"] == "failed"
    assert report["connections"]["down"]["consecutive_failures"] == 1
    only_good = setup.run("--connection", "v")
    assert only_good.returncode == 0
