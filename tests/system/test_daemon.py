"""The daemon as a subprocess: scheduling, signals, the endpoint, the instance lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.system.conftest import ROOT, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(tmp_path: Path, port: int, interval: float = 0.5) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite:///{tmp_path / "mirror.db"}"}}
sync: {{interval: {interval}}}
service: {{listen: "127.0.0.1:{port}", log_format: json}}
connections:
  mem:
    vendor: memory
    base_url: http://127.0.0.1:9
    fields:
      status: {{open: Open, closed: Closed}}
    create: {{when: {{}}}}
"""
    )
    return path


def _start(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(predicate, timeout: float = 60.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False).

    The timeout only bounds a failing test: it is generous, because a loaded machine can take
    many seconds to start a daemon, and a passing test never waits it out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _links(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "SELECT count(*) FROM ticket_links WHERE state = 'active'"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def _runs(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.fixture
def daemon(tmp_path):
    port = _free_port()
    config = _write_config(tmp_path, port)
    proc = _start(config)
    try:
        assert _wait(lambda: _get(port, "/healthz")[0] == 200), proc.stderr
        yield proc, port, config, tmp_path / "mirror.db"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reaps the process and closes its pipes


def test_local_insert_reaches_the_vendor_within_two_intervals(daemon):
    _, port, _, db = daemon
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0]
        conn.execute("INSERT INTO tickets (title, status) VALUES ('from a tool', 'open')")
    assert _wait(lambda: _links(db) == 1)
    # Counted in runs, not seconds, so a loaded machine's slower runs cannot fail it: the
    # run that was under way at the insert may miss it, the next one may not.
    with sqlite3.connect(db) as conn:
        (creator,) = conn.execute("SELECT run_id FROM journal WHERE action = 'create'").fetchone()
    assert creator <= before + 1, f"created by run {creator}, {creator - before} runs later"
    status, text = _get(port, "/metrics")
    assert status == 200
    assert 'ticketsync_tickets_total{action="created",connection="mem"} 1.0' in text
    assert "ticketsync_runs_total" in text


def test_sigterm_exits_0(daemon):
    proc, *_ = daemon
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=25)
    assert proc.returncode == 0


def test_sighup_with_a_broken_file_keeps_the_old_config(daemon):
    proc, _, config, db = daemon
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    good = config.read_text()
    config.write_text("connections: [not, a, mapping]\n")
    proc.send_signal(signal.SIGHUP)
    # The good file goes back only once the daemon has read the broken one: however late a
    # loaded machine lets it handle the signal, it must have seen the broken file.
    assert _wait(lambda: any("keeping the running configuration" in line for line in err))
    assert proc.poll() is None
    config.write_text(good)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO tickets (title, status) VALUES ('after reload', 'open')")
    assert _wait(lambda: _links(db) == 1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=25)
    reader.join(timeout=10)
    assert proc.returncode == 0


def test_a_second_daemon_on_the_same_database_exits_3(daemon):
    _, _, config, _ = daemon
    second = run_cli("--config", str(config))
    assert second.returncode == 3


def test_status_names_the_running_daemon(daemon):
    proc, _, config, _ = daemon
    result = run_cli("--config", str(config), "status", "--json")
    assert result.returncode == 0
    holder = json.loads(result.stdout)["connections"]["mem"]["holder"]
    assert holder["pid"] == proc.pid


def test_sigusr1_syncs_now(tmp_path):
    port = _free_port()
    config = _write_config(tmp_path, port, interval=30)
    proc = _start(config)
    try:
        assert _wait(lambda: _get(port, "/healthz")[0] == 200)
        db = tmp_path / "mirror.db"
        assert _wait(lambda: "ticketsync_runs_total{" in _get(port, "/metrics")[1])
        # A local change would wake a push-only run at once (sync.daemon.wake): what
        # SIGUSR1 starts is told by the run count, with nothing to push.
        assert _wait(lambda: _runs(db) == 1)
        time.sleep(0.5)
        assert _runs(db) == 1, "the next scheduled run is 30 s away"
        proc.send_signal(signal.SIGUSR1)
        # well before the next scheduled run (27 s at the earliest)
        assert _wait(lambda: _runs(db) == 2, timeout=15)
    finally:
        proc.terminate()
        proc.communicate(timeout=25)
    assert proc.returncode == 0


def test_sigterm_during_a_run_stops_between_tickets(tmp_path):
    from tests.system.harness import PLUGINS, Setup

    setup = Setup(PLUGINS["zoho_desk"], tmp_path)
    try:
        setup.vendor.seed(*(PLUGINS["zoho_desk"].remote_ticket(i) for i in range(3)))
        assert setup.run().returncode == 0
        setup.sql("UPDATE tickets SET status = 'closed'")
        setup.vendor.call("POST", "/_sandbox/config", {"latency": 0.5})
        proc = _start(setup.config)
        assert _wait(lambda: any(e["method"] == "PATCH" for e in setup.vendor.log()), 20)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=25)
        assert proc.returncode == 0
        pushed = {r[0] for r in setup.sql("SELECT ticket_id FROM journal WHERE action = 'push'")}
        dirty = {r[0] for r in setup.sql("SELECT ticket_id FROM ticket_dirty")}
        assert pushed | dirty == {1, 2, 3}, "every ticket is pushed or still pending"
        assert not pushed & dirty, "nothing half-written: a pushed ticket is no longer pending"
        setup.vendor.call("POST", "/_sandbox/config", {"latency": 0})
        assert setup.run().returncode == 0
        assert setup.sql("SELECT count(*) FROM ticket_dirty") == [(0,)]
    finally:
        setup.stop()


def test_systemd_notify_ready_and_stopping(tmp_path):
    import socket as socketlib

    address = str(tmp_path / "notify.sock")
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(60)  # bounds a failing test only: a loaded machine starts slowly
    port = _free_port()
    config = _write_config(tmp_path, port)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "400000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = [sock.recv(256).decode() for _ in range(3)]
        assert "READY=1" in messages
        assert "WATCHDOG=1" in messages, "pings at half the watchdog interval"
        proc.send_signal(signal.SIGTERM)
        seen = []
        while "STOPPING=1" not in seen:
            seen.append(sock.recv(256).decode())
        proc.communicate(timeout=25)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=25)
        sock.close()
    assert proc.returncode == 0
