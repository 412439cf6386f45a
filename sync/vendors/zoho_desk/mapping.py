"""Zoho Desk records <-> the adapter contract's values, and Zoho's error envelope.

Pure functions, no I/O. Vendor values are Zoho's own strings: status and priority names
(``"On Hold"``, ``"High"``), department and agent ids as strings (Zoho's ids are large
integers serialised as strings), times as ISO-8601 UTC.

Times: Zoho documents ``yyyy-MM-ddTHH:mm:ss.SSSZ``; some OAS examples show epoch milliseconds
instead (docs/vendor-apis.md §4.11, UNCONFIRMED on the wire), so ``parse_time`` accepts both. Read
times
are normalised to one spelling (``2026-01-02T03:04:05Z``, milliseconds only when non-zero) so
that the same instant always compares equal, whichever way Zoho wrote it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.vendors.base import RemoteTicket

#: Canonical field -> Zoho ticket attribute.
FIELD_NAMES: Mapping[str, str] = {
    "title": "subject",
    "description": "description",
    "status": "status",
    "priority": "priority",
    "queue": "departmentId",
    "assignee": "assigneeId",
    "requester_email": "email",
    "due_at": "dueDate",
}
ZOHO_NAMES = {zoho: canonical for canonical, zoho in FIELD_NAMES.items()}
#: Fields whose Zoho schema does not admit null: they cannot be cleared.
NOT_NULL = frozenset({"title", "status", "queue"})
#: Fields that must be numeric ids.
ID_FIELDS = frozenset({"queue", "assignee"})
#: Attributes a search result must carry to be used without fetching the ticket.
PULL_KEYS = frozenset({"id", "modifiedTime", *FIELD_NAMES.values()})

_MARKER_SAFE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_MARKER_ENCODED = "b32."
_DIGITS = re.compile(r"[0-9]+")


def is_zoho_id(value: str) -> bool:
    return bool(_DIGITS.fullmatch(value))


def parse_time(value: Any) -> datetime | None:
    """A Zoho time (ISO string, or epoch milliseconds as number or digits) as aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Zoho's times are UTC
    return moment.astimezone(UTC)


def canonical_time(moment: datetime) -> str:
    """``2026-01-02T03:04:05Z``, with ``.mmm`` only when the milliseconds are not zero."""
    moment = moment.astimezone(UTC)
    millis = moment.microsecond // 1000
    fraction = f".{millis:03d}" if millis else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def zoho_time(moment: datetime) -> str:
    """The spelling Zoho documents for requests: ``2026-01-02T03:04:05.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_marker(marker: str) -> str:
    """The marker as stored in the custom field: as is when Zoho's patterns admit it.

    Zoho's custom-field values allow a limited character set and its search treats ``*`` as
    a wildcard, so any other marker is stored base32-encoded (reversibly) with a prefix.
    """
    if _MARKER_SAFE.fullmatch(marker) and not marker.startswith(_MARKER_ENCODED):
        return marker
    encoded = base64.b32encode(marker.encode("utf-8")).decode("ascii").rstrip("=").lower()
    return _MARKER_ENCODED + encoded


def decode_marker(stored: Any) -> str | None:
    if not isinstance(stored, str) or not stored:
        return None
    if not stored.startswith(_MARKER_ENCODED):
        return stored
    data = stored[len(_MARKER_ENCODED) :].upper()
    try:
        return base64.b32decode(data + "=" * (-len(data) % 8)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return stored


def list_marker(item: Mapping[str, Any], marker_field: str) -> str | None:
    """The create marker of a ticket-list item that asked for ``marker_field``.

    Where the list puts a requested custom field is UNCONFIRMED (docs/vendor-apis.md
    §4.4): under ``cf`` as in a full ticket, or at the top level; both are read.
    """
    custom = item.get("cf")
    stored = custom.get(marker_field) if isinstance(custom, dict) else None
    return decode_marker(stored if stored is not None else item.get(marker_field))


def list_created(item: Mapping[str, Any]) -> datetime | None:
    """A list item's ``createdTime`` (ISO, or epoch milliseconds as in Zoho's own example),
    or None when it is missing or unreadable: the scan then goes on."""
    try:
        return parse_time(item.get("createdTime"))
    except (ValueError, OverflowError, OSError):
        return None


def _vendor_value(canonical: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if canonical == "due_at":
        moment = parse_time(value)
        return canonical_time(moment) if moment else None
    return str(value)


def to_remote(record: Mapping[str, Any], marker_field: str) -> RemoteTicket:
    """A Zoho ticket (get, search item, or write reply) as a ``RemoteTicket``.

    Raises ``ValueError`` / ``KeyError`` on a record that is not a ticket; the adapter turns
    those into a ``ProtocolError`` naming the ticket.
    """
    external_id = str(record["id"])
    fields = {name: _vendor_value(name, record.get(zoho)) for name, zoho in FIELD_NAMES.items()}
    custom = record.get("cf") or {}
    modified_at = parse_time(record.get("modifiedTime"))
    if modified_at is not None and modified_at > datetime.now(UTC) + timedelta(days=2):
        # It would carry the pull's cursor past every later change (and Zoho refuses it).
        raise ValueError(f"modifiedTime {record.get('modifiedTime')!r} is in the future")
    return RemoteTicket(
        external_id=external_id,
        fields=fields,
        modified_at=modified_at,
        marker=decode_marker(custom.get(marker_field)) if isinstance(custom, dict) else None,
        raw=dict(record),
        comment_counter=comment_counter(record),
    )


def comment_counter(record: Mapping[str, Any]) -> str | None:
    """The ticket's ``commentCount`` as a digit string (Zoho sends string or int), or None."""
    value = record.get("commentCount")
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return (text.lstrip("0") or "0") if text.isascii() and text.isdigit() else None


def to_body(changes: Mapping[str, str | None]) -> tuple[dict[str, Any], list[str]]:
    """A PATCH/POST body for ``changes``; also the problems that keep it from being sent."""
    body: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in changes.items():
        zoho = FIELD_NAMES.get(name)
        if zoho is None:
            problems.append(f"{name}: not a field Zoho Desk syncs")
        elif value is None or value == "":
            if name in NOT_NULL:
                problems.append(f"{name}: Zoho Desk cannot clear {zoho}")
            else:
                body[zoho] = None
        elif name in ID_FIELDS and not is_zoho_id(value):
            problems.append(f"{name}: {value!r} is not a Zoho id (digits)")
        elif name == "due_at":
            try:
                moment = parse_time(value)
            except ValueError:
                moment = None
            if moment is None:
                problems.append(f"{name}: {value!r} is not an ISO-8601 time")
            else:
                body[zoho] = zoho_time(moment)
        else:
            body[zoho] = value
    return body, problems


def envelope(document: Any) -> tuple[str | None, str, list[dict[str, Any]]]:
    """``(errorCode, message, errors)`` of Zoho's error envelope (docs/vendor-apis.md §4.8)."""
    if not isinstance(document, dict):
        return None, "", []
    errors = document.get("errors")
    items = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    code = document.get("errorCode")
    return (str(code) if code else None), str(document.get("message") or ""), items


def describe_field_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """``status (invalid: ...)`` for each entry, with Zoho's field names made canonical."""
    parts = []
    for error in errors:
        pointer = str(error.get("fieldName") or "").lstrip("/")
        name = ZOHO_NAMES.get(pointer, pointer) or "?"
        kind = error.get("errorType") or "invalid"
        detail = error.get("errorMessage")
        parts.append(f"{name} ({kind}{': ' + str(detail) if detail else ''})")
    return ", ".join(parts)
