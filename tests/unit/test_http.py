"""sync.http against real aiohttp servers on 127.0.0.1, scripted to misbehave.

Each fake server answers from a script of replies, one per request, and the fixture fails
the test when a scripted reply was not asked for or a request came that was not scripted.
Backoff sleeps go to an injected clock, so retries are checked without waiting them out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sync import __version__, redact
from sync.config import HttpSettings
from sync.coord.fence import write_fence
from sync.errors import (
    AuthRejected,
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    RateLimited,
    Retriable,
)
from sync.http import HttpClient, Response, error_class, parse_retry_after
from sync.redact import Redactor
from sync.reply import html_text
from sync.retry import RETRY_AFTER_MAX_S

SECRET = "s3ntinel-SECRET-9f2c"
Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply(
    status: int = 200,
    *,
    body: Any = None,
    text: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Reply:
    async def answer(request: web.Request) -> web.StreamResponse:
        if text is not None:
            return web.Response(
                status=status, text=text, content_type=content_type, headers=headers
            )
        return web.json_response(body, status=status, headers=headers)

    return answer


def drop_before_reply() -> Reply:
    async def answer(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    return answer


def drop_mid_body() -> Reply:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"tickets": [{"id": 1}, ')
        assert request.transport is not None
        request.transport.close()
        return response

    return answer


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class Fake:
    """A vendor that answers each request with the next scripted reply."""

    replies: list[Reply]
    base_url: str = ""
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(request.method, request.path, request.query_string, dict(request.headers))
        )
        if len(self.seen) > len(self.replies):
            return web.Response(status=599, text="unscripted request")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.replies[len(self.seen) - 1](request)
        finally:
            self.in_flight -= 1


class FakeTime:
    """A monotonic clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def settings(**changes: Any) -> HttpSettings:
    quick = {"connect_timeout": 2.0, "read_timeout": 2.0, "total_timeout": 5.0}
    return HttpSettings(**{**quick, **changes})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Fake]]]:
    started: list[tuple[TestServer, Fake]] = []

    async def start(*replies: Reply) -> Fake:
        fake = Fake(list(replies))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        fake.base_url = str(server.make_url("")).rstrip("/")
        started.append((server, fake))
        return fake

    yield start
    for server, _ in started:
        await server.close()
    for _, fake in started:
        assert len(fake.seen) == len(fake.replies), "scripted and received requests differ"


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make(time_: FakeTime) -> AsyncIterator[Callable[..., HttpClient]]:
    clients: list[HttpClient] = []

    def build(base_url: str, http: HttpSettings | None = None, **kw: Any) -> HttpClient:
        kw.setdefault("clock", time_.clock)
        kw.setdefault("sleep", time_.sleep)
        kw.setdefault("redactor", Redactor([SECRET]))
        client = HttpClient("test", base_url, http or settings(), **kw)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


MakeClient = Callable[..., HttpClient]
Serve = Callable[..., Awaitable[Fake]]


async def test_200_json(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(body={"tickets": [{"id": 1}]}))
    response = await make(fake.base_url).request("GET", "/api/tickets?page=1")
    assert response.status == 200
    assert response.json() == {"tickets": [{"id": 1}]}
    assert response.headers["content-type"].startswith("application/json")
    assert response.url == f"{fake.base_url}/api/tickets"
    assert fake.seen[0].query == "page=1"
    assert fake.seen[0].headers["User-Agent"] == f"ticketsync/{__version__}"


async def test_html_with_200_is_a_protocol_error_on_json(serve: Serve, make: MakeClient) -> None:
    page = "<html><body>Maintenance in progress</body></html>"
    fake = await serve(reply(text=page, content_type="text/html"))
    response = await make(fake.base_url).request("GET", "/api/tickets")
    with pytest.raises(ProtocolError) as caught:
        response.json()
    message = str(caught.value)
    assert message.startswith("test: GET /api/tickets -> HTTP 200 (text/html")
    assert "HTML instead of JSON" in message
    assert "Maintenance in progress" in message


async def test_json_labelled_html_is_accepted(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(text='{"status": "success"}', content_type="text/html"))
    response = await make(fake.base_url).request("GET", "/api/tickets")
    assert response.json() == {"status": "success"}


async def test_empty_body_is_a_protocol_error_on_json(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(204, text=""))
    response = await make(fake.base_url).request("DELETE", "/api/tickets/7")
    with pytest.raises(ProtocolError, match=r"HTTP 204 .*empty body"):
        response.json()


