"""Hostile vendors (issue 20, item 9): whatever a vendor sends, one connection fails alone.

Each payload of the emulators' ``hostile`` fault is served, in-process, to the pull of each
of the four vendors while a second connection (the memory vendor) runs in the same pass.
Asserted: no traceback and no ``internal`` outcome; the hostile connection either syncs or
fails with a message that names it and says what went wrong; the other connection syncs;
``status`` tells the truth. One daemon case checks ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from sync.config import Config, parse_config
from sync.daemon.endpoint import BoundedEndpoint, Bounds
from sync.daemon.metrics import UNHEALTHY_AFTER, Metrics
from sync.daemon.scheduler import Jobs
from sync.db import Mirror, migrate
from sync.db.models import SyncConnection
from sync.engine.run import RunResult
from sync.errors import printable
from sync.runner import Selection, run_connections
from sync.sandbox.base import Emulator, emulators
from sync.sandbox.hostile import PAYLOADS
from sync.status import collect
from sync.vendors.memory.adapter import reset_stores, store
from tests.system.harness import PLUGINS

HTTP = {
    "backoff_base": 0.01,
    "backoff_cap": 0.02,
    "max_attempts": 2,
    "connect_timeout": 2.0,
    "read_timeout": 1.0,
    "total_timeout": 1.0,
    "max_reply_bytes": 512 * 1024,
}

#: payload -> (the outcomes allowed, words the failure's message must hold). Some payloads
#: carry data a vendor may well send and that can be read (a mislabelled charset, far
#: timestamps, control characters in text): syncing is then as right as a clear failure.
EXPECTED: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "deep_json": (frozenset({"failed"}), ("nested too deeply",)),
    "oversized": (frozenset({"failed"}), ("max_reply_bytes", "524288 bytes")),
    "slow_drip": (frozenset({"failed"}), ("timed out",)),
    "unclosed_html": (frozenset({"failed"}), ("HTTP 503",)),
    "retry_after": (frozenset({"failed"}), ("HTTP 429", "Retry-After")),
    "charset": (frozenset({"ok"}), ()),
    "future_time": (frozenset({"ok", "failed"}), ()),
    "overflow_time": (frozenset({"ok", "failed"}), ()),
    "control": (frozenset({"ok", "failed"}), ()),
}


def test_every_payload_is_covered() -> None:
    assert set(EXPECTED) == set(PAYLOADS)


@pytest.fixture
def sqlite_mirror(tmp_path: Any) -> Iterator[Mirror]:
    mirror = Mirror(f"sqlite:///{tmp_path / 'mirror.db'}")
    migrate(mirror)
    yield mirror
    mirror.dispose()


@pytest.fixture(params=sorted(PLUGINS))
async def vendor(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Emulator]]:
    reset_stores()
    emulator = emulators()[request.param]()
    await emulator.start()
    yield request.param, emulator
    await emulator.stop()
    reset_stores()


def _config(mirror: Mirror, name: str, emulator: Emulator) -> Config:
    plugin = PLUGINS[name]
    connection = plugin.connection(SimpleNamespace(url=emulator.base_url))  # type: ignore[arg-type]
    connection["http"] = HTTP
    memory = {"vendor": "memory", "base_url": "http://127.0.0.1:9", "fields": {"title": None}}
    return parse_config(
        {
            "database": {"url": mirror.engine.url.render_as_string(hide_password=False)},
            "connections": {"v": connection, "good": memory},
        },
        env={},
    )


async def _prepared(mirror: Mirror, name: str, emulator: Emulator) -> Config:
    """A config whose first pass synced; a remote change now waits on each connection."""
    plugin = PLUGINS[name]
    config = _config(mirror, name, emulator)
    emulator.seed(**plugin.remote_ticket(0))
    store("good").seed(title="first")
    first = await run_connections(mirror, config, Selection(["v", "good"]))
    assert [r.outcome for r in first if isinstance(r, RunResult)] == ["ok", "ok"]
    emulator.seed(**plugin.remote_ticket(1))
    store("good").seed(title="second")
    return config


def _clear_cooldown(mirror: Mirror) -> None:
    with mirror.write() as session:
        row = session.get(SyncConnection, "v")
        assert row is not None
        row.cooldown_until = None


def _check(result: RunResult, payload: str, config: Config, mirror: Mirror, caplog: Any) -> None:
    allowed, words = EXPECTED[payload]
    assert result.outcome in allowed, f"{payload}: {result.outcome}: {result.error}"
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"
    status = collect(config, mirror)["connections"]["v"]
    assert status["last_run"]["outcome"] == result.outcome
    if result.outcome == "failed":
        message = str(result.error)
        assert message.startswith("v: "), message
        assert printable(message) == message, "a control character reached the message"
        assert "Traceback" not in message
        for word in words:
            assert word in message, message
        assert status["last_error"]["message"] == message
        assert status["consecutive_failures"] == 1


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_hostile_payload_fails_one_connection_clearly(
    vendor: tuple[str, Emulator], sqlite_mirror: Mirror, payload: str, caplog: Any
) -> None:
    name, emulator = vendor
    caplog.set_level(logging.WARNING)
    config = await _prepared(sqlite_mirror, name, emulator)
    emulator.inject("hostile", payload=payload, times=10, match=PLUGINS[name].routes["pull"])
    started = time.process_time()  # CPU time: bounded work, however busy the machine
    results = await run_connections(sqlite_mirror, config, Selection(["v", "good"]))
    assert time.process_time() - started < 5
    hostile, good = (r for r in results if isinstance(r, RunResult))
    assert (good.outcome, good.counts.pulled) == ("ok", 1)
    _check(hostile, payload, config, sqlite_mirror, caplog)
    # Nothing the payload left behind (a cursor in the year 9999, a day-long cool-down the
    # test does not mean) keeps the connection from recovering once the vendor is sane.
    emulator.faults.clear()
    _clear_cooldown(sqlite_mirror)
    (again,) = await run_connections(sqlite_mirror, config, Selection(["v"]))
    assert isinstance(again, RunResult) and again.outcome == "ok", again.error


async def test_daemon_health_and_metrics_tell_the_truth(sqlite_mirror: Mirror, caplog: Any) -> None:
    reset_stores()
    emulator = emulators()["zoho_desk"]()
    await emulator.start()
    metrics = Metrics()
    endpoint = BoundedEndpoint(metrics.app(), Bounds())
    await endpoint.start("127.0.0.1", 0)
    try:
        config = await _prepared(sqlite_mirror, "zoho_desk", emulator)
        emulator.inject("hostile", payload="deep_json", times=100)
        jobs = Jobs(sqlite_mirror, config, ["v", "good"], metrics=metrics)
        for _ in range(UNHEALTHY_AFTER):
            await jobs._job("v")
            await jobs._job("good")
        port = endpoint.port
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 503
                assert await health.json() == {"status": "failing", "failing": ["v"]}
            async with session.get(f"http://127.0.0.1:{port}/metrics") as reply:
                text = await reply.text()
        assert f'ticketsync_runs_total{{connection="v",outcome="failed"}} {UNHEALTHY_AFTER}' in text
        assert 'ticketsync_errors_total{connection="v",kind="protocol"}' in text
        assert 'ticketsync_consecutive_failures{connection="good"} 0.0' in text
        status = collect(config, sqlite_mirror)["connections"]
        assert status["v"]["consecutive_failures"] == UNHEALTHY_AFTER
        assert status["v"]["next_retry_at"] is not None
        assert status["good"]["consecutive_failures"] == 0
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await endpoint.cleanup()
        await emulator.stop()
        reset_stores()


async def test_credential_with_a_newline_fails_its_connection_alone(
    sqlite_mirror: Mirror, caplog: Any
) -> None:
    reset_stores()
    emulator = emulators()["sirportly"]()
    await emulator.start()
    try:
        data = _config(sqlite_mirror, "sirportly", emulator)
        secret = "sandbox-secret\r\nX-Injected: 1"
        config = parse_config(
            {
                "database": {"url": data.database.url},
                "connections": {
                    "v": {
                        **PLUGINS["sirportly"].connection(SimpleNamespace(url=emulator.base_url)),  # type: ignore[arg-type]
                        "credentials": {"token": "sandbox-token", "secret": secret},
                    },
                    "good": {
                        "vendor": "memory",
                        "base_url": "http://127.0.0.1:9",
                        "fields": {"title": None},
                    },
                },
            },
            env={},
        )
        store("good").seed(title="first")
        results = await run_connections(sqlite_mirror, config, Selection(["v", "good"]))
        hostile, good = (r for r in results if isinstance(r, RunResult))
        assert (good.outcome, good.counts.pulled) == ("ok", 1)
        assert hostile.outcome == "failed"
        message = str(hostile.error)
        assert "connections.v.credentials.secret" in message
        assert "sandbox-secret" not in message and "Injected" not in message
        assert emulator.log == []  # nothing was sent
        status = collect(config, sqlite_mirror)["connections"]["v"]
        assert status["credentials"] == "rejected"
        assert status["last_error"]["message"] == message
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await emulator.stop()
        reset_stores()
