"""``python -m tests.benchmarks [--quick] [--only NAME] [--vendor V] [--db D] [--out FILE]``.

Runs the selected benchmarks (``push``, ``pull``, ``idle``, ``changes``, ``latency``,
``wake``, ``baseline``, ``scaleout``, ``comments``; default all, in under ten minutes on two
cores; ``burst``, the burst-seeded idle and change costs of issue 19, only with
``--only burst``), prints a table for each and writes every number to one JSON file (default
``tests/benchmarks/results/<UTC timestamp>.json``, ignored by git). ``pull``, ``idle`` and
``changes`` share the mirrors they build: each mirror size is seeded, imported and then
measured idle and with 100 changed tickets, in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.benchmarks import burst
from tests.benchmarks.baseline import baseline_benchmark
from tests.benchmarks.baseline import render as render_baseline
from tests.benchmarks.comments import COMMENT_VENDORS, comments_benchmark
from tests.benchmarks.comments import render as render_comments
from tests.benchmarks.latency import render as render_latency
from tests.benchmarks.latency import run_latency_async
from tests.benchmarks.latency_wake import render as render_wake
from tests.benchmarks.latency_wake import run_wake_async
from tests.benchmarks.mirror import CHANGED, mirror_benchmark
from tests.benchmarks.push import TARGET, push_benchmark
from tests.benchmarks.scaleout import render as render_scaleout
from tests.benchmarks.scaleout import run_scaleout_async
from tests.benchmarks.support import DATABASES, VENDORS, table

#: The engine's own benchmarks (one table each), then the daemon's latency, the naive
#: baseline and scale-out (PostgreSQL only).
CORE = ("push", "pull", "idle", "changes")
NAMES = (*CORE, "latency", "wake", "baseline", "scaleout", "comments", "burst")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    """Sizes and settings of one invocation.

    Every vendor runs every measurement on SQLite; PostgreSQL runs them for ``pg_vendors``
    (the database's share of the work is the engine's, the same for every vendor). The
    mirror benchmarks reach full scale (``pull_sizes``, ``change_sizes``) for the first of
    ``full_scale``'s vendors and databases; the other targets measure ``small_sizes``, so
    the whole matrix stays within ten minutes on two cores.
    """

    edits: int = 1000
    latency: float = 0.05
    concurrency: int = 8
    pull_sizes: tuple[int, ...] = (10_000, 100_000)
    change_sizes: tuple[int, int] = (1_000, 100_000)
    small_sizes: tuple[int, int] = (1_000, 10_000)
    full_scale: tuple[str, str] = ("zoho_desk", "sqlite")
    pg_vendors: tuple[str, ...] = ("zoho_desk",)
    dbs: tuple[str, ...] = ("sqlite", "postgresql")
    isolated: bool = True
    #: latency, baseline and scaleout at their quick sizes.
    quick_extras: bool = False
    #: push: the wait before the run that absorbs our own writes (see ``push_benchmark``).
    settle: float = 1.0
    #: burst: mirror sizes seeded as one burst (``tests.benchmarks.burst``).
    burst_sizes: tuple[int, ...] = (1_000, 20_000)
    #: comments: open linked tickets per vendor, and comments inserted for the fan-out.
    comment_tickets: int = 1000
    comments: int = 100

    @classmethod
    def quick(cls) -> Plan:
        # The pull measures the two mirrors the changes benchmark builds anyway.
        return cls(
            edits=200,
            pull_sizes=(1_000, 10_000),
            change_sizes=(1_000, 10_000),
            small_sizes=(200, 1_000),
            quick_extras=True,
            burst_sizes=(1_000, 5_000),
            comment_tickets=200,
        )

    def targets(self, vendors: Sequence[str]) -> list[tuple[str, str]]:
        """(vendor, database) pairs to measure."""
        return [
            (v, db) for v in vendors for db in self.dbs if db == "sqlite" or v in self.pg_vendors
        ]

    def mirror_sizes(self, names: Sequence[str], target: tuple[str, str]) -> list[int]:
        if target != self.full_scale:
            return list(self.small_sizes) if set(names) & {"pull", "idle", "changes"} else []
        sizes: set[int] = set()
        if "pull" in names:
            sizes.update(self.pull_sizes)
        if "changes" in names:
            sizes.update(self.change_sizes)
        if "idle" in names:
            sizes.add(max(self.pull_sizes + self.change_sizes))
        return sorted(sizes)


async def run_plan(
    plan: Plan,
    names: Sequence[str],
    vendors: Sequence[str],
    mirror_vendors: Sequence[str] | None = None,
    out: Any = print,
) -> dict[str, Any]:
    """Run the benchmarks; print their tables through ``out``; return the JSON document.

    ``vendors`` get the push benchmark, ``mirror_vendors`` (default: the same) the pull,
    idle and changes ones, each on the databases ``plan.targets`` names.
    """
    results: dict[str, Any] = {"plan": plan.__dict__, "benchmarks": list(names)}
    if "push" in names:
        rows = []
        for vendor, db in plan.targets(vendors):
            rows += await push_benchmark(
                vendor,
                edits=plan.edits,
                latency=plan.latency,
                concurrency=plan.concurrency,
                rate=0.75 * plan.concurrency / plan.latency,
                settle=plan.settle,
                db=db,
            )
        results["push"] = rows
        out(push_table(rows))
    # The latency sessions mostly wait for their daemons' intervals: they run meanwhile.
    latency = (
        asyncio.ensure_future(run_latency_async(plan.quick_extras, vendors))
        if "latency" in names
        else None
    )
    mirrors = []
    for target in plan.targets(vendors if mirror_vendors is None else mirror_vendors):
        for size in plan.mirror_sizes(names, target):
            vendor, db = target
            mirrors.append(await mirror_benchmark(vendor, size, isolated=plan.isolated, db=db))
    if "pull" in names:
        results["pull"] = [m for m in mirrors if _is_pull(plan, m)]
        out(pull_table(results["pull"]))
    if "idle" in names:
        results["idle"] = [m["idle"] | _key(m) for m in _largest(mirrors)]
        out(idle_table(results["idle"]))
    if "changes" in names:
        results["changes"] = changes_rows(mirrors)
        out(changes_table(results["changes"]))
    if latency is not None:
        results["latency"] = await latency
        out(render_latency(results["latency"]))
    if "wake" in names:
        results["wake"] = await run_wake_async(plan.quick_extras, plan.dbs)
        out(render_wake(results["wake"]))
    if "baseline" in names:
        tickets, edits, wait = (1_000, 50, 0.02) if plan.quick_extras else (10_000, 200, 0.05)
        results["baseline"] = await baseline_benchmark(tickets=tickets, edits=edits, latency=wait)
        out(render_baseline(results["baseline"]))
    if "comments" in names:
        targets = [(v, db) for v, db in plan.targets(vendors) if v in COMMENT_VENDORS]
        results["comments"] = [
            await comments_benchmark(
                vendor, tickets=plan.comment_tickets, comments=plan.comments, db=db
            )
            for vendor, db in targets
        ]
        out(render_comments(results["comments"]))
    if "scaleout" in names and "postgresql" in plan.dbs:
        results["scaleout"] = await run_scaleout_async(plan.quick_extras)
        out(render_scaleout(results["scaleout"]))
    if "burst" in names:
        covered = [v for v in vendors if v in burst.MINIMUM]
        results["burst"] = await burst.run_burst(covered, plan.burst_sizes, plan.dbs[0])
        out(
            table(
                "Burst-seeded: idle runs and 100 changes",
                burst.COLUMNS,
                burst.rows(results["burst"]),
            )
        )
    return results


def _is_pull(plan: Plan, mirror: dict[str, Any]) -> bool:
    full = (mirror["vendor"], mirror["db"]) == plan.full_scale
    return not full or mirror["size"] in plan.pull_sizes


def _targets(mirrors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((m["vendor"], m["db"]) for m in mirrors))


def _largest(mirrors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The biggest mirror of each (vendor, database)."""
    return [
        max((m for m in mirrors if (m["vendor"], m["db"]) == t), key=lambda m: m["size"])
        for t in _targets(mirrors)
    ]


