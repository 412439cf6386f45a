"""Kapture's body-level errors (``{"status": "failed", "message": ...}``, often under HTTP
200) as rows of ``sync.vendors.errors``: the vendor's words -> our error kinds.

- ``Invalid Auth Key`` (``AuthKeyInvalid`` on the older page), or 401/403 -> ``AuthRejected``,
  naming the credential to fix; never retried;
- ``No Data found...`` -> ``NotFound`` (the ticket id is unknown);
- ``ServerFailure`` -> ``Retriable``;
- anything else Kapture says (``title is missing``, ``Invalid Format...``) -> ``ItemError``.
"""

from __future__ import annotations

from sync.errors import AuthRejected, ItemError, NotFound, Retriable
from sync.vendors.errors import ErrorRule

_AUTH_HINT = (
    ". Kapture rejected the auth key in connections.{name}.credentials.{credential}: Kapture "
    "issues one auth key per API definition (admin > API Configuration); put the key of this "
    "API there. Not retried until the credentials change."
)

ERRORS = (
    ErrorRule(AuthRejected, words=r"auth key|authkeyinvalid", hint=_AUTH_HINT),
    ErrorRule(AuthRejected, statuses=frozenset({401, 403}), hint=_AUTH_HINT),
    ErrorRule(NotFound, words=r"no data found"),
    ErrorRule(Retriable, words=r"serverfailure|server failure"),
    ErrorRule(ItemError),
)
