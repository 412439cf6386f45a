"""``ticketsync match``: the review queue of tickets both sides may already have
(docs/architecture.md §8.7).

- ``match NAME``: score now: list connection NAME's vendor tickets and record a candidate
  for each unlinked one that resembles an unlinked mirror ticket (nothing is imported);
- ``match list [--json]``: the candidates waiting (pending, or approved and not yet linked);
- ``match approve ID...|--all-above SCORE`` and ``match reject ID...``: record the decision.
  The connection's next pass carries it out: this command's own pass when it gets the lock
  (the SQLite lock file, or the connection's lease on PostgreSQL), else the daemon's.

The JSON object of ``match list --json`` has ``schema: 1``; keys may be added, none is
renamed or removed without bumping it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.config import Config
from sync.errors import ConfigError, LockHeld, UserError

if TYPE_CHECKING:  # the engine is imported when a command needs it, not for --help
    from sync.db import Mirror
    from sync.db.models import MatchCandidate, Ticket

SCHEMA = 1
ACTIONS = ("list", "approve", "reject")


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The ``match`` subcommand; ``common`` adds the options every subcommand takes."""
    match = sub.add_parser(
        "match",
        help="match tickets both sides already have, before anything is created",
        description="`match NAME` scores connection NAME now; `match list`, "
        "`match approve ID...|--all-above SCORE` and `match reject ID...` review the pairs.",
    )
    common(match)
    match.add_argument("what", metavar="NAME|list|approve|reject")
    match.add_argument("ids", nargs="*", type=int, metavar="ID", help="candidate ids")
    match.add_argument("--json", action="store_true", help="(list) one JSON object")
    match.add_argument(
        "--all-above",
        type=float,
        metavar="SCORE",
        help="(approve) every pending candidate scoring at least SCORE",
    )
    match.add_argument(
        "--connection",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=argparse.SUPPRESS,
        help="(list, approve --all-above) only these connections",
    )


def command(args: argparse.Namespace, config: Config, mirror: Mirror) -> int:
    """Run ``args.what``; returns the exit code."""
    if args.what == "list":
        report = collect(mirror, _connections(args, config))
        print(json.dumps(report, indent=2) if args.json else render(report))
        return 0
    if args.what in ("approve", "reject"):
        return _decide(args, config, mirror)
    if args.ids or args.all_above is not None:
        raise UserError(f"match {args.what}: give a connection name alone, or list|approve|reject")
    return _score(config, mirror, args.what)


def _connections(args: argparse.Namespace, config: Config) -> list[str]:
    names = list(getattr(args, "connection", None) or config.connections)
    unknown = [n for n in names if n not in config.connections]
    if unknown:
        raise ConfigError([f"--connection {n}: no such connection" for n in unknown])
    return names


def _score(config: Config, mirror: Mirror, name: str) -> int:
    if name not in config.connections:
        raise ConfigError(
            [f"match {name}: no such connection (configured: {', '.join(config.connections)})"]
        )
    found = asyncio.run(score_now(mirror, config, name))
    print(f"{name}: {found} new candidate pair(s); review them with `ticketsync match list`")
    return 0


async def score_now(mirror: Mirror, config: Config, name: str) -> int:
    """List connection ``name``'s vendor tickets and record the new candidates (nothing is
    imported, nothing is sent); returns how many."""
    from sync.engine import adopt
    from sync.engine.run import ConnectionRun, RunOptions
    from sync.runner import build_adapter, build_rules, state_dir

    connection = config.connections[name]
    adapter = build_adapter(connection, state_dir(config, mirror))
    try:
        run = ConnectionRun(
            mirror,
            name,
            adapter,
            build_rules(connection, config, adapter),
            direction=connection.direction,
            options=RunOptions(match=connection.match),
        )
        return await adopt.scan(run.state)
    finally:
        await adapter.aclose()


def _decide(args: argparse.Namespace, config: Config, mirror: Mirror) -> int:
    from sync import once
    from sync.engine import candidates

    state = "approved" if args.what == "approve" else "rejected"
    if args.what == "reject" and args.all_above is not None:
        raise UserError("match reject takes candidate ids, not --all-above")
    if bool(args.ids) == (args.all_above is not None):
        raise UserError(f"match {args.what}: give candidate ids, or --all-above SCORE")
    now = datetime.now(UTC)
    with mirror.write() as session:
        ids = list(args.ids)
        if args.all_above is not None:
            ids = candidates.at_least(session, args.all_above, _connections(args, config))
        rows = candidates.decide(session, ids, state, now)
        decided = [(row.id, row.connection) for row in rows]
    missing = sorted(set(ids) - {i for i, _ in decided})
    if missing and not decided:
        raise UserError(
            f"match {args.what}: no pending candidate #{', #'.join(map(str, missing))}; "
            "see `ticketsync match list`"
        )
    for candidate_id in missing:
        print(f"candidate #{candidate_id}: not pending (see `ticketsync match list`); unchanged")
    names = sorted({c for _, c in decided if c in config.connections})
    print(f"{len(decided)} candidate(s) {state}; the connection's next pass carries it out")
    if not names:
        return 0
    try:
        return once.run_once(mirror, config, names, dry_run=False, force=False)
    except LockHeld:
        print("another instance is syncing; its next pass carries the decision out")
        return 0


def collect(mirror: Mirror, connections: Sequence[str]) -> dict[str, Any]:
    """The ``match list --json`` object: every waiting candidate, best first."""
    from sync.db.models import Ticket
    from sync.engine import candidates

    with mirror.read() as session:
        rows = candidates.listed(session, connections)
        tickets = {
            t.id: t
            for t in session.query(Ticket).filter(Ticket.id.in_([r.ticket_id for r in rows]))
        }
        return {"schema": SCHEMA, "candidates": [_row(r, tickets.get(r.ticket_id)) for r in rows]}


def _row(row: MatchCandidate, ticket: Ticket | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "connection": row.connection,
        "state": row.state,
        "score": row.score,
        "reasons": list(row.reasons),
        "ticket_id": row.ticket_id,
        "ticket": None
        if ticket is None
        else {"title": ticket.title, "requester_email": ticket.requester_email},
        "external_id": row.external_id,
        "vendor": dict(row.snapshot),
        "created_at": _iso(row.created_at),
        "decided_at": _iso(row.decided_at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render(report: dict[str, Any]) -> str:
    """The candidates as lines for a terminal."""
    rows = report["candidates"]
    if not rows:
        return "no match candidates waiting"
    lines = []
    for r in rows:
        mirror = r["ticket"] or {}
        vendor = r["vendor"]
        lines.append(
            f"#{r['id']} {r['connection']} score {r['score']:.2f} ({', '.join(r['reasons'])})"
            f"{'' if r['state'] == 'pending' else ' [' + r['state'] + ']'}\n"
            f"    mirror #{r['ticket_id']}: {mirror.get('title')!r} "
            f"<{mirror.get('requester_email')}>\n"
            f"    vendor {r['external_id']}: {vendor.get('subject')!r} "
            f"<{vendor.get('requester_email')}>"
        )
    lines.append(
        f"{len(rows)} candidate(s); `ticketsync match approve ID` links a pair, "
        "`match reject ID` keeps both tickets apart"
    )
    return "\n".join(lines)
