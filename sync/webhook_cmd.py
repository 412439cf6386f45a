"""``ticketsync webhooks register NAME --url URL`` and ``webhooks unregister NAME``: the
vendor's subscription that posts a connection's ticket events to the daemon's webhook
listener (docs/architecture.md §8.6; Zoho Desk only, docs/vendor-apis.md §4.10).

``--url`` is the listener's public base address (e.g. ``https://hooks.example.com``, the
reverse proxy in front of ``service.webhook_listen``); the command appends
``/webhooks/<connection>/<secret>`` itself, so the secret never has to be typed or stored
in a shell's history. Exit 0 on success, 1 when the vendor refused, 2 on a usage error.
``check_lines`` gives ``ticketsync check`` its webhook line per connection.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sync.config import Config, ConnectionConfig
from sync.errors import ConfigError, UserError, VendorError

if TYPE_CHECKING:
    from sync.vendors.zoho_desk.webhooks import ZohoWebhookApi

#: Vendors whose API manages webhook subscriptions.
VENDORS = ("zoho_desk",)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Any) -> None:
    """The ``webhooks`` command and its actions; ``common`` adds the shared options."""
    hooks = sub.add_parser("webhooks", help="manage the vendor's webhook subscription (Zoho)")
    common(hooks, top=False)
    actions = hooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    register = actions.add_parser("register", help="subscribe the connection's ticket events")
    common(register, top=False)
    register.add_argument("name", help="the connection")
    register.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help="the webhook listener's public base address, e.g. https://hooks.example.com "
        "(the command adds /webhooks/NAME/SECRET)",
    )
    unregister = actions.add_parser("unregister", help="delete the connection's subscription")
    common(unregister, top=False)
    unregister.add_argument("name", help="the connection")


def run(args: argparse.Namespace, config: Config) -> int:
    connection = _connection(config, args.name)
    try:
        if args.webhooks_command == "register":
            print(asyncio.run(_register(connection, _base(args.url))))
        else:
            print(asyncio.run(_unregister(connection)))
    except VendorError as exc:
        print(f"ticketsync: {exc}")
        return 1
    return 0


def _connection(config: Config, name: str) -> ConnectionConfig:
    connection = config.connections.get(name)
    if connection is None:
        raise ConfigError([f"webhooks {name}: no such connection"])
    if connection.vendor not in VENDORS:
        raise UserError(
            f"{name}: {connection.vendor} has no webhook API ticketsync can use; only "
            f"{', '.join(VENDORS)} connections take webhooks (the others are polled)"
        )
    if not connection.credential("webhook_secret"):
        raise UserError(
            f"{name}: set connections.{name}.credentials.webhook_secret first (README, "
            '"Webhooks"), and service.webhook_listen'
        )
    return connection


def _base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise UserError(f"--url {url!r}: expected an http(s) base address, without a query")
    return url


def _api(connection: ConnectionConfig) -> ZohoWebhookApi:
    """The webhook API of ``connection``'s adapter (imported here: the CLI starts fast)."""
    from sync.runner import build_adapter
    from sync.vendors.zoho_desk.adapter import ZohoDeskAdapter
    from sync.vendors.zoho_desk.webhooks import ZohoWebhookApi

    adapter = build_adapter(connection, None)
    assert isinstance(adapter, ZohoDeskAdapter)
    return ZohoWebhookApi(adapter)


async def _register(connection: ConnectionConfig, base: str) -> str:
    from sync.vendors.zoho_desk.webhooks import describe, hook_url

    secret = connection.credential("webhook_secret") or ""
    api = _api(connection)
    try:
        what, hook = await api.register(hook_url(base, connection.name, secret))
    finally:
        await api.adapter.aclose()
    return f"{connection.name}: {what} {describe(hook)}"


async def _unregister(connection: ConnectionConfig) -> str:
    from sync.vendors.zoho_desk.webhooks import masked

    api = _api(connection)
    try:
        deleted = await api.unregister()
    finally:
        await api.adapter.aclose()
    if not deleted:
        return f"{connection.name}: no webhook subscription to delete"
    urls = ", ".join(masked(str(h.get("url"))) for h in deleted)
    return f"{connection.name}: deleted {len(deleted)} webhook subscription(s) ({urls})"


async def check_line(connection: ConnectionConfig) -> str | None:
    """``check``'s webhook line for ``connection`` (None: it takes no webhooks)."""
    if connection.vendor not in VENDORS or not connection.credential("webhook_secret"):
        return None
    from sync.vendors.zoho_desk.webhooks import describe

    api = _api(connection)
    try:
        hooks = await api.ours()
    except VendorError as exc:
        return f"  webhooks: could not list: {exc}"
    finally:
        await api.adapter.aclose()
    if not hooks:
        return (
            f"  webhooks: not subscribed; run `ticketsync webhooks register {connection.name} "
            "--url URL`"
        )
    return "  webhooks: " + "; ".join(describe(h) for h in hooks)
