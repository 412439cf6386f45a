"""The last-moment fence on a real adapter: a write waits for a Zoho token refresh, the
lease is lost meanwhile, and the write never reaches the vendor (docs/architecture.md §7.3)."""

from __future__ import annotations

import pytest

from sync.coord.fence import write_fence
from sync.errors import LeaseLost
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from tests.vendors.conftest import MakeAdapter, ZohoVendor


async def test_a_write_waiting_for_a_token_refresh_is_fenced_after_it(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    external_id = ZohoVendor(zoho_emulator).seed()
    adapter = make_zoho()  # no cached token: the write first waits for a refresh

    def fence() -> None:  # the lease was taken over while the token was being refreshed
        if zoho_emulator.token_grants():
            raise LeaseLost("zoho-test: lease lost", connection="zoho-test")

    with write_fence(fence), pytest.raises(LeaseLost):
        await adapter.update(external_id, {"status": "Closed"})
    assert zoho_emulator.token_grants() == 1, "the refresh (a safe request) went out"
    assert zoho_emulator.requests("PATCH", "/api/v1/tickets") == [], "the write did not"


async def test_a_write_under_a_current_lease_is_sent(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    external_id = ZohoVendor(zoho_emulator).seed()
    adapter = make_zoho()
    checks: list[int] = []
    with write_fence(lambda: checks.append(1)):
        await adapter.update(external_id, {"status": "Closed"})
    assert checks and len(zoho_emulator.requests("PATCH", "/api/v1/tickets")) == 1
