"""The cursor follows the vendor's clock (docs/architecture.md §8.2, ``sync.vendors.cursor``).

Against the emulators, whose ``Date`` header comes from a clock the test sets: after a burst
of 1,000 tickets changed within one second, an idle run costs the API minimum once the
burst is older than the lookback (Zoho one search, ProProfs one list call, Sirportly one
SPQL query); a ticket dated in the future never moves the cursor; cursors stored before the
rule are still read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.config import ConnectionConfig
from sync.http import HttpClient
from sync.sandbox.base import Emulator
from sync.sandbox.proprofs import ProProfsEmulator
from sync.sandbox.sirportly import SirportlyEmulator
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.sandbox.zoho_desk_data import iso_ms
from sync.vendors.base import Adapter, AdapterContext, adapter_class
from sync.vendors.cursor import CursorRule
from sync.vendors.zoho_desk.mapping import parse_time
from tests.vendors.conftest import zoho_connection
from tests.vendors.contract import pull
from tests.vendors.test_proprofs import proprofs_connection
from tests.vendors.test_sirportly import sirportly_connection

BURST = 1_000
LOOKBACK = 300


class SetClock:
    """The emulator's clock: stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Vendor:
    emulator: type[Emulator]
    connection: Callable[..., ConnectionConfig]
    #: (method, path prefix) of the one request an idle run may make.
    minimum: tuple[str, str]


VENDORS = {
    "zoho_desk": Vendor(ZohoDeskEmulator, zoho_connection, ("GET", "/api/v1/tickets/search")),
    "proprofs": Vendor(ProProfsEmulator, proprofs_connection, ("POST", "/app/api/v1/list/ticket")),
    "sirportly": Vendor(SirportlyEmulator, sirportly_connection, ("POST", "/api/v2/tickets/spql")),
}


@pytest.fixture(params=sorted(VENDORS))
async def setup(request: Any) -> AsyncIterator[tuple[Vendor, Emulator, Adapter, SetClock]]:
    vendor = VENDORS[request.param]
    emulator = vendor.emulator()
    clock = SetClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2))
    emulator.clock = clock
    await emulator.start()
    connection = vendor.connection(emulator)

    def http(url: str) -> HttpClient:
        return HttpClient(connection.name, url, connection.http)

    context = AdapterContext(http=http, lookback_seconds=LOOKBACK)
    adapter = adapter_class(connection.vendor)(connection, context)
    yield vendor, emulator, adapter, clock
    await adapter.aclose()
    await emulator.stop()


def burst(emulator: Emulator, clock: SetClock) -> None:
    """1,000 tickets changed within one second, at the clock's time."""
    start = clock.now
    for i in range(BURST):
        clock.now = start + timedelta(microseconds=900 * i)
        emulator.seed(subject=f"burst {i}")
    clock.now = start


async def idle_requests(emulator: Emulator, adapter: Adapter, cursor: Any) -> tuple[int, Any]:
    """The vendor requests of one pull from ``cursor``, and its last cursor."""
    emulator.log.clear()
    _, cursor = await pull(adapter, cursor)
    return len(emulator.log), cursor


async def test_idle_runs_after_a_burst_cost_the_api_minimum(
    setup: tuple[Vendor, Emulator, Adapter, SetClock],
) -> None:
    vendor, emulator, adapter, clock = setup
    start = clock.now
    burst(emulator, clock)
    clock.now = start + timedelta(seconds=LOOKBACK + 100)  # the burst is older than a lookback
    seen, cursor = await pull(adapter)
    assert len(seen) == BURST
    for minute in (1, 2, 3):
        clock.now = start + timedelta(seconds=LOOKBACK + 100 + 60 * minute)
        count, cursor = await idle_requests(emulator, adapter, cursor)
        assert count == 1, emulator.log
        method, path = vendor.minimum
        assert emulator.requests(method, path) == emulator.log
        assert emulator.log[0]["status"] in (200, 204)


async def test_a_burst_within_the_lookback_is_read_again_until_it_ages_past_it(
    setup: tuple[Vendor, Emulator, Adapter, SetClock],
) -> None:
    _, emulator, adapter, clock = setup
    start = clock.now
    burst(emulator, clock)
    clock.now = start + timedelta(seconds=2)
    _, cursor = await pull(adapter)
    costs = []
    for seconds in (60, LOOKBACK + 60, LOOKBACK + 120):
        clock.now = start + timedelta(seconds=seconds)
        count, cursor = await idle_requests(emulator, adapter, cursor)
        costs.append(count)
    assert costs[0] > 1 and costs[1] > 1  # each began within a lookback of the burst
    assert costs[2] == 1


async def test_a_future_modified_time_never_moves_the_cursor(
    make_zoho: Any, zoho_emulator: ZohoDeskEmulator
) -> None:
    clock = SetClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    zoho_emulator.clock = clock
    ordinary = zoho_emulator.seed(subject="ordinary")["id"]
    glitch = zoho_emulator.seed(
        subject="glitch", modifiedTime=iso_ms(clock.now + timedelta(hours=12))
    )["id"]
    seen, cursor = await pull(make_zoho())
    assert seen[ordinary].modified_at is not None and seen[ordinary].future_at is None
    assert seen[glitch].modified_at is None  # unknown to the merge: tie_break decides
    assert seen[glitch].future_at == clock.now + timedelta(hours=12)
    assert parse_time(cursor["newest_seen"]) == clock.now
    assert parse_time(cursor["vendor_now"]) == clock.now - timedelta(seconds=1)
    clock.now += timedelta(minutes=1)
    edited = zoho_emulator.edit(ordinary, subject="edited")["id"]
    again, _ = await pull(make_zoho(), cursor)
    assert again[edited].fields["title"] == "edited"


def _rule(skew: float = 120) -> CursorRule:
    return CursorRule(
        "c", "modified_after", parse_time, timedelta(seconds=300), timedelta(seconds=skew)
    )


def test_the_next_pull_starts_at_the_rule_and_old_cursors_are_still_read() -> None:
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    rule = _rule()
    lookback = timedelta(seconds=300)
    iso = "2026-05-01T12:00:00Z"
    assert rule.start(None) is None
    assert rule.start({"modified_after": iso}) == at - lookback  # stored before the rule
    assert rule.start({"vendor_now": iso, "newest_seen": None}) == at - lookback
    older = "2026-05-01T11:00:00Z"
    assert rule.start({"vendor_now": iso, "newest_seen": older}) == at - lookback
    ahead = "2026-05-01T12:01:00Z"  # the vendor's times run a minute ahead of its Date
    assert (
        rule.start({"vendor_now": iso, "newest_seen": ahead})
        == at + timedelta(minutes=1) - lookback
    )
    far = "2026-06-01T00:00:00Z"  # never past vendor_now + skew
    assert (
        rule.start({"vendor_now": iso, "newest_seen": far})
        == at + timedelta(seconds=120) - lookback
    )


def test_an_unknown_cursor_is_a_protocol_error() -> None:
    from sync.errors import ProtocolError

    with pytest.raises(ProtocolError, match="is not a cursor of this vendor"):
        _rule().start({"updated_after": "x"})