async def test_truncated_json(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(text='{"tickets": [{"id": 1}, {"id"'))
    response = await make(fake.base_url).request("GET", "/api/tickets")
    with pytest.raises(ProtocolError, match=r"invalid or truncated JSON .*body starts"):
        response.json()


async def test_503_twice_then_200_is_retried(
    serve: Serve, make: MakeClient, time_: FakeTime
) -> None:
    fake = await serve(reply(503), reply(503), reply(body={"ok": True}))
    client = make(fake.base_url)
    response = await client.request("GET", "/api/tickets")
    assert response.json() == {"ok": True}
    assert len(fake.seen) == 3
    assert len(time_.sleeps) == 2
    assert 0 <= time_.sleeps[0] <= 0.5
    assert 0 <= time_.sleeps[1] <= 1.0
    assert client.stats["retries"] == 2
    assert client.stats["5xx"] == 2
    assert client.stats["2xx"] == 1


async def test_429_retry_after_seconds(serve: Serve, make: MakeClient, time_: FakeTime) -> None:
    fake = await serve(reply(429, headers={"Retry-After": "2"}), reply(body={}))
    client = make(fake.base_url)
    await client.request("GET", "/api/tickets")
    assert time_.sleeps == [2.0]
    assert client.cooldown_until is None


async def test_429_retry_after_http_date(serve: Serve, make: MakeClient, time_: FakeTime) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    fake = await serve(reply(429, headers={"Retry-After": when}), reply(body={}))
    await make(fake.base_url).request("GET", "/api/tickets")
    assert len(time_.sleeps) == 1
    assert 3.0 <= time_.sleeps[0] <= 5.5


async def test_retry_after_beyond_cap_raises_without_sleeping(
    serve: Serve, make: MakeClient, time_: FakeTime
) -> None:
    fake = await serve(reply(429, body={"message": "slow down"}, headers={"Retry-After": "1000"}))
    client = make(fake.base_url, settings(retry_after_cap=300))
    with pytest.raises(RateLimited) as caught:
        await client.request("GET", "/api/tickets")
    assert caught.value.retry_after == 1000
    assert str(caught.value) == "test: GET /api/tickets -> HTTP 429: slow down (Retry-After 1000s)"
    assert time_.sleeps == []
    assert client.cooldown_until is not None
    assert abs(client.cooldown_until - (time.time() + 1000)) < 5


async def test_cooldown_carried_to_a_new_client(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(429, headers={"Retry-After": "30"}), reply(body={}))
    first = make(fake.base_url, settings(max_attempts=1))
    with pytest.raises(RateLimited):
        await first.request("GET", "/api/tickets")
    until = first.cooldown_until
    assert until is not None

    impatient = FakeTime()
    short_cap = make(
        fake.base_url,
        settings(retry_after_cap=10),
        cooldown_until=until,
        clock=impatient.clock,
        sleep=impatient.sleep,
    )
    with pytest.raises(RateLimited, match="cool-down") as caught:
        await short_cap.request("GET", "/api/tickets")
    assert caught.value.retry_after is not None and 25 < caught.value.retry_after <= 30
    assert impatient.sleeps == []

    patient = FakeTime()
    second = make(fake.base_url, cooldown_until=until, clock=patient.clock, sleep=patient.sleep)
    await second.request("GET", "/api/tickets")
    assert len(patient.sleeps) == 1
    assert 25 < patient.sleeps[0] <= 30
    assert len(fake.seen) == 2


async def test_unsafe_post_503_is_not_retried(
    serve: Serve, make: MakeClient, time_: FakeTime
) -> None:
    fake = await serve(reply(503, body={"message": "busy"}))
    with pytest.raises(Retriable, match=r"^test: POST /api/tickets -> HTTP 503: busy$"):
        await make(fake.base_url).request("POST", "/api/tickets", json={"title": "x"})
    assert len(fake.seen) == 1
    assert time_.sleeps == []


async def test_safe_post_is_retried(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(503), reply(body={"data": []}))
    response = await make(fake.base_url).request("POST", "/api/search", json={}, safe=True)
    assert response.json() == {"data": []}
    assert [s.method for s in fake.seen] == ["POST", "POST"]


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_rejected_with_vendor_message(
    serve: Serve, make: MakeClient, status: int
) -> None:
    fake = await serve(reply(status, body={"errorCode": "INVALID_OAUTH", "message": "Bad OAuth"}))
    with pytest.raises(AuthRejected) as caught:
        await make(fake.base_url).request("GET", "/api/tickets")
    assert str(caught.value) == f"test: GET /api/tickets -> HTTP {status}: Bad OAuth"
    assert caught.value.vendor_message == "Bad OAuth"
    assert caught.value.status == status
    assert caught.value.connection == "test"


