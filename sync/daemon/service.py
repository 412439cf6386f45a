"""The daemon's lifecycle: signals, systemd notify, the health and metrics endpoint.

- SIGTERM / SIGINT: stop scheduling, let each run stop after the ticket in hand (bounded
  by ``STOP_TIMEOUT_S``), exit 0; a second signal exits at once.
- SIGHUP: reload the configuration; a bad file is reported and the old one kept. The
  redactor then masks the old secrets and the new ones. Webhook secrets change at once;
  the webhook listener's address at the next restart.
- Start: the soft open-file limit is raised to the hard one; the health and metrics
  endpoint is bounded (``sync.daemon.endpoint``: ``service.max_connections``, header and idle
  timeouts), so a flood of idle sockets cannot take the descriptors vendor calls need.
- SIGUSR1: sync every connection now.
- Retention (``sync.daemon.retention``): ``runs`` rows older than
  ``service.runs_keep_days`` are deleted at start and every hour.
- Wake-ups (``sync.daemon.wake``): a local change to the mirror starts a push-only run of
  each connection it concerns within about a second, debounced and coalesced; on
  PostgreSQL a LISTEN on the change feed's NOTIFY, on SQLite a probe every second.
- Webhooks (``sync.daemon.webhooks``, ``service.webhook_listen``): a vendor event starts a
  full run of its connection, on a listener of its own with its own connection cap. On
  PostgreSQL, an instance that does not hold the connection's lease passes the event on
  with ``NOTIFY ticketsync_wake`` to the one that does.
- PostgreSQL: the instance registers in ``sync_instances`` and keeps its leases between
  runs (``sync.coord.spread``); a clean stop releases them, so another instance takes over at once.
- systemd (``Type=notify``): READY=1 once started, WATCHDOG=1 pings at half of
  ``$WATCHDOG_USEC`` while the loop is alive, STOPPING=1 on shutdown; no-ops elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from sync.config import Config, load_config
from sync.coord.locks import instance_lock
from sync.coord.spread import StickyLeases
from sync.daemon.endpoint import BoundedEndpoint, Bounds, raise_fd_limit
from sync.daemon.metrics import Metrics
from sync.daemon.retention import Retention
from sync.daemon.scheduler import Jobs
from sync.daemon.wake import (
    FALLBACK_S,
    PROBE_S,
    DirtyProbe,
    PgListener,
    Wakes,
    forward,
    listen_url,
)
from sync.daemon.webhooks import WebhookReceiver
from sync.db import Mirror
from sync.errors import ConfigError
from sync.redact import current, install

log = logging.getLogger("sync.service")

STOP_TIMEOUT_S = 20.0


def notify(message: str) -> None:
    """Send ``message`` to systemd's notify socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.debug("systemd notify failed: %s", exc)


