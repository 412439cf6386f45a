"""An unforeseen exception inside a run fails that connection's run only (issue 20, item 1).

Outcome ``internal``: the run record and the connection's state get one redacted line, the
traceback goes to the log only, ``--run-once`` exits 1 after the other connections finished,
and in the daemon the failure counts: backoff, metrics and ``/healthz``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from sqlalchemy import select

from sync import redact
from sync.config import Config, parse_config
from sync.daemon.metrics import UNHEALTHY_AFTER, Metrics
from sync.daemon.scheduler import Jobs
from sync.db import Mirror
from sync.db.models import Run, SyncConnection
from sync.once import run_once
from sync.redact import Redactor
from sync.runner import Selection, run_connections
from sync.status import collect
from sync.vendors.memory.adapter import reset_stores, store

SECRET = "s3ntinel-internal-7c1d"


@pytest.fixture(autouse=True)
def stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


def _config(mirror: Mirror) -> Config:
    connection: dict[str, Any] = {
        "vendor": "memory",
        "base_url": "http://127.0.0.1:9",
        "fields": {"title": None},
    }
    return parse_config(
        {
            "database": {"url": mirror.engine.url.render_as_string(hide_password=False)},
            "connections": {"bad": connection, "good": connection},
        },
        env={},
    )


def _break(name: str) -> None:
    # The memory vendor raises whatever it is given: here an exception nobody foresaw,
    # carrying a secret that must never reach the database.
    store(name).fail("changed_since", KeyError(f"token {SECRET}\nsecond line"))  # type: ignore[arg-type]


def _last_run(mirror: Mirror, name: str) -> Run:
    with mirror.read() as session:
        run = session.scalars(
            select(Run).where(Run.connection == name).order_by(Run.id.desc())
        ).first()
        assert run is not None
        session.expunge(run)
        return run


async def test_internal_error_fails_one_connection_only(
    mirror: Mirror, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redact, "_current", Redactor([SECRET]))
    caplog.set_level(logging.INFO)
    store("good").seed(title="a ticket")
    _break("bad")
    config = _config(mirror)

    results = await run_connections(mirror, config, Selection(["bad", "good"]))

    outcomes = {r.connection: r.outcome for r in results if not isinstance(r, Exception)}
    assert outcomes == {"bad": "internal", "good": "ok"}
    run = _last_run(mirror, "bad")
    assert run.outcome == "internal"
    assert run.finished_at is not None
    assert run.message is not None
    assert "\n" not in run.message and SECRET not in run.message
    assert run.message.startswith("bad: internal error (KeyError: ")
    assert "report it with the traceback from the log" in run.message
    assert _last_run(mirror, "good").pulled == 1
    with mirror.read() as session:
        row = session.get(SyncConnection, "bad")
        assert row is not None
        assert row.consecutive_failures == 1
        assert row.last_error is not None and row.last_error["kind"] == "internal"
    status = collect(config, mirror)
    assert status["schema"] == 1
    assert status["connections"]["bad"]["last_run"]["outcome"] == "internal"
    assert status["connections"]["good"]["last_run"]["outcome"] == "ok"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "bad: internal error" in tracebacks[0].getMessage()


def test_run_once_exits_1_and_the_others_finish(mirror: Mirror) -> None:
    store("good").seed(title="a ticket")
    _break("bad")
    assert run_once(mirror, _config(mirror), ["bad", "good"], dry_run=False, force=False) == 1
    assert _last_run(mirror, "bad").outcome == "internal"
    good = _last_run(mirror, "good")
    assert (good.outcome, good.pulled) == ("ok", 1)


async def test_daemon_counts_internal_errors(mirror: Mirror) -> None:
    config = _config(mirror)
    metrics = Metrics()
    jobs = Jobs(mirror, config, ["bad", "good"], metrics=metrics)
    for _ in range(UNHEALTHY_AFTER):
        _break("bad")
        await jobs._job("bad")
        await jobs._job("good")
    assert jobs.results["bad"].outcome == "internal"
    with mirror.read() as session:
        row = session.get(SyncConnection, "bad")
        assert row is not None
        assert row.consecutive_failures == UNHEALTHY_AFTER
        assert row.next_retry_at is not None  # the failure backoff applies
    assert metrics.unhealthy() == ["bad"]
    text = generate_latest(metrics.registry).decode()
    assert (
        f'ticketsync_runs_total{{connection="bad",outcome="internal"}} {UNHEALTHY_AFTER}.0' in text
    )
    assert 'ticketsync_errors_total{connection="bad",kind="internal"}' in text
    assert 'ticketsync_consecutive_failures{connection="good"} 0.0' in text