async def test_404_is_not_found_unless_accepted(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(404, text="no such ticket", content_type="text/plain"), reply(404))
    client = make(fake.base_url)
    with pytest.raises(NotFound, match="HTTP 404: no such ticket"):
        await client.request("GET", "/api/tickets/7")
    response = await client.request("GET", "/api/tickets/7", ok=(200, 404))
    assert response.status == 404


async def test_422_is_item_error_with_vendor_message(serve: Serve, make: MakeClient) -> None:
    body = {"errors": [{"message": "status: unknown value"}, {"message": "queue: required"}]}
    fake = await serve(reply(422, body=body))
    with pytest.raises(ItemError) as caught:
        await make(fake.base_url).request("PATCH", "/api/tickets/7", json={"status": "x"})
    assert not isinstance(caught.value, NotFound)
    assert caught.value.vendor_message == "status: unknown value; queue: required"


async def test_redirect_is_not_followed(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(302, text="", headers={"Location": "https://elsewhere.example/"}))
    with pytest.raises(ProtocolError, match="HTTP 302: Found"):
        await make(fake.base_url).request("GET", "/api/tickets")


async def test_read_timeout_is_retriable(serve: Serve, make: MakeClient) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.6)
        return web.json_response({})

    fake = await serve(slow)
    client = make(fake.base_url, settings(read_timeout=0.2, max_attempts=1))
    with pytest.raises(Retriable, match=r"^test: GET /api/tickets: timed out after 0.2s"):
        await client.request("GET", "/api/tickets")
    assert client.stats["failed"] == 1


@pytest.mark.parametrize("drop", [drop_before_reply, drop_mid_body])
async def test_dropped_connection_is_retriable(
    serve: Serve, make: MakeClient, drop: Callable[[], Reply]
) -> None:
    fake = await serve(drop(), drop(), reply(body={"ok": True}))
    client = make(fake.base_url)
    with pytest.raises(Retriable, match=r"^test: POST /api/tickets: connection failed"):
        await client.request("POST", "/api/tickets")
    response = await client.request("GET", "/api/tickets")
    assert response.json() == {"ok": True}


