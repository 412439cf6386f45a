"""What every benchmark shares: per-vendor setups, the config, counters of SQL and HTTP.

A ``VendorBench`` knows how to seed one vendor's emulator with tickets of distinct, old
modification times (so a later run's look-back window holds few of them, as in a real
helpdesk), how another program edits the mirror locally, and how an agent edits a ticket
at the vendor. The Zoho Desk emulator's search scans and sorts every ticket per request,
which at 100,000 tickets costs the emulator seconds a page; ``FastZohoEmulator`` answers
the one query shape the adapter pages with from a sorted index instead, with the same
replies, so that the numbers measure ticketsync rather than the emulator.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import multiprocessing
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from sync.config import Config, parse_config
from sync.db import Mirror
from sync.sandbox.base import Emulator, emulators
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.sandbox.zoho_desk_data import iso_ms, parse_iso

ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "bench"
#: The PostgreSQL server the benchmarks use (a scratch schema each), as the tests do.
PG_URL = os.environ.get(
    "TICKETSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DATABASES = ("sqlite", "postgresql")
VENDORS = ("zoho_desk", "kapture", "sirportly", "proprofs")
#: Seeded tickets are this far apart in modification time, and the newest this old.
SEED_SPACING = timedelta(minutes=1)
SEED_AGE = timedelta(hours=2)


class FastZohoEmulator(ZohoDeskEmulator):
    """Zoho Desk's emulator with an indexed ``modifiedTimeRange`` search (same replies)."""

    _FAST_KEYS = frozenset({"modifiedTimeRange", "sortBy", "limit", "from"})

    def __init__(self) -> None:
        super().__init__()
        self._index: tuple[list[tuple[str, int]], list[dict[str, Any]]] | None = None

    def seed(self, **fields: Any) -> dict[str, Any]:
        self._index = None
        return super().seed(**fields)

    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        self._index = None
        return super().edit(external_id, **fields)

    def _sorted(self) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
        if self._index is None:
            rows = sorted(
                ((t.get("modifiedTime") or "", int(t["id"])), t) for t in self.tickets.values()
            )
            self._index = [k for k, _ in rows], [t for _, t in rows]
        return self._index

    async def _search(self, request: web.Request) -> web.Response:
        query = request.query
        if not (
            set(query) <= self._FAST_KEYS
            and query.get("sortBy") == "modifiedTime"
            and "modifiedTimeRange" in query
        ):
            return await super()._search(request)
        _, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        low, _, high = query["modifiedTimeRange"].partition(",")
        keys, tickets = self._sorted()
        first = bisect.bisect_left(keys, (iso_ms(parse_iso(low)), -1))
        last = bisect.bisect_right(keys, (iso_ms(parse_iso(high)), sys.maxsize))
        start = first + int(query.get("from", "0"))
        page = tickets[start : min(last, start + int(query.get("limit", "10")))]
        if not page:
            return web.Response(status=204)
        return web.json_response({"data": page, "count": str(last - first)})