def _key(mirror: dict[str, Any]) -> dict[str, Any]:
    return {"vendor": mirror["vendor"], "db": mirror["db"], "size": mirror["size"]}


def changes_rows(mirrors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (vendor, database): the smallest and the largest mirror's changed-ticket runs."""
    rows = []
    for vendor, db in _targets(mirrors):
        by_size = {m["size"]: m for m in mirrors if (m["vendor"], m["db"]) == (vendor, db)}
        if len(by_size) < 2:
            continue
        small, large = min(by_size), max(by_size)
        for kind in ("local", "remote"):
            a, b = by_size[small][kind], by_size[large][kind]
            rows.append(
                {
                    "vendor": vendor,
                    "db": db,
                    "kind": kind,
                    "changed": CHANGED,
                    "small": small,
                    "large": large,
                    "small_s": a["seconds"],
                    "large_s": b["seconds"],
                    "time_ratio": _ratio(b["seconds"], a["seconds"]),
                    "small_sql": a["sql_statements"],
                    "large_sql": b["sql_statements"],
                    "sql_ratio": _ratio(b["sql_statements"], a["sql_statements"]),
                    "small_requests": a["http_requests"],
                    "large_requests": b["http_requests"],
                    "small_run": a,
                    "large_run": b,
                }
            )
    return rows


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


# -- tables ------------------------------------------------------------------------------


def push_table(rows: list[dict[str, Any]]) -> str:
    return table(
        f"Push throughput (target efficiency >= {TARGET})",
        "vendor|db|kind|N|L s|C|R/s|req|req/push|bound s|achieved s|efficiency|floor s|vs floor",
        [
            (
                r["vendor"],
                r["db"],
                r["kind"],
                r["edits"],
                r["latency_s"],
                r["concurrency"],
                r["rate"],
                r["requests"],
                r["requests_per_push"],
                r["bound_s"],
                r["achieved_s"],
                r["efficiency"],
                r.get("floor_s"),
                r.get("engine_efficiency"),
            )
            for r in rows
        ],
    )


def pull_table(rows: list[dict[str, Any]]) -> str:
    return table(
        "Pull / backfill (first import; each size in its own process)",
        "vendor|db|tickets|wall s|tickets/s|requests|minimum|SQL stmts|RSS before MB|peak RSS MB",
        [
            (
                m["vendor"],
                m["db"],
                m["size"],
                m["import"]["seconds"],
                m["import"]["tickets_per_s"],
                m["import"]["http_requests"],
                m["import"]["min_requests"],
                m["import"]["sql_statements"],
                m["import"]["rss_before_mb"],
                m["import"]["peak_rss_mb"],
            )
            for m in rows
        ],
    )


def idle_table(rows: list[dict[str, Any]]) -> str:
    return table(
        "Idle run (nothing changed; writes: data tables / all incl. run bookkeeping)",
        "vendor|db|mirror|wall s|requests|SQL stmts|data writes|all writes",
        [
            (
                r["vendor"],
                r["db"],
                r["size"],
                r["seconds"],
                r["http_requests"],
                r["sql_statements"],
                r["sql_data_writes"],
                r["sql_writes"],
            )
            for r in rows
        ],
    )


def changes_table(rows: list[dict[str, Any]]) -> str:
    return table(
        f"Cost follows changes ({CHANGED} changed tickets; ratio = large / small)",
        "vendor|db|changes|small|large|small s|large s|time x|small SQL|large SQL|SQL x"
        "|small req|large req",
        [
            (
                r["vendor"],
                r["db"],
                r["kind"],
                r["small"],
                r["large"],
                r["small_s"],
                r["large_s"],
                r["time_ratio"],
                r["small_sql"],
                r["large_sql"],
                r["sql_ratio"],
                r["small_requests"],
                r["large_requests"],
            )
            for r in rows
        ],
    )


# -- the command -------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--only", choices=NAMES, action="append", help="one benchmark (repeat)")
    parser.add_argument("--vendor", choices=VENDORS, action="append", help="vendor(s) (all)")
    parser.add_argument(
        "--db", choices=DATABASES, action="append", help="database(s) (both; see Plan)"
    )
    parser.add_argument("--out", type=Path, help="the JSON file (default: results/<time>.json)")
    parser.add_argument("--edits", type=int, help="push: local edits N")
    parser.add_argument("--latency", type=float, help="push: per-request latency L, seconds")
    parser.add_argument("--concurrency", type=int, help="push: http.concurrency C")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    overrides = {
        k: v
        for k, v in (
            ("edits", args.edits),
            ("latency", args.latency),
            ("concurrency", args.concurrency),
            ("dbs", tuple(args.db) if args.db else None),
        )
        if v is not None
    }
    plan = Plan(**{**plan.__dict__, **overrides})
    names = args.only or [n for n in NAMES if n != "burst"]
    vendors = args.vendor or list(VENDORS)
    started = time.perf_counter()
    results = asyncio.run(run_plan(plan, names, vendors))
    results["machine"] = _machine()
    results["total_s"] = round(time.perf_counter() - started, 1)
    out = args.out or RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\n{results['total_s']} s in all; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
