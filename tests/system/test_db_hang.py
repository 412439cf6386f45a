"""A PostgreSQL server that accepts and never answers: `status` and `check` still answer.

Within 15 s, with a clear error, and never printing a password from the URL.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.conftest import run_cli

SECRET = "SENTINEL-pg-query-password-4e1"


@pytest.fixture
def silent_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        server.close()


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
    tmp_path: Path, silent_port: int, command: tuple[str, ...]
) -> None:
    started = time.monotonic()
    result = run_cli("--config", str(_config(tmp_path, silent_port)), *command, timeout=30)
    assert time.monotonic() - started < 15
    output = result.stdout + result.stderr
    if command[0] == "status":
        assert result.returncode == 2, output  # `check` reports the database and goes on
    assert "Traceback" not in output
    assert f"127.0.0.1:{silent_port}" in output and "timeout" in output.lower(), output
    assert SECRET not in output
    assert "password=***" in output
