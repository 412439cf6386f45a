"""Kapture CRM: the contract suite against the emulator, then Kapture's own behaviours."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from sync.config import ConnectionConfig, parse_config
from sync.errors import (
    AuthRejected,
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    Retriable,
)
from sync.http import HttpClient
from sync.sandbox.kapture import PATHS, KaptureEmulator
from sync.sandbox.kapture_data import QUEUES, SUB_STATUSES, TOKEN
from sync.vendors.base import Adapter, AdapterContext, OutgoingComment, RemoteTicket
from sync.vendors.kapture.adapter import KaptureAdapter
from sync.vendors.kapture.comments import conversation_count, note_id, to_comments
from sync.vendors.kapture.mapping import (
    Reader,
    Table,
    find_marker,
    marker_tag,
    parse_time,
    with_marker,
    without_marker,
)
from sync.vendors.kapture.options import validate_options
from sync.vendors.kapture.pull import DAY_GRACE, PullCursor
from tests.vendors.contract import AdapterContract, VendorHandle, pull

IST = ZoneInfo("Asia/Kolkata")
FAST_HTTP = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "max_attempts": 3,
    "total_timeout": 10,
    "read_timeout": 5,
    "connect_timeout": 2,
}
SUB_STATUS_NAMES = {key: name for key, (name, _) in SUB_STATUSES.items()}

# -- the vendor pages' example bodies, verbatim (add and update ticket; docs/vendor-apis.md §1) --

ADD_REQUEST = """[
{
"title": "TEST 1",
"ticket_details": "",
"due_date": "",
"email_id": ""
}
]"""
ADD_REPLY = """{
"ticket": {
"id": 530348198,
"type": "O",
"email": "",
"phone": "",
"status": "P",
"orderId": "",
"queueKey": "",
"ticketId": "713516551148",
"folderId": 0,
"detail": "",
"isUnread": true,
"isOutOfSLA": false,
"priority": 0,
"isCallBack": false,
"creatorId": 0,
"enquiryId": 0,
"contactId": 0,
"substatus": "US",
"productId": 0,
"erpOrderId": "",
"referenceId": 0,
"ticketEmail": "",
"assignedToId": 0,
"pendingTaskId": 0,
"agencyBriefId": 0,
"twitterUserId": "",
"facebookUserId": "",
"associativefile": "",
"statusName": "Pending",
"customerFeedback": 0,
"playStoreReviewId": "",
"lastConversationId": 0,
"lastConversationType": "O",
"lastConversationTime": 1713516551152,
"date": "2024-04-19 14:19:11",
"totalConversationCount": 0,
"taskTitle": "TEST 1",
"typeName": "Mobile App",
"taskEnddate": "2024-04-19 14:19:11",
"lastFollowUp": "2024-04-19 14:19:11",
"nextFollowUp": "2024-04-19 14:19:11",
"substatusName": "Unattended",
"encryptedPhone": "",
"encryptedEmail": "",
"lastConversationTypeName": "Mobile App",
"ticketURL": "/employee/view-task-detail.html?detail=5/530348198/713516551148",
"ticketCreatorURL": "/employee/view-task-detail.html?detail=5/530348198/713516551148",
"isEscalated": true,
"folders": [
"Inbox"
],
"queueName": "",
"creatorName": "",
"folderColor": "red",
"assignedToName": "",
"assignedToPhone": "",
"assignedToEmail": "",
"mergeTicketId": "",
"skuCode": "",
"productName": ""
},
"Additional_details": {},
"due_date": "2024-04-19 14:19:11",
"title": "TEST 1",
"customer_id": 0,
"ticket_id": "713516551148",
"Ticket Id": "713516551148",
"ticket_url": "https://devapi.kapturecrm.com/employee/view-task-detail.html?detail=5/530348198/713516551148",
"status": "success"
}"""
INVALID_AUTH = '{"message": "Invalid Auth Key","status": "failed"}'
TITLE_MISSING = '{"message": "title is missing", "status": "failed"}'
NO_DATA = '{ "message": "No Data found/ticket_id is missing", "status": "failed" }'
INVALID_FORMAT = (
    '{ "message": "Invalid Format.callback_date should be yyyy-MM-dd hh:mm:ss.", '
    '"status": "failed" }'
)
# The older page's capitalised failure keys and error name (docs/vendor-apis.md §1.8).
OLD_AUTH = '{"Message": "AuthKeyInvalid", "Status": "failed"}'


# -- fixtures ----------------------------------------------------------------------------------


def kapture_connection(
    emulator: KaptureEmulator,
    *,
    name: str = "kapture-test",
    options: Mapping[str, Any] | None = None,
    credentials: Mapping[str, str] | None = None,
    http: Mapping[str, Any] | None = None,
) -> ConnectionConfig:
    assert emulator.base_url is not None
    data = {
        "connections": {
            name: {
                "vendor": "kapture",
                "base_url": emulator.base_url,
                "credentials": dict(credentials or {"token": TOKEN}),
                "options": {
                    "sub_statuses": SUB_STATUS_NAMES,
                    "queues": dict(QUEUES),
                    **(options or {}),
                },
                "http": {**FAST_HTTP, **(http or {})},
            }
        }
    }
    return parse_config(data, env={}).connections[name]


@pytest.fixture
async def emulator() -> AsyncIterator[KaptureEmulator]:
    server = KaptureEmulator()
    await server.start()
    yield server
    await server.stop()


MakeAdapter = Callable[..., KaptureAdapter]


@pytest.fixture
async def make_adapter(emulator: KaptureEmulator) -> AsyncIterator[MakeAdapter]:
    made: list[KaptureAdapter] = []

    def make(**kw: Any) -> KaptureAdapter:
        connection = kapture_connection(emulator, **kw)

        def client(url: str) -> HttpClient:
            return HttpClient(connection.name, url, connection.http)

        adapter = KaptureAdapter(connection, AdapterContext(http=client))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.aclose()


#: Canonical field -> the emulator's ticket field.
EMULATOR_FIELDS = {
    "title": "title",
    "description": "detail",
    "status": "substatus",
    "priority": "priority",
    "queue": "queueKey",
    "assignee": "assignedToName",
    "requester_email": "email",
    "due_at": "due",
}


class KaptureVendor:
    """The contract suite's handle on the Kapture emulator (see tests/vendors/contract.py)."""

    has_modified_at = False
    missing_id = "999999999999"
    read_route = f"POST {PATHS['get']}"
    write_route = f"POST {PATHS['update']}"
    values: Mapping[str, tuple[str, str]] = {
        "title": ("Printer on fire", "Printer extinguished"),
        "description": ("It smokes.", "It no longer smokes."),
        "status": ("P", "CL"),
        "priority": ("0", "2"),
        "queue": ("SUPPORT", "BILLING"),
        "assignee": ("Asha Rao", "George Vincent"),
        "requester_email": ("carol@example.com", "dave@example.com"),
        "due_at": ("2030-01-02T03:04:00Z", "2031-02-03T04:05:00Z"),
    }
    create_values: Mapping[str, str] = {
        "title": "Created by ticketsync",
        "description": "Made in the mirror.",
        "status": "P",
        "queue": "BILLING",
        "requester_email": "erin@example.com",
        "due_at": "2030-05-06T07:08:00Z",
    }

    def __init__(self, emulator: KaptureEmulator) -> None:
        self.emulator = emulator
        self.reader = Reader(
            IST,
            Table("sub-status", "sub_statuses", SUB_STATUS_NAMES),
            Table("queue", "queues", QUEUES),
            Table("priority", "priorities", {}),
        )

    @staticmethod
    def _kapture(fields: Mapping[str, Any]) -> dict[str, Any]:
        values = {EMULATOR_FIELDS[name]: value for name, value in fields.items()}
        if "priority" in values:
            values["priority"] = int(values["priority"])
        return values

    def seed(self, modified_ago: float = 0.0, **fields: Any) -> str:
        created = self.emulator.clock() - timedelta(seconds=modified_ago)
        ticket = self.emulator.seed(created=created, **self._kapture(fields))
        return str(ticket["ticketId"])

    def edit(self, external_id: str, **fields: Any) -> None:
        self.emulator.edit(external_id, **self._kapture(fields))

    def fetch(self, external_id: str) -> Mapping[str, Any]:
        record = self.emulator.task_details(self.emulator.tickets[external_id])
        return self.reader.ticket(record["task_details"], record).fields

    def inject(self, kind: str, **params: Any) -> None:
        self.emulator.inject(kind, **params)

    def deviations(self) -> list[str]:
        return self.emulator.deviations()

    checks_visibility = False  # Kapture's reply names no comment, let alone its visibility
    comment_read_route = read_route

    def add_comment(self, external_id: str, body: str, *, public: bool, ago: float) -> None:
        when = self.emulator.clock() - timedelta(seconds=ago)
        self.emulator.add_comment(external_id, detail=body, sentDate=when)

    def stored_comments(self, external_id: str) -> list[tuple[str, bool | None]]:
        return [(n["detail"], None) for n in self.emulator.tickets[external_id]["notes"]]

    def misfile_visibility(self) -> None:
        raise AssertionError("Kapture states no visibility to mis-file")


