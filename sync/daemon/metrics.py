"""The daemon's health and metrics endpoint (``service.listen``; off by default).

``/metrics`` serves Prometheus text format (prometheus-client, a registry of our own);
``/healthz`` answers 200, or 503 naming the connections that failed
``UNHEALTHY_AFTER`` runs in a row. It listens on loopback unless configured otherwise,
and exposes no secret: labels are connection names, vendor ids, outcomes and statuses.
On PostgreSQL the lease metrics count takeovers (``ticketsync_lease_takeovers_total``),
lost leases (``ticketsync_leases_lost_total``) and the leases held now
(``ticketsync_leases_held``); see ``sync.coord.spread``. ``ticketsync_strays_total`` counts
the duplicate vendor tickets the pulls found (``sync.engine.strays``);
``ticketsync_webhooks_total`` the requests the webhook listener answered
(``sync.daemon.webhooks``).
``ticketsync_comments_total{connection, action}`` counts comments ``pulled``, ``posted`` and
``skipped``; the gauge ``ticketsync_comment_states{connection, state}`` gives the comments
``synced``, ``pending``, ``failed`` and ``skipped`` after the connection's last run
(docs/architecture.md §8.5).
``sync.daemon.endpoint`` serves ``app()`` within bounds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from sync.engine.run import RunResult

UNHEALTHY_AFTER = 3


class Metrics:
    """Counters and gauges of one daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "ticketsync_runs", "Connection runs", ["connection", "outcome"], registry=r
        )
        self.duration = Histogram(
            "ticketsync_run_duration_seconds", "Run duration", ["connection"], registry=r
        )
        self.tickets = Counter(
            "ticketsync_tickets",
            "Tickets pulled, pushed or created",
            ["connection", "action"],
            registry=r,
        )
        self.conflicts = Counter("ticketsync_conflicts", "Conflicts", ["connection"], registry=r)
        self.errors = Counter("ticketsync_errors", "Errors", ["connection", "kind"], registry=r)
        self.http = Counter(
            "ticketsync_http_requests",
            "HTTP requests to vendors",
            ["vendor", "status"],
            registry=r,
        )
        self.lag = Gauge(
            "ticketsync_lag_seconds",
            "Seconds since the last successful run",
            ["connection"],
            registry=r,
        )
        self.failures = Gauge(
            "ticketsync_consecutive_failures", "Failed runs in a row", ["connection"], registry=r
        )
        self.lease_takeovers = Counter(
            "ticketsync_lease_takeovers",
            "Leases this instance acquired that another instance held before",
            ["connection"],
            registry=r,
        )
        self.leases_lost = Counter(
            "ticketsync_leases_lost",
            "Leases a renewal or a fence of this instance found gone",
            ["connection"],
            registry=r,
        )
        self.strays = Counter(
            "ticketsync_strays",
            "Duplicate vendor tickets found (create marker of a ticket already linked)",
            ["connection"],
            registry=r,
        )
        self.webhooks = Counter(
            "ticketsync_webhooks",
            "Webhook requests by result (handshake, pull, ignored, refused); connection '-': "
            "no such connection",
            ["connection", "result"],
            registry=r,
        )
        self.comments = Counter(
            "ticketsync_comments",
            "Comments pulled, posted or skipped",
            ["connection", "action"],
            registry=r,
        )
        self.comment_states = Gauge(
            "ticketsync_comment_states",
            "Comments synced, pending, failed or skipped after the last run",
            ["connection", "state"],
            registry=r,
        )
        self.leases_held = Gauge(
            "ticketsync_leases_held", "Connection leases this instance holds", registry=r
        )
        self._last_ok: dict[str, datetime] = {}
        self._failing: dict[str, int] = {}

    def observe_run(self, result: RunResult) -> None:
        name = result.connection
        self.runs.labels(name, result.outcome).inc()
        self.duration.labels(name).observe(result.duration_s)
        for action in ("pulled", "pushed", "created"):
            self.tickets.labels(name, action).inc(getattr(result.counts, action))
        self.conflicts.labels(name).inc(result.counts.conflicts)
        self.strays.labels(name).inc(result.counts.strays)
        for action in ("pulled", "posted", "skipped"):
            self.comments.labels(name, action).inc(getattr(result.counts, f"comments_{action}"))
        for state, count in (result.comments or {}).items():
            self.comment_states.labels(name, state).set(count)
        if result.counts.errors:
            self.errors.labels(name, "ticket").inc(result.counts.errors)
        if result.error is not None:
            self.errors.labels(name, result.error.kind).inc()
        if result.ok:
            self._last_ok[name] = datetime.now(UTC)
            self._failing[name] = 0
        else:
            self._failing[name] = self._failing.get(name, 0) + 1
        self.failures.labels(name).set(self._failing[name])

    def http_hook(self, vendor: str) -> Callable[[str, str, int | None, float], None]:
        def record(method: str, path: str, status: int | None, seconds: float) -> None:
            self.http.labels(vendor, str(status) if status is not None else "error").inc()

        return record

    def unhealthy(self) -> list[str]:
        return sorted(n for n, count in self._failing.items() if count >= UNHEALTHY_AFTER)

    def _refresh_lag(self) -> None:
        now = datetime.now(UTC)
        for name, at in self._last_ok.items():
            self.lag.labels(name).set((now - at).total_seconds())

    async def _metrics(self, request: web.Request) -> web.Response:
        self._refresh_lag()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        failing = self.unhealthy()
        status = 503 if failing else 200
        return web.Response(
            status=status,
            text=json.dumps({"status": "failing" if failing else "ok", "failing": failing}),
            content_type="application/json",
        )

    def app(self) -> web.Application:
        """The endpoint's application: ``/metrics`` and ``/healthz``."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        return app
