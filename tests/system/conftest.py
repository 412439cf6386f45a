"""Helpers to run the real CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m sync ARGS`` with the checkout importable; returns the finished process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("TICKETSYNC_CONFIG", None) if "TICKETSYNC_CONFIG" not in (env or {}) else None
    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def memory_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite:///{tmp_path / "mirror.db"}"}}
connections:
  mem:
    vendor: memory
    base_url: http://127.0.0.1:9
    fields:
      status: {{open: Open, closed: Closed}}
"""
    )
    return path
