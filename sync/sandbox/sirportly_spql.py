"""Sirportly emulator, its SPQL: the strict subset a sync client needs, evaluated on tickets.

``run_spql`` answers ``SELECT col, ... FROM tickets [WHERE <time column> <op> '<ISO time>'
| WHERE (<condition> OR <condition> ...)] [ORDER BY col [ASC|DESC]] [LIMIT count | LIMIT
offset,count]`` over the store's ticket
objects; anything else is a ``ValueError`` whose text is the 422's message. Singular table
names (``status.name``) are served and recorded as deviations (3P). A naive date literal is
UTC (INFERENCE).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sync.sandbox.sirportly_data import parse_iso

_CONDITION = r"[\w.]+\s*(?:>=|<=|=|>|<)\s*'[^']*'"
_ONE = re.compile(r"(?P<where>[\w.]+)\s*(?P<op>>=|<=|=|>|<)\s*'(?P<literal>[^']*)'")
_SPQL = re.compile(
    r"\s*SELECT\s+(?P<cols>.+?)\s+FROM\s+tickets"
    rf"(?:\s+WHERE\s+(?P<where>\(\s*{_CONDITION}(?:\s+OR\s+{_CONDITION})+\s*\)"
    rf"|{_CONDITION}))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>[\w.]+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?:(?P<offset>\d+)\s*,\s*)?(?P<count>\d+))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_OPS: Mapping[str, Callable[[datetime, datetime], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}
TIME_COLUMNS = ("tickets.updated_at", "tickets.submitted_at", "tickets.last_update_posted_at")
_SINGULAR = {"status.": "statuses.", "priority.": "priorities.", "department.": "departments."}
_SINGULAR |= {"team.": "teams.", "user.": "users.", "ticket.": "tickets."}


def run_spql(
    tickets: Iterable[Mapping[str, Any]], query: str, deviations: list[str]
) -> tuple[list[str], list[list[Any]]]:
    """The query's column names as given and its rows; ``ValueError`` for what is not served.

    Column names given in singular form are recorded in ``deviations``.
    """
    match = _SPQL.fullmatch(query)
    if match is None:
        raise ValueError(f"Invalid query: {query!r}")
    given = [c.strip() for c in match["cols"].split(",")]
    columns = [_column(c, deviations) for c in given]
    found = list(tickets)
    if match["where"]:
        tests = [_condition(c, deviations) for c in _ONE.finditer(match["where"])]
        found = [t for t in found if any(test(t) for test in tests)]
    if match["order"]:
        order = _column(match["order"], deviations)
        found.sort(key=lambda t: (_sortable(_value(t, order)), t["id"]))
        if (match["dir"] or "").upper() == "DESC":
            found.reverse()
    offset = int(match["offset"] or 0)
    if match["count"]:
        found = found[offset : offset + int(match["count"])]
    return given, [[_value(t, c) for c in columns] for t in found]


#: SPQL column -> how to read it from a ticket.
COLUMNS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "tickets.id": lambda t: t["id"],
    "tickets.reference": lambda t: t["reference"],
    "tickets.subject": lambda t: t["subject"],
    "tickets.submitted_at": lambda t: t["submitted_at"],
    "tickets.updated_at": lambda t: t["updated_at"],
    "tickets.last_update_posted_at": lambda t: t["last_update_posted_at"],
    "tickets.update_count": lambda t: t["update_count"],
    "tickets.last_respondant": lambda t: t["last_respondant"],
    "tickets.status_type": lambda t: t["status"]["status_type"],
    "statuses.name": lambda t: t["status"]["name"],
    "priorities.name": lambda t: t["priority"]["name"],
    "departments.id": lambda t: t["department"]["id"],
    "departments.name": lambda t: t["department"]["name"],
    "teams.id": lambda t: (t["team"] or {}).get("id"),
    "teams.name": lambda t: (t["team"] or {}).get("name"),
    "users.username": lambda t: (t["user"] or {}).get("username"),
}


def _condition(found: re.Match[str], deviations: list[str]) -> Callable[[Mapping[str, Any]], bool]:
    """One ``<time column> <op> '<ISO time>'`` as a test of a ticket (null: false)."""
    where = _column(found["where"], deviations)
    if where not in TIME_COLUMNS:
        raise ValueError(f"Invalid condition on {found['where']}")
    try:
        bound = parse_iso(found["literal"])
    except ValueError:
        raise ValueError(f"Invalid date {found['literal']!r}") from None
    op = _OPS[found["op"]]
    return lambda t: bool(_value(t, where)) and op(_time(t, where), bound)


def _column(name: str, deviations: list[str]) -> str:
    lowered = name.lower()
    for singular, plural in _SINGULAR.items():
        if lowered.startswith(singular):
            deviations.append(f"SPQL singular table name {name!r} (3P)")
            lowered = plural + lowered[len(singular) :]
    if lowered not in COLUMNS:
        raise ValueError(f"Invalid column '{name}'")
    return lowered


def _value(ticket: Mapping[str, Any], column: str) -> Any:
    return COLUMNS[column](ticket)


def _time(ticket: Mapping[str, Any], column: str) -> datetime:
    return parse_iso(str(_value(ticket, column)))


def _sortable(value: Any) -> tuple[int, Any]:
    # SPQL columns hold numbers, strings (ISO times sort as text) or null: never compared.
    if value is None:
        return (0, 0)
    return (1, value) if isinstance(value, int | float) else (2, str(value))
