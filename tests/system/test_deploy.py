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


TWO_HOST = ROOT / "deploy" / "two-host"
HOSTS = ("host-a", "host-b")


def _drop_in(host: str) -> str:
    return (TWO_HOST / host / "ticketsync.service.d" / "scale-out.conf").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_two_host_units_verify_with_their_drop_ins(tmp_path):
    base = (ROOT / "deploy" / "ticketsync.service").read_text()
    base = base.replace("/usr/local/bin/ticketsync", "/bin/true")
    for host in HOSTS:
        unit = tmp_path / host / "ticketsync.service"
        drop_ins = unit.with_name("ticketsync.service.d")
        drop_ins.mkdir(parents=True)
        unit.write_text(base)
        (drop_ins / "scale-out.conf").write_text(_drop_in(host))
        result = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "scale-out.conf" not in result.stderr, result.stderr


def test_two_host_drop_ins_differ_only_in_the_host_name():
    a, b = (_drop_in(host) for host in HOSTS)
    assert "Environment=TICKETSYNC_INSTANCE=host-a" in a
    assert a.replace("host-a", "host-b") == b


def test_two_host_config_is_valid_on_each_host(tmp_path):
    from sync.config import load_config

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    loaded = {line.split("=", 1)[1].split(":", 1)[0] for line in _credential_lines()}
    for name in loaded:
        (credentials / name).write_text(f"secret-{name}\n")
    config_path = tmp_path / "config.yaml"
    config_path.write_text((TWO_HOST / "config.yaml").read_text())
    config_path.chmod(0o600)
    for host in HOSTS:
        env = {"TICKETSYNC_INSTANCE": host, "CREDENTIALS_DIRECTORY": str(credentials)}
        config = load_config(config_path, env=env)
        assert config.database.url.startswith("postgresql://")
        assert f"application_name=ticketsync-{host}" in config.database.url
        assert len(config.connections) >= 2, "an example with something to spread"


def _credential_lines() -> list[str]:
    """LoadCredential= lines a host's service gets: the base unit's and the drop-in's."""
    text = (ROOT / "deploy" / "ticketsync.service").read_text() + _drop_in("host-a")
    return [line for line in text.splitlines() if line.startswith("LoadCredential=")]
