"""``connections.NAME.options`` of a Zoho Desk connection: validation and the parsed form.

Keys (documented for operators in ``sync/vendors/zoho_desk/adapter.py``'s docstring):
``lookback_seconds``, ``marker_field``, ``default_department_id``, ``default_contact_id``,
``disable_closure_notification``, ``comment_sweep_seconds``. Unknown keys are problems,
like everywhere in the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.vendors.options import boolean, problems, seconds

DEFAULT_MARKER_FIELD = "cf_ticketsync_marker"
#: How often the open linked tickets' ``commentCount`` is swept (docs/architecture.md §8.5).
DEFAULT_COMMENT_SWEEP_SECONDS = 600.0

# A Zoho custom field's API name: "cf_" and letters, digits, underscores.
_FIELD_NAME = re.compile(r"cf_[A-Za-z0-9_]{1,60}")
_ZOHO_ID = re.compile(r"[0-9]{1,25}")


@dataclass(frozen=True)
class ZohoOptions:
    #: None: the connection uses ``sync.lookback_seconds`` (``AdapterContext.lookback_seconds``).
    lookback_seconds: float | None = None
    marker_field: str = DEFAULT_MARKER_FIELD
    default_department_id: str | None = None
    default_contact_id: str | None = None
    disable_closure_notification: bool = False
    #: Seconds between two sweeps of the open linked tickets' comment counters (with
    #: comments pulled on the connection); 0 sweeps on every run.
    comment_sweep_seconds: float = DEFAULT_COMMENT_SWEEP_SECONDS

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ZohoOptions:
        """Parse options that ``validate_options`` found no problem with."""

        def text(key: str) -> str | None:
            value = options.get(key)
            return None if value is None else str(value)

        return cls(
            lookback_seconds=(
                float(options["lookback_seconds"]) if "lookback_seconds" in options else None
            ),
            marker_field=str(options.get("marker_field", DEFAULT_MARKER_FIELD)),
            default_department_id=text("default_department_id"),
            default_contact_id=text("default_contact_id"),
            disable_closure_notification=bool(options.get("disable_closure_notification", False)),
            comment_sweep_seconds=float(
                options.get("comment_sweep_seconds", DEFAULT_COMMENT_SWEEP_SECONDS)
            ),
        )


def _marker_field(value: Any) -> str | None:
    if not isinstance(value, str) or not _FIELD_NAME.fullmatch(value):
        return "expected a custom field's API name, such as cf_ticketsync_marker"
    return None


def _zoho_id(value: Any) -> str | None:
    # YAML reads an unquoted id as an integer; both spellings are accepted.
    if isinstance(value, bool) or not _ZOHO_ID.fullmatch(str(value)):
        return "expected a Zoho id (digits), e.g. '1892000000006907'"
    return None


_CHECKS: Mapping[str, Callable[[Any], str | None]] = {
    "lookback_seconds": seconds,
    "marker_field": _marker_field,
    "default_department_id": _zoho_id,
    "default_contact_id": _zoho_id,
    "disable_closure_notification": boolean,
    "comment_sweep_seconds": seconds,
}


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with ``options``, each as ``options.KEY: message``."""
    return problems(options, _CHECKS, "Zoho Desk")