class Service:
    """The running daemon."""

    def __init__(
        self, mirror: Mirror, config: Config, names: Sequence[str], config_path: Path | None
    ) -> None:
        self.mirror = mirror
        self.config = config
        self.names = list(names)
        self.config_path = config_path
        self._stop = asyncio.Event()
        self.metrics = Metrics()
        self.leases = (
            StickyLeases(mirror, config.sync.lease_seconds, names, metrics=self.metrics)
            if mirror.dialect == "postgresql"
            else None
        )
        self.jobs = Jobs(
            mirror,
            config,
            names,
            should_stop=self._stop.is_set,
            metrics=self.metrics,
            leases=self.leases,
        )
        self.wakes = Wakes(self.jobs.wake)
        self.probe = DirtyProbe(mirror, self.wakes.wake, self._probe_every)
        self.listener = (
            PgListener(listen_url(mirror.url), self.probe.poke, self._forwarded)
            if mirror.dialect == "postgresql"
            else None
        )
        self.webhooks = WebhookReceiver(
            self._webhook_secrets,
            self._webhook,
            lambda name, result: self.metrics.webhooks.labels(name, result).inc(),
        )
        self._forwarding: set[asyncio.Task[None]] = set()
        self.retention = Retention(mirror, lambda: self.config.service.runs_keep_days)
        self._signals = 0

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop)
        loop.add_signal_handler(signal.SIGINT, self._on_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        loop.add_signal_handler(signal.SIGUSR1, self.jobs.run_all_now)
        soft, hard = raise_fd_limit()
        log.debug("open-file limit: %d (hard %d)", soft, hard)
        endpoint = None
        address = self.config.service.listen_address()
        if address is not None:
            endpoint = BoundedEndpoint(
                self.metrics.app(), Bounds(max_connections=self.config.service.max_connections)
            )
            await endpoint.start(*address)
            log.info("health and metrics on http://%s:%d/", *address)
        hooks = await self._start_webhooks()
        if self.leases is not None:
            await self.leases.start()
        self.jobs.start()
        self.wakes.set_connections(self.names)
        self.probe.start()
        self.retention.start()
        if self.listener is not None:
            self.listener.start()
        watchdog = asyncio.ensure_future(self._watchdog())
        notify("READY=1")
        log.info(
            "ticketsync daemon started: %d connection(s), database %s",
            len(self.names),
            self.mirror.redacted_url(),
        )
        await self._stop.wait()
        notify("STOPPING=1")
        log.info("shutting down: letting runs in hand finish")
        watchdog.cancel()
        if self.listener is not None:
            await self.listener.stop()
        await self.probe.stop()
        await self.retention.stop()
        await self.wakes.stop(STOP_TIMEOUT_S)  # a woken run in hand stops like the others
        await self.jobs.stop(STOP_TIMEOUT_S)
        if self.leases is not None:
            await self.leases.stop()  # hand every connection over at once
        for served in (endpoint, hooks):
            if served is not None:
                await served.cleanup()
        log.info("stopped")
        return 0

    async def _start_webhooks(self) -> BoundedEndpoint | None:
        address = self.config.service.webhook_address()
        if address is None:
            return None
        bounds = Bounds(max_connections=self.config.service.webhook_max_connections)
        hooks = BoundedEndpoint(self.webhooks.app(), bounds)
        await hooks.start(*address)
        log.info("vendor webhooks on http://%s:%d/webhooks/<connection>/<secret>", *address)
        return hooks

    def _webhook_secrets(self) -> dict[str, str]:
        """The webhook secret of each connection this daemon syncs."""
        found = {n: self.config.connections[n].credential("webhook_secret") for n in self.names}
        return {name: secret for name, secret in found.items() if secret}

    def _webhook(self, name: str) -> None:
        """A vendor event for ``name``: pull here, or pass it on to the lease's holder."""
        if self.leases is None or name in self.leases.held:
            self.wakes.wake(name, pull=True)
            return
        task = asyncio.ensure_future(self._forward(name))
        self._forwarding.add(task)
        task.add_done_callback(self._forwarding.discard)

    async def _forward(self, name: str) -> None:
        try:
            await asyncio.to_thread(forward, self.mirror, name)
        except Exception as exc:  # the scheduled run still pulls it
            log.warning("%s: could not pass a webhook on: %s", name, exc)

    def _forwarded(self, name: str) -> None:
        """A webhook another instance passed on: ours to pull when we hold the lease."""
        if self.leases is not None and name in self.leases.held:
            self.wakes.wake(name, pull=True)

    def _probe_every(self) -> float:
        """Probe every second unless the PostgreSQL listener is up."""
        return FALLBACK_S if self.listener is not None and self.listener.listening else PROBE_S

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def _on_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(1)
        self._stop.set()

    def _on_reload(self) -> None:
        if self.config_path is None:
            log.warning("SIGHUP: no configuration file to reload")
            return
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error(
                "SIGHUP: %s is invalid; keeping the running configuration: %s",
                self.config_path,
                "; ".join(exc.problems),
            )
            return
        names = [n for n in self.names if n in config.connections] or list(config.connections)
        # A vendor may still echo a replaced secret: mask the old ones and the new ones.
        install(current().with_secrets(config.secrets()))
        if config.service.webhook_listen != self.config.service.webhook_listen:
            log.warning("SIGHUP: service.webhook_listen changes at the next restart")
        self.config = config
        self.names = names
        self.jobs.reload(config, names)
        self.wakes.set_connections(names)
        if self.leases is not None:
            self.leases.set_connections(names)
        log.info("SIGHUP: configuration reloaded (%d connection(s))", len(names))

    async def _watchdog(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if usec <= 0:
            return
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(usec / 2e6)


def run_daemon(
    mirror: Mirror, config: Config, names: Sequence[str], *, config_path: Path | None
) -> int:
    """Run until SIGTERM/SIGINT; returns 0 after a clean shutdown."""
    lock = instance_lock(mirror, "daemon")
    if lock is not None:
        lock.acquire()
    try:
        return asyncio.run(Service(mirror, config, names, config_path).serve())
    finally:
        if lock is not None:
            lock.release()
