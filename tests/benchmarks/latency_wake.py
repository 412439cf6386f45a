"""Propagation latency with wake-ups and webhooks, at the default settings (issue 23).

One real daemon at the default interval (60 s) per database (SQLite, PostgreSQL) syncs
one Zoho Desk connection to an emulator in a process of its own that answers every
request after ``latency`` seconds (50 ms), with the daemon's webhook listener on and
subscribed through ``ticketsync webhooks register`` (so the emulator delivers its events
as docs/vendor-apis.md §4.10 describes). Then:

- **local edit -> vendor**: another program commits ``edits`` one-ticket ``UPDATE``s at
  random moments over ``window`` seconds; each edit's latency runs from its commit to the
  emulator's log entry of that ticket's first write after it (``latency._arrived``);
- **Zoho edit -> mirror**: ``remote_edits`` edits made in Zoho (the emulator's control
  API, one at a time at random moments), each timed from the call until the mirror's row
  shows the new subject (polled every 10 ms).

``burst_benchmark``: a daemon (no webhooks) at the default settings; another program
commits ``edits`` (1,000) one-row ``UPDATE``s as fast as it can (each its own
transaction); the time from the first commit to the emulator's log of the last write
and from the first write's arrival to the last's (+ L: the push as the batch benchmark
times it) against that benchmark's bound, writes·L/C (efficiency = bound / time), and
the runs the wake-ups made of them.

The interval-bound sessions of ``latency`` measure the scheduled runs alone; here the
wake-ups carry the changes. ``python -m tests.benchmarks.latency_wake [--quick]
[--db D]`` prints the table and the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

from sync.db import Mirror, migrate
from tests.benchmarks.latency import _arrived, percentile
from tests.benchmarks.support import (
    BENCHES,
    CONNECTION,
    DATABASES,
    ROOT,
    EmulatorProcess,
    config_data,
    database_url,
    start_daemon,
    stop_daemon,
    table,
    until,
)

SEEDED = 40
LATENCY_S = 0.05
SECRET = "benchmark-webhook-secret-0123456789"


async def wake_benchmark(
    db: str, *, edits: int, remote_edits: int, window: float, latency: float = LATENCY_S
) -> dict[str, Any]:
    """One daemon at the default settings on ``db``: local and Zoho edits, each timed."""
    bench = BENCHES["zoho_desk"]
    local = bench.emulator()
    ids = bench.seed(local, max(SEEDED, edits + remote_edits))
    emulator = EmulatorProcess(local)
    await emulator.start()
    daemon = None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="tsbench-wake-") as tmp,
            database_url(db, Path(tmp)) as url,
        ):
            directory = Path(tmp)
            port = _free_port()
            config = _config(emulator, directory, url, port)
            emulator.configure(latency=latency)
            daemon = start_daemon(config, directory / "daemon.log")
            engine = create_engine(url)
            try:
                links = await until(lambda: _imported(engine, len(ids)), 120, "import", 0.25)
                await until(lambda: _register(config, port), 60, "webhook registration", 0.5)
                await asyncio.sleep(1.5)  # the change-feed probe's first look sets its marks
                chosen = random.sample(sorted(links), edits + remote_edits)
                committed = await _local_edits(engine, links, chosen[:edits], window)
                arrived = await until(
                    lambda: _arrived(emulator, "zoho_desk", committed), 120, "pushes", 0.25
                )
                remote = await _remote_edits(emulator, engine, links, chosen[edits:], window)
                kinds = _kinds(engine)
            finally:
                stop_daemon(daemon)
                daemon = None
                engine.dispose()
    finally:
        if daemon is not None:
            stop_daemon(daemon)
        await emulator.stop()
    pushed = sorted((arrived[e] - at).total_seconds() for e, at in committed.items())
    return _row(db, latency, window, pushed, sorted(remote), kinds)


async def burst_benchmark(
    db: str, *, edits: int = 1000, latency: float = LATENCY_S, concurrency: int = 8
) -> dict[str, Any]:
    """``edits`` local commits in a burst, pushed by the daemon's wake-ups; timed."""
    bench = BENCHES["zoho_desk"]
    local = bench.emulator()
    bench.seed(local, edits)
    emulator = EmulatorProcess(local)
    await emulator.start()
    daemon = None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="tsbench-burst-") as tmp,
            database_url(db, Path(tmp)) as url,
        ):
            directory = Path(tmp)
            config = _config(emulator, directory, url, None, concurrency)
            daemon = start_daemon(config, directory / "daemon.log")
            engine = create_engine(url)
            try:
                links = await until(lambda: _imported(engine, edits), 300, "import", 0.25)
                await asyncio.sleep(1.5)  # the change-feed probe's first look sets its marks
                emulator.configure(latency=latency)
                before = len(emulator.log)
                started = datetime.now(UTC)
                await asyncio.to_thread(_burst, engine, sorted(links))
                committed_s = (datetime.now(UTC) - started).total_seconds()
                wanted = set(links.values())
                done = await until(
                    lambda: _all_written(emulator, before, wanted), 300, "pushes", 0.25
                )
                kinds = _kinds(engine)
            finally:
                stop_daemon(daemon)
                daemon = None
                engine.dispose()
    finally:
        if daemon is not None:
            stop_daemon(daemon)
        await emulator.stop()
    writes, first, last = done
    achieved = (last - started).total_seconds()
    # The push itself, as the batch benchmark times it: from its first request's arrival.
    pushing = (last - first).total_seconds() + latency
    bound = writes * latency / concurrency
    return {
        "vendor": "zoho_desk",
        "db": db,
        "edits": edits,
        "committed_in_s": round(committed_s, 3),
        "writes": writes,
        "achieved_s": round(achieved, 3),
        "bound_s": round(bound, 3),
        "efficiency": round(bound / achieved, 3),
        "push_s": round(pushing, 3),
        "push_efficiency": round(bound / pushing, 3),
        "runs_by_kind": kinds,
    }


