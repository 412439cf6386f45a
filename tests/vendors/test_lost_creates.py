"""Lost create replies against the emulators, with an injected clock (docs/architecture.md §8.4).

A create whose reply is lost is sent again only when the vendor is known not to hold it:
Zoho after one read of its ticket list (which no search-index lag can hide), Kapture and
ProProfs after two looks at least the lookback apart, Sirportly after two complete pulls
as far apart. No test sleeps through a lookback: the engine's clock is moved instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sync.config import parse_config
from sync.db import Mirror
from sync.db.migrate import migrate
from sync.engine.guard import Guard
from sync.engine.run import ConnectionRun, RunOptions, RunResult
from sync.runner import build_adapter, build_rules
from sync.sandbox.base import Emulator
from sync.sandbox.kapture import KaptureEmulator
from sync.sandbox.proprofs import ProProfsEmulator
from sync.sandbox.sirportly import SirportlyEmulator
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.vendors.base import Adapter
from tests.system.harness import PLUGINS
from tests.unit.engine_helpers import Clock, insert_ticket, sql

EMULATORS: dict[str, Callable[[], Emulator]] = {
    "zoho_desk": ZohoDeskEmulator,
    "kapture": KaptureEmulator,
    "proprofs": ProProfsEmulator,
    "sirportly": SirportlyEmulator,
}
LOOKBACK = 300.0


@dataclass
class Rig:
    """One vendor's emulator, a SQLite mirror and a connection, run with a settable clock."""

    vendor: str
    emulator: Emulator
    mirror: Mirror
    adapter: Adapter
    runs: Callable[[], ConnectionRun]
    clock: Clock

    @property
    def create_route(self) -> str:
        return PLUGINS[self.vendor].routes["create"]

    def creates_sent(self) -> int:
        method, _, path = self.create_route.partition(" ")
        return len(self.emulator.requests(method, path))

    def tickets(self) -> int:
        return len(self.emulator.tickets)

    def link_state(self, ticket_id: int) -> str:
        ((state,),) = sql(
            self.mirror, "SELECT state FROM ticket_links WHERE ticket_id = :t", t=ticket_id
        )
        return str(state)

    async def run(self, advance: float = 1.0) -> RunResult:
        """One run, the clock moved ``advance`` seconds past both itself and real time (the
        intent's ``created_at`` is real time)."""
        from sync.db.models import utcnow

        self.clock.now = max(self.clock.now, utcnow()) + timedelta(seconds=advance)
        return await self.runs().run()

    def lose_next_create(self, applied: bool) -> None:
        """The next create's reply is lost; the ticket is created when ``applied``."""
        kind = "apply_then_drop" if applied else "drop"
        self.emulator.inject(kind, match=self.create_route)


@pytest.fixture(params=sorted(EMULATORS))
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    vendor = request.param
    emulator = EMULATORS[vendor]()
    await emulator.start()
    block: dict[str, Any] = PLUGINS[vendor].connection(SimpleNamespace(url=emulator.base_url))  # type: ignore[arg-type]
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    data = {
        "database": {"url": url},
        "sync": {"state_dir": str(tmp_path), "lookback_seconds": LOOKBACK},
        "connections": {"v": block},
    }
    config = parse_config(data, env={})
    connection = config.connections["v"]
    mirror = Mirror(url)
    migrate(mirror)
    adapter = build_adapter(connection, tmp_path, lookback_seconds=LOOKBACK)
    clock = Clock()
    create_when = dict(connection.create_when) if connection.create_when is not None else None

    def runs() -> ConnectionRun:
        return ConnectionRun(
            mirror,
            "v",
            adapter,
            build_rules(connection, config, adapter),
            direction=connection.direction,
            create_when=create_when,
            options=RunOptions(guard=Guard(1.0, 10**6)),
            clock=clock,
        )

    rig = Rig(vendor, emulator, mirror, adapter, runs, clock)
    try:
        assert (await rig.run()).outcome == "ok"  # the first import: nothing at the vendor
        yield rig
    finally:
        await adapter.aclose()
        mirror.dispose()
        await emulator.stop()


def _local_create(rig: Rig) -> int:
    return insert_ticket(
        rig.mirror,
        title="Lost reply",
        status="open",
        priority="normal",
        queue="billing",
        requester_email="lost@example.com",
    )


async def test_a_lost_create_that_never_landed_is_sent_again_only_when_known_absent(
    rig: Rig,
) -> None:
    ticket_id = _local_create(rig)
    rig.lose_next_create(applied=False)
    await rig.run()
    assert (rig.creates_sent(), rig.tickets(), rig.link_state(ticket_id)) == (1, 0, "creating")

    await rig.run()  # the first look (or complete pull) misses it
    if rig.adapter.capabilities.one_look:
        # one read of the ticket list settles it: sent again at once
        assert (rig.creates_sent(), rig.link_state(ticket_id)) == (2, "active")
    else:
        assert rig.creates_sent() == 1, "sent again after one empty look"
        await rig.run(advance=LOOKBACK / 2)  # a second look too soon proves nothing
        assert rig.creates_sent() == 1, "sent again before a lookback had passed"
        await rig.run(advance=LOOKBACK)  # two misses, a lookback apart: sent again
        assert (rig.creates_sent(), rig.link_state(ticket_id)) == (2, "active")
    assert rig.tickets() == 1


async def test_a_lost_create_that_landed_is_found_never_sent_again(rig: Rig) -> None:
    ticket_id = _local_create(rig)
    rig.lose_next_create(applied=True)
    await rig.run()
    assert (rig.creates_sent(), rig.tickets()) == (1, 1)
    for advance in (1.0, LOOKBACK, LOOKBACK):
        await rig.run(advance=advance)
    assert (rig.creates_sent(), rig.tickets(), rig.link_state(ticket_id)) == (1, 1, "active")


@pytest.mark.parametrize("rig", ["zoho_desk"], indirect=True)
async def test_zoho_settles_in_one_look_whatever_the_search_index_lag(rig: Rig) -> None:
    rig.emulator.configure(search_lag=3600)  # the search would miss the new ticket for an hour
    ticket_id = _local_create(rig)
    rig.lose_next_create(applied=True)
    await rig.run()
    await rig.run()  # one look, through the list: found
    assert (rig.creates_sent(), rig.tickets(), rig.link_state(ticket_id)) == (1, 1, "active")
    looks = [
        e for e in rig.emulator.requests("GET", "/api/v1/tickets") if e["path"] == "/api/v1/tickets"
    ]
    assert looks and all(e["query"]["sortBy"] == "-createdTime" for e in looks)
    assert rig.emulator.deviations() == []
