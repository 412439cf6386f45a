"""Validation of ``connections.NAME.options``, shared by the vendors.

Each vendor lists its keys in a table, key -> check; a check returns None for a good
value or a short problem ("expected true or false"). ``problems`` applies the table and
reports unknown keys, so every vendor words its problems the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], str | None]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def problems(options: Mapping[str, Any], checks: Mapping[str, Check], vendor: str) -> list[str]:
    """Every problem with ``options``, each as ``options.KEY: message``."""
    found = []
    for key, value in options.items():
        check = checks.get(key)
        if check is None:
            known = ", ".join(sorted(checks))
            found.append(f"options.{key}: unknown key ({vendor} knows {known})")
        elif (problem := check(value)) is not None:
            found.append(f"options.{key}: {problem}")
    return found


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def seconds(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return "expected a number of seconds >= 0"
    return None


def email(value: Any) -> str | None:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        return "expected an e-mail address"
    return None
