"""The one module that performs HTTP: timeouts, retries, rate limits, cool-downs, redaction.

Contract of ``HttpClient.request``:

- It returns a ``Response`` for any 2xx status and for the statuses the caller lists in
  ``ok``; every other outcome raises one error of ``sync.errors``. Statuses map through the
  one table ``STATUS_ERRORS`` (as Airbyte's ``DEFAULT_ERROR_MAPPING``), aiohttp exceptions
  through ``HttpClient._transport_error``; nothing else in ticketsync catches aiohttp
  exceptions. Redirects are not followed, so credentials never travel to another host: a
  3xx is a ``ProtocolError`` unless listed in ``ok``.
- Safe requests (GET, HEAD, OPTIONS, or ``safe=True`` for vendors whose reads are POSTs) are
  retried on ``Retriable`` errors: at most ``max_attempts`` attempts, exponential backoff with
  full jitter (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015),
  ``Retry-After`` honoured up to ``retry_after_cap``, every retry spending one unit of the
  connection's per-run retry budget. Writes are never retried here (docs/architecture.md §7.4):
  whether
  to send an update again is the engine's decision, after a fresh read.
- A 429 starts a cool-down for the whole connection: later requests wait for its end, or,
  when it ends further away than ``retry_after_cap``, fail at once with ``RateLimited``.
  ``cooldown_until`` (wall-clock epoch seconds) lets the caller carry it to the next run.
- Every attempt passes the connection's concurrency semaphore and rate limiter.
- A write (not safe) runs ``sync.coord.fence.check_write_fence()`` as its last step before its
  bytes go out, after every wait (semaphore, cool-down, limiter, a token refresh before).
- A ``Response`` exposes the reply's ``Date`` header as ``Response.date``: the vendor's own
  clock, which pull cursors follow (docs/architecture.md §8.2).
- Messages name the connection, the method and the URL path, never the query string,
  headers or bodies, and pass through the redactor (the given one or ``redact.current()``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import aiohttp
from aiolimiter import AsyncLimiter
from yarl import URL

from sync import __version__, redact, retry
from sync.coord.fence import check_write_fence
from sync.errors import (
    AuthRejected,
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    RateLimited,
    Retriable,
    VendorError,
)
from sync.redact import Redactor
from sync.reply import Response, shorten, status_phrase, vendor_message
from sync.retry import parse_retry_after

__all__ = ["STATUS_ERRORS", "HttpClient", "Response", "error_class", "parse_retry_after"]

if TYPE_CHECKING:
    from sync.config import HttpSettings

log = logging.getLogger(__name__)

USER_AGENT = f"ticketsync/{__version__}"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: HTTP status -> the error it raises. Other 5xx are Retriable, other 4xx ItemError, and
#: anything else that is neither 2xx nor accepted by the caller is a ProtocolError.
STATUS_ERRORS: Mapping[int, type[VendorError]] = MappingProxyType(
    {
        400: ItemError,
        401: AuthRejected,
        403: AuthRejected,
        404: NotFound,
        408: Retriable,
        409: ItemError,
        422: ItemError,
        425: Retriable,
        429: RateLimited,
        500: Retriable,
        502: Retriable,
        503: Retriable,
        504: Retriable,
    }
)

_ABSOLUTE = re.compile(r"(?i)^(?:[a-z][a-z0-9+.-]*:)?//")  # scheme://host or //host
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\"<>()\[\]]*")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # forbidden in a header value
_READ_CHUNK = 64 * 1024


def error_class(status: int) -> type[VendorError]:
    """The error a response with ``status`` raises when the caller did not accept it."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if 500 <= status < 600:
        return Retriable
    if 400 <= status < 500:
        return ItemError
    return ProtocolError


@dataclass(frozen=True)
class _Call:
    """One logical request, as retried: what to send and how to name it in messages."""

    method: str
    url: URL
    shown: str  # redacted URL path: all that messages, logs and metrics see of the URL
    options: Mapping[str, Any]  # params, json, data, headers, handed to aiohttp untouched
    ok: frozenset[int]

    @property
    def label(self) -> str:
        return f"{self.method} {self.shown}"


