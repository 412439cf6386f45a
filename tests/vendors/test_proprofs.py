"""ProProfs Help Desk: the contract suite against the emulator, then ProProfs's own behaviours."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sync.config import ConnectionConfig, parse_config
from sync.errors import (
    AuthRejected,
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    RateLimited,
    Retriable,
)
from sync.http import HttpClient
from sync.sandbox.proprofs import (
    AUTH_ERROR,
    INBOXES,
    LIST_PATH,
    STAFF,
    UPDATE_PATH,
    ProProfsEmulator,
    add_months,
)
from sync.vendors.base import AdapterContext, OutgoingComment
from sync.vendors.proprofs.adapter import ProProfsAdapter
from sync.vendors.proprofs.comments import messages_of, to_comments
from sync.vendors.proprofs.mapping import (
    FIELD_KEYS,
    BadRecord,
    envelope,
    id_key,
    parse_local,
    spelled_id,
    split_marker,
    to_body,
    to_remote,
    wire_id,
    with_marker,
)
from sync.vendors.proprofs.options import validate_options
from sync.vendors.proprofs.pull import ListReader, page_items, windows
from tests.vendors.contract import AdapterContract, pull

MAIN = Path(__file__).resolve().parents[2]
CHICAGO = ZoneInfo("America/Chicago")
FAST_HTTP = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "max_attempts": 3,
    "total_timeout": 10,
    "read_timeout": 5,
    "connect_timeout": 2,
}
SYNCED = {
    "title": None,
    "description": None,
    "status": None,
    "priority": None,
    "queue": None,
    "assignee": None,
    "requester_email": None,
}


def proprofs_connection(
    emulator: ProProfsEmulator,
    *,
    name: str = "proprofs-test",
    options: Mapping[str, Any] | None = None,
    token: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> ConnectionConfig:
    assert emulator.base_url is not None
    data = {
        "connections": {
            name: {
                "vendor": "proprofs",
                "base_url": emulator.base_url,
                "credentials": {
                    "account_email": emulator.account_email,
                    "token": token or emulator.token,
                },
                "fields": dict(SYNCED if fields is None else fields),
                "options": dict(options or {}),
                "http": FAST_HTTP,
            }
        }
    }
    return parse_config(data, env={}).connections[name]


@pytest.fixture
async def emulator() -> AsyncIterator[ProProfsEmulator]:
    emulator = ProProfsEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


MakeAdapter = Callable[..., ProProfsAdapter]


@pytest.fixture
async def make(emulator: ProProfsEmulator) -> AsyncIterator[MakeAdapter]:
    made: list[ProProfsAdapter] = []

    def build(**kw: Any) -> ProProfsAdapter:
        connection = proprofs_connection(emulator, **kw)

        def http(url: str) -> HttpClient:
            return HttpClient(connection.name, url, connection.http)

        adapter = ProProfsAdapter(connection, AdapterContext(http=http))
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        await adapter.aclose()


class ProProfsVendor:
    """The contract suite's handle on the emulator (see tests/vendors/contract.py)."""

    has_modified_at = True
    missing_id = "99999"
    read_route = f"POST {LIST_PATH}"
    write_route = f"POST {UPDATE_PATH}"
    values: Mapping[str, tuple[str, str]] = {
        "title": ("Printer on fire", "Printer extinguished"),
        "description": ("It smokes.", "It no longer smokes."),
        "status": ("Open", "Pending"),
        "priority": ("high", "low"),
        "queue": tuple(INBOXES),  # type: ignore[dict-item]
        "assignee": tuple(STAFF),  # type: ignore[dict-item]
        "requester_email": ("carol@example.com", "dave@example.com"),
    }
    create_values: Mapping[str, str] = {
        "title": "Created by ticketsync",
        "priority": "normal",
        "queue": next(iter(INBOXES)),
        "requester_email": "erin@example.com",
    }

    def __init__(self, emulator: ProProfsEmulator) -> None:
        self.emulator = emulator

    @staticmethod
    def _proprofs(fields: Mapping[str, Any]) -> dict[str, Any]:
        return {FIELD_KEYS[name]: value for name, value in fields.items()}

    def seed(self, modified_ago: float = 0.0, **fields: Any) -> str:
        when = self.emulator.clock() - timedelta(seconds=modified_ago)
        ticket = self.emulator.seed(modified_at=when, created_at=when, **self._proprofs(fields))
        return str(ticket["ticket_id"])

    def edit(self, external_id: str, **fields: Any) -> None:
        self.emulator.edit(external_id, **self._proprofs(fields))

    def fetch(self, external_id: str) -> Mapping[str, Any]:
        ticket = self.emulator.find(external_id)
        assert ticket is not None
        return to_remote(self.emulator.render(ticket), CHICAGO, marker_field_id=None).fields

    def inject(self, kind: str, **params: Any) -> None:
        self.emulator.inject(kind, **params)

    def deviations(self) -> list[str]:
        return self.emulator.deviations()

    checks_visibility = False
    comment_read_route = read_route

    def add_comment(self, external_id: str, body: str, *, public: bool, ago: float) -> None:
        when = self.emulator.clock() - timedelta(seconds=ago)
        self.emulator.add_comment(external_id, message=body, created=when)

    def stored_comments(self, external_id: str) -> list[tuple[str, bool | None]]:
        ticket = self.emulator.find(external_id)
        assert ticket is not None
        return [(m["message"], None) for m in self.emulator.comments.get(ticket["ticket_id"], [])]

    def misfile_visibility(self) -> None:
        raise AssertionError("ProProfs takes no comments")


