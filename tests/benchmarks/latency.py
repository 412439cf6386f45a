"""Propagation latency in daemon mode (issue 11 item 5).

Per vendor and interval, one real ``ticketsync run`` daemon (a subprocess, SQLite mirror in
a temporary directory) syncs one connection to an emulator that serves from a process of
its own and answers every request after ``latency`` seconds. Once the daemon has imported
the seeded tickets, another program (this one, with plain ``sqlite3``) edits ``edits``
tickets, one ``UPDATE`` of a pushable field each, at random moments over ``window``
seconds. An edit's latency is the time from its commit to the emulator's log entry of the
first write of that ticket after it (the entry's ``at``: when the request arrived, by the
emulator's clock; both processes read this machine's wall clock).

The daemon's job fires every ``interval`` plus a jitter of up to ``min(5, interval / 10)``
(``sync.daemon.scheduler.Jobs``), so an edit committed just after a run read the change feed
waits for the next run: bound = interval + jitter + the longest run the daemon recorded.
Every session (all vendors, both intervals) runs at once, each with its own emulator
process and daemon, so the default interval's session sets the wall time.

``python -m tests.benchmarks.latency [--quick] [--vendor V]`` prints the table and the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sync.config import SyncSettings
from sync.db import Mirror, migrate
from sync.sandbox.kapture import PATHS as KAPTURE_PATHS
from sync.sandbox.proprofs import UPDATE_PATH as PROPROFS_UPDATE
from tests.benchmarks.support import (
    BENCHES,
    VENDORS,
    EmulatorProcess,
    config_data,
    start_daemon,
    stop_daemon,
    table,
    until,
)

SEEDED = 20
LATENCY_S = 0.05
SHORT_INTERVAL_S = 2.0
DEFAULT_INTERVAL_S = SyncSettings.interval
QUICK_VENDORS = ("zoho_desk",)


def _zoho_writes(entry: dict[str, Any]) -> list[Any]:
    path = entry["path"]
    return [path.rsplit("/", 1)[1]] if entry["method"] == "PATCH" else []


def _sirportly_writes(entry: dict[str, Any]) -> list[Any]:
    return [entry["body"]["ticket"]] if entry["path"].endswith("/tickets/update") else []


def _proprofs_writes(entry: dict[str, Any]) -> list[Any]:
    return [entry["body"]["ticket_id"]] if entry["path"] == PROPROFS_UPDATE else []


def _kapture_writes(entry: dict[str, Any]) -> list[Any]:
    if entry["path"] != KAPTURE_PATHS["update"]:
        return []
    return [item["ticket_id"] for item in entry["body"]]


#: The external ids of the tickets a logged request writes, per vendor.
WRITES: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "zoho_desk": _zoho_writes,
    "sirportly": _sirportly_writes,
    "proprofs": _proprofs_writes,
    "kapture": _kapture_writes,
}


def _key(external_id: Any) -> str:
    # ProProfs' "00701" is the ticket the emulator logs as 701.
    return str(external_id).lstrip("0") or "0"


async def latency_benchmark(
    vendor: str, *, interval: float, edits: int, window: float, latency: float
) -> dict[str, Any]:
    """One daemon session: ``edits`` local edits over ``window`` seconds, each one timed."""
    bench = BENCHES[vendor]
    local = bench.emulator()
    bench.seed(local, max(SEEDED, edits))
    emulator = EmulatorProcess(local)
    await emulator.start()
    daemon = None
    try:
        with tempfile.TemporaryDirectory(prefix="tsbench-latency-") as tmp:
            directory = Path(tmp)
            config = _config(emulator, directory, interval)
            emulator.configure(latency=latency)
            daemon = start_daemon(config, directory / "daemon.log")
            database = directory / "mirror.db"
            links = await until(
                lambda: _imported(database, max(SEEDED, edits)), 60, "import", every=0.25
            )
            committed = await _edit(database, bench.local_edit, links, edits, window)
            wait = interval + _jitter(interval) + 60
            arrived = await until(
                lambda: _arrived(emulator, vendor, committed), wait, "writes", every=0.25
            )
            stop_daemon(daemon)
            daemon = None
            runs = _runs(database)
    finally:
        if daemon is not None:
            stop_daemon(daemon)
        await emulator.stop()
    return _row(vendor, interval, latency, window, committed, arrived, runs)


def _config(emulator: EmulatorProcess, directory: Path, interval: float) -> Path:
    data = config_data(emulator, directory, extra=BENCHES[emulator.vendor].extra)
    data["sync"]["interval"] = interval
    mirror = Mirror(data["database"]["url"])
    migrate(mirror)
    mirror.dispose()
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _jitter(interval: float) -> float:
    return min(5.0, interval * 0.1)


def _imported(database: Path, count: int) -> dict[int, str] | None:
    """The links (ticket id -> external id) once the first run imported ``count`` tickets."""
    if not database.exists():
        return None
    with sqlite3.connect(database, timeout=30) as db:
        finished = db.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL")
        if not finished.fetchone()[0]:
            return None
        links = dict(db.execute("SELECT ticket_id, external_id FROM ticket_links").fetchall())
    return links if len(links) >= count else None


async def _edit(
    database: Path, statement: str, links: dict[int, str], edits: int, window: float
) -> dict[str, datetime]:
    """Edit ``edits`` random tickets at random moments; each external id -> its commit time."""
    chosen = random.sample(sorted(links), edits)
    moments = sorted(random.uniform(0, window) for _ in chosen)
    started = time.monotonic()
    committed = {}
    for ticket, moment in zip(chosen, moments, strict=True):
        await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
        await asyncio.to_thread(_update, database, statement.format(ids=ticket))
        committed[links[ticket]] = datetime.now(UTC)
    return committed


def _update(database: Path, statement: str) -> None:
    db = sqlite3.connect(database, timeout=30)
    try:
        with db:
            db.execute(statement)
    finally:
        db.close()


def _arrived(
    emulator: EmulatorProcess, vendor: str, committed: dict[str, datetime]
) -> dict[str, datetime] | None:
    """Each edited ticket's first write after its commit, once every one has arrived."""
    wanted = {_key(ext): at for ext, at in committed.items()}
    first: dict[str, datetime] = {}
    for entry in emulator.log:
        at = datetime.fromisoformat(entry["at"])
        for ext in map(_key, WRITES[vendor](entry)):
            if ext in wanted and ext not in first and at >= wanted[ext]:
                first[ext] = at
    if len(first) < len(wanted):
        return None
    return {ext: first[_key(ext)] for ext in committed}


