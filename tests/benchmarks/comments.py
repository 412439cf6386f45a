"""Conversations' cost in vendor requests (issue 22 item 9, docs/architecture.md §8.5).

Per vendor (Zoho Desk and Sirportly: the two that read and post comments both ways), one
emulator in a process of its own and one mirror of ``tickets`` open tickets, imported with
comments off. Then, with the request log of the emulator as the measure:

- **idle**: one run with comments off, and one with them on (after the run that enables
  them and one more), nothing changed anywhere: with comments on, an idle run must cost no
  more requests. The Zoho sweep (docs/architecture.md §8.5) is left out of that run (its
  interval has not passed); it is measured on its own: a run with
  ``options.comment_sweep_seconds: 0`` minus an idle run is one sweep, and
  ``sweep_requests_per_hour`` is that times 3600 / the default interval (600 s).
- **fan-out**: another program INSERTs ``comments`` comments into the mirror, one per
  ticket; one run posts them. Its bound is one post per comment (one target here) plus the
  idle run's requests (the pull's page, which carries the counters): ``requests /
  posts`` and ``requests / bound`` are reported.
- **echo**: the next run that sees the counters our posts moved (on Zoho, a run whose
  sweep is due) reads those tickets' comments once, finding only our own: the counter is
  opaque, so a post cannot tell the engine what it became.
- **vendor comments**: ``comments`` comments added at the vendor (one per ticket, other
  tickets than the fan-out's); one run (on Zoho, a run whose sweep is due: the comments
  leave ``modifiedTime`` alone) imports them; reported as requests per comment, with the
  routes (Zoho's floor is the idle run's requests, the sweep's and one read per ticket;
  Sirportly's pull also fetches each changed ticket in full, docs/vendor-apis.md §3).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from sync.db import Mirror, migrate
from sync.db.models import Ticket
from sync.runner import Selection, run_connections
from sync.vendors.zoho_desk.options import DEFAULT_COMMENT_SWEEP_SECONDS
from tests.benchmarks.support import (
    BENCHES,
    CONNECTION,
    EmulatorProcess,
    config_for,
    database_url,
    log_requests,
    table,
)

#: The vendors measured: both read and post comments.
COMMENT_VENDORS = ("zoho_desk", "sirportly")
#: Per vendor: connection settings comments need beyond the emulator's block (Sirportly's
#: account token posts as a named user, docs/vendor-apis.md §6.2).
COMMENT_EXTRA: dict[str, dict[str, Any]] = {
    "zoho_desk": {},
    "sirportly": {"options": {"comment_user": "charlie"}},
}
#: A short look-back, so an idle run re-reads (almost) nothing (as in push.py).
LOOKBACK = 1.0
#: Fan-out's allowance over its bound (a post per comment plus the idle run's requests).
SLACK = 1.05


async def comments_benchmark(
    vendor: str, *, tickets: int = 200, comments: int = 100, db: str = "sqlite"
) -> dict[str, Any]:
    """The idle and fan-out measurements of ``vendor`` (one row)."""
    bench = BENCHES[vendor]
    local = bench.emulator()
    bench.seed(local, tickets)
    emulator = EmulatorProcess(local)
    await emulator.start()
    with (
        tempfile.TemporaryDirectory(prefix="tsbench-comments-") as tmp,
        database_url(db, Path(tmp)) as url,
    ):
        directory = Path(tmp)
        mirror: Mirror | None = None

        def config(comments_on: bool, **options: Any) -> Any:
            extra: dict[str, Any] = {**bench.extra, **COMMENT_EXTRA[vendor]}
            if options:
                extra["options"] = {**extra.get("options", {}), **options}
            if comments_on:
                extra["comments"] = {"direction": "both"}
            return config_for(emulator, directory, url=url, extra=extra, lookback=LOOKBACK)

        async def measured(cfg: Any) -> dict[str, Any]:
            mark = len(emulator.log)
            (result,) = await run_connections(mirror, cfg, Selection([CONNECTION]))
            if getattr(result, "outcome", None) != "ok":
                raise RuntimeError(f"{vendor}: a run failed: {result}")
            by_route = log_requests(emulator, mark)
            counts = result.counts
            return {
                "requests": sum(by_route.values()),
                "by_route": dict(by_route),
                "posted": counts.comments_posted,
                "pulled": counts.comments_pulled,
            }

        try:
            off, on = config(False), config(True)
            mirror = Mirror(off.database.url)
            migrate(mirror)
            await measured(off)  # the import
            idle_off = await measured(off)
            await measured(on)  # enables comments (and sweeps, where the vendor does)
            await measured(on)
            idle_on = await measured(on)
            sweep = await _sweep(vendor, measured, config, idle_on)
            fan_out = await _fan_out(mirror, measured, on, comments, idle_on)
            due = config(True, comment_sweep_seconds=0) if vendor == "zoho_desk" else on
            echo = await measured(due)
            await measured(on)
            arrived = await _vendor_comments(vendor, emulator, measured, due, comments)
            floor = idle_on["requests"] + sweep["sweep_requests"] + arrived["pulled"]
        finally:
            await emulator.stop()
            if mirror is not None:
                mirror.dispose()
    return {
        "vendor": vendor,
        "db": db,
        "tickets": tickets,
        "idle_off_requests": idle_off["requests"],
        "idle_on_requests": idle_on["requests"],
        "idle_on_by_route": idle_on["by_route"],
        **sweep,
        **fan_out,
        "echo_requests": echo["requests"],
        "echo_by_route": echo["by_route"],
        "vendor_pulled": arrived["pulled"],
        "vendor_requests": arrived["requests"],
        "vendor_by_route": arrived["by_route"],
        "vendor_requests_per_comment": _per(arrived["requests"], arrived["pulled"]),
        "vendor_floor": floor,
    }


async def _sweep(
    vendor: str, measured: Any, config: Any, idle_on: dict[str, Any]
) -> dict[str, Any]:
    """One sweep's requests (a run whose sweep is due, less an idle run) and per hour."""
    if vendor != "zoho_desk":
        return {"sweep_requests": 0, "sweep_requests_per_hour": 0.0}
    swept = await measured(config(True, comment_sweep_seconds=0))
    per_sweep = swept["requests"] - idle_on["requests"]
    per_hour = per_sweep * 3600 / DEFAULT_COMMENT_SWEEP_SECONDS
    return {"sweep_requests": per_sweep, "sweep_requests_per_hour": round(per_hour, 1)}


