"""ProProfs Help Desk records <-> the adapter contract's values: ids, times, markers, envelope.

Pure functions, no I/O. Vendor values are ProProfs's own strings: priorities ``high``,
``normal``, ``low`` (DOC [P-update]); inbox ids (``IB238-436``) as ``queue`` and staff ids
(``ST007-007``) as ``assignee`` (DOC); status as the list answers it (its values are
UNCONFIRMED, docs/vendor-apis.md §2.7, so they pass through and the connection's ``fields`` map
judges).

Ids: create answers ``"ticket_id": "00700"``, a string with leading zeros, while update takes
a Number (DOC, both pages). ``external_id`` keeps the spelling of the reply; ``id_key`` (the
form used for comparisons) drops the leading zeros; ``wire_id`` is the Number sent.

Times: the list answers ``created_date_time`` / ``modified_date_time`` in the account's time
zone (DOC [P-list]); their spelling is UNCONFIRMED, so ``parse_local`` takes ISO-8601 with a
space or a ``T`` (an explicit offset wins over the account zone) and the US spellings the
Help Desk UI shows. Stored times are UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync.vendors.base import FieldProblem, RemoteTicket

#: Canonical field -> the key of a ProProfs ticket (list items, create and update bodies).
FIELD_KEYS: Mapping[str, str] = {
    "title": "subject",
    "description": "description",
    "status": "status",
    "priority": "priority",
    "queue": "inbox",
    "assignee": "staff",
    "requester_email": "email",
}
READABLE = frozenset(FIELD_KEYS)
#: No status in the documented update API (DOC [P-update], docs/vendor-apis.md §2.6).
WRITABLE = READABLE - {"status"}
PRIORITIES = ("high", "normal", "low")
#: Keys tried, in order, for a list item's ticket id: ``ticket_id`` as create and update
#: answer it; ``id`` in case the list spells it differently (UNCONFIRMED).
ID_KEYS = ("ticket_id", "id")

_DIGITS = re.compile(r"[0-9]+")
_MARKER = re.compile(r"(?:\A|\n\n)\[ticketsync:([^\]\n]+)\]\s*\Z")
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p")


class BadRecord(ValueError):
    """A list item that is not a usable ticket; the adapter names the connection and ticket."""


def id_key(external_id: str) -> str:
    """``"00700"`` and ``"700"`` are one ticket: digits compare without leading zeros."""
    text = external_id.strip()
    return (text.lstrip("0") or "0") if _DIGITS.fullmatch(text) else text


def wire_id(external_id: str) -> int | None:
    """The Number the update API and the id filter take, or None for a non-ProProfs id."""
    text = external_id.strip()
    return int(text) if _DIGITS.fullmatch(text) else None


def spelled_id(value: Any) -> str:
    """A ticket id from a reply, as the reply spells it (``"00700"`` stays ``"00700"``)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRecord(f"ticket id {value!r} is neither a string nor a number")
    text = str(value).strip()
    if not _DIGITS.fullmatch(text):
        raise BadRecord(f"ticket id {value!r} is not a ProProfs ticket number")
    return text


def record_id(record: Mapping[str, Any]) -> str:
    for key in ID_KEYS:
        if key in record:
            return spelled_id(record[key])
    raise BadRecord("no ticket_id")


