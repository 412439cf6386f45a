"""config.example.yaml is valid down to every vendor's options."""

from __future__ import annotations

from pathlib import Path

from sync.checks import vendor_problems
from sync.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
ENV = {
    name: "x" * 12
    for name in (
        "KAPTURE_TOKEN",
        "PROPROFS_EMAIL",
        "PROPROFS_TOKEN",
        "SIRPORTLY_TOKEN",
        "SIRPORTLY_SECRET",
        "ZOHO_CLIENT_ID",
        "ZOHO_CLIENT_SECRET",
        "ZOHO_REFRESH_TOKEN",
        "ZOHO_ORG_ID",
    )
}


def test_every_vendor_accepts_the_example_options():
    config = load_config(EXAMPLE, env=ENV)
    assert vendor_problems(config) == []
    assert {c.vendor for c in config.connections.values()} == {
        "kapture",
        "proprofs",
        "sirportly",
        "zoho_desk",
    }


def test_on_postgresql_leases_must_outlast_a_vendor_call():
    import pytest

    from sync.config import parse_config
    from sync.errors import ConfigError

    data = {
        "database": {"url": "postgresql://ticketsync@db.internal/ticketsync"},
        "sync": {"lease_seconds": 30},
        "connections": {
            "m": {
                "vendor": "memory",
                "base_url": "http://127.0.0.1:9",
                "http": {"total_timeout": 45},
            }
        },
    }
    with pytest.raises(ConfigError) as raised:
        parse_config(data, env={})
    assert any("connections.m.http.total_timeout" in p for p in raised.value.problems)
    data["database"] = {"url": "sqlite:///x.db"}
    parse_config(data, env={})  # one instance on SQLite: no lease, no rule


def test_the_example_documents_every_key_and_its_default():
    import dataclasses

    import yaml

    from sync.config import DatabaseConfig, HttpSettings, ServiceConfig, SyncSettings

    example = yaml.safe_load(EXAMPLE.read_text())
    sections = {
        "database": (example["database"], DatabaseConfig),
        "sync": (example["sync"], SyncSettings),
        "service": (example["service"], ServiceConfig),
        "sync.http": (example["sync"]["http"], HttpSettings),
    }
    for where, (written, settings) in sections.items():
        names = [f.name for f in dataclasses.fields(settings)]
        assert sorted(written) == sorted(names), where
    # The http block says "The values below are the defaults": keep it true.
    assert HttpSettings(**example["sync"]["http"]) == HttpSettings()
    defaults = DatabaseConfig()
    for key in ("auto_upgrade", "connect_timeout", "statement_timeout", "file_mode"):
        assert example["database"][key] == getattr(defaults, key), key
    for key in ("interval", "tie_break", "lease_seconds", "lookback_seconds", "batch_size"):
        assert example["sync"][key] == getattr(SyncSettings(), key), key
    assert example["sync"]["clock_skew_seconds"] == SyncSettings().clock_skew_seconds
    assert example["service"] == dataclasses.asdict(ServiceConfig())
