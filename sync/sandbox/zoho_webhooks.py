"""Zoho Desk emulator: the webhook API and the deliveries (docs/vendor-apis.md §4.10).

- ``GET|POST /api/v1/webhooks``, ``GET|PATCH|DELETE /api/v1/webhooks/{webhookId}``, with
  the ticket API's auth and ``orgId`` checks. A create (or a PATCH that changes ``url``)
  first validates the URL as Zoho does: a GET that must answer 200, else a POST that
  must; otherwise the request fails (422 ``INVALID_DATA`` naming ``/url``: Zoho's exact
  answer is UNCONFIRMED). Bodies are checked by hand against Webhook.json's
  ``webhookjson``: ``url`` and ``subscriptions`` required, ``url`` an http(s) URL of at
  most 500 characters, subscription keys among the events Zoho lists, ``name`` at most
  100 characters.
- ``event(kind, ticket)`` delivers ``kind`` to every enabled subscription to it (and
  whose ``departmentIds`` filter, when given, holds the ticket's department): a POST of a
  JSON array ``[{"eventType", "eventTime", "orgId", "payload", "prevState"?}]`` (the shape
  third-party receivers read; Zoho's own payload page was not found, UNCONFIRMED). A
  reply other than 200 within 5 s counts as failed and is not retried (Zoho publishes no
  retry policy); a 410 deletes the subscription, as Zoho documents.
- ``deliveries`` records each attempt: webhook id, event, ticket id and the status (None
  when the receiver did not answer in time).

The ticket store calls ``event`` on every create and edit, whether made through the API
or "in the UI" (``seed``/``edit``): Zoho fires events for API changes too, so a client
receives its own writes back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from sync.sandbox.base import Emulator
from sync.sandbox.zoho_desk_data import iso_ms

#: The events of Webhook.json's ``subscriptions`` schema that concern tickets.
TICKET_EVENTS = (
    "Ticket_Add",
    "Ticket_Update",
    "Ticket_Delete",
    "Ticket_Thread_Add",
    "Ticket_Comment_Add",
    "Ticket_Comment_Update",
    "Ticket_Attachment_Add",
    "Ticket_Attachment_Update",
    "Ticket_Attachment_Delete",
    "Ticket_Approval_Add",
    "Ticket_Approval_Update",
)
#: Other events of that schema the emulator accepts (and never fires).
OTHER_EVENTS = ("Contact_Add", "Contact_Update", "Account_Add", "Account_Update", "Task_Add")
#: Zoho waits this long for the 200 (DOC [Z-wh]).
DELIVERY_TIMEOUT_S = 5.0
_URL = re.compile(r"^https?://[0-9a-zA-Z][-.\w]*(:[0-9]+)?(/[^\s]*)?$")

Reply = Callable[[int, str, str, list[dict[str, str]] | None], web.Response]
Guard = Callable[[web.Request], Awaitable[tuple[Any, web.Response | None]]]


class ZohoWebhooks:
    """A portal's webhook subscriptions and their deliveries."""

    def __init__(self, org_id: str, portal: Emulator) -> None:
        self.org_id = org_id
        #: The emulator whose clock stamps the webhooks (kept picklable: no closures).
        self.portal = portal
        self.hooks: dict[str, dict[str, Any]] = {}
        #: Every delivery attempt: {"webhookId", "eventType", "ticketId", "status"}.
        self.deliveries: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def add_routes(self, router: web.UrlDispatcher, guard: Guard, error: Reply) -> None:
        """Serve the webhook API; ``guard`` checks auth and orgId and reads the JSON body."""
        api = _Api(self, guard, error)
        router.add_get("/api/v1/webhooks", api.list)
        router.add_post("/api/v1/webhooks", api.create)
        router.add_get("/api/v1/webhooks/{webhookId}", api.get)
        router.add_patch("/api/v1/webhooks/{webhookId}", api.update)
        router.add_delete("/api/v1/webhooks/{webhookId}", api.delete)

    # -- deliveries ------------------------------------------------------------------------

    def event(
        self, kind: str, ticket: Mapping[str, Any], prev: Mapping[str, Any] | None = None
    ) -> None:
        """Deliver ``kind`` about ``ticket`` to its subscribers (in the background)."""
        targets = [h for h in self.hooks.values() if _subscribed(h, kind, ticket)]
        if not targets:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no server running: nobody could receive it
        event: dict[str, Any] = {
            "eventType": kind,
            "eventTime": str(int(time.time() * 1000)),
            "orgId": self.org_id,
            "payload": dict(ticket),
        }
        if prev is not None:
            event["prevState"] = dict(prev)
        for hook in targets:
            task = loop.create_task(self._deliver(hook, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, hook: dict[str, Any], event: dict[str, Any]) -> None:
        status = await _post(hook["url"], json.dumps([event]).encode())
        self.deliveries.append(
            {
                "webhookId": hook["id"],
                "eventType": event["eventType"],
                "ticketId": event["payload"].get("id"),
                "status": status,
            }
        )
        if status == 410:  # DOC [Z-wh]: 410 Gone deletes the subscription
            self.hooks.pop(hook["id"], None)

    async def drain(self) -> None:
        """Wait for the deliveries in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- subscriptions ---------------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        now = iso_ms(self.portal.clock())
        hook = {
            "id": str(4000000000000 + next(self._ids)),
            "name": body.get("name") or "webhook",
            "description": body.get("description"),
            "url": body["url"],
            "isEnabled": body.get("isEnabled", True),
            "subscriptions": dict(body["subscriptions"]),
            "includeEventsFrom": list(body.get("includeEventsFrom") or []),
            "ignoreSourceId": body.get("ignoreSourceId"),
            "type": "CUSTOMER_WEBHOOK",
            "createdBy": "1892000000056007",
            "createdTime": now,
            "modifiedTime": now,
        }
        self.hooks[hook["id"]] = hook
        return hook


def _subscribed(hook: Mapping[str, Any], kind: str, ticket: Mapping[str, Any]) -> bool:
    if not hook.get("isEnabled", True) or kind not in hook["subscriptions"]:
        return False
    filters = hook["subscriptions"][kind] or {}
    departments = filters.get("departmentIds")
    return not departments or str(ticket.get("departmentId")) in map(str, departments)


async def _post(url: str, body: bytes) -> int | None:
    return await _send("POST", url, body)


async def _send(method: str, url: str, body: bytes | None = None) -> int | None:
    """The receiver's status, or None when it did not answer within 5 s."""
    timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url, data=body, headers=headers) as reply,
        ):
            await reply.read()
            return reply.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def validate_url(url: str) -> bool:
    """Zoho's subscription check: a GET must answer 200, else a POST (DOC [Z-oas])."""
    if await _send("GET", url) == 200:
        return True
    return await _send("POST", url, b"") == 200


