"""Push throughput against its physical bound (issue 11 item 1, docs/architecture.md §7.15).

One emulator (in a process of its own: the vendor's CPU is not ours) and one mirror per
vendor: N tickets are seeded and imported with no latency,
then, for each of a latency-bound run (no rate limit) and a rate-bound run (R below C/L),
another program edits all N tickets locally and one run pushes them with the emulator
answering every request after L seconds (an unmeasured run then pulls our own writes
back, so that the next measured run only pushes). The bound counts the requests the emulator
logged during the run (a push may take more than one: Kapture reads before it updates):
bound = max(requests·L/C, requests/R); efficiency = bound / achieved.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sync.db import Mirror, migrate
from sync.db.models import Ticket
from sync.runner import Selection, build_adapter, run_connections
from tests.benchmarks.support import (
    BENCHES,
    CONNECTION,
    EmulatorProcess,
    VendorBench,
    config_for,
    database_url,
    edit_locally,
    log_requests,
)

TARGET = 0.85
#: A short look-back, so that the unmeasured run after a push absorbs our own writes and the
#: next measured run re-reads none of them (with the default 300 s it would re-read all N).
LOOKBACK = 1.0


async def push_benchmark(
    vendor: str,
    *,
    edits: int,
    latency: float,
    concurrency: int,
    rate: float | None = None,
    settle: float = LOOKBACK,
    db: str = "sqlite",
) -> list[dict[str, Any]]:
    """The latency-bound and the rate-bound row for ``vendor``.

    ``settle``: seconds to wait before the unmeasured run after each push (less than the
    look-back lets the next measured run re-read some of our writes; the smoke test's way).
    """
    bench = BENCHES[vendor]
    rate = rate if rate is not None else concurrency / latency / 2
    local = bench.emulator()
    external_ids = bench.seed(local, edits)
    emulator = EmulatorProcess(local)
    await emulator.start()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="tsbench-push-") as tmp,
        database_url(db, Path(tmp)) as url,
    ):
        directory = Path(tmp)
        mirror: Mirror | None = None
        try:
            config = config_for(
                emulator,
                directory,
                url=url,
                concurrency=concurrency,
                extra=bench.extra,
                lookback=LOOKBACK,
            )
            mirror = Mirror(config.database.url)
            migrate(mirror)
            (imported,) = await run_connections(mirror, config, Selection([CONNECTION]))
            if getattr(imported, "outcome", None) != "ok":
                raise RuntimeError(f"{vendor}: the import failed: {imported}")
            for kind, limit in (("latency-bound", None), ("rate-bound", rate)):
                config = config_for(
                    emulator,
                    directory,
                    url=url,
                    concurrency=concurrency,
                    rate=limit,
                    extra=bench.extra,
                    lookback=LOOKBACK,
                )
                rows.append(
                    await _one_push(bench.local_edit, emulator, mirror, config, edits, latency)
                    | {
                        "vendor": vendor,
                        "db": db,
                        "kind": kind,
                        "concurrency": concurrency,
                        "rate": limit,
                    }
                )
                # Our pushes come back as changes at the vendor; one unmeasured run pulls
                # them (past the look-back), so the next measured run pushes and nothing else.
                await asyncio.sleep(settle)
                await run_connections(mirror, config, Selection([CONNECTION]))
            unlimited = config_for(
                emulator, directory, url=url, concurrency=concurrency, extra=bench.extra
            )
            floor = await _floor(bench, emulator, unlimited, external_ids, latency)
            for row in rows:
                _add_floor(row, floor)
        finally:
            emulator.configure(latency=0)
            await emulator.stop()
            if mirror is not None:
                mirror.dispose()
    return rows


async def _floor(
    bench: VendorBench, emulator: EmulatorProcess, config: Any, ids: list[str], latency: float
) -> dict[str, Any]:
    """The same kind of adapter calls, at the same concurrency and latency, with no engine.

    What the HTTP path itself costs on this machine (client, loopback, the emulator's own
    handling on top of its ``latency`` sleep): seconds per request at full concurrency.
    Each ticket gets the calls a push makes (a read first where the adapter needs one, then
    the update), ``concurrency`` tickets at a time.
    """
    connection = config.connections[CONNECTION]
    adapter = build_adapter(connection, None)
    sample = ids[: max(connection.http.concurrency * 25, min(len(ids), 200))]
    queue = list(enumerate(sample))

    async def worker() -> None:
        while queue:
            index, external_id = queue.pop()
            if adapter.capabilities.fetch_before_update:
                await adapter.get(external_id)
            await adapter.update(external_id, bench.update(index))

    try:
        await adapter.get(sample[0])  # sign in (OAuth) before the clock starts
        emulator.configure(latency=latency)
        mark = len(emulator.log)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connection.http.concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        emulator.configure(latency=0)
        await adapter.aclose()
    requests = sum(log_requests(emulator, mark).values())
    return {"tickets": len(sample), "requests": requests, "seconds_per_request": elapsed / requests}


def _add_floor(row: dict[str, Any], floor: dict[str, Any]) -> None:
    """The row's floor (its requests at the bare HTTP path's pace, or its rate bound) and
    the engine's efficiency against it."""
    paced = row["requests"] * floor["seconds_per_request"]
    rate_bound = row["requests"] / row["rate"] if row["rate"] else 0.0
    row["floor"] = floor
    row["floor_s"] = round(max(paced, rate_bound), 3)
    row["engine_efficiency"] = round(row["floor_s"] / row["achieved_s"], 3)


async def _one_push(
    local_edit: str, emulator: Any, mirror: Mirror, config: Any, edits: int, latency: float
) -> dict[str, Any]:
    with mirror.read() as session:
        ids = list(session.scalars(select(Ticket.id).order_by(Ticket.id).limit(edits)))
    edit_locally(mirror, local_edit, ids)
    http = config.connections[CONNECTION].http
    emulator.configure(latency=latency)
    mark = len(emulator.log)
    started = time.perf_counter()
    try:
        (result,) = await run_connections(mirror, config, Selection([CONNECTION]))
    finally:
        emulator.configure(latency=0)
    achieved = time.perf_counter() - started
    requests = log_requests(emulator, mark)
    total = sum(requests.values())
    bound = max(total * latency / http.concurrency, total / http.rate if http.rate else 0.0)
    pushed = getattr(getattr(result, "counts", None), "pushed", 0)
    return {
        "edits": edits,
        "pushed": pushed,
        "outcome": getattr(result, "outcome", str(result)),
        "latency_s": latency,
        "requests": total,
        "requests_per_push": round(total / pushed, 3) if pushed else None,
        "requests_by_route": dict(requests),
        "achieved_s": round(achieved, 3),
        "bound_s": round(bound, 3),
        "efficiency": round(bound / achieved, 3) if achieved else None,
        "target": TARGET,
    }
