"""Kapture records <-> ``RemoteTicket``: field names, key/name tables, local times, the marker.

Kapture answers in three shapes (docs/vendor-apis.md §1.3-docs/vendor-apis.md §1.6): the ``ticket``
object of an add or
update reply (sub-status as a *key*, ``substatusName`` beside it), the ``task_details`` of a
search-ticket-by-ticket-id element and the summaries of the created-date pull (sub-status as a
*display name*). Only parts of each are documented, so every field is looked up under each
spelling seen (``FIELD_KEYS``), and a field whose keys are all absent from a record is left
out of ``RemoteTicket.fields``: the engine then leaves it alone instead of reading "not
reported" as "emptied".

Times: Kapture writes local times without a zone (``yyyy-MM-dd HH:mm:ss`` in add/update
replies, ``dd-MM-yyyy HH:mm`` in get/pull) and epoch milliseconds; the tenant's zone is an
option (IST by default, inferred: docs/vendor-apis.md §1.11). Everything handed to the engine is
UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from sync.vendors.base import FieldProblem, RemoteTicket

#: Canonical field -> the record keys that carry it, in order of preference. UNCONFIRMED
#: beyond the documented examples: ``detail`` as the add call's ``ticket_details``,
#: ``email``/``customerEmail`` as ``email_id``, ``taskEnddate`` as ``due_date`` (the add
#: reply echoes ``due_date`` into ``taskEnddate``).
FIELD_KEYS: Mapping[str, tuple[str, ...]] = {
    "title": ("title", "taskTitle"),
    "description": ("detail", "ticket_details"),
    "status": ("substatus", "subStatus", "sub_status", "substatusName"),
    "priority": ("priority",),
    "queue": ("queueKey", "queue", "queueName"),
    "assignee": ("assignedToName",),
    "requester_email": ("customerEmail", "email", "email_id"),
    "due_at": ("taskEnddate", "due_date"),
}
READABLE = frozenset(FIELD_KEYS)
ID_KEYS = ("ticketId", "ticket_id", "Ticket Id")
_COUNTER_PART = 60  # characters of a vendor value kept in a comment counter
MARKER_KEY = "ticketsync_marker"  # the add call's "extra associate body" field

_TAG = re.compile(r"\[ticketsync:([^\]\s<]+)\]")
_TAG_WITH_GAP = re.compile(r"(?:\s|<br\s*/?>)*\[ticketsync:[^\]\s<]+\]", re.IGNORECASE)
_LOCAL_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%Y-%m-%d",
    "%d-%m-%Y",
)
_YEARS = range(2000, 2101)  # outside: an absurd date, not a ticket's


class BadRecord(ValueError):
    """A record that cannot be read; the message says what is wrong with it."""


def marker_tag(marker: str) -> str:
    """How the create marker is written into ``ticket_details``."""
    return f"[ticketsync:{marker}]"


def with_marker(description: str | None, marker: str) -> str:
    return f"{description}\n\n{marker_tag(marker)}" if description else marker_tag(marker)


def without_marker(text: str) -> str:
    return _TAG_WITH_GAP.sub("", text)


def find_marker(record: Any, depth: int = 0) -> str | None:
    """The marker anywhere in a record: the extra body field, or the tag in any text."""
    if depth > 6:
        return None
    if isinstance(record, str):
        match = _TAG.search(record)
        return match.group(1) if match else None
    if isinstance(record, Mapping):
        for key, value in record.items():
            if str(key).lower() == MARKER_KEY and isinstance(value, str) and value:
                return value
        values: Iterator[Any] = iter(record.values())
    elif isinstance(record, list):
        values = iter(record)
    else:
        return None
    for value in values:
        found = find_marker(value, depth + 1)
        if found:
            return found
    return None


# -- times ---------------------------------------------------------------------------------


def parse_time(value: Any, zone: tzinfo) -> datetime | None:
    """A Kapture time (local text in ``zone`` or epoch milliseconds) in UTC; None if empty."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise BadRecord(f"time {value!r} is not a time")
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        try:
            moment = datetime.fromtimestamp(int(value) / 1000, UTC)
        except (OverflowError, OSError, ValueError):  # beyond time_t, NaN, infinity
            raise BadRecord(f"time {value!r} is absurd") from None
    elif isinstance(value, str):
        moment = _parse_local(value.strip(), zone)
    else:
        raise BadRecord(f"time {value!r} is not a time")
    if moment.year not in _YEARS:
        raise BadRecord(f"time {value!r} is absurd (year {moment.year})")
    return moment