async def test_connection_refused_is_retriable(make: MakeClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make(f"http://127.0.0.1:{port}", settings(max_attempts=2))
    with pytest.raises(Retriable, match="connection failed"):
        await client.request("GET", f"/api/tickets?authtoken={SECRET}")
    assert client.stats == {
        "requests": 2,
        "retries": 1,
        "2xx": 0,
        "3xx": 0,
        "4xx": 0,
        "5xx": 0,
        "failed": 2,
    }


async def test_retry_budget_exhausted(serve: Serve, make: MakeClient) -> None:
    fake = await serve(*[reply(503)] * 4, reply(503), reply(body={}))
    client = make(fake.base_url, settings(retry_budget=2, max_attempts=4))
    with pytest.raises(Retriable, match="retry budget exhausted"):
        await client.request("GET", "/api/tickets")
    assert len(fake.seen) == 3
    with pytest.raises(Retriable, match="retry budget exhausted"):
        await client.request("GET", "/api/tickets")
    assert len(fake.seen) == 4
    client.reset_budget()
    await client.request("GET", "/api/tickets")
    assert len(fake.seen) == 6


async def test_concurrency_limit_respected(serve: Serve, make: MakeClient) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.json_response({})

    fake = await serve(*[slow] * 6)
    client = make(fake.base_url, settings(concurrency=2))
    await asyncio.gather(*(client.request("GET", f"/api/tickets/{n}") for n in range(6)))
    assert fake.max_in_flight == 2


async def test_rate_limit_respected(serve: Serve, make: MakeClient) -> None:
    count, rate = 8, 20.0
    fake = await serve(*[reply(body={})] * count)
    client = make(fake.base_url, settings(rate=rate, concurrency=count))
    started = time.monotonic()
    await asyncio.gather(*(client.request("GET", "/api/tickets") for _ in range(count)))
    # evenly spaced, with at most one request ahead of the schedule (the bucket of 2)
    assert time.monotonic() - started >= (count - 2) / rate * 0.9


async def test_rate_limit_keeps_its_rate_over_time(serve: Serve, make: MakeClient) -> None:
    """Over many requests the achieved rate stays near the configured one."""
    count, rate = 60, 100.0
    fake = await serve(*[reply(body={})] * count)
    client = make(fake.base_url, settings(rate=rate, concurrency=8))
    started = time.monotonic()
    await asyncio.gather(*(client.request("GET", "/api/tickets") for _ in range(count)))
    elapsed = time.monotonic() - started
    assert (count - 2) / rate * 0.9 <= elapsed <= count / rate * 1.6


async def test_secret_never_in_errors_or_logs(
    serve: Serve, make: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sync.http")
    fake = await serve(
        reply(503, body={"message": f"token {SECRET} is throttled"}),
        reply(401, body={"error": {"message": f"token {SECRET} rejected"}}),
        reply(text=f"<html>{SECRET}</html>", content_type="text/html"),
    )
    client = make(fake.base_url, settings(max_attempts=2))
    path = f"/api/{SECRET}/tickets?authtoken={SECRET}"
    with pytest.raises(AuthRejected) as caught:
        await client.request("GET", path, params={"key": SECRET})
    assert caught.value.vendor_message == "token *** rejected"
    response = await client.request("GET", path)
    with pytest.raises(ProtocolError) as bad_json:
        response.json()

    assert fake.seen[0].query == f"authtoken={SECRET}&key={SECRET}"
    for error in (caught.value, bad_json.value):
        for text in (str(error), repr(error), error.vendor_message or ""):
            assert SECRET not in text
            assert "authtoken" not in text
    assert SECRET not in repr(response)
    assert SECRET not in caplog.text
    assert "test: GET /api/***/tickets -> HTTP 503: token *** is throttled" in caplog.text


async def test_process_redactor_used_when_none_given(
    serve: Serve, make: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redact, "_current", Redactor([SECRET]))
    fake = await serve(reply(400, body={"description": f"bad {SECRET}"}))
    with pytest.raises(ItemError) as caught:
        await make(fake.base_url, redactor=None).request("POST", "/api/tickets")
    assert caught.value.vendor_message == "bad ***"


async def test_absolute_url_on_another_host_refused(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(body={"page": 2}))
    client = make(fake.base_url)
    for foreign in ("https://evil.example/api/tickets", "//evil.example/api/tickets"):
        with pytest.raises(ProtocolError, match="refused"):
            await client.request("GET", foreign)
    port = fake.base_url.rsplit(":", 1)[1]
    with pytest.raises(ProtocolError, match="refused"):
        await client.request("GET", f"https://127.0.0.1:{port}/api/tickets")
    response = await client.request("GET", f"{fake.base_url}/api/tickets?cursor=abc")
    assert response.json() == {"page": 2}


async def test_on_request_reports_each_attempt(serve: Serve, make: MakeClient) -> None:
    calls: list[tuple[str, str, int | None, float]] = []
    fake = await serve(reply(502), reply(body={}))
    client = make(fake.base_url, on_request=lambda *call: calls.append(call))
    await client.request("GET", "/api/tickets?page=2")
    assert [(m, p, s) for m, p, s, _ in calls] == [
        ("GET", "/api/tickets", 502),
        ("GET", "/api/tickets", 200),
    ]
    assert all(seconds >= 0 for *_, seconds in calls)


def test_missing_ca_bundle_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"connections\.test\.http\.ca_bundle"):
        HttpClient("test", "https://x.example", settings(ca_bundle=str(tmp_path / "none.pem")))


def test_response_repr_hides_body_and_headers() -> None:
    response = Response(200, {"Set-Cookie": SECRET}, SECRET.encode(), "https://x.example/a")
    assert SECRET not in repr(response)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ItemError),
        (401, AuthRejected),
        (404, NotFound),
        (408, Retriable),
        (418, ItemError),
        (425, Retriable),
        (429, RateLimited),
        (507, Retriable),
        (302, ProtocolError),
    ],
)
def test_status_table(status: int, error: type[Exception]) -> None:
    assert error_class(status) is error


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("inf") is None
    assert parse_retry_after(None) is None


# -- hostile vendors (issue 20): whatever comes back, a value or one of our errors ----------


def _raw(status: int, body: bytes, content_type: str) -> Reply:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    return answer


def _streamed(chunks: int, size: int, *, declare: bool) -> Reply:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declare:
            response.content_length = chunks * size
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(chunks):
                await response.write(b" " * size)
        except ConnectionError:
            pass  # the client stopped reading, as it should
        return response

    return answer


