"""``connections.NAME.options`` of a Sirportly connection, and the create parameters they fill.

Keys (documented for operators in ``sync/vendors/sirportly/adapter.py``'s docstring):
``disable_rules``, ``marker_field``, ``lookback_seconds``, ``default_queue``,
``default_requester_email``, ``comment_user``. Unknown keys are problems, like everywhere in
the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.vendors.options import boolean, email, problems, seconds

DEFAULT_MARKER_FIELD = "ticketsync_marker"

# A custom field's system name, as it goes into ``custom[NAME]``.
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_QUEUE = re.compile(r"([0-9]{1,18})(?:/([0-9]{1,18}))?")


def parse_queue(value: str) -> tuple[str, str | None] | None:
    """``"3/2"`` -> ``("3", "2")``; ``"3"`` -> ``("3", None)``; None if not a queue value."""
    match = _QUEUE.fullmatch(value)
    return (match.group(1), match.group(2)) if match else None


def department_of(value: str) -> str | None:
    """A pulled ``"3/2"``'s department alone (``"3"``), which a ``fields.queue`` entry may
    name to match department 3 whatever the team; None when ``value`` has no team."""
    queue = parse_queue(value)
    return queue[0] if queue is not None and queue[1] is not None else None


@dataclass(frozen=True)
class SirportlyOptions:
    disable_rules: bool = True
    marker_field: str = DEFAULT_MARKER_FIELD
    #: None: the connection uses ``sync.lookback_seconds`` (``AdapterContext.lookback_seconds``).
    lookback_seconds: float | None = None
    default_queue: str | None = None
    default_requester_email: str | None = None
    #: The Sirportly user (username or id) comments are posted as when their author has no
    #: mapped user; None: no ``user`` is sent (a user token posts as its own user).
    comment_user: str | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SirportlyOptions:
        """Parse options that ``validate_options`` found no problem with."""

        def text(key: str) -> str | None:
            value = options.get(key)
            return None if value is None else str(value)

        return cls(
            disable_rules=bool(options.get("disable_rules", True)),
            marker_field=str(options.get("marker_field", DEFAULT_MARKER_FIELD)),
            lookback_seconds=(
                float(options["lookback_seconds"]) if "lookback_seconds" in options else None
            ),
            default_queue=text("default_queue"),
            default_requester_email=text("default_requester_email"),
            comment_user=text("comment_user"),
        )


def _marker_field(value: Any) -> str | None:
    if not isinstance(value, str) or not _FIELD_NAME.fullmatch(value):
        return "expected a custom field's system name (letters, digits, _), e.g. ticketsync_marker"
    return None


def _queue(value: Any) -> str | None:
    # a string, quoted in YAML: an unquoted department id would read as a number
    queue = parse_queue(value) if isinstance(value, str) else None
    if queue is None:
        return "expected '<department id>/<team id>' or '<department id>', e.g. '3/2'"
    return None


def _user(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return "expected a Sirportly username or user id, e.g. charlie"
    return None


_CHECKS: Mapping[str, Callable[[Any], str | None]] = {
    "disable_rules": boolean,
    "marker_field": _marker_field,
    "lookback_seconds": seconds,
    "default_queue": _queue,
    "default_requester_email": email,
    "comment_user": _user,
}


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with ``options``, each as ``options.KEY: message``."""
    return problems(options, _CHECKS, "Sirportly")


def submit_params(
    values: Mapping[str, str | None], marker: str, options: SirportlyOptions
) -> tuple[dict[str, str], list[str]]:
    """``tickets/submit`` parameters for a new ticket; also what keeps it from being sent.

    Sirportly requires a subject, status, priority, team and contact (docs/vendor-apis.md
    §3.5); the queue and contact fall back to the options' defaults, the marker goes in its
    custom field. A department-only queue (``"3"``) sends ``department`` without ``team``:
    the adapter adds the first team on the department's escalation path.
    """
    present = {k: v for k, v in values.items() if v not in (None, "")}
    problems = []
    params: dict[str, str] = {}
    for name, param in (("title", "subject"), ("status", "status"), ("priority", "priority")):
        if name in present:
            params[param] = str(present[name])
        else:
            problems.append(f"{name}: needed to create")
    queue_value = present.get("queue") or options.default_queue
    queue = parse_queue(queue_value) if queue_value else None
    if queue is None:
        problems.append(
            "queue: needed to create, as '<department id>/<team id>' or '<department id>' "
            "(or set options.default_queue)"
        )
    else:
        params["department"] = queue[0]
        if queue[1] is not None:
            params["team"] = queue[1]
    email = present.get("requester_email") or options.default_requester_email
    if email:
        params["contact_method_type"] = "email"
        params["contact_method_data"] = email
        params["contact_name"] = email.split("@", 1)[0] or email
    else:
        problems.append(
            "requester_email: needed to create (or set options.default_requester_email)"
        )
    if present.get("assignee"):
        params["user"] = str(present["assignee"])
    params[f"custom[{options.marker_field}]"] = marker
    return params, problems
