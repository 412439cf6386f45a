"""``ticketsync journal``: what changed, where and why, read-only, from the database alone.

The ``journal`` table holds one entry per field change in either direction (``pull``
into the mirror, ``push``/``send`` to a vendor), per import, create, conflict, late
write and operator resolution. This module reads it so a person can choose what to undo.

Contract:

- ``collect(mirror, query)`` returns the ``journal --json`` object, stable for scripts::

    {"schema": 1, "generated_at": "...Z", "database": "<url, no password>",
     "filters": {"run": int | null, "ticket": int | null, "connections": [...]},
     "limit": int | null, "total": int, "shown": int, "omitted": int,
     "entries": [{"id", "at", "run_id", "run": null | {"connection", "started_at",
       "finished_at", "outcome"}, "connection", "ticket_id", "external_id", "action",
       "field", "old_value", "new_value", "note", "generation", "old_canonical",
       "new_canonical", "old_vendor", "new_vendor", "undo_of"}]}

  Entries come newest first; ``limit`` null means no limit; ``omitted`` is how many
  entries matched but were left out by the limit. Times are ISO-8601 UTC with a ``Z``.
  Values are as stored (pulls in canonical values, pushes in the vendor's); every note
  goes through the redactor. A ``pull`` or ``push`` entry also holds its change in both
  spellings (``old_/new_canonical``, ``old_/new_vendor``; null on entries written before
  they were recorded); an ``undo`` entry's ``undo_of`` is the run it took back. A run's
  ``outcome`` is as stored: ``running`` means it has not finished (it is running now, or
  was interrupted). Keys may be added; none is renamed or removed without bumping
  ``schema``.
- ``--run`` naming a run that does not exist raises ``UserError`` (exit 2); any other
  filter that matches nothing is an empty result, which ``render`` explains.
- ``render(report)`` groups the entries by run (newest run first), then by ticket
  (ascending id), each ticket's entries oldest first, times to the second, and ends with
  a line saying how many entries were left out by the limit and how to see them.

Queries stay on indexes: ``--run`` on ``journal.run_id``, ``--ticket`` on
``journal.ticket_id``, ``--connection`` on ``(connection, at)`` (entries then come
newest first by time), none on the primary key (newest first by id); the two orders
agree but for entries written within the same instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from sync import redact
from sync.db import Mirror
from sync.db.models import JournalEntry, Run
from sync.errors import UserError

SCHEMA = 1
DEFAULT_LIMIT = 50

_S = TypeVar("_S", bound=Select[Any])


@dataclass(frozen=True)
class JournalQuery:
    """Which entries to show: all filters given must match; ``limit`` None shows all."""

    run: int | None = None
    ticket: int | None = None
    connections: tuple[str, ...] = field(default_factory=tuple)
    limit: int | None = DEFAULT_LIMIT


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def collect(
    mirror: Mirror,
    query: JournalQuery,
    *,
    redactor: redact.Redactor | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``journal --json`` object for ``query`` (see the module docstring).

    Raises ``UserError`` when ``query.run`` names a run that does not exist.
    """
    redactor = redactor or redact.current()
    with mirror.read() as session:
        if query.run is not None:
            _require_run(session, query.run)
        total = session.scalar(_filtered(select(func.count()).select_from(JournalEntry), query))
        rows: list[JournalEntry] = list(session.scalars(_page(query)))
        runs = _runs(session, {r.run_id for r in rows if r.run_id is not None})
    total = int(total or 0)
    return {
        "schema": SCHEMA,
        "generated_at": _iso(now or datetime.now(UTC)),
        "database": mirror.redacted_url(),
        "filters": {
            "run": query.run,
            "ticket": query.ticket,
            "connections": list(query.connections),
        },
        "limit": query.limit,
        "total": total,
        "shown": len(rows),
        "omitted": total - len(rows),
        "entries": [_entry(row, runs, redactor) for row in rows],
    }


def _require_run(session: Session, run_id: int) -> None:
    """Raise ``UserError`` unless run ``run_id`` exists, naming the newest one."""
    if session.get(Run, run_id) is not None:
        return
    newest = session.scalar(select(func.max(Run.id)))
    hint = "no run has been recorded yet" if newest is None else f"the newest run is #{newest}"
    raise UserError(f"--run {run_id}: no such run ({hint})")


def _filtered(statement: _S, query: JournalQuery) -> _S:
    """``statement`` restricted to the entries ``query`` selects."""
    if query.run is not None:
        statement = statement.where(JournalEntry.run_id == query.run)
    if query.ticket is not None:
        statement = statement.where(JournalEntry.ticket_id == query.ticket)
    if query.connections:
        statement = statement.where(JournalEntry.connection.in_(query.connections))
    return statement


def _page(query: JournalQuery) -> Select[Any]:
    """The newest ``query.limit`` matching entries, in an order an index can deliver."""
    statement = _filtered(select(JournalEntry), query)
    if query.connections and query.run is None and query.ticket is None:
        statement = statement.order_by(JournalEntry.at.desc(), JournalEntry.id.desc())
    else:
        statement = statement.order_by(JournalEntry.id.desc())
    return statement if query.limit is None else statement.limit(query.limit)


