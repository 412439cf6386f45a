"""Sentinel secrets: planted in the credentials, they appear nowhere (docs/architecture.md §3.3).

Every error path is driven through the real CLI for each of the four vendors (a clean run
with debug logging, a server error on an update that echoes the credentials back, an HTML
page, revoked credentials, a configuration error, ``status`` and ``check``), and the
sentinels are searched for in stdout, stderr, the database files and the state folder.
A daemon whose credentials are rotated by SIGHUP masks the old and the new ones, even
when the vendor echoes them in its error bodies (issue 20, item 5).
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.system.conftest import ROOT, run_cli
from tests.system.harness import PLUGINS, Setup, prepare_pending

SENTINEL_A = "SENTINEL-first-secret-5f0e2b"
SENTINEL_B = "1000.SENTINEL-second-93ad71"
ROTATED = "SENTINEL-rotated-token-c41d7e"

#: vendor -> (emulator settings that accept the sentinels, credentials that carry them)
PLANTED: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "zoho_desk": (
        {"client_secret": SENTINEL_A, "refresh_token": SENTINEL_B},
        {"client_secret": SENTINEL_A, "refresh_token": SENTINEL_B},
    ),
    "kapture": (
        {"tokens": dict.fromkeys(("create", "update", "read"), SENTINEL_A)},
        {"token": SENTINEL_A},
    ),
    "proprofs": ({"token": SENTINEL_A}, {"token": SENTINEL_A}),
    "sirportly": (
        {"token": SENTINEL_A, "secret": SENTINEL_B},
        {"token": SENTINEL_A, "secret": SENTINEL_B},
    ),
}


def _forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode()]


def _leaks(text: str, secrets: tuple[str, ...] = (SENTINEL_A, SENTINEL_B)) -> list[str]:
    return [form for secret in secrets for form in _forms(secret) if form in text]


def _files_leak(root: Path, skip: set[str], secrets: tuple[str, ...]) -> list[str]:
    return [
        f"{path}: {_leaks(path.read_bytes().decode('latin-1'), secrets)}"
        for path in root.rglob("*")
        if path.is_file()
        and path.name not in skip
        and _leaks(path.read_bytes().decode("latin-1"), secrets)
    ]


def _plant(setup: Setup, vendor: str) -> dict[str, Any]:
    settings, credentials = PLANTED[vendor]
    setup.vendor.call("POST", "/_sandbox/config", settings)
    data = yaml.safe_load(setup.config.read_text())
    data["connections"]["v"]["credentials"].update(credentials)
    setup.config.write_text(yaml.safe_dump(data))
    setup.config.chmod(0o600)
    return data


def _echo(secrets: tuple[str, ...]) -> str:
    """An error body that repeats the caller's credentials, as some gateways do."""
    return "invalid request; credentials received: " + ", ".join(secrets)


@pytest.mark.parametrize("vendor", sorted(PLANTED))
def test_sentinel_secrets_never_show(tmp_path, vendor):
    setup = Setup(PLUGINS[vendor], tmp_path, {"http": {"backoff_base": 0.01, "backoff_cap": 0.05}})
    secrets = tuple(PLANTED[vendor][1].values())
    try:
        data = _plant(setup, vendor)
        outputs = []
        prepare_pending(setup)
        outputs.append(setup.run("-v"))
        setup.inject("status", "update", status=400, body=_echo(secrets))
        setup.sql("UPDATE tickets SET status = 'open' WHERE id = 1")
        setup.sql("UPDATE tickets SET priority = 'high' WHERE id = 2")
        outputs.append(setup.run("-v"))
        setup.inject("html200", "pull")
        outputs.append(setup.run("-v"))
        outputs.append(run_cli("--config", str(setup.config), "status", "--json"))
        outputs.append(run_cli("--config", str(setup.config), "status"))
        outputs.append(run_cli("--config", str(setup.config), "check", "-v"))
        setup.vendor.call("POST", "/_sandbox/faults", {"kind": "revoke"})
        outputs.append(setup.run("-v"))
        outputs.append(run_cli("--config", str(setup.config), "check"))

        data["connections"]["v"]["credentials"]["bogus"] = secrets[0]
        data["connections"]["v"]["interval"] = secrets[-1]
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(data))
        outputs.append(run_cli("--config", str(bad), "check"))
        assert outputs[-1].returncode == 2

        assert outputs[0].returncode == 0, outputs[0].stderr
        assert outputs[1].returncode == 1 or "errors=1" in outputs[1].stderr, outputs[1].stderr
        assert outputs[2].returncode == 1, "the HTML page on the pull fails the run"
        for result in outputs:
            assert not _leaks(result.stdout + result.stderr, secrets), result.args
        assert not _files_leak(tmp_path, {"config.yaml", "bad.yaml"}, secrets)
    finally:
        setup.stop()


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_rotation_by_sighup_masks_the_old_and_the_new_token(tmp_path):
    """A daemon on Kapture: the vendor echoes the token in a 400 before and after the token
    is rotated by SIGHUP; neither token reaches the log, the database or ``status``."""
    setup = Setup(PLUGINS["kapture"], tmp_path, {"interval": 0.3})
    proc: subprocess.Popen[str] | None = None
    try:
        _plant(setup, "kapture")
        prepare_pending(setup)
        setup.run()
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(setup.config), "-v"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log: list[str] = []
        reader = threading.Thread(target=lambda: log.extend(proc.stdout or ()), daemon=True)
        reader.start()

        def failed_with(marker: str) -> bool:
            return any(marker in line for line in log)

        setup.inject("status", "update", status=400, body=_echo((SENTINEL_A,)))
        setup.sql("UPDATE tickets SET status = 'open' WHERE id = 1")
        assert _wait(lambda: failed_with("credentials received")), "".join(log)[-2000:]

        rotated = dict.fromkeys(("create", "update", "read"), ROTATED)
        setup.vendor.call("POST", "/_sandbox/config", {"tokens": rotated})
        data = yaml.safe_load(setup.config.read_text())
        data["connections"]["v"]["credentials"]["token"] = ROTATED
        setup.config.write_text(yaml.safe_dump(data))
        seen = len(log)
        proc.send_signal(signal.SIGHUP)
        assert _wait(lambda: failed_with("configuration reloaded")), "".join(log[seen:])[-2000:]
        # Only now does the vendor echo the new token: the reloaded redactor must know it.
        seen = len(log)
        setup.inject("status", "update", status=400, body=_echo((SENTINEL_A, ROTATED)))
        setup.sql("UPDATE tickets SET priority = 'high' WHERE id = 2")
        assert _wait(lambda: any("credentials received" in line for line in log[seen:])), "".join(
            log[seen:]
        )[-2000:]
        assert _wait(lambda: setup.status()["last_run"]["outcome"] == "ok"), "the new token works"
        status = run_cli("--config", str(setup.config), "status", "--json")
        text = run_cli("--config", str(setup.config), "status")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=25)
        reader.join(timeout=10)
        secrets = (SENTINEL_A, ROTATED)
        assert not _leaks("".join(log), secrets)
        assert not _leaks(status.stdout + status.stderr + text.stdout + text.stderr, secrets)
        assert not _files_leak(tmp_path, {"config.yaml"}, secrets)
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        setup.stop()