def body_errors(body: Any, *, partial: bool) -> list[dict[str, str]]:
    """Violations of Webhook.json's request body (``partial``: a PATCH, nothing required)."""
    if not isinstance(body, dict):
        return [_field("/", "invalid", "The body must be a JSON object.")]
    errors = []
    for key in ("url", "subscriptions"):
        if key not in body and not partial:
            errors.append(_field(f"/{key}", "missing", f"{key} is required."))
    url = body.get("url")
    if "url" in body and (not isinstance(url, str) or len(url) > 500 or not _URL.match(url)):
        errors.append(_field("/url", "invalid", "The URL is invalid."))
    subscriptions = body.get("subscriptions")
    if "subscriptions" in body:
        known = set(TICKET_EVENTS) | set(OTHER_EVENTS)
        if not isinstance(subscriptions, dict) or not subscriptions:
            errors.append(_field("/subscriptions", "invalid", "No event is subscribed."))
        else:
            for kind, filters in subscriptions.items():
                if kind not in known or not (filters is None or isinstance(filters, dict)):
                    errors.append(_field(f"/subscriptions/{kind}", "invalid", "Unknown event."))
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 100):
        errors.append(_field("/name", "invalid", "The name is too long."))
    return errors


def _field(name: str, kind: str, message: str) -> dict[str, str]:
    return {"fieldName": name, "errorType": kind, "errorMessage": message}


class _Api:
    """The handlers of the webhook API."""

    def __init__(self, webhooks: ZohoWebhooks, guard: Guard, error: Reply) -> None:
        self.webhooks = webhooks
        self.guard = guard
        self.error = error

    def _invalid(self, errors: list[dict[str, str]]) -> web.Response:
        message = "An invalid value was passed for one or more fields."
        return self.error(422, "INVALID_DATA", message, errors)

    def _missing(self) -> web.Response:
        return self.error(404, "URL_NOT_FOUND", "The URL you requested could not be found.", None)

    async def list(self, request: web.Request) -> web.Response:
        _, rejection = await self.guard(request)
        if rejection is not None:
            return rejection
        if not self.webhooks.hooks:
            return web.Response(status=204)
        return web.json_response({"data": list(self.webhooks.hooks.values())})

    async def get(self, request: web.Request) -> web.Response:
        _, rejection = await self.guard(request)
        if rejection is not None:
            return rejection
        hook = self.webhooks.hooks.get(request.match_info["webhookId"])
        return self._missing() if hook is None else web.json_response(hook)

    async def create(self, request: web.Request) -> web.Response:
        body, rejection = await self.guard(request)
        if rejection is not None:
            return rejection
        errors = body_errors(body, partial=False)
        if errors:
            return self._invalid(errors)
        if not await validate_url(body["url"]):
            return self._invalid([_field("/url", "invalid", "The URL did not answer 200.")])
        return web.json_response(self.webhooks.create(body))

    async def update(self, request: web.Request) -> web.Response:
        body, rejection = await self.guard(request)
        if rejection is not None:
            return rejection
        hook = self.webhooks.hooks.get(request.match_info["webhookId"])
        if hook is None:
            return self._missing()
        errors = body_errors(body, partial=True)
        if errors:
            return self._invalid(errors)
        moved = "url" in body and body["url"] != hook["url"]
        if moved and not await validate_url(body["url"]):
            return self._invalid([_field("/url", "invalid", "The URL did not answer 200.")])
        hook.update({k: v for k, v in body.items() if k in _UPDATABLE})
        hook["modifiedTime"] = iso_ms(self.webhooks.portal.clock())
        return web.json_response(hook)

    async def delete(self, request: web.Request) -> web.Response:
        _, rejection = await self.guard(request)
        if rejection is not None:
            return rejection
        if self.webhooks.hooks.pop(request.match_info["webhookId"], None) is None:
            return self._missing()
        return web.Response(status=200)


_UPDATABLE = ("url", "name", "description", "isEnabled", "subscriptions", "includeEventsFrom")
