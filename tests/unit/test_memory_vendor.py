"""The in-memory vendor's faults do what the engine's tests rely on."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from sync.errors import ItemError, Retriable
from sync.vendors.memory.adapter import MemoryAdapter, reset_stores


@pytest.fixture
def adapter():
    reset_stores()
    yield MemoryAdapter(SimpleNamespace(name="m", options={}))
    reset_stores()


def test_fail_on_the_nth_call(adapter):
    a = adapter.store.seed(title="a")
    adapter.store.fail("update", ItemError("no"), after=2)
    for _ in range(2):
        asyncio.run(adapter.update(a, {"title": "ok"}))
    with pytest.raises(ItemError):
        asyncio.run(adapter.update(a, {"title": "third"}))
    asyncio.run(adapter.update(a, {"title": "fourth"}))
    assert adapter.store.records[a].fields["title"] == "fourth"


def test_lost_reply_applies_the_write(adapter):
    a = adapter.store.seed(title="a")
    adapter.store.lose_reply("update")
    with pytest.raises(Retriable):
        asyncio.run(adapter.update(a, {"title": "b"}))
    assert adapter.store.records[a].fields["title"] == "b"


def test_stale_get_answers_the_previous_state(adapter):
    a = adapter.store.seed(title="a")
    adapter.store.edit(a, title="b")
    adapter.store.stale()
    stale = asyncio.run(adapter.get(a))
    assert stale is not None and stale.fields["title"] == "a"
    fresh = asyncio.run(adapter.get(a))
    assert fresh is not None and fresh.fields["title"] == "b"
