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

    SELECT col, ... FROM tickets [WHERE <time column> <op> '<ISO time>']
      [ORDER BY col [ASC|DESC]] [LIMIT count | LIMIT offset,count]

Emulator choices where Sirportly's behaviour is UNCONFIRMED (INFERENCE): a naive date literal
is UTC; an unknown custom field is a 422 (Sirportly may ignore it instead); ``tickets/all``
pages hold ``per_page`` (30) records without ``updates`` and ``custom_fields``; a team off
the department's escalation path and a user outside the team are 422s.

Settings (``configure``): ``spql_access`` (false: SPQL answers 403, as for a user token
without reporting access), ``per_page``, ``custom_fields``, ``rule`` (fields a Sirportly rule
sets after every API write not sent with ``X-Sirportly-Rules: disabled``, e.g.
``{"priority": "High"}``). The control API's ticket ``id`` is the ticket's reference.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sync.sandbox.base import DEVIATIONS, Emulator, Fault, register_emulator

#: id -> (name, colour, status_type): 0 open, 1 closed, 2 on hold (DOC [S-spql]).
STATUSES = {
    1: ("New", "d0d0d0", 0),
    2: ("Waiting for Staff", "00a9da", 0),
    3: ("Waiting for Customer", "f4a742", 2),
    4: ("On Hold", "aaaaaa", 2),
    5: ("Resolved", "6cb33f", 1),
    6: ("Closed", "333333", 1),
}
#: id -> (name, colour, position).
PRIORITIES = {1: ("Low", "8fbc8f", 1), 3: ("Normal", "0097cf", 3), 4: ("High", "e8a400", 4)}
PRIORITIES[5] = ("Urgent", "d9534f", 5)
BRAND = {"id": 2, "name": "Codebase", "url": "http://www.codebasehq.com"}
#: escalation path id -> (name, team ids on it).
PATHS = {2: ("aTech Technical Support Path", (2, 4)), 3: ("Accounts Path", (5,))}
#: department id -> (name, escalation path id).
DEPARTMENTS = {3: ("Technical Support", 2), 5: ("Accounts", 3)}
TEAMS = {2: "1st Line Support", 4: "2nd Line Support", 5: "Billing"}
#: user id -> (username, first name, last name, team ids).
USERS = {
    2: ("charlie", "Charlie", "Smurthwaite", (2, 4)),
    6: ("erin", "Erin", "Okafor", (2, 4)),
    7: ("dana", "Dana", "Li", (5,)),
}
CUSTOM_FIELDS = ("ticketsync_marker", "order_number")

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
_SPQL = re.compile(
    r"\s*SELECT\s+(?P<cols>.+?)\s+FROM\s+tickets"
    r"(?:\s+WHERE\s+(?P<where>[\w.]+)\s*(?P<op>>=|<=|=|>|<)\s*'(?P<literal>[^']*)')?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>[\w.]+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?:(?P<offset>\d+)\s*,\s*)?(?P<count>\d+))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_OPS: Mapping[str, Callable[[datetime, datetime], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}
TIME_COLUMNS = ("tickets.updated_at", "tickets.submitted_at", "tickets.last_update_posted_at")
_SINGULAR = {"status.": "statuses.", "priority.": "priorities.", "department.": "departments."}
_SINGULAR |= {"team.": "teams.", "user.": "users.", "ticket.": "tickets."}


def iso(moment: datetime) -> str:
    """Sirportly's time format: ``2012-02-01T15:26:13+00:00``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_time(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return iso(value) if isinstance(value, datetime) else iso(parse_iso(str(value)))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _invalid(errors: Mapping[str, list[str]]) -> web.Response:
    return web.json_response({"errors": dict(errors)}, status=422)


class Rejection(Exception):
    """A request Sirportly refuses; ``response`` is its answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _lookup(table: Mapping[int, Any], value: Any, what: str) -> int:
    """An object's id from its id or (case-insensitive) name; 404 when there is none."""
    text = str(value).strip()
    if text.isdigit() and int(text) in table:
        return int(text)
    for key, row in table.items():
        if str(row[0] if isinstance(row, tuple) else row).lower() == text.lower():
            return key
    raise Rejection(_error(404, f"{what} not found"))


def _status(key: int) -> dict[str, Any]:
    name, colour, kind = STATUSES[key]
    return {"id": key, "name": name, "colour": colour, "status_type": kind}


def _priority(key: int) -> dict[str, Any]:
    name, colour, position = PRIORITIES[key]
    return {"id": key, "name": name, "colour": colour, "position": position}


def _department(key: int) -> dict[str, Any]:
    name, path = DEPARTMENTS[key]
    return {
        "id": key,
        "name": name,
        "brand": dict(BRAND),
        "escalation_path": {"id": path, "name": PATHS[path][0]},
        "private": False,
    }


def _user(key: int) -> dict[str, Any]:
    username, first, last, _ = USERS[key]
    return {
        "id": key,
        "username": username,
        "first_name": first,
        "last_name": last,
        "email_address": f"{username}@atechmedia.com",
        "time_zone": "UTC",
        "created_at": "2012-02-02T16:09:55+00:00",
    }


def _teams_of(department: int) -> tuple[int, ...]:
    return PATHS[DEPARTMENTS[department][1]][1]


@register_emulator("sirportly")
class SirportlyEmulator(Emulator):
    """Sirportly's ticket API with the shared control API, request log and faults."""

    secret_headers = frozenset({"authorization", "cookie", "x-auth-token", "x-auth-secret"})

    def __init__(self, *, token: str = "sandbox-token", secret: str = "sandbox-secret") -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.reset_state()

    def reset_state(self) -> None:
        super().reset_state()
        self.spql_access = True
        self.per_page = 30
        self.custom_fields = set(CUSTOM_FIELDS)
        self.rule: dict[str, Any] = {}
        self.contacts: dict[str, dict[str, Any]] = {}  # e-mail -> customer
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)

    def configure(self, **settings: Any) -> None:
        own = {"spql_access", "per_page", "custom_fields", "rule"}
        super().configure(**{k: v for k, v in settings.items() if k not in own})
        if "spql_access" in settings:
            self.spql_access = bool(settings["spql_access"])
        if "per_page" in settings:
            self.per_page = int(settings["per_page"])
        if "custom_fields" in settings:
            self.custom_fields = set(settings["custom_fields"])
        if "rule" in settings:
            self.rule = dict(settings["rule"] or {})

    def revoke(self) -> None:
        """The operator deleted the API token: every call now answers 403."""
        self.secret = "revoked-" + secrets.token_hex(8)

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

    # -- tickets ---------------------------------------------------------------------------

    def now(self) -> str:
        return iso(self.clock())

    def seed(self, **fields: Any) -> dict[str, Any]:
        """A ticket created at the vendor. Fields: ``subject``, ``status`` / ``priority`` (name
        or id), ``department`` / ``team`` (ids), ``user`` (username), ``email``,
        ``description`` (the first update), ``resolution_due_at``, ``custom_fields``,
        ``updated_at``, ``submitted_at``, ``reference`` (an existing one edits that ticket)."""
        reference = str(fields.pop("reference", None) or fields.pop("id", None) or "")
        if reference in self.tickets:
            return self.edit(reference, **fields)
        number = next(self._ids)
        reference = reference or f"SP-{616000 + number}"
        now = self.now()
        ticket: dict[str, Any] = {
            "id": number,
            "reference": reference,
            "subject": "Sandbox ticket",
            "message_id": f"{secrets.token_hex(8)}@sirportly.sandbox",
            "submitted_at": now,
            "reply_due_at": None,
            "resolution_due_at": None,
            "auth_code": secrets.token_hex(6),
            "additional_recipients": None,
            "last_update_posted_at": None,
            "first_response_time": None,
            "first_resolution_time": None,
            "resolution_time": None,
            "last_respondant": None,
            "update_count": 0,
            "status": _status(1),
            "priority": _priority(3),
            "department": _department(3),
            "team": {"id": 2, "name": TEAMS[2]},
            "user": None,
            "sla": None,
            "customer": None,
            "customer_contact_method": None,
            "contact": None,
            "custom_fields": dict.fromkeys(sorted(self.custom_fields)),
            "updates": [],
            "updated_at": now,
        }
        fields.setdefault("email", "customer@example.com")
        self._apply(ticket, fields)
        ticket["submitted_at"] = _as_time(fields.get("submitted_at")) or now
        ticket["updated_at"] = _as_time(fields.get("updated_at")) or now
        self.tickets[reference] = ticket
        return ticket

    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """An agent's edit in Sirportly: fields change and ``updated_at`` moves.

        ``description`` rewrites the first update (for tests; agents cannot do that).
        """
        ticket = self.tickets[external_id]
        fields.pop("id", None)
        self._apply(ticket, fields)
        ticket["updated_at"] = _as_time(fields.get("updated_at")) or self.now()
        return ticket

    def _apply(self, ticket: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if name == "status":
                ticket["status"] = _status(_lookup(STATUSES, value, "Status"))
            elif name == "priority":
                ticket["priority"] = _priority(_lookup(PRIORITIES, value, "Priority"))
            elif name == "department":
                ticket["department"] = _department(int(value))
            elif name == "team":
                ticket["team"] = {"id": int(value), "name": TEAMS[int(value)]} if value else None
            elif name == "user":
                ticket["user"] = _user(_lookup(USERS, value, "User")) if value else None
            elif name == "email":
                contact = fields.get("contact_name") or str(value).split("@")[0]
                self._set_contact(ticket, str(value), str(contact))
            elif name == "description":
                self._set_description(ticket, value)
            elif name == "custom_fields":
                ticket["custom_fields"].update(value or {})
            elif name in ("resolution_due_at", "reply_due_at"):
                ticket[name] = _as_time(value)
            elif name not in ("updated_at", "submitted_at", "contact_name"):
                ticket[name] = value

    def _set_contact(self, ticket: dict[str, Any], email: str, name: str) -> None:
        customer = self.contacts.get(email.lower())
        if customer is None:
            number = len(self.contacts) + 1
            customer = {"id": number, "name": name, "company": None, "pin": f"{484836 + number}"}
            self.contacts[email.lower()] = customer
        ticket["customer"] = dict(customer)
        ticket["contact"] = {"id": customer["id"], "name": customer["name"]}
        ticket["customer_contact_method"] = {
            "id": customer["id"],
            "method_type": "email",
            "data": email,
        }

    def _set_description(self, ticket: dict[str, Any], message: Any) -> None:
        if ticket["updates"]:
            ticket["updates"][0]["message"] = message
        elif message is not None:
            self._post(ticket, str(message), author={"type": "contact"})

    def _post(self, ticket: dict[str, Any], message: str, author: dict[str, Any]) -> dict[str, Any]:
        customer = ticket.get("customer") or {}
        method = ticket.get("customer_contact_method") or {}
        update = {
            "id": next(self._update_ids),
            "message": message,
            "private": False,
            "posted_at": self.now(),
            "from_name": customer.get("name"),
            "from_address": method.get("data"),
            "author": author,
        }
        ticket["updates"].append(update)
        ticket["update_count"] = len(ticket["updates"])
        ticket["last_update_posted_at"] = update["posted_at"]
        ticket["last_respondant"] = "customer" if author["type"] == "contact" else "staff"
        return update

    demo_field_names = {"title": "subject", "status": "status", "priority": "priority"}

    def demo_value(self, external_id: str, field: str) -> Any:
        value = super().demo_value(external_id, field)
        return value.get("name") if isinstance(value, dict) else value

    def demo_connection(self) -> dict[str, Any]:
        assert self.base_url is not None
        return {
            "vendor": "sirportly",
            "base_url": self.base_url,
            "credentials": {"token": self.token, "secret": self.secret},
            "fields": {
                "title": None,
                "status": {
                    "open": "New",
                    "pending": "Waiting for Customer",
                    "on_hold": "On Hold",
                    "resolved": "Resolved",
                    "closed": "Closed",
                },
                "priority": {"low": "Low", "normal": "Normal", "high": "High", "urgent": "Urgent"},
                "queue": {"support": "3/2", "billing": "5/5"},
            },
        }

    def demo_fields(self, index: int) -> dict[str, Any]:
        return {
            "subject": f"Demo ticket {index + 1}",
            "description": f"Seeded by the Sirportly sandbox ({index + 1}).",
            # every status but "Waiting for Staff", which the demo's map leaves out
            "status": [1, 3, 4, 5, 6][index % 5],
            "priority": list(PRIORITIES)[index % len(PRIORITIES)],
            "email": f"customer{index + 1}@example.com",
        }

    # -- the request pipeline ----------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/api/{version}/tickets/{method}", self._api)
        router.add_route("*", "/api/{version}/objects/{kind}", self._objects)
        router.add_route("*", "/{tail:.*}", self._unrouted)

    async def _unrouted(self, request: web.Request) -> web.Response:
        return _error(404, "Method not found")

    async def _api(self, request: web.Request) -> web.Response:
        deviations: list[str] = request[DEVIATIONS]
        version, method = request.match_info["version"], request.match_info["method"]
        handler = self._handlers().get(method)
        if version not in ("v1", "v2") or handler is None:
            return _error(404, "Method not found")
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
            return _error(403, "Invalid API token or secret")
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
            return _error(403, "Invalid API token or secret")
        if kind == "departments":
            return web.json_response([_department(key) for key in DEPARTMENTS])
        if kind == "escalation_paths":
            paths = [
                {"id": key, "name": name, "teams": [{"id": t, "name": TEAMS[t]} for t in teams]}
                for key, (name, teams) in PATHS.items()
            ]
            return web.json_response(paths)
        return _error(404, "Method not found")

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
                raise Rejection(_invalid({"base": ["the body is not valid JSON"]})) from None
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
            raise Rejection(_error(404, "Ticket not found"))
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
                raise Rejection(_invalid({"custom_fields": [f"{match.group(1)} is not known"]}))
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
                raise Rejection(_invalid({"subject": ["can't be blank"]}))
            changes["subject"] = params["subject"]
        # Resolved before anything is applied, so a rejected update changes nothing.
        if "status" in params:
            changes["status"] = _lookup(STATUSES, params["status"], "Status")
        if "priority" in params:
            changes["priority"] = _lookup(PRIORITIES, params["priority"], "Priority")
        for name in ("resolution_due_at", "reply_due_at", "updated_at"):
            if name in params:
                changes[name] = self._time_param(params, name)
        custom = self._custom(params)
        self._apply(ticket, changes)
        ticket["custom_fields"].update(custom)
        ticket["updated_at"] = changes.get("updated_at") or self.now()
        self._rules(request, ticket)
        return web.json_response(_reply(ticket))

    def _placement(
        self, request: web.Request, params: Mapping[str, str], ticket: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Department, team and user as one valid combination, or the rejection."""
        department = ticket["department"]["id"]
        team = (ticket.get("team") or {}).get("id")
        user = (ticket.get("user") or {}).get("id")
        if "department" in params:
            if not params["department"].isdigit() or int(params["department"]) not in DEPARTMENTS:
                raise Rejection(_error(404, "Department not found"))
            department = int(params["department"])
        if "team" in params:
            team = _lookup(TEAMS, params["team"], "Team")
        if "user" in params:
            if params["user"] == "":
                request[DEVIATIONS].append("empty user= clears the assignee (undocumented)")
                user = None
            else:
                user = _lookup(USERS, params["user"], "User")
        _check_placement(department, team, user)
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
            raise Rejection(_invalid({name: ["is not a valid date/time"]})) from None

    async def _submit(self, request: web.Request, params: dict[str, str]) -> web.Response:
        deviations: list[str] = request[DEVIATIONS]
        errors = {
            name: ["can't be blank"]
            for name in ("subject", "status", "priority")
            if not params.get(name, "").strip()
        }
        email, name = self._submit_contact(params, deviations, errors)
        if errors:
            raise Rejection(_invalid(errors))
        status = _lookup(STATUSES, params["status"], "Status")
        priority = _lookup(PRIORITIES, params["priority"], "Priority")
        department, team = self._submit_queue(params, deviations)
        user = _lookup(USERS, params["user"], "User") if params.get("user") else None
        _check_placement(department, team, user)
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
        return web.json_response(_reply(ticket, contact=True), status=201)

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
            raise Rejection(_error(404, "Contact not found"))
        if params.get("email"):
            deviations.append("submit with name/email (3P; not on Sirportly's page)")
            return params["email"], params.get("name") or params["email"].split("@")[0]
        errors["contact_method_data"] = ["can't be blank"]
        return "", ""

    def _submit_queue(self, params: Mapping[str, str], deviations: list[str]) -> tuple[int, int]:
        department: int | None = None
        if params.get("department"):
            department = _lookup(DEPARTMENTS, params["department"], "Department")
            if not params["department"].isdigit() and "brand" not in params:
                raise Rejection(_error(404, "Department not found"))
        if not params.get("team"):
            deviations.append("submit without team (3P; Sirportly's page requires it)")
            if department is None:
                raise Rejection(_invalid({"team": ["can't be blank"]}))
            return department, _teams_of(department)[0]
        team = _lookup(TEAMS, params["team"], "Team")
        if department is None:
            department = next((d for d in DEPARTMENTS if team in _teams_of(d)), 3)
        return department, team

    async def _post_update(self, request: web.Request, params: dict[str, str]) -> web.Response:
        ticket = self._ticket_of(params, request[DEVIATIONS])
        if not params.get("message", "").strip():
            raise Rejection(_invalid({"message": ["can't be blank"]}))
        if params.get("user"):
            author = {"type": "user", "id": _lookup(USERS, params["user"], "User")}
        elif params.get("contact"):
            if not any(str(c["id"]) == params["contact"] for c in self.contacts.values()):
                raise Rejection(_error(404, "Contact not found"))
            author = {"type": "contact", "id": int(params["contact"])}
        else:
            raise Rejection(_invalid({"author": ["a user or contact is required"]}))
        update = self._post(ticket, params["message"], author)
        ticket["updated_at"] = update["posted_at"]
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
            return _error(403, "You do not have access to reporting")
        query = params.get("spql", "")
        try:
            fields, results = self._run_spql(query, request[DEVIATIONS])
        except ValueError as exc:
            return web.json_response({"errors": [str(exc)]}, status=422)
        return web.json_response({"query": query, "fields": fields, "results": results})

    def _run_spql(self, query: str, deviations: list[str]) -> tuple[list[str], list[list[Any]]]:
        match = _SPQL.fullmatch(query)
        if match is None:
            raise ValueError(f"Invalid query: {query!r}")
        given = [c.strip() for c in match["cols"].split(",")]
        columns = [_column(c, deviations) for c in given]
        found = list(self.tickets.values())
        if match["where"]:
            where = _column(match["where"], deviations)
            if where not in TIME_COLUMNS:
                raise ValueError(f"Invalid condition on {match['where']}")
            try:
                bound = parse_iso(match["literal"])
            except ValueError:
                raise ValueError(f"Invalid date {match['literal']!r}") from None
            op = _OPS[match["op"]]
            found = [t for t in found if _value(t, where) and op(_time(t, where), bound)]
        if match["order"]:
            order = _column(match["order"], deviations)
            found.sort(key=lambda t: (_sortable(_value(t, order)), t["id"]))
            if (match["dir"] or "").upper() == "DESC":
                found.reverse()
        offset = int(match["offset"] or 0)
        if match["count"]:
            found = found[offset : offset + int(match["count"])]
        return given, [[_value(t, c) for c in columns] for t in found]


def _check_placement(department: int, team: int | None, user: int | None) -> None:
    if team is not None and team not in _teams_of(department):
        raise Rejection(
            _invalid({"team": ["must be within the escalation path of the department"]})
        )
    if user is not None and team not in USERS[user][3]:
        raise Rejection(_invalid({"user": ["must be within the assigned team"]}))


def _reply(ticket: Mapping[str, Any], *, contact: bool = False) -> dict[str, Any]:
    """A write's reply: the ticket as on the update page, without messages or custom fields."""
    hidden = {"updates", "custom_fields"} | (set() if contact else {"contact"})
    return {k: v for k, v in ticket.items() if k not in hidden}


#: SPQL column -> how to read it from a ticket.
COLUMNS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "tickets.id": lambda t: t["id"],
    "tickets.reference": lambda t: t["reference"],
    "tickets.subject": lambda t: t["subject"],
    "tickets.submitted_at": lambda t: t["submitted_at"],
    "tickets.updated_at": lambda t: t["updated_at"],
    "tickets.last_update_posted_at": lambda t: t["last_update_posted_at"],
    "tickets.update_count": lambda t: t["update_count"],
    "tickets.last_respondant": lambda t: t["last_respondant"],
    "tickets.status_type": lambda t: t["status"]["status_type"],
    "statuses.name": lambda t: t["status"]["name"],
    "priorities.name": lambda t: t["priority"]["name"],
    "departments.id": lambda t: t["department"]["id"],
    "departments.name": lambda t: t["department"]["name"],
    "teams.id": lambda t: (t["team"] or {}).get("id"),
    "teams.name": lambda t: (t["team"] or {}).get("name"),
    "users.username": lambda t: (t["user"] or {}).get("username"),
}


def _column(name: str, deviations: list[str]) -> str:
    lowered = name.lower()
    for singular, plural in _SINGULAR.items():
        if lowered.startswith(singular):
            deviations.append(f"SPQL singular table name {name!r} (3P)")
            lowered = plural + lowered[len(singular) :]
    if lowered not in COLUMNS:
        raise ValueError(f"Invalid column '{name}'")
    return lowered


def _value(ticket: Mapping[str, Any], column: str) -> Any:
    return COLUMNS[column](ticket)


def _time(ticket: Mapping[str, Any], column: str) -> datetime:
    return parse_iso(str(_value(ticket, column)))


def _sortable(value: Any) -> tuple[int, Any]:
    # SPQL columns hold numbers, strings (ISO times sort as text) or null: never compared.
    if value is None:
        return (0, 0)
    return (1, value) if isinstance(value, int | float) else (2, str(value))
