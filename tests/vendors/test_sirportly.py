"""Sirportly: the contract suite against the emulator, then Sirportly's own behaviours."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.config import ConnectionConfig, parse_config
from sync.engine.context import SyncRules
from sync.engine.mapping import Unmapped
from sync.errors import (
    AuthRejected,
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    Retriable,
    Unreadable,
    VendorError,
)
from sync.http import HttpClient
from sync.sandbox.sirportly import SirportlyEmulator
from sync.sandbox.sirportly_data import iso
from sync.vendors.base import AdapterContext, OutgoingComment
from sync.vendors.sirportly.adapter import SirportlyAdapter
from sync.vendors.sirportly.comments import comments_of, private_flag
from sync.vendors.sirportly.mapping import describe_errors, parse_time, to_params, to_remote
from sync.vendors.sirportly.options import validate_options
from sync.vendors.sirportly.pull import ListScan, spql_query
from tests.vendors.contract import AdapterContract, pull

MAIN = Path(__file__).resolve().parents[2]
FAST_HTTP = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "max_attempts": 3,
    "total_timeout": 10,
    "read_timeout": 5,
    "connect_timeout": 2,
}
SPQL = "POST /api/v2/tickets/spql"
GET = "POST /api/v2/tickets/ticket"
UPDATE = "POST /api/v2/tickets/update"

# Verbatim from Sirportly's "Changing ticket properties" page
# (the vendor's update page, docs/vendor-apis.md §3.6): a successful update, and a failed one.
UPDATE_REPLY = """{
  "id": 32,
  "reference": "LF-616004",
  "subject": "Example API Ticket",
  "message_id": "96762aac-7957-b1bf-53ba-e1da83e1ec56@sirportly.dev",
  "submitted_at": "2012-02-03T12:00:12+00:00",
  "reply_due_at": null,
  "resolution_due_at": null,
  "auth_code": "8z0m0hiyz9g1",
  "additional_recipients": null,
  "last_update_posted_at": null,
  "first_response_time": null,
  "first_resolution_time": null,
  "resolution_time": null,
  "last_respondant": null,
  "update_count": 0,
  "status": {
    "id": 2,
    "name": "Waiting for Staff",
    "colour": "00a9da",
    "status_type": 0
  },
  "priority": {
    "id": 3,
    "name": "Normal",
    "colour": "0097cf",
    "position": 3
  },
  "department": {
    "id": 3,
    "name": "Technical Support",
    "brand": {
      "id": 2,
      "name": "Codebase",
      "url": "http://www.codebasehq.com"
    },
    "escalation_path": {
      "id": 2,
      "name": "aTech Technical Support Path"
    },
    "private": false
  },
  "team": {
    "id": 2,
    "name": "1st Line Support"
  },
  "user": {
    "id": 2,
    "username": "charlie",
    "first_name": "Charlie",
    "last_name": "Smurthwaite",
    "email_address": "charlie@atechmedia.com",
    "time_zone": "UTC",
    "created_at": "2012-02-02T16:09:55+00:00"
  },
  "sla": null,
  "customer": {
    "id": 1,
    "name": "Adam Cooke",
    "company": "aTech Media",
    "pin": "484836"
  },
  "customer_contact_method": {
    "id": 1,
    "method_type": "email",
    "data": "adam@atechmedia.com"
  }
}"""
FAILED_UPDATE = """{
  "errors": {
    "priority_id": [
      "can't be blank"
    ],
    "status_id": [
      "can't be blank"
    ]
  }
}"""


# -- fixtures --------------------------------------------------------------------------------


def sirportly_connection(
    emulator: SirportlyEmulator,
    *,
    name: str = "sirportly-test",
    options: Mapping[str, Any] | None = None,
    secret: str | None = None,
    comments: Mapping[str, Any] | None = None,
) -> ConnectionConfig:
    assert emulator.base_url is not None
    block = {
        "vendor": "sirportly",
        "base_url": emulator.base_url,
        "credentials": {"token": emulator.token, "secret": secret or emulator.secret},
        "options": dict(options or {}),
        "http": FAST_HTTP,
    }
    if comments is not None:
        block["comments"] = dict(comments)
    data = {"connections": {name: block}}
    return parse_config(data, env={}).connections[name]


class Sleeps:
    """An injected ``sleep`` for sync.http: records the delays, waits no time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def emulator() -> AsyncIterator[SirportlyEmulator]:
    emulator = SirportlyEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


MakeAdapter = Callable[..., SirportlyAdapter]


@pytest.fixture
async def make(emulator: SirportlyEmulator) -> AsyncIterator[MakeAdapter]:
    made: list[SirportlyAdapter] = []

    def build(
        sleep: Callable[[float], Awaitable[None]] | None = None, **kw: Any
    ) -> SirportlyAdapter:
        connection = sirportly_connection(emulator, **kw)

        def http(url: str) -> HttpClient:
            if sleep is None:
                return HttpClient(connection.name, url, connection.http)
            return HttpClient(connection.name, url, connection.http, sleep=sleep)

        adapter = SirportlyAdapter(connection, AdapterContext(http=http))
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        await adapter.aclose()


