"""Backfill, idle cost and cost that follows changes (issue 11 items 2-4), per mirror size.

The emulator lives in the benchmark's process, seeded through its Python API; the engine
runs in a child process (``python -m tests.benchmarks.mirror``) so that each size's peak
RSS is its own and the emulator's tickets are not counted in it. The parent drives the
child by commands on stdin, one JSON line back for each:

- ``import``: the first import of every seeded ticket (wall time, requests, peak RSS);
- ``run LABEL``: one more run, measured (``idle`` right after the import; ``local`` after
  another program edited tickets with ``local`` first; ``remote`` after an agent's edits,
  which the parent makes in the emulator);
- ``local IDS``: the edit of those mirror tickets by another program (plain SQL).

``isolated=False`` runs the same session in this process (the smoke test; RSS is then
shared and reported as such).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sync.config import parse_config
from sync.db import Mirror, migrate
from sync.runner import Selection, run_connections
from tests.benchmarks.support import (
    BENCHES,
    CONNECTION,
    RequestCounter,
    SqlCounter,
    config_data,
    database_url,
    edit_locally,
    peak_rss_mb,
)

CHANGED = 100
ROOT = Path(__file__).resolve().parents[2]


class MirrorSession:
    """The engine side: one mirror, one connection, measured runs."""

    def __init__(self, data: dict[str, Any], directory: Path, local_edit: str) -> None:
        self.config = parse_config(data, base_dir=directory)
        self.mirror = Mirror(self.config.database.url)
        migrate(self.mirror)
        self.local_edit = local_edit
        self.sql = SqlCounter(self.mirror)
        self.http = RequestCounter()

    async def measured_run(self, label: str) -> dict[str, Any]:
        self.sql.reset()
        self.http.reset()
        started = time.perf_counter()
        selection = Selection([CONNECTION], http_hook=self.http.hook)
        (result,) = await run_connections(self.mirror, self.config, selection)
        elapsed = time.perf_counter() - started
        counts = getattr(result, "counts", None)
        return {
            "label": label,
            "outcome": getattr(result, "outcome", str(result)),
            "seconds": round(elapsed, 3),
            "pulled": getattr(counts, "pulled", None),
            "pushed": getattr(counts, "pushed", None),
            "http_requests": self.http.count,
            "requests_by_route": dict(self.http.by_path),
            **self.sql.snapshot(),
        }

    async def first_import(self) -> dict[str, Any]:
        before = peak_rss_mb()
        row = await self.measured_run("import")
        with self.mirror.read() as session:
            tickets = session.execute(_count_tickets()).scalar_one()
        return row | {"tickets": tickets, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}

    def edit_locally(self, ids: list[int]) -> None:
        edit_locally(self.mirror, self.local_edit, ids)

    def close(self) -> None:
        self.sql.close()
        self.mirror.dispose()

    async def command(self, line: str) -> dict[str, Any]:
        verb, _, rest = line.strip().partition(" ")
        if verb == "import":
            return await self.first_import()
        if verb == "run":
            return await self.measured_run(rest or "run")
        if verb == "local":
            self.edit_locally(json.loads(rest))
            return {"ok": True}
        raise ValueError(f"unknown command {verb!r}")


def _count_tickets() -> Any:
    from sqlalchemy import func, select

    from sync.db.models import Ticket

    return select(func.count()).select_from(Ticket)


def spread(count: int, total: int) -> list[int]:
    """``count`` positions in ``range(total)``, evenly spread (all of them if fewer)."""
    step = max(1, total // count)
    return list(range(0, total, step))[:count]


class _Child:
    """A ``MirrorSession`` in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the benchmark child ended early (exit {await self.proc.wait()})")
        return json.loads(reply)

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()


async def mirror_benchmark(
    vendor: str,
    size: int,
    *,
    isolated: bool = True,
    latency: float = 0.0,
    concurrency: int = 8,
    db: str = "sqlite",
) -> dict[str, Any]:
    """Seed ``size`` tickets, import them, then the idle, local and remote runs."""
    bench = BENCHES[vendor]
    emulator = bench.emulator()
    await emulator.start()
    with (
        tempfile.TemporaryDirectory(prefix="tsbench-mirror-") as tmp,
        database_url(db, Path(tmp)) as url,
    ):
        directory = Path(tmp)
        try:
            seeded = time.perf_counter()
            external_ids = bench.seed(emulator, size)
            seed_s = time.perf_counter() - seeded
            emulator.configure(latency=latency)
            data = config_data(
                emulator, directory, url=url, concurrency=concurrency, extra=bench.extra
            )
            session: MirrorSession | _Child
            if isolated:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.benchmarks.mirror",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                session = _Child(proc)
                spec = {"data": data, "directory": str(directory), "local_edit": bench.local_edit}
                await session.command(json.dumps(spec))
            else:
                session = MirrorSession(data, directory, bench.local_edit)
            try:
                result = await _scenario(session, bench, emulator, external_ids, size)
            finally:
                if isinstance(session, _Child):
                    await session.close()
                else:
                    session.close()
        finally:
            await emulator.stop()
    page = 100
    result["import"] |= {
        "min_requests": math.ceil(size / page),
        "page_size": page,
        "tickets_per_s": round(size / result["import"]["seconds"], 1),
        "seed_s": round(seed_s, 2),
    }
    return {"vendor": vendor, "db": db, "size": size, "isolated": isolated, **result}


async def _scenario(
    session: MirrorSession | _Child, bench: Any, emulator: Any, external_ids: list[str], size: int
) -> dict[str, Any]:
    imported = await session.command("import")
    idle = await session.command("run idle")
    await session.command("local " + json.dumps([i + 1 for i in spread(CHANGED, size)]))
    local = await session.command("run local")
    # The pushes came back from the vendor as changes; let one run absorb them so the
    # remote run below sees only the agent's edits.
    await session.command("run settle")
    for index in spread(CHANGED, size):
        emulator.edit(external_ids[index], **bench.remote_edit(index))
    remote = await session.command("run remote")
    return {"import": imported, "idle": idle, "local": local, "remote": remote}


async def _child_main() -> None:
    """Read the spec line, then commands; answer each with one JSON line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = json.loads(await reader.readline())
    session = MirrorSession(spec["data"], Path(spec["directory"]), spec["local_edit"])
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := (await reader.readline()).decode():
            print(json.dumps(await session.command(line)), flush=True)
    finally:
        session.close()


if __name__ == "__main__":
    asyncio.run(_child_main())
