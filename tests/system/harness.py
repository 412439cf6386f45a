"""Vendor emulators as separate processes, and a plug-in per vendor for system tests.

The crash tests kill the daemon, never the vendor: each emulator runs as
``python -m sync.sandbox VENDOR --port 0`` and is driven through its control API.
A vendor joins the system and crash tests by adding a ``VendorPlugin`` to ``PLUGINS``.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine

from tests.system.conftest import ROOT, run_cli


class VendorProcess:
    """A running emulator process."""

    def __init__(self, vendor: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sync.sandbox", vendor, "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.removeprefix("listening on ")

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def tickets(self) -> list[dict[str, Any]]:
        return self.call("GET", "/_sandbox/tickets")["tickets"]

    def seed(self, *tickets: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.call("POST", "/_sandbox/tickets", list(tickets))["tickets"]

    def log(self) -> list[dict[str, Any]]:
        return self.call("GET", "/_sandbox/log")["log"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.communicate(timeout=10)


@dataclass(frozen=True)
class VendorPlugin:
    """How the system tests speak of one vendor."""

    vendor: str
    #: The connection's config block, given the emulator's URL and control API.
    connection: Callable[[VendorProcess], dict[str, Any]]
    #: A new remote ticket (vendor field names), by index.
    remote_ticket: Callable[[int], dict[str, Any]]
    #: An edit at the vendor: (vendor ticket) -> fields to change (vendor field names).
    remote_edit: Callable[[dict[str, Any]], dict[str, Any]]
    #: Canonical value of ``local_field`` in a vendor ticket, for the agreement check.
    local_of: Callable[[dict[str, Any]], str | None]
    marker_of: Callable[[dict[str, Any]], str | None]
    #: (method, path prefix) of the vendor's ticket writes, to count them in the log.
    writes: tuple[tuple[str, str], ...]
    #: Fault ``match`` strings for the pull's list call, a ticket update and a create.
    routes: Mapping[str, str] = field(default_factory=dict)
    id_key: str = "id"
    #: The field local edits change, and the values given to tickets 1 and 2 (a field the
    #: vendor can write: ProProfs cannot write status).
    local_field: str = "status"
    local_values: tuple[str, str] = ("closed", "pending")


ZOHO_STATUS = {"open": "Open", "pending": "On Hold", "closed": "Closed"}


def _zoho_connection(vendor: VendorProcess) -> dict[str, Any]:
    return {
        "vendor": "zoho_desk",
        "base_url": vendor.url,
        "credentials": {
            "client_id": "1000.SANDBOXCLIENT",
            "client_secret": "sandbox-client-secret",
            "refresh_token": "1000.sandbox.refresh-token",
            "org_id": "60001234",
            "accounts_url": vendor.url,
        },
        "fields": {
            "title": None,
            "status": ZOHO_STATUS,
            "priority": {"low": "Low", "normal": "Medium", "high": "High"},
            "queue": {"support": "1892000000006907", "billing": "1892000000082069"},
        },
        "create": {"when": {"queue": "billing"}},
        "http": {"backoff_base": 0.01, "backoff_cap": 0.05},
    }


KAPTURE_STATUS = {"open": "OP", "pending": "P", "closed": "CL"}
KAPTURE_TOKEN = "c2FuZGJveDprYXB0dXJlLWF1dGgta2V5"


def _kapture_connection(vendor: VendorProcess) -> dict[str, Any]:
    from sync.sandbox.kapture_data import SUB_STATUSES

    return {
        "vendor": "kapture",
        "base_url": vendor.url,
        "credentials": {"token": KAPTURE_TOKEN},
        "fields": {
            "title": None,
            "status": KAPTURE_STATUS,
            "priority": {"normal": "0", "low": "1", "high": "2"},
            "queue": {"support": "SUPPORT", "billing": "BILLING"},
        },
        "create": {"when": {"queue": "billing"}},
        "options": {"sub_statuses": {k: v[0] for k, v in SUB_STATUSES.items()}},
        "http": {"backoff_base": 0.01, "backoff_cap": 0.05},
    }


def _kapture_marker(ticket: dict[str, Any]) -> str | None:
    from sync.vendors.kapture.mapping import find_marker

    return find_marker({"d": ticket.get("detail"), "a": ticket.get("additional")})


PROPROFS_STATUS = {"open": "Open", "pending": "Pending", "closed": "Closed"}


def _proprofs_connection(vendor: VendorProcess) -> dict[str, Any]:
    return {
        "vendor": "proprofs",
        "base_url": vendor.url,
        "credentials": {
            "account_email": "agent@example.com",
            "token": "sandbox0proprofs0token0123456789",
        },
        "fields": {
            "title": None,
            "status": PROPROFS_STATUS,
            "priority": {"low": "low", "normal": "normal", "high": "high"},
            "queue": {"support": "IB238-436", "billing": "IB238-437"},
        },
        "create": {"when": {"queue": "billing"}},
        "http": {"backoff_base": 0.01, "backoff_cap": 0.05},
    }


def _proprofs_marker(ticket: dict[str, Any]) -> str | None:
    from sync.vendors.proprofs.mapping import split_marker

    return split_marker(ticket.get("description"))[1]


SIRPORTLY_STATUS = {"open": "New", "pending": "Waiting for Customer", "closed": "Closed"}


def _sirportly_connection(vendor: VendorProcess) -> dict[str, Any]:
    return {
        "vendor": "sirportly",
        "base_url": vendor.url,
        "credentials": {"token": "sandbox-token", "secret": "sandbox-secret"},
        "fields": {
            "title": None,
            "status": SIRPORTLY_STATUS,
            "priority": {"low": "Low", "normal": "Normal", "high": "High"},
            "queue": {"support": "3/2", "billing": "5/5"},
        },
        "create": {"when": {"queue": "billing"}},
        "http": {"backoff_base": 0.01, "backoff_cap": 0.05},
    }


PLUGINS = {
    "zoho_desk": VendorPlugin(
        vendor="zoho_desk",
        connection=_zoho_connection,
        remote_ticket=lambda i: {
            "subject": f"Remote {i}",
            "status": "Open",
            "priority": "Medium",
            "email": f"c{i}@example.com",
        },
        remote_edit=lambda t: {"priority": "High"},
        local_of=lambda t: {v: k for k, v in ZOHO_STATUS.items()}.get(t["status"]),
        marker_of=lambda t: (t.get("cf") or {}).get("cf_ticketsync_marker"),
        writes=(("PATCH", "/api/v1/tickets"), ("POST", "/api/v1/tickets")),
        routes={
            "pull": "GET /api/v1/tickets/search",
            "update": "PATCH /api/v1/tickets/",
            "create": "POST /api/v1/tickets",
        },
    ),
    "kapture": VendorPlugin(
        vendor="kapture",
        connection=_kapture_connection,
        remote_ticket=lambda i: {
            "title": f"Remote {i}",
            "substatus": "OP",
            "priority": 0,
            "email": f"c{i}@example.com",
            "queueKey": "SUPPORT",
        },
        remote_edit=lambda t: {"priority": 2},
        local_of=lambda t: {v: k for k, v in KAPTURE_STATUS.items()}.get(t["substatus"]),
        marker_of=_kapture_marker,
        writes=(
            ("POST", "/update-ticket-from-other-source"),
            ("POST", "/add-ticket-from-other-source"),
        ),
        routes={
            "pull": "POST /select-ticket-between-start-and-end-dates",
            "update": "POST /update-ticket-from-other-source",
            "create": "POST /add-ticket-from-other-source",
        },
    ),
    "proprofs": VendorPlugin(
        vendor="proprofs",
        connection=_proprofs_connection,
        remote_ticket=lambda i: {
            "subject": f"Remote {i}",
            "status": "Open",
            "priority": "normal",
            "email": f"c{i}@example.com",
        },
        remote_edit=lambda t: {"priority": "high"},
        local_of=lambda t: t["priority"],
        marker_of=_proprofs_marker,
        writes=(("POST", "/app/api/v1/update/ticket/"), ("POST", "/app/api/v1/create/ticket/")),
        routes={
            "pull": "POST /app/api/v1/list/ticket/",
            "update": "POST /app/api/v1/update/ticket/",
            "create": "POST /app/api/v1/create/ticket/",
        },
        id_key="ticket_id",
        local_field="priority",
        local_values=("high", "low"),
    ),
    "sirportly": VendorPlugin(
        vendor="sirportly",
        connection=_sirportly_connection,
        remote_ticket=lambda i: {
            "subject": f"Remote {i}",
            "status": "New",
            "priority": "Normal",
            "email": f"c{i}@example.com",
            "description": f"Remote ticket {i}",
        },
        remote_edit=lambda t: {"priority": "High"},
        local_of=lambda t: {v: k for k, v in SIRPORTLY_STATUS.items()}.get(t["status"]["name"]),
        marker_of=lambda t: (t.get("custom_fields") or {}).get("ticketsync_marker"),
        writes=(
            ("POST", "/api/v2/tickets/update"),
            ("POST", "/api/v2/tickets/submit"),
            ("POST", "/api/v2/tickets/post_update"),
        ),
        routes={
            "pull": "POST /api/v2/tickets/spql",
            "update": "POST /api/v2/tickets/update",
            "create": "POST /api/v2/tickets/submit",
        },
        id_key="reference",
    ),
}


#: A killed run's lease is taken at once (its liveness lock dies with its session), so the
#: lease can be long enough for a loaded machine: a 2 s lease ran out mid-run under load.
LEASE_SECONDS = 15.0


class Setup:
    """A mirror (a SQLite file, or the given database URL), a config file and an emulator
    process for one vendor."""

    def __init__(
        self,
        plugin: VendorPlugin,
        tmp: Path,
        connection: Mapping[str, Any] | None = None,
        db_url: str | None = None,
        sync: Mapping[str, Any] | None = None,
    ) -> None:
        self.plugin = plugin
        self.vendor = VendorProcess(plugin.vendor)
        self.db = tmp / "mirror.db"
        self.url = db_url or f"sqlite:///{self.db}"
        self.engine = create_engine(self.url)
        self.config = tmp / "config.yaml"
        block = {**plugin.connection(self.vendor), **(connection or {})}
        settings: dict[str, Any] = {
            "state_dir": str(tmp),
            "guard": {"share": 1.0, "min_count": 1000},
            **(sync or {}),
        }
        if self.engine.dialect.name == "postgresql":
            # calls must stay shorter than the lease (total_timeout < lease_seconds)
            settings["lease_seconds"] = LEASE_SECONDS
            block["http"] = {**block.get("http", {}), "total_timeout": LEASE_SECONDS - 0.5}
        data = {
            "database": {"url": self.url},
            "sync": settings,
            "connections": {"v": block},
        }
        self.config.write_text(yaml.safe_dump(data))

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config), "--run-once", *args, env=env)

    def rerun(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A run after a killed one; on PostgreSQL it takes the dead run's lease at once, and
        a run that still finds it held (exit 3) is retried until a lease time has passed."""
        deadline = time.monotonic() + LEASE_SECONDS + 3
        while True:
            result = self.run(env=env)
            if result.returncode != 3 or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def sql(self, statement: str, *params: Any) -> list[Any]:
        """Raw SQL as another program would send it (``?`` placeholders on every database)."""
        if self.engine.dialect.name != "sqlite":
            statement = statement.replace("?", "%s")
        with self.engine.begin() as conn:
            result = conn.exec_driver_sql(statement, tuple(params))
            return list(result) if result.returns_rows else []

    def vendor_writes(self) -> int:
        return sum(
            1
            for entry in self.vendor.log()
            if any(
                entry["method"] == m and entry["path"].startswith(p) for m, p in self.plugin.writes
            )
        )

    def inject(self, kind: str, route: str, **params: Any) -> None:
        fault = {"kind": kind, "match": self.plugin.routes[route], **params}
        self.vendor.call("POST", "/_sandbox/faults", fault)

    def status(self) -> dict[str, Any]:
        result = run_cli("--config", str(self.config), "status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["connections"]["v"]

    def stop(self) -> None:
        self.vendor.stop()
        self.engine.dispose()


def migrate_mirror(url: str) -> None:
    """Create the mirror's tables in-process (what ``db upgrade`` does; saves a run)."""
    from sync.db import Mirror, migrate

    mirror = Mirror(url)
    try:
        migrate(mirror)
    finally:
        mirror.engine.dispose()


def prepare_pending(setup: Setup) -> dict[int, str]:
    """An imported mirror, then pending work of every kind: local edits, a remote edit on
    two tickets (one pull page of two), and a local insert to create."""
    plugin = setup.plugin
    setup.vendor.seed(*(plugin.remote_ticket(i) for i in range(4)))
    assert setup.run().returncode == 0
    links = dict(setup.sql("SELECT ticket_id, external_id FROM ticket_links"))
    remote = {t[plugin.id_key]: t for t in setup.vendor.tickets()}
    column, (first, second) = plugin.local_field, plugin.local_values
    setup.sql(f"UPDATE tickets SET {column} = ? WHERE id = 1", first)
    setup.sql(f"UPDATE tickets SET {column} = ? WHERE id = 2", second)
    for tid in (3, 4):
        setup.vendor.seed({plugin.id_key: links[tid], **plugin.remote_edit(remote[links[tid]])})
    setup.sql(
        "INSERT INTO tickets (title, status, priority, queue, requester_email) "
        "VALUES ('Local billing question', 'open', 'normal', 'billing', 'l@example.com')"
    )
    return links


def assert_converged(setup: Setup) -> None:
    plugin = setup.plugin
    remote = {t[plugin.id_key]: t for t in setup.vendor.tickets()}
    markers = collections.Counter(plugin.marker_of(t) for t in remote.values())
    markers.pop(None, None)
    assert all(n == 1 for n in markers.values()), f"duplicate creates: {markers}"
    assert len(remote) == 5, "four seeded tickets and one created"
    links = setup.sql("SELECT ticket_id, external_id, state FROM ticket_links")
    assert len(links) == 5 and all(state == "active" for *_, state in links)
    assert len({e for _, e, _ in links}) == 5 and len({t for t, _, _ in links}) == 5
    for ticket_id, external_id, _ in links:
        ((value,),) = setup.sql(f"SELECT {plugin.local_field} FROM tickets WHERE id = ?", ticket_id)
        assert plugin.local_of(remote[external_id]) == value, (ticket_id, external_id)
    assert setup.sql(
        f"SELECT {plugin.local_field} FROM tickets WHERE id IN (1, 2) ORDER BY id"
    ) == [(v,) for v in plugin.local_values], "the local edits survived"
    assert setup.sql("SELECT priority FROM tickets WHERE id IN (3, 4)") == [("high",)] * 2
    writes = setup.vendor_writes()
    quiet = setup.run()
    assert quiet.returncode == 0, quiet.stderr
    assert setup.vendor_writes() == writes, "a converged mirror makes no further write"


def sqlite_only(setup: Setup) -> None:
    """Skip a variant whose PostgreSQL run would repeat its SQLite run (no database state
    of its own); keeps CI's time down. Kill points and fault writes run on both."""
    import pytest

    if setup.engine.dialect.name != "sqlite":
        pytest.skip("exercises nothing the database changes: the SQLite run covers it")


#: The multi-vendor setup's connections: name -> vendor (docs/architecture.md §8.5).
MULTI = {"zoho": "zoho_desk", "sirp": "sirportly", "kap": "kapture", "pp": "proprofs"}


class MultiSetup:
    """One mirror and one config with a connection per vendor of ``vendors`` (name ->
    vendor, ``MULTI`` by default), each to its own emulator process, conversations on
    (``comments`` merged into every connection's block). Zoho Desk's tickets in the billing
    queue fan out to Sirportly and Kapture; ProProfs creates nothing."""

    def __init__(
        self,
        tmp: Path,
        db_url: str | None = None,
        comments: Mapping[str, Any] | None = None,
        vendors: Mapping[str, str] = MULTI,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.vendors: dict[str, VendorProcess] = {}
        try:
            for name, vendor in vendors.items():
                self.vendors[name] = VendorProcess(vendor)
        except Exception:
            self.stop()
            raise
        self.url = db_url or f"sqlite:///{tmp / 'mirror.db'}"
        self.engine = create_engine(self.url)
        self.config = tmp / "config.yaml"
        sync: dict[str, Any] = {"state_dir": str(tmp), "guard": {"share": 1.0, "min_count": 1000}}
        postgres = self.engine.dialect.name == "postgresql"
        if postgres:
            sync["lease_seconds"] = LEASE_SECONDS
        connections: dict[str, Any] = {}
        for name, process in self.vendors.items():
            block = PLUGINS[vendors[name]].connection(process)
            block["comments"] = {"direction": "both", **(comments or {})}
            if name == "pp":
                block.pop("create", None)
            if vendors[name] == "sirportly":
                block["options"] = {"comment_user": "charlie"}
            block |= (extra or {}).get(name, {})
            if postgres:
                block["http"] = {**block.get("http", {}), "total_timeout": LEASE_SECONDS - 0.5}
            connections[name] = block
        data = {"database": {"url": self.url}, "sync": sync, "connections": connections}
        self.config.write_text(yaml.safe_dump(data))

    def run(self, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config), "--run-once", env=env)

    def migrate(self) -> None:
        migrate_mirror(self.url)

    def sql(self, statement: str, *params: Any) -> list[Any]:
        """Raw SQL as another program would send it (``?`` placeholders on every database)."""
        if self.engine.dialect.name != "sqlite":
            statement = statement.replace("?", "%s")
        with self.engine.begin() as conn:
            result = conn.exec_driver_sql(statement, tuple(params))
            return list(result) if result.returns_rows else []

    def links(self, ticket_id: int) -> dict[str, str]:
        """Connection -> external id of a mirror ticket's active links."""
        rows = self.sql(
            "SELECT connection, external_id FROM ticket_links "
            "WHERE ticket_id = ? AND state = 'active'",
            ticket_id,
        )
        return dict(rows)

    def comments(self, name: str, external_id: str) -> list[dict[str, Any]]:
        """The comments the emulator of connection ``name`` stores on a ticket."""
        query = urllib.parse.urlencode({"ticket": external_id})
        return self.vendors[name].call("GET", f"/_sandbox/comments?{query}")["comments"]

    def add_comment(self, name: str, external_id: str, **fields: Any) -> None:
        """A comment added at the vendor, as an agent would (vendor field names)."""
        self.vendors[name].call("POST", "/_sandbox/comments", {"ticket": external_id, **fields})

    def stop(self) -> None:
        for process in self.vendors.values():
            process.stop()
        if hasattr(self, "engine"):
            self.engine.dispose()
