"""Shared fixtures: a migrated mirror on SQLite and, where reachable, on PostgreSQL.

PostgreSQL is found through ``TICKETSYNC_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a schema of its
own, dropped afterwards. Without a server the PostgreSQL variants are skipped with the
reason; under ``CI=true`` a missing server, or a run in which no PostgreSQL test
passed, fails the session (docs/architecture.md §7.14).

On PostgreSQL the system tests that repeat per vendor run for one vendor only
(``TICKETSYNC_TEST_PG_VENDORS``, default ``zoho_desk``; ``all`` runs every vendor): the
SQL, triggers, locks and NOTIFY they exercise are the same whatever the vendor, and the
per-vendor paths run on SQLite (docs/architecture.md §8.8).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from functools import cache

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sync.db import Mirror, migrate
from sync.vendors.registry import VENDORS

PG_URL = os.environ.get(
    "TICKETSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_VENDORS = os.environ.get("TICKETSYNC_TEST_PG_VENDORS", "zoho_desk")

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci" if IN_CI else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

_pg_passed = 0


@cache
def pg_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to reach it means: skip (or fail under CI)
        where = make_url(PG_URL).render_as_string(hide_password=True)
        return f"PostgreSQL at {where} unreachable: {str(exc).splitlines()[0]}"
    return None


def _pg_schema_url() -> tuple[str, str]:
    schema = "t_" + secrets.token_hex(6)
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def _drop_schema(schema: str) -> None:
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database URL on each dialect (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'mirror.db'}"
        return
    reason = pg_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(reason + " (CI=true requires PostgreSQL)")
        pytest.skip(reason)
    url, schema = _pg_schema_url()
    try:
        yield url
    finally:
        _drop_schema(schema)


@pytest.fixture
def mirror(db_url: str) -> Iterator[Mirror]:
    """A mirror migrated to head."""
    m = Mirror(db_url)
    migrate(m)
    try:
        yield m
    finally:
        m.dispose()


def _repeats_for_another_vendor(item: pytest.Item) -> bool:
    """A PostgreSQL system test parametrized for a vendor outside ``PG_VENDORS``."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if PG_VENDORS == "all" or params.get("db_url") != "postgresql":
        return False
    if "tests/system/" not in item.nodeid.replace("\\", "/"):
        return False
    keep = set(PG_VENDORS.split(","))
    vendors = {v for v in params.values() if isinstance(v, str) and v in VENDORS}
    return bool(vendors) and not vendors & keep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    dropped = [item for item in items if _repeats_for_another_vendor(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _repeats_for_another_vendor(item)]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _pg_passed
    if report.when == "call" and report.passed and "postgresql" in report.nodeid:
        _pg_passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: the controller sees every report and decides
    if IN_CI and session.testscollected and _pg_passed == 0 and exitstatus == 0:
        # docs/architecture.md §7.14
        print("\nCI=true but no PostgreSQL test passed: failing the run")
        session.exitstatus = 1


def pytest_report_header() -> str:
    reason = pg_unavailable()
    state = "available" if reason is None else f"SKIPPED ({reason})"
    return f"postgresql: {state}; system tests per vendor on it: {PG_VENDORS}"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback TCP server that accepts connections and never answers; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        server.close()
