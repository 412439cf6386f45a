"""Leases and fencing on PostgreSQL (docs/architecture.md §3.4, §7.3)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from sync.coord.lease import Lease
from sync.coord.liveness import Liveness
from sync.coord.spread import Load, StickyLeases
from sync.daemon.metrics import Metrics
from sync.db import Mirror
from sync.engine.context import SyncRules
from sync.engine.run import ConnectionRun, RunOptions, RunResult
from sync.errors import LeaseLost
from sync.vendors.memory.adapter import MemoryAdapter, reset_stores
from tests.unit.engine_helpers import FIELDS, sql

# Leases are for PostgreSQL: SQLite has one instance per database file (the file lock).
on_pg = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def pg(mirror: Mirror) -> Mirror:
    return mirror


# No test waits for a lease to run out: a lease time short enough to wait for is also short
# enough to run out under a test that a loaded machine slows down (the fence judges expiry
# in database time, with no heartbeat in most of these tests). Leases here last long, and
# "its time has passed" is set in the database, as the clock would have made it.


def expire(pg: Mirror, connection: str) -> None:
    """Let ``connection``'s lease run out now, in database time."""
    sql(
        pg,
        "UPDATE sync_leases SET expires_at = now() - interval '1 ms' WHERE connection = :c",
        c=connection,
    )


def silence(pg: Mirror, instance: str, seconds: float) -> None:
    """Let ``instance``'s registry row be older than a lease time (``seconds``): not live."""
    sql(
        pg,
        "UPDATE sync_instances SET seen_at = now() - make_interval(secs => :s) WHERE id = :i",
        s=2 * seconds,
        i=instance,
    )


@on_pg
def test_one_holder_at_a_time_and_takeover_after_expiry(pg):
    a = Lease(pg, "zoho", 30, instance="host-a:1:aa")
    b = Lease(pg, "zoho", 30, instance="host-b:2:bb")
    assert a.acquire()
    assert not b.acquire(), "a live lease is exclusive"
    assert a.acquire(), "the holder may take it again"
    assert a.generation == 1
    expire(pg, "zoho")
    assert b.acquire(), "an expired lease is taken over"
    assert b.generation == 2
    assert not a.renew(), "the old holder cannot renew"


@on_pg
def test_a_superseded_holder_cannot_commit(pg):
    a = Lease(pg, "zoho", 30, instance="host-a:1:aa")
    assert a.acquire()
    with pg.write() as session:
        a.before_commit(session)  # current: fine
    expire(pg, "zoho")
    assert Lease(pg, "zoho", 5, instance="host-b:2:bb").acquire()
    with pytest.raises(LeaseLost), pg.write() as session:
        session.execute(text("INSERT INTO tickets (title) VALUES ('stale')"))
        a.before_commit(session)
    assert sql(pg, "SELECT count(*) FROM tickets") == [(0,)], "rolled back"


@on_pg
def test_no_vendor_write_when_the_lease_cannot_outlast_the_call(pg):
    now = [100.0]
    lease = Lease(pg, "zoho", 2.0, instance="host-a:1:aa", clock=lambda: now[0])
    assert lease.acquire()
    lease.before_send(1.0)
    with pytest.raises(LeaseLost):
        lease.before_send(5.0)
    now[0] += 1.5  # 0.5 s left on our clock: renewed first, then sent
    lease.before_send(1.0)
    assert lease.remaining == 2.0


@on_pg
def test_a_run_that_lost_its_lease_writes_nothing(pg):
    reset_stores()
    connection = SimpleNamespace(name="mem", options={})
    adapter = MemoryAdapter(connection)
    for i in range(3):
        adapter.store.seed(title=f"t{i}", status="Open", priority="P3", queue="q")
    stale = Lease(pg, "mem", 30, instance="host-a:1:aa")
    assert stale.acquire()
    expire(pg, "mem")
    assert Lease(pg, "mem", 30, instance="host-b:2:bb").acquire()
    rules = SyncRules.build(FIELDS, {}, adapter.capabilities, direction="both", tie_break="local")
    run = ConnectionRun(pg, "mem", adapter, rules, options=RunOptions(fence=stale))
    result = asyncio.run(run.run())
    assert result.outcome == "interrupted"
    assert isinstance(result.error, LeaseLost)
    assert sql(pg, "SELECT count(*) FROM tickets") == [(0,)]
    assert sql(pg, "SELECT count(*) FROM ticket_links") == [(0,)]
    assert adapter.store.writes() == []
    reset_stores()


