"""One error tree for ticketsync, grouped by what the caller must do.

::

    TicketSyncError
    ├── UserError                 the operator must fix something; exit 2, no traceback
    │   ├── ConfigError           carries every problem found (``problems``), with its path
    │   └── DatabaseError         database missing, unreachable or out of date (names the path)
    ├── LockHeld                  another instance syncs this; exit 3
    └── SyncError                 this connection's run failed; exit 1, the others go on
        ├── GuardHeld             the mass-change guard stopped the run before any write
        ├── LeaseLost             our lease on the connection was taken over; stop writing
        ├── Interrupted           a shutdown was requested; the run stopped between tickets
        ├── InternalError         a bug or an unforeseen failure inside the run (outcome
        │                         ``internal``): this connection's run only, traceback logged
        └── VendorError           the vendor answered badly, or not at all
            ├── Retriable         timeouts, connection errors, 408, 429, 5xx: back off, retry
            │   └── RateLimited   429 / Retry-After: honour ``retry_after``
            ├── AuthRejected      credentials rejected: the connection stops, the operator acts
            ├── ProtocolError     HTML, truncated JSON, wrong shape: that page or ticket fails
            └── ItemError         this ticket only (validation, unknown value, not found)
                ├── NotFound      the vendor says this ticket does not exist
                └── Unreadable    this ticket's record could not be read; its page goes on

``http.py`` is the one boundary that turns aiohttp exceptions and HTTP statuses into this
tree; nothing else catches aiohttp exceptions. Messages never contain secrets: they are
built from redacted values, and the logging pipeline redacts again. A ``SyncError``'s
message is one printable line: control characters and bidirectional overrides a vendor
sent are shown escaped (``\\x1b``), line breaks and tabs as spaces, so no log line, status
table or terminal can be rewritten by a vendor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sync import redact


def _escapes() -> dict[int, str]:
    table = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
    table.update(dict.fromkeys(map(ord, "\t\n\r"), " "))
    for code in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escapes()


def printable(text: str) -> str:
    """``text`` on one line, with control and bidirectional-override characters escaped."""
    return text.translate(_ESCAPES)


class TicketSyncError(Exception):
    """Base of every error ticketsync raises on purpose."""


class UserError(TicketSyncError):
    """Something the operator must fix; the CLI prints it and exits 2."""


class ConfigError(UserError):
    """The configuration is invalid; ``problems`` lists every problem, each with its path."""

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(self.problems))


class DatabaseError(UserError):
    """The database is missing, unreachable or not at the schema this version needs."""


class LockHeld(TicketSyncError):
    """Another instance holds the lock for what we were asked to sync; exit 3."""


class SyncError(TicketSyncError):
    """A connection's run failed. ``connection`` names it when known."""

    kind = "sync"

    def __init__(self, message: str, *, connection: str | None = None) -> None:
        self.connection = connection
        super().__init__(printable(message))


class GuardHeld(SyncError):
    """The mass-change guard held the run before any write."""

    kind = "guard"


class LeaseLost(SyncError):
    """Our lease on the connection is no longer current; nothing more may be written."""

    kind = "lease"


class Interrupted(SyncError):
    """A shutdown was requested; the run stopped cleanly between two tickets or pages."""

    kind = "interrupted"


class InternalError(SyncError):
    """An exception nobody foresaw ended a connection's run (outcome ``internal``).

    The message is one redacted line naming the connection and the exception's type; the
    traceback goes to the log only.
    """

    kind = "internal"


class VendorError(SyncError):
    """The vendor answered with an error or not at all.

    ``status`` is the HTTP status when there was one; ``vendor_message`` is the vendor's own
    words, already redacted.
    """

    kind = "vendor"

    def __init__(
        self,
        message: str,
        *,
        connection: str | None = None,
        status: int | None = None,
        vendor_message: str | None = None,
    ) -> None:
        self.status = status
        self.vendor_message = None if vendor_message is None else printable(vendor_message)
        super().__init__(message, connection=connection)


class Retriable(VendorError):
    """A transient failure: timeouts, connection errors, 408, 429, 5xx."""

    kind = "retriable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class RateLimited(Retriable):
    """The vendor asked us to slow down (429), possibly with ``retry_after`` seconds."""

    kind = "rate_limited"


class AuthRejected(VendorError):
    """The vendor rejected our credentials; retrying will not help until the operator acts."""

    kind = "auth"


class ProtocolError(VendorError):
    """The vendor's answer is malformed or surprising (HTML, truncated JSON, wrong shape)."""

    kind = "protocol"


class ItemError(VendorError):
    """A failure that concerns one ticket only; the rest of the run goes on."""

    kind = "item"


class NotFound(ItemError):
    """The vendor says the ticket does not exist."""

    kind = "not_found"


class Unreadable(ItemError):
    """One ticket's record could not be read (docs/architecture.md §8.2): that ticket fails
    and is read again next run; its page and the run go on.

    ``external_id``: the ticket's id when the record names one. ``raw``: the record as
    received, redacted and capped at ``RAW_CAP`` characters (for the operator).
    """

    kind = "unreadable"
    RAW_CAP = 1000

    def __init__(
        self,
        message: str,
        *,
        connection: str | None = None,
        external_id: str | None = None,
        raw: object = None,
    ) -> None:
        self.external_id = external_id
        self.raw = _capped(raw, self.RAW_CAP)
        super().__init__(message, connection=connection)


def _capped(raw: object, cap: int) -> str:
    """``raw`` as redacted JSON text (``repr`` when not JSON), at most ``cap`` characters."""
    try:
        text = json.dumps(raw, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(raw)
    # Redact before cutting, so a secret across the cut cannot leak by halves.
    return printable(redact.current().redact(text[: cap * 4]))[:cap]
