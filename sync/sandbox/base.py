"""Shared machinery of the vendor emulators: an aiohttp server, a request log, fault injection.

An emulator is a real HTTP server on 127.0.0.1 that answers in one vendor's wire format. A
vendor module subclasses ``Emulator``, adds its routes in ``add_routes`` and its ticket store
in ``seed`` / ``edit``, and registers itself with ``@register_emulator("vendor")``.

Lenient to serve, strict to judge (docs/architecture.md §7.10): a request that departs from the
vendor's
documented shape but that the real vendor evidently accepts is served, and the departure is
recorded in the log entry's ``deviations``; adapter tests assert ``deviations() == []``.
Requests the real vendor rejects are rejected in the vendor's own way by the vendor module.

Control API on the same server, JSON, no auth (tests and ``ticketsync demo`` drive it):

- ``GET /_sandbox/tickets``; ``POST /_sandbox/tickets`` with one ticket or a list, in the
  vendor's field names: with an existing ``id`` it is an edit at the vendor, else a new ticket;
- ``POST /_sandbox/faults`` with one fault or a list, e.g. ``{"kind": "status", "status": 503,
  "times": 2, "match": "PATCH /api/v1/tickets"}``; kinds are ``FAULT_KINDS``;
  ``DELETE /_sandbox/faults`` drops every queued fault (the soak's quiet end);
- ``GET /_sandbox/comments?ticket=ID`` (a ticket's comments as the vendor stores them);
  ``POST /_sandbox/comments`` with ``{"ticket": ID, ...}`` (one comment or a list, the
  vendor's field names): a comment added at the vendor, as an agent or customer would;
- ``GET /_sandbox/log`` (the request log and the deviations), ``POST /_sandbox/reset``,
  ``POST /_sandbox/config`` (vendor settings, e.g. Zoho's ``token_lifetime``, or
  ``misfile_visibility``: new comments are stored with the opposite visibility to the one
  asked, the switch for tests of the adapters' visibility check).

Every vendor reply carries a ``Date`` header from the emulator's ``clock`` (a callable the
tests may replace), so a test moves the vendor's time instead of sleeping through a
lookback (docs/architecture.md §8.2).

In-process tests call the same things as methods: ``inject``, ``seed``, ``edit``, ``tickets``,
``add_comment``, ``comments``, ``log``, ``deviations``, ``reset``, ``configure``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from aiohttp import hdrs, web

from sync.sandbox import hostile

#: What ``inject`` understands. ``status``: answer with that status (optional ``body``,
#: ``headers`` such as Retry-After); ``latency``: wait ``seconds`` then serve; ``drop``: close
#: the connection unanswered; ``html200``: an HTML page with status 200; ``truncated``: serve,
#: then cut the reply's body short; ``apply_then_drop``: serve (a write is applied), then close
#: the connection unanswered; ``revoke``: revoke the credentials now (vendor-specific);
#: ``hostile``: serve ``payload``, one of ``sync.sandbox.hostile.PAYLOADS`` (deep JSON, odd
#: charsets, oversized and slow-drip bodies, unclosed HTML, absurd Retry-After, future and
#: overflowing timestamps, control characters).
FAULT_KINDS = (
    "status",
    "latency",
    "drop",
    "html200",
    "truncated",
    "apply_then_drop",
    "revoke",
    "hostile",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Where a vendor handler appends the deviations of the request it serves.
DEVIATIONS = web.RequestKey("deviations", list[str])

_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
    "<body><h1>We'll be back soon</h1><p>Scheduled maintenance.</p></body></html>"
)


@dataclass
class Fault:
    """A misbehaviour queued for the next ``times`` requests matching ``match``.

    ``match`` is ``"METHOD /path-prefix"``, ``"METHOD"`` or ``"/path-prefix"`` (None: any
    vendor request).
    """

    kind: str
    times: int = 1
    match: str | None = None
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: The ``hostile`` fault's payload, and the body size of its ``oversized`` one.
    payload: str = ""
    size: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.kind == "hostile" and self.payload not in hostile.PAYLOADS:
            raise ValueError(
                f"unknown hostile payload {self.payload!r}; expected one of {hostile.PAYLOADS}"
            )

    def matches(self, method: str, path: str) -> bool:
        if self.match is None:
            return True
        want_method, _, want_path = self.match.partition(" ")
        if want_method.startswith("/"):
            want_method, want_path = "", want_method
        if want_method and want_method.upper() != method.upper():
            return False
        return path.startswith(want_path)


_REGISTRY: dict[str, type[Emulator]] = {}


def register_emulator(name: str) -> Callable[[type[Emulator]], type[Emulator]]:
    """Class decorator: make the class the emulator ``python -m sync.sandbox NAME`` starts."""

    def decorate(cls: type[Emulator]) -> type[Emulator]:
        cls.vendor = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def emulators() -> Mapping[str, type[Emulator]]:
    """Every registered emulator, importing each module of this package so it can register."""
    import sync.sandbox as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(_REGISTRY)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Emulator(ABC):
    """One vendor's emulated API plus the shared control API, request log and faults."""

    vendor: ClassVar[str] = ""
    #: Request headers whose values never reach the log.
    secret_headers: ClassVar[frozenset[str]] = frozenset({"authorization", "cookie"})
    #: Query or body fields whose values never reach the log.
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        #: Each ticket's comments (vendor records, in the order they were added).
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.misfile_visibility = False
        self.log: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.clock: Callable[[], datetime] = utc_now
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None

    # -- vendor hooks ----------------------------------------------------------------------

    @abstractmethod
    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Add the vendor's API routes."""

    @abstractmethod
    def seed(self, **fields: Any) -> dict[str, Any]:
        """Create a ticket directly at the vendor (vendor field names, ``id`` optional)."""

    @abstractmethod
    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """Change a ticket directly at the vendor, as an agent would; return it."""

    @abstractmethod
    def fault_response(self, fault: Fault) -> web.Response:
        """The reply to a ``status`` fault, in the vendor's error shape unless ``fault.body``."""

    def add_comment(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """Add a comment to a ticket directly at the vendor (vendor field names); bumps the
        ticket's conversation counters the way the vendor documents it."""
        raise NotImplementedError(f"{self.vendor} emulator has no comments")

    def stored_comments(self, external_id: str) -> list[dict[str, Any]]:
        """A ticket's comments as the vendor stores them (``GET /_sandbox/comments``), oldest
        first; [] for an unknown ticket."""
        return list(self.comments.get(external_id, []))

    def revoke(self) -> None:
        """Revoke the credentials the emulator accepts (the ``revoke`` fault)."""
        raise NotImplementedError(f"{self.vendor} emulator has no credentials to revoke")

    #: Canonical field -> the vendor's field name, for edits the demo makes "at the vendor".
    demo_field_names: ClassVar[Mapping[str, str]] = {}

    def demo_connection(self) -> dict[str, Any] | None:
        """The config block of a connection to this running emulator, for ``ticketsync demo``
        (credentials the emulator accepts, field maps in its spelling); None: not in the demo."""
        return None

    def demo_comment(self, body: str) -> dict[str, Any]:
        """``add_comment`` fields of an agent's public reply ``body``, for the demo."""
        raise NotImplementedError(f"{self.vendor} emulator has no comments")

    def demo_value(self, external_id: str, field: str) -> Any:
        """A ticket's field as the vendor's UI would show it, for the demo's tables."""
        return self.tickets[external_id].get(self.demo_field_names[field])

    def demo_fields(self, index: int) -> dict[str, Any]:
        """Fields of the ``index``-th demo ticket for ``seed_demo``."""
        return {}

    def reset_state(self) -> None:
        """Forget state beyond tickets, log and faults; vendors extend it (contacts, tokens)."""
        self.latency = 0.0
        self.misfile_visibility = False
        self.comments.clear()

    def configure(self, **settings: Any) -> None:
        """Change emulator settings; the base knows ``latency`` (seconds before every reply)
        and ``misfile_visibility`` (see the module docstring)."""
        unknown = set(settings) - {"latency", "misfile_visibility"}
        if unknown:
            raise ValueError(f"unknown {self.vendor} emulator settings: {sorted(unknown)}")
        if "latency" in settings:
            self.latency = float(settings["latency"])
        if "misfile_visibility" in settings:
            self.misfile_visibility = bool(settings["misfile_visibility"])

    # -- test-facing API -------------------------------------------------------------------

    def seed_demo(self, count: int) -> None:
        for index in range(count):
            self.seed(**self.demo_fields(index))

    def inject(self, kind: str, *, times: int = 1, match: str | None = None, **params: Any) -> None:
        """Queue a fault (see ``FAULT_KINDS``); ``revoke`` takes effect at once."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if kind == "revoke":
            self.revoke()
            return
        self.faults.append(Fault(kind, times=times, match=match, **params))

    def deviations(self) -> list[str]:
        """Every recorded deviation, as ``"METHOD /path: what"``."""
        return [f"{e['method']} {e['path']}: {d}" for e in self.log for d in e["deviations"]]

    def reset(self) -> None:
        self.tickets.clear()
        self.log.clear()
        self.faults.clear()
        self.reset_state()

    def requests(self, method: str, path_prefix: str = "") -> list[dict[str, Any]]:
        """Log entries of vendor requests with this method and path prefix."""
        return [e for e in self.log if e["method"] == method and e["path"].startswith(path_prefix)]

    # -- server ----------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/_sandbox/tickets", self._control_tickets)
        app.router.add_post("/_sandbox/tickets", self._control_tickets)
        app.router.add_get("/_sandbox/comments", self._control_comments)
        app.router.add_post("/_sandbox/comments", self._control_comments)
        app.router.add_post("/_sandbox/faults", self._control_faults)
        app.router.add_delete("/_sandbox/faults", self._control_clear_faults)
        app.router.add_get("/_sandbox/log", self._control_log)
        app.router.add_post("/_sandbox/reset", self._control_reset)
        app.router.add_post("/_sandbox/config", self._control_config)
        self.add_routes(app.router)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); return the base URL."""
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- request pipeline ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        response = await self._serve(request, handler)
        if not response.prepared and hdrs.DATE not in response.headers:
            # The vendor's clock is the emulator's (settable) clock (docs/architecture.md §8.2).
            response.headers[hdrs.DATE] = format_datetime(self.clock().astimezone(UTC), usegmt=True)
        return response

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = await self._log_entry(request)
        request[DEVIATIONS] = entry["deviations"]
        fault = self._take_fault(request.method, request.path)
        entry["fault"] = fault.kind if fault else None
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault and fault.kind == "latency":
            await asyncio.sleep(fault.seconds)
        if fault and fault.kind == "hostile" and fault.payload in hostile.EARLY:
            served = await self._hostile(request, fault)
            entry["status"] = served.status
            return served
        early = self._early_fault(request, fault)
        if early is not None:
            entry["status"] = None if fault and fault.kind == "drop" else early.status
            return early
        response = await self._call(handler, request)
        entry["status"] = response.status
        return self._late_fault(request, fault, response)

    @staticmethod
    async def _call(handler: Handler, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's 404/405 for unrouted requests
            return exc

    def _early_fault(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        if fault is None:
            return None
        if fault.kind == "status":
            return self.fault_response(fault)
        if fault.kind == "html200":
            return web.Response(status=200, text=_HTML_PAGE, content_type="text/html")
        if fault.kind == "drop":
            return self._drop(request)
        return None

    def _late_fault(
        self, request: web.Request, fault: Fault | None, response: web.StreamResponse
    ) -> web.StreamResponse:
        if fault is None:
            return response
        if fault.kind == "apply_then_drop":
            return self._drop(request)
        if fault.kind == "hostile":
            return hostile.late(fault.payload, response)
        if fault.kind == "truncated":
            body = response.body if isinstance(response, web.Response) else None
            data = bytes(body) if isinstance(body, bytes | bytearray) else b""
            cut = data[: len(data) // 2] if len(data) > 1 else b'{"data": [{"id": '
            return web.Response(status=200, body=cut, content_type="application/json")
        return response

    async def _hostile(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.payload == "retry_after":
            headers = {**fault.headers, "Retry-After": "1e12"}
            return self.fault_response(Fault("status", status=429, headers=headers))
        return await hostile.early(request, fault.payload, fault)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        # Closing the transport before the reply is written is what a dropped connection
        # looks like to the client: no status line, the socket just ends.
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def _log_entry(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        entry: dict[str, Any] = {
            "at": self.clock().isoformat(),
            "method": request.method,
            "path": request.path,
            "query": self._hide(dict(request.query)),
            "headers": {
                k: ("***" if k.lower() in self.secret_headers else v)
                for k, v in request.headers.items()
            },
            "body": self._logged_body(raw, request.content_type),
            "status": None,
            "deviations": [],
        }
        self.log.append(entry)
        return entry

    def _logged_body(self, raw: bytes, content_type: str) -> Any:
        if not raw:
            return None
        text = raw.decode("utf-8", errors="replace")
        if content_type == "application/x-www-form-urlencoded":
            return self._hide(dict(parse_qsl(text, keep_blank_values=True)))
        try:
            value = json.loads(text)
        except ValueError:
            return text[:2000]
        return self._hide(value) if isinstance(value, dict) else value

    def _hide(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: ("***" if k in self.secret_fields else v) for k, v in values.items()}

    # -- control API -----------------------------------------------------------------------

    async def _control_tickets(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            payload = await request.json()
            items = payload if isinstance(payload, list) else [payload]
            try:
                for item in items:
                    fields = dict(item)
                    ticket_id = str(fields.get("id", ""))
                    if ticket_id in self.tickets:
                        del fields["id"]
                        self.edit(ticket_id, **fields)
                    else:
                        self.seed(**fields)
            except (TypeError, ValueError, KeyError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"tickets": list(self.tickets.values())})

    async def _control_comments(self, request: web.Request) -> web.Response:
        ticket = request.query.get("ticket", "")
        if request.method == "POST":
            payload = await request.json()
            try:
                for item in payload if isinstance(payload, list) else [payload]:
                    fields = dict(item)
                    ticket = str(fields.pop("ticket"))
                    self.add_comment(ticket, **fields)
            except (TypeError, ValueError, KeyError, NotImplementedError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"comments": self.stored_comments(ticket)})

    async def _control_faults(self, request: web.Request) -> web.Response:
        payload = await request.json()
        try:
            for item in payload if isinstance(payload, list) else [payload]:
                params = dict(item)
                self.inject(params.pop("kind"), **params)
        except (TypeError, ValueError, KeyError, NotImplementedError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"queued": len(self.faults)})

    async def _control_clear_faults(self, request: web.Request) -> web.Response:
        dropped = len(self.faults)
        self.faults.clear()
        return web.json_response({"dropped": dropped})

    async def _control_log(self, request: web.Request) -> web.Response:
        return web.json_response({"log": self.log, "deviations": self.deviations()})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_config(self, request: web.Request) -> web.Response:
        try:
            self.configure(**(await request.json()))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})
