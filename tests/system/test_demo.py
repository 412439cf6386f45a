"""``ticketsync demo`` runs end to end against the built-in emulators."""

from __future__ import annotations

import json

from tests.system.conftest import run_cli


def test_demo_walks_through_every_step(tmp_path):
    result = run_cli("demo", "--dir", str(tmp_path / "demo"), "--tickets", "8", timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in range(1, 10):
        assert f"== {step}." in out
    # a comment added at Zoho Desk reaches the mirror, Sirportly and Kapture (§8.5)
    assert "in the mirror: ticket_comments #" in out
    assert "sirportly-demo: posted on ticket SP-" in out
    assert "kapture-demo: posted on ticket " in out
    assert "proprofs-demo: not posted (proprofs is read-only)" in out
    assert "(mirror edit, sent to every connection)" in out
    assert "status 'Open' -> 'Closed'" in out
    assert "remote won" in out
    assert "score 1.00 (requester_email, subject, created_at)" in out
    assert "created 0" in out.split("== 8.")[1].split("== 9.")[0], "matched, not duplicated"
    assert "errors 0" in out and "! " not in out
    config = tmp_path / "demo" / "config.yaml"
    status = run_cli("--config", str(config), "status", "--json")
    assert status.returncode == 0
    connections = json.loads(status.stdout)["connections"]
    assert connections and all(c["last_run"]["outcome"] == "ok" for c in connections.values())
    # the demo's vendors hold different tickets (one customer each, same day): none of
    # them may be held back as a match candidate
    assert all(c["pending_matches"] == 0 for c in connections.values())


def test_demo_keep_running_stops_cleanly_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.system.conftest import ROOT

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync",
            "demo",
            "--dir",
            str(tmp_path / "d"),
            "--tickets",
            "4",
            "--keep-running",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    for line in proc.stdout:
        if "Ctrl-C stops them" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    assert proc.poll() is None, "still serving"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