@on_pg
def test_heartbeat_keeps_a_long_run_leased(pg):
    """The heartbeat renews: past the first deadline, the same generation is still current.

    Judged by the renewals the database shows, not by outliving a short lease on the wall
    clock (which a loaded machine may not give the heartbeat time to do)."""
    lease = Lease(pg, "zoho", 30, instance="host-a:1:aa", heartbeat=0.05)
    renewals = 3

    def expiry() -> object:
        return sql(pg, "SELECT expires_at FROM sync_leases WHERE connection = 'zoho'")[0][0]

    async def long_run() -> None:
        assert lease.acquire()
        seen = [expiry()]
        lease.start_heartbeat()
        while len(seen) <= renewals:  # each renewal moves the deadline on
            await asyncio.sleep(0.05)
            if (moved := expiry()) > seen[-1]:
                seen.append(moved)
        with pg.write() as session:
            lease.before_commit(session)  # a commit after those renewals is fenced in
        await lease.stop_heartbeat()

    asyncio.run(asyncio.wait_for(long_run(), 60))
    assert sql(pg, "SELECT instance, generation FROM sync_leases") == [("host-a:1:aa", 1)]


# -- spreading (sync.coord.spread) -------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "others", "total", "share", "take", "release"),
    [
        (0, (), 4, 4, True, False),  # alone: everything is ours
        (4, (0,), 4, 2, False, True),  # a second instance joined: hand two over
        (2, (2,), 4, 2, False, False),  # balanced
        (0, (2,), 4, 2, True, False),
        (1, (0,), 4, 2, False, False),  # the less loaded instance takes first
        (2, (2, 0), 4, 2, False, True),  # 2,2,0 becomes 1,2,1 then 2,1,1
        (2, (0,), 4, 2, False, False),  # two are free: the other takes those
        (2, (1, 1), 4, 2, False, False),
        (1, (1, 1), 4, 2, True, False),
        (3, (3, 3), 6, 2, False, True),  # over the share (three instances, six connections)
    ],
)
def test_fair_share(mine, others, total, share, take, release):
    load = Load(mine, others, total)
    assert load.share == share
    assert load.may_take() is take
    assert load.should_release() is release


def _sticky(pg: Mirror, instance: str, names: list[str], seconds: float = 30) -> StickyLeases:
    return StickyLeases(pg, seconds, names, instance=instance, metrics=Metrics())


def _sample(leases: StickyLeases, name: str, connection: str | None = None) -> float:
    assert leases.metrics is not None
    labels = {"connection": connection} if connection else {}
    value = leases.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@on_pg
def test_a_joining_instance_gets_its_share_and_takeovers_are_counted(pg):
    names = ["c1", "c2", "c3", "c4"]

    async def scenario() -> tuple[set[str], set[str]]:
        a = _sticky(pg, "host-a:1:aa", names)
        await a.start()
        assert all([await a.take(n) for n in names]), "alone, an instance takes everything"
        assert _sample(a, "ticketsync_leases_held") == 4
        b = _sticky(pg, "host-b:2:bb", names)
        await b.start()
        assert [await b.take(n) for n in names] == [None] * 4, "all held by a"
        for n in names:  # a's runs end: it hands over what exceeds its share
            lease = a.held[n]
            await a.done(n, lease, None)
        assert len(a.held) == 2 and _sample(a, "ticketsync_leases_held") == 2
        taken = {n for n in names if await b.take(n) is not None}
        assert not {n for n in names if await a.take(n) is not None} - set(a.held)
        for n in taken:
            assert _sample(b, "ticketsync_lease_takeovers_total", n) == 1, "generation grew"
        await a.stop()
        await b.stop()
        return set(a.held), taken

    kept, taken = asyncio.run(scenario())
    assert not kept, "a clean stop releases every lease"
    assert len(taken) == 2
    assert sql(pg, "SELECT count(*) FROM sync_instances") == [(0,)], "both deregistered"


