"""ProProfs's errors (``{"status": "error", "description": ...}``; the HTTP status of a
failure is UNCONFIRMED, so the body decides) as rows of ``sync.vendors.errors``.

- "Unable to authenticate request using account email and token" (the vendor page's text),
  or HTTP 401/403 -> ``AuthRejected`` naming the credentials to fix;
- a rate-limit text (wording UNCONFIRMED) -> ``RateLimited``;
- a refusal of a list request -> ``ProtocolError`` (our filters or ``options.list_path`` are
  wrong for this account, nothing a retry or another ticket would fix);
- a write's "not found" (wording UNCONFIRMED) or 404 -> ``NotFound``; any other -> ``ItemError``.
"""

from __future__ import annotations

from sync.errors import AuthRejected, ItemError, NotFound, ProtocolError, RateLimited
from sync.vendors.errors import ErrorRule

AUTH_TEXT = "unable to authenticate"  # DOC: "Unable to authenticate request using ..."
_AUTH_HINT = (
    ". ProProfs rejected connections.{name}.credentials.account_email and token: use the "
    "e-mail the Help Desk account was registered with and the API key from the Help Desk's "
    "'My Account' page. Not retried until the credentials change."
)
_LIST_HINT = (
    ". The ticket list refused our filters: check connections.{name}.options.list_path and "
    "list_fields (both UNCONFIRMED)."
)

ERRORS = (
    ErrorRule(AuthRejected, words=AUTH_TEXT, hint=_AUTH_HINT),
    ErrorRule(AuthRejected, statuses=frozenset({401, 403}), hint=_AUTH_HINT),
    # Wording of the errors below is UNCONFIRMED: these patterns are best effort.
    ErrorRule(RateLimited, words=r"too many requests|rate limit|limit exceeded"),
    ErrorRule(ProtocolError, reads=True, hint=_LIST_HINT),
    ErrorRule(NotFound, words=r"not found|does not exist|doesn't exist|invalid ticket|no ticket"),
    ErrorRule(NotFound, statuses=frozenset({404})),
    ErrorRule(ItemError),
)
