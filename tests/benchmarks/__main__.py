"""``python -m tests.benchmarks [--quick] [--only NAME] [--vendor V] [--out FILE.json]``.

Runs the selected benchmarks (``push``, ``pull``, ``idle``, ``changes``; default all),
prints a table for each and writes every number to one JSON file (default
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

from tests.benchmarks.mirror import CHANGED, mirror_benchmark
from tests.benchmarks.push import TARGET, push_benchmark
from tests.benchmarks.support import VENDORS

NAMES = ("push", "pull", "idle", "changes")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    """Sizes and settings of one invocation."""

    edits: int = 2000
    latency: float = 0.05
    concurrency: int = 8
    pull_sizes: tuple[int, ...] = (10_000, 100_000)
    change_sizes: tuple[int, int] = (1_000, 100_000)
    isolated: bool = True
    #: push: the wait before the run that absorbs our own writes (see ``push_benchmark``).
    settle: float = 1.0

    @classmethod
    def quick(cls) -> Plan:
        # The pull measures the two mirrors the changes benchmark builds anyway.
        return cls(edits=200, pull_sizes=(1_000, 10_000), change_sizes=(1_000, 10_000))

    def mirror_sizes(self, names: Sequence[str]) -> list[int]:
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
    mirror_vendors: Sequence[str] = ("zoho_desk",),
    out: Any = print,
) -> dict[str, Any]:
    """Run the benchmarks; print their tables through ``out``; return the JSON document.

    ``vendors`` get the push benchmark, ``mirror_vendors`` the pull, idle and changes ones.
    """
    results: dict[str, Any] = {"plan": plan.__dict__, "benchmarks": list(names)}
    if "push" in names:
        rows = []
        for vendor in vendors:
            rows += await push_benchmark(
                vendor,
                edits=plan.edits,
                latency=plan.latency,
                concurrency=plan.concurrency,
                settle=plan.settle,
            )
        results["push"] = rows
        out(push_table(rows))
    sizes = plan.mirror_sizes(names)
    mirrors = []
    for vendor in mirror_vendors if sizes else ():
        for size in sizes:
            mirrors.append(await mirror_benchmark(vendor, size, isolated=plan.isolated))
    if "pull" in names:
        results["pull"] = [m for m in mirrors if m["size"] in plan.pull_sizes]
        out(pull_table(results["pull"]))
    if "idle" in names:
        biggest = max(plan.pull_sizes + plan.change_sizes)
        results["idle"] = [m["idle"] | _key(m) for m in mirrors if m["size"] == biggest]
        out(idle_table(results["idle"]))
    if "changes" in names:
        results["changes"] = changes_rows(mirrors, plan.change_sizes)
        out(changes_table(results["changes"]))
    return results


def _key(mirror: dict[str, Any]) -> dict[str, Any]:
    return {"vendor": mirror["vendor"], "size": mirror["size"]}


def changes_rows(mirrors: list[dict[str, Any]], sizes: tuple[int, int]) -> list[dict[str, Any]]:
    rows = []
    small, large = sizes
    for vendor in dict.fromkeys(m["vendor"] for m in mirrors):
        by_size = {m["size"]: m for m in mirrors if m["vendor"] == vendor}
        if small not in by_size or large not in by_size:
            continue
        for kind in ("local", "remote"):
            a, b = by_size[small][kind], by_size[large][kind]
            rows.append(
                {
                    "vendor": vendor,
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


def table(title: str, columns: str, rows: Sequence[Sequence[Any]]) -> str:
    """A right-aligned text table; ``columns`` names the columns, separated by ``|``."""
    header = columns.split("|")
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [f"\n{title}", "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def push_table(rows: list[dict[str, Any]]) -> str:
    return table(
        f"Push throughput (target efficiency >= {TARGET})",
        "vendor|kind|N|L s|C|R/s|req|req/push|bound s|achieved s|efficiency",
        [
            (
                r["vendor"],
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
            )
            for r in rows
        ],
    )


def pull_table(rows: list[dict[str, Any]]) -> str:
    return table(
        "Pull / backfill (first import; each size in its own process)",
        "vendor|tickets|wall s|tickets/s|requests|minimum|SQL stmts|RSS before MB|peak RSS MB",
        [
            (
                m["vendor"],
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
        "vendor|mirror|wall s|requests|SQL stmts|data writes|all writes",
        [
            (
                r["vendor"],
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
        "vendor|changes|small|large|small s|large s|time x|small SQL|large SQL|SQL x|small req"
        "|large req",
        [
            (
                r["vendor"],
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
    parser.add_argument(
        "--vendor",
        choices=VENDORS,
        action="append",
        help="vendor(s): push defaults to all four, the mirror benchmarks to zoho_desk",
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
        )
        if v is not None
    }
    plan = Plan(**{**plan.__dict__, **overrides})
    names = args.only or list(NAMES)
    vendors = args.vendor or list(VENDORS)
    started = time.perf_counter()
    mirror_vendors = args.vendor or ["zoho_desk"]
    results = asyncio.run(run_plan(plan, names, vendors, mirror_vendors))
    results["machine"] = _machine()
    results["total_s"] = round(time.perf_counter() - started, 1)
    out = args.out or RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\n{results['total_s']} s in all; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
