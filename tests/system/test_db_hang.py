"""A PostgreSQL server that accepts and never answers: `status` and `check` still answer.

Within 15 s, with a clear error, and never printing a password from the URL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.system.conftest import run_cli

SECRET = "SENTINEL-pg-query-password-4e1"


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database:
  url: "postgresql://ts@127.0.0.1:{port}/ts?password={SECRET}&sslmode=disable"
  connect_timeout: 1
  statement_timeout: 2
connections:
  mem:
    vendor: memory
    base_url: http://127.0.0.1:9
"""
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    "command", [("status",), ("status", "--json"), ("check", "--offline"), ("check",)]
)
def test_a_hung_database_gets_a_clear_answer_in_time(
    tmp_path: Path, silent_server: int, command: tuple[str, ...]
) -> None:
    started = time.monotonic()
    result = run_cli("--config", str(_config(tmp_path, silent_server)), *command, timeout=30)
    assert time.monotonic() - started < 15
    output = result.stdout + result.stderr
    if command[0] == "status":
        assert result.returncode == 2, output  # `check` reports the database and goes on
    assert "Traceback" not in output
    assert f"127.0.0.1:{silent_server}" in output and "timeout" in output.lower(), output
    assert SECRET not in output
    assert "password=***" in output