class SirportlyVendor:
    """The contract suite's handle on the Sirportly emulator (tests/vendors/contract.py)."""

    has_modified_at = True
    missing_id = "ZZ-999999"
    read_route = GET
    write_route = UPDATE
    values: Mapping[str, tuple[str, str]] = {
        "title": ("Printer on fire", "Printer extinguished"),
        "description": ("It smokes.", "It no longer smokes."),
        "status": ("New", "Waiting for Customer"),
        "priority": ("Normal", "High"),
        "queue": ("3/2", "3/4"),
        "assignee": ("charlie", "erin"),
        "requester_email": ("carol@example.com", "dave@example.com"),
        "due_at": ("2030-01-02T03:04:05Z", "2031-02-03T04:05:06Z"),
    }
    create_values: Mapping[str, str] = {
        "title": "Created by ticketsync",
        "description": "Please send the invoice again.",
        "status": "New",
        "priority": "Normal",
        "queue": "5/5",
        "requester_email": "erin.customer@example.com",
    }

    def __init__(self, emulator: SirportlyEmulator) -> None:
        self.emulator = emulator

    @staticmethod
    def vendor_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
        names = {
            "title": "subject",
            "description": "description",
            "status": "status",
            "priority": "priority",
            "assignee": "user",
            "requester_email": "email",
            "due_at": "resolution_due_at",
        }
        values = {names[k]: v for k, v in fields.items() if k in names}
        if "queue" in fields:
            values["department"], _, values["team"] = fields["queue"].partition("/")
        return values

    def seed(self, modified_ago: float = 0.0, **fields: Any) -> str:
        when = self.emulator.clock() - timedelta(seconds=modified_ago)
        fields = self.vendor_fields(fields)
        ticket = self.emulator.seed(updated_at=when, submitted_at=when, **fields)
        return str(ticket["reference"])

    def edit(self, external_id: str, **fields: Any) -> None:
        self.emulator.edit(external_id, **self.vendor_fields(fields))

    def fetch(self, external_id: str) -> Mapping[str, Any]:
        return to_remote(self.emulator.tickets[external_id], "ticketsync_marker").fields

    def inject(self, kind: str, **params: Any) -> None:
        self.emulator.inject(kind, **params)

    def deviations(self) -> list[str]:
        return self.emulator.deviations()

    checks_visibility = True
    comment_read_route = GET

    def add_comment(self, external_id: str, body: str, *, public: bool, ago: float) -> None:
        when = self.emulator.clock() - timedelta(seconds=ago)
        self.emulator.add_comment(external_id, message=body, private=not public, posted_at=when)

    def stored_comments(self, external_id: str) -> list[tuple[str, bool | None]]:
        updates = self.emulator.tickets[external_id]["updates"][1:]  # the first is the body
        return [(u["message"], not u["private"]) for u in updates]

    def misfile_visibility(self) -> None:
        self.emulator.configure(misfile_visibility=True)


class TestSirportlyContract(AdapterContract):
    @pytest.fixture
    def adapter(self, make: MakeAdapter) -> SirportlyAdapter:
        return make(options={"comment_user": "charlie"})

    @pytest.fixture
    def vendor(self, emulator: SirportlyEmulator) -> SirportlyVendor:
        return SirportlyVendor(emulator)


@pytest.fixture
def vendor(emulator: SirportlyEmulator) -> SirportlyVendor:
    return SirportlyVendor(emulator)


@pytest.fixture(autouse=True)
def no_deviations(emulator: SirportlyEmulator) -> Iterator[None]:
    yield
    assert emulator.deviations() == []


def first(vendor: SirportlyVendor) -> dict[str, Any]:
    return {name: pair[0] for name, pair in vendor.values.items()}


# -- the vendor page's examples ----------------------------------------------------------------


def test_vendor_page_update_reply_parses() -> None:
    ticket = to_remote(json.loads(UPDATE_REPLY), "ticketsync_marker")
    assert ticket.external_id == "LF-616004"
    assert dict(ticket.fields) == {
        "title": "Example API Ticket",
        "description": None,
        "status": "Waiting for Staff",
        "priority": "Normal",
        "queue": "3/2",
        "assignee": "charlie",
        "requester_email": "adam@atechmedia.com",
        "due_at": None,
    }
    assert ticket.modified_at is None  # the example carries no updated_at (UNCONFIRMED)
    assert ticket.marker is None


def test_vendor_page_failed_update_is_quoted() -> None:
    said = describe_errors(json.loads(FAILED_UPDATE))
    assert said == "priority_id can't be blank; status_id can't be blank"
    assert describe_errors({"errors": ["Invalid column 'x'"]}) == "Invalid column 'x'"
    assert describe_errors({"error": "Ticket not found"}) == "Ticket not found"