class HttpClient:
    """HTTP for one connection and one base URL; see the module docstring for the contract."""

    def __init__(
        self,
        connection: str,
        base_url: str,
        settings: HttpSettings,
        *,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cooldown_until: float | None = None,
        on_request: Callable[[str, str, int | None, float], None] | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.connection = connection
        # Only to name a credential that cannot be sent; values never reach a message.
        self._credentials = dict(credentials or {})
        self._base = URL(base_url)
        self._settings = settings
        self._redactor = redactor
        self._clock = clock
        self._sleep = sleep
        self._on_request = on_request
        self._ssl = _ssl_context(connection, settings.ca_bundle)
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        # A bucket of 2 refilled at ``rate`` per second: requests go out evenly spaced, and
        # a wake-up that came late (the event loop's timer overshoots by a millisecond or
        # two) is made up by the next request instead of being lost, which at 1 would cost
        # 10-20% of the rate. At most one extra request in any window: a capacity of
        # ``rate`` would let that many out at once, and could not express rate < 1.
        self._limiter = AsyncLimiter(2, 2 / settings.rate) if settings.rate else None
        self._random = random.Random()
        self._budget = settings.retry_budget
        self._stats = dict.fromkeys(("requests", "retries", "2xx", "3xx", "4xx", "5xx"), 0)
        self._stats["failed"] = 0
        # Held on ``clock``; converted from and to wall-clock time only at the edges.
        self._cooldown: float | None = None
        if cooldown_until is not None and cooldown_until > time.time():
            self._cooldown = clock() + (cooldown_until - time.time())

    @property
    def cooldown_until(self) -> float | None:
        """Wall-clock epoch seconds when the current 429 cool-down ends, or None."""
        remaining = self._cooldown_remaining()
        return time.time() + remaining if remaining > 0 else None

    @property
    def stats(self) -> dict[str, int]:
        """Attempts sent (``requests``), ``retries``, and attempts by status class or failed."""
        return dict(self._stats)

    def reset_budget(self) -> None:
        """Refill the retry budget: a new run starts."""
        self._budget = self._settings.retry_budget

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        safe: bool | None = None,
        ok: Iterable[int] = (200, 201, 202, 204),
    ) -> Response:
        """Send ``method path`` (relative to the base URL, or an absolute URL on its host)."""
        method = method.upper()
        url = self._resolve(method, path)
        options = {"params": params, "json": json, "data": data, "headers": headers}
        call = _Call(method, url, self._redact(url.path), options, frozenset(ok))
        safe = method in SAFE_METHODS if safe is None else safe
        attempt = 0
        while True:
            try:
                return await self._attempt(call, attempt, fenced=not safe)
            except Retriable as exc:
                if not safe or attempt + 1 >= self._settings.max_attempts:
                    raise
                delay = self._retry_delay(exc, attempt)
                log.info("%s; retry %d of %d in %.2fs", exc, attempt + 1, self._max_retries, delay)
            await self._sleep(delay)
            attempt += 1

    @property
    def _max_retries(self) -> int:
        return self._settings.max_attempts - 1

    def _redact(self, text: str) -> str:
        return (self._redactor or redact.current()).redact(text)

    def _resolve(self, method: str, path: str) -> URL:
        if not _ABSOLUTE.match(path):
            return URL(f"{str(self._base).rstrip('/')}/{path.lstrip('/')}")
        target = URL(path)
        if (target.scheme, target.host, target.port) != (
            self._base.scheme,
            self._base.host,
            self._base.port,
        ):
            raise ProtocolError(
                self._redact(
                    f"{self.connection}: {method} refused: {target.scheme}://{target.host} is "
                    f"not this connection's host {self._base.scheme}://{self._base.host}"
                ),
                connection=self.connection,
            )
        return target

    def _retry_delay(self, exc: Retriable, attempt: int) -> float:
        """Seconds to sleep before the next attempt; raises when no retry may be made."""
        settings = self._settings
        if exc.retry_after is not None and exc.retry_after > settings.retry_after_cap:
            raise exc
        if self._budget <= 0:
            raise type(exc)(
                f"{exc}; retry budget exhausted ({settings.retry_budget} retries this run)",
                connection=self.connection,
                status=exc.status,
                vendor_message=exc.vendor_message,
                retry_after=exc.retry_after,
            ) from exc
        self._budget -= 1
        self._stats["retries"] += 1
        return retry.request_delay(
            settings.backoff_base,
            settings.backoff_cap,
            attempt,
            self._random,
            retry_after=exc.retry_after,
            cooldown=self._cooldown_remaining(),
        )

    async def _attempt(self, call: _Call, attempt: int, *, fenced: bool = False) -> Response:
        self._check_headers(call)
        session = self._ensure_session()
        async with self._slots:
            await self._wait_cooldown(call)
            if self._limiter is not None:
                await self._limiter.acquire()
            if fenced:  # after every wait: the lease may have been lost during one
                check_write_fence()
            status, headers, body = await self._send(session, call)
        url = str(call.url.with_query(None).with_fragment(None))
        response = Response(
            status, headers, body, url, call.method, self.connection, self._redactor
        )
        if 200 <= status < 300 or status in call.ok:
            return response
        raise self._status_error(call, response, attempt)

    async def _send(
        self, session: aiohttp.ClientSession, call: _Call
    ) -> tuple[int, Mapping[str, str], bytes]:
        started = self._clock()
        status: int | None = None
        try:
            async with session.request(
                call.method, call.url, allow_redirects=False, **call.options
            ) as resp:
                body = await self._read(call, resp)
                status = resp.status
                return status, resp.headers, body
        except (TimeoutError, aiohttp.ClientError) as exc:
            # ``from None``: aiohttp's own exception text may carry the full URL and query.
            raise self._transport_error(call, exc) from None
        except ValueError as exc:  # aiohttp refuses a header or URL it cannot send
            raise self._transport_error(call, exc) from None
        finally:
            self._record(call, status, self._clock() - started)

    async def _read(self, call: _Call, resp: aiohttp.ClientResponse) -> bytes:
        """The reply's body, read no further than ``max_reply_bytes``."""
        limit = self._settings.max_reply_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise self._too_large(call, resp.status, f"declares {declared} bytes")
        body = bytearray()
        while chunk := await resp.content.read(_READ_CHUNK):
            body += chunk
            if len(body) > limit:
                raise self._too_large(call, resp.status, f"exceeded {limit} bytes")
        return bytes(body)

    def _too_large(self, call: _Call, status: int, what: str) -> ProtocolError:
        limit = self._settings.max_reply_bytes
        return ProtocolError(
            self._redact(
                f"{self.connection}: {call.label} -> HTTP {status}: the reply {what}, over the "
                f"limit of {limit} bytes, and was not read further; if the vendor's replies "
                f"are this large, raise connections.{self.connection}.http.max_reply_bytes "
                "(or sync.http.max_reply_bytes)"
            ),
            connection=self.connection,
            status=status,
        )

    def _check_headers(self, call: _Call) -> None:
        """Refuse to send a header value with a newline or control character (HTTP forbids
        them, and aiohttp would raise): the credential it came from is named, never shown."""
        headers = call.options.get("headers") or {}
        bad = [name for name, value in headers.items() if _CONTROL.search(str(value))]
        if not bad:
            return
        keys = [key for key, value in self._credentials.items() if _CONTROL.search(value)]
        where = f"connections.{self.connection}.credentials"
        if keys:
            named = ", ".join(f"{where}.{key}" for key in sorted(keys))
            raise AuthRejected(
                f"{self.connection}: {call.label}: not sent: {named} contains a newline or "
                "control character; correct it in the configuration (or its environment "
                "variable or file) and reload",
                connection=self.connection,
            )
        raise ProtocolError(
            self._redact(
                f"{self.connection}: {call.label}: not sent: the {', '.join(sorted(bad))} "
                "header would contain a newline or control character (a token the vendor "
                f"issued?); check {where} and the vendor's token replies"
            ),
            connection=self.connection,
        )

    def _transport_error(self, call: _Call, exc: BaseException) -> VendorError:
        settings = self._settings
        error: type[VendorError] = Retriable
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            what = f"timed out after {settings.connect_timeout:g}s connecting"
        elif isinstance(exc, aiohttp.SocketTimeoutError):
            what = f"timed out after {settings.read_timeout:g}s waiting to read"
        elif isinstance(exc, TimeoutError):
            what = f"timed out after {settings.total_timeout:g}s"
        elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
            # An untrusted certificate does not heal within a run; retrying only burns budget.
            error, what = ProtocolError, f"TLS certificate rejected: {_describe(exc)}"
        elif isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            what = f"connection failed: {_describe(exc)}"
        else:
            error, what = ProtocolError, f"request failed: {_describe(exc)}"
        message = self._redact(f"{self.connection}: {call.label}: {what}")
        return error(message, connection=self.connection)

    def _status_error(self, call: _Call, response: Response, attempt: int) -> VendorError:
        error = error_class(response.status)
        vendor = shorten(self._redact(vendor_message(response)))
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status == 429:
            self._start_cooldown(retry_after, attempt)
        message = f"{self.connection}: {call.label} -> HTTP {response.status}: "
        message += vendor or status_phrase(response.status)
        if retry_after is not None:
            message += f" (Retry-After {retry_after:.0f}s)"
        if issubclass(error, Retriable):
            return error(
                message,
                connection=self.connection,
                status=response.status,
                vendor_message=vendor or None,
                retry_after=retry_after,
            )
        return error(
            message,
            connection=self.connection,
            status=response.status,
            vendor_message=vendor or None,
        )

    def _start_cooldown(self, retry_after: float | None, attempt: int) -> None:
        settings = self._settings
        seconds = retry.cooldown_seconds(
            settings.backoff_base, settings.backoff_cap, attempt, retry_after
        )
        until = self._clock() + seconds
        if self._cooldown is None or until > self._cooldown:
            self._cooldown = until

    def _cooldown_remaining(self) -> float:
        if self._cooldown is None:
            return 0.0
        return max(0.0, self._cooldown - self._clock())

    async def _wait_cooldown(self, call: _Call) -> None:
        cap = self._settings.retry_after_cap
        while (remaining := self._cooldown_remaining()) > 0:
            if remaining > cap:
                raise RateLimited(
                    f"{self.connection}: {call.label}: not sent, the vendor's rate-limit "
                    f"cool-down has {remaining:.0f}s left (more than retry_after_cap {cap:g}s)",
                    connection=self.connection,
                    retry_after=remaining,
                )
            deadline = self._cooldown
            await self._sleep(remaining)
            # Wait again only if another 429 pushed the end further out meanwhile.
            if self._cooldown == deadline:
                break

    def _record(self, call: _Call, status: int | None, seconds: float) -> None:
        self._stats["requests"] += 1
        kind = f"{status // 100}xx" if status is not None else "failed"
        self._stats[kind] = self._stats.get(kind, 0) + 1
        log.debug(
            "%s: %s -> %s in %.0f ms",
            self.connection,
            call.label,
            status if status is not None else "failed",
            seconds * 1000,
        )
        if self._on_request is not None:
            self._on_request(call.method, call.shown, status, seconds)

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop that will drive it.
        if self._session is None or self._session.closed:
            settings = self._settings
            timeout = aiohttp.ClientTimeout(
                total=settings.total_timeout,
                connect=settings.connect_timeout,
                sock_read=settings.read_timeout,
            )
            self._session = aiohttp.ClientSession(
                timeout=timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session


def _ssl_context(connection: str, ca_bundle: str | None) -> ssl.SSLContext | bool:
    """Verification is always on; a CA bundle only changes which roots are trusted."""
    if ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            [f"connections.{connection}.http.ca_bundle: cannot load {ca_bundle}: {reason}"]
        ) from None


def _describe(exc: BaseException) -> str:
    """aiohttp's account of a failure, without query strings (they may hold secrets)."""
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return _QUERY_IN_TEXT.sub("", described)
