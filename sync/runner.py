"""Turn a validated config into runs: adapters, rules, locks; and the run-once driver.

Called by the CLI and the daemon only (the config becomes objects here and nowhere
else). ``run_connections`` runs the selected connections concurrently; one failing
never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sync import statedir
from sync.config import Config, ConnectionConfig
from sync.db import Mirror
from sync.db.models import SyncConnection
from sync.engine.context import SyncRules
from sync.engine.guard import Guard
from sync.engine.run import ConnectionRun, Counts, RunOptions, RunResult
from sync.errors import LockHeld
from sync.http import HttpClient
from sync.lease import Lease, LeaseSource, PerRunLeases
from sync.redact import current as current_redactor
from sync.vendors.base import Adapter, AdapterContext, adapter_class

log = logging.getLogger("sync.run")


@dataclass(frozen=True)
class Selection:
    """What one invocation syncs, and how."""

    names: Sequence[str]
    dry_run: bool = False
    force: bool = False
    should_stop: Callable[[], bool] = lambda: False
    #: Called with every finished run (the daemon's metrics).
    on_result: Callable[[RunResult], None] | None = None
    #: Told (connection, pages, tickets) after each pull page (a terminal's progress line).
    progress: Callable[[str, int, int], None] | None = None
    #: Makes the per-request hook for a vendor (the daemon's HTTP metrics).
    http_hook: Callable[[str], Callable[[str, str, int | None, float], None]] | None = None
    #: Where runs get their leases on PostgreSQL (the daemon's sticky ones); None: one per run.
    leases: LeaseSource | None = None


def state_dir(config: Config, mirror: Mirror) -> Path | None:
    """Where adapters keep private files (§7.11): sync.state_dir, else beside the SQLite file."""
    if config.sync.state_dir is not None:
        return config.sync.state_dir
    path = mirror.sqlite_path
    return statedir.default(path.parent) if path is not None else None


def build_adapter(
    connection: ConnectionConfig,
    state: Path | None,
    cooldown_until: float | None = None,
    on_request: Callable[[str, str, int | None, float], None] | None = None,
    lookback_seconds: float = 300.0,
) -> Adapter:
    """The adapter for ``connection``; every HTTP client it makes shares its transport settings."""

    def http(base_url: str) -> HttpClient:
        return HttpClient(
            connection.name,
            base_url,
            connection.http,
            redactor=current_redactor(),
            cooldown_until=cooldown_until,
            on_request=on_request,
        )

    cls = adapter_class(connection.vendor)
    context = AdapterContext(http=http, state_dir=state, lookback_seconds=lookback_seconds)
    return cls(connection, context)


def build_rules(connection: ConnectionConfig, config: Config, adapter: Adapter) -> SyncRules:
    policies = {name: connection.conflict_policy.for_field(name) for name in connection.fields}
    return SyncRules.build(
        connection.fields,
        policies,
        adapter.capabilities,
        direction=connection.direction,
        tie_break=config.sync.tie_break,
    )


def _cooldown(mirror: Mirror, name: str) -> float | None:
    with mirror.read() as session:
        row = session.get(SyncConnection, name)
        if row is None or row.cooldown_until is None:
            return None
        return row.cooldown_until.timestamp()


def _save_cooldown(mirror: Mirror, name: str, adapter: Adapter) -> None:
    until = adapter.cooldown_until() or 0.0
    with mirror.write() as session:
        row = session.get(SyncConnection, name)
        if row is None:
            return
        value = datetime.fromtimestamp(until, UTC) if until > time.time() else None
        if row.cooldown_until != value:
            row.cooldown_until = value


async def run_connection(
    mirror: Mirror,
    config: Config,
    connection: ConnectionConfig,
    selection: Selection,
    report: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one connection once, under its lease on PostgreSQL (``selection.leases``, else
    one taken for this run); raises ``LockHeld`` when this instance is not to sync it now."""
    leases: LeaseSource | None = None
    lease: Lease | None = None
    if mirror.dialect == "postgresql" and not selection.dry_run:
        leases = selection.leases or PerRunLeases(mirror, config.sync.lease_seconds)
        lease = await leases.take(connection.name)
        if lease is None:
            log.debug("%s: not this instance's to sync now; skipping", connection.name)
            raise LockHeld(f"{connection.name}: another instance is syncing this connection")
    result: RunResult | None = None
    hook = selection.http_hook(connection.vendor) if selection.http_hook else None
    adapter = build_adapter(
        connection,
        state_dir(config, mirror),
        _cooldown(mirror, connection.name),
        hook,
        config.sync.lookback_seconds,
    )
    try:
        run = ConnectionRun(
            mirror,
            connection.name,
            adapter,
            build_rules(connection, config, adapter),
            direction=connection.direction,
            create_when=dict(connection.create_when)
            if connection.create_when is not None
            else None,
            options=RunOptions(
                dry_run=selection.dry_run,
                force=selection.force,
                batch_size=config.sync.batch_size,
                concurrency=connection.http.concurrency,
                guard=Guard(connection.guard.share, connection.guard.min_count),
                should_stop=selection.should_stop,
                progress=selection.progress,
                fence=lease,
                call_seconds=connection.http.total_timeout,
            ),
            report=report,
        )
        result = await run.run()
        if not selection.dry_run:
            _save_cooldown(mirror, connection.name, adapter)
    finally:
        await adapter.aclose()
        if leases is not None and lease is not None:
            await leases.done(connection.name, lease, result)
    _log_summary(connection, result)
    if selection.on_result is not None:
        selection.on_result(result)
    return result


async def run_connections(
    mirror: Mirror,
    config: Config,
    selection: Selection,
    report: Callable[[str], None] | None = None,
) -> list[RunResult | LockHeld]:
    """Run every selected connection concurrently; a held lock is returned, not raised."""

    async def one(name: str) -> RunResult | LockHeld:
        try:
            return await run_connection(mirror, config, config.connections[name], selection, report)
        except LockHeld as exc:
            log.info("%s", exc)
            return exc

    return list(await asyncio.gather(*(one(n) for n in selection.names)))


def _log_summary(connection: ConnectionConfig, result: RunResult) -> None:
    counts: Counts = result.counts
    level = logging.INFO if result.ok else logging.WARNING
    log.log(
        level,
        "%s: %s in %.2fs: pulled=%d pushed=%d created=%d conflicts=%d errors=%d%s",
        connection.name,
        result.outcome,
        result.duration_s,
        counts.pulled,
        counts.pushed,
        counts.created,
        counts.conflicts,
        counts.errors,
        f" ({result.error})" if result.error else "",
        extra={
            "connection": connection.name,
            "vendor": connection.vendor,
            "outcome": result.outcome,
            "duration_s": round(result.duration_s, 3),
            "counts": counts.as_dict(),
        },
    )
