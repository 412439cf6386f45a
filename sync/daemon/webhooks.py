"""The vendor webhook listener (``service.webhook_listen``; off by default).

Zoho Desk posts its events to ``/webhooks/<connection>/<secret>`` (docs/architecture.md
§8.6; docs/vendor-apis.md §4.10). Zoho's webhook API takes no custom header, so the
connection's ``credentials.webhook_secret`` is the URL's last segment, compared with
``hmac.compare_digest``. The listener serves nothing else: ``/metrics`` and ``/healthz``
stay on ``service.listen``.

- ``GET`` (Zoho's subscription handshake) answers 200 once the secret matches.
- ``POST`` answers 200 at once, whatever the body, once the secret matches: the handshake
  may also come as a POST (its body is not documented), and Zoho counts a delivery as
  failed unless it gets 200 within 5 s. A body of JSON events (an array, or one object)
  naming ``Ticket_Add``, ``Ticket_Update`` or ``Ticket_Comment_Add`` calls ``wake(name)``;
  the event is only a hint, its payload is never read: the run reads the vendor's API.
- A wrong path or secret answers 404, never 410, which would make Zoho delete the
  subscription. A body over ``MAX_BODY`` bytes answers 413 (aiohttp's client_max_size).

The secret never reaches a log line: the endpoint writes no access log, and what it logs
names the connection only.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

log = logging.getLogger("sync.webhooks")

#: The events that start a pull (docs/vendor-apis.md §4.10).
PULL_EVENTS = frozenset({"Ticket_Add", "Ticket_Update", "Ticket_Comment_Add"})
#: The largest request body read, in bytes (Zoho batches events in one array).
MAX_BODY = 256 * 1024
#: Compared against when the connection is unknown, so the answer takes the same time.
_DUMMY = "x" * 43


class WebhookReceiver:
    """Authenticates webhook requests and wakes the connections their events name.

    ``secrets()`` gives each connection's current webhook secret (asked per request, so a
    reload takes effect at once); ``wake(name)`` must return at once.
    """

    def __init__(
        self,
        secrets: Callable[[], Mapping[str, str]],
        wake: Callable[[str], None],
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        self.secrets = secrets
        self.wake = wake
        #: Told (connection or "-", result) for each request (the daemon's metrics).
        self.observe = observe
        #: Requests per (connection or "-", result), for tests and the log.
        self.counts: dict[tuple[str, str], int] = {}

    def app(self) -> web.Application:
        """The listener's application: the webhook route and nothing else."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/webhooks/{connection}/{secret}", self._handshake)
        app.router.add_post("/webhooks/{connection}/{secret}", self._event)
        return app

    def authentic(self, name: str, secret: str) -> bool:
        """Whether ``secret`` is ``name``'s webhook secret (in constant time)."""
        expected = self.secrets().get(name)
        matched = hmac.compare_digest(
            (expected or _DUMMY).encode(), secret.encode("utf-8", "replace")
        )
        return expected is not None and matched

    async def _handshake(self, request: web.Request) -> web.Response:
        name = request.match_info["connection"]
        if not self.authentic(name, request.match_info["secret"]):
            return self._refuse(name)
        self._count(name, "handshake")
        return web.Response(text="ok")

    async def _event(self, request: web.Request) -> web.Response:
        name = request.match_info["connection"]
        if not self.authentic(name, request.match_info["secret"]):
            return self._refuse(name)
        raw = await request.read()  # over client_max_size: aiohttp answers 413
        if wants_pull(raw):
            self._count(name, "pull")
            self.wake(name)
        else:
            self._count(name, "ignored")
        return web.Response(text="ok")

    def _refuse(self, name: str) -> web.Response:
        known = name in self.secrets()
        self._count(name if known else "-", "refused")
        log.debug(
            "webhook refused: %s",
            f"wrong secret for connection {name}" if known else "no such connection",
        )
        return web.Response(status=404, text="not found")

    def _count(self, name: str, result: str) -> None:
        self.counts[name, result] = self.counts.get((name, result), 0) + 1
        if self.observe is not None:
            self.observe(name, result)


def wants_pull(raw: bytes) -> bool:
    """Whether a delivery's body names an event that starts a pull.

    Zoho's payload is documented by third parties only (docs/vendor-apis.md §4.10,
    UNCONFIRMED): a JSON array of ``{"eventType": ...}`` objects. A single object is
    accepted too; anything else (an empty handshake POST, other events) is not a pull.
    """
    try:
        document: Any = json.loads(raw) if raw.strip() else None
    except ValueError:
        return False
    events = document if isinstance(document, list) else [document]
    return any(isinstance(e, dict) and e.get("eventType") in PULL_EVENTS for e in events)
