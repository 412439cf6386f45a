"""Zoho Desk webhooks (issue 23, item 2): the emulator's webhook API and deliveries
(docs/vendor-apis.md §4.10), `ticketsync webhooks register/unregister`, and `check`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sync import cli, webhook_cmd
from sync.config import ConnectionConfig, Secret
from sync.daemon.endpoint import BoundedEndpoint, Bounds
from sync.daemon.webhooks import WebhookReceiver
from sync.errors import VendorError
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.sandbox.zoho_desk_data import DEPARTMENTS
from sync.vendors.zoho_desk.webhooks import describe, hook_url, is_ours, masked
from tests.vendors.conftest import zoho_connection

SECRET = "Zk3-webhook_secret-0123456789abcdef"
NAME = "zoho-test"


@pytest.fixture(autouse=True)
def no_deviations(zoho_emulator: ZohoDeskEmulator) -> Iterator[None]:
    yield
    assert zoho_emulator.deviations() == []


class Listener:
    def __init__(self) -> None:
        self.woken: list[str] = []
        self.receiver = WebhookReceiver(lambda: {NAME: SECRET}, self.woken.append)
        self.server = BoundedEndpoint(self.receiver.app(), Bounds(max_connections=8))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    served = Listener()
    await served.server.start("127.0.0.1", 0)
    try:
        yield served
    finally:
        await served.server.cleanup()


def _connection(emulator: ZohoDeskEmulator, secret: str = SECRET) -> ConnectionConfig:
    connection = zoho_connection(emulator, name=NAME)
    credentials = {**connection.credentials, "webhook_secret": Secret(secret)}
    return replace(connection, credentials=MappingProxyType(credentials))


async def test_register_subscribes_and_events_reach_the_daemon(
    zoho_emulator: ZohoDeskEmulator, listener: Listener
) -> None:
    connection = _connection(zoho_emulator)
    line = await webhook_cmd._register(connection, listener.base)
    assert line.startswith(f"{NAME}: created webhook ")
    assert SECRET not in line and "/webhooks/zoho-test/***" in line
    assert listener.receiver.counts[NAME, "handshake"] == 1, "Zoho validated the URL"
    (hook,) = zoho_emulator.webhooks.hooks.values()
    assert hook["url"] == hook_url(listener.base, NAME, SECRET)
    assert set(hook["subscriptions"]) == {"Ticket_Add", "Ticket_Update", "Ticket_Comment_Add"}

    ticket = zoho_emulator.seed(subject="made in Zoho")
    zoho_emulator.edit(ticket["id"], status="Closed")
    await zoho_emulator.webhooks.drain()
    assert listener.woken == [NAME, NAME]
    assert [d["status"] for d in zoho_emulator.webhooks.deliveries] == [200, 200]

    again = await webhook_cmd._register(connection, listener.base)
    assert again.startswith(f"{NAME}: updated webhook "), "registering twice keeps one"
    assert len(zoho_emulator.webhooks.hooks) == 1

    check = await webhook_cmd.check_line(connection)
    assert check is not None and "Ticket_Update" in check and SECRET not in check

    gone = await webhook_cmd._unregister(connection)
    assert gone.startswith(f"{NAME}: deleted 1 webhook") and SECRET not in gone
    assert zoho_emulator.webhooks.hooks == {}
    assert "not subscribed" in (await webhook_cmd.check_line(connection) or "")
    assert "no webhook subscription" in await webhook_cmd._unregister(connection)


async def test_a_url_that_fails_the_handshake_is_refused(
    zoho_emulator: ZohoDeskEmulator, listener: Listener
) -> None:
    connection = _connection(zoho_emulator, secret="not-the-listeners-secret-0123")
    with pytest.raises(VendorError) as raised:
        await webhook_cmd._register(connection, listener.base)
    assert "did not answer 200" in str(raised.value)
    assert "not-the-listeners" not in str(raised.value)
    assert zoho_emulator.webhooks.hooks == {}


async def test_a_410_reply_deletes_the_subscription(zoho_emulator: ZohoDeskEmulator) -> None:
    async def handshake(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handshake)
    app.router.add_post("/{tail:.*}", gone)
    server = BoundedEndpoint(app, Bounds())
    await server.start("127.0.0.1", 0)
    try:
        connection = _connection(zoho_emulator)
        await webhook_cmd._register(connection, f"http://127.0.0.1:{server.port}")
        zoho_emulator.seed(subject="new")
        await zoho_emulator.webhooks.drain()
    finally:
        await server.cleanup()
    assert zoho_emulator.webhooks.deliveries[0]["status"] == 410
    assert zoho_emulator.webhooks.hooks == {}


async def _api(emulator: ZohoDeskEmulator, method: str, path: str, body: Any = None) -> Any:
    token = "1000.test-token"
    emulator.access_tokens[token] = 1e12
    headers = {"Authorization": f"Zoho-oauthtoken {token}", "orgId": emulator.org_id}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{emulator.base_url}{path}", json=body, headers=headers) as r,
    ):
        return r.status, (await r.json() if r.content_length else None)


async def test_the_emulator_checks_bodies_and_filters_departments(
    zoho_emulator: ZohoDeskEmulator, listener: Listener
) -> None:
    status, body = await _api(zoho_emulator, "POST", "/api/v1/webhooks", {"url": "x"})
    assert status == 422 and body["errorCode"] == "INVALID_DATA"
    assert {e["fieldName"] for e in body["errors"]} == {"/url", "/subscriptions"}
    assert (await _api(zoho_emulator, "GET", "/api/v1/webhooks"))[0] == 204
    billing = list(DEPARTMENTS)[1]
    url = hook_url(listener.base, NAME, SECRET)
    subscriptions = {"Ticket_Add": {"departmentIds": [billing]}}
    status, hook = await _api(
        zoho_emulator, "POST", "/api/v1/webhooks", {"url": url, "subscriptions": subscriptions}
    )
    assert status == 200 and hook["type"] == "CUSTOMER_WEBHOOK"
    zoho_emulator.seed(subject="support", departmentId=next(iter(DEPARTMENTS)))
    zoho_emulator.seed(subject="billing", departmentId=billing)
    await zoho_emulator.webhooks.drain()
    assert len(zoho_emulator.webhooks.deliveries) == 1
    status, _ = await _api(zoho_emulator, "DELETE", f"/api/v1/webhooks/{hook['id']}")
    assert status == 200
    assert (await _api(zoho_emulator, "GET", f"/api/v1/webhooks/{hook['id']}"))[0] == 404


def test_the_url_is_shown_masked() -> None:
    url = hook_url("https://hooks.example.com/", "zoho", SECRET)
    assert url == f"https://hooks.example.com/webhooks/zoho/{SECRET}"
    assert masked(url) == "https://hooks.example.com/webhooks/zoho/***"
    hook = {"id": "1", "url": url, "subscriptions": {"Ticket_Add": None}}
    assert is_ours(hook, "zoho") and not is_ours(hook, "zo")
    assert SECRET not in describe(hook)


# -- The command line: usage errors exit 2 --------------------------------------------


def _config(tmp_path: Path, credentials: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite:///{tmp_path}/m.db"}}
connections:
  zoho:
    vendor: zoho_desk
    base_url: http://127.0.0.1:9
    credentials: {{client_id: a, client_secret: b, refresh_token: c, org_id: "1"{credentials}}}
  mem:
    vendor: memory
    base_url: http://127.0.0.1:9
"""
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["webhooks", "register", "nope", "--url", "https://h"], "no such connection"),
        (["webhooks", "register", "mem", "--url", "https://h"], "only zoho_desk"),
        (["webhooks", "register", "zoho", "--url", "https://h"], "webhook_secret first"),
        (["webhooks", "unregister", "zoho"], "webhook_secret first"),
    ],
)
def test_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    path = _config(tmp_path, "")
    assert cli.main(["--config", str(path), *argv]) == 2
    assert said in capsys.readouterr().err


def test_a_bad_url_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, f", webhook_secret: {SECRET}")
    argv = ["--config", str(path), "webhooks", "register", "zoho", "--url", "ftp://h"]
    assert cli.main(argv) == 2
    assert "--url" in capsys.readouterr().err