class EmulatorProcess:
    """A seeded emulator serving from a process of its own, spoken to through its control API.

    A real vendor's CPU is not ours: in-process, the emulator's request handling (JSON in
    and out, its ticket store) would run on the engine's event loop and count against the
    engine's throughput. The emulator is seeded here, then handed (pickled) to a spawned
    process that serves it; ``configure`` and ``log`` go through ``/_sandbox/config`` and
    ``/_sandbox/log``.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.vendor = emulator.vendor
        self.base_url = ""
        self._process: Any = None

    async def start(self) -> str:
        context = multiprocessing.get_context("spawn")
        here, there = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.emulator, there), daemon=True)
        self._process.start()
        self.base_url = await asyncio.to_thread(here.recv)
        self.emulator.base_url = self.base_url
        return self.base_url

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await asyncio.to_thread(self._process.join, 10)
            self._process = None

    def demo_connection(self) -> dict[str, Any] | None:
        return self.emulator.demo_connection()

    def configure(self, **settings: Any) -> None:
        self._control("POST", "config", settings)

    @property
    def log(self) -> list[dict[str, Any]]:
        return list(self._control("GET", "log")["log"])

    def ticket_list(self) -> list[dict[str, Any]]:
        """Every ticket the emulator holds, as its control API lists them."""
        return list(self._control("GET", "tickets")["tickets"])

    def add_comments(self, items: list[dict[str, Any]]) -> None:
        """Comments written at the vendor (each item names its ``ticket``), as its control
        API takes them."""
        self._control("POST", "comments", items)

    def _control(self, method: str, what: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_sandbox/{what}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())


def _serve(emulator: Emulator, pipe: Any) -> None:
    """The emulator process: serve until terminated, after sending the base URL."""

    async def main() -> None:
        pipe.send(await emulator.start())
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass(frozen=True)
class VendorBench:
    """How the benchmarks speak of one vendor."""

    vendor: str
    #: Vendor fields of the ``index``-th seeded ticket.
    remote_ticket: Callable[[int], dict[str, Any]]
    #: SQL another program runs to edit the tickets ``{ids}`` locally (a pushable field).
    local_edit: str
    #: Vendor fields an agent changes at the vendor (a pulled field).
    remote_edit: Callable[[int], dict[str, Any]]
    #: The id key of the emulator's control API.
    id_key: str = "id"
    #: Connection settings beyond the emulator's demo block.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The adapter reads its own ``options.lookback_seconds``, not ``sync.lookback_seconds``.
    own_lookback: bool = False
    #: Vendor values of an update like the local edit's push (the push floor's calls).
    update: Callable[[int], dict[str, str]] = lambda i: {"title": f"Floor {i}"}

    def emulator(self) -> Emulator:
        if self.vendor == "zoho_desk":
            return FastZohoEmulator()
        return emulators()[self.vendor]()

    def seed(self, emulator: Emulator, count: int) -> list[str]:
        """``count`` tickets with distinct old modification times, oldest first; their ids."""
        newest = datetime.now(UTC) - SEED_AGE
        clock = emulator.clock
        ids = []
        try:
            for index in range(count):
                moment = newest - SEED_SPACING * (count - index)
                emulator.clock = lambda moment=moment: moment  # type: ignore[misc]
                ticket = emulator.seed(**self.remote_ticket(index))
                ids.append(str(ticket[self.id_key]))
        finally:
            emulator.clock = clock
        return ids


_TITLE_EDIT = "UPDATE tickets SET title = title || ' (edited)' WHERE id IN ({ids})"

BENCHES: dict[str, VendorBench] = {
    "zoho_desk": VendorBench(
        vendor="zoho_desk",
        remote_ticket=lambda i: {
            "subject": f"Benchmark ticket {i}",
            "status": "Open",
            "priority": ("Low", "Medium", "High")[i % 3],
            "email": f"customer{i}@example.com",
        },
        local_edit=_TITLE_EDIT,
        remote_edit=lambda i: {"subject": f"Edited at the vendor {i}"},
    ),
    "sirportly": VendorBench(
        vendor="sirportly",
        remote_ticket=lambda i: {
            "subject": f"Benchmark ticket {i}",
            "status": 1,
            "priority": ("Low", "Normal", "High")[i % 3],
            "email": f"customer{i}@example.com",
            "description": f"Benchmark ticket {i}",
        },
        local_edit=_TITLE_EDIT,
        remote_edit=lambda i: {"subject": f"Edited at the vendor {i}"},
        id_key="reference",
        own_lookback=True,
    ),
    "proprofs": VendorBench(
        vendor="proprofs",
        remote_ticket=lambda i: {
            "subject": f"Benchmark ticket {i}",
            "status": "Open",
            "priority": ("low", "normal", "high")[i % 3],
            "email": f"customer{i}@example.com",
        },
        local_edit=_TITLE_EDIT,
        remote_edit=lambda i: {"subject": f"Edited at the vendor {i}"},
        id_key="ticket_id",
    ),
    "kapture": VendorBench(
        vendor="kapture",
        remote_ticket=lambda i: {
            "title": f"Benchmark ticket {i}",
            "email": f"customer{i}@example.com",
            "queueKey": "SUPPORT",
        },
        # Kapture writes status and queue only; its title is read-only.
        local_edit=(
            "UPDATE tickets SET queue = CASE queue WHEN 'billing' THEN 'support' "
            "ELSE 'billing' END WHERE id IN ({ids})"
        ),
        remote_edit=lambda i: {"title": f"Edited at the vendor {i}"},
        update=lambda i: {"queue": ("BILLING", "SUPPORT")[i % 2]},
    ),
}


@contextlib.contextmanager
def database_url(kind: str, directory: Path) -> Iterator[str]:
    """A mirror URL of ``kind``: a SQLite file in ``directory``, or a scratch schema of
    ``PG_URL`` (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'mirror.db'}"
        return
    schema = "bench_" + secrets.token_hex(6)
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


def edit_locally(mirror: Mirror, statement: str, ids: list[int]) -> None:
    """Another program's edit of mirror tickets ``ids`` (plain SQL; any dialect)."""
    with mirror.engine.begin() as conn:
        conn.execute(text(statement.format(ids=",".join(map(str, ids)))))