def _runs(session: Session, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The summary of each run in ``ids`` that still exists, by id."""
    wanted = sorted(ids)
    if not wanted:
        return {}
    rows = session.scalars(select(Run).where(Run.id.in_(wanted)))
    return {
        run.id: {
            "connection": run.connection,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "outcome": run.outcome,
        }
        for run in rows
    }


def _entry(
    row: JournalEntry, runs: Mapping[int, dict[str, Any]], redactor: redact.Redactor
) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": _iso(row.at),
        "run_id": row.run_id,
        "run": runs.get(row.run_id) if row.run_id is not None else None,
        "connection": row.connection,
        "ticket_id": row.ticket_id,
        "external_id": row.external_id,
        "action": row.action,
        "field": row.field,
        "old_value": row.old_value,
        "new_value": row.new_value,
        "note": None if row.note is None else redactor.redact(row.note),
        "generation": row.generation,
        "old_canonical": row.old_canonical,
        "new_canonical": row.new_canonical,
        "old_vendor": row.old_vendor,
        "new_vendor": row.new_vendor,
        "undo_of": row.undo_of,
    }


# -- text ------------------------------------------------------------------------------


def render(report: Mapping[str, Any]) -> str:
    """A readable table of ``report`` (from ``collect``), grouped by run, then ticket."""
    entries: Sequence[dict[str, Any]] = report["entries"]
    if not entries:
        return _nothing(report)
    widths = {key: max(len(str(e[key] or "")) for e in entries) for key in ("action", "field")}
    lines: list[str] = []
    for run_id, run_entries in _grouped(entries, lambda e: e["run_id"]):
        lines.append(_run_heading(run_id, run_entries[0]["run"]))
        for _, ticket_entries in sorted(_grouped(run_entries, _ticket_key), key=_by_ticket):
            lines.append("  " + _ticket_heading(ticket_entries[0]))
            lines += ["    " + _line(e, widths) for e in reversed(ticket_entries)]
    lines.append(_closing(report))
    return "\n".join(lines)


def _grouped(entries: Sequence[dict[str, Any]], key: Any) -> list[tuple[Any, list[dict[str, Any]]]]:
    """``entries`` split by ``key``, groups in order of first appearance, order kept."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(key(entry), []).append(entry)
    return list(groups.items())


def _ticket_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (entry["ticket_id"], entry["connection"], entry["external_id"])


def _by_ticket(group: tuple[tuple[Any, ...], Any]) -> tuple[bool, int, str, str]:
    """Sort key of a ticket group: ascending ticket id, entries without a ticket last."""
    ticket_id, connection, external_id = group[0]
    return (ticket_id is None, ticket_id or 0, connection, external_id or "")


def _run_heading(run_id: int | None, run: Mapping[str, Any] | None) -> str:
    if run_id is None:
        return "outside any run (operator actions such as `ticketsync conflicts resolve`)"
    if run is None:
        return f"run #{run_id} (its run record no longer exists)"
    started = _seconds(run["started_at"])
    return f"run #{run_id}  {run['connection']}  {run['outcome']}  started {started}"


def _ticket_heading(entry: Mapping[str, Any]) -> str:
    ticket = "no ticket" if entry["ticket_id"] is None else f"ticket #{entry['ticket_id']}"
    external = entry["external_id"] or "(no external id)"
    return f"{ticket}  {entry['connection']} {external}"


def _line(entry: Mapping[str, Any], widths: Mapping[str, int]) -> str:
    parts = [
        _seconds(entry["at"]),
        f"{entry['action']:<{widths['action']}}",
        f"{entry['field'] or '':<{widths['field']}}",
    ]
    if entry["field"] is not None or entry["old_value"] or entry["new_value"]:
        parts.append(f"{entry['old_value']!r} -> {entry['new_value']!r}")
    if entry["note"]:
        parts.append(f"({entry['note']})")
    return "  ".join(parts).rstrip()


def _seconds(at: str | None) -> str:
    """An ISO time from ``collect`` to the second (``2026-12-03T14:05:09Z``)."""
    return "" if at is None else at[:19] + "Z"


def _filters_text(report: Mapping[str, Any]) -> str:
    f = report["filters"]
    words = [f"--run {f['run']}"] if f["run"] is not None else []
    words += [f"--ticket {f['ticket']}"] if f["ticket"] is not None else []
    words += [f"--connection {name}" for name in f["connections"]]
    return " ".join(words)


def _nothing(report: Mapping[str, Any]) -> str:
    filters = _filters_text(report)
    if not filters:
        return "the journal is empty: no sync has changed anything yet"
    return f"no journal entries match {filters}"


def _closing(report: Mapping[str, Any]) -> str:
    shown, total, omitted = report["shown"], report["total"], report["omitted"]
    if not omitted:
        return f"{shown} entr{'y' if shown == 1 else 'ies'} shown, all that match"
    return (
        f"showing the newest {shown} of {total} entries; {omitted} older ones are left out: "
        "see them with --limit N (or --limit 0 for all), or narrow with --run, --ticket "
        "or --connection"
    )
