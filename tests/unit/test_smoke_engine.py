from __future__ import annotations

import pytest

from sync.vendors.memory.adapter import reset_stores
from tests.unit.engine_helpers import links, sql, sync, tickets, vendor


@pytest.fixture(autouse=True)
def _stores():
    reset_stores()
    yield
    reset_stores()


def test_import_push_pull(mirror):
    v = vendor()
    a = v.seed(title="A", status="Open", priority="P3", queue="billing")
    r = sync(mirror)
    assert r.outcome == "ok", r.error
    assert r.counts.pulled == 1
    ((tid, t),) = tickets(mirror).items()
    assert t["status"] == "open"
    sql(mirror, "UPDATE tickets SET status='closed' WHERE id=:i", i=tid)
    r = sync(mirror)
    assert r.outcome == "ok", r.error
    assert r.counts.pushed == 1
    assert v.records[a].fields["status"] == "Closed"
    v.edit(a, priority="P1")
    r = sync(mirror)
    assert r.counts.pulled == 1
    assert tickets(mirror)[tid]["priority"] == "urgent"
    before = len(v.writes())
    r = sync(mirror)
    assert r.counts.as_dict() == {
        "pulled": 0,
        "pushed": 0,
        "created": 0,
        "conflicts": 0,
        "errors": 0,
        "future_dated": 0,
    }
    assert len(v.writes()) == before
    assert links(mirror) == {tid: a}