def _parse_local(text: str, zone: tzinfo) -> datetime:
    for pattern in _LOCAL_FORMATS:
        try:
            local = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return local.replace(tzinfo=zone).astimezone(UTC)
    raise BadRecord(f"time {text!r} is in none of Kapture's formats")


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 time from the engine (``Z`` or an offset; naive means UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_text(moment: datetime, zone: tzinfo) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in the tenant's zone, as Kapture's writes take dates."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


# -- key <-> name tables -------------------------------------------------------------------


class Table:
    """A tenant's key -> display name table. Writes take keys; reads may give either."""

    def __init__(self, what: str, option: str, entries: Mapping[str, str]) -> None:
        self.what = what
        self.option = option
        self.names = dict(entries)
        self._by_name = {name.strip().casefold(): key for key, name in entries.items()}

    def __bool__(self) -> bool:
        return bool(self.names)

    def key(self, value: str) -> str | None:
        """The key ``value`` is, or names; None when the table knows neither."""
        if value in self.names:
            return value
        return self._by_name.get(value.strip().casefold())

    def read(self, value: str) -> str:
        key = self.key(value)
        if key is None:
            raise BadRecord(
                f"unknown {self.what} {value!r} (add its key and name to options.{self.option})"
            )
        return key


class Reader:
    """Turns Kapture records into ``RemoteTicket``s for one connection."""

    def __init__(self, zone: tzinfo, sub_statuses: Table, queues: Table, priorities: Table):
        self.zone = zone
        self.sub_statuses = sub_statuses
        self.queues = queues
        self.priorities = priorities

    def ticket(self, flat: Mapping[str, Any], whole: Any = None) -> RemoteTicket:
        """``flat``: the ticket's own fields; ``whole``: the record around it (for the marker)."""
        external_id = _external_id(flat, whole)
        fields: dict[str, str | None] = {}
        unreadable: dict[str, FieldProblem] = {}
        for name, keys in FIELD_KEYS.items():
            present = [k for k in keys if k in flat]
            if present:
                try:
                    fields[name] = self._field(name, flat, present)
                except BadRecord as exc:  # that field waits; the rest syncs (§8.2)
                    value = _first(flat, present)
                    unreadable[name] = FieldProblem(None if value is None else str(value), str(exc))
        raw = whole if isinstance(whole, Mapping) else flat
        return RemoteTicket(
            external_id=external_id,
            fields=fields,
            modified_at=None,  # Kapture documents no modification time (docs/architecture.md §7.2)
            marker=find_marker(whole if whole is not None else flat),
            raw=dict(raw),
            comment_counter=comment_counter(flat, whole),
            unreadable=unreadable,
        )

    def _field(self, name: str, flat: Mapping[str, Any], keys: list[str]) -> str | None:
        if name == "status":
            return self._status(flat, keys)
        value = _first(flat, keys)
        if value is None:
            return None
        if name == "due_at":
            moment = parse_time(value, self.zone)
            return iso_utc(moment) if moment else None
        if isinstance(value, dict | list):
            raise BadRecord(f"{keys[0]} is {type(value).__name__}, expected text")
        text = str(value)
        if name == "description":
            return without_marker(text) or None
        if name == "queue" and self.queues:
            return self.queues.read(text)
        if name == "priority" and self.priorities:
            return self.priorities.read(text)
        return text

    def _status(self, flat: Mapping[str, Any], keys: list[str]) -> str | None:
        # The add/update ``ticket`` object has the key in ``substatus`` and the name in
        # ``substatusName``; get and pull give the name in ``substatus``: either is read.
        values = [str(flat[k]) for k in keys if flat.get(k) not in (None, "")]
        if not values:
            return None
        for value in values:
            key = self.sub_statuses.key(value)
            if key is not None:
                return key
        return self.sub_statuses.read(values[0])


def note_entries(record: Any) -> list[Any] | None:
    """The notes of one get-ticket element, or None when it holds none at all."""
    if not isinstance(record, Mapping):
        return None
    holder = record.get("conversation_type")
    # tolerated: the notes directly on the element
    notes = holder.get("notes") if isinstance(holder, Mapping) else record.get("notes")
    return notes if isinstance(notes, list) else None


def comment_counter(flat: Mapping[str, Any], whole: Any) -> str | None:
    """The conversation counter of a Kapture record, compared only for change.

    With notes in the record (``options.read_notes``): ``"<notes>|<last sentDate>"``. Else
    ``"<totalConversationCount>|<lastConversationTime>"`` from the add/update ``ticket``
    object (DOC), or ``"|<lastConvesationTime>"`` (sic) from a pull summary; None without
    any of them (get-ticket's ``task_details`` documents none)."""
    entries = note_entries(whole) if whole is not None else None
    if entries is not None:
        last = entries[-1].get("sentDate") if entries and isinstance(entries[-1], Mapping) else ""
        return f"{len(entries)}|{_part(last)}"
    count = flat.get("totalConversationCount")
    last = flat.get("lastConversationTime", flat.get("lastConvesationTime"))
    if count is None and last is None:
        return None
    return f"{_part(count)}|{_part(last)}"


def _part(value: Any) -> str:
    return "" if value is None else str(value)[:_COUNTER_PART]


def _first(flat: Mapping[str, Any], keys: list[str]) -> Any:
    for key in keys:
        value = flat.get(key)
        if value not in (None, ""):
            return value
    return None


def _external_id(flat: Mapping[str, Any], whole: Any) -> str:
    sources = [flat, whole] if isinstance(whole, Mapping) else [flat]
    for source in sources:
        for key in ID_KEYS:
            value = source.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    raise BadRecord("the record carries no ticketId")
