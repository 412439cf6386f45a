"""Turn a validated config into runs: adapters, rules, locks; and the run-once driver.

Called by the CLI and the daemon only (the config becomes objects here and nowhere
else). ``run_connections`` runs the selected connections concurrently; one failing
never stops the others. ``run_connection`` is the boundary of one connection's run: an
exception nobody foresaw becomes outcome ``internal`` (one redacted line in ``runs`` and
``sync_connections.last_error``, the traceback in the log), never an escape that would
cancel the other connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError

from sync import statedir
from sync.config import Config, ConnectionConfig
from sync.coord.lease import Lease, LeaseSource, PerRunLeases
from sync.db import Mirror
from sync.db.models import Run, SyncConnection
from sync.engine import failures, store
from sync.engine.context import SyncRules
from sync.engine.guard import Guard
from sync.engine.run import ConnectionRun, Counts, RunOptions, RunResult
from sync.errors import InternalError, LockHeld, UserError
from sync.http import HttpClient
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
    #: A woken run: push the dirty tickets and creates only, no pull (the daemon's wake-ups).
    push_only: bool = False
    #: What started the runs (``sync.engine.state.RUN_KINDS``), recorded in ``runs.kind``.
    kind: str = "once"


def state_dir(config: Config, mirror: Mirror) -> Path | None:
    """Where adapters keep private files (docs/architecture.md §7.11): ``sync.state_dir``, else the
    first safe of
    ``$STATE_DIRECTORY``, the SQLite file's folder and the user's state folder
    (``statedir.resolve``)."""
    return statedir.resolve(config.sync.state_dir, mirror.sqlite_path)


def build_adapter(
    connection: ConnectionConfig,
    state: Path | None,
    cooldown_until: float | None = None,
    on_request: Callable[[str, str, int | None, float], None] | None = None,
    lookback_seconds: float = 300.0,
    clock_skew_seconds: float = 120.0,
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
            credentials={k: v.reveal() for k, v in connection.credentials.items()},
        )

    cls = adapter_class(connection.vendor)
    context = AdapterContext(
        http=http,
        state_dir=state,
        lookback_seconds=lookback_seconds,
        clock_skew_seconds=clock_skew_seconds,
    )
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
    started = time.monotonic()
    run: ConnectionRun | None = None
    try:
        adapter = build_adapter(
            connection,
            state_dir(config, mirror),
            _cooldown(mirror, connection.name),
            hook,
            config.sync.lookback_seconds,
            config.sync.clock_skew_seconds,
        )
        try:
            run = _connection_run(mirror, config, connection, selection, adapter, lease, report)
            result = await run.run()
            if not selection.dry_run:
                _save_cooldown(mirror, connection.name, adapter)
        finally:
            await adapter.aclose()
    except (LockHeld, UserError, OperationalError):
        raise  # not this run's fault: the callers handle these as before
    except Exception as exc:  # the boundary of one connection's run
        result = _internal(mirror, connection, selection, run, exc, time.monotonic() - started)
    finally:
        if leases is not None and lease is not None:
            await leases.done(connection.name, lease, result)
    _log_summary(connection, result)
    _report_failing(result, report)
    if selection.on_result is not None:
        selection.on_result(result)
    return result


def _connection_run(
    mirror: Mirror,
    config: Config,
    connection: ConnectionConfig,
    selection: Selection,
    adapter: Adapter,
    lease: Lease | None,
    report: Callable[[str], None] | None,
) -> ConnectionRun:
    return ConnectionRun(
        mirror,
        connection.name,
        adapter,
        build_rules(connection, config, adapter),
        direction=connection.direction,
        create_when=dict(connection.create_when) if connection.create_when is not None else None,
        options=RunOptions(
            dry_run=selection.dry_run,
            force=selection.force,
            batch_size=config.sync.batch_size,
            concurrency=connection.http.concurrency,
            guard=Guard(
                connection.guard.share,
                connection.guard.min_count,
                _window(connection),
            ),
            should_stop=selection.should_stop,
            progress=selection.progress,
            fence=lease,
            call_seconds=connection.http.total_timeout,
            push_only=selection.push_only,
            kind=selection.kind,
            match=connection.match,
        ),
        report=report,
        comments=connection.comments,
    )


def _window(connection: ConnectionConfig) -> float:
    """The guard's window: ``guard.window_seconds``, by default the connection's interval."""
    window = connection.guard.window_seconds
    return connection.interval if window is None else window


def _internal(
    mirror: Mirror,
    connection: ConnectionConfig,
    selection: Selection,
    run: ConnectionRun | None,
    exc: Exception,
    duration_s: float,
) -> RunResult:
    """The run ``exc`` ended unforeseen, as outcome ``internal``: the traceback goes to the
    log, the run record and the connection's state get one redacted line, and the failure
    counts towards the connection's backoff like any other."""
    name = connection.name
    log.error("%s: internal error; the run stopped", name, exc_info=exc)
    error = InternalError(_internal_message(name, exc), connection=name)
    counts = run.state.counts if run is not None else Counts()
    result = RunResult(name, "internal", counts, duration_s, error)
    if not selection.dry_run:
        try:
            run_id = run.state.run_id if run else None
            _record_internal(mirror, connection, run_id, result, selection.kind)
        except Exception:  # the database may be what failed
            log.exception("%s: could not record the internal error", name)
    return result


