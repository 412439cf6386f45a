"""The soak's spelling of each vendor (``tests.soak.vendors``): an agent's edit made with it
reads back as the canonical value it was made from, so the soak's checks compare like with
like. Also: the control API's fault clearing the soak's quiet end relies on."""

from __future__ import annotations

import aiohttp
import pytest

from sync.sandbox.base import emulators
from tests.soak.vendors import FIELDS, PRIORITIES, STATUSES, VENDORS


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_a_remote_edit_reads_back_as_its_canonical_value(name: str) -> None:
    vendor = VENDORS[name]
    emulator = emulators()[name]()
    ticket = emulator.seed(**vendor.plugin.remote_ticket(0))
    external_id = str(ticket[vendor.plugin.id_key])
    for field in FIELDS:
        values = {"status": STATUSES, "priority": PRIORITIES}.get(field, ("A soak title",))
        for value in values:
            edited = emulator.edit(external_id, **vendor.remote_edit(field, value))
            assert vendor.canonical(edited, field) == value, (name, field, value)


async def test_queued_faults_can_be_dropped() -> None:
    emulator = emulators()["zoho_desk"]()
    await emulator.start()
    try:
        emulator.inject("status", times=5)
        url = f"{emulator.base_url}/_sandbox/faults"
        async with aiohttp.ClientSession() as session, session.delete(url) as reply:
            assert (await reply.json()) == {"dropped": 1}
        assert emulator.faults == []
    finally:
        await emulator.stop()