@on_pg
def test_a_paused_instances_connections_move_on_expiry_and_its_loss_is_counted(pg):
    """A paused holder keeps its liveness lock: only the lease's expiry lets another take."""

    async def scenario() -> None:
        a = _sticky(pg, "host-a:1:aa", ["c1", "c2"])
        await a.start()
        lease = await a.take("c1")
        assert lease is not None and await a.take("c2") is not None
        assert a._beat_task is not None
        a._beat_task.cancel()  # a stops renewing, as if it were paused
        b = _sticky(pg, "host-b:2:bb", ["c1", "c2"])
        await b.start()
        assert await b.take("c1") is None, "a's lease is still current"
        expire(pg, "c1")  # a lease time later
        assert await b.take("c1") is not None
        assert _sample(b, "ticketsync_lease_takeovers_total", "c1") == 1
        with pytest.raises(LeaseLost), pg.write() as session:
            lease.before_commit(session)
        assert _sample(a, "ticketsync_leases_lost_total", "c1") == 1
        assert await a.take("c1") is None, "a lost lease is forgotten, and b holds it now"
        assert "c1" not in a.held
        assert await b.take("c2") is None, "a holds its lock and is seen: b has its share"
        expire(pg, "c2")
        silence(pg, "host-a:1:aa", 30)  # a lease time without a's heartbeat
        assert await b.take("c2") is not None, "a paused instance's share is not kept for it"
        await b.stop()
        await a.stop()

    asyncio.run(scenario())


@on_pg
def test_a_dead_instances_connections_are_taken_at_once(pg):
    """A holder whose session is gone (its process died) has no lock: no wait for expiry."""

    async def scenario() -> None:
        a = _sticky(pg, "host-a:1:aa", ["c1", "c2"])
        await a.start()
        lease = await a.take("c1")
        assert lease is not None and await a.take("c2") is not None
        assert a._beat_task is not None
        a._beat_task.cancel()
        b = _sticky(pg, "host-b:2:bb", ["c1", "c2"])
        await b.start()
        assert await b.take("c1") is None, "a is live"
        await a.liveness.stop()  # a's process dies: the server ends its session
        assert await b.take("c1") is not None and await b.take("c2") is not None
        assert sql(pg, "SELECT instance, generation FROM sync_leases ORDER BY connection") == [
            ("host-b:2:bb", 2),
            ("host-b:2:bb", 2),
        ]
        assert sql(pg, "SELECT count(*) FROM sync_leases WHERE expires_at < now()") == [(0,)]
        assert _sample(b, "ticketsync_lease_takeovers_total", "c2") == 1
        with pytest.raises(LeaseLost), pg.write() as session:
            lease.before_commit(session)  # the generation fences a holder that lived on
        await b.stop()

    asyncio.run(scenario())


def _live(pg: Mirror) -> Liveness:
    liveness = Liveness(pg)
    liveness.start()
    return liveness


@on_pg
def test_a_lease_whose_holder_lost_its_lock_is_taken_at_once_with_a_new_generation(pg):
    mine, theirs = _live(pg), _live(pg)
    try:
        a = Lease(pg, "zoho", 30, instance="host-a:1:aa", liveness=mine)
        b = Lease(pg, "zoho", 30, instance="host-b:2:bb", liveness=theirs)
        assert a.acquire()
        assert not b.acquire(), "a holds its lock: the lease is a's until it expires"
        mine.close()
        # the server drops a closed session's locks a moment after the client lets go:
        # wait for that (the lock gone from pg_locks), never for a fixed time
        deadline = time.monotonic() + 10
        held = (
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = :hi AND objid = :lo"
        )
        key = mine.key or 0
        while sql(pg, held, hi=(key >> 32) & 0xFFFFFFFF, lo=key & 0xFFFFFFFF):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert b.acquire() and b.generation == 2 and b.took_over
        with pytest.raises(LeaseLost), pg.write() as session:
            a.before_commit(session)
        assert sql(pg, "SELECT lock_key FROM sync_leases") == [(theirs.key,)]
    finally:
        mine.close()
        theirs.close()


