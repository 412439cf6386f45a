"""Sentinel secrets: planted in the credentials, they appear nowhere (docs/architecture.md §3.3).

Every error path is driven through the real CLI (a clean run with debug logging, a
server error on an update, an HTML page, revoked credentials, a configuration error,
``status`` and ``check``), and the sentinel is searched for in stdout, stderr, the
database files and the state folder.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.system.conftest import run_cli
from tests.system.harness import PLUGINS, Setup, prepare_pending

CLIENT_SECRET = "SENTINEL-client-secret-5f0e2b"
REFRESH_TOKEN = "1000.SENTINEL-refresh-93ad71"


def _forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode()]


def _leaks(text: str) -> list[str]:
    return [s for secret in (CLIENT_SECRET, REFRESH_TOKEN) for s in _forms(secret) if s in text]


def test_sentinel_secrets_never_show(tmp_path):
    plugin = PLUGINS["zoho_desk"]
    setup = Setup(plugin, tmp_path, {"http": {"backoff_base": 0.01, "backoff_cap": 0.05}})
    try:
        setup.vendor.call(
            "POST",
            "/_sandbox/config",
            {"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN},
        )
        data = yaml.safe_load(setup.config.read_text())
        data["connections"]["v"]["credentials"].update(
            client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
        )
        setup.config.write_text(yaml.safe_dump(data))
        setup.config.chmod(0o600)

        outputs = []
        prepare_pending(setup)
        outputs.append(setup.run("-v"))
        setup.inject("status", "update", status=503)
        setup.sql("UPDATE tickets SET status = 'open' WHERE id = 1")
        outputs.append(setup.run("-v"))
        setup.inject("html200", "pull")
        outputs.append(setup.run("-v"))
        outputs.append(run_cli("--config", str(setup.config), "status", "--json"))
        outputs.append(run_cli("--config", str(setup.config), "status"))
        outputs.append(run_cli("--config", str(setup.config), "check", "-v"))
        setup.vendor.call("POST", "/_sandbox/faults", {"kind": "revoke"})
        outputs.append(setup.run("-v"))
        outputs.append(run_cli("--config", str(setup.config), "check"))

        data["connections"]["v"]["credentials"]["bogus"] = CLIENT_SECRET
        data["connections"]["v"]["interval"] = REFRESH_TOKEN
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump(data))
        outputs.append(run_cli("--config", str(bad), "check"))
        assert outputs[-1].returncode == 2

        assert [o.returncode for o in outputs[:3]] == [0, 1, 1]
        for result in outputs:
            assert not _leaks(result.stdout + result.stderr), result.args
        for path in Path(tmp_path).rglob("*"):
            if path.is_file() and path.name not in ("config.yaml", "bad.yaml"):
                assert not _leaks(path.read_bytes().decode("latin-1")), path
    finally:
        setup.stop()
