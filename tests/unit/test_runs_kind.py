"""runs.kind (issue 23): what started each run, recorded by the daemon and the CLI, shown
by `status`; migration 0014 turns the old `woken: push only` marker into a kind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from sync import status
from sync.config import Config, parse_config
from sync.daemon.scheduler import Jobs
from sync.db import Mirror
from sync.db.models import Run
from sync.once import run_once
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import sql


@pytest.fixture(autouse=True)
def stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def _config(mirror: Mirror, **connection: Any) -> Config:
    block = {"vendor": "memory", "base_url": "http://127.0.0.1:9", "fields": {"title": None}}
    return parse_config(
        {
            "database": {"url": mirror.engine.url.render_as_string(hide_password=False)},
            "connections": {"mem": {**block, **connection}},
        },
        env={},
    )


def _kinds(mirror: Mirror) -> list[str]:
    with mirror.read() as session:
        return [r.kind for r in session.scalars(select(Run).order_by(Run.id))]


async def _daemon_runs(mirror: Mirror, config: Config) -> None:
    jobs = Jobs(mirror, config, ["mem"])
    await jobs._job("mem")
    await jobs.wake("mem")
    await jobs.wake("mem", pull=True)


def test_each_run_records_what_started_it(mirror: Mirror) -> None:
    config = _config(mirror)
    assert run_once(mirror, config, ["mem"], dry_run=False, force=False) == 0
    asyncio.run(_daemon_runs(mirror, config))
    assert _kinds(mirror) == ["once", "scheduled", "woken", "webhook"]
    report = status.collect(config, mirror)["connections"]["mem"]
    assert report["last_run"]["kind"] == "webhook"
    assert report["webhooks"] is None, "the memory vendor takes no webhooks"
    assert "webhook run ok" in status.render(status.collect(config, mirror))


def test_migration_0014_turns_the_marker_into_a_kind(mirror: Mirror) -> None:
    from alembic import command

    from sync.db.migrate import _alembic_config, migrate

    with mirror.engine.connect() as conn:
        command.downgrade(_alembic_config(conn), "0010")
        conn.commit()
    sql(
        mirror,
        "INSERT INTO runs (connection, started_at, outcome, pulled, pushed, created, "
        "conflicts, errors, message) VALUES ('c', '2026-12-01 00:00:00', 'ok', 0, 1, 0, 0, 0, "
        ":m), ('c', '2026-12-01 00:01:00', 'ok', 3, 0, 0, 0, 0, NULL)",
        m="woken: push only",
    )
    migrate(mirror)
    rows = sql(mirror, "SELECT kind, message FROM runs ORDER BY id")
    assert [tuple(r) for r in rows] == [("woken", None), ("scheduled", None)]
    with mirror.engine.connect() as conn:
        command.downgrade(_alembic_config(conn), "0010")
        conn.commit()
    assert [r[0] for r in sql(mirror, "SELECT message FROM runs ORDER BY id")] == [
        "woken: push only",
        None,
    ]
    migrate(mirror)
