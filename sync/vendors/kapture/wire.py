"""Kapture's four endpoints on the wire: paths, per-endpoint auth keys, body-level errors.

Every Kapture ticket call is a ``POST`` of JSON to ``/<name>.html/v.2.0`` (docs/vendor-apis.md
§1.1),
authenticated by ``Authorization: Basic <auth key>``, where each API definition has its own
key (docs/vendor-apis.md §1.2). Success and failure live in the body, ``{"status": "success" |
"failed",
"message": ...}``, often under HTTP 200 (docs/vendor-apis.md §1.8); the older page spells the keys
``Status``/``Message``, so they are read case-insensitively. ``call`` turns a failure into
the error tree by the table in ``kapture.errors``.

4xx answers are read here too (their HTTP status says little beyond the body); 429 and 5xx
stay with ``sync.http``, which retries the reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync import redact
from sync.errors import ProtocolError, VendorError
from sync.http import HttpClient, Response
from sync.vendors.errors import vendor_error
from sync.vendors.kapture.errors import ERRORS

#: endpoint -> (path, credential that authenticates it, whether the call only reads).
ENDPOINTS: Mapping[str, tuple[str, str, bool]] = {
    "create": ("/add-ticket-from-other-source.html/v.2.0", "create_token", False),
    "update": ("/update-ticket-from-other-source.html/v.2.0", "update_token", False),
    "get": ("/search-ticket-by-ticket-id.html/v.2.0", "read_token", True),
    "pull": ("/select-ticket-between-start-and-end-dates.html/v.2.0", "read_token", True),
}
HANDLED = (400, 401, 403, 404)


def envelope(document: Any) -> tuple[str | None, str | None]:
    """``(status, message)`` of a Kapture reply (keys in any case), lower-cased status."""
    if not isinstance(document, Mapping):
        return None, None
    lowered = {str(k).lower(): v for k, v in document.items()}
    status = lowered.get("status")
    message = lowered.get("message")
    return (
        status.strip().lower() if isinstance(status, str) else None,
        message if isinstance(message, str) else None,
    )


class KaptureWire:
    """One connection's calls to Kapture; see the module docstring for the error rules."""

    def __init__(
        self,
        connection: str,
        http: HttpClient,
        tokens: Mapping[str, tuple[str, str]],
        *,
        api_key_headers: bool = False,
    ) -> None:
        self.connection = connection
        self._http = http
        self._tokens = dict(tokens)
        self._api_key_headers = api_key_headers

    def _headers(self, endpoint: str) -> dict[str, str]:
        token = self._tokens[ENDPOINTS[endpoint][1]][1]
        headers = {"Authorization": f"Basic {token}"}
        if self._api_key_headers and endpoint != "create":
            # Sent by one public client on update, get and pull (docs/vendor-apis.md §1.2); whether
            # a tenant needs them is UNCONFIRMED, so they are opt-in.
            headers.update({"x-api-key": token, "x-api-type": "TICKET"})
        return headers

    async def call(self, endpoint: str, body: Any, what: str) -> Any:
        """POST ``body`` to ``endpoint``; the parsed reply, or an error naming ``what``."""
        path, _, reads = ENDPOINTS[endpoint]
        response = await self._http.request(
            "POST", path, json=body, headers=self._headers(endpoint), safe=reads, ok=HANDLED
        )
        document = self._document(endpoint, response, what)
        status, message = envelope(document)
        if status is not None and status != "success":
            raise self.failure(endpoint, message or f"status {status!r}", response.status, what)
        if response.status >= 400:
            raise self.failure(endpoint, message or "no message", response.status, what)
        return document

    def _document(self, endpoint: str, response: Response, what: str) -> Any:
        try:
            return response.json()
        except ProtocolError as exc:
            if response.status in (401, 403):
                raise self.failure(endpoint, "no Kapture message", response.status, what) from None
            if response.status == 404:
                raise ProtocolError(
                    f"{self.connection}: {what}: POST {ENDPOINTS[endpoint][0]} -> HTTP 404 "
                    f"without a Kapture reply; check connections.{self.connection}.base_url "
                    "(https://<subdomain>.kapturecrm.com)",
                    connection=self.connection,
                    status=404,
                ) from None
            raise ProtocolError(
                f"{exc} ({what})", connection=self.connection, status=response.status
            ) from None

    def failure(self, endpoint: str, message: str, status: int, what: str) -> VendorError:
        """Kapture's failure ``message`` as an error of the tree."""
        said = redact.current().redact(" ".join(message.split()))[:300]
        path, credential, _ = ENDPOINTS[endpoint]
        text = f"{self.connection}: {what}: POST {path} -> HTTP {status}: Kapture says {said!r}"
        return vendor_error(
            ERRORS,
            text,
            connection=self.connection,
            status=status,
            said=said,
            credential=self._tokens[credential][0],
        )