def config_data(
    emulator: Emulator | EmulatorProcess,
    directory: Path,
    *,
    url: str | None = None,
    concurrency: int = 8,
    rate: float | None = None,
    extra: Mapping[str, Any] | None = None,
    lookback: float | None = None,
) -> dict[str, Any]:
    """Config data (plain JSON) of one connection to ``emulator``; the mirror at ``url``
    (default: SQLite in ``directory``).

    ``lookback``: ``sync.lookback_seconds`` (default 300: each run re-reads what changed at
    the vendor in the five minutes before its cursor).
    """
    block = emulator.demo_connection()
    if block is None:
        raise RuntimeError(f"the {emulator.vendor} emulator offers no connection block")
    block = {**block, **(extra or {})}
    if lookback is not None and BENCHES[emulator.vendor].own_lookback:
        block["options"] = {**block.get("options", {}), "lookback_seconds": lookback}
    http: dict[str, Any] = {"concurrency": concurrency, "backoff_base": 0.01, "backoff_cap": 0.1}
    if rate is not None:
        http["rate"] = rate
    return {
        "database": {"url": url or f"sqlite:///{directory / 'mirror.db'}"},
        "sync": {
            "state_dir": str(directory),
            # Benchmarks change every ticket at once on purpose; the guard would hold them.
            "guard": {"share": 1.0, "min_count": 10**9},
            **({"lookback_seconds": lookback} if lookback is not None else {}),
        },
        "connections": {CONNECTION: {**block, "http": http}},
    }


def config_for(emulator: Emulator | EmulatorProcess, directory: Path, **settings: Any) -> Config:
    """``config_data`` validated (``settings``: its keyword arguments)."""
    return parse_config(config_data(emulator, directory, **settings), base_dir=directory)


_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_TABLE = re.compile(
    r"^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+\"?(\w+)",
    re.IGNORECASE,
)


class SqlCounter:
    """Counts the statements a mirror's engine sends, and its writes by table."""

    def __init__(self, mirror: Mirror) -> None:
        self.statements = 0
        self.writes: Counter[str] = Counter()
        self._engine = mirror.engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements += 1
        if _WRITE.match(statement):
            found = _TABLE.match(statement)
            self.writes[found.group(1).lower() if found else "?"] += 1

    def reset(self) -> None:
        self.statements = 0
        self.writes.clear()

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)

    #: Tables a run writes to record itself (the run row, the connection's state) and the
    #: transaction-scoped origin mark of SQLite's change feed: bookkeeping, not synced data.
    BOOKKEEPING = frozenset(
        {"runs", "sync_connections", "sync_origin", "sync_leases", "sync_instances"}
    )

    def snapshot(self) -> dict[str, Any]:
        data = sum(n for t, n in self.writes.items() if t not in self.BOOKKEEPING)
        return {
            "sql_statements": self.statements,
            "sql_writes": sum(self.writes.values()),
            "sql_data_writes": data,
            "writes_by_table": dict(sorted(self.writes.items())),
        }


class RequestCounter:
    """The HTTP hook of ``Selection``: counts each request the adapter sends."""

    def __init__(self) -> None:
        self.count = 0
        self.by_path: Counter[str] = Counter()

    def hook(self, vendor: str) -> Callable[[str, str, int | None, float], None]:
        def seen(method: str, shown: str, status: int | None, seconds: float) -> None:
            self.count += 1
            self.by_path[f"{method} {route(shown.split('?')[0])}"] += 1

        return seen

    def reset(self) -> None:
        self.count = 0
        self.by_path.clear()


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB.

    Linux's ``VmHWM`` where there is one: ``ru_maxrss`` survives ``execve``, so a child
    process would report its parent's peak (here: the emulator's 100,000 tickets) until it
    passes it. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def route(path: str) -> str:
    """A request path with its ticket ids folded, to count requests by route."""
    path = re.sub(r"^https?://[^/]+", "", path)
    return re.sub(r"/(?:\d|SP-)[\w-]*", "/{id}", path)


def log_requests(emulator: Emulator | EmulatorProcess, since: int) -> Counter[str]:
    """Vendor requests in the emulator's log from entry ``since`` on, by method and path."""
    found: Counter[str] = Counter()
    for entry in emulator.log[since:]:
        found[f"{entry['method']} {route(entry['path'])}"] += 1
    return found


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """A real ``ticketsync run`` daemon on ``config``; its output goes to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(config), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


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


async def until(
    predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05
) -> Any:
    """Poll ``predicate`` in a thread (it may block on the database or HTTP) every
    ``every`` seconds until it is truthy; return its value, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(every)
    raise RuntimeError(f"benchmark: timed out waiting for {what}")