def _runs(database: Path) -> list[float]:
    with sqlite3.connect(database, timeout=30) as db:
        rows = db.execute("SELECT duration_s FROM runs WHERE duration_s IS NOT NULL ORDER BY id")
        return [float(seconds) for (seconds,) in rows]


def _row(
    vendor: str,
    interval: float,
    latency: float,
    window: float,
    committed: dict[str, datetime],
    arrived: dict[str, datetime],
    runs: list[float],
) -> dict[str, Any]:
    seconds = sorted((arrived[ext] - at).total_seconds() for ext, at in committed.items())
    # The import is the first run and the longest by far; the bound is about the others.
    longest = max(runs[1:] or runs)
    bound = interval + _jitter(interval) + longest
    return {
        "vendor": vendor,
        "interval_s": interval,
        "jitter_s": _jitter(interval),
        "latency_s": latency,
        "edits": len(seconds),
        "window_s": window,
        "p50_s": round(percentile(seconds, 0.5), 3),
        "p95_s": round(percentile(seconds, 0.95), 3),
        "max_s": round(seconds[-1], 3),
        "longest_run_s": round(longest, 3),
        "runs": len(runs),
        "bound_s": round(bound, 3),
        "within_bound": seconds[-1] <= bound,
        "latencies_s": [round(s, 3) for s in seconds],
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values``, interpolated linearly between neighbours."""
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def plan(quick: bool) -> list[dict[str, float]]:
    """The sessions per vendor: (interval, edits, window)."""
    if quick:
        return [{"interval": 1.0, "edits": 3, "window": 2.0}]
    return [
        {"interval": DEFAULT_INTERVAL_S, "edits": 8, "window": 1.5 * DEFAULT_INTERVAL_S},
        {"interval": SHORT_INTERVAL_S, "edits": 8, "window": 20.0},
    ]


async def run_latency_async(
    quick: bool, vendors: Sequence[str] = VENDORS, latency: float = LATENCY_S
) -> list[dict[str, Any]]:
    """Every session of ``plan(quick)`` for every vendor, all at once; one row each."""
    sessions = [
        latency_benchmark(
            vendor,
            interval=s["interval"],
            edits=int(s["edits"]),
            window=s["window"],
            latency=latency,
        )
        for vendor in vendors
        for s in plan(quick)
    ]
    return list(await asyncio.gather(*sessions))


def run_latency(quick: bool, vendors: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``run_latency_async`` in an event loop of its own.

    ``vendors`` default to all four, or to Zoho Desk in the quick mode: four emulators and
    four daemons starting at once keep two cores busy for longer than a smoke test lasts.
    """
    chosen = vendors or (QUICK_VENDORS if quick else VENDORS)
    return asyncio.run(run_latency_async(quick, chosen))


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a table."""
    # Imported here: the benchmarks' entry point imports this module.

    return table(
        "Propagation latency in daemon mode (local UPDATE commit -> the vendor's log)",
        "vendor|interval s|L s|edits|p50 s|p95 s|max s|bound s|within",
        [
            (
                r["vendor"],
                r["interval_s"],
                r["latency_s"],
                r["edits"],
                r["p50_s"],
                r["p95_s"],
                r["max_s"],
                r["bound_s"],
                "yes" if r["within_bound"] else "NO",
            )
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.latency")
    parser.add_argument("--quick", action="store_true", help="a 1 s interval only, 3 edits")
    parser.add_argument(
        "--vendor", choices=VENDORS, action="append", help="default: all four (quick: zoho_desk)"
    )
    args = parser.parse_args(argv)
    rows = run_latency(args.quick, args.vendor)
    print(render(rows))
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
