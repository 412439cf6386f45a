"""``python -m tests.soak [--seconds N] [--seed S]``: the chaos soak (docs/architecture.md §8.4).

Three ``ticketsync run`` daemons share a PostgreSQL mirror (a scratch schema of
``TICKETSYNC_TEST_PG_URL``) and the four vendor emulators. For ``--seconds`` the soak makes
random local SQL edits and inserts, random vendor edits and new tickets, queues random
faults at the vendors, and SIGKILLs or SIGSTOPs random daemons. Then it quiesces (faults
dropped, every daemon running) and waits for the checks of ``tests.soak.check`` to pass,
up to ``--quiesce`` seconds. It prints its seed first, and at the end the operations,
kills, faults, duplicates and lost edits. Exit 0 when every check passed, else 1.
"""

from __future__ import annotations

import argparse
import random
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

from sync.db import Mirror, migrate
from tests.benchmarks.support import database_url
from tests.soak.chaos import Chaos
from tests.soak.check import Report, check, journal_excerpt
from tests.soak.vendors import VENDORS
from tests.soak.world import World, wait

#: Tickets each vendor holds before the daemons start, and how long the first import may take.
SEEDED = 4
START_S = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak")
    parser.add_argument("--seconds", type=float, default=60.0, help="chaos time (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: new)")
    parser.add_argument(
        "--quiesce", type=float, default=60.0, help="longest wait for convergence (default 60)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the daemons' logs")
    args = parser.parse_args(argv)
    # a SIGTERM (CI's ``timeout``) still stops the daemons and emulators: ``finally`` runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"soak: seed {seed}, {args.seconds:.0f} s of chaos", flush=True)
    directory = Path(tempfile.mkdtemp(prefix="tsync-soak-"))
    started = time.monotonic()
    with database_url("postgresql", directory) as url:
        mirror = Mirror(url)
        migrate(mirror)
        mirror.dispose()
        world = World(directory, url)
        try:
            report = _soak(world, random.Random(seed), args.seconds, args.quiesce)
        finally:
            world.close()
    print(f"took {time.monotonic() - started:.0f} s; seed {seed}")
    if not report.ok or args.keep:
        print(f"daemon logs: {directory}")
    else:
        for log in directory.glob("daemon-*.log"):
            log.unlink()
    print("PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


def _soak(world: World, rng: random.Random, seconds: float, quiesce: float) -> Report:
    for name, vendor in world.vendors.items():
        vendor.seed(*(VENDORS[name].plugin.remote_ticket(i) for i in range(SEEDED)))
    chaos = Chaos(world, rng)
    for _ in range(3):
        chaos.local_insert()
    world.start()
    begun = time.monotonic()
    if wait(lambda: check(world, chaos.edits).ok, START_S, every=0.5):
        print(f"first import: {time.monotonic() - begun:.0f} s", flush=True)
    else:
        print("the first import did not converge:")
        print("\n".join(check(world, chaos.edits).lines()), flush=True)
    chaos.run(seconds)
    chaos.settle()
    settle_started = time.monotonic()
    wait(lambda: check(world, chaos.edits).ok, quiesce, every=1.0)
    settled = time.monotonic() - settle_started
    report = check(world, chaos.edits)
    _print(chaos, report, settled)
    for line in journal_excerpt(world, report):
        print(line)
    return report


def _print(chaos: Chaos, report: Report, settled: float) -> None:
    counts = chaos.counts
    operations = sum(counts[k] for k in counts if k not in ("faults", "SIGKILLs", "SIGSTOPs"))
    print(f"operations: {operations} ({_items(counts, skip=('faults', 'SIGKILLs', 'SIGSTOPs'))})")
    print(f"kills: {counts['SIGKILLs']} SIGKILL, {counts['SIGSTOPs']} SIGSTOP/SIGCONT")
    print(f"faults: {counts['faults']} ({_items(chaos.faults)})")
    print(f"duplicates: {len(report.duplicates)}")
    print(
        f"lost edits: {len(report.lost)} (superseded by a later remote edit: {report.superseded})"
    )
    print(
        f"mirror: {report.tickets} tickets, {report.links} links; "
        f"disagreements {len(report.disagreements)}, unsettled {len(report.unsettled)}; "
        f"settled {settled:.0f} s after the chaos"
    )
    for line in report.lines():
        print(line)


def _items(counts: dict[str, int], skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if k not in skip)


if __name__ == "__main__":
    sys.exit(main())
