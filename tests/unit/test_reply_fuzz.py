"""Property-based fuzzing of each adapter's reply parsing (issue 20, item 9).

Whatever JSON a vendor sends where a ticket is expected, each adapter's parse entry point
yields a ``RemoteTicket`` or raises ``ProtocolError`` (or ``Unreadable`` for one record that
did not parse), never anything else. The inputs are
arbitrary JSON values, and real records of each emulator with keys dropped or replaced by
arbitrary (and hostile: far-future, overflowing, NaN, control-character) values, so the
search reaches past the first missing key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.config import parse_config
from sync.errors import ProtocolError, Unreadable
from sync.runner import build_adapter
from sync.sandbox.base import emulators
from sync.vendors.base import RemoteTicket
from sync.vendors.sirportly.pull import parse_rows
from tests.system.harness import PLUGINS

HOSTILE = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "99999999999-12-31T23:59:59Z",
    "0000-00-00 00:00:00",
    "31-12-9999 23:59",
    "\x00\x1b[2J\u202e",
    "",
    10**30,
    -(10**30),
    253402300799000,
    1e308,
    float("nan"),
    float("inf"),
    -1,
    [],
    {},
]
HOSTILE_SCALARS = st.sampled_from(HOSTILE)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | HOSTILE_SCALARS
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutated(record: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``record`` with each key kept, dropped or given an arbitrary value; nested objects
    are mutated the same way."""

    def value(v: Any) -> st.SearchStrategy[Any]:
        if isinstance(v, Mapping) and v:
            return st.just(dict(v)) | _mutated(v) | JSON
        return st.just(v) | JSON

    return st.fixed_dictionaries({}, optional={k: value(v) for k, v in record.items()})


def _adapter(vendor: str) -> Any:
    data = PLUGINS[vendor].connection(SimpleNamespace(url="http://127.0.0.1:9"))  # type: ignore[arg-type]
    connection = parse_config({"connections": {"fuzz": data}}, env={}).connections["fuzz"]
    return build_adapter(connection, None)


def _record(vendor: str) -> tuple[Any, dict[str, Any]]:
    """An emulator and one real ticket record in its store."""
    emulator = emulators()[vendor]()
    created = emulator.seed(**PLUGINS[vendor].remote_ticket(0))
    ticket_id = str(created.get(PLUGINS[vendor].id_key, created.get("id")))
    ticket = emulator.tickets.get(ticket_id) or next(iter(emulator.tickets.values()))
    return emulator, ticket


def _parses(parse: Callable[[Any], Any], document: Any) -> None:
    try:
        result = parse(document)
    except (ProtocolError, Unreadable) as exc:
        # Unreadable: one record that did not parse, a per-ticket error (§8.2)
        assert str(exc).startswith("fuzz: "), str(exc)
        return
    assert result is None or isinstance(result, RemoteTicket | list)


def _targets() -> dict[str, tuple[Callable[[Any], Any], Any]]:
    """Name -> (parse entry point, a real document it accepts)."""
    zoho, kapture, proprofs, sirportly = (
        _adapter(v) for v in ("zoho_desk", "kapture", "proprofs", "sirportly")
    )
    _, zoho_ticket = _record("zoho_desk")
    kapture_emulator, kapture_ticket = _record("kapture")
    proprofs_emulator, proprofs_ticket = _record("proprofs")
    _, sirportly_ticket = _record("sirportly")
    details = kapture_emulator.task_details(kapture_ticket)
    return {
        "zoho_desk": (lambda d: zoho._ticket(d, "1"), zoho_ticket),
        "kapture-reply": (
            lambda d: kapture._reply_ticket(d, "fuzz", required=True),
            {"ticket": kapture_emulator.ticket_object(kapture_ticket)},
        ),
        "kapture-pull": (
            # Its caller passes objects only (a non-object is a shape error there).
            lambda d: kapture.reads._parse(d, d, "fuzz") if isinstance(d, Mapping) else None,
            details.get("task_details", details) if isinstance(details, dict) else details,
        ),
        "proprofs": (proprofs._ticket, proprofs_emulator.render(proprofs_ticket)),
        "sirportly": (lambda d: sirportly._ticket(d, "SP-1"), sirportly_ticket),
        "sirportly-rows": (
            lambda d: parse_rows(d, "fuzz"),
            {"results": [["SP-1", "2026-01-01T00:00:00+00:00"]], "fields": ["a", "b"]},
        ),
    }


TARGETS = _targets()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_real_record_parses(target: str) -> None:
    parse, document = TARGETS[target]
    _parses(parse, document)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_hostile_values_in_every_key(target: str) -> None:
    parse, document = TARGETS[target]
    assert isinstance(document, Mapping)
    for key in document:
        for value in HOSTILE:
            _parses(parse, {**document, key: value})


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_times_in_spql_rows(value: Any) -> None:
    _parses(lambda d: parse_rows(d, "fuzz"), {"results": [["SP-1", value]], "fields": []})


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")))
@given(data=st.data())
def test_any_json_yields_a_ticket_or_a_protocol_error(target: str, data: st.DataObject) -> None:
    parse, document = TARGETS[target]
    strategy = _mutated(document) | JSON if isinstance(document, Mapping) else JSON
    _parses(parse, data.draw(strategy))