def _burst(engine: Any, ids: list[int]) -> None:
    with engine.connect() as conn:
        for ticket in ids:
            with conn.begin():
                conn.execute(
                    text(f"UPDATE tickets SET title = 'burst {ticket}' WHERE id = {ticket}")
                )


def _all_written(
    emulator: EmulatorProcess, before: int, wanted: set[str]
) -> tuple[int, datetime, datetime] | None:
    """(writes, when the first and the last arrived) once every ticket in ``wanted`` was
    written."""
    seen: set[str] = set()
    arrivals = []
    for entry in emulator.log[before:]:
        for ext in _zoho_patch(entry):
            seen.add(ext)
            arrivals.append(datetime.fromisoformat(entry["at"]))
    if not arrivals or not wanted <= seen:
        return None
    return len(arrivals), arrivals[0], arrivals[-1]


def _zoho_patch(entry: dict[str, Any]) -> list[str]:
    return [entry["path"].rsplit("/", 1)[1]] if entry["method"] == "PATCH" else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(
    emulator: EmulatorProcess, directory: Path, url: str, port: int | None, concurrency: int = 8
) -> Path:
    extra = BENCHES["zoho_desk"].extra
    data = config_data(emulator, directory, url=url, extra=extra, concurrency=concurrency)
    if port is not None:
        data["service"] = {"webhook_listen": f"127.0.0.1:{port}"}
        data["connections"][CONNECTION]["credentials"]["webhook_secret"] = SECRET
    mirror = Mirror(url)
    migrate(mirror)
    mirror.dispose()
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _imported(engine: Any, count: int) -> dict[int, str] | None:
    with engine.connect() as conn:
        if not conn.execute(
            text("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL")
        ).scalar():
            return None
        rows = conn.execute(text("SELECT ticket_id, external_id FROM ticket_links")).all()
    return {int(t): str(e) for t, e in rows} if len(rows) >= count else None