async def _fan_out(
    mirror: Mirror, measured: Any, cfg: Any, comments: int, idle_on: dict[str, Any]
) -> dict[str, Any]:
    """INSERT ``comments`` comments (one per ticket) as another program would; one run."""
    with mirror.read() as session:
        ids = list(session.scalars(select(Ticket.id).order_by(Ticket.id).limit(comments)))
    with mirror.engine.begin() as conn:
        for index, ticket_id in enumerate(ids):
            conn.execute(
                text(
                    "INSERT INTO ticket_comments (ticket_id, body, is_public, author_name)"
                    " VALUES (:t, :b, :p, 'Bench')"
                ),
                {"t": ticket_id, "b": f"Benchmark comment {index}", "p": index % 2 == 0},
            )
    run = await measured(cfg)
    posts = run["posted"]
    bound = posts + idle_on["requests"]
    return {
        "comments": len(ids),
        "fan_out_posts": posts,
        "fan_out_requests": run["requests"],
        "fan_out_by_route": run["by_route"],
        "requests_per_post": round(run["requests"] / posts, 3) if posts else None,
        "fan_out_bound": bound,
        "requests_over_bound": round(run["requests"] / bound, 3) if bound else None,
        "slack": SLACK,
    }


async def _vendor_comments(
    vendor: str, emulator: EmulatorProcess, measured: Any, cfg: Any, comments: int
) -> dict[str, Any]:
    """Add ``comments`` comments at the vendor, one per ticket (the newest tickets, which
    the fan-out left alone); one run imports them."""
    tickets = [str(t[BENCHES[vendor].id_key]) for t in emulator.ticket_list()][-comments:]
    if vendor == "zoho_desk":
        items = [
            {"ticket": t, "content": f"Vendor comment {i}", "contentType": "plainText"}
            for i, t in enumerate(tickets)
        ]
    else:
        items = [{"ticket": t, "message": f"Vendor comment {i}"} for i, t in enumerate(tickets)]
    emulator.add_comments(items)
    return dict(await measured(cfg))


def _per(requests: int, items: int) -> float | None:
    return round(requests / items, 3) if items else None


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        "Comments: idle runs (comments off/on, sweep left out), the sweep, and a fan-out of "
        "new comments",
        "vendor|db|tickets|idle off|idle on|sweep req|sweep req/h|comments|posts|requests"
        "|req/post|bound|req/bound|echo req|vendor comments|req|req/comment|floor",
        [
            (
                r["vendor"],
                r["db"],
                r["tickets"],
                r["idle_off_requests"],
                r["idle_on_requests"],
                r["sweep_requests"],
                r["sweep_requests_per_hour"],
                r["comments"],
                r["fan_out_posts"],
                r["fan_out_requests"],
                r["requests_per_post"],
                r["fan_out_bound"],
                r["requests_over_bound"],
                r["echo_requests"],
                r["vendor_pulled"],
                r["vendor_requests"],
                r["vendor_requests_per_comment"],
                r["vendor_floor"],
            )
            for r in rows
        ],
    )