@pytest.fixture
def vendor(emulator: KaptureEmulator) -> KaptureVendor:
    return KaptureVendor(emulator)


@pytest.fixture
def adapter(make_adapter: MakeAdapter) -> KaptureAdapter:
    return make_adapter()


@pytest.fixture(autouse=True)
def no_deviations(emulator: KaptureEmulator) -> Iterator[None]:
    yield
    assert emulator.deviations() == []


class TestKaptureContract(AdapterContract):
    @pytest.fixture
    def adapter(self, make_adapter: MakeAdapter) -> KaptureAdapter:
        return make_adapter(options={"read_notes": True})

    async def test_cursor_resumption_yields_later_edits_only(
        self, adapter: Adapter, vendor: VendorHandle
    ) -> None:
        # Kapture has no changed-since API: edits come from re-polling ``watch``, and the
        # created-date pass does not re-read days the cursor has passed.
        old = vendor.seed(modified_ago=3 * 86400, **self.first_values(vendor))
        unchanged = vendor.seed(modified_ago=2 * 86400, **self.first_values(vendor))
        _, cursor = await pull(adapter)
        vendor.edit(old, status="CL")
        seen = await drain(adapter, cursor, [old])
        assert seen[old].fields["status"] == "CL"
        assert unchanged not in seen


async def drain(
    adapter: Adapter, cursor: Any = None, watch: list[str] | None = None
) -> dict[str, RemoteTicket]:
    seen: dict[str, RemoteTicket] = {}
    async for page in adapter.changed_since(cursor, watch or []):
        for ticket in page.tickets:
            seen[ticket.external_id] = ticket
    return seen


async def last_cursor(adapter: KaptureAdapter, cursor: Any = None, watch: Any = ()) -> Any:
    async for page in adapter.changed_since(cursor, list(watch)):
        cursor = page.cursor
    return cursor


