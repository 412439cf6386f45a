"""Sirportly emulator: the ticket API of docs/vendor-apis.md §3 and the vendor's update page.

Serves ``/api/v2/tickets/{ticket,update,submit,post_update,spql,all}``: any HTTP method,
parameters as form fields (or the query string), custom fields as ``custom[NAME]``, the
``X-Auth-Token`` / ``X-Auth-Secret`` headers. Replies are Sirportly's JSON: ticket objects
like the update page's example (``status``/``priority``/``department``/``team``/``user``
objects, ISO times with offsets) plus ``updated_at``, ``custom_fields`` and ``updates`` in
full tickets; 201 on submit; 403 ``{"error"}`` for auth, 404 ``{"error"}`` for a missing
ticket or referenced object, 422 ``{"errors": {field: [messages]}}`` for validation and
``{"errors": [messages]}`` for SPQL.

Also ``/api/v2/objects/{departments,escalation_paths}`` (docs/vendor-apis.md §3.7 names them). A
department-only update keeps the ticket's team, so a team off the new department's escalation
path is a 422 naming ``team`` (docs/vendor-apis.md §3.6: the team must be on that path).

Served but recorded as deviations (what public clients send, docs/vendor-apis.md §5.9): ``/api/v1``,
``reference=`` instead of ``ticket=``, JSON bodies, methods other than the recommended POST,
submit without ``team`` or with ``contact``/``name``/``email``, an empty ``user=`` (clears the
assignee), singular SPQL table names, unknown parameters (ignored, as Rails would).

SPQL: a strict subset, enough for a sync client, 422 for anything else::

    SELECT col, ... FROM tickets [WHERE <time column> <op> '<ISO time>'
                                  | WHERE (<condition> OR <condition> ...)]
      [ORDER BY col [ASC|DESC]] [LIMIT count | LIMIT offset,count]

Emulator choices where Sirportly's behaviour is UNCONFIRMED (INFERENCE): a naive date literal
is UTC; an unknown custom field is a 422 (Sirportly may ignore it instead); ``tickets/all``
pages hold ``per_page`` (30) records without ``updates`` and ``custom_fields``; a team off
the department's escalation path and a user outside the team are 422s.

Settings (``configure``): ``spql_access`` (false: SPQL answers 403, as for a user token
without reporting access), ``per_page``, ``custom_fields``, ``rule`` (fields a Sirportly rule
sets after every API write not sent with ``X-Sirportly-Rules: disabled``, e.g.
``{"priority": "High"}``), ``token`` and ``secret`` (the API credentials it accepts),
``post_moves_updated_at`` (default true: a posted update moves the ticket's ``updated_at``,
as a 3P record hints; UNCONFIRMED, docs/vendor-apis.md §6.2).

Updates (comments, §6.2): ``post_update`` stores ``private`` (``1``/``true``), ``html_body``,
``subject``, ``posted_at`` and answers 201 with the update; an update without ``private`` is
served as public and recorded as a deviation (we always send it). A missing author is the 422
``errors.base`` the vendor's WHMCS module reads. ``update_count`` counts every update, private
ones included, and ``last_update_posted_at`` is the latest ``posted_at`` (INFERENCE). The
control API's ticket ``id`` is the ticket's reference.

The account's objects, the ticket store, seeding and record rendering are
``sync.sandbox.sirportly_data``'s; the SPQL evaluation is ``sync.sandbox.sirportly_spql``'s.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from sync.sandbox.base import DEVIATIONS, Fault, register_emulator
from sync.sandbox.sirportly_data import (
    DEPARTMENTS,
    PATHS,
    PRIORITIES,
    STATUSES,
    TEAMS,
    USERS,
    Rejection,
    SirportlyStore,
    check_placement,
    department_object,
    error,
    invalid,
    iso,
    lookup,
    parse_iso,
    reply_body,
    teams_of,
)
from sync.sandbox.sirportly_spql import run_spql

#: Documented parameters per method ([S-get], [S-upd], [S-sub], [S-post], [S-spqlapi]).
PARAMS = {
    "ticket": {"ticket", "timers", "mark_as_read", "reference"},  # reference: recorded apart
    "update": {
        "ticket", "status", "priority", "department", "sla", "team", "user", "subject",
        "tag_list", "updated_at", "reply_due_at", "resolution_due_at", "contact_method",
        "contact_method_data", "contact_name", "additional_contact_methods",
    },
    "submit": {
        "subject", "status", "priority", "team", "contact_method_type", "contact_method_data",
        "contact_name", "sla", "brand", "department", "user", "tag_list", "submitted_at",
    },
    "post_update": {
        "ticket", "message", "subject", "authenticated", "posted_at", "html_body", "html_safe",
        "user", "contact", "private",
    },
    "spql": {"spql"},
    "all": {"page", "sort_by", "order"},
}  # fmt: skip
SORTS = ("updated_at", "created_at", "reference", "subject")
_CUSTOM = re.compile(r"custom\[([^\]]+)\]")


@register_emulator("sirportly")
class SirportlyEmulator(SirportlyStore):
    """Sirportly's ticket API with the shared control API, request log and faults."""

    secret_headers = frozenset({"authorization", "cookie", "x-auth-token", "x-auth-secret"})

    def fault_response(self, fault: Fault) -> web.Response:
        headers = dict(fault.headers)
        if fault.body is not None and not isinstance(fault.body, dict | list):
            return web.Response(status=fault.status, text=str(fault.body), headers=headers)
        body = fault.body
        if body is None:
            messages = {403: "Access denied", 404: "Ticket not found", 429: "Too many requests"}
            if fault.status == 422:
                body = {"errors": {"base": ["is invalid"]}}
            else:
                body = {"error": messages.get(fault.status, "Service Unavailable")}
        return web.json_response(body, status=fault.status, headers=headers)

    # -- the request pipeline ----------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/api/{version}/tickets/{method}", self._api)
        router.add_route("*", "/api/{version}/objects/{kind}", self._objects)
        router.add_route("*", "/{tail:.*}", self._unrouted)

    async def _unrouted(self, request: web.Request) -> web.Response:
        return error(404, "Method not found")

    async def _api(self, request: web.Request) -> web.Response:
        deviations: list[str] = request[DEVIATIONS]
        version, method = request.match_info["version"], request.match_info["method"]
        handler = self._handlers().get(method)
        if version not in ("v1", "v2") or handler is None:
            return error(404, "Method not found")
        if version == "v1":
            deviations.append("/api/v1 path; Sirportly's pages document /api/v2")
        try:
            params = await self._params(request, deviations)
        except Rejection as rejection:
            return rejection.response
        if (request.headers.get("X-Auth-Token"), request.headers.get("X-Auth-Secret")) != (
            self.token,
            self.secret,
        ):
            return error(403, "Invalid API token or secret")
        for name in params:
            if name not in PARAMS[method] and not _CUSTOM.fullmatch(name):
                deviations.append(f"unknown parameter {name!r} (ignored)")
        try:
            return await handler(request, params)
        except Rejection as rejection:
            return rejection.response

    async def _objects(self, request: web.Request) -> web.Response:
        """``objects/departments`` and ``objects/escalation_paths`` (docs/vendor-apis.md §3.7 lists
        them;
        INFERENCE: a path lists its ``teams`` in order, the first one taking new tickets)."""
        kind = request.match_info["kind"]
        if (request.headers.get("X-Auth-Token"), request.headers.get("X-Auth-Secret")) != (
            self.token,
            self.secret,
        ):
            return error(403, "Invalid API token or secret")
        if kind == "departments":
            return web.json_response([department_object(key) for key in DEPARTMENTS])
        if kind == "escalation_paths":
            paths = [
                {"id": key, "name": name, "teams": [{"id": t, "name": TEAMS[t]} for t in teams]}
                for key, (name, teams) in PATHS.items()
            ]
            return web.json_response(paths)
        return error(404, "Method not found")

    def _handlers(self) -> dict[str, Callable[[web.Request, dict[str, str]], Awaitable[Any]]]:
        return {
            "ticket": self._get,
            "update": self._update,
            "submit": self._submit,
            "post_update": self._post_update,
            "spql": self._spql,
            "all": self._all,
        }

    @staticmethod
    async def _params(request: web.Request, deviations: list[str]) -> dict[str, str]:
        if request.method != "POST":
            deviations.append(f"sent by {request.method}; Sirportly recommends POST")
        params = {k: str(v) for k, v in request.query.items()}
        if params:
            deviations.append("parameters in the query string; Sirportly documents form fields")
        if request.content_type == "application/json":
            deviations.append("JSON body; Sirportly documents form parameters")
            try:
                body = await request.json()
            except ValueError:
                raise Rejection(invalid({"base": ["the body is not valid JSON"]})) from None
            if isinstance(body, dict):
                params.update({k: str(v) for k, v in body.items()})
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            params.update({k: str(v) for k, v in (await request.post()).items()})
        return params

    def _ticket_of(self, params: Mapping[str, str], deviations: list[str]) -> dict[str, Any]:
        reference = params.get("ticket")
        if reference is None and "reference" in params:
            deviations.append("ticket given as 'reference'; Sirportly documents 'ticket'")
            reference = params["reference"]
        ticket = self.tickets.get(str(reference)) if reference else None
        if ticket is None:
            raise Rejection(error(404, "Ticket not found"))
        return ticket

    def _rules(self, request: web.Request, ticket: dict[str, Any]) -> None:
        if self.rule and request.headers.get("X-Sirportly-Rules", "").lower() != "disabled":
            self._apply(ticket, self.rule)

    def _custom(self, params: Mapping[str, str]) -> dict[str, str]:
        custom = {}
        for name, value in params.items():
            match = _CUSTOM.fullmatch(name)
            if match is None:
                continue
            if match.group(1) not in self.custom_fields:
                raise Rejection(invalid({"custom_fields": [f"{match.group(1)} is not known"]}))
            custom[match.group(1)] = value
        return custom

    # -- handlers ----------------------------------------------------------------------------

    async def _get(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return web.json_response(self._ticket_of(params, request[DEVIATIONS]))

    async def _update(self, request: web.Request, params: dict[str, str]) -> web.Response:
        ticket = self._ticket_of(params, request[DEVIATIONS])
        changes = self._placement(request, params, ticket)
        if "subject" in params:
            if not params["subject"].strip():
                raise Rejection(invalid({"subject": ["can't be blank"]}))
            changes["subject"] = params["subject"]
        # Resolved before anything is applied, so a rejected update changes nothing.
        if "status" in params:
            changes["status"] = lookup(STATUSES, params["status"], "Status")
        if "priority" in params:
            changes["priority"] = lookup(PRIORITIES, params["priority"], "Priority")
        for name in ("resolution_due_at", "reply_due_at", "updated_at"):
            if name in params:
                changes[name] = self._time_param(params, name)
        custom = self._custom(params)
        self._apply(ticket, changes)
        ticket["custom_fields"].update(custom)
        ticket["updated_at"] = changes.get("updated_at") or self.now()
        self._rules(request, ticket)
        return web.json_response(reply_body(ticket))

    def _placement(
        self, request: web.Request, params: Mapping[str, str], ticket: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Department, team and user as one valid combination, or the rejection."""
        department = ticket["department"]["id"]
        team = (ticket.get("team") or {}).get("id")
        user = (ticket.get("user") or {}).get("id")
        if "department" in params:
            if not params["department"].isdigit() or int(params["department"]) not in DEPARTMENTS:
                raise Rejection(error(404, "Department not found"))
            department = int(params["department"])
        if "team" in params:
            team = lookup(TEAMS, params["team"], "Team")
        if "user" in params:
            if params["user"] == "":
                request[DEVIATIONS].append("empty user= clears the assignee (undocumented)")
                user = None
            else:
                user = lookup(USERS, params["user"], "User")
        check_placement(department, team, user)
        changes: dict[str, Any] = {}
        if "department" in params:
            changes["department"] = department
        if "team" in params:
            changes["team"] = team
        if "user" in params:
            changes["user"] = user
        return changes

    @staticmethod
    def _time_param(params: Mapping[str, str], name: str) -> str:
        try:
            return iso(parse_iso(params[name]))
        except ValueError:
            raise Rejection(invalid({name: ["is not a valid date/time"]})) from None

    async def _submit(self, request: web.Request, params: dict[str, str]) -> web.Response:
        deviations: list[str] = request[DEVIATIONS]
        errors = {
            name: ["can't be blank"]
            for name in ("subject", "status", "priority")
            if not params.get(name, "").strip()
        }
        email, name = self._submit_contact(params, deviations, errors)
        if errors:
            raise Rejection(invalid(errors))
        status = lookup(STATUSES, params["status"], "Status")
        priority = lookup(PRIORITIES, params["priority"], "Priority")
        department, team = self._submit_queue(params, deviations)
        user = lookup(USERS, params["user"], "User") if params.get("user") else None
        check_placement(department, team, user)
        custom = self._custom(params)
        ticket = self.seed(
            subject=params["subject"],
            status=status,
            priority=priority,
            department=department,
            team=team,
            user=user,
            email=email,
            contact_name=name,
        )
        ticket["custom_fields"].update(custom)
        self._rules(request, ticket)
        return web.json_response(reply_body(ticket, contact=True), status=201)

    def _submit_contact(
        self, params: Mapping[str, str], deviations: list[str], errors: dict[str, list[str]]
    ) -> tuple[str, str]:
        if params.get("contact_method_data"):
            if params.get("contact_method_type", "email") != "email":
                errors["contact_method_type"] = ["only email is emulated"]
            if not params.get("contact_name"):
                errors["contact_name"] = ["can't be blank"]
            return params["contact_method_data"], params.get("contact_name", "")
        if params.get("contact"):
            deviations.append("submit with contact=<id> (3P; not on Sirportly's page)")
            for email, customer in self.contacts.items():
                if str(customer["id"]) == params["contact"]:
                    return email, str(customer["name"])
            raise Rejection(error(404, "Contact not found"))
        if params.get("email"):
            deviations.append("submit with name/email (3P; not on Sirportly's page)")
            return params["email"], params.get("name") or params["email"].split("@")[0]
        errors["contact_method_data"] = ["can't be blank"]
        return "", ""

    def _submit_queue(self, params: Mapping[str, str], deviations: list[str]) -> tuple[int, int]:
        department: int | None = None
        if params.get("department"):
            department = lookup(DEPARTMENTS, params["department"], "Department")
            if not params["department"].isdigit() and "brand" not in params:
                raise Rejection(error(404, "Department not found"))
        if not params.get("team"):
            deviations.append("submit without team (3P; Sirportly's page requires it)")
            if department is None:
                raise Rejection(invalid({"team": ["can't be blank"]}))
            return department, teams_of(department)[0]
        team = lookup(TEAMS, params["team"], "Team")
        if department is None:
            department = next((d for d in DEPARTMENTS if team in teams_of(d)), 3)
        return department, team

    async def _post_update(self, request: web.Request, params: dict[str, str]) -> web.Response:
        ticket = self._ticket_of(params, request[DEVIATIONS])
        if not params.get("message", "").strip():
            raise Rejection(invalid({"message": ["can't be blank"]}))
        author: int | None = None
        if params.get("user"):
            author = lookup(USERS, params["user"], "User")
        elif params.get("contact"):
            if not any(str(c["id"]) == params["contact"] for c in self.contacts.values()):
                raise Rejection(error(404, "Contact not found"))
        else:  # an account token needs an author (DOC [S-post])
            raise Rejection(invalid({"base": ["A user or contact must be specified"]}))
        if "private" not in params:
            request[DEVIATIONS].append("post_update without private: visibility left implicit")
        update = self._post(
            ticket,
            params["message"],
            author,
            private=params.get("private", "").lower() in ("1", "true", "t", "yes"),
            html_body=params.get("html_body"),
            subject=params.get("subject"),
            posted_at=self._time_param(params, "posted_at") if params.get("posted_at") else None,
        )
        if self.post_moves_updated_at:
            ticket["updated_at"] = self.now()
        self._rules(request, ticket)
        return web.json_response(update, status=201)

    async def _all(self, request: web.Request, params: dict[str, str]) -> web.Response:
        sort_by = params.get("sort_by", "reference")
        if sort_by not in SORTS:
            request[DEVIATIONS].append(f"sort_by={sort_by!r} is not a known sort (ignored)")
            sort_by = "reference"
        key = "submitted_at" if sort_by == "created_at" else sort_by
        records = sorted(
            self.tickets.values(),
            key=lambda t: (str(t.get(key) or ""), t["id"]),
            reverse=params.get("order", "asc") == "desc",
        )
        page_text = params.get("page", "1")
        page = int(page_text) if page_text.isdigit() and int(page_text) > 0 else 1
        start = (page - 1) * self.per_page
        chosen = records[start : start + self.per_page]
        pagination = {
            "page": page,
            "per_page": self.per_page,
            "total_records": len(records),
            "pages": max(1, -(-len(records) // self.per_page)),
            "offset": start,
        }
        hidden = ("updates", "custom_fields")
        data = [{k: v for k, v in t.items() if k not in hidden} for t in chosen]
        return web.json_response({"records": data, "pagination": pagination})

    async def _spql(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if not self.spql_access:
            return error(403, "You do not have access to reporting")
        query = params.get("spql", "")
        try:
            fields, results = self._run_spql(query, request[DEVIATIONS])
        except ValueError as exc:
            return web.json_response({"errors": [str(exc)]}, status=422)
        return web.json_response({"query": query, "fields": fields, "results": results})

    def _run_spql(self, query: str, deviations: list[str]) -> tuple[list[str], list[list[Any]]]:
        return run_spql(self.tickets.values(), query, deviations)
