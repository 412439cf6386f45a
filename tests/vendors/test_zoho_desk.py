"""Zoho Desk: the contract suite against the emulator, then Zoho's own behaviours."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sync.errors import (
    AuthRejected,
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    RateLimited,
    Retriable,
)
from sync.sandbox.zoho_desk import ZohoDeskEmulator
from sync.sandbox.zoho_desk_data import DEPARTMENTS, iso_ms
from sync.vendors.base import OutgoingComment
from sync.vendors.comments import html_to_text
from sync.vendors.zoho_desk.adapter import ZohoDeskAdapter
from sync.vendors.zoho_desk.auth import accounts_for, api_root
from sync.vendors.zoho_desk.mapping import (
    decode_marker,
    encode_marker,
    list_created,
    list_marker,
    parse_time,
    to_body,
    to_remote,
)
from sync.vendors.zoho_desk.options import validate_options
from sync.vendors.zoho_desk.pull import Search, WindowScan
from tests.vendors.conftest import MakeAdapter, ZohoVendor, context_for, zoho_connection
from tests.vendors.contract import AdapterContract, pull

MAIN = Path(__file__).resolve().parents[2]


class TestZohoDeskContract(AdapterContract):
    @pytest.fixture
    def adapter(self, make_zoho: MakeAdapter) -> ZohoDeskAdapter:
        return make_zoho()

    @pytest.fixture
    def vendor(self, zoho_emulator: ZohoDeskEmulator) -> ZohoVendor:
        return ZohoVendor(zoho_emulator)


@pytest.fixture
def vendor(zoho_emulator: ZohoDeskEmulator) -> ZohoVendor:
    return ZohoVendor(zoho_emulator)


@pytest.fixture(autouse=True)
def no_deviations(zoho_emulator: ZohoDeskEmulator) -> Iterator[None]:
    yield
    assert zoho_emulator.deviations() == []


class Sleeps:
    """An injected ``sleep`` for sync.http: records the delays, waits no time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# -- OAuth -----------------------------------------------------------------------------------


