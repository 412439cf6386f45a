"""The systemd units in deploy/ pass `systemd-analyze verify` where it is available."""

from __future__ import annotations

import re
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


SERVICES = ("ticketsync.service", "ticketsync-once.service")


def _documented_exposure(text: str) -> float:
    match = re.search(r"security --offline=yes` \(systemd \d+\): exposure (\d+\.\d)", text)
    assert match, "the unit records its exposure figure"
    return float(match.group(1))


@pytest.mark.parametrize("unit", SERVICES)
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_exposure_does_not_exceed_the_documented_figure(tmp_path, unit):
    text = (ROOT / "deploy" / unit).read_text()
    path = tmp_path / unit
    path.write_text(text.replace("/usr/local/bin/ticketsync", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score offline: {result.stderr.strip()[:200]}")
    assert float(match.group(1)) <= _documented_exposure(text), result.stdout
    # Every remaining ✗ is named in the unit's comment, with its reason.
    for line in result.stdout.splitlines():
        if line.startswith("✗"):
            setting = line.split()[1]
            assert setting in text, f"{unit}: {setting} is not explained"


@pytest.mark.parametrize("unit", SERVICES)
def test_resource_limits_and_extra_hardening_are_present(unit):
    text = (ROOT / "deploy" / unit).read_text()
    for directive in (
        "ProcSubset=pid",
        "PrivateUsers=yes",
        "PrivateMounts=yes",
        "DevicePolicy=closed",
        "MemoryHigh=512M",
        "MemoryMax=768M",
        "LimitNOFILE=16384",
        "SystemCallErrorNumber=EPERM",
    ):
        assert f"\n{directive}\n" in text, directive


def test_daemon_is_not_restarted_after_a_config_error_and_has_a_start_limit():
    text = (ROOT / "deploy" / "ticketsync.service").read_text()
    assert "\nRestartPreventExitStatus=2 3\n" in text
    assert "\nStartLimitIntervalSec=" in text and "\nStartLimitBurst=" in text