@on_pg
def test_a_failed_ping_loses_every_lease_and_stops_the_next_send(pg):
    liveness = _live(pg)
    try:
        leases = [Lease(pg, c, 30, instance="host-a:1:aa", liveness=liveness) for c in "xy"]
        assert all(lease.acquire() for lease in leases)
        assert liveness.ping() and liveness.fresh()
        (pid,) = sql(
            pg,
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
            "objid = (:k & 4294967295)::oid",
            k=liveness.key,
        )[0]
        sql(pg, "SELECT pg_terminate_backend(:p)", p=pid)  # the session is cut off
        assert not liveness.ping()
        assert all(lease.lost for lease in leases), "every lease of the instance"
        with pytest.raises(LeaseLost, match="liveness"):
            leases[0].before_send(1.0)
    finally:
        liveness.close()


@on_pg
def test_a_send_needs_a_ping_less_than_a_second_old(pg):
    now = [100.0]
    liveness = Liveness(pg, clock=lambda: now[0])
    liveness.start()
    try:
        lease = Lease(
            pg, "zoho", 30, instance="host-a:1:aa", liveness=liveness, clock=lambda: now[0]
        )
        assert lease.acquire()
        assert liveness.fresh()
        now[0] += 1.0
        assert not liveness.fresh(), "a second without a ping"
        lease.before_send(1.0)  # pings first, then sends
        assert liveness.fresh()
        liveness.close()  # the session is gone: the ping before the send fails
        now[0] += 1.0
        with pytest.raises(LeaseLost):
            lease.before_send(1.0)
    finally:
        liveness.close()


@on_pg
def test_status_lists_the_live_instances_and_holders(pg, tmp_path):
    from sync.config import parse_config
    from sync.status import collect, render

    config = parse_config(
        {
            "database": {"url": pg.redacted_url()},
            "connections": {
                "c1": {"vendor": "memory", "base_url": "http://127.0.0.1:9", "fields": {}}
            },
        },
        base_dir=tmp_path,
    )

    async def scenario() -> dict:
        a = _sticky(pg, "host-a:1:aa", ["c1"])
        await a.start()
        assert await a.take("c1") is not None
        status = collect(config, pg)
        await a.stop()
        return status

    status = asyncio.run(scenario())
    assert status["connections"]["c1"]["holder"]["instance"] == "host-a:1:aa"
    assert [(i["instance"], i["leases"]) for i in status["instances"]] == [("host-a:1:aa", 1)]
    assert "instance host-a:1:aa" in render(status)


@on_pg
def test_a_late_write_of_a_superseded_generation_is_sent_over(pg):
    """docs/architecture.md §7.3: a paused holder's update that lands after a takeover is not an
    agent's edit."""
    reset_stores()
    connection = SimpleNamespace(name="mem", options={})
    adapter = MemoryAdapter(connection)
    external_id = adapter.store.seed(title="t", status="Open", priority="P3", queue="q")
    rules = SyncRules.build(FIELDS, {}, adapter.capabilities, direction="both", tie_break="local")

    def run_under(lease: Lease) -> None:
        result = asyncio.run(
            ConnectionRun(
                pg, "mem", adapter, rules, options=RunOptions(fence=lease, call_seconds=0.1)
            ).run()
        )
        assert result.outcome == "ok", result.error

    old = Lease(pg, "mem", 30, instance="host-a:1:aa")
    assert old.acquire()
    run_under(old)  # the import
    sql(pg, "UPDATE tickets SET status = 'closed'")
    run_under(old)  # sends Closed under generation 1 (journaled before the send)
    expire(pg, "mem")  # the holder pauses past its lease
    new = Lease(pg, "mem", 30, instance="host-b:2:bb")
    assert new.acquire() and new.generation == 2
    sql(pg, "UPDATE tickets SET status = 'open'")
    run_under(new)  # sends Open under generation 2
    adapter.store.edit(external_id, status="Closed")  # the paused holder's request lands
    run_under(new)

    assert sql(pg, "SELECT status FROM tickets") == [("open",)], "the mirror's edit is kept"
    assert adapter.store.records[external_id].fields["status"] == "Open", "and sent again"
    assert sql(pg, "SELECT generation FROM journal WHERE action = 'send' ORDER BY id") == [
        (1,),
        (2,),
        (2,),
    ]
    assert sql(pg, "SELECT field, new_value FROM journal WHERE action = 'late_write'") == [
        ("status", "Closed")
    ]
    reset_stores()


