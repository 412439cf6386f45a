"""``connections.NAME.options`` of a Kapture connection: validation and the parsed form.

Keys (documented for operators in ``sync/vendors/kapture/adapter.py``'s docstring): ``time_zone``,
``sub_statuses``, ``queues``, ``priorities``, ``repoll_budget``, ``batch_size``,
``page_size``, ``initial_days``, ``marker_days``, ``api_key_headers``, ``read_notes``,
``comment_visibility``. Unknown keys are problems, like everywhere in the config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.vendors.options import boolean, problems

DEFAULT_TIME_ZONE = "Asia/Kolkata"  # docs/vendor-apis.md §1.11 infers IST from the create example
#: The sub-statuses Kapture's own pages name: ``US`` on a new ticket (add-ticket example),
#: ``P`` Pending and ``CL`` Closed (update-ticket page). Tenants define their own.
DEFAULT_SUB_STATUSES: Mapping[str, str] = MappingProxyType(
    {"US": "Unattended", "P": "Pending", "CL": "Closed"}
)
#: search-ticket-by-ticket-id batches of 50 ids are used in production (docs/vendor-apis.md §5.9).
MAX_BATCH = 50


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class KaptureOptions:
    time_zone: str = DEFAULT_TIME_ZONE
    sub_statuses: Mapping[str, str] = field(default_factory=lambda: DEFAULT_SUB_STATUSES)
    queues: Mapping[str, str] = field(default_factory=_empty)
    priorities: Mapping[str, str] = field(default_factory=_empty)
    repoll_budget: int = 500
    batch_size: int = MAX_BATCH
    page_size: int = 100
    initial_days: int = 30
    marker_days: int = 7
    api_key_headers: bool = False
    #: Read the tickets' conversation notes (get-ticket ``conversation_type: "notes"``, 3P).
    read_notes: bool = False
    #: Who sees a note posted through the update's ``comment`` in this tenant: ``public``
    #: (the default, assumed visible to the customer: only public comments go there) or
    #: ``private`` (internal: private notes may go there too).
    comment_visibility: str = "public"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> KaptureOptions:
        """Parse options that ``validate_options`` found no problem with."""
        defaults = cls()
        values: dict[str, Any] = {}
        for key in ("sub_statuses", "queues", "priorities"):
            if key in options:
                values[key] = MappingProxyType(_table(options[key]))
        for key in ("repoll_budget", "batch_size", "page_size", "initial_days", "marker_days"):
            if key in options:
                values[key] = int(options[key])
        values["time_zone"] = str(options.get("time_zone", defaults.time_zone))
        values["api_key_headers"] = bool(options.get("api_key_headers", False))
        values["read_notes"] = bool(options.get("read_notes", False))
        values["comment_visibility"] = str(options.get("comment_visibility", "public"))
        return cls(**values)


def _table(value: Mapping[Any, Any]) -> dict[str, str]:
    # YAML reads an unquoted numeric key (a priority code such as 0) as an integer.
    return {str(k): str(v) for k, v in value.items()}


def _time_zone(value: Any) -> str | None:
    if not isinstance(value, str):
        return "expected an IANA time zone name, e.g. Asia/Kolkata"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r} (expected an IANA name, e.g. Asia/Kolkata)"
    return None


def _key_name_table(*, required: bool) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping) or (required and not value):
            return "expected a mapping of Kapture key -> display name, e.g. {CL: Closed}"
        for key, name in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int) or not str(key).strip():
                return f"key {key!r}: expected a non-empty key"
            if not isinstance(name, str) or not name.strip():
                return f"{key}: expected the display name Kapture shows for this key"
        names = [str(n).strip().casefold() for n in value.values()]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            # Reads return names: a name shared by two keys could not be read back.
            return f"display names must be unique, {', '.join(doubled)} is given twice"
        return None

    return check


def _count(low: int, high: int | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"expected an integer >= {low}" + (f" and <= {high}" if high else "")
        if high is not None and value > high:
            return f"expected an integer >= {low} and <= {high}"
        return None

    return check


def _visibility(value: Any) -> str | None:
    if value not in ("public", "private"):
        return "expected public or private (who sees the notes ticketsync posts)"
    return None


_CHECKS: Mapping[str, Callable[[Any], str | None]] = {
    "time_zone": _time_zone,
    "sub_statuses": _key_name_table(required=True),
    "queues": _key_name_table(required=False),
    "priorities": _key_name_table(required=False),
    "repoll_budget": _count(1),
    "batch_size": _count(1, MAX_BATCH),
    "page_size": _count(1, 500),
    "initial_days": _count(1, 3660),
    "marker_days": _count(1, 366),
    "api_key_headers": boolean,
    "read_notes": boolean,
    "comment_visibility": _visibility,
}


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with ``options``, each as ``options.KEY: message``."""
    return problems(options, _CHECKS, "Kapture")