def bodies(emulator: KaptureEmulator, endpoint: str) -> list[Any]:
    return [entry["body"] for entry in emulator.requests("POST", PATHS[endpoint])]


# -- parsers, fed the vendor pages' examples -----------------------------------------------------


def test_add_reply_example_parses() -> None:
    reader = KaptureVendor(KaptureEmulator()).reader
    document = json.loads(ADD_REPLY)
    ticket = reader.ticket(document["ticket"], document)
    assert ticket.external_id == "713516551148"
    assert ticket.raw["ticket"]["id"] == 530348198  # both ids kept
    assert ticket.fields["title"] == "TEST 1"
    assert ticket.fields["status"] == "US"  # the key, from substatus (name beside it)
    assert ticket.fields["priority"] == "0"
    assert ticket.fields["queue"] is None
    assert ticket.fields["description"] is None
    assert ticket.fields["requester_email"] is None
    # "2024-04-19 14:19:11" IST is 08:49:11 UTC, the epoch of lastConversationTime.
    assert ticket.fields["due_at"] == "2024-04-19T08:49:11Z"
    last = parse_time(document["ticket"]["lastConversationTime"], IST)
    assert last is not None and last.replace(microsecond=0) == datetime(
        2024, 4, 19, 8, 49, 11, tzinfo=UTC
    )
    assert ticket.modified_at is None
    assert ticket.marker is None


async def test_add_request_example_is_served_and_judged(emulator: KaptureEmulator) -> None:
    # The page's own example sends placeholder empty strings: served, but flagged.
    async with aiohttp.ClientSession() as session:
        url = f"{emulator.base_url}{PATHS['create']}"
        headers = {"Authorization": f"Basic {TOKEN}", "Content-Type": "application/json"}
        async with session.post(url, data=ADD_REQUEST, headers=headers) as resp:
            reply = await resp.json()
    assert reply["status"] == "success" and reply["ticket"]["taskTitle"] == "TEST 1"
    assert set(reply) == set(json.loads(ADD_REPLY))
    assert set(reply["ticket"]) <= set(json.loads(ADD_REPLY)["ticket"])
    flagged = sorted(d.split(": ")[1] for d in emulator.deviations())
    assert flagged == ["due_date", "email_id", "ticket_details"]
    emulator.log.clear()


def test_names_and_keys_both_read() -> None:
    reader = KaptureVendor(KaptureEmulator()).reader
    assert reader.ticket({"ticketId": "1", "substatus": "Closed"}).fields["status"] == "CL"
    assert reader.ticket({"ticketId": "1", "substatus": "CL"}).fields["status"] == "CL"
    assert reader.ticket({"ticketId": "1", "substatus": " closed "}).fields["status"] == "CL"
    both = {"ticketId": "1", "substatus": "CL", "substatusName": "Closed"}
    assert reader.ticket(both).fields["status"] == "CL"
    assert reader.ticket({"ticketId": "1", "queueName": "Billing"}).fields["queue"] == "BILLING"
    # A field the record does not carry is left out, not reported empty.
    assert set(reader.ticket({"ticketId": "1", "title": "x"}).fields) == {"title"}


@pytest.mark.parametrize(
    ("record", "name", "problem"),
    [
        ({"ticketId": "1", "substatus": "Escalated"}, "status", "unknown sub-status"),
        ({"ticketId": "1", "taskEnddate": "19-04-1970 14:19"}, "due_at", "absurd"),
        ({"ticketId": "1", "taskEnddate": "tomorrow"}, "due_at", "none of Kapture's formats"),
        ({"ticketId": "1", "title": {"nested": 1}}, "title", "expected text"),
    ],
)
def test_an_unreadable_field_waits_while_the_rest_is_read(
    record: dict[str, Any], name: str, problem: str
) -> None:
    reader = KaptureVendor(KaptureEmulator()).reader
    ticket = reader.ticket({**record, "email": "still@read.example"})
    assert name not in ticket.fields and ticket.fields["requester_email"] == "still@read.example"
    assert problem in ticket.unreadable[name].error


def test_a_record_without_an_id_is_unreadable() -> None:
    reader = KaptureVendor(KaptureEmulator()).reader
    with pytest.raises(ValueError, match="no ticketId"):
        reader.ticket({"title": "no id"})


def test_local_time_formats() -> None:
    expected = datetime(2024, 4, 19, 8, 49, tzinfo=UTC)
    assert parse_time("19-04-2024 14:19", IST) == expected
    assert parse_time("2024-04-19 14:19:00", IST) == expected
    assert parse_time(1713516540000, IST) == expected
    assert parse_time("1713516540000", IST) == expected
    assert parse_time("", IST) is None
    assert parse_time("19-04-2024 14:19", UTC) == expected + timedelta(hours=5, minutes=30)


def test_marker_written_and_stripped() -> None:
    text = with_marker("It smokes.", "tsync-7-abcd1234")
    assert text.endswith(marker_tag("tsync-7-abcd1234"))
    assert without_marker(text) == "It smokes."
    assert without_marker(text.replace("\n", "<br>")) == "It smokes."
    assert find_marker({"a": [{"b": text}]}) == "tsync-7-abcd1234"
    assert find_marker({"additional_info": {"ticketsync_marker": "m-1"}}) == "m-1"
    assert find_marker({"detail": "no marker"}) is None


