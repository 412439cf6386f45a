"""The vendors ticketsync knows: vendor id -> its package's ``VendorSpec``, found lazily.

Adding a vendor adds one line here (plus its package under ``sync/vendors/``, its emulator
in ``sync/sandbox/`` and its contract-suite subclass in ``tests/vendors/``). Nothing is
imported until asked for: ``spec`` imports only the vendor package's declaration, and
``sync.vendors.base.adapter_class`` the adapter module named by the spec. This module
imports no adapter code, so the config can use it without an import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from sync.vendors.spec import VendorSpec

#: vendor id -> "module:attribute" of its ``VendorSpec``.
VENDORS: Mapping[str, str] = MappingProxyType(
    {
        "kapture": "sync.vendors.kapture:SPEC",
        "proprofs": "sync.vendors.proprofs:SPEC",
        "sirportly": "sync.vendors.sirportly:SPEC",
        "zoho_desk": "sync.vendors.zoho_desk:SPEC",
        "memory": "sync.vendors.memory:SPEC",  # test-only: see sync/vendors/memory/
    }
)


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@cache
def spec(vendor: str) -> VendorSpec:
    """The declaration of ``vendor``; KeyError when ticketsync has no such vendor."""
    found = _load(VENDORS[vendor])
    if not isinstance(found, VendorSpec) or found.vendor != vendor:
        raise TypeError(f"{VENDORS[vendor]} is not the VendorSpec of {vendor!r}")
    return found


def public_vendors() -> tuple[str, ...]:
    """The vendor ids a config may name and messages list (test-only vendors left out)."""
    return tuple(v for v in VENDORS if not spec(v).test_only)


def load(target: str) -> Any:
    """The object a ``"module:attribute"`` string names (importing the module)."""
    return _load(target)
