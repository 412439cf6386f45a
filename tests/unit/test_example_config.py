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