def _register(config: Path, port: int) -> bool:
    """``ticketsync webhooks register`` once the daemon's listener answers Zoho's check."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sync", "--config", str(config)),
            *("webhooks", "register", CONNECTION, "--url", f"http://127.0.0.1:{port}"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode == 0


async def _local_edits(
    engine: Any, links: dict[int, str], chosen: list[int], window: float
) -> dict[str, datetime]:
    """One-ticket title edits at random moments; each external id -> its commit time."""
    moments = sorted(random.uniform(0, window) for _ in chosen)
    started = time.monotonic()
    committed = {}
    for index, (ticket, moment) in enumerate(zip(chosen, moments, strict=True)):
        await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
        statement = f"UPDATE tickets SET title = 'local {index}' WHERE id = {ticket}"
        await asyncio.to_thread(_execute, engine, statement)
        committed[links[ticket]] = datetime.now(UTC)
    return committed


def _execute(engine: Any, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement))


async def _remote_edits(
    emulator: EmulatorProcess,
    engine: Any,
    links: dict[int, str],
    chosen: list[int],
    window: float,
) -> list[float]:
    """Zoho edits one at a time; each one's seconds until the mirror shows it."""
    gaps = [random.uniform(0, window / max(1, len(chosen))) for _ in chosen]
    seconds = []
    for index, (ticket, gap) in enumerate(zip(chosen, gaps, strict=True)):
        await asyncio.sleep(gap)
        subject = f"remote {index}"
        started = time.monotonic()
        await asyncio.to_thread(
            emulator._control, "POST", "tickets", {"id": links[ticket], "subject": subject}
        )
        query = f"SELECT title FROM tickets WHERE id = {ticket}"
        await until(lambda q=query, s=subject: _scalar(engine, q) == s, 60, "a pull", 0.01)
        seconds.append(time.monotonic() - started)
    return seconds


def _scalar(engine: Any, statement: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(statement)).scalar()


def _kinds(engine: Any) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, count(*) FROM runs GROUP BY kind")).all()
    return {str(kind): int(count) for kind, count in rows}


def _row(
    db: str,
    latency: float,
    window: float,
    pushed: list[float],
    pulled: list[float],
    kinds: dict[str, int],
) -> dict[str, Any]:
    def summary(values: list[float]) -> dict[str, Any]:
        return {
            "count": len(values),
            "p50_s": round(percentile(values, 0.5), 3),
            "p99_s": round(percentile(values, 0.99), 3),
            "max_s": round(values[-1], 3),
            "seconds": [round(v, 3) for v in values],
        }

    return {
        "vendor": "zoho_desk",
        "db": db,
        "interval_s": 60.0,
        "latency_s": latency,
        "window_s": window,
        "local_to_vendor": summary(pushed),
        "zoho_to_mirror": summary(pulled),
        "runs_by_kind": kinds,
    }


def plan(quick: bool) -> dict[str, float]:
    return (
        {"edits": 3, "remote_edits": 3, "window": 2.0, "burst": 100}
        if quick
        else {"edits": 40, "remote_edits": 20, "window": 20.0, "burst": 1000}
    )


async def run_wake_async(
    quick: bool, dbs: Sequence[str] = DATABASES, latency: float = LATENCY_S
) -> list[dict[str, Any]]:
    """One session per database, one after the other (each has the machine to itself)."""
    settings = plan(quick)
    rows = []
    for db in dbs:
        row = await wake_benchmark(
            db,
            edits=int(settings["edits"]),
            remote_edits=int(settings["remote_edits"]),
            window=settings["window"],
            latency=latency,
        )
        row["burst"] = await burst_benchmark(db, edits=int(settings["burst"]), latency=latency)
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        "Latency at the default settings with wake-ups and webhooks (zoho_desk, L = 50 ms)",
        "db|local n|local p50 s|local p99 s|zoho n|zoho p50 s|zoho p99 s|runs by kind"
        "|burst n|burst s|push s|bound s|push eff.|burst runs",
        [
            (
                r["db"],
                r["local_to_vendor"]["count"],
                r["local_to_vendor"]["p50_s"],
                r["local_to_vendor"]["p99_s"],
                r["zoho_to_mirror"]["count"],
                r["zoho_to_mirror"]["p50_s"],
                r["zoho_to_mirror"]["p99_s"],
                " ".join(f"{k}={v}" for k, v in sorted(r["runs_by_kind"].items())),
                *_burst_cells(r.get("burst")),
            )
            for r in rows
        ],
    )


def _burst_cells(burst: dict[str, Any] | None) -> tuple[Any, ...]:
    if burst is None:
        return ("-",) * 5
    kinds = " ".join(f"{k}={v}" for k, v in sorted(burst["runs_by_kind"].items()))
    return (
        burst["edits"],
        burst["achieved_s"],
        burst["push_s"],
        burst["bound_s"],
        burst["push_efficiency"],
        kinds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.latency_wake")
    parser.add_argument("--quick", action="store_true", help="3 edits each way")
    parser.add_argument("--db", choices=DATABASES, action="append", help="default: both")
    args = parser.parse_args(argv)
    rows = asyncio.run(run_wake_async(args.quick, args.db or DATABASES))
    print(render(rows))
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
