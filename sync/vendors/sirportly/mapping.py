"""Sirportly records <-> the adapter contract's values, and Sirportly's error bodies.

Pure functions, no I/O. Vendor values are Sirportly's own spelling, as strings:

- ``status`` and ``priority``: the object's ``name`` (``"Waiting for Staff"``, ``"Normal"``);
  Sirportly also accepts the id on writes, but reads give both and the name is what an
  operator recognises in a field map.
- ``queue``: ``"<department id>/<team id>"`` (``"3/2"``), or ``"<department id>"`` for a
  ticket without a team. A queue is a department plus a team on that department's escalation
  path (docs/vendor-apis.md §3.7), so one value names the valid combination and both are written
  together; ids, because ``tickets/update`` takes the department by id only.
- ``assignee``: the user's ``username`` (``tickets/update`` takes ``user`` as username or id).
- ``requester_email``: the data of the ticket's contact method when it is an e-mail one.
- ``description``: the message of the ticket's first update (``tickets/submit`` creates a
  ticket without content; its first ``post_update`` is the description).
- ``due_at`` and every other time: ISO 8601 UTC, ``2012-02-01T15:26:13Z``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sync.vendors.base import RemoteTicket
from sync.vendors.comments import split_marker
from sync.vendors.sirportly.options import parse_queue

#: Canonical field -> the ``tickets/update`` parameter that writes it (queue: two of them).
UPDATE_PARAMS: Mapping[str, str] = {
    "title": "subject",
    "status": "status",
    "priority": "priority",
    "assignee": "user",
    "due_at": "resolution_due_at",
}
READABLE = frozenset(
    {"title", "description", "status", "priority", "queue", "assignee", "requester_email", "due_at"}
)
WRITABLE = frozenset({"title", "status", "priority", "queue", "assignee", "due_at"})
#: Keys a ticket record must carry to be complete; list records and update replies lack
#: ``updates`` (the description) and ``custom_fields`` (the marker).
FULL_KEYS = frozenset({"reference", "updates", "custom_fields"})

# Times before or after these are no ticket's: a reply carrying one is malformed.
_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    """A Sirportly time (ISO 8601, offset or not; naive is taken as UTC) as aware UTC.

    Raises ``ValueError`` for what is not a plausible time.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if not _EARLIEST <= moment < _LATEST:
        raise ValueError(f"implausible time: {value!r}")
    return moment


def utc_text(moment: datetime) -> str:
    """The contract's spelling of a time: ``2012-02-01T15:26:13Z`` (microseconds if any)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def request_time(moment: datetime) -> str:
    """A time for a request parameter: ISO 8601 with an explicit offset.

    Sirportly's "Date/Time Formatting" page was not retrieved (docs/vendor-apis.md §3.11,
    UNCONFIRMED);
    its replies use this form, so it is the safest guess.
    """
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _named(record: Mapping[str, Any], key: str, attribute: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or value.get(attribute) in (None, ""):
        raise ValueError(f"{key} is not an object with a {attribute}: {value!r}")
    return str(value[attribute])


def _queue(record: Mapping[str, Any]) -> str | None:
    department = _named(record, "department", "id")
    team = _named(record, "team", "id")
    if department is None:
        return None
    return department if team is None else f"{department}/{team}"


def _email(record: Mapping[str, Any]) -> str | None:
    method = record.get("customer_contact_method")
    if method is None:
        return None
    if not isinstance(method, dict):
        raise ValueError(f"customer_contact_method is not an object: {method!r}")
    if method.get("method_type") != "email":
        return None
    return str(method["data"]) if method.get("data") else None


def first_update(updates: Any, ours: bool = False) -> Mapping[str, Any] | None:
    """The ticket's body among its ``updates``: the earliest posted when every update carries
    ``posted_at`` (their order is not documented), else the list's first; None when none.
    Raises ``ValueError`` when ``updates`` is not a list of objects.

    Tickets are submitted empty (docs/vendor-apis.md §3.5), and ours get a body only when
    the mirror has a description, posted as the contact. So there is no body, and the first
    update is a comment, when it carries our comment marker, or when the ticket is ``ours``
    (it carries our create marker) and a staff user wrote the first update."""
    if not updates:
        return None
    if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
        raise ValueError("updates is not a list of objects")
    first: Mapping[str, Any] = updates[0]
    if all(u.get("posted_at") for u in updates):
        first = min(updates, key=lambda u: parse_time(u["posted_at"]) or _EARLIEST)
    if split_marker(str(first.get("message") or ""))[1] is not None:
        return None
    author = first.get("author")
    if ours and isinstance(author, dict) and author.get("type") == "User":
        return None
    return first


def _description(record: Mapping[str, Any], ours: bool) -> str | None:
    first = first_update(record.get("updates"), ours)
    message = first.get("message") if first is not None else None
    return str(message) if message not in (None, "") else None


def comment_counter(record: Mapping[str, Any]) -> str | None:
    """``update_count`` and ``last_update_posted_at`` as one string, or None when the record
    carries neither (docs/vendor-apis.md §6.2)."""
    count, last = record.get("update_count"), record.get("last_update_posted_at")
    if count is None and last is None:
        return None
    count_text = "" if isinstance(count, bool) or count is None else str(count)[:40]
    try:
        moment = parse_time(last) if isinstance(last, str) else None
        last_text = utc_text(moment) if moment else ""
    except ValueError:  # compared only for change: the raw text will do
        last_text = str(last)[:80]
    return f"{count_text}|{last_text}"


def _time_text(value: Any) -> str | None:
    moment = parse_time(value)
    return utc_text(moment) if moment else None


def marker_of(record: Mapping[str, Any], marker_field: str) -> str | None:
    """The ticket's create marker (the custom field ``marker_field``), or None."""
    return _marker(record, marker_field)


