"""``ticketsync demo`` runs end to end against the built-in emulators."""

from __future__ import annotations

import json

from tests.system.conftest import run_cli


def test_demo_walks_through_every_step(tmp_path):
    result = run_cli("demo", "--dir", str(tmp_path / "demo"), "--tickets", "8", timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in range(1, 7):
        assert f"== {step}." in out
    assert "status 'Open' -> 'Closed'" in out
    assert "remote won" in out
    assert "errors 0" in out and "! " not in out
    config = tmp_path / "demo" / "config.yaml"
    status = run_cli("--config", str(config), "status", "--json")
    assert status.returncode == 0
    connections = json.loads(status.stdout)["connections"]
    assert connections and all(c["last_run"]["outcome"] == "ok" for c in connections.values())
