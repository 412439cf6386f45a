"""sync.daemon.endpoint: the cap, the header deadline, the idle timeout, the open-file limit."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import subprocess
import sys

import pytest
from aiohttp import web

from sync.daemon import endpoint
from sync.daemon.endpoint import BoundedEndpoint, Bounds, raise_fd_limit


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


async def _started(bounds: Bounds) -> BoundedEndpoint:
    server = BoundedEndpoint(_app(), bounds)
    await server.start("127.0.0.1", 0)
    return server


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection (EOF) within ``seconds``."""
    try:
        await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return False
    return reader.at_eof()


async def test_a_client_that_sends_no_head_is_cut_off() -> None:
    server = await _started(Bounds(header_timeout=0.3))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        assert await _closed_within(reader, 2.0)
        writer.close()
    finally:
        await server.cleanup()


async def test_an_idle_keep_alive_client_is_cut_off() -> None:
    server = await _started(Bounds(header_timeout=0.3, idle_timeout=0.5, lifetime=30))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
        assert await _closed_within(reader, 3.0)
        writer.close()
    finally:
        await server.cleanup()


async def test_waiting_clients_are_not_accepted_beyond_the_cap() -> None:
    server = await _started(Bounds(max_connections=2, header_timeout=0.5))
    try:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # Not served while the two idle clients hold the slots, served once they are cut off.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(), 0.3)
        assert b"200 OK" in await asyncio.wait_for(reader.read(), 3.0)
        for _, w in [*idle, (reader, writer)]:
            w.close()
    finally:
        await server.cleanup()


async def test_failing_accepts_warn_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _started(Bounds())
    loop = asyncio.get_running_loop()

    async def no_descriptors(sock: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(endpoint, "ACCEPT_BACKOFF_S", 0.01)
    monkeypatch.setattr(loop, "sock_accept", no_descriptors)
    try:
        with caplog.at_level(logging.WARNING, "sync.service"):
            await server.cleanup()  # restart the accept loop under the patched loop
            server = await _started(Bounds())
            await asyncio.sleep(0.3)
        warnings = [r for r in caplog.records if "cannot accept" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await server.cleanup()


def test_raise_fd_limit_lifts_soft_to_hard() -> None:
    code = (
        "import resource\n"
        "from sync.daemon.endpoint import raise_fd_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 256))\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "(256, 256) (256, 256)"


def test_raise_fd_limit_tolerates_eperm(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(resource, "getrlimit", lambda _: (128, 256))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert raise_fd_limit() == (128, 256)