async def test_deeply_nested_json_is_a_protocol_error(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(text="[" * 100_000 + "]" * 100_000))
    response = await make(fake.base_url).request("GET", "/api/tickets")
    with pytest.raises(ProtocolError, match="nested too deeply"):
        response.json()


@pytest.mark.parametrize("charset", ["base64", "zlib", "idna", "no-such-charset"])
async def test_any_declared_charset_decodes(serve: Serve, make: MakeClient, charset: str) -> None:
    fake = await serve(
        _raw(200, '{"ok": "ü"}'.encode(), f"application/json; charset={charset}"),
        _raw(400, '{"message": "bad ü"}'.encode(), f"application/json; charset={charset}"),
    )
    client = make(fake.base_url)
    response = await client.request("GET", "/api/tickets")
    assert response.json() == {"ok": "ü"}
    with pytest.raises(ItemError) as caught:
        await client.request("GET", "/api/tickets")
    assert caught.value.vendor_message is not None and "bad" in caught.value.vendor_message


@pytest.mark.parametrize("value", ["1e12", "Fri, 31 Dec 9999 23:59:59 GMT", "1" + "0" * 300])
async def test_absurd_retry_after_is_bounded(serve: Serve, make: MakeClient, value: str) -> None:
    fake = await serve(reply(429, body={"message": "slow"}, headers={"Retry-After": value}))
    client = make(fake.base_url, settings(max_attempts=1))
    with pytest.raises(RateLimited) as caught:
        await client.request("GET", "/api/tickets")
    assert caught.value.retry_after is not None
    assert caught.value.retry_after <= RETRY_AFTER_MAX_S
    # The cool-down carried to the next run must be a representable time.
    until = client.cooldown_until
    assert until is not None
    datetime.fromtimestamp(until, UTC)


def test_parse_retry_after_never_raises() -> None:
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("1e12") == RETRY_AFTER_MAX_S
    assert parse_retry_after("1e400") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == RETRY_AFTER_MAX_S
    for garbage in ("", "\x00", "Mon, 99 Foo 20x", "1e", "-inf", "Wed, 21 Oct 2015 07:28:00 XYZ"):
        value = parse_retry_after(garbage)
        assert value is None or 0.0 <= value <= RETRY_AFTER_MAX_S


@pytest.mark.parametrize("bad", ["tok\nen", "tok\ren", "tok\x01en", "tok\x7fen"])
async def test_credential_with_control_character_names_the_key_not_the_value(
    serve: Serve, make: MakeClient, bad: str
) -> None:
    fake = await serve()
    value = f"s3cr{bad}et"
    client = make(fake.base_url, credentials={"token": value, "org_id": "42"})
    with pytest.raises(AuthRejected) as caught:
        await client.request("GET", "/api/tickets", headers={"Authorization": f"Token {value}"})
    message = str(caught.value)
    assert "connections.test.credentials.token" in message
    assert "org_id" not in message
    assert "s3cr" not in message and bad not in message
    assert fake.seen == []  # nothing was sent


async def test_issued_token_with_newline_is_a_protocol_error(
    serve: Serve, make: MakeClient
) -> None:
    fake = await serve()
    client = make(fake.base_url, credentials={"token": "fine"})
    with pytest.raises(ProtocolError) as caught:
        await client.request("GET", "/api/tickets", headers={"Authorization": "Bearer a\nb"})
    assert "Authorization header" in str(caught.value)
    assert "a\nb" not in str(caught.value)


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
async def test_reply_over_the_cap_is_not_read_further(
    serve: Serve, make: MakeClient, declare: bool
) -> None:
    fake = await serve(_streamed(64, 64 * 1024, declare=declare))  # 4 MiB
    client = make(fake.base_url, settings(max_reply_bytes=1024 * 1024))
    with pytest.raises(ProtocolError) as caught:
        await client.request("GET", "/api/tickets")
    message = str(caught.value)
    assert message.startswith("test: GET /api/tickets -> HTTP 200")
    assert "1048576 bytes" in message
    assert "connections.test.http.max_reply_bytes" in message


async def test_reply_at_the_cap_is_read(serve: Serve, make: MakeClient) -> None:
    fake = await serve(_streamed(16, 1024, declare=False))
    client = make(fake.base_url, settings(max_reply_bytes=16 * 1024))
    response = await client.request("GET", "/api/tickets")
    assert len(response.body) == 16 * 1024


UNCLOSED = [
    "<title>x" * 130_000,
    "<" * 1_000_000,
    "<script>" * 130_000,
    "<p " * 340_000,
]


