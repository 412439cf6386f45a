"""Scale-out: total propagation time of local edits on 1 and on 3 daemons (issue 14 item 7).

Twelve connections (Zoho Desk and Sirportly, alternating), each to an emulator of its own
that answers every request after ``latency`` seconds, and one PostgreSQL mirror (a scratch
schema of ``TICKETSYNC_TEST_PG_URL``, dropped afterwards). For each instance count, real
``ticketsync run`` daemons start, import, and spread the connections (the benchmark waits
until every connection is held and no instance holds two more than another); then
another program edits ``edits`` tickets, spread evenly over the connections, in one
statement, and the clock runs until every emulator shows every edit. Each emulator serves
from a process of its own (``EmulatorProcess``); on a small machine they still share its
cores with the daemons, at the same cost for both instance counts.

``python -m tests.benchmarks.scaleout [--quick]`` prints the table and the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text

from sync.db import Mirror, migrate
from tests.benchmarks.support import (
    BENCHES,
    CONNECTION,
    EmulatorProcess,
    config_data,
    database_url,
    start_daemon,
    stop_daemon,
    until,
)

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get(
    "TICKETSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CONNECTIONS = 12
VENDORS = ("zoho_desk", "sirportly")
INSTANCES = (1, 3)
INTERVAL_S = 0.5
LEASE_S = 10.0


async def run_scaleout_async(quick: bool) -> dict[str, Any]:
    """The result of both instance counts (JSON-able)."""
    edits, latency, concurrency = (120, 0.1, 2) if quick else (600, 0.2, 2)
    runs = [await _one(instances, edits, latency, concurrency) for instances in INSTANCES]
    one, three = (r["propagation_s"] for r in runs)
    return {
        "connections": CONNECTIONS,
        "vendors": list(VENDORS),
        "edits": edits,
        "latency_s": latency,
        "concurrency": concurrency,
        "interval_s": INTERVAL_S,
        "cpus": os.cpu_count(),
        "runs": runs,
        "ratio_1_over_3": round(one / three, 2) if three else None,
    }


def run_scaleout(quick: bool) -> dict[str, Any]:
    """``run_scaleout_async`` in an event loop of its own (the emulators serve from it)."""
    return asyncio.run(run_scaleout_async(quick))


async def _one(instances: int, edits: int, latency: float, concurrency: int) -> dict[str, Any]:
    per_connection = edits // CONNECTIONS
    emulators = []
    for i in range(CONNECTIONS):
        bench = BENCHES[VENDORS[i % len(VENDORS)]]
        local = bench.emulator()
        bench.seed(local, per_connection)
        emulators.append(EmulatorProcess(local))
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        for emulator in emulators:
            await emulator.start()
        with (
            tempfile.TemporaryDirectory(prefix="tsbench-scaleout-") as tmp,
            database_url("postgresql", Path(tmp)) as url,
        ):
            engine = create_engine(url)
            try:
                config = _config(emulators, Path(tmp), url, concurrency)
                mirror = Mirror(url)
                migrate(mirror)
                mirror.dispose()
                logs = [Path(tmp) / f"daemon-{i}.log" for i in range(instances)]
                daemons = [start_daemon(config, log) for log in logs]
                await until(lambda: _imported(engine, per_connection), 120, "the import")
                spread = await until(lambda: _spread(engine, instances), 60, "the spread")
                for emulator in emulators:
                    emulator.configure(latency=latency)
                started = time.monotonic()
                _edit(engine, emulators)
                await until(lambda: _arrived(emulators, per_connection), 600, "every edit")
                took = time.monotonic() - started
            finally:
                for proc in daemons:
                    stop_daemon(proc)
                engine.dispose()
    finally:
        for emulator in emulators:
            await emulator.stop()
    return {
        "instances": instances,
        "edits": per_connection * CONNECTIONS,
        "propagation_s": round(took, 2),
        "edits_per_s": round(per_connection * CONNECTIONS / took, 1),
        "leases_by_instance": sorted(spread.values(), reverse=True),
    }


def _config(emulators: list[EmulatorProcess], directory: Path, url: str, concurrency: int) -> Path:
    connections = {}
    for index, emulator in enumerate(emulators):
        data = config_data(emulator, directory, concurrency=concurrency, lookback=5.0)
        block = data["connections"][CONNECTION]
        block["http"]["total_timeout"] = LEASE_S / 2
        connections[f"c{index:02d}"] = block
    sync = {**data["sync"], "interval": INTERVAL_S, "lease_seconds": LEASE_S}
    config = {"database": {"url": url}, "sync": sync, "connections": connections}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _imported(engine: Engine, per_connection: int) -> bool:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT connection, count(*) FROM ticket_links GROUP BY 1"))
        counts: dict[str, int] = {str(c): int(n) for c, n in rows.all()}
    return len(counts) == CONNECTIONS and all(n == per_connection for n in counts.values())


def _spread(engine: Engine, instances: int) -> Counter[str] | None:
    """Leases by instance, once every connection is held and the load is even; else None."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT instance FROM sync_leases WHERE expires_at > now()"))
        held = Counter(str(instance) for (instance,) in rows)
    even = max(held.values(), default=0) - min(held.values(), default=0) <= 1
    return held if sum(held.values()) == CONNECTIONS and len(held) == instances and even else None


def _edit(engine: Engine, emulators: list[EmulatorProcess]) -> None:
    """Every linked ticket edited locally, one statement per vendor's kind of edit."""
    with engine.begin() as conn:
        for vendor in {e.vendor for e in emulators}:
            names = [f"c{i:02d}" for i, e in enumerate(emulators) if e.vendor == vendor]
            ids = conn.execute(
                text("SELECT ticket_id FROM ticket_links WHERE connection = ANY(:names)"),
                {"names": names},
            ).scalars()
            conn.execute(text(BENCHES[vendor].local_edit.format(ids=",".join(map(str, ids)))))


def _arrived(emulators: list[EmulatorProcess], per_connection: int) -> bool:
    return all(
        sum(1 for t in e.ticket_list() if str(t.get("subject", "")).endswith("(edited)"))
        == per_connection
        for e in emulators
    )


def render(result: dict[str, Any]) -> str:
    """The result as a table."""
    lines = [
        f"scale-out: {result['connections']} connections ({', '.join(result['vendors'])}), "
        f"{result['edits']} edits, latency {result['latency_s']}s, concurrency "
        f"{result['concurrency']}, {result['cpus']} CPU(s)",
        f"{'instances':>9}  {'propagation':>11}  {'edits/s':>8}  leases by instance",
    ]
    for run in result["runs"]:
        lines.append(
            f"{run['instances']:>9}  {run['propagation_s']:>10.2f}s  {run['edits_per_s']:>8.1f}  "
            f"{run['leases_by_instance']}"
        )
    lines.append(f"ratio 1-instance / 3-instance: {result['ratio_1_over_3']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.scaleout")
    parser.add_argument("--quick", action="store_true", help="fewer edits, shorter latency")
    args = parser.parse_args(argv)
    result = run_scaleout(args.quick)
    print(render(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
