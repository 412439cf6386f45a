"""The soak's world: four vendor emulator processes, a PostgreSQL mirror in a scratch
schema, and three ``ticketsync run`` daemons sharing it, which the chaos may kill, pause
and restart (docs/architecture.md §8.4).

The emulators are the system tests' processes (``tests.system.harness.VendorProcess``),
driven through their control API; the mirror and the daemons are the scale-out
benchmark's (``tests.benchmarks.support``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text

from tests.benchmarks.support import start_daemon
from tests.soak.vendors import VENDORS
from tests.system.harness import VendorProcess

#: Short lease and lookback, so that takeovers and two-look create recovery happen many
#: times in a short soak; every HTTP call stays below the lease.
LEASE_S = 6.0
LOOKBACK_S = 3.0
INTERVAL_S = 1.0
TOTAL_TIMEOUT_S = 4.0


class Daemon:
    """One ``ticketsync run`` process, which the chaos may kill, pause and restart."""

    def __init__(self, index: int, config: Path, directory: Path) -> None:
        self.index = index
        self.config = config
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0

    def start(self) -> None:
        """Start it (again): each start logs to a file of its own."""
        self.starts += 1
        log = self.directory / f"daemon-{self.index}-{self.starts}.log"
        self.proc = start_daemon(self.config, log)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        self.paused = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """SIGCONT (a paused process cannot stop), SIGTERM, SIGKILL after 20 s."""
        if not self.alive:
            return
        assert self.proc is not None
        self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class World:
    """The emulators, the mirror and the daemons of one soak."""

    def __init__(self, directory: Path, url: str, daemons: int = 3) -> None:
        self.directory = directory
        self.url = url
        self.vendors: dict[str, VendorProcess] = {}
        for name in VENDORS:
            self.vendors[name] = VendorProcess(name)
        # Every restart refreshes no token (the cache is shared), but be generous anyway.
        self.vendors["zoho_desk"].call("POST", "/_sandbox/config", {"refresh_limit": 100000})
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        self.config = self._write_config()
        self.daemons = [Daemon(i, self.config, directory) for i in range(daemons)]

    def _write_config(self) -> Path:
        connections: dict[str, Any] = {}
        for name, vendor in VENDORS.items():
            block = vendor.plugin.connection(self.vendors[name])
            block["http"] = {
                **block["http"],
                "total_timeout": TOTAL_TIMEOUT_S,
                "retry_after_cap": 2,
            }
            connections[name] = block
        data = {
            "database": {"url": self.url},
            "sync": {
                "state_dir": str(self.directory),
                "interval": INTERVAL_S,
                "lease_seconds": LEASE_S,
                "lookback_seconds": LOOKBACK_S,
                # the soak edits many tickets at once on purpose
                "guard": {"share": 1.0, "min_count": 10**9},
            },
            "connections": connections,
        }
        path = self.directory / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        path.chmod(0o600)
        return path

    def start(self) -> None:
        for daemon in self.daemons:
            daemon.start()

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        for vendor in self.vendors.values():
            vendor.stop()
        self.engine.dispose()

    # -- the mirror, as another program sees it --------------------------------------------

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []

    def ticket_ids(self) -> list[int]:
        return [int(i) for (i,) in self.sql("SELECT id FROM tickets ORDER BY id")]

    # -- the vendors ------------------------------------------------------------------------

    def vendor_tickets(self, name: str) -> dict[str, dict[str, Any]]:
        """The vendor's tickets by external id, as its control API lists them."""
        key = VENDORS[name].plugin.id_key
        return {str(t[key]): t for t in self.vendors[name].tickets()}

    def fault(self, name: str, fault: dict[str, Any]) -> None:
        self.vendors[name].call("POST", "/_sandbox/faults", fault)

    def clear_faults(self) -> None:
        """Drop every queued fault: the emulators serve normally from now on."""
        for vendor in self.vendors.values():
            vendor.call("DELETE", "/_sandbox/faults")


def wait(predicate: Any, timeout: float, every: float = 1.0) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes; its
    last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
