"""Zoho Desk's webhook API: the subscription that posts a connection's ticket events to
the daemon's webhook listener (docs/vendor-apis.md §4.10, docs/architecture.md §8.6).

A connection's subscription is the webhook whose URL's path is
``/webhooks/<connection>/<secret>``; ``register`` creates it, or PATCHes the one there is
(a new URL makes Zoho validate it again: GET, then POST, must answer 200), so running it
twice leaves one. ``unregister`` deletes every subscription of the connection. Zoho's
list reply holds the URL, and so the secret: ``masked`` is the only form shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sync.errors import ProtocolError

if TYPE_CHECKING:
    from sync.vendors.zoho_desk.adapter import ZohoDeskAdapter

#: The events the daemon pulls for (``sync.daemon.webhooks.PULL_EVENTS``).
EVENTS = ("Ticket_Add", "Ticket_Update", "Ticket_Comment_Add")
PATH = "/api/v1/webhooks"


def hook_url(base: str, connection: str, secret: str) -> str:
    """The URL Zoho posts ``connection``'s events to, under the listener's public ``base``."""
    return f"{base.rstrip('/')}/webhooks/{connection}/{secret}"


def masked(url: str) -> str:
    """``url`` with its last path segment (the secret) replaced by ``***``."""
    head, sep, _ = url.rstrip("/").rpartition("/")
    return f"{head}{sep}***" if sep else "***"


def is_ours(hook: Mapping[str, Any], connection: str) -> bool:
    """Whether ``hook`` posts to ``connection``'s webhook path."""
    path = urlsplit(str(hook.get("url") or "")).path.rstrip("/")
    head, _, secret = path.rpartition("/")
    return head.endswith(f"/webhooks/{connection}") and bool(secret)


def describe(hook: Mapping[str, Any]) -> str:
    """One line: the masked URL, the events, enabled or not; never the secret."""
    events = ", ".join(sorted(hook.get("subscriptions") or {})) or "no events"
    state = "" if hook.get("isEnabled", True) else " (disabled)"
    return f"webhook {hook.get('id')} -> {masked(str(hook.get('url')))}: {events}{state}"


class ZohoWebhookApi:
    """The webhook API, through the adapter's authenticated client."""

    def __init__(self, adapter: ZohoDeskAdapter) -> None:
        self.adapter = adapter
        self.name = adapter.name

    async def ours(self) -> list[dict[str, Any]]:
        """The subscriptions posting to this connection's webhook path."""
        response = await self.adapter._call("GET", PATH)
        if response.status == 204 or not response.body:
            return []  # Zoho's empty list
        document = response.json()
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list):
            raise ProtocolError(
                f"{self.name}: Zoho's webhook list has no 'data' list", connection=self.name
            )
        return [h for h in data if isinstance(h, dict) and is_ours(h, self.name)]

    async def register(self, url: str) -> tuple[str, dict[str, Any]]:
        """Subscribe ``url`` to ``EVENTS``; ("created" | "updated", the webhook)."""
        body: dict[str, Any] = {
            "url": url,
            "name": f"ticketsync {self.name}"[:100],
            "description": "Ticket events for ticketsync: each one starts a pull.",
            "isEnabled": True,
            "subscriptions": dict.fromkeys(EVENTS),
            # Automations and supervisor rules change tickets too (docs/vendor-apis.md §4.10).
            "includeEventsFrom": ["AUTOMATION"],
        }
        existing = await self.ours()
        if existing:
            hook_id = existing[0]["id"]
            response = await self.adapter._call("PATCH", f"{PATH}/{hook_id}", json=body)
            for extra in existing[1:]:
                await self.adapter._call("DELETE", f"{PATH}/{extra['id']}")
            return "updated", _hook(response.json(), hook_id)
        response = await self.adapter._call("POST", PATH, json=body)
        return "created", _hook(response.json(), "(new)")

    async def unregister(self) -> list[dict[str, Any]]:
        """Delete this connection's subscriptions; return the ones deleted."""
        existing = await self.ours()
        for hook in existing:
            await self.adapter._call("DELETE", f"{PATH}/{hook['id']}")
        return existing


def _hook(document: Any, hook_id: str) -> dict[str, Any]:
    if not isinstance(document, dict) or "id" not in document:
        return {"id": hook_id}  # the reply's shape is not ours to depend on
    return document