def _internal_message(name: str, exc: BaseException) -> str:
    """One redacted line: the connection, the exception's type and first line, what to do."""
    lines = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
    message = (
        f"{name}: internal error ({what}); the run stopped and the next one retries; "
        "if it recurs, report it with the traceback from the log"
    )
    return current_redactor().redact(" ".join(message.split()))


def _record_internal(
    mirror: Mirror,
    connection: ConnectionConfig,
    run_id: int | None,
    result: RunResult,
    kind: str,
) -> None:
    """Close (or write) the run's record as ``internal`` and count a failure of the connection."""
    now = datetime.now(UTC)
    assert result.error is not None
    message = str(result.error)
    with mirror.write() as session:
        row = session.get(SyncConnection, connection.name)
        if row is None:
            row = store.register(session, connection.name, connection.vendor, False)
        record = session.get(Run, run_id) if run_id is not None else None
        if record is None:
            record = Run(connection=connection.name, started_at=now, kind=kind)
            session.add(record)
        record.finished_at = now
        record.duration_s = result.duration_s
        record.outcome = result.outcome
        for key, value in result.counts.as_dict().items():
            setattr(record, key, value)
        record.message = message
        row.consecutive_failures += 1
        row.last_error = {
            "at": now.isoformat(),
            "kind": result.error.kind,
            "message": message,
            "ticket_id": None,
            "external_id": None,
        }


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


def _report_failing(result: RunResult, report: Callable[[str], None] | None) -> None:
    """Name the failing tickets (docs/architecture.md §8.2): ``--run-once`` (``report``)
    prints them all on every pass, up to ``failures.LINES`` lines; the daemon logs a ticket
    when its error first appears or changes, then only how many still fail."""
    if report is not None:
        for line in result.failing_lines:
            report(line)
        return
    new = result.new_failures
    for line in new[: failures.LINES]:
        log.warning("%s", line, extra={"connection": result.connection})
    if len(new) > failures.LINES:
        log.warning("%s: ... and %d more", result.connection, len(new) - failures.LINES)
    if result.failing > len(new):
        log.info(
            "%s: %d tickets still failing (see `ticketsync status`)",
            result.connection,
            result.failing,
            extra={"connection": result.connection},
        )


def _log_summary(connection: ConnectionConfig, result: RunResult) -> None:
    counts: Counts = result.counts
    level = logging.INFO if result.ok else logging.WARNING
    log.log(
        level,
        "%s: %s in %.2fs: pulled=%d pushed=%d created=%d conflicts=%d errors=%d%s%s",
        connection.name,
        result.outcome,
        result.duration_s,
        counts.pulled,
        counts.pushed,
        counts.created,
        counts.conflicts,
        counts.errors,
        f" future_dated={counts.future_dated}" if counts.future_dated else "",
        f" ({result.error})" if result.error else "",
        extra={
            "connection": connection.name,
            "vendor": connection.vendor,
            "outcome": result.outcome,
            "duration_s": round(result.duration_s, 3),
            "counts": counts.as_dict(),
        },
    )