class TestProProfsContract(AdapterContract):
    @pytest.fixture
    def adapter(self, make: MakeAdapter) -> ProProfsAdapter:
        return make()

    @pytest.fixture
    def vendor(self, emulator: ProProfsEmulator) -> ProProfsVendor:
        return ProProfsVendor(emulator)


@pytest.fixture
def vendor(emulator: ProProfsEmulator) -> ProProfsVendor:
    return ProProfsVendor(emulator)


@pytest.fixture(autouse=True)
def no_deviations(emulator: ProProfsEmulator) -> Iterator[None]:
    yield
    assert emulator.deviations() == []


def list_bodies(emulator: ProProfsEmulator) -> list[dict[str, Any]]:
    return [e["body"] for e in emulator.requests("POST", LIST_PATH)]


# -- the wire: paths, credentials, bodies ------------------------------------------------------


async def test_credentials_travel_in_the_body_only(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    external_id = vendor.seed(title="x")
    adapter = make()
    await adapter.update(external_id, {"priority": "high"})
    entry = emulator.requests("POST", UPDATE_PATH)[0]
    assert entry["body"] == {
        "account_email": "***",
        "token": "***",
        "ticket_id": 701,
        "priority": "high",
    }
    assert entry["headers"]["Accept"] == "application/json"
    assert entry["headers"]["Content-Type"].startswith("application/json")
    assert "Authorization" not in entry["headers"]
    logged = json.dumps(emulator.log)
    assert emulator.token not in logged and emulator.account_email not in logged


async def test_status_is_read_but_never_written(make: MakeAdapter, vendor: ProProfsVendor) -> None:
    adapter = make()
    caps = adapter.capabilities
    assert "status" in caps.readable and "status" not in caps.writable
    assert caps.writable == caps.readable - {"status"}
    external_id = vendor.seed(status="Pending")
    ticket = await adapter.get(external_id)
    assert ticket is not None and ticket.fields["status"] == "Pending"
    with pytest.raises(ItemError, match="status: not writable"):
        await adapter.update(external_id, {"status": "Closed"})


async def test_update_sends_ticket_id_as_a_number_and_keeps_leading_zeros(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    emulator.seed(ticket_id="00042", subject="Zeros")
    adapter = make()
    ticket = await adapter.get("00042")
    assert ticket is not None and ticket.external_id == "00042"
    assert await adapter.get("42") is not None  # the same ticket, spelled without zeros
    await adapter.update("00042", {"title": "Still zeros", "assignee": "ST007-009"})
    assert emulator.requests("POST", UPDATE_PATH)[0]["body"]["ticket_id"] == 42
    assert emulator.tickets["00042"]["subject"] == "Still zeros"
    assert adapter.id_key("00042") == adapter.id_key("42") == "42"


async def test_get_uses_a_range_strictly_around_the_id(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    ids = [vendor.seed(title=f"t{i}") for i in range(3)]
    ticket = await make().get(ids[1])
    assert ticket is not None and ticket.fields["title"] == "t1"
    body = list_bodies(emulator)[0]
    assert (body["start_ticket_id"], body["end_ticket_id"]) == (701, 703)
    assert "start_modified_date" not in body


async def test_get_non_numeric_id_is_none_without_a_call(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    assert await make().get("IB238-436") is None
    assert emulator.log == []
    with pytest.raises(NotFound):
        await make().update("abc", {"title": "x"})


# -- pull: windows, pages, time zone ------------------------------------------------------------


async def test_pull_pages_by_next_page_link(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    ids = {vendor.seed(modified_ago=3600 - i, title=f"t{i}") for i in range(60)}
    adapter = make()
    seen, cursor = await pull(adapter, {"modified_after": "2020-01-01T00:00:00Z"})
    assert ids <= set(seen)
    entries = emulator.requests("POST", LIST_PATH)
    # 2020 .. now in 89-day windows; only the last one holds tickets: three pages of it.
    assert [e["query"] for e in entries[-3:]] == [{}, {"page": "2"}, {"page": "3"}]
    assert all("start_modified_date" in e["body"] for e in entries)
    assert cursor is not None


async def test_first_import_walks_three_month_windows_from_import_since(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    since = (datetime.now(UTC) - timedelta(days=400)).date().isoformat()
    old = emulator.seed(subject="old", modified_at=datetime.now(UTC) - timedelta(days=300))
    new = vendor.seed(title="new")
    seen, cursor = await pull(make(options={"import_since": since}))
    assert {old["ticket_id"], new} <= set(seen)
    bodies = list_bodies(emulator)
    assert len(bodies) == 5  # 401 days in windows of 89
    for body in bodies:
        low = datetime.fromisoformat(body["start_modified_date"])
        high = datetime.fromisoformat(body["end_modified_date"])
        assert timedelta(0) < high - low <= timedelta(days=89, hours=1)  # DST: local times
        assert high <= add_months(low, 3)
    assert bodies[0]["start_modified_date"].startswith(
        datetime.fromisoformat(since).replace(tzinfo=UTC).astimezone(CHICAGO).date().isoformat()
    )
    assert cursor["vendor_now"] >= new_cursor_floor()


def recent_cursor() -> dict[str, str]:
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    return {"modified_after": two_hours_ago.strftime("%Y-%m-%dT%H:%M:%SZ")}


def new_cursor_floor() -> str:
    return (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_times_are_read_in_the_account_zone(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    moment = datetime(2026, 1, 15, 18, 30, tzinfo=UTC)
    emulator.configure(time_zone="Asia/Kolkata")
    external_id = emulator.seed(subject="tz", modified_at=moment)["ticket_id"]
    right = await make(options={"time_zone": "Asia/Kolkata"}).get(external_id)
    assert right is not None and right.modified_at == moment
    wrong = await make().get(external_id)
    assert wrong is not None and wrong.modified_at == moment + timedelta(hours=11, minutes=30)
    assert list_bodies(emulator)  # the reply said 2026-01-16 00:00:00 in Kolkata
    rendered = emulator.render(emulator.tickets[external_id])
    assert rendered["modified_date_time"] == "2026-01-16 00:00:00"


async def test_filter_dates_are_sent_in_the_account_zone(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    await pull(make(), {"modified_after": "2026-03-01T12:00:00Z"})
    body = list_bodies(emulator)[0]
    assert body["start_modified_date"] == "2026-03-01 05:55:00"  # CST, 300 s lookback


async def test_interrupted_window_resumes_from_its_start(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    for i in range(30):
        vendor.seed(modified_ago=600 + i, title=f"t{i}")
    adapter = make()
    start = recent_cursor()
    pages = []
    async for page in adapter.changed_since(start):
        pages.append(page)
    with_tickets = [p for p in pages if p.tickets]
    # Pages inside a window keep the cursor that held before it: the order is UNCONFIRMED.
    assert [p.cursor for p in with_tickets] == [start] * len(with_tickets) == [start] * 2
    assert pages[-1].cursor != start and pages[-1].tickets == []


async def test_short_pass_is_read_again(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    ids = {vendor.seed(title=f"t{i}") for i in range(30)}
    calls: list[int] = []
    original = emulator.render

    def lossy(ticket: Mapping[str, Any]) -> dict[str, Any]:
        calls.append(1)
        rendered = original(ticket)
        if ticket["ticket_id"] == "00705" and len(calls) < 40:
            rendered["ticket_id"] = "00704"  # one ticket "shifted" out of the first pass
        return rendered

    emulator.render = lossy  # type: ignore[method-assign]
    seen, _ = await pull(make(), recent_cursor())
    assert ids == set(seen)
    assert len(list_bodies(emulator)) == 4  # two pages, twice


async def test_endless_page_links_are_a_protocol_error() -> None:
    async def post(path: str, filters: Mapping[str, Any], what: str) -> Any:
        return {"tickets": [], "total_tickets": 60, "next_page_link": "/x/?page=2"}

    reader = ListReader("proprofs-test", "/x/", post)
    with pytest.raises(ProtocolError, match="does not end"):
        async for _ in reader.scan({}, "test"):
            pass


async def test_page_links_never_leave_our_host() -> None:
    asked: list[str] = []

    async def post(path: str, filters: Mapping[str, Any], what: str) -> Any:
        asked.append(path)
        if len(asked) == 1:
            link = "https://evil.example.com/app/api/v1/list/ticket/?page=2"
            return {"tickets": [], "total_tickets": 30, "next_page_link": link}
        return {"tickets": [], "total_tickets": 30, "next_page_link": ""}

    reader = ListReader("proprofs-test", "/app/api/v1/list/ticket/", post)
    async for _ in reader.scan({}, "test"):
        pass
    assert asked[:2] == ["/app/api/v1/list/ticket/", "/app/api/v1/list/ticket/?page=2"]


def test_windows_cover_the_span_in_89_day_steps() -> None:
    start = datetime(2024, 11, 30, tzinfo=UTC)
    end = datetime(2025, 6, 1, tzinfo=UTC)
    spans = list(windows(start, end))
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(b[0] == a[1] for a, b in itertools.pairwise(spans))
    assert all(high <= add_months(low, 3) for low, high in spans)


# -- the emulator's documented validation ----------------------------------------------------


def credentials(adapter: ProProfsAdapter) -> dict[str, str]:
    return {name: adapter.connection.credential(name) or "" for name in ("account_email", "token")}


async def raw_list(adapter: ProProfsAdapter, body: Mapping[str, Any]) -> Any:
    response = await adapter._http.request(
        "POST",
        LIST_PATH,
        json={**credentials(adapter), **body},
        headers={"Accept": "application/json"},
        ok=(200,),
    )
    return response.json()


async def test_emulator_enforces_the_three_month_rule(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    adapter = make()
    too_long = {"start_modified_date": "2025-01-01 00:00:00", "end_modified_date": "2025-04-02"}
    assert await raw_list(adapter, too_long) == {
        "status": "error",
        "description": "The start and end dates for creation and last modification should "
        "fall within a 3-month range.",
    }
    backwards = {"start_created_date": "2025-02-01", "end_created_date": "2025-01-01"}
    reply = await raw_list(adapter, backwards)
    assert reply["description"] == "The start date must always be earlier than the end date."
    same_id = {"start_ticket_id": 701, "end_ticket_id": 701}
    reply = await raw_list(adapter, same_id)
    assert "must be smaller than the ticket ID of the ending record" in reply["description"]
    vendor.seed(modified_ago=100 * 86400, title="old")
    recent = vendor.seed(title="recent")
    reply = await raw_list(adapter, {})  # no filters: the past three months
    assert [t["ticket_id"] for t in reply["tickets"]] == [recent]
    assert reply["total_tickets"] == 1 and "next_page_link" not in reply


async def test_a_refused_list_request_is_a_protocol_error(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    refusal = {"status": "error", "description": "Invalid date format: soon"}
    emulator.inject("status", status=200, body=refusal, match=LIST_PATH)
    with pytest.raises(ProtocolError, match=r"options\.list_path and list_fields") as caught:
        await pull(make(), recent_cursor())
    assert "tickets modified" in str(caught.value) and "Invalid date format" in str(caught.value)


async def test_an_empty_result_reported_as_an_error_is_empty(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    nothing = {"status": "error", "description": "No tickets found"}
    emulator.inject("status", status=200, body=nothing, match=LIST_PATH)
    assert await make().get("00701") is None


async def test_wrong_list_path_names_the_option(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    adapter = make(options={"list_path": "/app/api/v1/ticket/list/"})
    with pytest.raises(ProtocolError, match=r"options\.list_path") as caught:
        await adapter.check()
    assert "How to Retrieve Ticket List via API" in str(caught.value)
    assert "UNCONFIRMED" in str(caught.value)


async def test_paths_are_case_sensitive(make: MakeAdapter) -> None:
    adapter = make(options={"list_path": "/app/api/v1/List/Ticket/"})
    with pytest.raises(ProtocolError, match="no ticket list there"):
        await adapter.check()


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("error_status", [200, 401])
async def test_auth_rejection_names_the_connection_and_is_not_retried(
    make: MakeAdapter, emulator: ProProfsEmulator, error_status: int
) -> None:
    emulator.configure(error_status=error_status)
    adapter = make(token="wrong-token-0000")
    with pytest.raises(AuthRejected) as caught:
        await adapter.check()
    message = str(caught.value)
    assert message.startswith("proprofs-test: check: POST /app/api/v1/list/ticket/")
    assert AUTH_ERROR in message and "credentials.account_email" in message
    assert "My Account" in message and "wrong-token-0000" not in message
    assert caught.value.vendor_message == AUTH_ERROR
    assert len(emulator.log) == 1


async def test_update_of_a_missing_ticket_is_not_found(make: MakeAdapter) -> None:
    with pytest.raises(NotFound, match="Ticket not found"):
        await make().update("99999", {"priority": "low"})


@pytest.mark.parametrize(
    ("changes", "said"),
    [({"queue": "IB000-000"}, "Invalid inbox"), ({"assignee": "ST000-000"}, "Invalid staff")],
)
async def test_vendor_refusals_are_item_errors_in_its_words(
    make: MakeAdapter, vendor: ProProfsVendor, changes: dict[str, str], said: str
) -> None:
    external_id = vendor.seed()
    with pytest.raises(ItemError, match=said) as caught:
        await make().update(external_id, changes)
    assert not isinstance(caught.value, NotFound)
    assert caught.value.vendor_message is not None


async def test_unwritable_values_fail_before_any_call(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    with pytest.raises(ItemError) as caught:
        await make().update("00701", {"priority": "urgent", "assignee": None})
    assert "priority: 'urgent' is not one of high, normal, low" in str(caught.value)
    assert "assignee: ProProfs' API documents no way to clear staff" in str(caught.value)
    assert emulator.log == []


async def test_rate_limit_and_server_errors(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    external_id = vendor.seed()
    adapter = make()
    emulator.inject("status", status=429, headers={"Retry-After": "0"}, times=1, match=LIST_PATH)
    assert await adapter.get(external_id) is not None  # a read: retried after the 429
    emulator.inject("status", status=503, times=1, match=UPDATE_PATH)
    with pytest.raises(Retriable, match="Service temporarily unavailable"):
        await adapter.update(external_id, {"priority": "low"})  # a write: never retried here
    assert len(emulator.requests("POST", UPDATE_PATH)) == 1
    emulator.inject(
        "status",
        status=200,
        body={"status": "error", "description": "Too many requests. Rate limit exceeded."},
        match=UPDATE_PATH,
    )
    with pytest.raises(RateLimited, match="Rate limit exceeded"):
        await adapter.update(external_id, {"priority": "low"})


async def test_dropped_connection_and_latency(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    external_id = vendor.seed()
    adapter = make()
    emulator.inject("drop", times=1, match=LIST_PATH)
    assert await adapter.get(external_id) is not None  # retried
    emulator.inject("drop", times=10, match=LIST_PATH)
    with pytest.raises(Retriable):
        await adapter.get(external_id)
    emulator.faults.clear()
    emulator.inject("latency", seconds=0.2, match=LIST_PATH)
    assert await adapter.get(external_id) is not None


async def test_unknown_priority_is_that_field_s_error_only(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    external_id = emulator.seed(priority="urgent", subject="still read")["ticket_id"]
    ticket = await make().get(external_id)
    assert ticket is not None and ticket.fields["title"] == "still read"
    assert "priority" not in ticket.fields
    assert ticket.unreadable["priority"].value == "urgent"
    assert "unknown priority" in ticket.unreadable["priority"].error


async def test_absent_key_of_a_synced_field_fails_loudly(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    external_id = emulator.seed(subject="x")["ticket_id"]
    original = emulator.render

    def without_staff(ticket: Mapping[str, Any]) -> dict[str, Any]:
        rendered = original(ticket)
        del rendered["staff"]
        return rendered

    emulator.render = without_staff  # type: ignore[method-assign]
    waiting = await make().get(external_id)  # the assignee waits: never read as empty
    assert waiting is not None and "assignee" not in waiting.fields
    assert "no 'staff' in the ticket" in waiting.unreadable["assignee"].error
    ticket = await make(fields={"title": None}).get(external_id)  # assignee not synced
    assert ticket is not None and ticket.fields["assignee"] is None


# -- create and markers ----------------------------------------------------------------------


async def test_create_puts_the_marker_in_the_description(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    adapter = make()
    values = {"title": "New", "description": "Body", "requester_email": "a@example.com"}
    created = await adapter.create(values, "tsync-4-abcd")
    body = emulator.requests("POST", "/app/api/v1/create/ticket/")[0]["body"]
    assert body["description"] == "Body\n\n[ticketsync:tsync-4-abcd]"
    assert created.external_id == "00701" and created.marker == "tsync-4-abcd"
    fetched = await adapter.get(created.external_id)
    assert fetched is not None and fetched.fields["description"] == "Body"
    found = await adapter.find_marker("tsync-4-abcd", since=datetime.now(UTC))
    assert found is not None and found.external_id == "00701"


async def test_create_with_a_marker_field(make: MakeAdapter, emulator: ProProfsEmulator) -> None:
    adapter = make(options={"marker_field_id": "CF007-09"})
    values = {"title": "New", "requester_email": "a@example.com", "status": "Open"}
    created = await adapter.create(values, "tsync-5-beef")
    body = emulator.requests("POST", "/app/api/v1/create/ticket/")[0]["body"]
    assert body["custom_fields"] == [{"id": "CF007-09", "value": "tsync-5-beef"}]
    assert "description" not in body and "status" not in body
    found = await adapter.find_marker("tsync-5-beef")
    assert found is not None and found.external_id == created.external_id
    assert found.fields["description"] is None


async def test_find_marker_scans_creation_dates_since_the_intent(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    since = datetime.now(UTC) - timedelta(days=200)
    assert await make().find_marker("tsync-9-none", since=since) is None
    bodies = list_bodies(emulator)
    assert len(bodies) == 3 and all("start_created_date" in b for b in bodies)


async def test_find_marker_refuses_to_guess_without_the_carrier(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    emulator.seed(subject="x")
    original = emulator.render

    def bare(ticket: Mapping[str, Any]) -> dict[str, Any]:
        rendered = original(ticket)
        del rendered["custom_fields"]
        return rendered

    emulator.render = bare  # type: ignore[method-assign]
    adapter = make(options={"marker_field_id": "CF007-09"})
    with pytest.raises(ProtocolError, match="has no 'custom_fields'"):
        await adapter.find_marker("tsync-1-aaaa")


async def test_create_needs_subject_and_email(make: MakeAdapter) -> None:
    with pytest.raises(ItemError) as caught:
        await make().create({"priority": "low"}, "ts-1")
    assert "title: needed" in str(caught.value)
    assert "options.default_requester_email" in str(caught.value)
    created = await make(options={"default_requester_email": "desk@example.com"}).create(
        {"title": "No requester"}, "ts-2"
    )
    assert created.external_id


async def test_create_applied_then_dropped_is_found_by_marker(
    make: MakeAdapter, emulator: ProProfsEmulator
) -> None:
    adapter = make()
    since = datetime.now(UTC)
    emulator.inject("apply_then_drop", match="/app/api/v1/create/ticket/")
    with pytest.raises(Retriable):
        await adapter.create({"title": "Lost", "requester_email": "l@example.com"}, "ts-lost")
    found = await adapter.find_marker("ts-lost", since=since)
    assert found is not None and found.fields["title"] == "Lost"


# -- options -------------------------------------------------------------------------------


def test_options_are_validated() -> None:
    assert validate_options({}) == []
    good = {
        "list_path": "/app/api/v1/get/tickets/",
        "list_fields": {"id_from": "from_ticket_id"},
        "time_zone": "Europe/Berlin",
        "marker_field_id": "CF007-09",
        "marker_days": 3,
        "import_since": "2019-05-01",
        "lookback_seconds": 60,
        "default_requester_email": "desk@example.com",
    }
    assert validate_options(good) == []
    problems = validate_options(
        {
            "colour": 1,
            "list_path": "/app/api/v1/list/ticket",
            "list_fields": {"when": "x"},
            "time_zone": "Mars/Olympus",
            "marker_field_id": "CF 7",
            "marker_days": 0,
            "import_since": "yesterday",
            "lookback_seconds": -1,
            "default_requester_email": "nobody",
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "options.colour",
        "options.list_path",
        "options.list_fields",
        "options.time_zone",
        "options.marker_field_id",
        "options.marker_days",
        "options.import_since",
        "options.lookback_seconds",
        "options.default_requester_email",
    ]
    assert "unknown key" in problems[0]
    assert validate_options({"list_fields": {"id_from": "token"}})


async def test_bad_options_stop_the_adapter(make: MakeAdapter) -> None:
    with pytest.raises(ConfigError, match=r"connections\.proprofs-test\.options\.colour"):
        make(options={"colour": "blue"})


# -- parsers, fed the vendor pages' example bodies verbatim --------------------------------------

# Verbatim from ProProfs's "Update a Ticket" page (summarised in docs/vendor-apis.md §2.6).
UPDATE_REQUEST = """{
"account_email" : "john@proprofs.com",
"token" : "*****7edf67d0a*****aca630b0*****",
"ticket_id" : 1001,
"staff" : "ST007-009",
"priority" : "high"
}"""
SUCCESS_REPLY = """{
"status" : "success",
"ticket_id" : "00700"
}"""
FAILED_REPLY = """{
"status" : "error",
"description" : "Unable to authenticate request using account email and token"
}"""


def test_vendor_page_bodies_parse() -> None:
    reply = json.loads(SUCCESS_REPLY)
    assert envelope(reply) == ("success", "")
    assert spelled_id(reply["ticket_id"]) == "00700"
    assert id_key("00700") == "700" and wire_id("00700") == 700
    assert envelope(json.loads(FAILED_REPLY)) == ("error", AUTH_ERROR)
    request = json.loads(UPDATE_REQUEST)
    body, problems = to_body({"assignee": "ST007-009", "priority": "high"})
    assert not problems
    assert {"ticket_id": wire_id("1001"), **body} == {
        k: v for k, v in request.items() if k not in ("account_email", "token")
    }


async def test_emulator_answers_the_vendor_page_shapes(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    adapter = make()
    emulator.seed(ticket_id="01001")
    reply = await adapter._http.request(
        "POST",
        UPDATE_PATH,
        json={**credentials(adapter), **json.loads(UPDATE_REQUEST), "account_email": "x@y.z"},
        headers={"Accept": "application/json"},
    )
    assert reply.json() == json.loads(FAILED_REPLY)
    request = {**json.loads(UPDATE_REQUEST), **credentials(adapter)}
    reply = await adapter._http.request(
        "POST", UPDATE_PATH, json=request, headers={"Accept": "application/json"}
    )
    assert reply.json() == {"status": "success", "ticket_id": "01001"}
    assert emulator.tickets["01001"]["staff"] == "ST007-009"


def test_times_parse_tolerantly_and_absurd_ones_fail() -> None:
    utc = datetime(2026, 1, 15, 18, 30, tzinfo=UTC)
    for spelling in (
        "2026-01-15 12:30:00",
        "2026-01-15T12:30:00",
        "2026-01-15T18:30:00Z",
        "2026-01-15 13:30:00-05:00",
        "01/15/2026 12:30 PM",
    ):
        assert parse_local(spelling, CHICAGO) == utc, spelling
    for absurd in ("0000-00-00 00:00:00", "1970-01-01 00:00:00", "2999-01-01 00:00:00", "", 5):
        with pytest.raises(BadRecord):
            parse_local(absurd, CHICAGO)


def test_markers_round_trip_through_descriptions() -> None:
    assert split_marker(with_marker("Body", "ts-1")) == ("Body", "ts-1")
    assert split_marker(with_marker(None, "ts-1")) == (None, "ts-1")
    assert split_marker("Body [ticketsync:ts-1] in the middle") == (
        "Body [ticketsync:ts-1] in the middle",
        None,
    )
    with pytest.raises(ValueError):
        with_marker("Body", "bad]marker")


def test_list_replies_are_read_tolerantly() -> None:
    item = {"ticket_id": 700, "modified_date_time": "2026-01-15 12:30:00"}
    assert page_items({"data": [item], "total_tickets": "1"}) == ([item], 1, None)
    assert page_items({"tickets": {"700": item}}) == ([item], None, None)
    assert page_items({"status": "success", "total_tickets": 0}) == ([], 0, None)
    with pytest.raises(BadRecord):
        page_items({"status": "success"})
    ticket = to_remote(
        {
            **item,
            "inbox": {"id": "IB238-436", "name": "Support"},
            "staff": "",
            "priority": "High",
            "custom_fields": {"CF007-09": "ts-7"},
        },
        CHICAGO,
        marker_field_id="CF007-09",
    )
    assert ticket.external_id == "700" and ticket.marker == "ts-7"
    assert ticket.fields["queue"] == "IB238-436" and ticket.fields["assignee"] is None
    assert ticket.fields["priority"] == "high"


# -- the emulator as its own process --------------------------------------------------------------


def test_sandbox_runs_as_its_own_process() -> None:
    command = [sys.executable, "-m", "sync.sandbox", "proprofs", "--port", "0", "--seed", "3"]
    with subprocess.Popen(
        command, cwd=MAIN, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.removeprefix("listening on ")
            with urllib.request.urlopen(f"{url}/_sandbox/tickets", timeout=5) as reply:
                tickets = json.load(reply)["tickets"]
            assert [t["ticket_id"] for t in tickets] == ["00701", "00702", "00703"]
        finally:
            process.terminate()
            rest, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert rest == ""


# -- comments (docs/vendor-apis.md §6.4) -------------------------------------------------------


async def test_comments_are_read_only_and_private(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    adapter = make()
    caps = adapter.capabilities
    assert caps.comments_read and not caps.comments_write and not caps.private_comments
    external_id = vendor.seed(modified_ago=600, description="It broke.")
    emulator.add_comment(external_id, message="<p>Try <b>again</b></p>")
    (reply,) = await adapter.list_comments(external_id)
    assert (reply.body, reply.is_public) == ("Try again", False)
    assert reply.author_email == "john.smith@helpdesk.example.com"
    with pytest.raises(NotImplementedError):
        await adapter.post_comment(external_id, OutgoingComment("Hi.", True, "tsc-pp-1"))
    with pytest.raises(NotFound):
        await adapter.list_comments("999999")


def test_messages_are_read_tolerantly() -> None:
    messages: list[Any] = [
        {"created": "2026-01-01 09:00:00", "from": "c@example.com", "message": "the body"},
        {"created": "2026-01-01 10:00:00", "sender": "Asha Rao", "body": "same"},
        {"created": "2026-01-01 10:00:00", "sender": "Asha Rao", "body": "same"},
        {"id": 77, "created": "garbage", "text": "no time\n\n[ticketsync:tsc-abcdef]"},
    ]
    untimed, first, second = to_comments(messages, CHICAGO)  # the body (09:00) is left out
    assert (untimed.external_id, untimed.body, untimed.marker) == ("77", "no time", "tsc-abcdef")
    assert untimed.created_at is None
    assert first.author_name == "Asha Rao" and first.author_email is None
    assert second.external_id == first.external_id + "-2"
    assert messages_of({"messages": None}) == []
    with pytest.raises(ValueError):
        messages_of({"messages": "x"})
    with pytest.raises(ValueError):
        to_comments(["x"], CHICAGO)


async def test_counter_is_derived_from_the_messages(
    make: MakeAdapter, emulator: ProProfsEmulator, vendor: ProProfsVendor
) -> None:
    external_id = vendor.seed(modified_ago=600)
    adapter = make()
    before = await adapter.get(external_id)
    assert before is not None and before.comment_counter is not None
    assert before.comment_counter.startswith("1|")
    emulator.configure(message_moves_modified=False)
    modified = emulator.find(external_id)["modified_at"]  # type: ignore[index]
    emulator.add_comment(external_id, message="Quiet reply.")
    assert emulator.find(external_id)["modified_at"] == modified  # type: ignore[index]
    after = await adapter.get(external_id)
    assert after is not None and after.comment_counter is not None
    assert after.comment_counter.startswith("2|")


def test_demo_account_has_messages() -> None:
    emulator = ProProfsEmulator()
    emulator.seed_demo(4)
    assert sorted(len(v) for v in emulator.comments.values()) == [2, 2]