@pytest.mark.parametrize("page", UNCLOSED, ids=["title", "lt", "script", "attribute"])
async def test_unclosed_html_error_page_is_read_in_linear_time(
    serve: Serve, make: MakeClient, page: str
) -> None:
    assert len(page) >= 1_000_000
    fake = await serve(reply(400, text=page, content_type="text/html"))
    client = make(fake.base_url)
    # CPU time, not wall time: the machine may be busy with other work.
    started = time.process_time()
    with pytest.raises(ItemError):
        await client.request("GET", "/api/tickets")
    assert time.process_time() - started < 0.5
    started = time.process_time()
    html_text(page)  # the whole page, not only the first 8 KiB
    assert time.process_time() - started < 0.5


def test_html_text_keeps_title_and_text() -> None:
    page = (
        "<HTML><head><TITLE>Service Unavailable</TITLE><style>p{}</style></head>"
        "<body><script>var a = '<b>';</script><h1>Back soon</h1></body></html>"
    )
    assert html_text(page) == "Service Unavailable"
    body = page.replace("<TITLE>Service Unavailable</TITLE>", "")
    assert " ".join(html_text(body).split()) == "Back soon"
    assert html_text("İ<title>x</title>") == "x"


def test_sync_error_messages_are_one_printable_line() -> None:
    error = ProtocolError(
        "v: ticket 1\x00\x07\x1b[2J\x7f\u202e\x85: bad\nline\tü",
        connection="v",
        vendor_message="x\x1b[31my",
    )
    assert str(error) == "v: ticket 1\\x00\\x07\\x1b[2J\\x7f\\u202e\\x85: bad line ü"
    assert error.vendor_message == "x\\x1b[31my"


class _Lost(Exception):
    pass


def _lease(lost: list[bool]) -> Callable[[], None]:
    def check() -> None:
        if lost:
            raise _Lost("lease lost")

    return check


async def test_a_write_waiting_in_a_cooldown_is_fenced_after_the_wait(
    serve: Serve, make: MakeClient, time_: FakeTime
) -> None:
    fake = await serve(reply(429, headers={"Retry-After": "30"}))
    lost: list[bool] = []

    async def sleep(seconds: float) -> None:  # the lease is taken over during the cool-down
        lost.append(True)
        await time_.sleep(seconds)

    client = make(fake.base_url, settings(max_attempts=1), sleep=sleep)
    with pytest.raises(RateLimited):
        await client.request("GET", "/api/tickets")
    with write_fence(_lease(lost)), pytest.raises(_Lost):
        await client.request("POST", "/api/tickets", json={"title": "t"})
    assert time_.sleeps == [30.0], "the write waited out the cool-down"
    assert [s.method for s in fake.seen] == ["GET"], "then stopped before sending"


async def test_a_write_waiting_on_the_limiter_is_fenced_after_the_wait(
    serve: Serve, make: MakeClient
) -> None:
    fake = await serve(reply(body={}), reply(body={}), reply(body={}))
    lost: list[bool] = []
    client = make(fake.base_url, settings(rate=5.0))
    with write_fence(_lease(lost)):
        await client.request("POST", "/api/tickets", json={})  # the bucket holds two
        await client.request("POST", "/api/tickets", json={})
        waiting = asyncio.ensure_future(client.request("POST", "/api/tickets", json={}))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "the third write waits on the limiter"
        lost.append(True)
        with pytest.raises(_Lost):
            await waiting
    assert len(fake.seen) == 2
    fake.replies.pop()  # the third reply was never asked for


async def test_reads_are_not_fenced(serve: Serve, make: MakeClient) -> None:
    fake = await serve(reply(body={}), reply(body={}))
    client = make(fake.base_url)
    with write_fence(_lease([True])):
        await client.request("GET", "/api/tickets")
        await client.request("POST", "/api/search", json={}, safe=True)
    assert len(fake.seen) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Tue, 01 Dec 2026 10:20:30 GMT", datetime(2026, 12, 1, 10, 20, 30, tzinfo=UTC)),
        ("Tue, 01 Dec 2026 12:20:30 +0200", datetime(2026, 12, 1, 10, 20, 30, tzinfo=UTC)),
        ("Tue, 01 Dec 2026 10:20:30 -0000", datetime(2026, 12, 1, 10, 20, 30, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_a_reply_exposes_its_date_header(header: str | None, expected: datetime | None) -> None:
    headers = {} if header is None else {"Date": header}
    assert Response(200, headers, b"", "http://v/x").date == expected