def test_cursor_shape() -> None:
    assert PullCursor.load(None, "k") == PullCursor()
    cursor = PullCursor.load({"created_day": "2026-03-04", "repoll": 7}, "k")
    assert cursor.dump() == {"created_day": "2026-03-04", "repoll": 7, "repoll_closed": 0}
    for bad in ({"created_day": "yesterday"}, {"repoll": -1}, "2026-03-04"):
        with pytest.raises(ProtocolError, match="not a Kapture cursor"):
            PullCursor.load(bad, "k")


def test_validate_options() -> None:
    assert validate_options({}) == []
    assert validate_options({"time_zone": "UTC", "repoll_budget": 10, "batch_size": 50}) == []
    problems = validate_options(
        {
            "time_zone": "Mars/Olympus",
            "repoll_budget": 0,
            "batch_size": 51,
            "sub_statuses": {"A": "Open", "B": "open"},
            "queues": [],
            "api_key_headers": "yes",
            "sort": "asc",
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "options.time_zone",
        "options.repoll_budget",
        "options.batch_size",
        "options.sub_statuses",
        "options.queues",
        "options.api_key_headers",
        "options.sort",
    ]
    assert "unknown key" in problems[-1]
    assert "open is given twice" in problems[3]


async def test_invalid_options_are_config_errors(emulator: KaptureEmulator) -> None:
    # The config's one pass reports it; the adapter would refuse it too.
    with pytest.raises(ConfigError, match=r"kapture-test\.options\.batch_size"):
        connection = kapture_connection(emulator, options={"batch_size": 0})
        KaptureAdapter(connection, AdapterContext(http=lambda url: None))  # type: ignore[arg-type,return-value]


# -- documented errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (INVALID_AUTH, AuthRejected, "Invalid Auth Key"),
        (OLD_AUTH, AuthRejected, "AuthKeyInvalid"),
        (TITLE_MISSING, ItemError, "title is missing"),
        (NO_DATA, NotFound, "No Data found"),
        (INVALID_FORMAT, ItemError, "callback_date"),
    ],
)
async def test_documented_failures_under_http_200(
    adapter: KaptureAdapter,
    vendor: KaptureVendor,
    emulator: KaptureEmulator,
    body: str,
    error: type[Exception],
    words: str,
) -> None:
    external_id = vendor.seed(status="P")
    emulator.inject("status", status=200, body=json.loads(body), match=f"POST {PATHS['update']}")
    with pytest.raises(error) as caught:
        await adapter.update(external_id, {"status": "CL"})
    assert words in str(caught.value)
    assert adapter.name in str(caught.value)
    assert type(caught.value) is error


