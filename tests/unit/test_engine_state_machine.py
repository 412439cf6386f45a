"""A Hypothesis state machine for the engine (vdirsyncer's ``SyncMachine`` style,
docs/architecture.md §4).

Random local edits (raw SQL, as another program would make them), random remote edits
and seeds at the in-memory vendor, random faults (a failed or rejected update or create,
a lost reply, a failed pull), and sync runs in any order, some with the clock moved past
every backoff. At the end the faults are cleared and the
machine syncs until quiet, then checks:

- convergence: every linked ticket's synced fields agree on both sides, through the maps
  (the lossy status map counts ``on_hold`` and ``Pending`` as agreeing);
- no duplicate: every vendor ticket is linked exactly once, each create marker is at most
  once at the vendor, every mirror ticket the create rule selects is linked once;
- no lost edit: the last local and the last remote edit of every field, unless a later
  edit on the other side superseded it after it had synced, is either present on both
  sides or journaled as the loser of a conflict. The policy is ``newest`` with tie-break
  ``local``, so a losing edit is overwritten on purpose: "not lost" means its value is in
  the journal (a ``conflict`` entry whose note names the other side as the winner) and in
  the ``conflicts`` table, where an operator can find it and put it back. An edit that
  restores the value both sides last agreed on is no change at all (a state-based sync
  cannot tell it from none), and is not tracked;
- quiet: a further run makes zero vendor writes and zero mirror writes.

Both sides stamp edits from one logical clock (the vendor's, which ticks a second per
write), so ``newest`` sees the true order of the test's edits; a ticket the engine wrote
(a pull) carries the real time, later than any vendor time here, so it looks newest.

SQLite only: each example copies a migrated template file, for speed.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from sync.db import Mirror, migrate
from sync.engine.mapping import FieldMap, same_vendor_value
from sync.errors import ItemError, Retriable
from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import FIELDS, PRIORITY, STATUS, Clock, dump, sql, sync, vendor

NAME = "mem"
CREATE_WHEN = {"queue": ("billing",)}
EDITED = ("title", "status", "priority")
SYNCED = ("title", "status", "priority", "queue")
MAPS = {name: FieldMap(name, values) for name, values in FIELDS.items()}
LOCAL_VALUES = {
    "title": ("alpha", "beta", "gamma"),
    "status": tuple(STATUS),
    "priority": tuple(PRIORITY),
}
REMOTE_VALUES = {
    "title": ("alpha", "beta", "delta"),
    "status": ("Open", "Pending", "Closed"),
    "priority": tuple(PRIORITY.values()),
}
NO_BASE = object()
#: Few tickets, so that edits on both sides often meet on one field (conflicts).
MAX_TICKETS = 5
QUIET_TABLES = ("tickets", "ticket_links", "ticket_dirty", "journal", "conflicts")
FAULTS = (
    ("update", "fail", Retriable),
    ("update", "fail", ItemError),
    ("create", "fail", Retriable),
    ("create", "fail", ItemError),
    ("update", "lose", None),
    ("create", "lose", None),
    ("changed_since", "fail", Retriable),
)


@cache
def template() -> Path:
    """A migrated SQLite file, made once per test session and copied per example."""
    folder = Path(tempfile.mkdtemp(prefix="tsync-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "mirror.db"
    mirror = Mirror(f"sqlite:///{path}")
    migrate(mirror)
    mirror.dispose()
    return path


@dataclass
class Edit:
    """An edit not yet known to have settled: its value, and the journal before it."""

    value: str
    journal_id: int


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        reset_stores()
        self.folder = Path(tempfile.mkdtemp(prefix="tsync-sm-"))
        shutil.copy(template(), self.folder / "mirror.db")
        self.mirror = Mirror(f"sqlite:///{self.folder / 'mirror.db'}")
        self.vendor = vendor(NAME)
        self.clock = Clock()
        # pending (unsettled) edits: local by (ticket id, field), remote by (external id, field)
        self.local: dict[tuple[int, str], Edit] = {}
        self.remote: dict[tuple[str, str], Edit] = {}

    # -- helpers -------------------------------------------------------------------

    def run(self) -> Any:
        return sync(self.mirror, NAME, create_when=CREATE_WHEN, policy="newest", clock=self.clock)

    def journal_id(self) -> int:
        ((last,),) = sql(self.mirror, "SELECT coalesce(max(id), 0) FROM journal")
        return int(last)

    def stamp(self) -> str:
        """The next instant of the shared logical clock, in the mirror's text format."""
        return self.vendor.tick().strftime("%Y-%m-%d %H:%M:%S.%f")

    def base_value(self, column: str, key: Any, name: str, side: str) -> Any:
        """The link's base value of ``name`` on ``side``, or ``NO_BASE``."""
        rows = sql(
            self.mirror,
            f"SELECT base FROM ticket_links WHERE connection = :c AND {column} = :k",
            c=NAME,
            k=key,
        )
        if not rows:
            return NO_BASE
        entry = json.loads(rows[0][0]).get(name)
        return NO_BASE if entry is None else entry[side]

    def track(self, pending: dict[Any, Edit], key: tuple[Any, str], value: str, base: Any) -> None:
        """Note an edit; one that restores the last agreed value is no change at all."""
        if base is not NO_BASE and same_vendor_value(base, value):
            pending.pop(key, None)
        else:
            pending[key] = Edit(value, self.journal_id())

    def mirror_tickets(self) -> dict[int, dict[str, Any]]:
        rows = sql(self.mirror, f"SELECT id, {', '.join(SYNCED)} FROM tickets ORDER BY id")
        return {r[0]: dict(zip(SYNCED, r[1:], strict=True)) for r in rows}

    def links(self) -> dict[int, tuple[str | None, str]]:
        rows = sql(
            self.mirror,
            "SELECT ticket_id, external_id, state FROM ticket_links WHERE connection = :c",
            c=NAME,
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    def conflict_losers(self) -> list[tuple[int, int, str, str, str]]:
        """(journal id, ticket id, field, side, value) of every value that lost a conflict."""
        rows = sql(
            self.mirror,
            "SELECT id, ticket_id, field, old_value, new_value, note FROM journal"
            " WHERE action = 'conflict' ORDER BY id",
        )
        losers = []
        for jid, tid, name, local, remote, note in rows:
            if note.endswith(": remote"):
                losers.append((jid, tid, name, "local", local))
            elif note.endswith(": local"):
                losers.append((jid, tid, name, "remote", remote))
        return losers

    def settle(self) -> None:
        """Forget the edits that have settled: on both sides, or journaled as a loser."""
        mirror = self.mirror_tickets()
        records = self.vendor.records
        by_external = {e: t for t, (e, s) in self.links().items() if s == "active" and e}
        # a create whose reply was lost reached the vendor: its ticket carries the marker
        by_marker = {r.marker: e for e, r in records.items() if r.marker}
        for tid, marker in sql(
            self.mirror,
            "SELECT ticket_id, marker FROM ticket_links WHERE connection = :c"
            " AND state = 'creating'",
            c=NAME,
        ):
            if marker in by_marker:
                by_external[by_marker[marker]] = tid
        by_ticket = {t: e for e, t in by_external.items()}
        losers = self.conflict_losers()

        def lost(tid: int | None, name: str, side: str, edit: Edit) -> bool:
            """Journaled as the loser of a conflict seen after the edit was made."""
            return any(
                jid > edit.journal_id
                and (t, n, s) == (tid, name, side)
                and same_vendor_value(v, edit.value)
                for jid, t, n, s, v in losers
            )

        def on_both_sides(tid: int | None, name: str, value: str, side: str) -> bool:
            eid = by_ticket.get(tid) if tid is not None else None
            if tid is None or eid is None:
                return False
            local, remote = mirror[tid][name], records[eid].fields.get(name)
            if not same_vendor_value(MAPS[name].to_vendor(local), remote):
                return False
            if side == "local":
                return local == value
            return same_vendor_value(remote, value)

        for (tid, name), edit in list(self.local.items()):
            if on_both_sides(tid, name, edit.value, "local") or lost(tid, name, "local", edit):
                del self.local[(tid, name)]
        for (eid, name), edit in list(self.remote.items()):
            tid = by_external.get(eid)
            if on_both_sides(tid, name, edit.value, "remote") or lost(tid, name, "remote", edit):
                del self.remote[(eid, name)]

    # -- rules ---------------------------------------------------------------------

    @initialize(
        remote=st.integers(min_value=1, max_value=4), local=st.integers(min_value=0, max_value=2)
    )
    def start(self, remote: int, local: int) -> None:
        """A few tickets on each side, synced once: later edits have something to touch."""
        for i in range(remote):
            self.vendor.seed(title=f"r{i}", status="Open", priority="P3", queue="billing")
        for i in range(local):
            sql(
                self.mirror,
                "INSERT INTO tickets (title, status, priority, queue) VALUES (:t, 'open', 'low',"
                " 'billing')",
                t=f"l{i}",
            )
        assert self.run().outcome == "ok"

    @precondition(lambda self: bool(self.mirror_tickets()))
    @rule(data=st.data(), name=st.sampled_from(EDITED))
    def local_edit(self, data: st.DataObject, name: str) -> None:
        self.settle()
        tickets = self.mirror_tickets()
        tid = data.draw(st.sampled_from(sorted(tickets)), label="ticket")
        value = data.draw(st.sampled_from(LOCAL_VALUES[name]), label="value")
        sql(
            self.mirror,
            f"UPDATE tickets SET {name} = :v, updated_at = :t WHERE id = :i",
            v=value,
            t=self.stamp(),
            i=tid,
        )
        if tickets[tid]["queue"] == "billing":  # tickets outside the create rule never sync
            base = self.base_value("ticket_id", tid, name, "local")
            self.track(self.local, (tid, name), value, base)

    @precondition(lambda self: len(self.mirror_tickets()) < MAX_TICKETS)
    @rule(
        title=st.sampled_from(LOCAL_VALUES["title"]),
        status=st.sampled_from(LOCAL_VALUES["status"]),
        priority=st.sampled_from(LOCAL_VALUES["priority"]),
        billing=st.booleans(),
    )
    def local_insert(self, title: str, status: str, priority: str, billing: bool) -> None:
        queue = "billing" if billing else "support"
        ((tid,),) = sql(
            self.mirror,
            "INSERT INTO tickets (title, status, priority, queue, updated_at)"
            " VALUES (:a, :s, :p, :q, :t) RETURNING id",
            a=title,
            s=status,
            p=priority,
            q=queue,
            t=self.stamp(),
        )
        if billing:
            for name, value in (("title", title), ("status", status), ("priority", priority)):
                self.local[(tid, name)] = Edit(value, self.journal_id())

    def editable_records(self) -> list[str]:
        """Vendor tickets a remote edit may touch.

        Not one whose create reply was lost and is not recovered yet: on recovery the
        engine takes any value that differs from what the create sent for a part of the
        create that did not land (``_activate``, for two-call creates) and sends the
        mirror's value again, so an edit made in that window is overwritten. That known
        gap has its own test (``test_engine.py``, marked xfail).
        """
        unconfirmed = {
            marker
            for (marker,) in sql(
                self.mirror,
                "SELECT marker FROM ticket_links WHERE connection = :c AND state = 'creating'",
                c=NAME,
            )
        }
        return sorted(e for e, r in self.vendor.records.items() if r.marker not in unconfirmed)

    @precondition(lambda self: bool(self.editable_records()))
    @rule(data=st.data(), name=st.sampled_from(EDITED))
    def remote_edit(self, data: st.DataObject, name: str) -> None:
        self.settle()
        eid = data.draw(st.sampled_from(self.editable_records()), label="external id")
        value = data.draw(st.sampled_from(REMOTE_VALUES[name]), label="value")
        base = self.base_value("external_id", eid, name, "remote")
        self.vendor.edit(eid, **{name: value})
        self.track(self.remote, (eid, name), value, base)

    @precondition(lambda self: len(self.vendor.records) < MAX_TICKETS)
    @rule(
        title=st.sampled_from(REMOTE_VALUES["title"]),
        status=st.sampled_from(REMOTE_VALUES["status"]),
        priority=st.sampled_from(REMOTE_VALUES["priority"]),
    )
    def remote_seed(self, title: str, status: str, priority: str) -> None:
        eid = self.vendor.seed(title=title, status=status, priority=priority, queue="billing")
        for name, value in (("title", title), ("status", status), ("priority", priority)):
            self.remote[(eid, name)] = Edit(value, self.journal_id())

    @rule(fault=st.sampled_from(FAULTS))
    def fault(self, fault: tuple[str, str, Any]) -> None:
        method, kind, error = fault
        if kind == "lose":
            self.vendor.lose_reply(method)
        else:
            self.vendor.fail(method, error(f"injected {error.__name__} on {method}"))

    @rule(advance=st.booleans())
    def run_sync(self, advance: bool) -> None:
        if advance:  # past every backoff
            self.clock.now += timedelta(hours=2)
        result = self.run()
        assert result.outcome in ("ok", "failed"), result.error
        if result.outcome == "failed":
            assert isinstance(result.error, Retriable), result.error
        self.settle()

    # -- the end -------------------------------------------------------------------

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        return len(self.vendor.writes()), dump(self.mirror, QUIET_TABLES)

    def sync_until_quiet(self) -> None:
        self.vendor._faults.clear()
        for _ in range(8):
            before = self.snapshot()
            self.clock.now += timedelta(hours=2)
            result = self.run()
            assert result.outcome == "ok", result.error
            if self.snapshot() == before:
                return
        raise AssertionError("the engine did not go quiet within 8 runs")

    def check_converged(self) -> None:
        tickets = self.mirror_tickets()
        links = self.links()
        assert all(state == "active" for _, state in links.values()), links
        linked = {e: t for t, (e, _) in links.items()}
        records = self.vendor.records
        # every vendor ticket is linked once; every billing ticket has a vendor ticket
        assert sorted(linked) == sorted(records)
        assert {t for t, v in tickets.items() if v["queue"] == "billing"} <= set(links)
        markers = [r.marker for r in records.values() if r.marker is not None]
        assert len(markers) == len(set(markers)), markers
        for eid, tid in linked.items():
            for name in SYNCED:
                local, remote = tickets[tid][name], records[eid].fields.get(name)
                assert same_vendor_value(MAPS[name].to_vendor(local), remote), (
                    f"ticket #{tid} <-> {eid} {name}: local {local!r}, remote {remote!r}"
                )
        assert sql(self.mirror, "SELECT count(*) FROM conflicts WHERE resolution = 'pending'") == [
            (0,)
        ]

    def teardown(self) -> None:
        try:
            self.sync_until_quiet()
            self.check_converged()
            self.settle()
            assert self.local == {}, f"local edits lost: {self.local}"
            assert self.remote == {}, f"remote edits lost: {self.remote}"
            # a further run writes nothing anywhere
            before = self.snapshot()
            assert self.run().outcome == "ok"
            assert self.snapshot() == before
        finally:
            self.mirror.dispose()
            shutil.rmtree(self.folder, ignore_errors=True)
            reset_stores()


# Examples, derandomisation and deadline come from the profile (tests/conftest.py).
SyncMachine.TestCase.settings = settings(stateful_step_count=50)
TestSyncMachine = SyncMachine.TestCase
