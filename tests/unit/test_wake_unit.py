"""Wake-ups (issue 23, item 1): a local change starts a push-only run at once,
debounced and coalesced, serialised with the scheduled runs, never inside a backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sync.config import Config, parse_config
from sync.daemon import scheduler
from sync.daemon.scheduler import Jobs
from sync.daemon.wake import MAX_DELAY_S, DirtyProbe, PgListener, Wakes, listen_url
from sync.db import Mirror
from sync.db.models import Run, SyncConnection
from sync.engine.run import RunResult
from sync.engine.state import Counts
from sync.errors import ProtocolError
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import (
    insert_ticket,
    links,
    make_run,
    sql,
    sync,
    update_ticket,
    vendor,
)


@pytest.fixture(autouse=True)
def stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


# -- Wakes: debounce, coalescing, the follow-up flag -------------------------------------


async def test_a_burst_of_wake_ups_is_one_run() -> None:
    calls: list[str] = []

    async def run(name: str, pull: bool) -> None:
        calls.append(name)

    wakes = Wakes(run)
    wakes.set_connections(["a", "b"])
    for _ in range(1000):
        wakes.wake("a")
    await asyncio.sleep(0.4)
    assert calls == ["a"]
    await wakes.stop()


async def test_a_steady_stream_of_wake_ups_runs_at_least_once_a_second() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def run(name: str, pull: bool) -> None:
        calls.append(loop.time())

    wakes = Wakes(run)
    wakes.set_connections(["a"])
    start = loop.time()
    while loop.time() - start < MAX_DELAY_S + 0.5:  # never a 100 ms pause
        wakes.wake("a")
        await asyncio.sleep(0.02)
    assert calls, "the debounce gave up waiting after MAX_DELAY_S"
    assert calls[0] - start < MAX_DELAY_S + 0.3
    await wakes.stop()


async def test_wake_ups_during_a_run_lead_to_exactly_one_follow_up() -> None:
    calls = 0
    release = asyncio.Event()

    async def run(name: str, pull: bool) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()

    wakes = Wakes(run)
    wakes.set_connections(["a"])
    wakes.wake("a")
    await asyncio.sleep(0.3)
    assert calls == 1
    for _ in range(50):
        wakes.wake("a")
    release.set()
    await asyncio.sleep(0.5)
    assert calls == 2
    await wakes.stop()


# -- DirtyProbe: the high-water mark ----------------------------------------------------


def _register(mirror: Mirror, *names: str) -> None:
    with mirror.write() as session:
        for name in names:
            session.add(SyncConnection(name=name, vendor="memory"))


def _next_millisecond() -> None:
    start = time.time()
    while time.time() - start < 0.002:
        time.sleep(0.001)


def test_the_probe_wakes_for_new_changes_only(mirror: Mirror) -> None:
    _register(mirror, "a", "b")
    waiting = insert_ticket(mirror, title="waits", status="open")  # a dirty row that stays
    probe = DirtyProbe(mirror, lambda name: None)
    assert probe.probe() == [], "the first probe only sets the marks"
    assert probe.probe() == [], "rows that wait do not wake"
    ticket = insert_ticket(mirror, title="new", status="open")
    assert sorted(probe.probe()) == ["a", "b"]
    assert probe.probe() == []
    update_ticket(mirror, ticket, title="edited")
    assert sorted(probe.probe()) == ["a", "b"]
    # the feed's times have the database's resolution (SQLite: 1 ms): an edit in the very
    # millisecond of the last mark is seen by the next change or the scheduled run
    _next_millisecond()
    update_ticket(mirror, waiting, title="edited too")
    assert sorted(probe.probe()) == ["a", "b"], "an edit of a waiting ticket wakes again"


# -- Jobs: serialised with the scheduled run; the backoff holds -------------------------


def _config(mirror: Mirror) -> Config:
    connection: dict[str, Any] = {
        "vendor": "memory",
        "base_url": "http://127.0.0.1:9",
        "fields": {"title": None},
    }
    return parse_config(
        {
            "database": {"url": mirror.engine.url.render_as_string(hide_password=False)},
            "connections": {"mem": connection},
        },
        env={},
    )


class FakeRuns:
    """Stands in for ``run_connection``: records each run's kind and overlaps."""

    def __init__(self) -> None:
        self.kinds: list[bool] = []
        self.active = 0
        self.overlapped = False
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, mirror: Mirror, config: Config, connection: Any, selection: Any):
        self.active += 1
        self.overlapped |= self.active > 1
        self.kinds.append(selection.push_only)
        await self.release.wait()
        self.active -= 1
        return RunResult(connection.name, "ok", Counts(), 0.0, None, 0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRuns:
    runs = FakeRuns()
    monkeypatch.setattr(scheduler, "run_connection", runs)
    return runs


async def test_a_wake_up_during_a_scheduled_run_waits_for_it(
    mirror: Mirror, fake: FakeRuns
) -> None:
    jobs = Jobs(mirror, _config(mirror), ["mem"])
    fake.release.clear()
    scheduled = asyncio.ensure_future(jobs._job("mem"))
    await asyncio.sleep(0.05)
    woken = asyncio.ensure_future(jobs.wake("mem"))
    await asyncio.sleep(0.1)
    assert fake.kinds == [False], "the woken run waits for the scheduled one"
    fake.release.set()
    await asyncio.gather(scheduled, woken)
    assert fake.kinds == [False, True]
    assert not fake.overlapped
    assert jobs.woken == {"mem": 1}


@pytest.mark.parametrize("column", ["next_retry_at", "cooldown_until"])
async def test_a_wake_up_never_bypasses_a_backoff_or_cool_down(
    mirror: Mirror, fake: FakeRuns, column: str
) -> None:
    _register(mirror, "mem")
    with mirror.write() as session:
        row = session.get(SyncConnection, "mem")
        assert row is not None
        setattr(row, column, datetime.now(UTC) + timedelta(minutes=5))
    jobs = Jobs(mirror, _config(mirror), ["mem"])
    await jobs.wake("mem")
    assert fake.kinds == []
    with mirror.write() as session:
        row = session.get(SyncConnection, "mem")
        assert row is not None
        setattr(row, column, datetime.now(UTC) - timedelta(seconds=1))
    await jobs.wake("mem")
    assert fake.kinds == [True]


# -- The push-only run ------------------------------------------------------------------


def _push_only(mirror: Mirror, **kw: Any) -> RunResult:
    run = make_run(mirror, **kw)
    run.state.options = replace(run.state.options, push_only=True, kind="woken")
    return asyncio.run(run.run())


def test_a_push_only_run_pushes_and_creates_without_listing(mirror: Mirror) -> None:
    external = vendor().seed(title="at the vendor", status="Open")
    assert sync(mirror, create_when={}).ok
    (linked,) = links(mirror)
    update_ticket(mirror, linked, title="edited here")
    created = insert_ticket(mirror, title="made here", status="open")
    vendor().edit(external, status="Closed")  # a vendor change the woken run leaves alone
    vendor().fail("changed_since", ProtocolError("listing is not allowed"), times=5)
    result = _push_only(mirror, create_when={})
    assert result.ok, result.error
    assert (result.counts.pushed, result.counts.created, result.counts.pulled) == (1, 1, 0)
    assert created in links(mirror)
    assert vendor().records[external].fields["title"] == "edited here"
    with mirror.read() as session:
        run = session.scalars(select(Run).order_by(Run.id.desc())).first()
        assert run is not None and (run.kind, run.message) == ("woken", None)


# -- PostgreSQL: NOTIFY from the change feed, LISTEN that reconnects --------------------


async def test_the_listener_hears_the_feed_and_reconnects(mirror: Mirror) -> None:
    if mirror.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    heard = asyncio.Event()
    listener = PgListener(listen_url(mirror.url), heard.set)
    listener.start()
    try:
        assert await _until(lambda: listener.listening)
        heard.clear()
        _register(mirror, "a")
        await asyncio.to_thread(insert_ticket, mirror, title="new", status="open")
        await asyncio.wait_for(heard.wait(), 10)
        # The database drops the connection (as on a restart): the listener comes back.
        first = listener.backend_pid
        await asyncio.to_thread(sql, mirror, "SELECT pg_terminate_backend(:p)", p=first)
        assert await _until(lambda: listener.listening and listener.backend_pid != first)
        heard.clear()
        await asyncio.to_thread(update_ticket, mirror, 1, title="after the restart")
        await asyncio.wait_for(heard.wait(), 10)
    finally:
        await listener.stop()


async def _until(predicate: Any, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def test_migration_0010_adds_the_notify_and_its_downgrade_removes_it(mirror: Mirror) -> None:
    if mirror.dialect != "postgresql":
        pytest.skip("the SQLite feed is unchanged")
    from alembic import command

    from sync.db.migrate import _alembic_config, migrate

    def feed_function() -> str:
        ((name,),) = sql(
            mirror,
            "SELECT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgname = 'tickets_feed' AND t.tgrelid = 'tickets'::regclass",
        )
        return str(name)

    assert feed_function() == "ticketsync_feed_v2"
    with mirror.engine.connect() as conn:
        command.downgrade(_alembic_config(conn), "0010-1")
        conn.commit()
    assert feed_function() == "ticketsync_feed_v1"
    migrate(mirror)
    assert feed_function() == "ticketsync_feed_v2"


async def test_stop_lets_a_woken_run_in_hand_finish() -> None:
    finished: list[str] = []
    started = asyncio.Event()

    async def run(name: str, pull: bool) -> None:
        started.set()
        await asyncio.sleep(0.3)  # the ticket in hand
        finished.append(name)

    wakes = Wakes(run)
    wakes.set_connections(["a", "idle"])
    wakes.wake("a")
    await asyncio.wait_for(started.wait(), 5)
    await wakes.stop(timeout=5)
    assert finished == ["a"], "stopped after the run, not in its middle"