async def test_vendor_page_failed_update_becomes_item_error(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    emulator.inject("status", status=422, body=json.loads(FAILED_UPDATE), match=UPDATE)
    with pytest.raises(ItemError) as caught:
        await make().update(reference, {"status": "Closed"})
    assert not isinstance(caught.value, NotFound)
    assert str(caught.value) == (
        f"sirportly-test: tickets/update (ticket {reference}) -> HTTP 422: "
        "priority_id can't be blank; status_id can't be blank"
    )


def test_malformed_tickets_are_refused() -> None:
    record = json.loads(UPDATE_REPLY)
    for broken in (
        {**record, "status": "Open"},
        {**record, "updated_at": "1970-01-01T00:00:00+00:00"},
        {**record, "resolution_due_at": "next week"},
        {**record, "reference": 32},
        [record],
    ):
        with pytest.raises((KeyError, TypeError, ValueError)):
            to_remote(broken, "ticketsync_marker")


async def test_malformed_record_is_that_ticket_s_error_naming_it(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    emulator.tickets[reference]["updated_at"] = "0001-01-01T00:00:00+00:00"
    with pytest.raises(Unreadable, match=f"sirportly-test: ticket {reference}: ") as caught:
        await make().get(reference)
    assert caught.value.external_id == reference
    assert caught.value.raw.startswith("{") and len(caught.value.raw) <= Unreadable.RAW_CAP


def test_times_and_params() -> None:
    assert parse_time("2012-02-01T15:26:13+01:00") == datetime(2012, 2, 1, 14, 26, 13, tzinfo=UTC)
    assert parse_time("2012-02-01 15:26:13") == datetime(2012, 2, 1, 15, 26, 13, tzinfo=UTC)
    params, problems = to_params(
        {"queue": "3/4", "due_at": "2030-01-02T05:04:05+02:00", "assignee": "erin"}
    )
    assert params == {
        "department": "3",
        "team": "4",
        "resolution_due_at": "2030-01-02T03:04:05+00:00",
        "user": "erin",
    }
    assert not problems
    _, problems = to_params({"queue": "Support", "status": None, "description": "x"})
    assert problems == [
        "queue: 'Support' is not '<department id>/<team id>' (e.g. '3/2')",
        "status: Sirportly's documented API cannot clear it",
        "description: Sirportly's update API cannot write it",
    ]


# -- requests on the wire ----------------------------------------------------------------------


async def test_requests_are_form_posts_with_auth_headers(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(**first(vendor))
    adapter = make()
    await pull(adapter)
    await adapter.update(reference, {"status": "Resolved", "queue": "3/4"})
    for entry in emulator.log:
        assert entry["method"] == "POST"
        assert entry["headers"]["X-Auth-Token"] == entry["headers"]["X-Auth-Secret"] == "***"
        assert entry["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    spql = emulator.requests("POST", "/api/v2/tickets/spql")[0]["body"]["spql"]
    assert spql == (
        "SELECT tickets.reference, tickets.updated_at, tickets.last_update_posted_at FROM "
        "tickets WHERE (tickets.updated_at >= '2000-01-01 00:00:00' OR "
        "tickets.last_update_posted_at >= '2000-01-01 00:00:00') ORDER BY tickets.updated_at "
        "LIMIT 0,100"
    )
    update = emulator.requests("POST", "/api/v2/tickets/update")[0]
    assert update["body"] == {
        "ticket": reference,
        "status": "Resolved",
        "department": "3",
        "team": "4",
    }
    assert update["headers"]["X-Sirportly-Rules"] == "disabled"
    assert (
        "X-Sirportly-Rules" not in emulator.requests("POST", "/api/v2/tickets/ticket")[0]["headers"]
    )


async def test_rules_header_is_optional(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    emulator.configure(rule={"priority": "Urgent"})  # a Sirportly rule answering every write
    first_ref, second_ref = vendor.seed(priority="Low"), vendor.seed(priority="Low")
    await make().update(first_ref, {"title": "rules off"})
    assert emulator.tickets[first_ref]["priority"]["name"] == "Low"
    await make(options={"disable_rules": False}).update(second_ref, {"title": "rules on"})
    assert emulator.tickets[second_ref]["priority"]["name"] == "Urgent"
    assert (
        "X-Sirportly-Rules" not in emulator.requests("POST", "/api/v2/tickets/update")[1]["headers"]
    )


async def test_update_reply_without_messages_is_not_a_full_ticket(
    make: MakeAdapter, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    assert await make().update(reference, {"priority": "High"}) is None
    assert vendor.fetch(reference)["priority"] == "High"


# -- errors ------------------------------------------------------------------------------------


async def test_rejected_credentials_say_what_to_do(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    adapter = make(secret="wrong-secret")
    with pytest.raises(AuthRejected) as caught:
        await adapter.check()
    assert str(caught.value) == (
        "sirportly-test: tickets/all (ticket list page 1) -> HTTP 403: Invalid API token or "
        "secret. Check connections.sirportly-test.credentials.token and .secret (Sirportly: "
        "Admin > API Tokens), and that the token may call this method from this host's IP "
        "address."
    )
    assert "wrong-secret" not in str(caught.value)
    # 403 is not retried: one SPQL attempt, then the fallback's one attempt.
    assert [e["path"] for e in emulator.log] == ["/api/v2/tickets/spql", "/api/v2/tickets/all"]


async def test_check_passes_with_good_credentials(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    await make().check()
    assert [e["status"] for e in emulator.log] == [200]


async def test_missing_ticket_and_bad_reference_are_not_found(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(status="New")
    adapter = make()
    with pytest.raises(NotFound, match="HTTP 404: Ticket not found"):
        await adapter.update("ZZ-1", {"status": "Closed"})
    with pytest.raises(NotFound, match="HTTP 404: Status not found") as caught:
        await adapter.update(reference, {"status": "Bogus", "priority": "High"})
    assert caught.value.vendor_message == "Status not found"
    assert emulator.tickets[reference]["priority"]["name"] == "Normal"  # nothing applied
    assert await adapter.get(reference) is not None  # so the engine does not orphan it


async def test_team_off_the_escalation_path_is_item_error(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(queue="3/2")
    with pytest.raises(ItemError) as caught:
        await make().update(reference, {"queue": "3/5"})
    assert "team must be within the escalation path of the department" in str(caught.value)
    assert emulator.tickets[reference]["team"]["id"] == 2


async def test_department_only_push_sends_the_department_alone(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(queue="3/2")
    await make().update(reference, {"queue": "3"})  # team 2 is on department 3's path
    [sent] = emulator.requests("POST", "/api/v2/tickets/update")
    assert sent["body"] == {"ticket": reference, "department": "3"}
    assert sent["headers"].get("X-Sirportly-Rules") == "disabled"
    assert emulator.tickets[reference]["team"]["id"] == 2


async def test_department_only_push_refused_for_its_team_takes_the_paths_first_team(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(queue="3/4")
    await make().update(reference, {"queue": "5"})  # team 4 is not on department 5's path
    first, second = emulator.requests("POST", "/api/v2/tickets/update")
    assert first["status"] == 422 and "team" not in first["body"]
    assert second["body"] == {"ticket": reference, "department": "5", "team": "5"}
    assert second["headers"].get("X-Sirportly-Rules") == "disabled"
    ticket = emulator.tickets[reference]
    assert (ticket["department"]["id"], ticket["team"]["id"]) == (5, 5)


async def test_department_only_create_lands_in_that_department(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    values = {**SirportlyVendor.create_values, "queue": "5"}
    created = await make().create(values, "ts-6")
    assert created.fields["queue"] == "5/5"
    submit = emulator.requests("POST", "/api/v2/tickets/submit")[0]["body"]
    assert (submit["department"], submit["team"]) == ("5", "5")


def test_department_entry_matches_any_team_and_exact_entry_wins() -> None:
    rules = SyncRules.build(
        {"queue": {"support": "3", "second-line": "3/4"}},
        {},
        SirportlyAdapter.capabilities,
        direction="both",
        tie_break="local",
    )
    queue = rules.maps["queue"]
    assert queue.to_canonical("3/2") == "support"
    assert queue.to_canonical("3/4") == "second-line"
    assert queue.to_canonical("3") == "support"
    assert queue.to_vendor("support") == "3"
    with pytest.raises(Unmapped):
        queue.to_canonical("5/5")


async def test_409_is_item_error(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    emulator.inject("status", status=409, body={"error": "Not permitted"}, match=UPDATE)
    with pytest.raises(ItemError, match="HTTP 409: Not permitted"):
        await make().update(reference, {"title": "x"})


async def test_values_sirportly_cannot_take_are_refused_before_sending(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    with pytest.raises(ItemError, match="cannot clear it"):
        await make().update(reference, {"assignee": None})
    with pytest.raises(ItemError, match="is not '<department id>/<team id>'"):
        await make().update(reference, {"queue": "Support"})
    assert not emulator.requests("POST", "/api/v2/tickets/update")


async def test_429_on_a_read_waits_retry_after(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    sleeps = Sleeps()
    emulator.inject("status", status=429, headers={"Retry-After": "7"}, match=GET)
    assert await make(sleep=sleeps).get(reference) is not None
    assert max(sleeps.delays) >= 7


async def test_503_on_a_write_is_retriable_and_not_resent(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    emulator.inject("status", status=503, match=UPDATE)
    with pytest.raises(Retriable, match="Service Unavailable"):
        await make().update(reference, {"title": "x"})
    assert len(emulator.requests("POST", "/api/v2/tickets/update")) == 1


async def test_bad_cursor_is_protocol_error(make: MakeAdapter) -> None:
    with pytest.raises(ProtocolError, match="is not a cursor of this vendor"):
        await pull(make(), {"modified_after": "x"})


# -- pull: SPQL pages, fallback ----------------------------------------------------------------


def _seed_times(emulator: SirportlyEmulator, times: list[datetime]) -> set[str]:
    return {
        emulator.seed(subject=f"bulk {i}", updated_at=t)["reference"] for i, t in enumerate(times)
    }


async def _count(adapter: SirportlyAdapter, cursor: Any = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    async for page in adapter.changed_since(cursor):
        counts.update(t.external_id for t in page.tickets)
    return counts


async def test_spql_pages_yield_each_ticket_once(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    base = datetime.now(UTC) - timedelta(hours=2)
    same = [base] * 130  # a bulk change: more than a page within one second
    later = [base + timedelta(seconds=1 + i // 3) for i in range(200)]
    ids = _seed_times(emulator, same + later)
    counts = await _count(make())
    assert set(counts) == ids and set(counts.values()) == {1}
    queries = [e["body"]["spql"] for e in emulator.requests("POST", "/api/v2/tickets/spql")]
    assert any(q.endswith("LIMIT 100,100") for q in queries)  # paged into the crowd
    _, cursor = await pull(make())
    assert cursor["newest_seen"] == iso(later[-1]).replace("+00:00", "Z")


async def test_edit_during_the_pass_skips_nothing(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    ids = sorted(_seed_times(emulator, [base + timedelta(seconds=i) for i in range(250)]))
    seen: set[str] = set()
    async for page in make().changed_since(None):
        seen |= {t.external_id for t in page.tickets}
        emulator.edit(ids[0], subject="moved to the end")  # every page: one ticket moves
    assert seen == set(ids)


async def test_spql_refused_falls_back_to_the_ticket_list(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor, caplog: Any
) -> None:
    emulator.configure(spql_access=False, per_page=4)
    old = vendor.seed(modified_ago=3 * 3600, **first(vendor))
    recent = [vendor.seed(modified_ago=600 - i, **first(vendor)) for i in range(9)]
    ids = {old, *recent}
    adapter = make(options={"lookback_seconds": 0})
    pages = [page async for page in adapter.changed_since(None)]
    assert {t.external_id for p in pages for t in p.tickets} == ids
    assert all(p.cursor is None for p in pages[:-1])  # newest first: no cursor mid-pass
    assert pages[-1].tickets == [] and pages[-1].cursor is not None
    assert "refused the SPQL query (HTTP 403: You do not have access to reporting)" in caplog.text
    vendor.edit(old, title="edited")
    seen, _ = await pull(adapter, pages[-1].cursor)
    assert set(seen) == {old}  # the cursor is the vendor's clock at the pull's first reply
    lists = emulator.requests("POST", "/api/v2/tickets/all")
    assert lists[-1]["body"] == {"page": "1", "sort_by": "updated_at", "order": "desc"}
    assert len(emulator.requests("POST", "/api/v2/tickets/spql")) == 1  # remembered


async def test_spql_422_for_our_query_falls_back(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    emulator.inject("status", status=422, body={"errors": ["Invalid date literal"]}, match=SPQL)
    seen, cursor = await pull(make())
    assert set(seen) == {reference} and cursor is not None


async def test_list_that_is_not_sorted_is_protocol_error() -> None:
    def record(ref: str, minute: int) -> dict[str, Any]:
        return {"reference": ref, "updated_at": f"2025-01-01T10:{minute:02d}:00+00:00"}

    async def lister(page: int) -> Any:
        return {"records": [record("A-1", 1), record("A-2", 5)], "pagination": {"pages": 1}}

    scan = ListScan("sirportly-test", lister)
    with pytest.raises(ProtocolError, match="ignored sort_by=updated_at"):
        async for _ in scan.pages(datetime(2025, 1, 1, tzinfo=UTC)):
            pass


@pytest.mark.parametrize("kind", ["html200", "truncated"])
async def test_malformed_spql_reply_is_protocol_error(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor, kind: str
) -> None:
    vendor.seed()
    emulator.inject(kind, match=SPQL)
    with pytest.raises(ProtocolError):
        await pull(make())


async def test_dropped_read_is_retried_and_latency_waited(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed()
    emulator.inject("drop", match=GET)
    emulator.inject("latency", seconds=0.2, match=GET)
    started = asyncio.get_running_loop().time()
    assert await make().get(reference) is not None
    assert asyncio.get_running_loop().time() - started >= 0.2


# -- create ------------------------------------------------------------------------------------


async def test_create_submits_posts_the_description_and_keeps_the_marker(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    adapter = make()
    values = {**SirportlyVendor.create_values, "assignee": "dana", "due_at": "2030-05-06T07:08:09Z"}
    created = await adapter.create(values, "tsync-4-abcd")
    submit = emulator.requests("POST", "/api/v2/tickets/submit")[0]
    assert submit["status"] == 201
    assert submit["body"] == {
        "subject": "Created by ticketsync",
        "status": "New",
        "priority": "Normal",
        "department": "5",
        "team": "5",
        "contact_method_type": "email",
        "contact_method_data": "erin.customer@example.com",
        "contact_name": "erin.customer",
        "user": "dana",
        "custom[ticketsync_marker]": "tsync-4-abcd",
    }
    posted = emulator.requests("POST", "/api/v2/tickets/post_update")[0]["body"]
    assert posted["message"] == "Please send the invoice again." and posted["contact"]
    assert created.marker == "tsync-4-abcd"
    assert created.fields["description"] == "Please send the invoice again."
    assert created.fields["due_at"] == "2030-05-06T07:08:09Z"
    seen, _ = await pull(adapter)
    assert seen[created.external_id].marker == "tsync-4-abcd"  # the pull can link it


async def test_create_without_required_values_is_item_error(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    with pytest.raises(ItemError) as caught:
        await make().create({"title": "x"}, "ts-2")
    message = str(caught.value)
    for needed in ("status: needed", "priority: needed", "queue: needed", "requester_email"):
        assert needed in message
    assert not emulator.requests("POST")
    adapter = make(options={"default_queue": "3/2", "default_requester_email": "ops@example.com"})
    created = await adapter.create({"title": "x", "status": "New", "priority": "Low"}, "ts-3")
    assert created.fields["queue"] == "3/2"
    assert created.fields["requester_email"] == "ops@example.com"


async def test_unknown_marker_field_fails_the_create_naming_it(make: MakeAdapter) -> None:
    adapter = make(options={"marker_field": "not_created"})
    with pytest.raises(ItemError, match="custom_fields not_created is not known"):
        await adapter.create(SirportlyVendor.create_values, "ts-1")


async def test_failure_after_submit_is_not_an_item_error(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    emulator.inject("status", status=422, match="POST /api/v2/tickets/post_update")
    with pytest.raises(VendorError) as caught:
        await make().create(SirportlyVendor.create_values, "ts-5")
    assert not isinstance(caught.value, ItemError)  # the engine must not create it twice
    assert "was created but not completed" in str(caught.value)
    assert len(emulator.tickets) == 1


# -- options -----------------------------------------------------------------------------------


def test_options_are_validated() -> None:
    assert validate_options({}) == []
    assert validate_options({"default_queue": "3/2", "lookback_seconds": 0}) == []
    problems = validate_options(
        {
            "colour": 1,
            "disable_rules": "yes",
            "marker_field": "custom[x]",
            "lookback_seconds": -1,
            "default_queue": 3,
            "default_requester_email": "nobody",
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "options.colour",
        "options.disable_rules",
        "options.marker_field",
        "options.lookback_seconds",
        "options.default_queue",
        "options.default_requester_email",
    ]
    assert "unknown key" in problems[0]
    assert SirportlyAdapter.validate_options({"colour": 1}) == problems[:1]


async def test_bad_options_stop_the_adapter(make: MakeAdapter) -> None:
    with pytest.raises(ConfigError, match=r"connections\.sirportly-test\.options\.colour"):
        make(options={"colour": "blue"})


# -- the emulator itself -------------------------------------------------------------------------


async def _spql(adapter: SirportlyAdapter, query: str) -> tuple[int, Any]:
    response = await adapter._post("tickets/spql", {"spql": query}, safe=True)
    return response.status, response.json()


async def test_emulator_spql_subset_is_strict(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(status="Resolved")
    adapter = make()
    status, body = await _spql(
        adapter,
        "select tickets.reference, statuses.name, teams.id from tickets "
        "where tickets.updated_at > '2001-01-01T00:00:00+02:00' order by tickets.id desc limit 5",
    )
    assert status == 200
    assert body["fields"] == ["tickets.reference", "statuses.name", "teams.id"]
    assert body["results"] == [[reference, "Resolved", 2]]
    refused = {
        "SELECT tickets.reference FROM tickets GROUP BY tickets.id": "Invalid query",
        "SELECT tickets.colour FROM tickets": "Invalid column 'tickets.colour'",
        "SELECT custom.ticketsync_marker FROM tickets": "Invalid column",
        "SELECT tickets.id FROM tickets WHERE tickets.updated_at >= 3.months.ago": "Invalid query",
        "SELECT tickets.id FROM tickets WHERE tickets.subject = 'x'": "Invalid condition",
        "SELECT tickets.id FROM tickets WHERE tickets.updated_at >= 'soon'": "Invalid date",
        "SELECT tickets.id FROM users": "Invalid query",
    }
    for query, problem in refused.items():
        status, body = await _spql(adapter, query)
        assert status == 422 and body["errors"][0].startswith(problem), query
    assert emulator.deviations() == []


async def test_emulator_serves_what_clients_send_but_records_it(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(assignee="charlie")
    adapter = make()
    api = adapter._api
    auth = adapter._auth
    query = {"reference": reference}
    got = await api.request("GET", "/api/v1/tickets/ticket", params=query, headers=auth)
    assert got.json()["reference"] == reference
    body = {"ticket": reference, "user": ""}
    await api.request("POST", "/api/v2/tickets/update", json=body, headers=auth)
    assert emulator.tickets[reference]["user"] is None
    await _spql(adapter, "SELECT status.name FROM tickets")
    assert [d.split(": ", 1)[1] for d in emulator.deviations()] == [
        "/api/v1 path; Sirportly's pages document /api/v2",
        "sent by GET; Sirportly recommends POST",
        "parameters in the query string; Sirportly documents form fields",
        "ticket given as 'reference'; Sirportly documents 'ticket'",
        "JSON body; Sirportly documents form parameters",
        "empty user= clears the assignee (undocumented)",
        "SPQL singular table name 'status.name' (3P)",
    ]
    emulator.log.clear()


async def test_emulator_log_hides_credentials(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    await make().check()
    logged = json.dumps(emulator.log)
    assert emulator.token not in logged and emulator.secret not in logged


def test_sandbox_runs_as_its_own_process() -> None:
    command = [sys.executable, "-m", "sync.sandbox", "sirportly", "--port", "0", "--seed", "3"]
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
            assert len(tickets) == 3 and tickets[0]["updates"][0]["message"]
        finally:
            process.terminate()
            rest, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert rest == ""


async def test_control_api_edits_by_reference(
    make: MakeAdapter, emulator: SirportlyEmulator
) -> None:
    control = make().client(emulator.base_url)
    seeded = await control.request("POST", "/_sandbox/tickets", json={"subject": "Via HTTP"})
    reference = seeded.json()["tickets"][0]["reference"]
    for key in ("id", "reference"):
        await control.request(
            "POST", "/_sandbox/tickets", json={key: reference, "status": "Closed"}
        )
    assert len(emulator.tickets) == 1
    assert emulator.tickets[reference]["status"]["status_type"] == 1
    assert spql_query(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), 0, 1).endswith(
        "'2025-01-02 03:04:05') ORDER BY tickets.updated_at LIMIT 0,1"
    )


# -- comments (docs/vendor-apis.md §6.2) ------------------------------------------------------

POST_UPDATE = "POST /api/v2/tickets/post_update"


async def test_comment_post_sends_private_user_and_the_rules_header(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(**first(vendor))
    adapter = make(options={"comment_user": "charlie"})
    note = OutgoingComment("Refund approved.", False, "tsc-sp-1", author_user="erin")
    posted = await adapter.post_comment(reference, note)
    await adapter.post_comment(reference, OutgoingComment("Done.", True, "tsc-sp-2"))
    first_post, second_post = (e for e in emulator.log if e["path"].endswith("/post_update"))
    assert first_post["body"]["private"] == "1" and first_post["body"]["user"] == "erin"
    assert second_post["body"]["private"] == "0" and second_post["body"]["user"] == "charlie"
    assert first_post["headers"]["X-Sirportly-Rules"] == "disabled"
    assert posted.is_public is False and posted.author_name == "Erin Okafor"
    ticket = emulator.tickets[reference]
    assert ticket["update_count"] == 3  # the body and two comments
    assert [u["private"] for u in ticket["updates"]] == [False, True, False]


async def test_comment_post_without_an_author_names_the_option(
    make: MakeAdapter, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(**first(vendor))
    adapter = make()
    with pytest.raises(ItemError) as caught:
        await adapter.post_comment(reference, OutgoingComment("Hi.", True, "tsc-sp-3"))
    assert "user or contact" in str(caught.value)


async def test_the_body_is_no_comment_and_html_private_and_unknown_flags_are_read(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(modified_ago=600, **first(vendor))
    emulator.add_comment(reference, message="", html_body="<p>Hello <b>you</b></p>", user="dana")
    emulator.add_comment(reference, message="Internal.", private=True)
    emulator.tickets[reference]["updates"][-1]["private"] = None  # unreadable: private
    adapter = make()
    html, unknown = await adapter.list_comments(reference)
    assert (html.body, html.is_public, html.author_name) == ("Hello you", True, "Dana Li")
    assert unknown.is_public is False
    ticket = await adapter.get(reference)
    assert ticket is not None and ticket.fields["description"] == "It smokes."


async def test_reply_without_private_is_checked_against_the_ticket(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(**first(vendor))
    adapter = make(options={"comment_user": "charlie"})
    write = adapter._write

    async def without_private(method: str, data: Any, external_id: str) -> Any:
        reply = await write(method, data, external_id)
        return {k: v for k, v in reply.items() if k != "private"}

    adapter._write = without_private  # type: ignore[method-assign]
    posted = await adapter.post_comment(reference, OutgoingComment("Note.", False, "tsc-sp-4"))
    assert posted.is_public is False and posted.marker == "tsc-sp-4"
    emulator.configure(misfile_visibility=True)
    with pytest.raises(ProtocolError, match="posted private but the vendor holds it as public"):
        await adapter.post_comment(reference, OutgoingComment("Note.", False, "tsc-sp-5"))


async def test_counter_is_update_count_and_last_post(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    reference = vendor.seed(**first(vendor))
    adapter = make()
    ticket = await adapter.get(reference)
    posted_at = emulator.tickets[reference]["last_update_posted_at"]
    assert ticket is not None
    assert ticket.comment_counter == f"1|{parse_time(posted_at).isoformat().replace('+00:00', 'Z')}"
    emulator.configure(post_moves_updated_at=False)
    updated_at = emulator.tickets[reference]["updated_at"]
    emulator.add_comment(reference, message="Later.", posted_at=datetime.now(UTC) + timedelta(1))
    assert emulator.tickets[reference]["updated_at"] == updated_at
    ticket = await adapter.get(reference)
    assert ticket is not None and ticket.comment_counter is not None
    assert ticket.comment_counter.startswith("2|")


def test_update_records_are_read_tolerantly() -> None:
    assert [private_flag(v) for v in (True, "1", "true", 0, "f", None, "maybe", [])] == [
        True, True, True, False, False, None, None, None,
    ]  # fmt: skip
    record = {
        "updates": [
            {"id": 9, "message": "later", "private": False, "posted_at": "2026-01-02T00:00:00Z"},
            {"id": 3, "message": "body", "private": False, "posted_at": "2026-01-01T00:00:00Z"},
            {"id": 8, "message": "same\n\n[ticketsync:tsc-abcdef]", "private": "1",
             "posted_at": "2026-01-02T00:00:00Z"},
        ]
    }  # fmt: skip
    listed = comments_of(record)
    assert [(c.external_id, c.body, c.marker) for c in listed] == [
        ("8", "same", "tsc-abcdef"),
        ("9", "later", None),
    ]
    assert comments_of({"updates": None}) == []
    for bad in ({"updates": "x"}, {"updates": [{"id": 1}, {"id": "x1"}]}):
        with pytest.raises((ValueError, TypeError)):
            comments_of(bad)


async def test_pushing_comments_needs_an_author(make: MakeAdapter) -> None:
    # an account token's post_update needs an author (docs/vendor-apis.md §6.2)
    with pytest.raises(ConfigError, match=r"sirportly-test\.options\.comment_user: required"):
        make(comments={"direction": "both"})
    make(comments={"direction": "pull"})
    make(comments={"direction": "push"}, options={"comment_user": "charlie"})


def test_a_ticket_we_submitted_without_a_body_has_none() -> None:
    agent = {"type": "User", "id": 7, "username": "dana"}
    customer = {"type": "Customer", "id": 1}
    at = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    ours = {"custom_fields": {"ticketsync_marker": "tsm-1"}}
    agent_first = [
        {"id": 1, "message": "an agent's reply", "author": agent, "posted_at": at[0]},
        {"id": 2, "message": "more", "author": customer, "posted_at": at[1]},
    ]
    marked_first = [{"id": 1, "message": "x\n\n[ticketsync:tsc-1-abcd]", "posted_at": at[0]}]
    # ours, first written by staff: a comment, and no description
    assert [
        c.external_id for c in comments_of({**ours, "updates": agent_first}, "ticketsync_marker")
    ] == ["1", "2"]
    assert (
        to_remote(
            {**ours, "reference": "AB-1", "updates": agent_first}, "ticketsync_marker"
        ).fields["description"]
        is None
    )
    # not ours: the first update is the body, whoever wrote it
    assert [c.external_id for c in comments_of({"updates": agent_first}, "ticketsync_marker")] == [
        "2"
    ]
    assert (
        to_remote({"reference": "AB-1", "updates": agent_first}, "ticketsync_marker").fields[
            "description"
        ]
        == "an agent's reply"
    )
    # a first update carrying our comment marker is never the body
    assert [c.external_id for c in comments_of({"updates": marked_first})] == ["1"]
    # ours with a body posted as the contact: the body
    body_first = [{**agent_first[0], "author": customer}, agent_first[1]]
    assert [
        c.external_id for c in comments_of({**ours, "updates": body_first}, "ticketsync_marker")
    ] == ["2"]


def test_comment_user_option_is_validated() -> None:
    assert validate_options({"comment_user": "charlie"}) == []
    assert validate_options({"comment_user": 6}) == []
    (problem,) = validate_options({"comment_user": ""})
    assert problem.startswith("options.comment_user:")


async def test_a_new_update_alone_is_pulled_by_last_update_posted_at(
    make: MakeAdapter, emulator: SirportlyEmulator, vendor: SirportlyVendor
) -> None:
    quiet = vendor.seed(modified_ago=7200, **first(vendor))
    busy = [vendor.seed(modified_ago=3600 - i, **first(vendor)) for i in range(150)]
    adapter = make()
    _, cursor = await pull(adapter)
    emulator.configure(post_moves_updated_at=False)
    emulator.add_comment(quiet, message="A reply that leaves updated_at alone.")
    for reference in busy[:120]:
        emulator.edit(reference, subject="Edited")
    emulator.log.clear()
    counts = await _count(adapter, cursor)
    assert counts[quiet] == 1 and max(counts.values()) == 1  # each ticket once
    assert {quiet, *busy[:120]} <= set(counts)  # the rest: within the lookback
    seen, cursor = await pull(adapter, cursor)
    assert seen[quiet].comment_counter is not None
    assert seen[quiet].comment_counter.startswith("2|")
    again, _ = await pull(adapter, cursor)
    assert quiet not in again or again[quiet].comment_counter == seen[quiet].comment_counter


def test_emulator_spql_takes_or_of_time_conditions() -> None:
    emulator = SirportlyEmulator()
    old = emulator.seed(updated_at="2026-01-01T00:00:00Z")
    emulator.configure(post_moves_updated_at=False)
    emulator.add_comment(old["reference"], message="hi", posted_at="2026-02-01T00:00:00Z")
    emulator.seed(updated_at="2026-01-15T00:00:00Z")
    query = (
        "SELECT tickets.reference FROM tickets WHERE (tickets.updated_at >= '2026-01-10' "
        "OR tickets.last_update_posted_at >= '2026-01-10') ORDER BY tickets.updated_at"
    )
    deviations: list[str] = []
    _, rows = emulator._run_spql(query, deviations)
    assert [r[0] for r in rows] == [old["reference"], "SP-616002"]
    with pytest.raises(ValueError, match="Invalid condition"):
        emulator._run_spql(query.replace("last_update_posted_at", "subject"), deviations)
