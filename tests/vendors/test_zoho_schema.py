"""The compact Zoho Desk schema: derived from Zoho's OAS files, and still strict where it counts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from sync.sandbox.derive_zoho_schema import derive, dumps, fix_pattern
from sync.sandbox.schema import NO_BODY, Schema, Violation

MAIN = Path(__file__).resolve().parents[2]
OAS = MAIN.parent / "shared" / "vendor-docs" / "zoho-oas"
SHIPPED = MAIN / "sync" / "sandbox" / "zoho_schema.json"
ORG = {"orgId": "60001234"}
RANGE = "2024-01-01T00:00:00.000Z,2024-01-02T00:00:00.000Z"

needs_oas = pytest.mark.skipif(not OAS.is_dir(), reason=f"{OAS} not present")


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load("sync.sandbox", "zoho_schema.json")


def check(
    schema: Schema,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = NO_BODY,
) -> list[Violation]:
    matched = schema.match(method, path)
    assert matched is not None, f"{method} {path} is not in the schema"
    op, params = matched
    return schema.check(op, params, query or {}, ORG if headers is None else headers, body)


@needs_oas
def test_shipped_schema_is_the_derivation_of_the_oas_files() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == dumps(derive(OAS))


@needs_oas
def test_the_oas_defects_are_real() -> None:
    # If Zoho fixes its files, the normalisations in derive_zoho_schema.py become no-ops.
    common = json.loads((OAS / "Common.json").read_text())
    assert common["components"]["parameters"]["orgId"]["in"] == "query"
    ticket = json.loads((OAS / "Ticket.json").read_text())
    body = ticket["components"]["requestBodies"]["updateTicketRequest"]
    closed = body["content"]["application/json"]["schema"]
    assert closed["additionalProperties"] is False and "allOf" in closed
    assert "\\P{InBasicLatin}" in json.dumps(ticket)


def test_every_pattern_compiles_in_python(schema: Schema) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    patterns = re.findall(r'"pattern": ("(?:[^"\\]|\\.)*")', text)
    assert patterns
    for pattern in patterns:
        re.compile(json.loads(pattern))
    assert "InBasicLatin" not in text and "\\p{" not in text


def test_search_range_limits_are_enforced(schema: Schema) -> None:
    path = "/api/v1/tickets/search"
    ok = {"modifiedTimeRange": RANGE, "sortBy": "modifiedTime", "limit": "100", "from": "900"}
    assert check(schema, "GET", path, ok) == []
    assert [str(v) for v in check(schema, "GET", path, {**ok, "limit": "101"})] == [
        "query.limit: 101 is above the maximum 100"
    ]
    assert [str(v) for v in check(schema, "GET", path, {**ok, "from": "1000"})] == [
        "query.from: 1000 is above the maximum 999"
    ]
    assert check(schema, "GET", path, {**ok, "limit": "0"})[0].where == "query.limit"
    assert check(schema, "GET", path, {**ok, "modifiedTimeRange": "yesterday"})


def test_sort_order_prefix_is_accepted(schema: Schema) -> None:
    path = "/api/v1/tickets/search"
    assert check(schema, "GET", path, {"sortBy": "-modifiedTime"}) == []
    assert check(schema, "GET", path, {"sortBy": "modified"})[0].where == "query.sortBy"


def test_org_id_is_a_required_header(schema: Schema) -> None:
    violations = check(schema, "GET", "/api/v1/tickets/123", headers={})
    assert [(v.where, v.kind) for v in violations] == [("header.orgId", "missing")]
    assert check(schema, "GET", "/api/v1/tickets/123", headers=CIMultiDict(orgid="1")) == []


def test_unknown_query_parameters_and_bad_ids_are_flagged(schema: Schema) -> None:
    assert [v.where for v in check(schema, "GET", "/api/v1/tickets/123", {"foo": "1"})] == [
        "query.foo"
    ]
    assert [v.where for v in check(schema, "GET", "/api/v1/tickets/12ab")] == ["path.ticketId"]
    assert check(schema, "GET", "/api/v1/tickets/1", {"include": "contacts,team"}) == []
    assert check(schema, "GET", "/api/v1/tickets/1", {"include": "contacts,spouse"})


def test_closed_all_of_bodies_accept_their_own_fields(schema: Schema) -> None:
    path = "/api/v1/tickets/1892000000042034"
    assert check(schema, "PATCH", path, body={"status": "Closed"}) == []
    body = {
        "subject": "Printer",
        "description": None,
        "priority": "High",
        "departmentId": "1892000000006907",
        "assigneeId": None,
        "email": "zoë@exämple.com",
        "dueDate": "2030-01-02T03:04:05.000Z",
        "cf": {"cf_ticketsync_marker": "ts-1"},
        "status": "En attente (client é)",
    }
    assert check(schema, "PATCH", path, body=body) == []


def test_unknown_or_mistyped_body_fields_are_flagged(schema: Schema) -> None:
    path = "/api/v1/tickets/1"
    violations = check(schema, "PATCH", path, body={"status": "Closed", "colour": "red"})
    assert [(v.where, v.kind) for v in violations] == [("body/colour", "unknown")]
    assert [v.where for v in check(schema, "PATCH", path, body={"status": None})] == ["body/status"]
    assert [v.where for v in check(schema, "PATCH", path, body={"dueDate": "tomorrow"})] == [
        "body/dueDate"
    ]
    assert check(schema, "PATCH", path)[0].kind == "missing"  # no body at all


def test_create_needs_a_department_and_a_contact(schema: Schema) -> None:
    path = "/api/v1/tickets"
    contact = {"email": "carol@example.com", "lastName": "carol"}
    assert check(schema, "POST", path, body={"departmentId": "1", "contact": contact}) == []
    assert check(schema, "POST", path, body={"departmentId": "1", "contactId": "2"}) == []
    violations = check(schema, "POST", path, body={"subject": "x"})
    assert sorted(str(v) for v in violations) == [
        "body/departmentId: required field is missing",
        "body: one of contactId, contact is required",
    ]
    bad_contact = {"departmentId": "1", "contact": {"email": "carol@example.com"}}
    assert [str(v) for v in check(schema, "POST", path, body=bad_contact)] == [
        "body/contact/lastName: required field is missing"
    ]


def test_java_regex_classes_are_translated() -> None:
    assert fix_pattern("[a-z\\P{InBasicLatin}]+") == "[a-z\\u0080-\\U0010ffff]+"
    assert re.fullmatch(fix_pattern("[\\p{L}\\p{N}]+"), "Zoë42")
    tag = fix_pattern("([a-z]{3,}|\\$\\{(?i)(Empty|NotEmpty)\\})")
    assert re.fullmatch(tag, "${notempty}") and not re.fullmatch(tag, "AB")
