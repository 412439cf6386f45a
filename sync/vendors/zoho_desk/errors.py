"""Zoho Desk's error envelope (``{"errorCode": ..., "message": ...}``) as rows of
``sync.vendors.errors``: error codes and HTTP statuses -> our error kinds."""

from __future__ import annotations

from sync.errors import AuthRejected, ItemError, NotFound, RateLimited
from sync.vendors.errors import ErrorRule

#: A 401 with one of these: the access token expired or was revoked; refresh and resend once.
REFRESH_CODES = frozenset({"INVALID_OAUTH", "UNAUTHORIZED"})
RATE_CODES = frozenset({"THRESHOLD_EXCEEDED", "TOO_MANY_REQUESTS"})

ERRORS = (
    # Whatever the status: Zoho's use of 429 is UNCONFIRMED.
    ErrorRule(RateLimited, codes=frozenset(RATE_CODES)),
    ErrorRule(
        AuthRejected,
        statuses=frozenset({401}),
        codes=frozenset({*REFRESH_CODES, None}),
        hint=". Zoho rejected a freshly refreshed access token: check that the client has "
        "the scopes Desk.tickets.ALL and Desk.search.READ.",
    ),
    ErrorRule(
        AuthRejected,
        codes=frozenset({"OAUTH_ORG_MISMATCH"}),
        hint=" Check connections.{name}.credentials.org_id.",
    ),
    # This ticket's department, not the whole grant.
    ErrorRule(
        ItemError,
        statuses=frozenset({403}),
        codes=frozenset({"FORBIDDEN", "LICENSE_ACCESS_LIMITED"}),
    ),
    ErrorRule(AuthRejected, statuses=frozenset({401, 403})),
    ErrorRule(NotFound, statuses=frozenset({404})),
    ErrorRule(ItemError),
)
