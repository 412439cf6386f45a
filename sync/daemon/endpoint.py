"""A bounded listener for the health and metrics endpoint (``service.listen``).

aiohttp parses HTTP; this module decides who gets a file descriptor:

- at most ``max_connections`` accepted connections at once; while all are in use, no
  further ``accept()`` is made, so waiting clients stay in the kernel's backlog and cost
  this process no descriptor (vendor calls and the database keep theirs);
- a client must finish its request head within ``header_timeout`` seconds of connecting,
  may stay idle between requests for ``idle_timeout`` seconds, and is cut off after
  ``lifetime`` seconds whatever it does;
- an ``accept()`` that fails (``EMFILE`` and friends) backs off and is logged at most once
  per ``WARN_EVERY_S``, with a count, never once per attempt.

``raise_fd_limit()`` lifts the process's soft ``RLIMIT_NOFILE`` toward its hard limit.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("sync.service")

#: Seconds between two warnings about failing accepts (the count is in the next warning).
WARN_EVERY_S = 60.0
#: Seconds to wait after a failed accept before the next one.
ACCEPT_BACKOFF_S = 0.5
_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Bounds:
    """How much of the process the endpoint may hold, and for how long."""

    max_connections: int = 64
    header_timeout: float = 5.0
    idle_timeout: float = 15.0
    lifetime: float = 60.0
    backlog: int = 128


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one when below it; returns (soft, hard).

    A refusal (``EPERM`` in some sandboxes) is logged at debug level and tolerated.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.debug("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft, hard
    return hard, hard


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's protocol: enforces the header deadline and the lifetime, frees a slot."""

    def __init__(self, inner: Any, bounds: Bounds, release: Callable[[], None]) -> None:
        self._inner = inner
        self._bounds = bounds
        self._release: Callable[[], None] | None = release
        self._tail = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._life_timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._bounds.header_timeout, self._cut)
        self._life_timer = loop.call_later(self._bounds.lifetime, self._cut)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            seen = self._tail + data
            if _HEAD_END in seen:  # the head is complete: aiohttp's idle rule from now on
                self._head_timer.cancel()
                self._head_timer = None
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._life_timer):
            if timer is not None:
                timer.cancel()
        try:
            self._inner.connection_lost(exc)
        finally:
            self.free()

    def free(self) -> None:
        """Give the slot back (once)."""
        if self._release is not None:
            release, self._release = self._release, None
            release()

    def _cut(self) -> None:
        if isinstance(self._transport, asyncio.Transport):
            self._transport.abort()
        elif self._transport is not None:
            self._transport.close()


class BoundedEndpoint:
    """Serves an aiohttp application on ``host:port`` within ``Bounds``."""

    def __init__(self, app: web.Application, bounds: Bounds) -> None:
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=bounds.idle_timeout)
        self._bounds = bounds
        self._slots = asyncio.Semaphore(bounds.max_connections)
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed = 0
        self._warned_at = -WARN_EVERY_S

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        await self._runner.setup()
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self._bounds.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        self._sock = sock
        self._task = asyncio.ensure_future(self._accept_loop())

    async def cleanup(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        await self._runner.cleanup()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # out of descriptors or buffers: wait, say so once
                self._slots.release()
                self._accept_failed(exc)
                await asyncio.sleep(ACCEPT_BACKOFF_S)
                continue
            except BaseException:
                self._slots.release()
                raise
            await self._serve(loop, conn)

    async def _serve(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        server = self._runner.server
        assert server is not None
        guarded = _Guarded(server(), self._bounds, self._slots.release)
        try:
            await loop.connect_accepted_socket(lambda: guarded, conn)
        except OSError as exc:
            conn.close()
            guarded.free()
            log.debug("health endpoint: dropped a connection: %s", exc)

    def _accept_failed(self, exc: OSError) -> None:
        self._failed += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            log.warning(
                "health endpoint: cannot accept connections (%s); %d failed attempt(s) since "
                "the last warning, retrying every %.1f s",
                exc.strerror or exc,
                self._failed,
                ACCEPT_BACKOFF_S,
            )
            self._warned_at, self._failed = now, 0
