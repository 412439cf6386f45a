"""Fixtures for the Zoho Desk tests: an in-process emulator and adapters pointed at it."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.config import ConnectionConfig, parse_config
from sync.http import HttpClient
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.sandbox.zoho_desk_data import AGENTS, DEPARTMENTS, iso_ms
from sync.vendors.base import AdapterContext
from sync.vendors.zoho_desk.adapter import ZohoDeskAdapter
from sync.vendors.zoho_desk.mapping import FIELD_NAMES, parse_time, to_remote, zoho_time

# Quick retries: tests wait milliseconds, not the production half-second backoff.
FAST_HTTP = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "max_attempts": 3,
    "total_timeout": 10,
    "read_timeout": 5,
    "connect_timeout": 2,
}


def zoho_connection(
    emulator: ZohoDeskEmulator,
    *,
    name: str = "zoho-test",
    options: Mapping[str, Any] | None = None,
    refresh_token: str | None = None,
) -> ConnectionConfig:
    """A connection to ``emulator`` (API and accounts on the same server), via parse_config."""
    assert emulator.base_url is not None
    data = {
        "connections": {
            name: {
                "vendor": "zoho_desk",
                "base_url": emulator.base_url,
                "credentials": {
                    "client_id": emulator.client_id,
                    "client_secret": emulator.client_secret,
                    "refresh_token": refresh_token or emulator.refresh_token,
                    "org_id": emulator.org_id,
                    "accounts_url": emulator.base_url,
                },
                "options": dict(options or {}),
                "http": FAST_HTTP,
            }
        }
    }
    return parse_config(data, env={}).connections[name]


def context_for(
    connection: ConnectionConfig,
    state_dir: Path | None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AdapterContext:
    def http(url: str) -> HttpClient:
        if sleep is None:
            return HttpClient(connection.name, url, connection.http)
        return HttpClient(connection.name, url, connection.http, sleep=sleep)

    return AdapterContext(http=http, state_dir=state_dir)


@pytest.fixture
async def zoho_emulator() -> AsyncIterator[ZohoDeskEmulator]:
    emulator = ZohoDeskEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


MakeAdapter = Callable[..., ZohoDeskAdapter]


@pytest.fixture
async def make_zoho(zoho_emulator: ZohoDeskEmulator, tmp_path: Path) -> AsyncIterator[MakeAdapter]:
    """Build adapters against the emulator; all share ``tmp_path`` as their state folder."""
    made: list[ZohoDeskAdapter] = []

    def make(
        state_dir: Path | None = tmp_path,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **kw: Any,
    ) -> ZohoDeskAdapter:
        connection = zoho_connection(zoho_emulator, **kw)
        adapter = ZohoDeskAdapter(connection, context_for(connection, state_dir, sleep))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.aclose()


class ZohoVendor:
    """The contract suite's handle on the Zoho emulator (see tests/vendors/contract.py)."""

    has_modified_at = True
    missing_id = "1892000000999993"
    read_route = "GET /api/v1/tickets/1"
    write_route = "PATCH /api/v1/tickets/"
    values: Mapping[str, tuple[str, str]] = {
        "title": ("Printer on fire", "Printer extinguished"),
        "description": ("It smokes.", "It no longer smokes."),
        "status": ("Open", "On Hold"),
        "priority": ("High", "Low"),
        "queue": tuple(DEPARTMENTS),  # type: ignore[dict-item]
        "assignee": tuple(AGENTS),  # type: ignore[dict-item]
        "requester_email": ("carol@example.com", "dave@example.com"),
        "due_at": ("2030-01-02T03:04:05Z", "2031-02-03T04:05:06.789Z"),
    }
    create_values: Mapping[str, str] = {
        "title": "Created by ticketsync",
        "status": "Open",
        "priority": "High",
        "queue": next(iter(DEPARTMENTS)),
        "requester_email": "erin@example.com",
    }

    def __init__(self, emulator: ZohoDeskEmulator) -> None:
        self.emulator = emulator

    @staticmethod
    def _zoho(fields: Mapping[str, Any]) -> dict[str, Any]:
        values = {FIELD_NAMES[name]: value for name, value in fields.items()}
        if values.get("dueDate"):
            values["dueDate"] = zoho_time(parse_time(values["dueDate"]))  # type: ignore[arg-type]
        return values

    def seed(self, modified_ago: float = 0.0, **fields: Any) -> str:
        when = self.emulator.clock() - timedelta(seconds=modified_ago)
        ticket = self.emulator.seed(modifiedTime=iso_ms(when), **self._zoho(fields))
        return str(ticket["id"])

    def edit(self, external_id: str, **fields: Any) -> None:
        self.emulator.edit(external_id, **self._zoho(fields))

    def fetch(self, external_id: str) -> Mapping[str, Any]:
        return to_remote(self.emulator.tickets[external_id], "cf_ticketsync_marker").fields

    def inject(self, kind: str, **params: Any) -> None:
        self.emulator.inject(kind, **params)

    checks_visibility = True
    comment_read_route = "GET /api/v1/tickets/"

    def add_comment(self, external_id: str, body: str, *, public: bool, ago: float) -> None:
        when = self.emulator.clock() - timedelta(seconds=ago)
        content = "<div>" + html.escape(body) + "</div>"
        self.emulator.add_comment(external_id, content=content, isPublic=public, commentedTime=when)

    def stored_comments(self, external_id: str) -> list[tuple[str, bool | None]]:
        return [(c["content"], c["isPublic"]) for c in self.emulator.comments.get(external_id, [])]

    def misfile_visibility(self) -> None:
        self.emulator.configure(misfile_visibility=True)

    def deviations(self) -> list[str]:
        return self.emulator.deviations()
