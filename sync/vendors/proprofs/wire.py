"""ProProfs's calls on the wire: paths, credentials in the body, the error envelope.

Every call is a ``POST`` of JSON to a case-sensitive path ending in ``/``, with
``account_email`` and ``token`` in the body and ``Accept: application/json`` (DOC,
docs/vendor-apis.md §2.1-2.2). Success and failure live in the body: ``{"status": "success", ...}``
or
``{"status": "error", "description": ...}``; the HTTP status of a failure is UNCONFIRMED
(docs/vendor-apis.md §2.8), so 4xx bodies are read here too and the body decides. ``call`` turns a
failure into
the error tree by the table in ``proprofs.errors``, with ProProfs's own words. Besides:

- a list read answered with an error saying nothing was found ("No tickets found": whether
  ProProfs reports an empty result so is UNCONFIRMED) -> an empty page;
- no list at the path (HTML 404) -> ``ProtocolError`` naming ``options.list_path``.

429 and 5xx stay with ``sync.http``, which retries the reads (``safe=True``) and never the
writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sync import redact
from sync.errors import (
    ProtocolError,
    VendorError,
)
from sync.http import HttpClient, Response, parse_retry_after
from sync.vendors.errors import vendor_error
from sync.vendors.proprofs.errors import ERRORS
from sync.vendors.proprofs.mapping import envelope

CREATE_PATH = "/app/api/v1/create/ticket/"  # DOC [P-create]
UPDATE_PATH = "/app/api/v1/update/ticket/"  # DOC [P-update]
HEADERS = {"Accept": "application/json"}  # Content-Type comes with the JSON body (DOC sample)
#: Statuses whose body is read here; 429 and 5xx stay with sync.http (retries).
HANDLED = (400, 401, 403, 404, 405, 409, 422)
#: An empty result reported as an error, as some APIs do (UNCONFIRMED for ProProfs).
_EMPTY = re.compile(r"\bno (?:tickets?|records?|data|results?) (?:were )?found", re.I)


def plain(path: str) -> str:
    """A path without its query, for messages (a page link's query is of no use there)."""
    return path.split("?", 1)[0]


class ProProfsWire:
    """One connection's calls to ProProfs; see the module docstring for the error rules."""

    def __init__(
        self, connection: str, http: HttpClient, credentials: Mapping[str, str], list_path: str
    ) -> None:
        self.connection = connection
        self.list_path = list_path
        self._http = http
        self._credentials = dict(credentials)

    async def call(
        self,
        path: str,
        body: Mapping[str, Any],
        what: str,
        *,
        reads: bool = False,
        observe: Callable[[Response], None] | None = None,
    ) -> Any:
        """POST ``body`` with the credentials; the parsed success reply, or an error.
        ``observe`` is shown the reply first (a pull reads its ``Date``)."""
        response = await self._http.request(
            "POST",
            path,
            json={**self._credentials, **body},
            headers=HEADERS,
            safe=reads,
            ok=HANDLED,
        )
        if observe is not None:
            observe(response)
        document = self._document(response, path, what)
        status, description = envelope(document)
        if reads and status == "error" and _EMPTY.search(description):
            return {"tickets": [], "total_tickets": 0}
        if status == "error" or response.status >= 400:
            raise self._failure(response, path, what, description, reads=reads)
        if status not in (None, "success"):
            raise self._shape(response, path, what, f"status {status!r}, neither success nor error")
        if not isinstance(document, Mapping | list):
            raise self._shape(response, path, what, f"{type(document).__name__}, not an object")
        return document

    def _shape(self, response: Response, path: str, what: str, problem: str) -> ProtocolError:
        return ProtocolError(
            f"{self.connection}: {what}: POST {plain(path)} answered {problem}",
            connection=self.connection,
            status=response.status,
        )

    def _document(self, response: Response, path: str, what: str) -> Any:
        try:
            return response.json()
        except ProtocolError as exc:
            if response.status in (401, 403):
                raise self._failure(response, path, what, "", reads=False) from None
            if response.status in (404, 405) and plain(path) == self.list_path:
                raise self.wrong_list_path(response.status, what) from None
            raise ProtocolError(
                f"{exc} ({what})", connection=self.connection, status=response.status
            ) from None

    def _failure(
        self, response: Response, path: str, what: str, description: str, *, reads: bool
    ) -> VendorError:
        """ProProfs's ``{"status": "error", "description": ...}`` as an error of the tree."""
        status, name = response.status, self.connection
        said = redact.current().redact(description)[:300] or "no description"
        text = f"{name}: {what}: POST {plain(path)} -> HTTP {status}: ProProfs says {said!r}"
        return vendor_error(
            ERRORS,
            text,
            connection=name,
            status=status,
            said=said,
            reads=reads,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def wrong_list_path(self, status: int, what: str) -> ProtocolError:
        return ProtocolError(
            f"{self.connection}: {what}: POST {self.list_path} -> HTTP {status}: no ticket "
            "list there. The list path is UNCONFIRMED: copy it from ProProfs's page 'How to "
            f"Retrieve Ticket List via API' into connections.{self.connection}.options.list_path.",
            connection=self.connection,
            status=status,
        )