def _marker(record: Mapping[str, Any], marker_field: str) -> str | None:
    custom = record.get("custom_fields")
    if not isinstance(custom, dict):
        return None
    value = custom.get(marker_field)
    return str(value) if value not in (None, "") else None


def to_remote(record: Any, marker_field: str) -> RemoteTicket:
    """A Sirportly ticket (get, list record, or write reply) as a ``RemoteTicket``.

    Raises ``ValueError`` / ``KeyError`` / ``TypeError`` on a record that is not a ticket;
    the adapter turns those into a ``ProtocolError`` naming the connection and the ticket.
    """
    if not isinstance(record, dict):
        raise TypeError(f"a ticket is an object, not {type(record).__name__}")
    reference = record["reference"]
    if not isinstance(reference, str) or not reference:
        raise ValueError(f"reference is not a string: {reference!r}")
    subject = record.get("subject")
    fields: dict[str, str | None] = {
        "title": None if subject in (None, "") else str(subject),
        "description": _description(record, _marker(record, marker_field) is not None),
        "status": _named(record, "status", "name"),
        "priority": _named(record, "priority", "name"),
        "queue": _queue(record),
        "assignee": _named(record, "user", "username"),
        "requester_email": _email(record),
        "due_at": _time_text(record.get("resolution_due_at")),
    }
    # ``updated_at`` in ticket JSON: UNCONFIRMED (docs/vendor-apis.md §3.3, likely); without it the
    # ticket has no modification time and the engine orders by its own polls.
    return RemoteTicket(
        external_id=reference,
        fields=fields,
        modified_at=parse_time(record.get("updated_at")),
        marker=_marker(record, marker_field),
        raw=dict(record),
        comment_counter=comment_counter(record),
    )


def to_params(changes: Mapping[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """``tickets/update`` form parameters for ``changes``; also what keeps them from being sent.

    Clearing a field is not documented (docs/vendor-apis.md §5.9: public clients send ``user=`` to
    unassign, 3P only), so an empty value is refused here rather than guessed at.
    """
    params: dict[str, str] = {}
    problems: list[str] = []
    for name, value in changes.items():
        if name not in WRITABLE:
            problems.append(f"{name}: Sirportly's update API cannot write it")
        elif value is None or value == "":
            problems.append(f"{name}: Sirportly's documented API cannot clear it")
        elif name == "queue":
            queue = parse_queue(value)
            if queue is None:
                problems.append(f"queue: {value!r} is not '<department id>/<team id>' (e.g. '3/2')")
                continue
            params["department"] = queue[0]
            if queue[1] is not None:
                params["team"] = queue[1]
        elif name == "due_at":
            try:
                moment = parse_time(value)
            except ValueError:
                moment = None
            if moment is None:
                problems.append(f"due_at: {value!r} is not an ISO-8601 time")
            else:
                params["resolution_due_at"] = request_time(moment)
        else:
            params[UPDATE_PARAMS[name]] = value
    return params, problems


def describe_errors(document: Any) -> str:
    """Sirportly's own words from an error body, best effort.

    ``{"errors": {field: [messages]}}`` (validation, DOC), ``{"errors": [messages]}`` (SPQL,
    DOC) and ``{"error": message}`` (not found, DOC) all occur.
    """
    if not isinstance(document, dict):
        return ""
    errors = document.get("errors")
    if isinstance(errors, dict):
        return "; ".join(f"{field} {_join(messages)}" for field, messages in errors.items())
    if isinstance(errors, list):
        return _join(errors)
    error = document.get("error")
    if error not in (None, ""):
        return error if isinstance(error, str) else str(error)
    return ""


def _join(messages: Any) -> str:
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        return ", ".join(str(m) for m in messages)
    return str(messages)


def first_teams(departments: Any, paths: Any) -> dict[str, str]:
    """Department id -> the id of the first team on its escalation path.

    ``departments``: ``objects/departments``, each with ``escalation_path{id,name}`` (as in
    a ticket's department, docs/vendor-apis.md §3.3); ``paths``: ``objects/escalation_paths``,
    each with its ``teams`` in path order (INFERENCE: the list's shape is undocumented).
    Entries of another shape are skipped.
    """
    teams: dict[str, str] = {}
    for path in paths if isinstance(paths, list) else ():
        members = path.get("teams") if isinstance(path, dict) else None
        first = members[0] if isinstance(members, list) and members else None
        if isinstance(first, dict) and first.get("id") is not None and path.get("id") is not None:
            teams[str(path["id"])] = str(first["id"])
    found: dict[str, str] = {}
    for department in departments if isinstance(departments, list) else ():
        if not isinstance(department, dict) or department.get("id") is None:
            continue
        path = department.get("escalation_path")
        key = str(path.get("id")) if isinstance(path, dict) else None
        if key in teams:
            found[str(department["id"])] = teams[key]
    return found
