"""``ticketsync status``: what each connection is doing, from the database alone
(docs/architecture.md §6).

``collect`` builds the stable JSON object (``schema: 1``); ``render`` turns it into a
table for a terminal. On PostgreSQL each connection's ``holder`` is the instance whose
lease is current (instance id, host, pid, since, generation, expires_at), and
``instances`` lists the live daemon instances with the number of leases each holds.
``strays`` lists the duplicate vendor tickets the pulls found (``sync.engine.strays``):
connection, external id, the mirror ticket, its marker and when it was first seen.
Each connection's ``comments`` (docs/architecture.md §8.5) gives its comment settings,
whether the vendor can post private notes, and the comments ``synced``, ``pending``,
``failed`` and ``skipped`` there (``sync.engine.comment_store.summary``).
``webhooks`` (Zoho Desk connections) says whether the connection takes webhooks, on which
listener, and when a webhook last started a run; ``last_run.kind`` is what started the
last run (scheduled, woken, webhook, once).
``pending_matches`` counts the candidate pairs waiting for review (docs/architecture.md §8.7).
Keys may be added; none is renamed or removed without bumping ``schema``. Nothing here
reads a secret. A last run's ``outcome`` is ``ok``, ``failed``, ``held``, ``interrupted`` or
``internal`` (an unforeseen error ended it; ``sync.runner`` records it).
``undo_requests`` lists a connection's newest ``ticketsync undo`` requests
(``sync.undo_cmd.status_rows``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync import undo_cmd
from sync.config import Config, ConnectionConfig
from sync.coord.locks import read_holder
from sync.db import Mirror
from sync.db.models import (
    Conflict,
    MatchCandidate,
    PullFailure,
    Run,
    SyncConnection,
    SyncInstance,
    SyncLease,
    SyncStray,
    TicketDirty,
    TicketLink,
)
from sync.engine import comment_store
from sync.runner import build_adapter, build_rules
from sync.vendors.base import Adapter
from sync.webhook_cmd import VENDORS as WEBHOOK_VENDORS

SCHEMA = 1


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def collect(config: Config, mirror: Mirror, now: datetime | None = None) -> dict[str, Any]:
    """The ``status --json`` object for every configured connection."""
    now = now or datetime.now(UTC)
    holder = _holder(mirror)
    with mirror.read() as session:
        connections = {
            name: _connection(session, config, name, now, holder) for name in config.connections
        }
        instances = _instances(session, config, now) if mirror.dialect == "postgresql" else []
        strays = _strays(session)
    return {
        "schema": SCHEMA,
        "generated_at": _iso(now),
        "database": mirror.redacted_url(),
        "connections": connections,
        "instances": instances,
        "strays": strays,
    }


def _strays(session: Session) -> list[dict[str, Any]]:
    """Every recorded stray, oldest first (they stay until removed by hand)."""
    rows = session.scalars(select(SyncStray).order_by(SyncStray.first_seen, SyncStray.id))
    return [
        {
            "connection": row.connection,
            "external_id": row.external_id,
            "ticket_id": row.ticket_id,
            "marker": row.marker,
            "first_seen": _iso(row.first_seen),
        }
        for row in rows
    ]


def _instances(session: Session, config: Config, now: datetime) -> list[dict[str, Any]]:
    """The live daemon instances (PostgreSQL) and how many leases each holds now."""
    cutoff = now - timedelta(seconds=config.sync.lease_seconds)
    held = dict(
        session.execute(
            select(SyncLease.instance, func.count())
            .where(SyncLease.expires_at > now)
            .group_by(SyncLease.instance)
        ).all()
    )
    rows = session.scalars(
        select(SyncInstance).where(SyncInstance.seen_at > cutoff).order_by(SyncInstance.started_at)
    )
    return [
        {
            "instance": row.id,
            "host": row.host,
            "pid": row.pid,
            "started_at": _iso(row.started_at),
            "seen_at": _iso(row.seen_at),
            "leases": int(held.get(row.id, 0)),
        }
        for row in rows
    ]


def _holder(mirror: Mirror) -> dict[str, Any] | None:
    path = mirror.sqlite_path
    if path is None:
        return None
    holder = read_holder(path.with_name(path.name + ".lock"))
    if holder is None:
        return None
    return {k: holder.get(k) for k in ("instance", "host", "pid", "since")}


def _count(session: Session, *where: Any, model: Any = TicketLink) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _connection(
    session: Session, config: Config, name: str, now: datetime, holder: dict[str, Any] | None
) -> dict[str, Any]:
    cfg = config.connections[name]
    row = session.get(SyncConnection, name)
    run = session.scalars(
        select(Run).where(Run.connection == name).order_by(Run.id.desc()).limit(1)
    ).first()
    link = TicketLink.connection == name
    next_retry = session.scalar(
        select(func.min(TicketLink.next_retry_at)).where(link, TicketLink.next_retry_at > now)
    )
    if row is not None and row.next_retry_at is not None and row.next_retry_at > now:
        next_retry = min(filter(None, (next_retry, row.next_retry_at)))
    last_success = row.last_success_at if row else None
    adapter = build_adapter(cfg, None)
    return {
        "vendor": cfg.vendor,
        "last_run": _run(run),
        "lag_s": None if last_success is None else round((now - last_success).total_seconds(), 1),
        "cursor": row.cursor if row else None,
        "pending_pushes": _count(session, TicketDirty.connection == name, model=TicketDirty),
        # linked tickets with an error, and vendor tickets whose record could not be read
        "failing_tickets": _count(session, link, TicketLink.last_error.is_not(None))
        + _count(session, PullFailure.connection == name, model=PullFailure),
        "orphaned_links": _count(session, link, TicketLink.state == "orphaned"),
        "linked_tickets": _count(session, link, TicketLink.state == "active"),
        "creating": _count(session, link, TicketLink.state == "creating"),
        "open_conflicts": _count(
            session, Conflict.connection == name, Conflict.resolution == "pending", model=Conflict
        ),
        "pending_matches": _count(
            session,
            MatchCandidate.connection == name,
            MatchCandidate.state == "pending",
            model=MatchCandidate,
        ),
        "consecutive_failures": row.consecutive_failures if row else 0,
        "next_retry_at": _iso(next_retry),
        "cooldown_until": _iso(row.cooldown_until) if row else None,
        "last_error": row.last_error if row else None,
        "credentials": row.credentials if row else "unknown",
        "unwritable_fields": build_rules(cfg, config, adapter).unwritable(),
        "guard": row.guard_held if row else None,
        "holder": holder if _is_sqlite(session) else _lease_holder(session, name, now),
        "undo_requests": undo_cmd.status_rows(session, name),
        "comments": _comments(session, cfg, adapter, row),
        "webhooks": _webhooks(session, config, name),
    }


def _comments(
    session: Session, cfg: ConnectionConfig, adapter: Adapter, row: SyncConnection | None
) -> dict[str, Any]:
    caps = adapter.capabilities
    return {
        "direction": cfg.comments.direction,
        "visibility": cfg.comments.visibility,
        "can_read": caps.comments_read,
        "can_post": caps.comments_write,
        "can_post_private": caps.private_comments,
        "private_stopped": row.private_comments_stopped if row else None,
        **comment_store.summary(session, cfg.name),
    }


def _webhooks(session: Session, config: Config, name: str) -> dict[str, Any] | None:
    """Whether ``name`` takes vendor webhooks, where, and its last run one started
    (docs/architecture.md §8.6); None for a vendor without webhooks. Never the secret."""
    cfg = config.connections[name]
    if cfg.vendor not in WEBHOOK_VENDORS:
        return None
    last = session.scalar(
        select(func.max(Run.started_at)).where(Run.connection == name, Run.kind == "webhook")
    )
    return {
        "secret_set": cfg.credential("webhook_secret") is not None,
        "listen": config.service.webhook_listen,
        "last_webhook_run_at": _iso(last),
    }


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _lease_holder(session: Session, name: str, now: datetime) -> dict[str, Any] | None:
    """The instance whose lease on ``name`` is current (PostgreSQL), or None."""
    lease = session.get(SyncLease, name)
    if lease is None or lease.expires_at <= now:
        return None
    return {
        "instance": lease.instance,
        "host": lease.host,
        "pid": lease.pid,
        "since": _iso(lease.acquired_at),
        "generation": lease.generation,
        "expires_at": _iso(lease.expires_at),
    }


def _run(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "started_at": _iso(run.started_at),
        "duration_s": run.duration_s,
        "outcome": "interrupted" if run.outcome == "running" else run.outcome,
        "pulled": run.pulled,
        "pushed": run.pushed,
        "created": run.created,
        "conflicts": run.conflicts,
        "errors": run.errors,
        "future_dated": run.future_dated,
        "kind": run.kind,
    }


def render(status: Mapping[str, Any]) -> str:
    """A readable table of ``status``, one block per connection."""
    lines = [f"database: {status['database']}"]
    for name, c in status["connections"].items():
        run = c["last_run"]
        last = (
            "never run"
            if run is None
            else f"{run['kind']} run {run['outcome']} at {run['started_at']} "
            f"({run['duration_s'] or 0:.1f}s): "
            f"pulled {run['pulled']}, pushed {run['pushed']}, created {run['created']}, "
            f"conflicts {run['conflicts']}, errors {run['errors']}"
            + (f", future-dated {run['future_dated']}" if run["future_dated"] else "")
        )
        lines += [
            "",
            f"{name} ({c['vendor']})",
            f"  last run:        {last}",
            f"  lag:             {_lag(c['lag_s'])}",
            f"  linked tickets:  {c['linked_tickets']}   pending pushes: {c['pending_pushes']}"
            f"   failing: {c['failing_tickets']}   orphaned: {c['orphaned_links']}",
            f"  conflicts open:  {c['open_conflicts']}   consecutive failures: "
            f"{c['consecutive_failures']}",
            f"  credentials:     {c['credentials']}",
        ]
        if c["unwritable_fields"]:
            lines.append(
                "  not supported:   "
                + ", ".join(c["unwritable_fields"])
                + " (the vendor's API cannot write these; local edits stay local)"
            )
        if c["pending_matches"]:
            lines.append(
                f"  match review:    {c['pending_matches']} candidate pair(s) pending; "
                "see `ticketsync match list`"
            )
        if c["guard"]:
            g = c["guard"]
            lines.append(
                f"  HELD by guard:   {g['planned']} planned vs {g['links']} links since "
                f"{g['held_since']}; see `ticketsync guard approve {name}`"
            )
        lines += undo_cmd.status_lines(c.get("undo_requests", []))
        lines += _render_comments(c.get("comments"))
        if c["last_error"]:
            lines.append(f"  last error:      {c['last_error']['message']}")
        if c["webhooks"]:
            lines.append(f"  webhooks:        {_webhook_line(c['webhooks'])}")
        if c["holder"]:
            h = c["holder"]
            lines.append(
                f"  held by:         pid {h['pid']} on {h['host']} since {h['since']}"
                f" (instance {h['instance']})"
            )
    for i in status.get("instances", []):
        lines.append(
            f"instance {i['instance']}: pid {i['pid']} on {i['host']}, {i['leases']} lease(s), "
            f"started {i['started_at']}, seen {i['seen_at']}"
        )
    for x in status.get("strays", []):
        lines.append(
            f"stray on {x['connection']}: vendor ticket {x['external_id']} duplicates ticket "
            f"#{x['ticket_id']} (marker {x['marker']}), first seen {x['first_seen']}; "
            "not imported, remove it at the vendor"
        )
    return "\n".join(lines)


def _render_comments(comments: Mapping[str, Any] | None) -> list[str]:
    """The comment lines of a connection's block (none while its comments are off and
    nothing was ever synced)."""
    if not comments:
        return []
    counts = ("synced", "pending", "failed", "skipped")
    if comments["direction"] == "off" and not any(comments[k] for k in counts):
        return []
    lines = [
        f"  comments:        {comments['direction']} ({comments['visibility']}): "
        + ", ".join(f"{k} {comments[k]}" for k in counts)
    ]
    if comments["direction"] in ("both", "push") and not comments["can_post_private"]:
        lines.append(
            "                   private notes are not posted here: the vendor cannot keep "
            "them private"
        )
    if comments.get("private_stopped"):
        lines.append(f"                   PRIVATE POSTS STOPPED: {comments['private_stopped']}")
    return lines


def _webhook_line(hooks: Mapping[str, Any]) -> str:
    if not hooks["secret_set"] or not hooks["listen"]:
        return "off (set credentials.webhook_secret and service.webhook_listen)"
    last = hooks["last_webhook_run_at"] or "none yet"
    return f"listening on {hooks['listen']}; last run a webhook started: {last}"


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "no successful run yet"
    if seconds < 120:
        return f"{seconds:.0f}s since the last successful run"
    return f"{seconds / 60:.0f} min since the last successful run"
