"""``ticketsync check``: validate the configuration, summarise it, test credentials.

Prints the resolved database and each connection without secrets: what it syncs, what
the vendor cannot write, what it creates; online, a Zoho Desk connection with a webhook
secret also shows its webhook subscription (``sync.webhook_cmd``). Online (the default),
each adapter makes one cheap authenticated call; a rejected credential exits 1 with the
vendor's message and what to do, an unreachable vendor too. Vendor options are checked with
the rest of the config (``sync.config``); here only the adapters themselves must load.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sync.config import Config, ConnectionConfig
from sync.coord.liveness import failover
from sync.db import Mirror, schema_state
from sync.errors import AuthRejected, ConfigError, DatabaseError, VendorError
from sync.runner import build_adapter, build_rules, state_dir
from sync.vendors.base import Adapter, adapter_class
from sync.vendors.registry import VENDORS
from sync.vendors.zoho_desk.auth import token_cache_path

CHECK_TIMEOUT_S = 30.0


def vendor_problems(config: Config) -> list[str]:
    """Vendors without a loadable adapter in this version (options were checked on load)."""
    problems = []
    for name, connection in config.connections.items():
        try:
            adapter_class(connection.vendor)
        except (KeyError, ImportError, AttributeError) as exc:
            problems.append(
                f"connections.{name}.vendor: {connection.vendor!r} has no adapter in this "
                f"version of ticketsync (available: {', '.join(sorted(VENDORS))}; {exc!r})"
            )
    return problems


def run(config: Config, *, online: bool) -> int:
    require_vendors(config)
    print(f"configuration: {config.path or '(built in)'}: valid")
    print(f"database:      {_database(config)}")
    if (moves := failover(config.database.url)) is not None:
        print(f"failover:      {moves}")
    results = asyncio.run(_check_all(config)) if online else {}
    hooks = asyncio.run(_webhooks(config)) if online else {}
    failed = 0
    for name, connection in config.connections.items():
        for line in _describe(config, connection, results.get(name)):
            print(line)
        if hooks.get(name):
            print(hooks[name])
        failed += results.get(name, "ok") != "ok"
    return 1 if failed else 0


def require_vendors(config: Config) -> None:
    """Raise ``ConfigError`` listing every vendor problem (exit 2)."""
    problems = vendor_problems(config)
    if problems:
        raise ConfigError(problems, source=str(config.path) if config.path else None)


def _database(config: Config) -> str:
    mirror = Mirror.configured(config.database)
    try:
        state = schema_state(mirror)
    except DatabaseError as exc:
        return f"{mirror.redacted_url()} ({exc})"
    finally:
        mirror.dispose()
    if not state.exists:
        return f"{mirror.redacted_url()} (does not exist yet; `ticketsync db upgrade` creates it)"
    if not state.up_to_date:
        return f"{mirror.redacted_url()} (revision {state.current}; run `ticketsync db upgrade`)"
    return f"{mirror.redacted_url()} (up to date)"


def _describe(config: Config, connection: ConnectionConfig, result: str | None) -> list[str]:
    adapter = build_adapter(connection, None)
    rules = build_rules(connection, config, adapter)
    synced = ", ".join(rules.maps) or "nothing (no `fields`)"
    lines = [
        "",
        f"{connection.name}: {connection.vendor} at {connection.base_url}",
        f"  direction {connection.direction}, every {connection.interval:g}s; syncs: {synced}",
    ]
    if rules.unwritable():
        lines.append(
            f"  not supported by this connection: {', '.join(rules.unwritable())} "
            "(the vendor's API cannot write them; local edits stay local)"
        )
    if connection.create_when is not None:
        rule = _rule(connection.create_when)
        lines.append(f"  creates tickets at {connection.vendor} for: {rule}")
    lines += _comments(connection, adapter)
    if connection.vendor == "zoho_desk":
        cache = token_cache_path(_state_folder(config), connection.name)
        where = cache or "none (no safe state folder: set sync.state_dir); every run refreshes"
        lines.append(f"  token cache: {where}")
    if result is not None:
        lines.append(f"  credentials: {result}")
    return lines


def _comments(connection: ConnectionConfig, adapter: Adapter) -> list[str]:
    """What the connection does with comments, and what its vendor cannot do of it."""
    comments = connection.comments
    if comments.direction == "off":
        return []
    caps = adapter.capabilities
    line = f"  comments: {comments.direction} ({comments.visibility})"
    missing = []
    if comments.pulls and not caps.comments_read:
        missing.append("reads no comments")
    if comments.pushes and not caps.comments_write:
        missing.append("posts no comments")
    elif comments.pushes and not caps.private_comments and comments.visibility != "public":
        missing.append("posts no private notes (they are skipped there)")
    if missing:
        line += f"; {connection.vendor} " + " and ".join(missing)
    return [line]


def _state_folder(config: Config) -> Path | None:
    """The state folder runs use (``runner.state_dir``), resolved the same way."""
    mirror = Mirror.configured(config.database)
    try:
        return state_dir(config, mirror)
    finally:
        mirror.dispose()


def _rule(when: Any) -> str:
    if not when:
        return "every mirror ticket"
    return " and ".join(f"{k} in ({', '.join(v)})" for k, v in when.items())


async def _webhooks(config: Config) -> dict[str, str | None]:
    """Each connection's webhook subscription, as ``webhook_cmd.check_line`` says it."""
    from sync.webhook_cmd import check_line

    connections = list(config.connections.values())
    lines = await asyncio.gather(
        *(asyncio.wait_for(check_line(c), CHECK_TIMEOUT_S) for c in connections),
        return_exceptions=True,
    )
    return {
        c.name: (
            f"  webhooks: could not list: {line!r}" if isinstance(line, BaseException) else line
        )
        for c, line in zip(connections, lines, strict=True)
    }


async def _check_all(config: Config) -> dict[str, str]:
    async def one(connection: ConnectionConfig) -> tuple[str, str]:
        adapter = build_adapter(connection, None)
        try:
            await asyncio.wait_for(adapter.check(), CHECK_TIMEOUT_S)
        except AuthRejected as exc:
            return connection.name, f"REJECTED: {exc}"
        except VendorError as exc:
            return connection.name, f"could not check: {exc}"
        except TimeoutError:
            return connection.name, f"could not check: no answer within {CHECK_TIMEOUT_S:.0f}s"
        finally:
            await adapter.aclose()
        return connection.name, "ok"

    return dict(await asyncio.gather(*(one(c) for c in config.connections.values())))
