"""Vendor webhooks (issue 23, item 2): the listener, its secret, the pull it asks for,
and the hand-over to the lease's holder on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sync.config import Config, parse_config
from sync.daemon import scheduler
from sync.daemon.endpoint import BoundedEndpoint, Bounds
from sync.daemon.service import Service
from sync.daemon.wake import PgListener, Wakes, listen_url
from sync.daemon.webhooks import MAX_BODY, WebhookReceiver, wants_pull
from sync.db import Mirror
from sync.engine.run import RunResult
from sync.engine.state import Counts
from sync.errors import ConfigError

SECRET = "s3cret-webhook-value-0123456789abcdef"
EVENT = b'[{"eventType": "Ticket_Update", "orgId": "1", "payload": {"id": "7"}}]'


class Served:
    def __init__(self, receiver: WebhookReceiver, server: BoundedEndpoint) -> None:
        self.receiver = receiver
        self.server = server
        self.woken: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    woken: list[str] = []
    receiver = WebhookReceiver(lambda: {"zoho": SECRET}, woken.append)
    server = BoundedEndpoint(receiver.app(), Bounds(max_connections=4))
    await server.start("127.0.0.1", 0)
    result = Served(receiver, server)
    result.woken = woken
    try:
        yield result
    finally:
        await server.cleanup()


async def _call(served: Served, method: str, path: str, body: bytes = b"") -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, served.url(path), data=body) as response,
    ):
        await response.read()
        return response.status


async def test_the_handshake_answers_200_with_the_secret_only(served: Served) -> None:
    assert await _call(served, "GET", f"/webhooks/zoho/{SECRET}") == 200
    assert await _call(served, "POST", f"/webhooks/zoho/{SECRET}") == 200  # the POST handshake
    assert await _call(served, "GET", "/webhooks/zoho/wrong") == 404
    assert await _call(served, "GET", f"/webhooks/other/{SECRET}") == 404
    assert await _call(served, "GET", f"/webhooks/zoho/{SECRET[:-1]}") == 404
    assert served.woken == [], "a handshake pulls nothing"


async def test_a_ticket_event_asks_for_a_pull_and_others_do_not(served: Served) -> None:
    assert await _call(served, "POST", f"/webhooks/zoho/{SECRET}", EVENT) == 200
    assert served.woken == ["zoho"]
    other = b'[{"eventType": "Contact_Add"}]'
    assert await _call(served, "POST", f"/webhooks/zoho/{SECRET}", other) == 200
    assert await _call(served, "POST", f"/webhooks/zoho/{SECRET}", b"not json") == 200
    assert await _call(served, "POST", "/webhooks/zoho/wrong", EVENT) == 404
    assert served.woken == ["zoho"]


async def test_the_body_is_capped(served: Served) -> None:
    big = b'[{"eventType": "Ticket_Update", "pad": "' + b"x" * MAX_BODY + b'"}]'
    assert await _call(served, "POST", f"/webhooks/zoho/{SECRET}", big) == 413
    assert served.woken == []


async def test_metrics_and_health_are_never_served_there(served: Served) -> None:
    for path in ("/metrics", "/healthz", "/", "/webhooks/zoho"):
        assert await _call(served, "GET", path) == 404


async def test_the_secret_never_reaches_the_log(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _call(served, "POST", f"/webhooks/zoho/{SECRET}", EVENT)
    await _call(served, "GET", f"/webhooks/zoho/{SECRET}x")
    assert caplog.records, "the refusal is logged"
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("body", "pull"),
    [
        (b'[{"eventType": "Ticket_Add"}]', True),
        (b'{"eventType": "Ticket_Comment_Add"}', True),
        (b'[{"eventType": "Task_Add"}, {"eventType": "Ticket_Update"}]', True),
        (b'[{"eventType": "Ticket_Delete"}]', False),
        (b"", False),
        (b"[1, null]", False),
    ],
)
def test_which_events_pull(body: bytes, pull: bool) -> None:
    assert wants_pull(body) is pull


# -- Wakes: a pull is remembered until the next run --------------------------------------


async def test_a_pull_wake_up_makes_the_next_run_a_full_one() -> None:
    calls: list[tuple[str, bool]] = []

    async def run(name: str, pull: bool) -> None:
        calls.append((name, pull))

    wakes = Wakes(run)
    wakes.set_connections(["a"])
    wakes.wake("a")
    wakes.wake("a", pull=True)
    wakes.wake("a")
    await asyncio.sleep(0.4)
    wakes.wake("a")
    await asyncio.sleep(0.4)
    assert calls == [("a", True), ("a", False)]
    await wakes.stop()


class FakeRuns:
    def __init__(self) -> None:
        self.push_only: list[bool] = []

    async def __call__(self, mirror: Mirror, config: Config, connection: Any, selection: Any):
        self.push_only.append(selection.push_only)
        return RunResult(connection.name, "ok", Counts(), 0.0, None, 0)


def _config(mirror: Mirror, **service: Any) -> Config:
    return parse_config(
        {
            "database": {"url": mirror.engine.url.render_as_string(hide_password=False)},
            "service": service,
            "connections": {
                "mem": {"vendor": "memory", "base_url": "http://127.0.0.1:9", "fields": {}}
            },
        },
        env={},
    )


async def test_a_pull_wake_up_runs_a_full_pass(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRuns()
    monkeypatch.setattr(scheduler, "run_connection", fake)
    jobs = scheduler.Jobs(mirror, _config(mirror), ["mem"])
    await jobs.wake("mem", pull=True)
    await jobs.wake("mem")
    assert fake.push_only == [False, True]


# -- PostgreSQL: a webhook that reached the wrong instance is passed on ------------------


async def test_a_webhook_reaching_a_non_holder_is_passed_on(mirror: Mirror) -> None:
    service = Service(mirror, _config(mirror), ["mem"], None)
    woken: list[tuple[str, bool]] = []
    service.wakes.wake = lambda name, pull=False: woken.append((name, pull))  # type: ignore[method-assign]
    if mirror.dialect != "postgresql":
        service._webhook("mem")
        assert woken == [("mem", True)], "SQLite has one instance: it pulls itself"
        return
    heard: list[str] = []
    listener = PgListener(listen_url(mirror.url), lambda: None, heard.append)
    listener.start()
    try:
        assert await _until(lambda: listener.listening)
        service._webhook("mem")  # this instance holds no lease: it passes the event on
        assert await _until(lambda: "mem" in heard)
        assert woken == []
        service._forwarded("mem")
        assert woken == [], "only the lease's holder pulls"
        service.leases.held["mem"] = object()  # type: ignore[union-attr,assignment]
        service._webhook("mem")
        service._forwarded("mem")
        assert woken == [("mem", True), ("mem", True)]
    finally:
        await listener.stop()


async def _until(predicate: Any, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


# -- Configuration ------------------------------------------------------------------------


def _zoho(secret: str) -> dict[str, Any]:
    return {
        "vendor": "zoho_desk",
        "base_url": "https://desk.zoho.com",
        "credentials": {
            "client_id": "1000.X",
            "client_secret": "${ZS}",
            "refresh_token": "${ZR}",
            "org_id": "1",
            "webhook_secret": secret,
        },
        "fields": {},
    }


def _parse(service: dict[str, Any], secret: str = "${WH}") -> Config:
    env = {"ZS": "client-secret-x", "ZR": "refresh-token-x", "WH": SECRET}
    return parse_config({"service": service, "connections": {"z": _zoho(secret)}}, env=env)


def test_webhook_settings_parse_and_default_off() -> None:
    config = _parse({})
    assert config.service.webhook_address() is None
    assert config.service.webhook_max_connections == 32
    config = _parse({"webhook_listen": "198.51.100.7:8443", "webhook_max_connections": 5})
    assert config.service.webhook_address() == ("198.51.100.7", 8443)
    assert config.service.webhook_max_connections == 5
    assert config.connections["z"].credential("webhook_secret") == SECRET
    assert SECRET in config.secrets(), "redacted like the other secrets"


@pytest.mark.parametrize(
    ("service", "secret", "problem"),
    [
        ({"listen": "127.0.0.1:9464", "webhook_listen": "127.0.0.1:9464"}, "${WH}", "differ"),
        ({"webhook_listen": "nope"}, "${WH}", "host:port"),
        ({"webhook_max_connections": 0}, "${WH}", "webhook_max_connections"),
        ({}, "short", "webhook_secret"),
        ({}, "has/a/slash-and-is-long-enough-0123456789", "webhook_secret"),
    ],
)
def test_webhook_settings_are_checked(service: dict[str, Any], secret: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _parse(service, secret)
    assert any(problem in p for p in raised.value.problems), raised.value.problems
    assert all("has/a/slash" not in p for p in raised.value.problems)


# -- Retention of runs ---------------------------------------------------------------------


def test_old_finished_runs_are_pruned(mirror: Mirror) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from sync.daemon.retention import prune_runs
    from sync.db.models import Run

    now = datetime(2026, 12, 3, tzinfo=UTC)
    with mirror.write() as session:
        for days, outcome in ((40, "ok"), (40, "running"), (29, "ok"), (1, "failed")):
            started = now - timedelta(days=days)
            session.add(Run(connection="c", started_at=started, outcome=outcome))
    assert prune_runs(mirror, 30, now) == 1
    with mirror.read() as session:
        left = sorted(r.outcome for r in session.scalars(select(Run)))
    assert left == ["failed", "ok", "running"]


async def test_the_daemon_counts_webhooks_in_its_metrics(mirror: Mirror) -> None:
    service = Service(mirror, _config(mirror), ["mem"], None)
    server = BoundedEndpoint(service.webhooks.app(), Bounds())
    await server.start("127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{server.port}/webhooks/nope/x") as reply,
        ):
            assert reply.status == 404
    finally:
        await server.cleanup()
    labels = {"connection": "-", "result": "refused"}
    assert service.metrics.registry.get_sample_value("ticketsync_webhooks_total", labels) == 1


async def test_the_daemon_serves_webhooks_on_their_own_capped_listener(mirror: Mirror) -> None:
    config = _config(mirror, webhook_listen="127.0.0.1:0", webhook_max_connections=3)
    service = Service(mirror, config, ["mem"], None)
    hooks = await service._start_webhooks()
    assert hooks is not None
    try:
        assert hooks._bounds.max_connections == 3
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/healthz"):
                async with session.get(f"http://127.0.0.1:{hooks.port}{path}") as reply:
                    assert reply.status == 404
    finally:
        await hooks.cleanup()
    assert await Service(mirror, _config(mirror), ["mem"], None)._start_webhooks() is None


async def test_a_reload_rotates_the_webhook_secret_at_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import deque

    from sync import redact
    from sync.config import load_config
    from sync.db import migrate

    new = "rotated-webhook-secret-0123456789abcd"
    text = (
        'database: {{url: "sqlite:///{db}"}}\n'
        "connections:\n"
        "  z:\n"
        "    vendor: zoho_desk\n"
        "    base_url: https://desk.zoho.com\n"
        "    credentials: {{client_id: a, client_secret: bb-secret, refresh_token: cc-token,\n"
        '                  org_id: "1", webhook_secret: "{secret}"}}\n'
    )
    path = tmp_path / "config.yaml"
    path.write_text(text.format(db=tmp_path / "m.db", secret=SECRET))
    path.chmod(0o600)
    config = load_config(path)
    monkeypatch.setattr(redact, "_current", redact.Redactor(config.secrets()))
    monkeypatch.setattr(redact, "_minted", deque(maxlen=redact.MINTED_KEPT))
    mirror = Mirror(config.database.url)
    migrate(mirror)
    try:
        service = Service(mirror, config, ["z"], path)
        assert service.webhooks.authentic("z", SECRET)
        path.write_text(text.format(db=tmp_path / "m.db", secret=new))
        service._on_reload()
        assert service.webhooks.authentic("z", new)
        assert not service.webhooks.authentic("z", SECRET)
        assert redact.current().redact(f"{SECRET} {new}") == "*** ***"
        await service.wakes.stop()
    finally:
        mirror.dispose()
        for handler in logging.getLogger().handlers:
            for installed in [f for f in handler.filters if isinstance(f, redact.RedactingFilter)]:
                handler.removeFilter(installed)
