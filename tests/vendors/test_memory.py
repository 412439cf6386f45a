"""The in-memory vendor (test-only) passes the adapter contract suite like the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from sync.config import parse_config
from sync.errors import Retriable
from sync.vendors.base import SYNC_FIELDS
from sync.vendors.memory.adapter import MemoryAdapter, MemoryVendor, reset_stores, store
from tests.vendors.contract import AdapterContract


class MemoryHandle:
    """The contract suite's handle on a ``MemoryVendor`` (tests/vendors/contract.py)."""

    has_modified_at = True
    missing_id = "999999"
    read_route = "get"
    write_route = "update"
    values: Mapping[str, tuple[str, str]] = {
        "title": ("Printer on fire", "Printer extinguished"),
        "description": ("It smokes.", "It no longer smokes."),
        "status": ("open", "closed"),
        "priority": ("normal", "high"),
        "queue": ("billing", "support"),
        "assignee": ("charlie", "erin"),
        "requester_email": ("carol@example.com", "dave@example.com"),
        "due_at": ("2030-01-02T03:04:05+00:00", "2031-02-03T04:05:06+00:00"),
    }
    create_values: Mapping[str, str] = {"title": "Created by ticketsync", "status": "open"}

    def __init__(self, vendor: MemoryVendor) -> None:
        self.vendor = vendor

    def seed(self, modified_ago: float = 0.0, **fields: Any) -> str:
        external_id = self.vendor.seed(**fields)
        self.vendor.records[external_id].modified_at -= timedelta(seconds=modified_ago)
        return external_id

    def edit(self, external_id: str, **fields: Any) -> None:
        self.vendor.edit(external_id, **fields)

    def fetch(self, external_id: str) -> Mapping[str, Any]:
        record = self.vendor.records[external_id]
        return {name: record.fields.get(name) for name in SYNC_FIELDS}

    def inject(self, kind: str, **params: Any) -> None:
        method = params.get("match", "get")
        times = params.get("times", 1)
        if kind == "revoke":
            self.vendor.revoke()
        elif kind == "status" and params.get("status") == 503:
            self.vendor.unavailable(method, times)
        elif kind in ("html200", "truncated"):
            self.vendor.garble(method, times)
        elif kind == "apply_then_drop":
            self.vendor.lose_reply(method, times)
        elif kind == "hostile":
            pytest.skip("the memory vendor has no wire: no hostile payloads")
        else:
            raise ValueError(f"the memory vendor has no fault {kind!r}")

    # -- comments: the memory vendor's reply states the visibility it was asked for, and
    # it has no switch to file comments otherwise, so the mismatch test is skipped
    checks_visibility = False
    comment_read_route = "list_comments"

    def add_comment(self, external_id: str, body: str, *, public: bool, ago: float) -> None:
        comment_id = self.vendor.comment(external_id, body, is_public=public)
        for comment in self.vendor.records[external_id].comments:
            if comment.id == comment_id:
                comment.created_at -= timedelta(seconds=ago)

    def stored_comments(self, external_id: str) -> list[tuple[str, bool | None]]:
        return [(c.body, c.is_public) for c in self.vendor.records[external_id].comments]

    def misfile_visibility(self) -> None:
        raise NotImplementedError("the memory vendor files comments as asked")

    def deviations(self) -> list[str]:
        """Calls the adapter contract does not know (the memory vendor has no wire)."""
        known = {"changed_since", "get", "update", "create", "find_marker", "check"}
        known |= {"list_comments", "post_comment"}
        return [f"unknown call {method}" for method, _ in self.vendor.calls if method not in known]


@pytest.fixture
def memory_store() -> Iterator[MemoryVendor]:
    reset_stores()
    yield store("memory-test")
    reset_stores()


class TestMemoryContract(AdapterContract):
    @pytest.fixture
    def adapter(self, memory_store: MemoryVendor) -> MemoryAdapter:
        data = {
            "connections": {"memory-test": {"vendor": "memory", "base_url": "http://127.0.0.1:9"}}
        }
        return MemoryAdapter(parse_config(data, env={}).connections["memory-test"])

    @pytest.fixture
    def vendor(self, memory_store: MemoryVendor) -> MemoryHandle:
        return MemoryHandle(memory_store)


def test_a_write_is_not_retried_when_the_vendor_is_unavailable(
    memory_store: MemoryVendor,
) -> None:
    data = {"connections": {"m": {"vendor": "memory", "base_url": "http://127.0.0.1:9"}}}
    adapter = MemoryAdapter(parse_config(data, env={}).connections["m"])
    adapter.store.unavailable("update")
    external_id = adapter.store.seed(title="a")
    with pytest.raises(Retriable):
        asyncio.run(adapter.update(external_id, {"title": "b"}))
    assert adapter.store.records[external_id].fields["title"] == "a"


def test_reads_give_up_after_max_attempts(memory_store: MemoryVendor) -> None:
    data = {
        "connections": {
            "m": {"vendor": "memory", "base_url": "http://127.0.0.1:9", "http": {"max_attempts": 2}}
        }
    }
    adapter = MemoryAdapter(parse_config(data, env={}).connections["m"])
    external_id = adapter.store.seed(title="a")
    adapter.store.unavailable("get", times=2)
    with pytest.raises(Retriable):
        asyncio.run(adapter.get(external_id))
    assert [c for c in adapter.store.calls if c[0] == "get"] == [("get", external_id)] * 2
