"""``connections.NAME.options`` of a ProProfs Help Desk connection: validation and parsed form.

Keys (documented for operators in ``sync/vendors/proprofs/adapter.py``'s docstring): ``list_path``,
``list_fields``, ``time_zone``, ``marker_field_id``, ``marker_days``, ``import_since``,
``lookback_seconds``, ``default_requester_email``. Unknown keys are problems, as everywhere
in the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.vendors.options import email, problems, seconds

#: The ticket-list path. UNCONFIRMED (docs/vendor-apis.md §2.4): the help page "How to Retrieve
# Ticket
#: List via API" was not captured with its endpoint; this default follows the verb/noun
#: pattern of the two documented paths (``/app/api/v1/create/ticket/``, ``.../update/ticket/``).
DEFAULT_LIST_PATH = "/app/api/v1/list/ticket/"
DEFAULT_TIME_ZONE = "America/Chicago"  # DOC [P-list]: the answer's zone when none is set
DEFAULT_IMPORT_SINCE = date(2005, 1, 1)  # older than any ProProfs account: import everything
DEFAULT_MARKER_DAYS = 7

#: Filter role -> the request body key that carries it. The names are UNCONFIRMED (reference
#: docs/vendor-apis.md §2.4 documents the filters, creation / modification date ranges and a
# ticket-id range,
#: but not their spelling), so ``options.list_fields`` may rename each one.
DEFAULT_LIST_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "modified_from": "start_modified_date",
        "modified_to": "end_modified_date",
        "created_from": "start_created_date",
        "created_to": "end_created_date",
        "id_from": "start_ticket_id",
        "id_to": "end_ticket_id",
    }
)

_PATH = re.compile(r"/[A-Za-z0-9_./-]*/")  # case-sensitive, ends with "/" (DOC)
_BODY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_CUSTOM_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # e.g. "CF007-07" (DOC example)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_RESERVED = frozenset({"account_email", "token", "ticket_id"})


@dataclass(frozen=True)
class ProProfsOptions:
    list_path: str = DEFAULT_LIST_PATH
    list_fields: Mapping[str, str] = field(default_factory=lambda: DEFAULT_LIST_FIELDS)
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIME_ZONE))
    marker_field_id: str | None = None
    marker_days: int = DEFAULT_MARKER_DAYS
    import_since: datetime = datetime(2005, 1, 1, tzinfo=UTC)
    #: None: the connection uses ``sync.lookback_seconds`` (``AdapterContext.lookback_seconds``).
    lookback_seconds: float | None = None
    default_requester_email: str | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ProProfsOptions:
        """Parse options that ``validate_options`` found no problem with."""
        since = _as_date(options.get("import_since", DEFAULT_IMPORT_SINCE))
        lookback = options.get("lookback_seconds")
        marker_field = options.get("marker_field_id")
        requester = options.get("default_requester_email")
        return cls(
            list_path=str(options.get("list_path", DEFAULT_LIST_PATH)),
            list_fields=MappingProxyType(
                {**DEFAULT_LIST_FIELDS, **dict(options.get("list_fields") or {})}
            ),
            time_zone=ZoneInfo(str(options.get("time_zone", DEFAULT_TIME_ZONE))),
            marker_field_id=None if marker_field is None else str(marker_field),
            marker_days=int(options.get("marker_days", DEFAULT_MARKER_DAYS)),
            import_since=datetime(since.year, since.month, since.day, tzinfo=UTC),
            lookback_seconds=None if lookback is None else float(lookback),
            default_requester_email=None if requester is None else str(requester),
        )


def _as_date(value: Any) -> date:
    # YAML reads an unquoted 2005-01-01 as a date; a quoted one stays text.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _list_path(value: Any) -> str | None:
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        return "expected a path that starts and ends with '/', e.g. /app/api/v1/list/ticket/"
    return None


def _list_fields(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "expected a mapping of filter -> request key, e.g. {id_from: start_ticket_id}"
    unknown = sorted(str(k) for k in value if k not in DEFAULT_LIST_FIELDS)
    if unknown:
        known = ", ".join(DEFAULT_LIST_FIELDS)
        return f"unknown filter {', '.join(unknown)} (known: {known})"
    for role, key in value.items():
        if not isinstance(key, str) or not _BODY_KEY.fullmatch(key) or key in _RESERVED:
            return f"{role}: expected a JSON key such as start_ticket_id, got {key!r}"
    merged = {**DEFAULT_LIST_FIELDS, **value}
    if len(set(merged.values())) != len(merged):
        return "two filters share one request key"
    return None


def _time_zone(value: Any) -> str | None:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}; expected an IANA name such as America/Chicago"
    return None


def _marker_field_id(value: Any) -> str | None:
    if not isinstance(value, str) or not _CUSTOM_FIELD.fullmatch(value):
        return "expected a custom field id from ProProfs, e.g. CF007-07"
    return None


def _marker_days(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 89:
        return "expected a whole number of days from 1 to 89"
    return None


def _import_since(value: Any) -> str | None:
    try:
        since = _as_date(value)
    except ValueError:
        return "expected a date, YYYY-MM-DD"
    if since.year < 2000 or since > datetime.now(UTC).date():
        return "expected a date between 2000-01-01 and today"
    return None


_CHECKS: Mapping[str, Callable[[Any], str | None]] = {
    "list_path": _list_path,
    "list_fields": _list_fields,
    "time_zone": _time_zone,
    "marker_field_id": _marker_field_id,
    "marker_days": _marker_days,
    "import_since": _import_since,
    "lookback_seconds": seconds,
    "default_requester_email": email,
}


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with ``options``, each as ``options.KEY: message``."""
    return problems(options, _CHECKS, "ProProfs")
