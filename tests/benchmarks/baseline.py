"""A baseline a user might write instead, side by side with ticketsync (issue 11 item 6).

The baseline (``NaiveZohoSync``) is the script one writes in an afternoon against Zoho
Desk's API with aiohttp: every run fetches an OAuth token, lists every ticket at the vendor
(``GET /api/v1/tickets``, 100 a page), scans every linked ticket of the mirror, pushes
each title that differs from its snapshot of the previous run (one ``PATCH`` at a time)
and pulls each title that differs at the vendor; then it saves the snapshot. It syncs the
title only, which flatters it: a field more costs it no request, but CPU and SQL.

One emulator (in a process of its own) is seeded with M tickets that ticketsync imports;
both then run on that mirror with the emulator answering every request after L seconds:

- idle: nothing changed; the requests the emulator logged and the wall time of each;
- push: another program edits N tickets (plain SQL); ticketsync pushes them in one
  ``run_connections`` (http.concurrency C), then the baseline's run pushes them again
  from its own, older snapshot (the vendor answers both alike, the values being equal).

``python -m tests.benchmarks.baseline [--quick]`` prints the table and the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from sync.config import Config
from sync.db import Mirror, migrate
from sync.runner import Selection, run_connections
from tests.benchmarks.support import BENCHES, CONNECTION, EmulatorProcess, config_for, table

VENDOR = "zoho_desk"
PAGE = 100

_SCAN = (
    "SELECT l.external_id, t.title FROM tickets t "
    "JOIN ticket_links l ON l.ticket_id = t.id WHERE l.connection = ?"
)


class NaiveZohoSync:
    """The baseline: sequential requests, a full re-listing and a full mirror scan per run."""

    def __init__(self, connection: dict[str, Any], database: Path) -> None:
        self.base_url = connection["base_url"]
        self.credentials = connection["credentials"]
        self.database = database
        self.snapshot: dict[str, str] = {}

    def remember(self) -> None:
        """Take the snapshot as it stands (the state after a first run)."""
        with sqlite3.connect(self.database) as db:
            self.snapshot = dict(db.execute(_SCAN, (CONNECTION,)).fetchall())

    async def run(self) -> dict[str, Any]:
        """One run: the tickets it pushed and pulled, and the seconds after the listing."""
        async with aiohttp.ClientSession(raise_for_status=True) as http:
            headers = {
                "Authorization": f"Zoho-oauthtoken {await self._token(http)}",
                "orgId": str(self.credentials["org_id"]),
            }
            remote = await self._list(http, headers)
            listed = time.perf_counter()
            db = sqlite3.connect(self.database)
            try:
                local = dict(db.execute(_SCAN, (CONNECTION,)).fetchall())
                pushed, pulled = await self._reconcile(http, headers, db, local, remote)
            finally:
                db.close()
        self.snapshot = local
        return {
            "pushed": pushed,
            "pulled": pulled,
            "after_listing_s": round(time.perf_counter() - listed, 3),
        }

    async def _reconcile(
        self,
        http: aiohttp.ClientSession,
        headers: dict[str, str],
        db: sqlite3.Connection,
        local: dict[str, str],
        remote: dict[str, str],
    ) -> tuple[int, int]:
        pushed = pulled = 0
        for ticket, title in local.items():
            if title != self.snapshot.get(ticket):  # changed here since the last run: push
                url = f"{self.base_url}/api/v1/tickets/{ticket}"
                async with http.patch(url, json={"subject": title}, headers=headers):
                    pushed += 1
            elif ticket in remote and remote[ticket] != title:  # changed there: pull
                with db:
                    db.execute(
                        "UPDATE tickets SET title = ? WHERE id = "
                        "(SELECT ticket_id FROM ticket_links WHERE external_id = ?)",
                        (remote[ticket], ticket),
                    )
                local[ticket] = remote[ticket]
                pulled += 1
        return pushed, pulled

    async def _token(self, http: aiohttp.ClientSession) -> str:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.credentials["client_id"],
            "client_secret": self.credentials["client_secret"],
            "refresh_token": self.credentials["refresh_token"],
        }
        url = f"{self.credentials['accounts_url']}/oauth/v2/token"
        async with http.post(url, data=form) as reply:
            return str((await reply.json())["access_token"])

    async def _list(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> dict[str, str]:
        found: dict[str, str] = {}
        while True:
            query = {"from": str(len(found)), "limit": str(PAGE)}
            url = f"{self.base_url}/api/v1/tickets"
            async with http.get(url, params=query, headers=headers) as reply:
                if reply.status == 204:
                    return found
                page = (await reply.json())["data"]
            found.update((str(t["id"]), t["subject"]) for t in page)
            if len(page) < PAGE:
                return found


async def baseline_benchmark(
    *, tickets: int, edits: int, latency: float, concurrency: int = 8
) -> dict[str, Any]:
    """The idle and the push comparison on one ``tickets``-ticket mirror."""
    bench = BENCHES[VENDOR]
    local = bench.emulator()
    bench.seed(local, tickets)
    emulator = EmulatorProcess(local)
    await emulator.start()
    mirror: Mirror | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="tsbench-baseline-") as tmp:
            directory = Path(tmp)
            config = config_for(emulator, directory, concurrency=concurrency)
            mirror = Mirror(config.database.url)
            migrate(mirror)
            (imported,) = await run_connections(mirror, config, Selection([CONNECTION]))
            if getattr(imported, "outcome", None) != "ok":
                raise RuntimeError(f"the import failed: {imported}")
            assert mirror.sqlite_path is not None
            database = Path(mirror.sqlite_path)
            block = emulator.demo_connection()
            assert block is not None
            naive = NaiveZohoSync(block, database)
            naive.remember()
            emulator.configure(latency=latency)

            runs: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                "ticketsync": partial(_ticketsync_run, mirror, config),
                "naive": naive.run,
            }
            idle = [await _measured(emulator, who, run) for who, run in runs.items()]
            with sqlite3.connect(database) as db:
                rows = db.execute("SELECT id FROM tickets ORDER BY id LIMIT ?", (edits,))
                ids = [ticket for (ticket,) in rows]
                db.execute(bench.local_edit.format(ids=",".join(map(str, ids))))
            push = [await _measured(emulator, who, run) for who, run in runs.items()]
    finally:
        if mirror is not None:
            mirror.dispose()
        await emulator.stop()
    return {
        "vendor": VENDOR,
        "tickets": tickets,
        "edits": edits,
        "latency_s": latency,
        "concurrency": concurrency,
        "idle": _compare(idle),
        "push": _compare(push),
    }


async def _ticketsync_run(mirror: Mirror, config: Config) -> dict[str, Any]:
    (result,) = await run_connections(mirror, config, Selection([CONNECTION]))
    counts = getattr(result, "counts", None)
    return {"pushed": getattr(counts, "pushed", None), "pulled": getattr(counts, "pulled", None)}


async def _measured(
    emulator: EmulatorProcess, who: str, run: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    mark = len(emulator.log)
    started = time.perf_counter()
    counts = await run()
    seconds = time.perf_counter() - started
    return {
        "who": who,
        "seconds": round(seconds, 3),
        "requests": len(emulator.log) - mark,
        **counts,
    }


def _compare(pair: list[dict[str, Any]]) -> dict[str, Any]:
    ours, naive = pair
    return {
        "ticketsync": ours,
        "naive": naive,
        "time_ratio": _ratio(naive["seconds"], ours["seconds"]),
        "request_ratio": _ratio(naive["requests"], ours["requests"]),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 1) if b else None


def run_baseline(quick: bool) -> dict[str, Any]:
    """The comparison at the full or the quick size, in an event loop of its own."""
    if quick:
        return asyncio.run(baseline_benchmark(tickets=1_000, edits=50, latency=0.02))
    return asyncio.run(baseline_benchmark(tickets=10_000, edits=200, latency=0.05))


def render(result: dict[str, Any]) -> str:
    """The result as a table."""
    # Imported here: the benchmarks' entry point imports this module.

    rows = []
    for kind in ("idle", "push"):
        compared = result[kind]
        ours, naive = compared["ticketsync"], compared["naive"]
        rows.append(
            (
                kind,
                ours["requests"],
                naive["requests"],
                compared["request_ratio"],
                ours["seconds"],
                naive["seconds"],
                compared["time_ratio"],
                naive["after_listing_s"],
            )
        )
    return table(
        f"Baseline: a naive sequential script vs ticketsync ({result['vendor']}, "
        f"{result['tickets']} tickets, {result['edits']} edits, L {result['latency_s']}s, "
        f"C {result['concurrency']})",
        "run|ts requests|naive requests|x|ts s|naive s|x|naive after listing s",
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.baseline")
    parser.add_argument("--quick", action="store_true", help="1,000 tickets, 50 edits")
    args = parser.parse_args(argv)
    result = run_baseline(args.quick)
    print(render(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
