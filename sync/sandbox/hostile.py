"""The ``hostile`` fault's payloads: what a broken or malicious vendor might send.

``Emulator`` serves them when a fault ``{"kind": "hostile", "payload": NAME}`` is queued (see
``sync.sandbox.base``). Each payload is in ``PAYLOADS``:

- served instead of the vendor's reply (``EARLY``): ``deep_json`` (JSON nested 200,000
  deep), ``oversized`` (a 200 whose body grows to ``size`` bytes), ``slow_drip`` (a 200
  whose body comes one byte every ``seconds``, default 0.2, never ending within 30 s),
  ``unclosed_html`` (a 1 MB error page of unclosed tags, with ``status``), ``retry_after``
  (a 429 asking to wait ``1e12`` seconds);
- rewriting the vendor's real reply (``LATE``): ``charset`` (declared ``charset=base64``),
  ``future_time`` (every time-like field in the year 9999), ``overflow_time`` (every time-like
  field beyond any calendar: ``99999999999-…`` strings, ``10**30`` numbers), ``control``
  (control characters and a right-to-left override in every string).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

EARLY = ("deep_json", "oversized", "slow_drip", "unclosed_html", "retry_after")
LATE = ("charset", "future_time", "overflow_time", "control")
PAYLOADS = EARLY + LATE

#: Keys whose values the timestamp payloads replace.
_TIME_KEY = re.compile(r"(?i)time|date|_at$|[a-z]At$|^(updated|created|modified)")
_FUTURE = ("9999-12-31T23:59:59Z", 253402300799000)
_OVERFLOW = ("99999999999-12-31T23:59:59Z", 10**30)
_CONTROL = "\x00\x07\x1b[2J\x7f\u202e"
_DEPTH = 200_000
_UNCLOSED = "<title>x" * 130_000  # 1 MB; quadratic for a non-greedy regex
_DRIP_FOR = 30.0
_DRIP_PAUSE = 0.2


async def early(request: web.Request, payload: str, fault: Any) -> web.StreamResponse:
    """The reply ``payload`` sends instead of the vendor's."""
    if payload == "deep_json":
        body = "[" * _DEPTH + "]" * _DEPTH
        return web.Response(status=200, text=body, content_type="application/json")
    if payload == "unclosed_html":
        return web.Response(status=fault.status, text=_UNCLOSED, content_type="text/html")
    if payload == "oversized":
        return await _stream(request, fault.size, 0.0)
    if payload == "slow_drip":
        pause = fault.seconds or _DRIP_PAUSE
        return await _stream(request, int(_DRIP_FOR / pause), pause)
    raise ValueError(f"not an early payload: {payload!r}")


async def _stream(request: web.Request, size: int, pause: float) -> web.StreamResponse:
    """A 200 JSON reply whose body is ``size`` bytes, one byte every ``pause`` seconds when
    ``pause`` is set, else in 64 KiB chunks, without a Content-Length."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = 1 if pause else 64 * 1024
    try:
        await response.write(b'{"data": [')
        for _ in range(0, size, chunk):
            await response.write(b" " * chunk)
            if pause:
                await asyncio.sleep(pause)
    except (ConnectionError, RuntimeError):
        pass  # the client gave up reading, as it should
    return response


def late(payload: str, response: web.StreamResponse) -> web.StreamResponse:
    """The vendor's real ``response``, rewritten by ``payload``."""
    raw = response.body if isinstance(response, web.Response) else None
    data = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
    if payload == "charset":
        return web.Response(
            status=response.status,
            body=data,
            headers={"Content-Type": "application/json; charset=base64"},
        )
    try:
        document = json.loads(data)
    except ValueError:
        return response
    if payload == "control":
        rewritten = _strings(document)
    else:
        rewritten = _times(document, _FUTURE if payload == "future_time" else _OVERFLOW)
    return web.json_response(rewritten, status=response.status)


def _times(value: Any, replacement: tuple[str, int], key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _times(v, replacement, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v, replacement, key) for v in value]
    if key and _TIME_KEY.search(key) and value is not None and not isinstance(value, bool):
        return replacement[1] if isinstance(value, int | float) else replacement[0]
    return value


def _strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, str):
        return value + _CONTROL
    return value
