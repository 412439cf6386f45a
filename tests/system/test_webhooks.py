"""Zoho Desk webhooks end to end (issue 23, item 2): with a 300 s interval, an edit made
in Zoho reaches the mirror within seconds through the daemon's webhook listener, on
SQLite and PostgreSQL; `webhooks register`, `check` and `unregister` against the emulator.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.system.conftest import run_cli
from tests.system.harness import PLUGINS, Setup
from tests.system.test_daemon import _free_port, _start, _wait

#: CI's loose bound on Zoho edit -> mirror (docs/architecture.md §8.6).
LATENCY_BOUND_S = 5.0
SECRET = "system-test-webhook-secret-0123456789"


@pytest.fixture
def setup(tmp_path, db_url) -> Iterator[Setup]:
    s = Setup(PLUGINS["zoho_desk"], tmp_path, db_url=db_url)
    yield s
    s.stop()


def _finished_runs(setup: Setup) -> int:
    return setup.sql("SELECT count(*) FROM runs WHERE outcome <> 'running'")[0][0]


def test_a_zoho_edit_reaches_the_mirror_through_a_webhook(setup: Setup) -> None:
    port = _free_port()
    data = yaml.safe_load(setup.config.read_text())
    data["sync"]["interval"] = 300
    data["service"] = {"webhook_listen": f"127.0.0.1:{port}"}
    data["connections"]["v"]["credentials"]["webhook_secret"] = SECRET
    setup.config.write_text(yaml.safe_dump(data))
    (ticket,) = setup.vendor.seed(PLUGINS["zoho_desk"].remote_ticket(0))
    assert setup.run().returncode == 0
    cli = ("--config", str(setup.config))

    proc = _start(setup.config)
    try:
        assert _wait(lambda: _finished_runs(setup) > 1), proc.stderr
        registered = run_cli(*cli, "webhooks", "register", "v", "--url", f"http://127.0.0.1:{port}")
        assert registered.returncode == 0, registered.stderr
        assert "/webhooks/v/***" in registered.stdout
        check = run_cli(*cli, "check")
        assert "webhook" in check.stdout and "Ticket_Update" in check.stdout, check.stdout
        before = _finished_runs(setup)

        started = time.monotonic()
        setup.vendor.call("POST", "/_sandbox/tickets", {"id": ticket["id"], "subject": "in Zoho"})
        assert _wait(lambda: setup.sql("SELECT title FROM tickets")[0][0] == "in Zoho", 60)
        elapsed = time.monotonic() - started
        assert elapsed <= LATENCY_BOUND_S, f"{elapsed:.1f} s with a 300 s interval"
        assert _wait(lambda: _finished_runs(setup) > before, 30)

        removed = run_cli(*cli, "webhooks", "unregister", "v")
        assert removed.returncode == 0 and "deleted 1" in removed.stdout, removed.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    for output in (stderr, registered.stdout, registered.stderr, check.stdout, removed.stdout):
        assert SECRET not in output
    assert proc.returncode == 0, stderr
