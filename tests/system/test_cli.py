"""The command line's contract (docs/architecture.md §2.1): exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sync.coord.locks import InstanceLock
from tests.system.conftest import ROOT, run_cli

COMMANDS = [
    [],
    ["run"],
    ["status"],
    ["check"],
    ["conflicts"],
    ["conflicts", "resolve"],
    ["db"],
    ["db", "upgrade"],
    ["guard"],
    ["guard", "approve"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_on_every_command(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_config_errors_exit_2_with_every_problem_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "connections:\n  z:\n    vendor: zoho\n    base_url: http://example.com\n    colour: red\n"
    )
    result = run_cli("--config", str(bad), "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "connections.z.vendor" in result.stderr
    assert "connections.z.base_url" in result.stderr
    assert "connections.z.colour" in result.stderr


def test_missing_config_file_exits_2(tmp_path):
    result = run_cli("--config", str(tmp_path / "nope.yaml"), "status")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_example_config_names_each_missing_variable(tmp_path):
    result = run_cli("--config", str(ROOT / "config.example.yaml"), "check", cwd=tmp_path)
    assert result.returncode == 2
    for name in ("KAPTURE_TOKEN", "PROPROFS_TOKEN", "SIRPORTLY_SECRET", "ZOHO_REFRESH_TOKEN"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_database_exits_2_naming_its_path(memory_config, tmp_path):
    result = run_cli("--config", str(memory_config), "status")
    assert result.returncode == 2
    assert str(tmp_path / "mirror.db") in result.stderr
    assert not (tmp_path / "mirror.db").exists()


def test_dry_run_never_creates_the_database(memory_config, tmp_path):
    result = run_cli("--config", str(memory_config), "--dry-run")
    assert result.returncode == 2
    assert "db upgrade" in result.stderr
    assert not (tmp_path / "mirror.db").exists()


def test_run_once_then_status_json(memory_config):
    assert run_cli("--config", str(memory_config), "--run-once").returncode == 0
    result = run_cli("status", "--json", "--config", str(memory_config))
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["schema"] == 1
    mem = report["connections"]["mem"]
    assert mem["last_run"]["outcome"] == "ok"
    assert mem["credentials"] == "ok"
    for key in (
        "vendor",
        "lag_s",
        "cursor",
        "pending_pushes",
        "failing_tickets",
        "orphaned_links",
        "open_conflicts",
        "consecutive_failures",
        "next_retry_at",
        "last_error",
        "unwritable_fields",
        "guard",
        "holder",
    ):
        assert key in mem


def test_unknown_connection_is_a_usage_error(memory_config):
    result = run_cli("--config", str(memory_config), "--run-once", "--connection", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr


def test_run_once_exits_3_while_another_instance_holds_the_lock(memory_config, tmp_path):
    assert run_cli("--config", str(memory_config), "db", "upgrade").returncode == 0
    with InstanceLock(Path(tmp_path / "mirror.db"), "daemon"):
        result = run_cli("--config", str(memory_config), "--run-once")
        status = run_cli("--config", str(memory_config), "status", "--json")
    assert result.returncode == 3
    assert "another ticketsync instance" in result.stderr
    assert status.returncode == 0, "status never waits for the lock"
    assert json.loads(status.stdout)["connections"]["mem"]["holder"]["pid"] is not None


def test_config_lookup_uses_environment_variable(memory_config):
    result = run_cli("status", env={"TICKETSYNC_CONFIG": str(memory_config)})
    assert result.returncode == 2  # found the file: complains about the missing database
    assert "db upgrade" in result.stderr


def test_db_upgrade_is_idempotent(memory_config):
    first = run_cli("--config", str(memory_config), "db", "upgrade")
    second = run_cli("db", "upgrade", "--config", str(memory_config))
    assert first.returncode == second.returncode == 0
    assert "already at revision" in second.stdout