async def test_invalid_auth_key_names_the_credential(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    emulator.configure(tokens={"create": "key-c", "update": "key-u", "read": "key-r"})
    adapter = make_adapter(
        credentials={"create_token": "key-c", "update_token": "wrong", "read_token": "key-r"}
    )
    external_id = vendor.seed(status="P")
    assert await adapter.get(external_id) is not None
    with pytest.raises(AuthRejected) as caught:
        await adapter.update(external_id, {"status": "CL"})
    message = str(caught.value)
    assert "connections.kapture-test.credentials.update_token" in message
    assert "Invalid Auth Key" in message
    assert "wrong" not in message
    assert len(emulator.requests("POST", PATHS["update"])) == 1  # not retried
    created = await adapter.create({"title": "per-endpoint keys"}, "m-keys")
    assert created.external_id in emulator.tickets


async def test_invalid_auth_key_with_http_401(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    emulator.configure(failure_status=401)
    emulator.revoke()
    with pytest.raises(AuthRejected, match=r"credentials\.token"):
        await adapter.check()
    assert len(emulator.requests("POST", PATHS["pull"])) == 1


async def test_check_passes_with_no_tickets(adapter: KaptureAdapter) -> None:
    await adapter.check()  # "No Data found" for today still proves the key


async def test_failure_under_4xx_keeps_kapture_message(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    emulator.configure(failure_status=400)
    with pytest.raises(NotFound, match="No Data found"):
        await adapter.update("42", {"status": "CL"})
    assert await adapter.get("42") is None


async def test_404_without_kapture_body_is_protocol_error(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    emulator.inject("status", status=404, body="<html>Not Found</html>", match=PATHS["get"])
    with pytest.raises(ProtocolError, match="base_url"):
        await adapter.get("42")


async def test_unknown_sub_status_is_that_field_s_error_only(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    emulator.configure(sub_statuses={**SUB_STATUSES, "ESC": ("Escalated", "P")})
    external_id = vendor.seed(status="ESC", title="readable")
    ticket = await adapter.get(external_id)
    assert ticket is not None and ticket.fields["title"] == "readable"
    assert "status" not in ticket.fields
    problem = ticket.unreadable["status"]
    assert problem.value == "Escalated" and "options.sub_statuses" in problem.error


async def test_a_record_that_does_not_parse_fails_alone_in_its_page(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    records = [{"ticketId": "5", "title": "good"}, {"title": "no id"}]
    body = {"status": "success", "message": records, "totalCount": 2}
    emulator.inject("status", status=200, body=body, match=PATHS["pull"])
    pages = [page async for page in adapter.changed_since(None)]
    assert "5" in {t.external_id for p in pages for t in p.tickets}
    failures = [f for p in pages for f in p.failures]
    assert len(failures) == 1 and "no ticketId" in failures[0].error
    assert failures[0].external_id is None and "no id" in failures[0].raw


async def test_wrong_shape_is_protocol_error(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    emulator.inject("status", status=200, body={"status": "success", "message": 5})
    with pytest.raises(ProtocolError, match="tickets under 'message'"):
        await drain(adapter)
    emulator.inject("status", status=200, body=[{"task_details": "x"}], match=PATHS["get"])
    with pytest.raises(ProtocolError, match="task_details"):
        await adapter.get("42")


# -- update and create ---------------------------------------------------------------------------


async def test_update_sends_current_sub_status_with_a_queue_change(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="OP", queue="SUPPORT")
    ticket = await adapter.update(external_id, {"queue": "BILLING"})
    assert bodies(emulator, "update") == [
        [{"ticket_id": external_id, "sub_status": "OP", "queue": "BILLING"}]
    ]
    assert ticket is not None and ticket.fields["queue"] == "BILLING"
    assert ticket.fields["status"] == "OP"


async def test_an_update_right_after_a_read_uses_that_read_for_the_sub_status(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="OP", queue="SUPPORT")
    await adapter.get(external_id)  # the engine's read before the update
    reads = len(bodies(emulator, "get"))
    await adapter.update(external_id, {"queue": "BILLING"})
    assert len(bodies(emulator, "get")) == reads, "no second read for the sub-status"
    assert bodies(emulator, "update") == [
        [{"ticket_id": external_id, "sub_status": "OP", "queue": "BILLING"}]
    ]
    await adapter.update(external_id, {"queue": "SUPPORT"})  # that read is used once only
    assert len(bodies(emulator, "get")) == reads + 1


async def test_update_rejects_what_kapture_cannot_take(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="P")
    with pytest.raises(ItemError, match="cannot write priority"):
        await adapter.update(external_id, {"priority": "2"})
    with pytest.raises(ItemError, match=r"not in options\.sub_statuses"):
        await adapter.update(external_id, {"status": "XX"})
    with pytest.raises(ItemError, match="cannot clear"):
        await adapter.update(external_id, {"status": "P", "queue": None})
    with pytest.raises(ItemError, match="needs a sub-status"):
        await adapter.update(external_id, {"status": None})
    assert bodies(emulator, "update") == []


async def test_capabilities_declare_priority_unwritable() -> None:
    caps = KaptureAdapter.capabilities
    assert caps.writable == {"status", "queue"}
    assert "priority" in caps.readable
    assert not caps.changed_since and caps.fetch_before_update and caps.finds_markers


async def test_create_places_marker_and_sets_sub_status(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    created = await adapter.create(KaptureVendor.create_values, "tsync-9-00ff00ff")
    [body] = bodies(emulator, "create")
    assert body == [
        {
            "title": "Created by ticketsync",
            "ticket_details": "Made in the mirror.\n\n[ticketsync:tsync-9-00ff00ff]",
            "due_date": "2030-05-06 12:38:00",  # IST
            "email_id": "erin@example.com",
            "queue": "BILLING",
            "ticketsync_marker": "tsync-9-00ff00ff",
        }
    ]
    # add-ticket takes no status: the new ticket (US) is moved to the mirror's P.
    assert bodies(emulator, "update") == [[{"ticket_id": created.external_id, "sub_status": "P"}]]
    assert created.fields["status"] == "P"
    assert created.fields["description"] == "Made in the mirror."
    assert created.marker == "tsync-9-00ff00ff"
    assert created.raw["ticket"]["id"] == emulator.tickets[created.external_id]["taskId"]
    fetched = await adapter.get(created.external_id)
    assert fetched is not None and fetched.fields["description"] == "Made in the mirror."


async def test_create_without_title_is_item_error(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    with pytest.raises(ItemError, match="requires a title"):
        await adapter.create({"description": "x"}, "m")
    assert bodies(emulator, "create") == []


async def test_lost_create_reply_is_found_by_marker(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    emulator.inject("apply_then_drop", match=PATHS["create"])
    with pytest.raises(Retriable):
        await adapter.create({"title": "Lost reply"}, "tsync-3-deadbeef")
    assert len(emulator.tickets) == 1
    found = await adapter.find_marker("tsync-3-deadbeef")
    assert found is not None and found.external_id in emulator.tickets


async def test_find_marker_scans_earlier_days(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    adapter = make_adapter(options={"marker_days": 3})
    old = emulator.seed(
        title="Two days old",
        detail=with_marker("d", "tsync-1-11111111"),
        created=emulator.clock() - timedelta(days=2),
    )
    for i in range(3):
        vendor.seed(title=f"other {i}")
    found = await adapter.find_marker("tsync-1-11111111")
    assert found is not None and found.external_id == old["ticketId"]
    assert await adapter.find_marker("tsync-1-22222222") is None
    pulled = [body[0]["start_date"] for body in bodies(emulator, "pull")]
    assert len(set(pulled)) == 3  # today and the two days before, one call each


# -- the pull ------------------------------------------------------------------------------------


async def test_first_import_reads_one_day_per_call(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    adapter = make_adapter(options={"initial_days": 3})
    now = emulator.clock()
    ids = {vendor.seed(modified_ago=86400 * age, title=f"t{age}") for age in (0, 1, 2)}
    too_old = vendor.seed(modified_ago=86400 * 3, title="too old")
    seen = await drain(adapter)
    assert set(seen) == ids
    assert too_old not in seen
    calls = [body[0] for body in bodies(emulator, "pull")]
    assert all(call["start_date"] == call["end_date"] for call in calls)
    today = now.astimezone(IST).date()
    assert [call["start_date"] for call in calls] == [
        (today - timedelta(days=n)).isoformat() for n in (2, 1, 0)
    ]
    cursor = await last_cursor(adapter)
    # within DAY_GRACE of the tenant's midnight, yesterday is read again on the next run
    local = now.astimezone(IST)
    since_midnight = local - local.replace(hour=0, minute=0, second=0, microsecond=0)
    resume = today if since_midnight >= DAY_GRACE else today - timedelta(days=1)
    assert cursor == {"created_day": resume.isoformat(), "repoll": 0, "repoll_closed": 0}


async def test_created_pull_pages_with_limit_and_offset(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    adapter = make_adapter(options={"page_size": 40, "initial_days": 1})
    ids = {vendor.seed(title=f"t{i}") for i in range(100)}
    pages = [page async for page in adapter.changed_since(None)]
    assert [len(p.tickets) for p in pages] == [40, 40, 20]
    assert {t.external_id for p in pages for t in p.tickets} == ids
    offsets = [body[0]["offset"] for body in bodies(emulator, "pull")]
    assert offsets == ["0", "40", "80"]


async def test_tenant_without_pagination_sends_everything(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    emulator.configure(paginate=False)
    adapter = make_adapter(options={"page_size": 10, "initial_days": 1})
    ids = {vendor.seed(title=f"t{i}") for i in range(25)}
    assert set(await drain(adapter)) == ids
    assert len(bodies(emulator, "pull")) == 1


async def test_ignored_offset_is_an_error_not_a_gap(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    adapter = make_adapter(options={"page_size": 2, "initial_days": 1})
    vendor.seed(title="a")
    vendor.seed(title="b")
    vendor.seed(title="c")
    first = await emulator_page(emulator, 2)
    emulator.inject("status", status=200, body=first, times=1, match=PATHS["pull"])
    emulator.inject("status", status=200, body=first, times=1, match=PATHS["pull"])
    with pytest.raises(ProtocolError, match="ignore offset"):
        await drain(adapter)


async def emulator_page(emulator: KaptureEmulator, limit: int) -> dict[str, Any]:
    rows = sorted(emulator.tickets.values(), key=lambda t: t["taskId"])[:limit]
    return {
        "totalCount": len(emulator.tickets),
        "message": [emulator.summary(t) for t in rows],
        "status": "success",
    }


async def test_day_stays_in_cursor_until_it_is_over(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    adapter = make_adapter(options={"initial_days": 2})
    vendor.seed(title="yesterday", modified_ago=86400)
    today = emulator.clock().astimezone(IST).date()
    yesterday = today - timedelta(days=1)
    late = datetime.combine(today, datetime.min.time(), IST) + timedelta(minutes=30)
    adapter.reads.clock = lambda: late.astimezone(UTC)  # within DAY_GRACE after midnight
    cursor = await last_cursor(adapter)
    assert cursor["created_day"] == yesterday.isoformat()
    adapter.reads.clock = lambda: (late + timedelta(hours=2)).astimezone(UTC)
    cursor = await last_cursor(adapter, cursor)
    assert cursor["created_day"] == today.isoformat()


async def test_repoll_cycles_through_watch_under_budget(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    adapter = make_adapter(options={"repoll_budget": 3, "batch_size": 2, "initial_days": 1})
    watch = [vendor.seed(title=f"t{i}", modified_ago=3 * 86400) for i in range(7)]
    cursor = None
    rounds = []
    for _ in range(3):
        emulator.log.clear()
        seen: list[str] = []
        async for page in adapter.changed_since(cursor, watch):
            seen += [t.external_id for t in page.tickets]
            cursor = page.cursor
        rounds.append(seen)
        searched = [b["ticket_ids"] for b in bodies(emulator, "get")]
        assert [len(s.split(",")) for s in searched] == [2, 1]
    assert rounds == [watch[0:3], watch[3:6], [watch[6], watch[0], watch[1]]]
    assert cursor is not None and cursor["repoll"] == 2


async def test_closed_tickets_get_a_lower_share_of_the_budget(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    from sync.vendors.base import Watch

    adapter = make_adapter(options={"repoll_budget": 5, "batch_size": 50, "initial_days": 1})
    opened = [vendor.seed(title=f"o{i}", modified_ago=3 * 86400) for i in range(8)]
    closed = [vendor.seed(title=f"c{i}", modified_ago=3 * 86400) for i in range(4)]
    cursor = None
    for _ in range(8):
        async for page in adapter.changed_since(cursor, Watch(opened, closed)):
            cursor = page.cursor
    reads: dict[str, int] = {}
    for body in bodies(emulator, "get"):
        for external_id in body["ticket_ids"].split(","):
            reads[external_id] = reads.get(external_id, 0) + 1
    # 5 a run: 4 open (8 open tickets every 2 runs) and 1 closed (4 closed every 4 runs)
    assert [reads.get(i) for i in opened + closed] == [4] * 8 + [2] * 4, reads
    assert all(reads[i] == 2 for i in closed), "closed ones are re-read too, less often"


async def test_short_batch_answer_falls_back_to_single_ids(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    emulator.configure(batch_limit=2)
    adapter = make_adapter(options={"batch_size": 5, "initial_days": 1})
    watch = [vendor.seed(title=f"t{i}", modified_ago=3 * 86400) for i in range(5)]
    watch.insert(2, "888888888888")  # deleted at Kapture: skipped, not an error
    seen = await drain(adapter, None, watch)
    assert set(seen) == set(watch) - {"888888888888"}
    searched = [b["ticket_ids"] for b in bodies(emulator, "get")]
    assert searched[0] == ",".join(watch[:5])
    assert searched[1:] == [watch[2], watch[3], watch[4], watch[5]]


async def test_repolled_ticket_shows_remote_edit(
    adapter: KaptureAdapter, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="P", modified_ago=5 * 86400)
    vendor.edit(external_id, status="RS", assignee="Asha Rao")
    seen = await drain(adapter, None, [external_id])
    assert seen[external_id].fields["status"] == "RS"
    assert seen[external_id].fields["assignee"] == "Asha Rao"


async def test_time_zone_option(make_adapter: MakeAdapter, emulator: KaptureEmulator) -> None:
    emulator.configure(time_zone="UTC")
    adapter = make_adapter(options={"time_zone": "UTC"})
    ticket = emulator.seed(title="utc", due="2030-01-02T03:04:00Z")
    fetched = await adapter.get(ticket["ticketId"])
    assert fetched is not None and fetched.fields["due_at"] == "2030-01-02T03:04:00Z"


# -- faults --------------------------------------------------------------------------------------


async def test_pull_retried_after_429_with_retry_after(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(title="x")
    emulator.inject("status", status=429, headers={"Retry-After": "0"}, match=PATHS["pull"])
    seen = await drain(adapter)
    assert external_id in seen
    statuses = [e["status"] for e in emulator.requests("POST", PATHS["pull"])]
    assert statuses[:2] == [429, 200]


async def test_dropped_read_is_retried_and_latency_tolerated(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(title="x")
    emulator.inject("drop", match=PATHS["get"])
    emulator.inject("latency", seconds=0.2, match=PATHS["get"])
    assert await adapter.get(external_id) is not None


async def test_dropped_update_is_not_retried(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="P")
    emulator.inject("drop", match=PATHS["update"])
    with pytest.raises(Retriable):
        await adapter.update(external_id, {"status": "CL"})
    assert len(emulator.requests("POST", PATHS["update"])) == 1
    assert emulator.tickets[external_id]["substatus"] == "P"


async def test_5xx_on_write_is_retriable_and_html_pull_is_protocol_error(
    adapter: KaptureAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="P")
    emulator.inject("status", status=502, match=PATHS["update"])
    with pytest.raises(Retriable, match="ServerFailure"):
        await adapter.update(external_id, {"status": "CL"})
    emulator.inject("html200", match=PATHS["pull"])
    with pytest.raises(ProtocolError, match="HTML"):
        await drain(adapter)


# -- the emulator itself -------------------------------------------------------------------------


async def test_emulator_records_deviations(emulator: KaptureEmulator) -> None:
    headers = {"Authorization": f"Basic {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        url = f"{emulator.base_url}{PATHS['pull']}"
        body = {"start_date": "2026-01-01", "end_date": "2026-01-03", "status": "x"}
        async with session.post(url, json=body, headers=headers) as resp:
            assert (await resp.json())["status"] == "failed"  # no data, but served
        url = f"{emulator.base_url}{PATHS['get']}"
        async with session.post(url, json=[{"ticket_id": "1"}], headers=headers) as resp:
            assert (await resp.json())["message"] == "No Data found"
    found = emulator.deviations()
    assert any("bare object body" in d for d in found)
    assert any("window of 3 days" in d for d in found)
    assert any("3P body variant" in d for d in found)
    assert any("array body" in d for d in found)
    assert any("ticket_id instead of ticket_ids" in d for d in found)
    emulator.log.clear()


def test_emulator_runs_as_its_own_process() -> None:
    command = [sys.executable, "-m", "sync.sandbox", "kapture", "--port", "0", "--seed", "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.split()[-1] + "/_sandbox/tickets"
            with urllib.request.urlopen(url, timeout=5) as reply:
                assert len(json.load(reply)["tickets"]) == 3
        finally:
            process.terminate()
            process.wait(timeout=10)


async def test_api_key_headers_are_opt_in(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(title="x")
    await make_adapter().get(external_id)
    await make_adapter(options={"api_key_headers": True}).get(external_id)
    plain, extra = (e["headers"] for e in emulator.requests("POST", PATHS["get"]))
    assert "x-api-key" not in {k.lower() for k in plain}
    assert extra["x-api-key"] == "***" and extra["x-api-type"] == "TICKET"


async def test_failed_sub_status_after_create_leaves_marker_findable(
    adapter: KaptureAdapter, emulator: KaptureEmulator
) -> None:
    emulator.inject("status", status=503, match=PATHS["update"])
    with pytest.raises(Retriable):
        await adapter.create({"title": "Half done", "status": "CL"}, "tsync-5-0badf00d")
    found = await adapter.find_marker("tsync-5-0badf00d")
    assert found is not None and found.fields["status"] == "US"


# -- comments (docs/vendor-apis.md §6.3) -------------------------------------------------------


async def test_comment_goes_through_the_update_with_the_current_sub_status(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="OP")
    adapter = make_adapter()
    assert not adapter.capabilities.comments_read and not adapter.capabilities.private_comments
    posted = await adapter.post_comment(
        external_id, OutgoingComment("Alice via Zoho Desk:\nShipped today.", True, "tsc-k-1")
    )
    assert posted.external_id == "posted:tsc-k-1" and posted.marker == "tsc-k-1"
    (update,) = [e for e in emulator.log if e["path"] == PATHS["update"]]
    assert update["body"] == [
        {
            "ticket_id": external_id,
            "sub_status": "OP",
            "comment": "Alice via Zoho Desk:\nShipped today.\n\n[ticketsync:tsc-k-1]",
        }
    ]
    gets = [e for e in emulator.log if e["path"] == PATHS["get"]]
    assert all("conversation_type" not in e["body"] for e in gets)  # read_notes is off
    ticket = emulator.tickets[external_id]
    assert ticket["substatus"] == "OP" and len(ticket["notes"]) == 1
    with pytest.raises(NotImplementedError):
        await adapter.list_comments(external_id)
    with pytest.raises(NotImplementedError):
        await adapter.find_comment(external_id, "tsc-k-1")


async def test_the_count_read_before_a_post_costs_no_second_get(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="OP")
    adapter = make_adapter()
    assert adapter.capabilities.counts_comments
    # get-ticket documents no totalConversationCount (UNCONFIRMED): the emulator shows none
    assert await adapter.conversation_count(external_id) is None
    await adapter.post_comment(external_id, OutgoingComment("Shipped.", True, "tsc-k-2-n0"))
    gets = [e for e in emulator.log if e["path"] == PATHS["get"]]
    assert len(gets) == 1, "the post's sub-status comes from the count's read"
    assert not make_adapter(options={"read_notes": True}).capabilities.counts_comments


def test_the_count_is_read_where_a_record_carries_it() -> None:
    from sync.vendors.kapture.comments import conversation_count

    assert conversation_count("3|1760000000000") == 3
    assert conversation_count("|1760000000000") is None
    assert conversation_count(None) is None


async def test_private_notes_only_where_the_tenant_keeps_them_internal(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="P")
    adapter = make_adapter(options={"comment_visibility": "private", "read_notes": True})
    assert adapter.capabilities.private_comments and adapter.capabilities.comments_read
    assert not KaptureAdapter.capabilities.private_comments  # the class keeps the default
    note = OutgoingComment("Internal: refund approved.", False, "tsc-k-2")
    posted = await adapter.post_comment(external_id, note)
    assert posted.is_public is False and posted.external_id.startswith("n")
    (listed,) = await adapter.list_comments(external_id)
    assert listed.external_id == posted.external_id
    assert listed.author_name == "API Integration"


async def test_identical_notes_keep_distinct_stable_ids(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(modified_ago=7200)
    when = emulator.clock() - timedelta(minutes=5)
    for _ in range(2):
        emulator.add_comment(external_id, detail="Called the customer.", sentDate=when)
    emulator.add_comment(external_id, detail="Earlier.", sentDate=when - timedelta(minutes=1))
    adapter = make_adapter(options={"read_notes": True})
    first = await adapter.list_comments(external_id)
    assert [c.body for c in first] == ["Earlier.", "Called the customer.", "Called the customer."]
    assert first[2].external_id == first[1].external_id + "-2"
    assert all(c.is_public is False for c in first)
    assert [c.external_id for c in await adapter.list_comments(external_id)] == [
        c.external_id for c in first
    ]
    ticket = await adapter.get(external_id)
    assert ticket is not None and ticket.comment_counter is not None
    assert ticket.comment_counter.startswith("3|")


def test_note_entries_are_read_tolerantly() -> None:
    entries: list[Any] = [
        {"chat_message": "via chat", "sender_name": "Ravi", "sentDate": "not a time"},
        {"detail": "later", "sender_name": "Ravi", "sentDate": 1713516551152},
    ]
    chat, later = to_comments(entries, IST)
    assert (chat.body, chat.created_at, chat.author_name) == ("via chat", None, "Ravi")
    assert later.created_at == datetime(2024, 4, 19, 8, 49, 11, 152000, tzinfo=UTC)
    assert chat.external_id == note_id("not a time", "Ravi", "via chat")
    with pytest.raises(ValueError):
        to_comments(["text"], IST)


async def test_counters_of_replies_summaries_and_gets(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    external_id = vendor.seed(status="P", modified_ago=3600)
    adapter = make_adapter()
    assert (await adapter.get(external_id)).comment_counter is None  # type: ignore[union-attr]
    seen, _ = await pull(adapter)
    before = seen[external_id].comment_counter
    assert before is not None and before.startswith("|")
    await adapter.post_comment(external_id, OutgoingComment("Noted.", True, "tsc-k-3"))
    updated = await adapter.update(external_id, {"status": "CL"})
    assert updated is not None and conversation_count(updated.comment_counter) == 1
    seen, _ = await pull(adapter)
    assert seen[external_id].comment_counter != before
    assert conversation_count(None) is None and conversation_count("|5") is None


def test_comment_options_are_validated() -> None:
    assert validate_options({"read_notes": True, "comment_visibility": "private"}) == []
    problems = validate_options({"read_notes": "yes", "comment_visibility": "internal"})
    assert [p.split(":")[0] for p in problems] == [
        "options.read_notes",
        "options.comment_visibility",
    ]


async def test_failing_tickets_are_read_again_in_batches(
    make_adapter: MakeAdapter, emulator: KaptureEmulator, vendor: KaptureVendor
) -> None:
    emulator.configure(sub_statuses={**SUB_STATUSES, "ESC": ("Escalated", "P")})
    ids = [vendor.seed(title=f"t{i}") for i in range(5)]
    emulator.edit(ids[0], substatus="ESC")
    adapter = make_adapter(options={"batch_size": 2})
    emulator.log.clear()
    pages = [page async for page in adapter.reread(ids)]
    assert len(emulator.requests("POST", PATHS["get"])) == 3  # ceil(5 / 2)
    assert [t.external_id for p in pages for t in p.tickets] == ids
    assert "status" in pages[0].tickets[0].unreadable and all(p.cursor is None for p in pages)
