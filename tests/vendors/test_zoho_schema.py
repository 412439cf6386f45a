"""The compact Zoho Desk schema: derived from Zoho's OAS files, and still strict where it counts.

The shipped ``sync/sandbox/zoho_schema.json`` is the only input taken from Zoho; its derivation
is checked here on small OAS documents of our own that carry each of the known defects (the
real files are not in the repository: see ``sync/sandbox/derive_zoho_schema.py`` for how to
check the shipped file against them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from sync.sandbox.derive_zoho_schema import OPERATIONS, SHIPPED, derive, dumps, fix_pattern, main
from sync.sandbox.schema import NO_BODY, Schema, Violation

ORG = {"orgId": "60001234"}
RANGE = "2024-01-01T00:00:00.000Z,2024-01-02T00:00:00.000Z"

_ORG_REF = {"$ref": "./Common.json#/components/parameters/orgId"}


def _closed(*branches: dict[str, Any]) -> dict[str, Any]:
    """An ``allOf`` chain whose every branch is closed, as Zoho writes request bodies."""
    return {"allOf": list(branches), "additionalProperties": False}


def _object(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    out["additionalProperties"] = False
    if required:
        out["required"] = required
    return out


def _body(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/requestBodies/{name}"}


def _write_oas(folder: Path) -> Path:
    """Three OAS documents shaped like Zoho's, with every defect the derivation normalises."""
    text = {"type": "string", "pattern": "([a-z\\P{InBasicLatin}]+)", "description": "prose"}
    common = {
        "components": {
            "parameters": {
                "orgId": {
                    "name": "orgId",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "integer"},
                },
                "from": {
                    "name": "from",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0},
                },
            }
        }
    }
    sort = {"name": "sortBy", "in": "query", "schema": {"type": "string", "enum": ["modifiedTime"]}}
    search = {
        "paths": {
            "/api/v1/tickets/search": {
                "get": {"operationId": "searchTickets", "parameters": [_ORG_REF, sort]}
            }
        }
    }
    ticket_id = {
        "name": "ticketId",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "([0-9]+)"},
    }
    tag = {"type": "string", "pattern": "([a-z]{3,}|\\$\\{(?i)(Empty|NotEmpty)\\})"}
    ticket = {
        "paths": {
            "/api/v1/tickets": {
                "get": {
                    "operationId": "listTickets",
                    "parameters": [_ORG_REF, {"$ref": "./Common.json#/components/parameters/from"}],
                },
                "post": {
                    "operationId": "createTicket",
                    "parameters": [_ORG_REF],
                    "requestBody": _body("create"),
                },
            },
            "/api/v1/tickets/{ticketId}": {
                "parameters": [ticket_id],
                "get": {"operationId": "getTicket", "parameters": [_ORG_REF]},
                "patch": {
                    "operationId": "updateTicket",
                    "parameters": [_ORG_REF],
                    "requestBody": _body("update"),
                },
            },
        },
        "components": {
            "schemas": {
                "fields": _object(subject=text, tag=tag),
                "state": _object(status={"type": "string", "example": "Open"}),
            },
            "requestBodies": {
                "create": {
                    "content": {
                        "application/json": {
                            "schema": _closed(
                                {"$ref": "#/components/schemas/fields"},
                                _object(
                                    ["departmentId", "contactId"],
                                    departmentId={"type": "string"},
                                    contactId={"type": "string"},
                                    contact=_object(["lastName"], lastName={"type": "string"}),
                                ),
                            )
                        }
                    }
                },
                "update": {
                    "content": {
                        "application/json": {
                            "schema": _closed(
                                {"$ref": "#/components/schemas/fields"},
                                {"$ref": "#/components/schemas/state"},
                            )
                        }
                    }
                },
            },
        },
    }
    comment_sort = {
        "name": "sortBy",
        "in": "query",
        "schema": {"type": "string", "enum": ["commentedTime"]},
    }
    comment_body = _object(["content"], content={"type": "string"}, isPublic={"type": "boolean"})
    comments = {
        "paths": {
            "/api/v1/tickets/{ticketId}/comments": {
                "parameters": [ticket_id],
                "get": {"operationId": "getTicketComments", "parameters": [_ORG_REF, comment_sort]},
                "post": {
                    "operationId": "createTicketComment",
                    "parameters": [_ORG_REF],
                    "requestBody": {"content": {"application/json": {"schema": comment_body}}},
                },
            }
        }
    }
    for name, document in (
        ("Common.json", common),
        ("Search.json", search),
        ("Ticket.json", ticket),
        ("TicketComment.json", comments),
    ):
        (folder / name).write_text(json.dumps(document), encoding="utf-8")
    return folder


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