@on_pg
def test_an_agent_edit_no_generation_sent_is_pulled_under_a_lease(pg):
    reset_stores()
    connection = SimpleNamespace(name="mem", options={})
    adapter = MemoryAdapter(connection)
    external_id = adapter.store.seed(title="t", status="Open", priority="P3", queue="q")
    rules = SyncRules.build(FIELDS, {}, adapter.capabilities, direction="both", tie_break="local")
    lease = Lease(pg, "mem", 30, instance="host-a:1:aa")
    assert lease.acquire()
    options = RunOptions(fence=lease)
    asyncio.run(ConnectionRun(pg, "mem", adapter, rules, options=options).run())
    adapter.store.edit(external_id, status="Pending")
    asyncio.run(ConnectionRun(pg, "mem", adapter, rules, options=options).run())

    assert sql(pg, "SELECT status FROM tickets") == [("pending",)]
    assert sql(pg, "SELECT count(*) FROM journal WHERE action = 'late_write'") == [(0,)]
    reset_stores()


@on_pg
def test_clearing_dirty_marks_never_waits_for_another_writer(pg):
    """A group commit skips marks a bulk UPDATE holds, so the two cannot deadlock."""
    from sync.engine import store

    sql(
        pg,
        "INSERT INTO sync_connections (name, vendor, creates, registered_at, "
        "consecutive_failures, credentials) VALUES ('mem', 'memory', false, now(), 0, 'unknown')",
    )
    sql(pg, "INSERT INTO tickets (title) VALUES ('a'), ('b')")
    marks = sql(
        pg,
        "SELECT ticket_id, version FROM ticket_dirty WHERE connection = 'mem' ORDER BY ticket_id",
    )
    assert len(marks) == 2
    other = pg.engine.connect()
    try:
        held = other.begin()
        other.execute(text("UPDATE tickets SET title = 'a2' WHERE id = :i"), {"i": marks[0][0]})
        with pg.write() as session:
            # a wait would last until ``held`` commits, below: the timeout would end it
            # with an error, however fast or slow the machine
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            store.clear_dirty_many(session, "mem", [tuple(m) for m in marks])
        held.commit()
    finally:
        other.close()
    # the held mark was bumped by its writer and stays; the other one is gone
    assert sql(pg, "SELECT ticket_id, version FROM ticket_dirty WHERE connection = 'mem'") == [
        (marks[0][0], marks[0][1] + 1)
    ]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_check_says_how_a_dead_instances_leases_move(mirror, db_url):
    from sync.coord.liveness import failover, pooled

    if mirror.dialect == "sqlite":
        assert failover(db_url) is None, "one instance per file: nothing moves"
        return
    assert not pooled(mirror), "a direct connection keeps its session"
    assert "at once when an instance dies" in (failover(db_url) or "")


@on_pg
def test_a_write_that_waits_while_the_lease_is_lost_never_reaches_the_vendor(pg):
    """The fence is checked as the write leaves, after its wait, not only before it."""
    reset_stores()
    connection = SimpleNamespace(name="mem", options={})
    adapter = MemoryAdapter(connection)
    adapter.store.seed(title="t", status="Open", priority="P3", queue="q")
    rules = SyncRules.build(FIELDS, {}, adapter.capabilities, direction="both", tie_break="local")
    now = [100.0]
    old = Lease(pg, "mem", 30, instance="host-a:1:aa", clock=lambda: now[0])
    assert old.acquire()

    def run_under(lease: Lease) -> RunResult:
        options = RunOptions(fence=lease, call_seconds=0.1)
        return asyncio.run(ConnectionRun(pg, "mem", adapter, rules, options=options).run())

    assert run_under(old).outcome == "ok"  # the import
    sql(pg, "UPDATE tickets SET status = 'closed'")
    taken: list[Lease] = []

    async def cool_down() -> None:  # the update waits past its lease; another instance takes over
        now[0] += 31
        expire(pg, "mem")
        new = Lease(pg, "mem", 30, instance="host-b:2:bb")
        assert new.acquire()
        taken.append(new)

    adapter.store.stall("update", cool_down)
    result = run_under(old)
    assert taken, "the write waited after its first fence check"
    assert result.outcome == "interrupted"
    assert isinstance(result.error, LeaseLost)
    assert adapter.store.writes() == [], "the update never reached the vendor"
    assert adapter.store.records["1001"].fields["status"] == "Open"
    reset_stores()
