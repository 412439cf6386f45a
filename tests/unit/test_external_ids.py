"""Ids compare through ``Adapter.id_key`` (docs/architecture.md §7.9): one vendor ticket, however
it is spelt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from types import SimpleNamespace

from sync.engine.context import SyncRules
from sync.engine.run import ConnectionRun
from sync.vendors.base import Cursor, Page
from sync.vendors.memory.adapter import MemoryAdapter, reset_stores
from tests.unit.engine_helpers import FIELDS, links, sql


class ZeroPadded(MemoryAdapter):
    """Spells ids "00" + id on the first pull and bare afterwards, like a vendor whose
    create reply and list disagree; ``id_key`` strips the zeros."""

    padded = True

    def id_key(self, external_id: str) -> str:
        return external_id.lstrip("0") or "0"

    async def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        async for page in super().changed_since(cursor, watch):
            if ZeroPadded.padded:
                page = Page(
                    [replace(t, external_id="00" + t.external_id) for t in page.tickets],
                    page.cursor,
                )
            yield page


def _run(mirror) -> None:
    adapter = ZeroPadded(SimpleNamespace(name="pp", options={}))
    rules = SyncRules.build(FIELDS, {}, adapter.capabilities, direction="both", tie_break="local")
    result = asyncio.run(ConnectionRun(mirror, "pp", adapter, rules).run())
    assert result.ok, result.error


def test_a_respelt_id_is_the_same_ticket(mirror):
    reset_stores()
    adapter = ZeroPadded(SimpleNamespace(name="pp", options={}))
    external = adapter.store.seed(title="t", status="Open", priority="P3", queue="q")
    _run(mirror)
    assert links(mirror, "pp") == {1: "00" + external}
    ZeroPadded.padded = False
    try:
        adapter.store.edit(external, priority="P1")
        _run(mirror)
    finally:
        ZeroPadded.padded = True
    assert sql(mirror, "SELECT count(*) FROM tickets") == [(1,)], "no duplicate import"
    assert sql(mirror, "SELECT priority FROM tickets") == [("urgent",)]
    assert links(mirror, "pp") == {1: "00" + external}, "the vendor's first spelling is kept"
    reset_stores()
