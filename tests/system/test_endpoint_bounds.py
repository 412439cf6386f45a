"""A flood of idle sockets against the health endpoint starves nothing and floods no log."""

from __future__ import annotations

import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.system.conftest import ROOT
from tests.system.test_daemon import _free_port, _get, _links, _wait, _write_config

FD_LIMIT = 96
FLOOD = 200


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_socket_flood_is_bounded(tmp_path: Path) -> None:
    port = _free_port()
    config = _write_config(tmp_path, port)
    config.write_text(
        config.read_text().replace("log_format: json}", "log_format: json, max_connections: 8}")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_fds,
    )
    flood: list[socket.socket] = []
    try:
        assert _wait(lambda: _get(port, "/healthz")[0] == 200)
        baseline = _open_fds(proc.pid)
        for _ in range(FLOOD):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            flood.append(sock)
        time.sleep(1.0)
        assert _open_fds(proc.pid) <= baseline + 8 + 2  # the cap, never the flood
        with sqlite3.connect(tmp_path / "mirror.db") as conn:  # other work goes on
            conn.execute("INSERT INTO tickets (title, status) VALUES ('during', 'open')")
        assert _wait(lambda: _links(tmp_path / "mirror.db") == 1, timeout=10)
        assert proc.poll() is None
    finally:
        for sock in flood:
            sock.close()
    try:
        assert _wait(lambda: _get(port, "/healthz")[0] == 200, timeout=20)
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert "out of system resource" not in stderr
    assert len(stderr.splitlines()) < 50, stderr[-2000:]
