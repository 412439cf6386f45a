"""Wake-ups in the daemon (issue 23, item 1): with a 300 s interval, a local edit reaches
the vendor within seconds, on SQLite and PostgreSQL, and a burst of edits is one or two
push-only runs, each ticket pushed once.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.system.harness import PLUGINS, Setup
from tests.system.test_daemon import _start, _wait

#: CI's loose bound on local edit -> vendor (docs/architecture.md §8.6).
LATENCY_BOUND_S = 5.0


@pytest.fixture
def setup(tmp_path, db_url) -> Iterator[Setup]:
    s = Setup(PLUGINS["zoho_desk"], tmp_path, db_url=db_url)
    yield s
    s.stop()


def _finished_runs(setup: Setup) -> int:
    return setup.sql("SELECT count(*) FROM runs WHERE outcome <> 'running'")[0][0]


@pytest.fixture
def daemon(setup: Setup) -> Iterator[subprocess.Popen[str]]:
    """The daemon at a 300 s interval, once its first (scheduled) run is over."""
    data = yaml.safe_load(setup.config.read_text())
    data["sync"]["interval"] = 300
    setup.config.write_text(yaml.safe_dump(data))
    before = _finished_runs(setup)
    proc = _start(setup.config)
    try:
        assert _wait(lambda: _finished_runs(setup) > before), proc.stderr
        time.sleep(1.5)  # past the probe's first look, which only sets its marks
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def _import(setup: Setup, count: int) -> None:
    plugin = PLUGINS["zoho_desk"]
    setup.vendor.seed(*(plugin.remote_ticket(i) for i in range(count)))
    assert setup.run().returncode == 0
    assert setup.sql("SELECT count(*) FROM ticket_links")[0][0] == count


@pytest.fixture
def one(setup: Setup) -> None:
    _import(setup, 1)


@pytest.fixture
def many(setup: Setup) -> None:
    _import(setup, 200)


def _woken_runs(setup: Setup, after: int) -> list[tuple[int, str | None]]:
    return setup.sql("SELECT pulled, kind FROM runs WHERE id > ? ORDER BY id", after)


def _last_run(setup: Setup) -> int:
    return setup.sql("SELECT coalesce(max(id), 0) FROM runs")[0][0]


@pytest.mark.usefixtures("one")
def test_a_local_edit_reaches_the_vendor_within_seconds(setup: Setup, daemon) -> None:
    last = _last_run(setup)
    writes = setup.vendor_writes()
    started = time.monotonic()
    setup.sql("UPDATE tickets SET title = 'edited here' WHERE id = 1")
    assert _wait(lambda: setup.vendor_writes() > writes, timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed <= LATENCY_BOUND_S, f"{elapsed:.1f} s with a 300 s interval"
    assert [t["subject"] for t in setup.vendor.tickets()] == ["edited here"]
    assert _wait(lambda: not setup.sql("SELECT 1 FROM runs WHERE outcome = 'running'"), 30)
    runs = _woken_runs(setup, last)
    assert runs[0] == (0, "woken"), "a woken run pulls nothing"


@pytest.mark.usefixtures("many")
def test_a_burst_of_200_edits_is_one_or_two_runs(setup: Setup, daemon) -> None:
    last = _last_run(setup)
    writes = setup.vendor_writes()
    with setup.engine.connect() as conn:
        for ticket_id in range(1, 201):  # 200 commits, as 200 separate writers would
            with conn.begin():
                conn.exec_driver_sql(
                    f"UPDATE tickets SET title = 'burst {ticket_id}' WHERE id = {ticket_id}"
                )
    assert _wait(lambda: setup.vendor_writes() - writes == 200, timeout=120)
    assert _wait(lambda: setup.sql("SELECT count(*) FROM ticket_dirty")[0][0] == 0, timeout=30)
    time.sleep(2.5)  # time for any further wake-up to show
    runs = _woken_runs(setup, last)
    assert 1 <= len(runs) <= 2, runs
    assert all(kind == "woken" for _, kind in runs), runs
    assert setup.vendor_writes() - writes == 200, "each ticket pushed once"
