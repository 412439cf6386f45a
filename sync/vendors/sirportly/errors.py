"""Sirportly's error statuses as rows of ``sync.vendors.errors`` (its body, ``{"errors":
...}``, says what went wrong; the status says what kind of failure it is)."""

from __future__ import annotations

from sync.errors import AuthRejected, ItemError, NotFound
from sync.vendors.errors import ErrorRule

AUTH_HINT = (
    "Check connections.{name}.credentials.token and .secret (Sirportly: Admin > API Tokens), "
    "and that the token may call this method from this host's IP address."
)

ERRORS = (
    ErrorRule(AuthRejected, statuses=frozenset({403}), hint=". " + AUTH_HINT),
    # Also a referenced object (status, team, user...) that does not exist.
    ErrorRule(
        NotFound,
        statuses=frozenset({404}),
        hint=" (the ticket or an object it names does not exist)",
    ),
    ErrorRule(ItemError),  # 409 not permitted, 422 validation
)