async def test_token_refreshed_when_it_expires_mid_pull(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    ids = {vendor.seed(modified_ago=250 - i, title=f"t{i}") for i in range(250)}
    adapter = make_zoho()
    seen: set[str] = set()
    pages = 0
    async for page in adapter.changed_since(None):
        seen |= {t.external_id for t in page.tickets}
        pages += bool(page.tickets)  # the last page only carries the complete pull's cursor
        zoho_emulator.expire_tokens()  # Zoho answers INVALID_OAUTH to the next request
    assert seen == ids
    rejected = [e for e in zoho_emulator.log if e["status"] == 401]
    assert len(rejected) == pages - 1 >= 2  # every page after the first met an expired token
    assert zoho_emulator.token_grants() == pages  # the first grant, then one per rejection


async def test_token_refreshed_ahead_of_its_expiry(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    zoho_emulator.configure(token_lifetime=1.0)
    external_id = vendor.seed()
    adapter = make_zoho()
    await adapter.get(external_id)
    await adapter.get(external_id)
    assert zoho_emulator.token_grants() == 1  # cached, not refreshed per request
    await asyncio.sleep(1.0)
    await adapter.get(external_id)
    assert zoho_emulator.token_grants() == 2
    assert not [e for e in zoho_emulator.log if e["status"] == 401]  # refreshed before


async def test_concurrent_requests_share_one_refresh(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    ids = [vendor.seed(title=f"t{i}") for i in range(8)]
    adapter = make_zoho()
    await asyncio.gather(*(adapter.get(i) for i in ids))
    assert zoho_emulator.token_grants() == 1
    zoho_emulator.expire_tokens()
    tickets = await asyncio.gather(*(adapter.get(i) for i in ids))
    assert [t.external_id for t in tickets if t] == ids
    assert zoho_emulator.token_grants() == 2


async def test_revoked_refresh_token_says_what_to_do(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho()
    await adapter.get(external_id)
    zoho_emulator.inject("revoke")
    with pytest.raises(AuthRejected) as caught:
        await adapter.get(external_id)
    assert str(caught.value) == (
        "zoho-test: Zoho rejected the refresh token or client (invalid_code). Create a new "
        "refresh token in the Zoho API console and update "
        "connections.zoho-test.credentials.refresh_token."
    )
    assert zoho_emulator.refresh_token not in str(caught.value)
    with pytest.raises(AuthRejected):
        await adapter.check()


async def test_wrong_client_secret_is_auth_rejected(
    zoho_emulator: ZohoDeskEmulator, tmp_path: Path
) -> None:
    connection = zoho_connection(zoho_emulator)
    zoho_emulator.client_secret = "rotated"  # the operator rotated it in the API console
    adapter = ZohoDeskAdapter(connection, context_for(connection, tmp_path))
    try:
        with pytest.raises(AuthRejected, match=r"\(invalid_client\)"):
            await adapter.check()
    finally:
        await adapter.aclose()


async def test_token_cache_is_private_and_reused(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor, tmp_path: Path
) -> None:
    external_id = vendor.seed()
    await make_zoho().get(external_id)
    cache = tmp_path / "zoho-zoho-test.token.json"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    text = cache.read_text()
    assert zoho_emulator.refresh_token not in text
    assert zoho_emulator.client_secret not in text
    await make_zoho().get(external_id)  # a new adapter, as in the next run
    assert zoho_emulator.token_grants() == 1
    zoho_emulator.refresh_token += "-new"  # a new refresh token: the cached token is not its
    await make_zoho().check()
    assert zoho_emulator.token_grants() == 2


async def test_too_many_refreshes_is_rate_limited(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    zoho_emulator.configure(refresh_limit=1)
    await make_zoho(state_dir=None).check()
    with pytest.raises(RateLimited, match="10 refreshes per 10 minutes"):
        await make_zoho(state_dir=None).check()


async def test_wrong_org_is_auth_rejected_naming_org_id(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    adapter = make_zoho()
    zoho_emulator.org_id = "99999"
    with pytest.raises(AuthRejected, match=r"credentials\.org_id"):
        await adapter.check()
    assert zoho_emulator.token_grants() == 1  # not a token problem: no refresh


# -- errors ----------------------------------------------------------------------------------


async def test_invalid_data_names_the_fields(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed(status="Open")
    with pytest.raises(ItemError) as caught:
        await make_zoho().update(external_id, {"status": "Bogus", "assignee": "123"})
    assert not isinstance(caught.value, NotFound)
    assert "INVALID_DATA" in str(caught.value)
    assert "status (invalid" in str(caught.value) and "assignee (invalid" in str(caught.value)
    assert zoho_emulator.tickets[external_id]["status"] == "Open"


async def test_unknown_marker_field_fails_the_create_naming_it(make_zoho: MakeAdapter) -> None:
    adapter = make_zoho(options={"marker_field": "cf_not_created"})
    with pytest.raises(ItemError, match="cf/cf_not_created"):
        await adapter.create(ZohoVendor.create_values, "ts-1")


async def test_values_zoho_cannot_take_are_refused_before_sending(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    with pytest.raises(ItemError, match="cannot clear status"):
        await make_zoho().update(external_id, {"status": None})
    with pytest.raises(ItemError, match="not a Zoho id"):
        await make_zoho().update(external_id, {"queue": "Billing"})
    assert not zoho_emulator.requests("PATCH")


async def test_threshold_exceeded_waits_retry_after_on_reads(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    vendor.seed()
    sleeps = Sleeps()
    adapter = make_zoho(sleep=sleeps)
    await adapter.check()
    zoho_emulator.inject(
        "status",
        status=429,
        match="GET /api/v1/tickets/search",
        headers={"Retry-After": "7"},
        body={"errorCode": "THRESHOLD_EXCEEDED", "message": "API limit exceeded."},
    )
    seen, _ = await pull(adapter)
    assert len(seen) == 1
    assert max(sleeps.delays) >= 7


async def test_threshold_exceeded_on_a_write_is_rate_limited_not_resent(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho(sleep=Sleeps())
    await adapter.get(external_id)
    for status in (429, 400):  # 400: THRESHOLD_EXCEEDED's status is UNCONFIRMED
        zoho_emulator.inject(
            "status",
            status=status,
            match="PATCH",
            headers={"Retry-After": "30"},
            body={"errorCode": "TOO_MANY_REQUESTS", "message": "Too many concurrent calls."},
        )
        with pytest.raises(RateLimited) as caught:
            await adapter.update(external_id, {"priority": "Low"})
        assert caught.value.retry_after == 30
    assert len(zoho_emulator.requests("PATCH")) == 2


async def test_empty_search_is_204(make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator) -> None:
    adapter = make_zoho()
    seen, cursor = await pull(adapter)
    assert seen == {} and cursor["newest_seen"] is None and cursor["vendor_now"]
    assert await adapter.find_marker("ts-x") is None
    assert {e["status"] for e in zoho_emulator.requests("GET", "/api/v1/tickets/search")} == {204}


# -- pull windows ------------------------------------------------------------------------------


def _seed_bulk(emulator: ZohoDeskEmulator, times: list[datetime]) -> set[str]:
    created = datetime(2024, 1, 1, tzinfo=UTC)
    return {
        emulator.seed(
            subject=f"bulk {i}",
            createdTime=iso_ms(created + timedelta(seconds=i)),
            modifiedTime=iso_ms(moment),
        )["id"]
        for i, moment in enumerate(times)
    }


async def _count_yields(adapter: ZohoDeskAdapter) -> Counter[str]:
    counts: Counter[str] = Counter()
    async for page in adapter.changed_since(None):
        counts.update(t.external_id for t in page.tickets)
    return counts


async def test_window_of_over_1000_increasing_times_yields_each_once(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    ids = _seed_bulk(zoho_emulator, [base + timedelta(seconds=i) for i in range(1250)])
    counts = await _count_yields(make_zoho())
    assert set(counts) == ids and set(counts.values()) == {1}
    froms = {
        int(e["query"]["from"]) for e in zoho_emulator.requests("GET", "/api/v1/tickets/search")
    }
    assert max(froms) <= 900


async def test_window_of_over_1000_same_times_yields_each_once(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    moment = datetime.now(UTC) - timedelta(hours=1)
    same = [moment] * 1100  # one bulk update (updateMany) touching 1,100 tickets
    later = [moment + timedelta(seconds=1 + i) for i in range(150)]
    ids = _seed_bulk(zoho_emulator, same + later)
    adapter = make_zoho()
    counts = await _count_yields(adapter)
    assert set(counts) == ids and set(counts.values()) == {1}
    _, cursor = await pull(make_zoho())
    assert parse_time(cursor["newest_seen"]) == later[-1].replace(
        microsecond=later[-1].microsecond // 1000 * 1000
    )


class TerseSearchEmulator(ZohoDeskEmulator):
    """Search results without descriptions: the adapter must fetch those tickets."""

    async def _search(self, request: web.Request) -> web.Response:
        response = await super()._search(request)
        if response.status == 200:
            assert isinstance(response.body, bytes)
            document = json.loads(response.body)
            for item in document["data"]:
                del item["description"]
            response.body = json.dumps(document).encode()
        return response


async def test_search_results_missing_fields_are_fetched(tmp_path: Path) -> None:
    emulator = TerseSearchEmulator()
    await emulator.start()
    external_id = emulator.seed(subject="Full", description="Only in the full ticket")["id"]
    connection = zoho_connection(emulator)
    adapter = ZohoDeskAdapter(connection, context_for(connection, tmp_path))
    try:
        seen, _ = await pull(adapter)
    finally:
        await adapter.aclose()
        await emulator.stop()
    assert seen[external_id].fields["description"] == "Only in the full ticket"
    assert len(emulator.requests("GET", f"/api/v1/tickets/{external_id}")) == 1
    assert emulator.deviations() == []


# -- create and markers ------------------------------------------------------------------------


async def test_create_sends_department_contact_and_marker(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    adapter = make_zoho(options={"default_department_id": list(DEPARTMENTS)[1]})
    values = {"title": "No queue", "requester_email": "fay@example.com", "assignee": None}
    created = await adapter.create(values, "ticketsync/zoho-test/17 #odd")
    body = zoho_emulator.requests("POST", "/api/v1/tickets")[0]["body"]
    assert body["departmentId"] == list(DEPARTMENTS)[1]
    assert body["contact"] == {"email": "fay@example.com", "lastName": "fay"}
    assert body["cf"]["cf_ticketsync_marker"].startswith("b32.")
    found = await adapter.find_marker("ticketsync/zoho-test/17 #odd")
    assert found is not None and found.external_id == created.external_id
    assert found.marker == "ticketsync/zoho-test/17 #odd"


async def test_create_without_queue_or_requester_is_item_error(make_zoho: MakeAdapter) -> None:
    with pytest.raises(ItemError, match="queue: needed") as caught:
        await make_zoho().create({"title": "x"}, "ts-2")
    assert "requester_email: needed" in str(caught.value)


async def test_find_marker_ignores_loose_matches(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    zoho_emulator.seed(cf={"cf_ticketsync_marker": "TS-ABC"})  # search ignores case
    assert await make_zoho().find_marker("ts-abc") is None


# -- options, configuration, mapping -------------------------------------------------------------


def test_options_are_validated() -> None:
    assert validate_options({}) == []
    assert (
        validate_options({"lookback_seconds": 60, "default_department_id": 1892000000006907}) == []
    )
    problems = validate_options(
        {
            "lookback": 1,
            "marker_field": "ticketsync marker",
            "default_contact_id": "abc",
            "disable_closure_notification": "yes",
            "lookback_seconds": -1,
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "options.lookback",
        "options.marker_field",
        "options.default_contact_id",
        "options.disable_closure_notification",
        "options.lookback_seconds",
    ]
    assert "unknown key" in problems[0]


async def test_bad_options_stop_the_adapter(make_zoho: MakeAdapter) -> None:
    with pytest.raises(ConfigError, match=r"connections\.zoho-test\.options\.colour"):
        make_zoho(options={"colour": "blue"})


async def test_disable_closure_notification_option(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho(options={"disable_closure_notification": True})
    await adapter.update(external_id, {"status": "Closed"})
    assert zoho_emulator.requests("PATCH")[0]["query"] == {"disableClosureNotification": "true"}
    assert zoho_emulator.tickets[external_id]["statusType"] == "Closed"


def test_hosts_of_data_centres() -> None:
    assert api_root("https://desk.zoho.eu/api/v1/") == "https://desk.zoho.eu"
    assert accounts_for("https://desk.zoho.eu") == "https://accounts.zoho.eu"
    assert accounts_for("https://desk.zoho.com.au") == "https://accounts.zoho.com.au"
    assert accounts_for("https://desk.zoho.ca") == "https://accounts.zohocloud.ca"
    assert accounts_for("https://support.example.com") == "https://accounts.zoho.com"


# Verbatim from Zoho's "Update a ticket" page (summarised in docs/vendor-apis.md §4.6).
UPDATE_REPLY = (
    '{"entitySkills":["18921000000379001","18921000000364001","18921000000379055",'
    '"18921000000379031"],"modifiedTime":"2016-06-21T12:58:09.122Z","ticketNumber":"773",'
    '"subCategory":"Sub General","statusType":"Open","subject":"Real Time analysis Requirement",'
    '"dueDate":"2016-06-23T12:58:09.211Z","departmentId":"1892000000006907","channel":"FORUMS",'
    '"onholdTime":null,"description":"Sample Ticket","language":"English","source":{"appName":'
    'null,"extId":null,"type":"SYSTEM","permalink":null,"appPhotoURL":null},"resolution":null,'
    '"sharedDepartments":[],"closedTime":null,"sharedCount":"0","approvalCount":"0",'
    '"timeEntryCount":"0","isOverDue":false,"channelRelatedInfo":{"isTopicDeleted":false,'
    '"forumStatus":"ANALYSING","sourceLink":"https://desk.zoho.com/support/zylker/ShowHomePage.do'
    '#Community/singlepost/problem-topic-forum-ticket-18-5-2018","topicType":"PROBLEM"},'
    '"isDeleted":"false","isTrashed":false,"createdTime":"2016-06-21T12:50:04.000Z",'
    '"id":"1892000001054003","email":"carol@zylker.com","channelCode":null,'
    '"customerResponseTime":"2013-11-04T11:21:07.912Z","cf":{"cf_permanentaddress":null,'
    '"cf_dateofpurchase":null,"cf_phone":null,"cf_numberofitems":null,"cf_url":null,'
    '"cf_secondaryemail":null,"cf_severitypercentage":"0.0","cf_modelname":"F3 2017"},'
    '"productId":null,"contactId":"1892000000042032","threadCount":"1","priority":"Low",'
    '"classification":null,"assigneeId":"1892000000056007","commentCount":"0","taskCount":"0",'
    '"phone":"1 888 900 9646","webUrl":"https://desk.zoho.com/support/zylker/ShowHomePage.do'
    '#Cases/dv/d126330fb061247d9ebddaeb9d93ba74750b0284bc703b38","attachmentCount":"0",'
    '"isEscalated":false,"isSpam":false,"category":"general","status":"Open"}'
)


def test_vendor_page_reply_parses() -> None:
    ticket = to_remote(json.loads(UPDATE_REPLY), "cf_modelname")
    assert ticket.external_id == "1892000001054003"
    assert dict(ticket.fields) == {
        "title": "Real Time analysis Requirement",
        "description": "Sample Ticket",
        "status": "Open",
        "priority": "Low",
        "queue": "1892000000006907",
        "assignee": "1892000000056007",
        "requester_email": "carol@zylker.com",
        "due_at": "2016-06-23T12:58:09.211Z",
    }
    assert ticket.modified_at == datetime(2016, 6, 21, 12, 58, 9, 122000, tzinfo=UTC)
    assert ticket.marker == "F3 2017"


def test_times_and_markers() -> None:
    # OAS examples use epoch milliseconds for the same instants (docs/vendor-apis.md §4.11).
    assert parse_time(1466514974000) == parse_time("2016-06-21T13:16:14.000Z")
    assert parse_time("1466514974000") == parse_time("2016-06-21T13:16:14Z")
    for marker in ("ts-1", "ticketsync:a:1", "with space/and*star", "b32.looks-encoded", "ü"):
        assert decode_marker(encode_marker(marker)) == marker
    body, problems = to_body({"due_at": "2030-01-02T03:04:05+02:00", "assignee": None})
    assert body == {"dueDate": "2030-01-02T01:04:05.000Z", "assigneeId": None} and not problems


# -- the emulator itself -------------------------------------------------------------------------


async def test_emulator_rejects_search_beyond_from_999_the_zoho_way(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    adapter = make_zoho()
    token = await adapter.auth.token()
    headers = {"Authorization": f"Zoho-oauthtoken {token}", "orgId": zoho_emulator.org_id}
    response = await adapter._api.request(
        "GET", "/api/v1/tickets/search", params={"from": "1000"}, headers=headers, ok=(422,)
    )
    assert response.json() == {
        "errorCode": "UNPROCESSABLE_ENTITY",
        "message": "The value passed for the 'from' query parameter is invalid.",
    }
    assert zoho_emulator.deviations() == [
        "GET /api/v1/tickets/search: query.from: 1000 is above the maximum 999"
    ]
    zoho_emulator.log.clear()


async def test_emulator_serves_what_zoho_accepts_but_records_it(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho()
    token = await adapter.auth.token()
    response = await adapter._api.request(
        "GET", f"/api/v1/tickets/{external_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json()["id"] == external_id
    assert [d.split(": ", 1)[1] for d in zoho_emulator.deviations()] == [
        "Authorization uses the Bearer scheme; the vendor page documents Zoho-oauthtoken",
        "orgId header missing (served: the org defaults for one-org tokens)",
    ]
    response = await adapter._api.request(
        "PATCH",
        f"/api/v1/tickets/{external_id}",
        json={"status": "Closed", "colour": "red"},
        headers={"Authorization": f"Zoho-oauthtoken {token}", "orgId": zoho_emulator.org_id},
        ok=(422,),
    )
    assert response.json()["errors"] == [
        {"fieldName": "/colour", "errorType": "invalid", "errorMessage": "unknown field"}
    ]
    zoho_emulator.log.clear()


async def test_emulator_log_hides_secrets(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    await make_zoho().check()
    logged = json.dumps(zoho_emulator.log)
    assert zoho_emulator.client_secret not in logged
    assert zoho_emulator.refresh_token not in logged
    assert all(token not in logged for token in zoho_emulator.access_tokens)


def test_sandbox_runs_as_its_own_process() -> None:
    command = [sys.executable, "-m", "sync.sandbox", "zoho_desk", "--port", "0", "--seed", "2"]
    with subprocess.Popen(
        command, cwd=MAIN, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.removeprefix("listening on ")
            with urllib.request.urlopen(f"{url}/_sandbox/tickets", timeout=5) as reply:
                assert len(json.load(reply)["tickets"]) == 2
        finally:
            process.terminate()
            rest, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert rest == ""


async def test_control_api_over_http(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    adapter = make_zoho()
    control = adapter.client(zoho_emulator.base_url)
    seeded = await control.request(
        "POST", "/_sandbox/tickets", json={"subject": "Via HTTP", "priority": "Low"}
    )
    external_id = seeded.json()["tickets"][0]["id"]
    await control.request("POST", "/_sandbox/tickets", json={"id": external_id, "status": "Closed"})
    assert zoho_emulator.tickets[external_id]["statusType"] == "Closed"
    await control.request(
        "POST", "/_sandbox/faults", json=[{"kind": "drop", "times": 50, "match": "GET /api/v1/t"}]
    )
    with pytest.raises(Retriable):
        await adapter.get(external_id)  # every attempt dropped
    # Three attempts by sync.http; aiohttp may resend a GET once on a reused connection.
    assert 3 <= len(zoho_emulator.requests("GET", f"/api/v1/tickets/{external_id}")) <= 6
    zoho_emulator.faults.clear()
    refused = await control.request("POST", "/_sandbox/faults", json={"kind": "flood"}, ok=(400,))
    assert "unknown fault kind" in refused.json()["error"]
    log = (await control.request("GET", "/_sandbox/log")).json()
    assert log["deviations"] == [] and log["log"][0]["path"] == "/oauth/v2/token"
    await control.request("POST", "/_sandbox/reset")
    assert zoho_emulator.tickets == {} and zoho_emulator.faults == []


async def test_latency_fault_delays_the_reply(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho()
    await adapter.get(external_id)
    zoho_emulator.inject("latency", seconds=0.3, match="GET /api/v1/tickets/")
    started = asyncio.get_running_loop().time()
    assert await adapter.get(external_id) is not None
    assert asyncio.get_running_loop().time() - started >= 0.3


def _fake_search(items: list[dict[str, str]], *, exclusive_start: bool) -> Search:
    """A search over ``items`` whose range start is exclusive or inclusive (UNCONFIRMED)."""

    def within(value: str, bounds: str) -> bool:
        low, high = (parse_time(b) for b in bounds.split(","))
        moment = parse_time(value)
        assert low and high and moment
        return (low < moment if exclusive_start else low <= moment) and moment <= high

    async def search(params: Mapping[str, str]) -> list[dict[str, Any]]:
        assert int(params["from"]) <= 900 and params["limit"] == "100"
        found = [
            i
            for i in items
            if within(i["modifiedTime"], params.get("modifiedTimeRange", RANGE_ALL))
            and within(i["createdTime"], params.get("createdTimeRange", RANGE_ALL))
        ]
        found.sort(key=lambda i: (i[params["sortBy"]], i["id"]))
        start = int(params["from"])
        return found[start : start + 100]

    return search


RANGE_ALL = "1999-01-01T00:00:00.000Z,2099-01-01T00:00:00.000Z"


@pytest.mark.parametrize("exclusive_start", [False, True])
async def test_window_scan_tolerates_either_range_start(exclusive_start: bool) -> None:
    moment = datetime(2025, 5, 5, tzinfo=UTC)
    created = datetime(2024, 1, 1, tzinfo=UTC)
    times = [moment] * 1005 + [moment + timedelta(milliseconds=i) for i in range(1, 400)]
    items = [
        {
            "id": str(1000 + n),
            "modifiedTime": iso_ms(t),
            "createdTime": iso_ms(created + timedelta(seconds=n)),
        }
        for n, t in enumerate(times)
    ]
    scan = WindowScan("zoho-test", _fake_search(items, exclusive_start=exclusive_start))
    counts: Counter[str] = Counter()
    async for page in scan.pages(moment - timedelta(minutes=1), moment + timedelta(days=1)):
        counts.update(i["id"] for i in page)
    assert set(counts) == {i["id"] for i in items} and set(counts.values()) == {1}


async def test_window_scan_gives_up_on_an_unpageable_crowd() -> None:
    same = iso_ms(datetime(2025, 5, 5, tzinfo=UTC))
    items = [{"id": str(n), "modifiedTime": same, "createdTime": same} for n in range(1001)]
    scan = WindowScan("zoho-test", _fake_search(items, exclusive_start=False))
    with pytest.raises(ProtocolError, match="cannot page past them"):
        async for _ in scan.pages(
            datetime(2025, 5, 4, tzinfo=UTC), datetime(2025, 5, 6, tzinfo=UTC)
        ):
            pass


# -- comments (docs/vendor-apis.md §6.1) -----------------------------------------------------


async def test_comment_post_sends_plain_text_and_explicit_visibility(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed(modified_ago=3600)
    modified = zoho_emulator.tickets[external_id]["modifiedTime"]
    adapter = make_zoho()
    body = "Bob via Sirportly:\nping zsu[@user:1892000000056011]zsu please"
    posted = await adapter.post_comment(external_id, OutgoingComment(body, False, "tsc-zoho-1"))
    (request,) = zoho_emulator.requests("POST", f"/api/v1/tickets/{external_id}/comments")
    assert request["body"]["isPublic"] is False
    assert request["body"]["contentType"] == "plainText"
    assert "zsu[@" not in request["body"]["content"]  # nobody at Zoho gets notified
    assert request["body"]["content"].endswith("\n\n[ticketsync:tsc-zoho-1]")
    assert posted.marker == "tsc-zoho-1" and posted.is_public is False
    ticket = zoho_emulator.tickets[external_id]
    assert ticket["commentCount"] == "1"
    assert ticket["modifiedTime"] == modified  # UNCONFIRMED at Zoho: never relied upon


async def test_comment_html_and_mentions_read_as_plain_text(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    html_body = (
        "<div>Hi <b>team</b>,<br>zsu[@team:31138000001254025_Billing]zsu &amp; "
        "zsu[@user:1892000000056011]zsu look<script>alert(1)</script></div>"
        "<div>Thanks&nbsp;a lot</div>"
    )
    zoho_emulator.add_comment(external_id, content=html_body, commenter="customer")
    zoho_emulator.add_comment(external_id, content="a <b> stays", contentType="plainText")
    adapter = make_zoho()
    first, second = await adapter.list_comments(external_id)
    assert first.body == "Hi team,\n@Billing & @1892000000056011 look\nThanks a lot"
    assert first.author_email == "customer@example.com"
    assert second.body == "a <b> stays"
    assert second.author_name == "George Vincent"


async def test_comments_are_paged_and_ordered(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    start = zoho_emulator.clock() - timedelta(hours=3)
    for index in range(150):
        when = start + timedelta(seconds=index // 2)  # pairs share a second
        zoho_emulator.add_comment(external_id, content=f"c{index}", commentedTime=when)
    adapter = make_zoho()
    listed = await adapter.list_comments(external_id)
    assert [c.body for c in listed] == [f"c{i}" for i in range(150)]
    pages = zoho_emulator.requests("GET", f"/api/v1/tickets/{external_id}/comments")
    assert [p["query"]["from"] for p in pages] == ["0", "100"]
    assert all(p["query"]["sortBy"] == "commentedTime" for p in pages)


async def test_comment_count_is_the_counter_on_search_and_get(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    zoho_emulator.tickets[external_id]["commentCount"] = 7  # Zoho sends string or int
    adapter = make_zoho()
    got = await adapter.get(external_id)
    assert got is not None and got.comment_counter == "7"
    zoho_emulator.tickets[external_id]["commentCount"] = "7"
    seen, _ = await pull(adapter)
    assert seen[external_id].comment_counter == "7"
    del zoho_emulator.tickets[external_id]["commentCount"]
    got = await adapter.get(external_id)
    assert got is not None and got.comment_counter is None


async def test_comment_reply_with_string_visibility_is_read(make_zoho: MakeAdapter) -> None:
    adapter = make_zoho()
    record = {"id": "5", "content": "x", "contentType": "plainText", "isPublic": "false"}
    assert adapter._comment(record, "1").is_public is False
    for bad in ({"id": "5", "content": "x"}, {"id": "x5", "isPublic": True}, ["no"]):
        with pytest.raises(ProtocolError, match="not a comment"):
            adapter._comment(bad, "1")


async def test_comments_of_a_missing_ticket_and_overlong_posts(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    adapter = make_zoho()
    with pytest.raises(NotFound):
        await adapter.list_comments(vendor.missing_id)
    with pytest.raises(NotFound):
        await adapter.list_comments("not-a-zoho-id")
    external_id = vendor.seed()
    with pytest.raises(ItemError, match="too long"):
        await adapter.post_comment(external_id, OutgoingComment("x" * 32000, True, "tsc-zoho-2"))
    assert zoho_emulator.requests("POST", f"/api/v1/tickets/{external_id}/comments") == []


async def test_emulator_records_an_omitted_visibility(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho()
    response = await adapter._call(
        "POST", f"/api/v1/tickets/{external_id}/comments", json={"content": "hi"}
    )
    assert response.json()["isPublic"] is True
    assert zoho_emulator.deviations() == [
        f"POST /api/v1/tickets/{external_id}/comments: isPublic omitted: Zoho's default is "
        "UNCONFIRMED"
    ]
    zoho_emulator.log.clear()


def test_demo_portal_has_comments_with_html_private_notes_and_equal_times() -> None:
    emulator = ZohoDeskEmulator()
    emulator.seed_demo(6)
    commented = [c for c in emulator.comments.values() if c]
    assert len(commented) == 2
    for comments in commented:
        assert [c["isPublic"] for c in comments] == [True, False, True]
        assert comments[1]["commentedTime"] == comments[2]["commentedTime"]
        assert comments[0]["contentType"] == "html"
    ticket_id = next(k for k, v in emulator.comments.items() if v)
    assert emulator.tickets[ticket_id]["commentCount"] == "3"


def test_html_to_text_is_linear_on_hostile_markup() -> None:
    started = time.perf_counter()
    for hostile_body in ("<title>x" * 130_000, "<" * 300_000, "<script>" * 40_000, "<a " * 100_000):
        html_to_text(hostile_body)
    assert time.perf_counter() - started < 2.0
    assert html_to_text("a < b and c > d") == "a < b and c > d"
    assert html_to_text("<p>one</p><p>two</p><!-- x -->") == "one\ntwo"


async def test_control_api_adds_and_lists_comments_and_sets_the_switch(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator, vendor: ZohoVendor
) -> None:
    external_id = vendor.seed()
    adapter = make_zoho()
    control = adapter.client(zoho_emulator.base_url)
    added = await control.request(
        "POST",
        "/_sandbox/comments",
        json=[
            {"ticket": external_id, "content": "<b>Hi</b>", "isPublic": False},
            {"ticket": external_id, "content": "Bye", "contentType": "plainText"},
        ],
    )
    assert [c["isPublic"] for c in added.json()["comments"]] == [False, True]
    listed = await control.request("GET", f"/_sandbox/comments?ticket={external_id}")
    assert len(listed.json()["comments"]) == 2
    refused = await control.request(
        "POST", "/_sandbox/comments", json={"ticket": "404", "content": "x"}, ok=(400,)
    )
    assert "error" in refused.json()
    await control.request("POST", "/_sandbox/config", json={"misfile_visibility": True})
    with pytest.raises(ProtocolError, match="posted public but the vendor holds it as private"):
        await adapter.post_comment(external_id, OutgoingComment("x", True, "tsc-zoho-3"))
    await control.request("POST", "/_sandbox/reset")
    assert zoho_emulator.comments == {} and not zoho_emulator.misfile_visibility


async def test_match_keys_take_created_time_and_the_source_reference(
    make_zoho: MakeAdapter,
) -> None:
    """docs/architecture.md §8.7: ``source.extId`` is Zoho's external reference; a record
    without readable keys gives None for them, never an error."""
    from sync.vendors.base import MatchKeys, RemoteTicket

    adapter = make_zoho()
    raw = {"createdTime": "2026-03-01T12:00:00.000Z", "source": {"type": "API", "extId": "42"}}
    keys = adapter.match_keys(
        RemoteTicket("1", {"title": "T", "requester_email": "a@b.c"}, raw=raw)
    )
    assert keys == MatchKeys("a@b.c", "T", datetime(2026, 3, 1, 12, tzinfo=UTC), "42")
    odd = {"createdTime": "yesterday", "source": "web"}
    assert adapter.match_keys(RemoteTicket("2", {}, raw=odd)) == MatchKeys()


async def test_find_marker_reads_the_list_newest_first_back_to_the_intent(
    make_zoho: MakeAdapter, zoho_emulator: ZohoDeskEmulator
) -> None:
    """The list, not the search (docs/architecture.md §8.4): it stops at the first ticket
    created before the intent less the lookback, and asks for the marker field."""
    since = datetime.now(UTC) - timedelta(hours=1)
    older = iso_ms(since - timedelta(hours=3))
    zoho_emulator.seed(createdTime=older, cf={"cf_ticketsync_marker": "ts-old"})
    zoho_emulator.seed(createdTime=iso_ms(since - timedelta(hours=2)))
    new = zoho_emulator.seed(cf={"cf_ticketsync_marker": "ts-new"})
    zoho_emulator.configure(search_lag=3600)  # the search index has neither yet
    adapter = make_zoho()
    found = await adapter.find_marker("ts-new", since=since)
    assert found is not None and found.external_id == new["id"]
    # the scan stops at the first ticket older than the intent: it never reaches this one
    assert await adapter.find_marker("ts-old", since=since) is None
    lists = [e for e in zoho_emulator.requests("GET") if e["path"] == "/api/v1/tickets"]
    assert {(e["query"]["sortBy"], e["query"]["fields"]) for e in lists} == {
        ("-createdTime", "createdTime,cf_ticketsync_marker")
    }
    assert zoho_emulator.requests("GET", "/api/v1/tickets/search") == []
    assert zoho_emulator.deviations() == []


def test_list_items_are_read_with_the_marker_in_either_place() -> None:
    stored = encode_marker("ts x")
    assert list_marker({"cf": {"cf_m": stored}}, "cf_m") == "ts x"
    assert list_marker({"cf_m": stored}, "cf_m") == "ts x"  # UNCONFIRMED placement
    assert list_marker({"id": "1"}, "cf_m") is None
    assert list_created({"createdTime": 1507813910000}) == datetime(
        2017, 10, 12, 13, 11, 50, tzinfo=UTC
    )
    assert list_created({"createdTime": "not a time"}) is None
