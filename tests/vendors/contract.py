"""The adapter contract suite every vendor's tests inherit (vdirsyncer's ``StorageTests``).

A vendor's test module subclasses ``AdapterContract`` and provides two fixtures:

- ``adapter``: a live adapter whose connection points at the vendor's emulator;
- ``vendor``: a ``VendorHandle`` for that emulator. Field values are keyed by canonical field
  name and spelled the vendor's way, like ``RemoteTicket.fields``.

Each test leaves the emulator's request log free of deviations from the vendor's documented
request shape (checked after every test).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from sync.errors import AuthRejected, ItemError, ProtocolError, Retriable
from sync.vendors.base import Adapter, RemoteTicket


class VendorHandle(Protocol):
    """What the contract needs to know and do at the vendor, behind the adapter's back."""

    #: Whether tickets carry the vendor's modification time.
    has_modified_at: bool
    #: An external id no ticket has.
    missing_id: str
    #: Two different valid vendor values per writable field (seeded with the first).
    values: Mapping[str, tuple[str, str]]
    #: Values for ``create`` (vendor values keyed by canonical field).
    create_values: Mapping[str, str]
    #: ``match`` strings for faults: a plain get of one ticket, an update of one ticket.
    read_route: str
    write_route: str

    def seed(self, modified_ago: float = 0.0, **fields: Any) -> str: ...

    def edit(self, external_id: str, **fields: Any) -> None: ...

    def fetch(self, external_id: str) -> Mapping[str, Any]: ...

    def inject(self, kind: str, **params: Any) -> None: ...

    def deviations(self) -> list[str]: ...


async def pull(adapter: Adapter, cursor: Any = None) -> tuple[dict[str, RemoteTicket], Any]:
    """Drain ``changed_since``: every ticket yielded (last version wins) and the last cursor."""
    seen: dict[str, RemoteTicket] = {}
    async for page in adapter.changed_since(cursor):
        for ticket in page.tickets:
            seen[ticket.external_id] = ticket
        cursor = page.cursor
    return seen, cursor


class AdapterContract:
    """Contract tests; see the module docstring for the fixtures a subclass provides."""

    #: Whether the vendor's tickets carry their creation time (``Adapter.match_keys``).
    creation_times = True

    @pytest.fixture(autouse=True)
    def _no_deviations(self, vendor: VendorHandle) -> Iterator[None]:
        yield
        assert vendor.deviations() == []

    def first_values(self, vendor: VendorHandle) -> dict[str, Any]:
        return {name: pair[0] for name, pair in vendor.values.items()}

    async def test_changed_since_from_start_yields_seeded_tickets(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        ids = [vendor.seed(**self.first_values(vendor)) for _ in range(3)]
        seen, cursor = await pull(adapter)
        assert set(ids) <= set(seen)
        readable = adapter.capabilities.readable
        for external_id in ids:
            ticket = seen[external_id]
            assert set(ticket.fields) == set(readable)
            for name in readable & set(vendor.values):
                assert ticket.fields[name] == vendor.values[name][0], name
            if vendor.has_modified_at:
                assert ticket.modified_at is not None
        assert cursor is not None

    async def test_cursor_resumption_yields_later_edits_only(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        old = vendor.seed(modified_ago=3 * 3600, **self.first_values(vendor))
        unchanged = vendor.seed(modified_ago=2 * 3600, **self.first_values(vendor))
        vendor.seed(modified_ago=3600, **self.first_values(vendor))
        _, cursor = await pull(adapter)
        name, (_, second) = next(iter(vendor.values.items()))
        vendor.edit(old, **{name: second})
        seen, _ = await pull(adapter, cursor)
        assert seen[old].fields[name] == second
        assert unchanged not in seen

    async def test_get_existing_ticket(self, adapter: Adapter, vendor: VendorHandle) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        ticket = await adapter.get(external_id)
        assert ticket is not None
        assert ticket.external_id == external_id
        assert dict(ticket.fields) == {
            name: vendor.fetch(external_id)[name] for name in adapter.capabilities.readable
        }

    async def test_match_keys_read_subject_email_and_creation_time(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        """docs/architecture.md §8.7: what matching compares, from a pulled and a got ticket."""
        external_id = vendor.seed(**self.first_values(vendor))
        seen, _ = await pull(adapter)
        got = await adapter.get(external_id)
        assert got is not None
        for ticket in (seen[external_id], got):
            keys = adapter.match_keys(ticket)
            assert keys.subject == ticket.fields.get("title")
            assert keys.requester_email == ticket.fields.get("requester_email")
            if self.creation_times:
                assert keys.created_at is not None
                assert abs(keys.created_at - datetime.now(UTC)) < timedelta(days=1)

    async def test_get_missing_ticket_is_none(self, adapter: Adapter, vendor: VendorHandle) -> None:
        assert await adapter.get(vendor.missing_id) is None

    async def test_update_round_trips_each_writable_field(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        for name in sorted(adapter.capabilities.writable & set(vendor.values)):
            second = vendor.values[name][1]
            await adapter.update(external_id, {name: second})
            ticket = await adapter.get(external_id)
            assert ticket is not None
            assert ticket.fields[name] == second, name
            assert vendor.fetch(external_id)[name] == second, name

    async def test_update_missing_ticket_raises(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        name = sorted(adapter.capabilities.writable)[0]
        with pytest.raises(ItemError):
            await adapter.update(vendor.missing_id, {name: vendor.values[name][1]})

    async def test_create_then_find_marker(self, adapter: Adapter, vendor: VendorHandle) -> None:
        if not adapter.capabilities.can_create:
            pytest.skip("the vendor does not create tickets")
        created = await adapter.create(vendor.create_values, "ts-contract-1")
        assert created.external_id
        if not adapter.capabilities.finds_markers:
            return
        found = await adapter.find_marker("ts-contract-1")
        assert found is not None
        assert found.external_id == created.external_id
        assert found.marker == "ts-contract-1"

    async def test_find_unknown_marker_is_none(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        if not adapter.capabilities.finds_markers:
            pytest.skip("the vendor cannot search for markers")
        vendor.seed(**self.first_values(vendor))
        assert await adapter.find_marker("ts-never-created") is None

    async def test_rejected_credentials_raise_auth_rejected(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        vendor.inject("revoke")
        with pytest.raises(AuthRejected) as caught:
            await adapter.get(external_id)
        assert adapter.name in str(caught.value)

    async def test_read_retried_after_503(self, adapter: Adapter, vendor: VendorHandle) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        await adapter.get(external_id)  # authenticated: the fault hits the read itself
        vendor.inject("status", status=503, times=1, match=vendor.read_route)
        ticket = await adapter.get(external_id)
        assert ticket is not None and ticket.external_id == external_id

    async def test_html_page_with_200_is_protocol_error(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        await adapter.get(external_id)
        vendor.inject("html200", match=vendor.read_route)
        with pytest.raises(ProtocolError):
            await adapter.get(external_id)

    async def test_truncated_json_is_protocol_error(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        await adapter.get(external_id)
        vendor.inject("truncated", match=vendor.read_route)
        with pytest.raises(ProtocolError):
            await adapter.get(external_id)

    async def test_update_applied_then_dropped_is_retriable(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        external_id = vendor.seed(**self.first_values(vendor))
        await adapter.get(external_id)
        name = sorted(adapter.capabilities.writable & set(vendor.values))[0]
        second = vendor.values[name][1]
        vendor.inject("apply_then_drop", match=vendor.write_route)
        with pytest.raises(Retriable):
            await adapter.update(external_id, {name: second})
        assert vendor.fetch(external_id)[name] == second
