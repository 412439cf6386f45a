"""The in-memory vendor, for tests and benchmarks only (``vendor: memory``).

It is accepted in a config but named in no message and in no example. Its options:
``store`` (the shared ``MemoryVendor``'s name, default the connection's), ``writable`` (a
list of canonical fields), ``can_create``, ``finds_markers``, ``one_look``, ``comments_read``,
``comments_write``, ``private_comments`` and ``comments_as_user`` (booleans). Other keys are
left alone, so a test may carry data of its own there. The adapter is
``sync.vendors.memory.adapter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.vendors.options import boolean
from sync.vendors.spec import SYNC_FIELDS, Credential, VendorSpec


def _writable(value: Any) -> str | None:
    if not isinstance(value, list | tuple) or not all(v in SYNC_FIELDS for v in value):
        return f"expected a list of fields among {', '.join(SYNC_FIELDS)}"
    return None


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "expected a string"


_CHECKS = {
    "store": _text,
    "writable": _writable,
    "can_create": boolean,
    "finds_markers": boolean,
    "comments_read": boolean,
    "comments_write": boolean,
    "private_comments": boolean,
    "comments_as_user": boolean,
    "one_look": boolean,
}


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """Problems with the known keys, each as ``options.KEY: message``; others pass."""
    found = []
    for key, check in _CHECKS.items():
        if key in options and (problem := check(options[key])) is not None:
            found.append(f"options.{key}: {problem}")
    return found


SPEC = VendorSpec(
    vendor="memory",
    adapter="sync.vendors.memory.adapter:MemoryAdapter",
    credentials=(Credential("token"),),
    check_options=validate_options,
    test_only=True,
)
