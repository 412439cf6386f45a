"""The systemd units in deploy/ pass `systemd-analyze verify` where it is available."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.system.conftest import ROOT

UNITS = ("ticketsync.service", "ticketsync-once.service", "ticketsync-once.timer")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_units_verify(tmp_path):
    for unit in UNITS:
        text = (ROOT / "deploy" / unit).read_text()
        # the binary is not installed here: verify against one that exists
        (tmp_path / unit).write_text(text.replace("/usr/local/bin/ticketsync", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ticketsync" not in result.stderr, result.stderr


def test_service_hardening_is_present():
    text = (ROOT / "deploy" / "ticketsync.service").read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=ticketsync",
        "LoadCredential=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
    ):
        assert directive in text, directive
