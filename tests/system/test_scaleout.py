"""Several daemons on one PostgreSQL database (issue 14): spread, takeover, fencing, recovery.

Real ``ticketsync run`` subprocesses against vendor emulator processes (two Zoho Desk, two
Sirportly; one connection each). "Reached the vendor exactly once" is judged from the
emulators' request logs: per ticket, the update requests the vendor answered with 2xx.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.system.conftest import ROOT, run_cli
from tests.system.harness import (
    PLUGINS,
    Setup,
    VendorPlugin,
    VendorProcess,
    assert_converged,
    prepare_pending,
)

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

LEASE_S = 3.0
INTERVAL_S = 0.5
#: Takeover bound of a paused holder: the lease expires, then the next run (interval plus
#: its 10% jitter) of a survivor takes it; plus the time a loaded 2-core machine takes to
#: run it.
TAKEOVER_BOUND_S = LEASE_S + INTERVAL_S * 1.1 + 2.0
#: A killed holder's session ends with it, and its liveness lock too: a survivor takes its
#: connections on its next run, with no wait for the lease (docs/architecture.md §8.4).
KILLED_BOUND_S = 2.0 + INTERVAL_S * 1.1
#: The lease of the SIGKILL test: long, so a takeover that waited for it would show.
KILLED_LEASE_S = 15.0
#: How long a test waits for daemons to start, import, spread or push before it fails. It
#: bounds failing tests only (a passing one moves on as soon as the state is reached), so it
#: allows for a loaded machine: three daemons starting on two busy cores took over 25 s.
WAIT_S = 120.0
VENDORS = ("zoho_desk", "zoho_desk", "sirportly", "sirportly")
TICKETS_PER_CONNECTION = 3


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Connection:
    """One connection: its emulator process and how to read its writes."""

    def __init__(self, name: str, plugin: VendorPlugin, vendor: VendorProcess) -> None:
        self.name = name
        self.plugin = plugin
        self.vendor = vendor

    def block(self, concurrency: int) -> dict[str, Any]:
        block = self.plugin.connection(self.vendor)
        block.pop("create")  # no fan-out: each mirror ticket belongs to one connection
        block["http"] = {**block["http"], "total_timeout": LEASE_S - 0.5}  # below any lease
        block["http"]["concurrency"] = concurrency
        return block

    def applied_updates(self) -> collections.Counter[str]:
        """Ticket id -> update requests the vendor answered with 2xx."""
        method, path = self.plugin.writes[0]
        found: collections.Counter[str] = collections.Counter()
        for entry in self.vendor.log():
            if entry["method"] != method or not entry["path"].startswith(path):
                continue
            if entry["status"] is None or not 200 <= entry["status"] < 300:
                continue
            body = entry["body"] if isinstance(entry["body"], dict) else {}
            found[str(body.get("ticket") or entry["path"].rsplit("/", 1)[-1])] += 1
        return found

    def writes(self) -> int:
        return sum(
            1
            for e in self.vendor.log()
            if any(e["method"] == m and e["path"].startswith(p) for m, p in self.plugin.writes)
        )


@pytest.fixture(scope="module")
def vendors() -> Iterator[list[VendorProcess]]:
    """The emulator processes, shared by the tests of this file (reset before each)."""
    started = [VendorProcess(v) for v in VENDORS]
    try:
        yield started
    finally:
        for vendor in started:
            vendor.stop()


class Cluster:
    """A mirror on PostgreSQL, one config per instance, and the daemons running on it."""

    def __init__(
        self,
        db_url: str,
        tmp: Path,
        vendors: list[tuple[str, VendorProcess]],
        concurrency: int = 4,
        lease: float = LEASE_S,
    ) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.engine = create_engine(db_url)
        self.connections = [
            Connection(f"c{i}", PLUGINS[kind], vendor) for i, (kind, vendor) in enumerate(vendors)
        ]
        self.concurrency = concurrency
        self.lease = lease
        self.daemons: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        #: Prefix of this cluster's ``application_name``s: the server's sessions are seen by
        #: every test (other xdist workers, other checkouts), so names must not repeat.
        self.tag = f"ts-{secrets.token_hex(4)}"
        for c in self.connections:
            c.vendor.call("POST", "/_sandbox/reset")
            c.vendor.seed(*(c.plugin.remote_ticket(i) for i in range(TICKETS_PER_CONNECTION)))

    def config(self, index: int) -> Path:
        """Instance ``index``'s config: the same for every instance but for its
        ``application_name``, so a test can find its database sessions."""
        url = make_url(self.db_url).update_query_dict({"application_name": f"{self.tag}-{index}"})
        data = {
            "database": {"url": url.render_as_string(hide_password=False)},
            "sync": {
                "interval": INTERVAL_S,
                "lease_seconds": self.lease,
                "lookback_seconds": 5,
                "state_dir": str(self.tmp),
                "guard": {"share": 1.0, "min_count": 1000},
            },
            "connections": {c.name: c.block(self.concurrency) for c in self.connections},
        }
        path = self.tmp / f"config-{index}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start(self, count: int) -> None:
        """Start ``count`` more daemons (the first migrates the database)."""
        if not self.daemons:
            result = run_cli("--config", str(self.config(0)), "db", "upgrade")
            assert result.returncode == 0, result.stderr
        for _ in range(count):
            index = len(self.daemons)
            log = self.tmp / f"daemon-{index}.log"
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            with log.open("w") as out:
                self.daemons.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "sync", "--config", str(self.config(index)), "run"],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
            self.logs.append(log)

    def stop(self) -> None:
        for proc in self.daemons:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=10)
        self.engine.dispose()

    def sql(self, statement: str, *params: Any) -> list[Any]:
        with self.engine.begin() as conn:
            result = conn.exec_driver_sql(statement, tuple(params))
            return list(result) if result.returns_rows else []

    def now(self) -> datetime:
        """The database's clock: takeovers are timed on it, from the rows the daemons wrote,
        so a test process slowed by a loaded machine does not add its own delays."""
        return self.sql("SELECT clock_timestamp()")[0][0]

    def taken_after(self, since: datetime, connections: list[Connection]) -> float:
        """Seconds from ``since`` until the last of ``connections`` was taken over."""
        names = [c.name for c in connections]
        taken = self.sql(
            "SELECT max(acquired_at) FROM sync_leases WHERE connection = ANY(%s)", names
        )[0][0]
        return (taken - since).total_seconds()

    def holders(self) -> dict[str, int]:
        """Connection -> pid of the instance whose lease is current."""
        rows = self.sql("SELECT connection, pid FROM sync_leases WHERE expires_at > now()")
        return dict(rows)

    def by_daemon(self) -> collections.Counter[int]:
        return collections.Counter(self.holders().values())

    def imported(self) -> bool:
        rows = self.sql("SELECT connection, count(*) FROM ticket_links GROUP BY connection")
        return dict(rows) == {c.name: TICKETS_PER_CONNECTION for c in self.connections}

    def spread(self) -> bool:
        """Every connection held, by every daemon, no daemon two more than another."""
        counts = self.by_daemon()
        live = [p.pid for p in self.daemons if p.poll() is None]
        held = [counts.get(pid, 0) for pid in live]
        return sum(held) == len(self.connections) and max(held) - min(held) <= 1 and min(held) > 0

    def tickets_of(self, connection: Connection) -> list[tuple[int, str]]:
        return self.sql(
            "SELECT ticket_id, external_id FROM ticket_links WHERE connection = %s ORDER BY 1",
            connection.name,
        )

    def edit(self, connection: Connection, status: str = "closed") -> list[str]:
        """Edit every mirror ticket of ``connection`` as another program would; their ids."""
        links = self.tickets_of(connection)
        ids = ",".join(str(t) for t, _ in links)
        self.sql(f"UPDATE tickets SET status = %s WHERE id IN ({ids})", status)
        return [e for _, e in links]

    def arrived(self, connection: Connection, external_ids: list[str], status: str) -> bool:
        remote = {str(t[connection.plugin.id_key]): t for t in connection.vendor.tickets()}
        return all(connection.plugin.local_of(remote[e]) == status for e in external_ids)

    def log_of(self, proc: subprocess.Popen[str]) -> str:
        return self.logs[self.daemons.index(proc)].read_text()


@pytest.fixture
def cluster(db_url: str, tmp_path: Path, vendors: list[VendorProcess]) -> Iterator[Cluster]:
    made = Cluster(db_url, tmp_path, list(zip(VENDORS, vendors, strict=True)))
    try:
        yield made
    finally:
        made.stop()


def _assert_exactly_once(cluster: Cluster, edited: dict[str, list[str]]) -> None:
    for connection in cluster.connections:
        updates = connection.applied_updates()
        for external_id in edited.get(connection.name, []):
            assert updates[str(external_id)] == 1, (connection.name, external_id, updates)


def _edit_all(cluster: Cluster, status: str = "closed") -> dict[str, list[str]]:
    edited = {c.name: cluster.edit(c, status) for c in cluster.connections}
    _wait(
        lambda: all(cluster.arrived(c, edited[c.name], status) for c in cluster.connections),
        WAIT_S,
        "every edit at its vendor",
    )
    return edited


def test_two_daemons_spread_and_push_every_edit_once(cluster):
    cluster.start(2)
    _wait(cluster.imported, WAIT_S, "the import")
    _wait(cluster.spread, WAIT_S, "two connections per daemon")
    edited = _edit_all(cluster)
    time.sleep(2 * INTERVAL_S + 1)  # later runs of either daemon would show a repeat
    _assert_exactly_once(cluster, edited)
    status = run_cli("--config", str(cluster.config(0)), "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    holders = collections.Counter(c["holder"]["pid"] for c in data["connections"].values())
    assert holders == {p.pid: 2 for p in cluster.daemons}
    assert sorted(i["pid"] for i in data["instances"]) == sorted(p.pid for p in cluster.daemons)
    for proc in cluster.daemons:
        assert "Traceback" not in cluster.log_of(proc)


def test_sigkill_the_holder_its_connections_move_at_once(db_url, tmp_path, vendors):
    cluster = Cluster(
        db_url, tmp_path, list(zip(VENDORS, vendors, strict=True)), lease=KILLED_LEASE_S
    )
    try:
        _sigkill_scenario(cluster)
    finally:
        cluster.stop()


def _sigkill_scenario(cluster: Cluster) -> None:
    cluster.start(3)
    _wait(cluster.imported, WAIT_S, "the import")
    _wait(cluster.spread, WAIT_S, "the connections spread over three daemons")
    victim = max(cluster.daemons, key=lambda p: cluster.by_daemon()[p.pid])
    theirs = [c for c in cluster.connections if cluster.holders()[c.name] == victim.pid]
    for c in theirs:  # slow replies, so the kill lands while pushes are in flight
        c.vendor.call("POST", "/_sandbox/config", {"latency": 0.3})
    edited = {c.name: cluster.edit(c) for c in theirs}
    _wait(lambda: all(c.writes() for c in theirs), WAIT_S, "the victim's first pushes")
    victim.kill()
    killed = cluster.now()
    _wait(
        lambda: all(cluster.holders().get(c.name) not in (None, victim.pid) for c in theirs),
        WAIT_S,
        "the takeover",
    )
    took = cluster.taken_after(killed, theirs)
    print(
        f"takeover of {len(theirs)} connection(s) {took:.1f}s after SIGKILL "
        f"(lease {KILLED_LEASE_S}s, interval {INTERVAL_S}s)"
    )
    assert took <= KILLED_BOUND_S, f"takeover took {took:.1f}s"
    _wait(
        lambda: all(cluster.arrived(c, edited[c.name], "closed") for c in theirs),
        WAIT_S,
        "the victim's edits at the vendors",
    )
    for c in theirs:
        c.vendor.call("POST", "/_sandbox/config", {"latency": 0})
    # and the survivors go on: a second round of edits on every connection, once each
    before = {c.name: c.applied_updates() for c in cluster.connections}
    time.sleep(2 * INTERVAL_S)
    _assert_exactly_once(cluster, edited)
    again = _edit_all(cluster, "pending")
    for c in cluster.connections:
        after = c.applied_updates()
        for external_id in again[c.name]:
            assert after[external_id] - before[c.name][external_id] == 1, (c.name, external_id)


def test_sigstop_past_the_lease_the_stale_run_writes_nothing(db_url, tmp_path, vendors):
    pairs = [(VENDORS[0], vendors[0]), (VENDORS[2], vendors[2])]
    cluster = Cluster(db_url, tmp_path, pairs, concurrency=1)
    try:
        _sigstop_scenario(cluster)
    finally:
        cluster.stop()


def _mirror_state(cluster: Cluster) -> list[Any]:
    return [
        cluster.sql("SELECT id, status, updated_at FROM tickets ORDER BY id"),
        cluster.sql("SELECT ticket_id, connection, base, state FROM ticket_links ORDER BY 1, 2"),
        cluster.sql("SELECT count(*), max(id) FROM journal"),
        cluster.sql("SELECT connection, ticket_id, version FROM ticket_dirty ORDER BY 1, 2"),
    ]


def _sigstop_scenario(cluster: Cluster) -> None:
    cluster.start(2)
    _wait(cluster.imported, WAIT_S, "the import")
    _wait(cluster.spread, WAIT_S, "one connection per daemon")
    target = cluster.connections[0]
    holder = next(p for p in cluster.daemons if p.pid == cluster.holders()[target.name])
    target.vendor.call("POST", "/_sandbox/config", {"latency": 1.0})
    edited = cluster.edit(target)
    _wait(target.writes, WAIT_S, "the holder's first push")
    holder.send_signal(signal.SIGSTOP)
    _wait(
        lambda: cluster.holders().get(target.name) not in (None, holder.pid),
        WAIT_S,
        "the other daemon to take over",
    )
    _wait(lambda: cluster.arrived(target, edited, "closed"), WAIT_S, "the edits at the vendor")
    _wait(
        lambda: not cluster.sql("SELECT 1 FROM ticket_dirty WHERE connection = %s", target.name),
        WAIT_S,
        "the new holder to commit",
    )
    target.vendor.call("POST", "/_sandbox/config", {"latency": 0})
    state, writes = _mirror_state(cluster), target.writes()
    woke = datetime.now(UTC).isoformat()
    holder.send_signal(signal.SIGCONT)
    _wait(lambda: "lease lost" in cluster.log_of(holder), WAIT_S, "the woken daemon to notice")
    time.sleep(2.0)  # room for a stale write to land, were one to be sent
    assert _mirror_state(cluster) == state, "the stale run committed nothing"
    assert holder.poll() is None, "the woken daemon goes on"
    # The send fence is checked inside the concurrency gate: pushes queued at the gate
    # when the process stopped are fenced on waking, not sent.
    stale = [(e["method"], e["path"]) for e in target.vendor.log() if e["at"] > woke]
    assert target.writes() == writes, f"the stale run sent nothing to the vendor: {stale}"
    assert target.applied_updates() == {e: 1 for e in edited}


def test_terminated_database_sessions_recover_by_themselves(cluster):
    cluster.start(2)
    _wait(cluster.imported, WAIT_S, "the import")
    _wait(cluster.spread, WAIT_S, "two connections per daemon")
    victim = cluster.daemons[0]
    theirs = [c for c in cluster.connections if cluster.holders()[c.name] == victim.pid]
    for _ in range(3):
        killed = cluster.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            f"{cluster.tag}-0",
        )
        assert killed[0][0] >= 1, "the daemon had sessions to terminate"
        time.sleep(0.7)
    mark = cluster.sql("SELECT coalesce(max(id), 0) FROM runs")[0][0]
    edited = _edit_all(cluster)
    time.sleep(2 * INTERVAL_S + 1)
    _assert_exactly_once(cluster, edited)
    assert victim.poll() is None, "the daemon survived"
    # Its liveness session was among those terminated, so it lost its leases (another
    # instance could have taken them at once); it takes a new lock and its share again.
    _wait(cluster.spread, WAIT_S, "two connections per daemon again")
    theirs = [c for c in cluster.connections if cluster.holders()[c.name] == victim.pid]

    def synced_since() -> bool:
        rows = cluster.sql(
            "SELECT DISTINCT connection FROM runs WHERE outcome = 'ok' AND id > %s", mark
        )
        return {c.name for c in theirs} <= {r[0] for r in rows}

    _wait(synced_since, WAIT_S, "ok runs of each of its connections")  # it keeps syncing them


def test_a_run_once_right_after_a_sigkilled_pass_proceeds(db_url, tmp_path):
    """A killed pass holds nothing: its session, and its liveness lock, died with it."""
    setup = Setup(PLUGINS["zoho_desk"], tmp_path, db_url=db_url)
    try:
        config = yaml.safe_load(setup.config.read_text())
        config["sync"]["lease_seconds"] = 60  # the killed pass's lease is current throughout
        setup.config.write_text(yaml.safe_dump(config))
        prepare_pending(setup)
        killed = setup.run(env={"TICKETSYNC_CRASH_AT": "after_vendor_ack"})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        ((generation, current),) = setup.sql(
            "SELECT generation, expires_at > now() FROM sync_leases"
        )
        assert current, "the killed pass's lease has not expired"
        again = setup.run()
        assert again.returncode == 0, again.stderr
        assert setup.sql("SELECT generation FROM sync_leases") == [(generation + 1,)]
        assert setup.run().returncode == 0
        assert_converged(setup)
    finally:
        setup.stop()
