"""Zoho Desk emulator: the OAuth token endpoint and the ticket API, checked against Zoho's OAS.

Serves, on one server (tests point both ``base_url`` and ``accounts_url`` at it):

- ``POST /oauth/v2/token`` (refresh-token grant; parameters in the query or a form body):
  ``{"access_token", "expires_in", "api_domain", "token_type": "Bearer"}``; failures answer
  HTTP 200 with ``{"error": "invalid_code"}`` / ``{"error": "invalid_client"}``, the way Zoho
  Accounts is observed to answer (UNCONFIRMED in docs/vendor-apis.md §4.2: the adapter accepts an
  ``error`` key under any status). More than ``refresh_limit`` grants per ``refresh_window``
  seconds (Zoho: 10 per 10 minutes) answer 400 ``{"error": "Access Denied", ...}``.
- ``GET /api/v1/tickets/search``, ``GET|POST /api/v1/tickets``, ``GET|PATCH
  /api/v1/tickets/{ticketId}`` in Zoho's shapes: string ids, ISO ``...SSSZ`` times, 204 for
  an empty list or search, the ``{errorCode, message, errors[]}`` envelope.

Every API request is checked against ``zoho_schema.json`` (derived from Zoho's OAS files) and
every violation is recorded as a deviation. What the real API evidently accepts is served
anyway (docs/vendor-apis.md §5.9): ``Authorization: Bearer``, a missing ``orgId`` (single-org
tokens),
``orgId`` as a query parameter, client credentials in a Basic header. Other violations are
rejected Zoho's way: 422 ``UNPROCESSABLE_ENTITY`` for parameters (``from=1000``, ``limit=101``),
422 ``INVALID_DATA`` naming the fields for bodies. Values the schema allows but the portal does
not know (a status no department has, an unknown department, agent or custom field) are 422
``INVALID_DATA`` without a deviation, as a real portal would answer.

Missing-ticket replies (404 ``URL_NOT_FOUND``) and the HTTP statuses of auth errors (401) are
inferred, not documented (docs/vendor-apis.md §4.8).

The portal's tables, OAuth state and tickets are ``sync.sandbox.zoho_desk_data``'s; the
webhook API and its deliveries are ``sync.sandbox.zoho_webhooks``'s.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Mapping
from functools import cache
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from sync.sandbox.base import DEVIATIONS, Fault, register_emulator
from sync.sandbox.schema import NO_BODY, Schema, Violation
from sync.sandbox.zoho_desk_data import (
    AGENTS,
    DEPARTMENTS,
    PRIORITIES,
    STATUSES,
    ZohoDeskStore,
    parse_iso,
    search_matches,
)
from sync.sandbox.zoho_webhooks import ZohoWebhooks

_DEFAULT_ERRORS = {
    400: ("BAD_REQUEST", "The request is invalid."),
    401: ("INVALID_OAUTH", "The OAuth Token you provided is invalid."),
    403: ("FORBIDDEN", "You are not authorized to access this resource."),
    404: ("URL_NOT_FOUND", "The URL you requested could not be found."),
    405: ("METHOD_NOT_ALLOWED", "The HTTP method is not allowed for the URL you requested."),
    422: ("UNPROCESSABLE_ENTITY", "The request could not be processed."),
    429: ("THRESHOLD_EXCEEDED", "You have exceeded the API call limit. Try again later."),
}
_TOO_MANY_REFRESHES = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. "
    "Please try again after some time.",
}


@cache
def zoho_schema() -> Schema:
    return Schema.load("sync.sandbox", "zoho_schema.json")


def error_body(code: str, message: str, errors: list[dict[str, str]] | None = None) -> Any:
    body: dict[str, Any] = {"errorCode": code, "message": message}
    if errors:
        body["errors"] = errors
    return body


def _error(
    status: int, code: str, message: str, errors: list[dict[str, str]] | None = None
) -> web.Response:
    return web.json_response(error_body(code, message, errors), status=status)


def _invalid_data(errors: list[dict[str, str]]) -> web.Response:
    return _error(
        422, "INVALID_DATA", "An invalid value was passed for one or more fields.", errors
    )


def _field_error(name: str, kind: str, message: str) -> dict[str, str]:
    return {"fieldName": name, "errorType": kind, "errorMessage": message}


@register_emulator("zoho_desk")
class ZohoDeskEmulator(ZohoDeskStore):
    """Zoho Desk's OAuth host and ticket API, with the shared control API and faults."""

    secret_fields = frozenset({"client_secret", "refresh_token", "access_token", "code"})

    def reset_state(self) -> None:
        super().reset_state()
        self.webhooks = ZohoWebhooks(self.org_id, self)

    def seed(self, **fields: Any) -> dict[str, Any]:
        ticket = super().seed(**fields)
        self.webhooks.event("Ticket_Add", ticket)
        return ticket

    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        prev = dict(self.tickets[external_id])
        ticket = super().edit(external_id, **fields)
        self.webhooks.event("Ticket_Update", ticket, prev)
        return ticket

    def fault_response(self, fault: Fault) -> web.Response:
        headers = dict(fault.headers)
        if fault.body is not None and not isinstance(fault.body, dict | list):
            return web.Response(status=fault.status, text=str(fault.body), headers=headers)
        body = fault.body
        if body is None:
            code, message = _DEFAULT_ERRORS.get(
                fault.status, ("INTERNAL_SERVER_ERROR", "An internal server error occurred.")
            )
            body = error_body(code, message)
        return web.json_response(body, status=fault.status, headers=headers)

    # -- routes ----------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/oauth/v2/token", self._token)
        router.add_get("/api/v1/tickets/search", self._search)
        router.add_get("/api/v1/tickets", self._list)
        router.add_post("/api/v1/tickets", self._create)
        router.add_get("/api/v1/tickets/{ticketId}", self._get)
        router.add_patch("/api/v1/tickets/{ticketId}", self._update)
        router.add_get("/api/v1/tickets/{ticketId}/comments", self._list_comments)
        router.add_post("/api/v1/tickets/{ticketId}/comments", self._create_comment)
        self.webhooks.add_routes(router, self._authorised, _error)
        router.add_route("*", "/{tail:.*}", self._unrouted)

    async def _unrouted(self, request: web.Request) -> web.Response:
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            if method != request.method and zoho_schema().match(method, request.path):
                return _error(405, *_DEFAULT_ERRORS[405])
        return _error(404, *_DEFAULT_ERRORS[404])

    # -- OAuth -----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        if request.content_type == "application/x-www-form-urlencoded":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self._basic_credentials(request, params)
        if params.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type"})
        if (params.get("client_id"), params.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return web.json_response({"error": "invalid_client"})
        if self.revoked or params.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": "invalid_code"})
        now = time.time()
        self.grants = [t for t in self.grants if now - t < self.refresh_window]
        if len(self.grants) >= self.refresh_limit:
            return web.json_response(_TOO_MANY_REFRESHES, status=400)
        self.grants.append(now)
        token = "1000." + secrets.token_hex(16) + "." + secrets.token_hex(16)
        self.access_tokens[token] = now + self.token_lifetime
        return web.json_response(
            {
                "access_token": token,
                "expires_in": max(1, round(self.token_lifetime)),
                "api_domain": "https://www.zohoapis.com",
                "token_type": "Bearer",
                "scope": "Desk.tickets.ALL Desk.search.READ",
            }
        )

    @staticmethod
    def _basic_credentials(request: web.Request, params: dict[str, str]) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return
        request[DEVIATIONS].append(
            "client credentials sent in an HTTP Basic header; Zoho's page sends them as parameters"
        )
        try:
            decoded = base64.b64decode(header[6:]).decode("utf-8")
        except ValueError:
            return
        client_id, _, client_secret = decoded.partition(":")
        params.setdefault("client_id", client_id)
        params.setdefault("client_secret", client_secret)

    # -- the API guard: auth, orgId, schema ------------------------------------------------

    async def _authorised(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """Check auth and orgId; return the JSON body (or NO_BODY) or a rejection."""
        deviations: list[str] = request[DEVIATIONS]
        rejection = self._check_auth(request, deviations)
        if rejection is None:
            rejection = self._check_org(
                dict(request.query), CIMultiDict(request.headers), deviations
            )
        if rejection is not None:
            return NO_BODY, rejection
        return await self._read_body(request)

    async def _guard(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """Check auth, orgId and the schema; return the JSON body (or NO_BODY) or a rejection."""
        deviations: list[str] = request[DEVIATIONS]
        rejection = self._check_auth(request, deviations)
        if rejection is not None:
            return NO_BODY, rejection
        query = _query(request)
        headers = CIMultiDict(request.headers)
        rejection = self._check_org(query, headers, deviations)
        if rejection is not None:
            return NO_BODY, rejection
        body, rejection = await self._read_body(request)
        if rejection is not None:
            return NO_BODY, rejection
        matched = zoho_schema().match(request.method, request.path)
        if matched is None:
            return body, _error(404, *_DEFAULT_ERRORS[404])
        op, path_params = matched
        violations = zoho_schema().check(op, path_params, query, headers, body)
        violations = [v for v in violations if v.where != "header.orgId"]
        deviations += [str(v) for v in violations]
        return body, _reject(violations)

    def _check_auth(self, request: web.Request, deviations: list[str]) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer":
            deviations.append(
                "Authorization uses the Bearer scheme; the vendor page documents Zoho-oauthtoken"
            )
        elif scheme != "Zoho-oauthtoken":
            token = ""
        expiry = self.access_tokens.get(token.strip())
        if expiry is None or expiry <= time.time():
            return _error(401, *_DEFAULT_ERRORS[401])
        return None

    def _check_org(
        self, query: dict[str, str], headers: CIMultiDict[str], deviations: list[str]
    ) -> web.Response | None:
        org = headers.get("orgId")
        if org is None and "orgId" in query:
            org = query.pop("orgId")
            deviations.append("orgId sent as a query parameter; Zoho's page sends a header")
        if org is None:
            deviations.append("orgId header missing (served: the org defaults for one-org tokens)")
            return None
        if org != self.org_id:
            return _error(
                401, "OAUTH_ORG_MISMATCH", "The OAuth token does not belong to this organization."
            )
        return None

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, web.Response | None]:
        raw = await request.read()
        if not raw:
            if request.method in ("POST", "PATCH"):
                return NO_BODY, _error(422, "EMPTY_PAYLOAD", "The request body is empty.")
            return NO_BODY, None
        try:
            return await request.json(), None
        except ValueError:
            return NO_BODY, _error(400, "BAD_REQUEST", "The JSON body could not be parsed.")

    # -- handlers --------------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.Response:
        _, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        ticket = self.tickets.get(request.match_info["ticketId"])
        if ticket is None:
            return _error(404, *_DEFAULT_ERRORS[404])
        return web.json_response(ticket)

    async def _update(self, request: web.Request) -> web.Response:
        body, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        ticket = self.tickets.get(request.match_info["ticketId"])
        if ticket is None:
            return _error(404, *_DEFAULT_ERRORS[404])
        errors = self._semantic_errors(body)
        if errors:
            return _invalid_data(errors)
        return web.json_response(self.edit(ticket["id"], **body))

    async def _create(self, request: web.Request) -> web.Response:
        body, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        errors = self._semantic_errors(body)
        if "contactId" in body and body["contactId"] not in self.contacts.values():
            errors.append(_field_error("/contactId", "invalid", "No contact has this id."))
        if errors:
            return _invalid_data(errors)
        return web.json_response(self.seed(**body))  # Zoho answers 200, not 201 (DOC)

    def _semantic_errors(self, body: Mapping[str, Any]) -> list[dict[str, str]]:
        errors = []
        checks = (
            ("status", STATUSES, "The status is not one of the department's statuses."),
            ("priority", PRIORITIES, "The priority is not in the picklist."),
            ("departmentId", DEPARTMENTS, "No department has this id."),
            ("assigneeId", AGENTS, "No agent has this id."),
        )
        for name, known, message in checks:
            value = body.get(name)
            if value not in (None, "") and str(value) not in known:
                errors.append(_field_error(f"/{name}", "invalid", message))
        for key in body.get("cf") or {}:
            if key not in self.custom_fields:
                message = "No custom field has this API name."
                errors.append(_field_error(f"/cf/{key}", "invalid", message))
        return errors

    async def _list_comments(self, request: web.Request) -> web.Response:
        """``GET .../comments``: ``commentedTime`` ascending by default (DOC), ties in the
        order added; 200 ``{"data": []}`` when there are none (the OAS lists no 204)."""
        _, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        ticket_id = request.match_info["ticketId"]
        if ticket_id not in self.tickets:
            return _error(404, *_DEFAULT_ERRORS[404])
        sort_by = request.query.get("sortBy", "commentedTime")
        found = sorted(
            self.comments.get(ticket_id, []),
            key=lambda c: parse_iso(c["commentedTime"]),
            reverse=sort_by.startswith("-"),
        )
        start = int(request.query.get("from", "0"))
        page = found[start : start + int(request.query.get("limit", "50"))]
        return web.json_response({"data": [_listed(c) for c in page]})

    async def _create_comment(self, request: web.Request) -> web.Response:
        """``POST .../comments``: 200 with the comment (DOC). Without ``isPublic`` the comment
        is made public and a deviation recorded: Zoho's default is UNCONFIRMED."""
        body, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        ticket_id = request.match_info["ticketId"]
        if ticket_id not in self.tickets:
            return _error(404, *_DEFAULT_ERRORS[404])
        if "isPublic" not in body:
            request[DEVIATIONS].append("isPublic omitted: Zoho's default is UNCONFIRMED")
        comment = self.add_comment(
            ticket_id,
            content=body["content"],
            contentType=body.get("contentType") or "html",
            isPublic=body.get("isPublic", True),
        )
        return web.json_response(comment)

    async def _list(self, request: web.Request) -> web.Response:
        """The ticket list: ``sortBy`` (``createdTime``, ``dueDate``; a ``-`` prefix sorts
        descending, the default is ascending), ``from``/``limit``, and ``fields``, which
        limits each item to ``id`` and the named fields (custom ones under ``cf``: where Zoho
        puts them is UNCONFIRMED, docs/vendor-apis.md §4.4). It reads the tickets
        themselves: ``search_lag`` does not apply."""
        _, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        query = request.query
        start = int(query.get("from", "0"))
        limit = int(query.get("limit", "25"))
        found = sorted(self.tickets.values(), key=lambda t: int(t["id"]))
        sort_by = query.get("sortBy", "")
        if sort_by.lstrip("-") in ("createdTime", "dueDate"):
            key = sort_by.lstrip("-")
            found.sort(key=lambda t: (t.get(key) or "", int(t["id"])), reverse=sort_by[0] == "-")
        items = found[start : start + limit]
        if not items:
            return web.Response(status=204)
        return web.json_response({"data": [_list_item(t, query.get("fields")) for t in items]})

    async def _search(self, request: web.Request) -> web.Response:
        _, rejection = await self._guard(request)
        if rejection is not None:
            return rejection
        query = _query(request)
        found = [t for t in self.tickets.values() if search_matches(t, query) and self.indexed(t)]
        sort_by = query.get("sortBy", "relevance")
        key = sort_by.lstrip("-")
        if key != "relevance":
            found.sort(key=lambda t: (t.get(key) or "", int(t["id"])), reverse=sort_by[0] == "-")
        start = int(query.get("from", "0"))
        page = found[start : start + int(query.get("limit", "10"))]
        if not page:
            return web.Response(status=204)
        return web.json_response({"data": page, "count": str(len(found))})


def _query(request: web.Request) -> dict[str, str]:
    """The query string, a repeated parameter's values joined by commas: Search.json
    declares array parameters such as ``id`` in form style with ``explode`` (``id=1&id=2``),
    and the comma-separated spelling is read the same way (docs/vendor-apis.md §4.4)."""
    query = request.query
    return {name: ",".join(query.getall(name)) for name in query}


def _listed(comment: Mapping[str, Any]) -> dict[str, Any]:
    """A comment as list items show it: with ``plainText`` beside ``content`` (DOC)."""
    plain = comment["content"]
    if comment["contentType"] == "html":
        plain = re.sub(r"<[^<>]*>", "", plain)
    return {**comment, "plainText": plain}


#: List-view items carry no modifiedTime (DOC [Z-oas] listviewCommonJson), nor the rest.
_NOT_LISTED = ("modifiedTime", "modifiedBy", "description", "cf")


def _list_item(ticket: Mapping[str, Any], fields: str | None) -> dict[str, Any]:
    """A ticket as a list-view item: every listed key, or ``id`` and the ``fields`` asked."""
    if not fields:
        return {k: v for k, v in ticket.items() if k not in _NOT_LISTED}
    item: dict[str, Any] = {"id": ticket["id"]}
    for name in (n.strip() for n in fields.split(",")):
        if name.startswith("cf_"):
            item.setdefault("cf", {})[name] = (ticket.get("cf") or {}).get(name)
        elif name in ticket:
            item[name] = ticket[name]
    return item


def _reject(violations: list[Violation]) -> web.Response | None:
    params = [v for v in violations if not v.where.startswith("body")]
    if params:
        return _error(
            422,
            "UNPROCESSABLE_ENTITY",
            f"The value passed for the '{params[0].name}' query parameter is invalid.",
        )
    body = [v for v in violations if v.where.startswith("body")]
    if body:
        kinds = {"missing": "missing", "unknown": "invalid", "invalid": "invalid"}
        return _invalid_data([_field_error(v.name or "/", kinds[v.kind], v.message) for v in body])
    return None
