"""The adapter contract suite every vendor's tests inherit (vdirsyncer's ``StorageTests``).

A vendor's test module subclasses ``AdapterContract`` and provides two fixtures:

- ``adapter``: a live adapter whose connection points at the vendor's emulator;
- ``vendor``: a ``VendorHandle`` for that emulator. Field values are keyed by canonical field
  name and spelled the vendor's way, like ``RemoteTicket.fields``.

Each test leaves the emulator's request log free of deviations from the vendor's documented
request shape (checked after every test).

The comment tests (docs/architecture.md §8.5) run for each vendor as far as its adapter's
capabilities say (``comments_read``, ``comments_write``, ``private_comments``); the handle's
comment methods are only called where they apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from sync.errors import AuthRejected, ItemError, ProtocolError, Retriable, VendorError
from sync.vendors.base import Adapter, OutgoingComment, RemoteTicket


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

    # -- comments (vendors whose adapter reads or posts comments) --------------------------

    #: Whether the vendor's reply to a post states the comment's visibility (the adapter
    #: then checks it), so ``misfile_visibility`` must make the post fail.
    checks_visibility: bool
    #: ``match`` string for faults on the reads ``list_comments`` makes.
    comment_read_route: str

    def add_comment(self, external_id: str, body: str, *, public: bool, ago: float) -> None:
        """A comment added at the vendor ``ago`` seconds before now, as an agent would."""
        ...

    def stored_comments(self, external_id: str) -> list[tuple[str, bool | None]]:
        """The ticket's comments as the vendor holds them: (raw body, public or None when
        the vendor records no visibility)."""
        ...

    def misfile_visibility(self) -> None:
        """From now on the emulator files new comments with the opposite visibility."""
        ...


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

    # -- comments (docs/architecture.md §8.5) ----------------------------------------------

    @staticmethod
    def _needs(adapter: Adapter, *flags: str) -> None:
        missing = [f for f in flags if not getattr(adapter.capabilities, f)]
        if missing:
            pytest.skip(f"the adapter lacks {', '.join(missing)}")

    async def test_comments_are_listed_oldest_first(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_read")
        external_id = vendor.seed(modified_ago=3600, **self.first_values(vendor))
        vendor.add_comment(external_id, "Second, a minute ago.", public=True, ago=60)
        vendor.add_comment(external_id, "Third, at the same second.", public=True, ago=60)
        vendor.add_comment(external_id, "First, two minutes ago.", public=True, ago=120)
        listed = await adapter.list_comments(external_id)
        assert [c.body for c in listed] == [
            "First, two minutes ago.",
            "Second, a minute ago.",
            "Third, at the same second.",
        ]
        assert len({c.external_id for c in listed}) == 3
        assert all(c.marker is None and c.created_at is not None for c in listed)
        assert [c.external_id for c in await adapter.list_comments(external_id)] == [
            c.external_id for c in listed
        ]

    async def test_ticket_without_comments_lists_none(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_read")
        external_id = vendor.seed(**self.first_values(vendor))
        assert list(await adapter.list_comments(external_id)) == []

    async def test_posted_comment_is_listed_and_found_by_its_marker(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_write")
        external_id = vendor.seed(**self.first_values(vendor))
        outgoing = OutgoingComment("Alice via Zoho Desk:\nIt works now.", True, "tsc-contract-1")
        posted = await adapter.post_comment(external_id, outgoing)
        assert posted.marker == "tsc-contract-1" and posted.external_id
        assert posted.body == outgoing.body
        assert posted.is_public or not vendor.checks_visibility
        (stored_body, public), *_ = vendor.stored_comments(external_id)
        assert "tsc-contract-1" in stored_body and public in (True, None)
        if not adapter.capabilities.comments_read:
            return
        listed = await adapter.list_comments(external_id)
        assert [(c.external_id, c.marker, c.body) for c in listed] == [
            (posted.external_id, "tsc-contract-1", outgoing.body)
        ]
        found = await adapter.find_comment(external_id, "tsc-contract-1")
        assert found is not None and found.external_id == posted.external_id
        assert await adapter.find_comment(external_id, "tsc-never-posted") is None

    async def test_private_comment_stays_private(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_write", "private_comments")
        external_id = vendor.seed(**self.first_values(vendor))
        outgoing = OutgoingComment("Internal: refund approved.", False, "tsc-contract-2")
        posted = await adapter.post_comment(external_id, outgoing)
        assert posted.is_public is False
        assert [public for _, public in vendor.stored_comments(external_id)] in ([False], [None])
        if adapter.capabilities.comments_read:
            listed = await adapter.list_comments(external_id)
            assert [c.is_public for c in listed] == [False]

    async def test_private_comment_refused_where_the_vendor_cannot_keep_it_private(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_write")
        if adapter.capabilities.private_comments:
            pytest.skip("the adapter posts private comments")
        external_id = vendor.seed(**self.first_values(vendor))
        with pytest.raises(ItemError):
            await adapter.post_comment(
                external_id, OutgoingComment("Internal only.", False, "tsc-contract-3")
            )
        assert vendor.stored_comments(external_id) == []

    async def test_visibility_mismatch_is_protocol_error(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_write")
        if not vendor.checks_visibility:
            pytest.skip("the vendor's reply does not state a comment's visibility")
        external_id = vendor.seed(**self.first_values(vendor))
        vendor.misfile_visibility()
        public = not adapter.capabilities.private_comments
        with pytest.raises(ProtocolError) as caught:
            await adapter.post_comment(
                external_id, OutgoingComment("Internal only.", public, "tsc-contract-4")
            )
        assert adapter.name in str(caught.value)

    async def test_counter_moves_after_a_post(self, adapter: Adapter, vendor: VendorHandle) -> None:
        self._needs(adapter, "comments_write")
        external_id = vendor.seed(**self.first_values(vendor))
        before = await adapter.get(external_id)
        await adapter.post_comment(external_id, OutgoingComment("Noted.", True, "tsc-contract-5"))
        after = await adapter.get(external_id)
        assert before is not None and after is not None
        assert after.comment_counter is not None
        assert after.comment_counter != before.comment_counter

    async def test_counter_moves_after_a_comment_at_the_vendor(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        self._needs(adapter, "comments_read")
        external_id = vendor.seed(**self.first_values(vendor))
        before, _ = await pull(adapter)
        vendor.add_comment(external_id, "A customer replied.", public=True, ago=0)
        after, _ = await pull(adapter)
        assert after[external_id].comment_counter is not None
        assert after[external_id].comment_counter != before[external_id].comment_counter

    @pytest.mark.parametrize(
        "payload",
        ["deep_json", "unclosed_html", "charset", "future_time", "overflow_time", "control"],
    )
    async def test_hostile_comment_reply_is_a_value_or_a_vendor_error(
        self, adapter: Adapter, vendor: VendorHandle, payload: str
    ) -> None:
        self._needs(adapter, "comments_read")
        external_id = vendor.seed(**self.first_values(vendor))
        vendor.add_comment(external_id, "<b>Hello</b> &amp; bye", public=True, ago=60)
        await adapter.get(external_id)  # authenticated: the fault hits the comment read
        vendor.inject("hostile", payload=payload, times=10, match=vendor.comment_read_route)
        try:
            listed = await adapter.list_comments(external_id)
        except VendorError as exc:
            assert adapter.name in str(exc)
        else:
            assert all(isinstance(c.body, str) for c in listed)