def parse_local(value: Any, zone: ZoneInfo, *, now: datetime | None = None) -> datetime:
    """A ProProfs time (the account's zone unless it carries an offset) as aware UTC."""
    if not isinstance(value, str) or not value.strip() or value.startswith("0000"):
        raise BadRecord(f"not a time: {value!r}")
    text = value.strip()
    moment = _parse(text)
    if moment is None:
        raise BadRecord(f"not a time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)  # fold=0: the first of an ambiguous DST hour
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted past the calendar's end
        raise BadRecord(f"absurd time {value!r}") from None
    latest = (now or datetime.now(UTC)) + timedelta(days=2)
    if not _EARLIEST <= moment <= latest:
        raise BadRecord(f"absurd time {value!r} (read as {moment:%Y-%m-%d %H:%M} UTC)")
    return moment


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for spelling in _FORMATS:
        try:
            return datetime.strptime(text, spelling)
        except ValueError:
            continue
    return None


def local_text(moment: datetime, zone: ZoneInfo) -> str:
    """A filter value: ``YYYY-MM-DD HH:MM:SS`` in the account's zone (spelling UNCONFIRMED)."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def with_marker(description: str | None, marker: str) -> str:
    """The description carrying the create marker on a last line of its own."""
    if not marker or "]" in marker or "\n" in marker:
        raise ValueError(f"marker {marker!r} cannot be written into a description")
    line = f"[ticketsync:{marker}]"
    return f"{description}\n\n{line}" if description else line


def split_marker(description: str | None) -> tuple[str | None, str | None]:
    """``(description without the marker line, marker)``."""
    if not description:
        return description or None, None
    found = _MARKER.search(description)
    if found is None:
        return description, None
    return description[: found.start()] or None, found.group(1)


def custom_value(record: Mapping[str, Any], field_id: str) -> str | None:
    """A custom field's value: ``[{id, value}]`` as create sends it (DOC), or ``{id: value}``."""
    fields = record.get("custom_fields")
    if isinstance(fields, Mapping):
        value = fields.get(field_id)
        return None if value in (None, "") else str(value)
    if isinstance(fields, list):
        for item in fields:
            if isinstance(item, Mapping) and str(item.get("id")) == field_id:
                value = item.get("value")
                return None if value in (None, "") else str(value)
    return None


def _text(name: str, value: Any) -> str | None:
    # Inbox and staff may come as an id or as an object holding one (UNCONFIRMED).
    if isinstance(value, Mapping) and name in ("queue", "assignee"):
        value = value.get("id")
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRecord(f"{FIELD_KEYS[name]} is {type(value).__name__}, not text")
    return str(value)


def to_remote(
    record: Any,
    zone: ZoneInfo,
    *,
    marker_field_id: str | None,
    required: frozenset[str] = frozenset(),
) -> RemoteTicket:
    """A ticket of the list as a ``RemoteTicket``; ``BadRecord`` if it is not one.

    ``required`` names the fields whose key must be present (those the connection syncs):
    the list's field set is UNCONFIRMED, and reading an absent key as "empty" would erase the
    mirror's value, so an absent key fails loudly instead.
    """
    if not isinstance(record, Mapping):
        raise BadRecord(f"a list item is {type(record).__name__}, not an object")
    fields: dict[str, str | None] = {}
    unreadable: dict[str, FieldProblem] = {}
    for name, key in FIELD_KEYS.items():
        try:
            fields[name] = _field(name, key, record, required)
        except BadRecord as exc:  # that field waits; the rest syncs (docs/architecture.md §8.2)
            value = record.get(key)
            unreadable[name] = FieldProblem(None if value is None else str(value), str(exc))
    fields["description"], in_description = split_marker(fields.pop("description", None))
    if "description" in unreadable:
        del fields["description"]
    marker = custom_value(record, marker_field_id) if marker_field_id else in_description
    if "modified_date_time" not in record:
        raise BadRecord("no modified_date_time")
    return RemoteTicket(
        external_id=record_id(record),
        fields=fields,
        modified_at=parse_local(record["modified_date_time"], zone),
        marker=marker,
        raw=dict(record),
        comment_counter=message_counter(record),
        unreadable=unreadable,
    )


def message_counter(record: Mapping[str, Any]) -> str | None:
    """``"<number of messages>|<last message's created>"``: ProProfs has no conversation
    counter, so it is derived from the list item's ``messages`` (None without them)."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        return None
    last = messages[-1].get("created") if messages and isinstance(messages[-1], Mapping) else ""
    return f"{len(messages)}|{'' if last is None else str(last)[:60]}"


def _field(name: str, key: str, record: Mapping[str, Any], required: frozenset[str]) -> str | None:
    """One field's vendor value; ``BadRecord`` when it cannot be read."""
    if key not in record and name in required:
        # reading an absent key as "empty" would erase the mirror's value
        raise BadRecord(f"no {key!r} in the ticket (connections.fields syncs {name})")
    value = _text(name, record.get(key))
    if name == "priority" and value is not None:
        if value.lower() not in PRIORITIES:
            raise BadRecord(f"unknown priority {value!r} (ProProfs documents high|normal|low)")
        return value.lower()
    return value


def carries_marker_field(record: Any, marker_field_id: str | None) -> bool:
    """Whether the list item holds the key the marker lives in (so "no marker" means it)."""
    if not isinstance(record, Mapping):
        return False
    return ("custom_fields" if marker_field_id else "description") in record


def to_body(changes: Mapping[str, str | None]) -> tuple[dict[str, Any], list[str]]:
    """Update/create body keys for ``changes``, and the problems that keep it from being sent."""
    body: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in changes.items():
        key = FIELD_KEYS.get(name)
        if key is None or name not in WRITABLE:
            problems.append(f"{name}: not writable through ProProfs' update API")
        elif value is None or value == "":
            # The pages document no way to clear a field (is "" accepted? UNCONFIRMED).
            problems.append(f"{name}: ProProfs' API documents no way to clear {key}")
        elif name == "priority" and value not in PRIORITIES:
            problems.append(f"priority: {value!r} is not one of high, normal, low")
        else:
            body[key] = value
    return body, problems


def envelope(document: Any) -> tuple[str | None, str]:
    """``(status, description)`` of a reply: ``{"status": "error", "description": ...}``."""
    if not isinstance(document, Mapping):
        return None, ""
    status = document.get("status")
    description = document.get("description") or document.get("message") or ""
    return (
        status.strip().lower() if isinstance(status, str) else None,
        " ".join(str(description).split()),
    )
