"""``ticketsync undo RUN_ID``: take back what one run changed (docs/architecture.md §8.7).

Contract:

- The run must exist and belong to a configured connection; ``--connection NAME`` must
  name that connection (a run is one connection's); otherwise a ``UserError`` (exit 2).
- ``--dry-run`` prints one line per change of the run (``sync.engine.undo.describe``)
  and the totals, from the database alone; it writes nothing anywhere.
- Otherwise it records a request (``undo_requests``), as ``guard approve`` records an
  approval, and runs the connection's pass itself when it gets the lock: that pass
  carries the request out (``sync.engine.undo_run``) and the command prints its result.
  When a daemon (or another instance) holds the connection, the command says so and
  exits 0: the holder's next pass carries it out, and ``status`` shows it.
- ``--force`` lets the request pass the mass-change guard. Exit codes are the pass's:
  0 done, 1 the pass failed or the guard held the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.config import Config
from sync.db import Mirror
from sync.db.models import Run, UndoRequest
from sync.engine import undo
from sync.errors import LockHeld, UserError


@dataclass(frozen=True)
class UndoAsk:
    """What the command was asked: the run, and its filters."""

    run_id: int
    connection: str | None = None
    ticket_id: int | None = None
    force: bool = False


def target(mirror: Mirror, config: Config, ask: UndoAsk) -> str:
    """The connection of the run to undo; ``UserError`` when it cannot be undone here."""
    with mirror.read() as session:
        run = session.get(Run, ask.run_id)
    if run is None:
        raise UserError(f"undo: run #{ask.run_id} does not exist (see `ticketsync status`)")
    if ask.connection is not None and ask.connection != run.connection:
        raise UserError(
            f"undo: run #{ask.run_id} is a run of {run.connection}, not of {ask.connection}"
        )
    if run.connection not in config.connections:
        raise UserError(
            f"undo: run #{ask.run_id} belongs to {run.connection}, which is no longer "
            "configured; add it back to undo its run"
        )
    return run.connection


def preview(mirror: Mirror, connection: str, ask: UndoAsk, out: Callable[[str], None]) -> int:
    """Print the plan of the undo (``--dry-run``); return the exit code."""
    with mirror.read() as session:
        decisions = undo.plan(session, connection, ask.run_id, ask.ticket_id)
    for d in decisions:
        out(undo.describe(connection, ask.run_id, d))
    totals = undo.totals(decisions)
    summary = ", ".join(f"{n} {step}" for step, n in totals.items() if n)
    out(
        f"dry run: undo of run #{ask.run_id} ({connection}): {len(decisions)} change(s)"
        f"{': ' + summary if summary else ''}; {undo.touched(decisions)} ticket(s) to "
        "restore; nothing written"
    )
    return 0


def record(mirror: Mirror, connection: str, ask: UndoAsk) -> int:
    """Record the request; return its id."""
    with mirror.write() as session:
        request = UndoRequest(
            run_id=ask.run_id,
            connection=connection,
            ticket_id=ask.ticket_id,
            force=ask.force,
            state="pending",
        )
        session.add(request)
        session.flush()
        return request.id


def result_line(mirror: Mirror, request_id: int) -> str:
    """The request's state and result, one line."""
    with mirror.read() as session:
        request = session.get(UndoRequest, request_id)
    assert request is not None
    result = request.result or {}
    if request.state == "held":
        return str(result.get("held"))
    counts = ", ".join(f"{n} {k}" for k, n in result.items() if n)
    by = f" by run #{request.executed_by}" if request.executed_by else ""
    return f"undo request #{request_id}: {request.state}{by}{': ' + counts if counts else ''}"


def run(
    mirror: Mirror,
    config: Config,
    ask: UndoAsk,
    *,
    dry_run: bool,
    sync_once: Callable[[str], int],
    out: Callable[[str], None],
) -> int:
    """The whole command (see the module docstring); ``sync_once(name)`` runs one pass of
    a connection and returns its exit code, raising ``LockHeld`` when it is held."""
    connection = target(mirror, config, ask)
    if dry_run:
        return preview(mirror, connection, ask, out)
    request_id = record(mirror, connection, ask)
    out(f"undo request #{request_id} recorded: run #{ask.run_id} on {connection}")
    try:
        code = sync_once(connection)
    except LockHeld:
        out(
            f"{connection} is being synced by another instance: its next pass carries out "
            f"request #{request_id} (see `ticketsync status`)"
        )
        return 0
    out(result_line(mirror, request_id))
    return code


#: Undo requests ``status`` shows per connection: the open ones and the newest others.
STATUS_LIMIT = 5


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def status_rows(session: Session, connection: str) -> list[dict[str, Any]]:
    """The ``undo_requests`` of ``status --json`` for one connection, newest first: id,
    run_id, ticket_id, force, state, requested_at, finished_at, executed_by, result."""
    rows = session.scalars(
        select(UndoRequest)
        .where(UndoRequest.connection == connection)
        .order_by(UndoRequest.id.desc())
        .limit(STATUS_LIMIT)
    )
    return [
        {
            "id": r.id,
            "run_id": r.run_id,
            "ticket_id": r.ticket_id,
            "force": r.force,
            "state": r.state,
            "requested_at": _iso(r.requested_at),
            "finished_at": _iso(r.finished_at),
            "executed_by": r.executed_by,
            "result": r.result,
        }
        for r in rows
    ]


def status_lines(rows: list[Mapping[str, Any]]) -> list[str]:
    """``status`` lines for a connection's undo requests."""
    lines = []
    for r in rows:
        result = r["result"] or {}
        counts = ", ".join(f"{n} {k}" for k, n in result.items() if isinstance(n, int) and n)
        by = f" by run #{r['executed_by']}" if r["executed_by"] else ""
        lines.append(
            f"  undo #{r['id']}:         run #{r['run_id']}: {r['state']}{by}"
            f"{' (' + counts + ')' if counts else ''}"
        )
    return lines
