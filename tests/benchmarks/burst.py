"""Burst-seeded emulators: idle runs after a burst, and changes on burst-seeded mirrors.

Issue 19: the other benchmarks seed tickets a minute apart, so the lookback never holds
more than a handful of them. Here every ticket is modified within about one second (the
emulator's clock ticks a fraction of a millisecond per call while seeding), then:

- ``import`` reads them all, with the emulator's clock past the burst plus a lookback;
- ``idle 1`` and ``idle 2`` are the next two runs with nothing changed, a minute apart:
  each should cost the API minimum (docs/architecture.md §8.2: Zoho Desk one search,
  ProProfs one list call, Sirportly one SPQL query);
- ``changes`` follows 100 edits at the vendor: its vendor requests and SQL statements
  should not depend on the mirror's size (compare the 1k and 20k rows).

The emulator's clock is set, never slept through. The engine runs in this process (the
request counts come from the HTTP hook, the statements from ``SqlCounter``). Kapture is
left out: the cursor rule does not apply to it (§8.2).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.benchmarks.mirror import CHANGED, MirrorSession, spread
from tests.benchmarks.support import BENCHES, config_data, database_url

#: The vendors the cursor rule covers, and the one request an idle run may make.
MINIMUM = {"zoho_desk": 1, "proprofs": 1, "sirportly": 1}
LOOKBACK = 300.0


@dataclass
class BurstClock:
    """The emulator's clock: ticks ``step`` per call while seeding, else stands still."""

    now: datetime
    step: timedelta | None = None

    def __call__(self) -> datetime:
        if self.step is not None:
            self.now += self.step
        return self.now


async def burst_benchmark(vendor: str, size: int, *, db: str = "sqlite") -> dict[str, Any]:
    """Seed ``size`` tickets as one burst; measure the import, two idle runs, 100 changes."""
    bench = BENCHES[vendor]
    emulator = bench.emulator()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    clock = BurstClock(start, step=timedelta(seconds=1) / (4 * size))
    emulator.clock = clock
    await emulator.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="tsbench-burst-") as tmp,
            database_url(db, Path(tmp)) as url,
        ):
            ids = [str(emulator.seed(**bench.remote_ticket(i))[bench.id_key]) for i in range(size)]
            burst_s = (clock.now - start).total_seconds()
            clock.step = None
            data = config_data(emulator, Path(tmp), url=url, lookback=LOOKBACK, extra=bench.extra)
            session = MirrorSession(data, Path(tmp), bench.local_edit)
            try:
                runs = await _runs(session, clock, emulator, bench, ids, start)
            finally:
                session.close()
    finally:
        await emulator.stop()
    return {"vendor": vendor, "db": db, "size": size, "burst_s": round(burst_s, 3), **runs}


async def _runs(
    session: MirrorSession,
    clock: BurstClock,
    emulator: Any,
    bench: Any,
    ids: list[str],
    t0: datetime,
) -> dict[str, Any]:
    clock.now = t0 + timedelta(seconds=LOOKBACK + 100)  # the burst is older than a lookback
    runs = {"import": await session.measured_run("import")}
    for label in ("idle 1", "idle 2"):
        clock.now += timedelta(minutes=1)
        runs[label] = await session.measured_run(label)
    clock.now += timedelta(minutes=1)
    for index in spread(CHANGED, len(ids)):
        emulator.edit(ids[index], **bench.remote_edit(index))
    clock.now += timedelta(seconds=1)
    runs["changes"] = await session.measured_run("changes")
    return runs


def rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    """One table row per vendor and size."""
    out = []
    for r in results:
        imp, idle1, idle2, changes = (r[k] for k in ("import", "idle 1", "idle 2", "changes"))
        out.append(
            [
                r["vendor"],
                r["db"],
                r["size"],
                imp["http_requests"],
                idle1["http_requests"],
                idle2["http_requests"],
                MINIMUM.get(r["vendor"], "-"),
                changes["http_requests"],
                changes["sql_statements"],
                changes["pulled"],
                changes["seconds"],
            ]
        )
    return out


COLUMNS = (
    "vendor | db | mirror | import requests | idle 1 requests | idle 2 requests | API minimum"
    " | 100-change requests | 100-change SQL statements | pulled | 100-change s"
)


async def run_burst(vendors: list[str], sizes: tuple[int, ...], db: str) -> list[dict[str, Any]]:
    results = []
    for vendor in vendors:
        for size in sizes:
            started = time.perf_counter()
            result = await burst_benchmark(vendor, size, db=db)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            results.append(result)
    return results