def test_the_derivation_normalises_each_known_oas_defect(tmp_path: Path) -> None:
    derived = derive(_write_oas(tmp_path))
    operations = derived["operations"]
    assert sorted(operations) == sorted(f"{m.upper()} {p}" for _, p, m in OPERATIONS)
    # 1: orgId is a header, wherever it is declared
    assert {op["parameters"]["orgId"]["in"] for op in operations.values()} == {"header"}
    # 2: a closed allOf chain becomes one closed object with the union of the branches
    update = operations["PATCH /api/v1/tickets/{ticketId}"]["body"]
    assert update["additionalProperties"] is False
    assert sorted(update["properties"]) == ["status", "subject", "tag"]
    assert update["properties"]["status"] == {"type": ["string"]}, "prose and examples dropped"
    # 3: Java regex classes become Python ones
    assert update["properties"]["subject"]["pattern"] == "([a-z\\u0080-\\U0010ffff]+)"
    assert "(?i:Empty|NotEmpty)" in update["properties"]["tag"]["pattern"]
    # 4: a create takes contactId or a contact object
    create = operations["POST /api/v1/tickets"]["body"]
    assert create["required"] == ["departmentId"]
    assert create["anyOf"] == [{"required": ["contactId"]}, {"required": ["contact"]}]
    # 5: sortBy accepts the descending keys
    sort = operations["GET /api/v1/tickets/search"]["parameters"]["sortBy"]["schema"]
    assert sort["enum"] == ["modifiedTime", "-modifiedTime"]
    # path-level parameters are kept; references across files are followed
    get = operations["GET /api/v1/tickets/{ticketId}"]["parameters"]
    assert get["ticketId"] == {
        "in": "path",
        "required": True,
        "schema": {"type": ["string"], "pattern": "([0-9]+)"},
    }
    assert operations["GET /api/v1/tickets"]["parameters"]["from"]["schema"]["minimum"] == 0


def test_a_derived_schema_accepts_what_zoho_accepts(tmp_path: Path) -> None:
    """The normalised defects, seen through the validator: without them these would fail."""
    derived = Schema(derive(_write_oas(tmp_path)))
    path = "/api/v1/tickets/1892000000042034"
    assert check(derived, "PATCH", path, body={"status": "Closed", "subject": "zoë"}) == []
    assert [v.where for v in check(derived, "PATCH", path, body={"colour": "red"})] == [
        "body/colour"
    ]
    assert [v.where for v in check(derived, "GET", path, headers={})] == ["header.orgId"]
    search = {"sortBy": "-modifiedTime"}
    assert check(derived, "GET", "/api/v1/tickets/search", search) == []
    contact = {"departmentId": "1", "contact": {"lastName": "carol"}}
    assert check(derived, "POST", "/api/v1/tickets", body=contact) == []


def test_check_compares_the_shipped_file_with_the_derivation(tmp_path: Path, capsys) -> None:
    oas = _write_oas(tmp_path)
    shipped = tmp_path / "shipped.json"
    shipped.write_text(dumps(derive(oas)), encoding="utf-8")
    assert main(["--check", str(oas)], shipped=shipped) == 0
    shipped.write_text(dumps(derive(oas)).replace("-modifiedTime", "-createdTime"))
    assert main(["--check", str(oas)], shipped=shipped) == 1
    assert "regenerate it" in capsys.readouterr().err
    assert main([str(oas)]) == 0
    assert json.loads(capsys.readouterr().out) == derive(oas)
    assert main([]) == 2


def test_the_shipped_schema_is_a_derivation() -> None:
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert shipped["derived_by"] == "sync/sandbox/derive_zoho_schema.py"
    assert sorted(shipped["operations"]) == sorted(f"{m.upper()} {p}" for _, p, m in OPERATIONS)
    assert SHIPPED.read_text(encoding="utf-8") == dumps(shipped), "in the derivation's format"


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
