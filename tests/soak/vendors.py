"""How the soak speaks of each vendor: its connection block, its spelling of the fields the
soak edits, and how to read a vendor ticket (as the emulator's control API lists it) back
in the mirror's canonical values.

The connection blocks and markers are the system tests' (``tests.system.harness``); the
fields edited are the ones every vendor maps: ``title``, ``status`` and ``priority``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.system.harness import (
    KAPTURE_STATUS,
    PLUGINS,
    PROPROFS_STATUS,
    SIRPORTLY_STATUS,
    ZOHO_STATUS,
    VendorPlugin,
)

#: The mirror fields the soak edits, and the canonical values it gives them.
FIELDS = ("title", "status", "priority")
STATUSES = ("open", "pending", "closed")
PRIORITIES = ("low", "normal", "high")


@dataclass(frozen=True)
class SoakVendor:
    """One vendor: canonical -> vendor spelling per field, and the vendor's field names."""

    plugin: VendorPlugin
    #: The vendor's field name of each canonical field, in its control API.
    names: Mapping[str, str]
    #: Canonical value -> the vendor's value (status, priority).
    spelling: Mapping[str, Mapping[str, Any]]
    #: Fields the adapter writes (a local edit of another field never reaches the vendor).
    writable: frozenset[str]
    #: The name of a nested value's key (Sirportly's ``{"name": ...}`` objects).
    nested: frozenset[str] = frozenset()

    @property
    def vendor(self) -> str:
        return self.plugin.vendor

    def remote_edit(self, field: str, canonical: str) -> dict[str, Any]:
        """The control-API fields of an agent's edit setting ``field`` to ``canonical``."""
        spelled = self.spelling.get(field, {}).get(canonical, canonical)
        return {self.names[field]: spelled}

    def canonical(self, ticket: Mapping[str, Any], field: str) -> Any:
        """The canonical value of ``field`` in a vendor ticket (None: not in the map)."""
        value = ticket.get(self.names[field])
        if field in self.nested and isinstance(value, Mapping):
            value = value.get("name")
        if field not in self.spelling:
            return value
        back = {str(v): k for k, v in self.spelling[field].items()}
        return back.get(str(value))

    def marker(self, ticket: dict[str, Any]) -> str | None:
        return self.plugin.marker_of(ticket)


def _writable(vendor: str) -> frozenset[str]:
    from sync.vendors.base import adapter_class

    return frozenset(adapter_class(vendor).capabilities.writable) & frozenset(FIELDS)


def _vendors() -> dict[str, SoakVendor]:
    zoho_priority = {"low": "Low", "normal": "Medium", "high": "High"}
    kapture_priority = {"normal": 0, "low": 1, "high": 2}
    sirportly_priority = {"low": "Low", "normal": "Normal", "high": "High"}
    return {
        "zoho_desk": SoakVendor(
            PLUGINS["zoho_desk"],
            {"title": "subject", "status": "status", "priority": "priority"},
            {"status": ZOHO_STATUS, "priority": zoho_priority},
            _writable("zoho_desk"),
        ),
        "kapture": SoakVendor(
            PLUGINS["kapture"],
            {"title": "title", "status": "substatus", "priority": "priority"},
            {"status": KAPTURE_STATUS, "priority": kapture_priority},
            _writable("kapture"),
        ),
        "proprofs": SoakVendor(
            PLUGINS["proprofs"],
            {"title": "subject", "status": "status", "priority": "priority"},
            {"status": PROPROFS_STATUS, "priority": {p: p for p in PRIORITIES}},
            _writable("proprofs"),
        ),
        "sirportly": SoakVendor(
            PLUGINS["sirportly"],
            {"title": "subject", "status": "status", "priority": "priority"},
            {"status": SIRPORTLY_STATUS, "priority": sirportly_priority},
            _writable("sirportly"),
            nested=frozenset({"status", "priority"}),
        ),
    }


VENDORS: dict[str, SoakVendor] = _vendors()

#: Faults the soak queues at a vendor: (kind, extra parameters, route: a ``routes`` key of
#: the vendor's plug-in, or None for any request). The hostile payloads are the cheap ones
#: of ``sync.sandbox.hostile`` (no 32 MiB bodies, no 30-second drips on a 2-core machine),
#: less ``retry_after``: its absurd wait is obeyed as a one-day cool-down (capped), which
#: rightly stops that connection for longer than any soak.
FAULTS: tuple[tuple[str, dict[str, Any], str | None], ...] = (
    ("status", {"status": 429, "headers": {"Retry-After": "1"}}, None),
    ("status", {"status": 503}, None),
    ("status", {"status": 503, "headers": {"Retry-After": "1"}}, "update"),
    ("drop", {}, None),
    ("drop", {}, "create"),
    ("apply_then_drop", {}, "update"),
    ("apply_then_drop", {}, "create"),
    ("latency", {"seconds": 1.5}, None),
    ("hostile", {"payload": "deep_json"}, "pull"),
    ("hostile", {"payload": "unclosed_html", "status": 502}, None),
    ("hostile", {"payload": "charset"}, "pull"),
)
