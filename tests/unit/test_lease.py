"""Leases and fencing on PostgreSQL (design §3.4, §7.3)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from sync.db import Mirror
from sync.engine.context import SyncRules
from sync.engine.run import ConnectionRun, RunOptions
from sync.errors import LeaseLost
from sync.lease import Lease
from sync.vendors.memory import MemoryAdapter, reset_stores
from tests.unit.engine_helpers import FIELDS, sql

# Leases are for PostgreSQL: SQLite has one instance per database file (the file lock).
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def pg(mirror: Mirror) -> Mirror:
    return mirror


def test_one_holder_at_a_time_and_takeover_after_expiry(pg):
    a = Lease(pg, "zoho", 0.5, instance="host-a:1:aa")
    b = Lease(pg, "zoho", 0.5, instance="host-b:2:bb")
    assert a.acquire()
    assert not b.acquire(), "a live lease is exclusive"
    assert a.acquire(), "the holder may take it again"
    assert a.generation == 1
    time.sleep(0.6)
    assert b.acquire(), "an expired lease is taken over"
    assert b.generation == 2
    assert not a.renew(), "the old holder cannot renew"


def test_a_superseded_holder_cannot_commit(pg):
    a = Lease(pg, "zoho", 0.3, instance="host-a:1:aa")
    assert a.acquire()
    with pg.write() as session:
        a.before_commit(session)  # current: fine
    time.sleep(0.4)
    assert Lease(pg, "zoho", 5, instance="host-b:2:bb").acquire()
    with pytest.raises(LeaseLost), pg.write() as session:
        session.execute(text("INSERT INTO tickets (title) VALUES ('stale')"))
        a.before_commit(session)
    assert sql(pg, "SELECT count(*) FROM tickets") == [(0,)], "rolled back"


def test_no_vendor_write_when_the_lease_cannot_outlast_the_call(pg):
    lease = Lease(pg, "zoho", 2.0, instance="host-a:1:aa")
    assert lease.acquire()
    lease.before_send(1.0)
    with pytest.raises(LeaseLost):
        lease.before_send(5.0)


def test_a_run_that_lost_its_lease_writes_nothing(pg):
    reset_stores()
    connection = SimpleNamespace(name="mem", options={})
    adapter = MemoryAdapter(connection)
    for i in range(3):
        adapter.store.seed(title=f"t{i}", status="Open", priority="P3", queue="q")
    stale = Lease(pg, "mem", 0.3, instance="host-a:1:aa")
    assert stale.acquire()
    time.sleep(0.4)
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


def test_heartbeat_keeps_a_long_run_leased(pg):
    lease = Lease(pg, "zoho", 0.6, instance="host-a:1:aa")

    async def long_run() -> None:
        assert lease.acquire()
        lease.start_heartbeat()
        await asyncio.sleep(1.5)
        with pg.write() as session:
            lease.before_commit(session)
        await lease.stop_heartbeat()

    asyncio.run(long_run())
    assert not Lease(pg, "zoho", 0.6, instance="host-b:2:bb").acquire()
