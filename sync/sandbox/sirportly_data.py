"""Sirportly emulator, its data: the account's objects, the ticket store and record rendering.

``SirportlyStore`` holds what a Sirportly account knows (statuses, priorities, departments on
escalation paths, teams, users, contacts, tickets with their updates); ``sync.sandbox.sirportly``
adds the HTTP routes on top of it and ``sync.sandbox.sirportly_spql`` the SPQL subset. Ticket
objects are rendered as on the vendor's update page (docs/vendor-apis.md §3): ``status`` /
``priority`` / ``department`` / ``team`` / ``user`` objects, ISO times with offsets
(``iso``), plus ``updated_at``, ``custom_fields`` and ``updates``.

Settings (``configure``): ``spql_access``, ``per_page``, ``custom_fields``, ``rule``,
``token``, ``secret``, ``post_moves_updated_at`` (see ``sync.sandbox.sirportly``). The
control API's ticket ``id`` is the ticket's reference.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sync.sandbox.base import Emulator

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


def iso(moment: datetime) -> str:
    """Sirportly's time format: ``2012-02-01T15:26:13+00:00``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_iso(text: str) -> datetime:
    """An ISO time (``Z`` or an offset; naive is UTC, INFERENCE) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_time(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return iso(value) if isinstance(value, datetime) else iso(parse_iso(str(value)))


def error(status: int, message: str) -> web.Response:
    """Sirportly's ``{"error": message}`` reply (403, 404)."""
    return web.json_response({"error": message}, status=status)


def invalid(errors: Mapping[str, list[str]]) -> web.Response:
    """Sirportly's validation reply: 422 ``{"errors": {field: [messages]}}``."""
    return web.json_response({"errors": dict(errors)}, status=422)


class Rejection(Exception):
    """A request Sirportly refuses; ``response`` is its answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def lookup(table: Mapping[int, Any], value: Any, what: str) -> int:
    """An object's id from its id or (case-insensitive) name; 404 when there is none."""
    text = str(value).strip()
    if text.isdigit() and int(text) in table:
        return int(text)
    for key, row in table.items():
        if str(row[0] if isinstance(row, tuple) else row).lower() == text.lower():
            return key
    raise Rejection(error(404, f"{what} not found"))


def _status(key: int) -> dict[str, Any]:
    name, colour, kind = STATUSES[key]
    return {"id": key, "name": name, "colour": colour, "status_type": kind}


def _priority(key: int) -> dict[str, Any]:
    name, colour, position = PRIORITIES[key]
    return {"id": key, "name": name, "colour": colour, "position": position}


def department_object(key: int) -> dict[str, Any]:
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


def teams_of(department: int) -> tuple[int, ...]:
    """The teams on the department's escalation path, the first taking new tickets."""
    return PATHS[DEPARTMENTS[department][1]][1]


class SirportlyStore(Emulator):
    """A Sirportly account's objects and tickets, with the shared control API and demo hooks."""

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
        self.post_moves_updated_at = True
        self.contacts: dict[str, dict[str, Any]] = {}  # e-mail -> customer
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)

    def configure(self, **settings: Any) -> None:
        own = {"spql_access", "per_page", "custom_fields", "rule", "token", "secret"}
        own |= {"post_moves_updated_at"}
        super().configure(**{k: v for k, v in settings.items() if k not in own})
        if "token" in settings:
            self.token = str(settings["token"])
        if "secret" in settings:
            self.secret = str(settings["secret"])
        if "spql_access" in settings:
            self.spql_access = bool(settings["spql_access"])
        if "per_page" in settings:
            self.per_page = int(settings["per_page"])
        if "custom_fields" in settings:
            self.custom_fields = set(settings["custom_fields"])
        if "rule" in settings:
            self.rule = dict(settings["rule"] or {})
        if "post_moves_updated_at" in settings:
            self.post_moves_updated_at = bool(settings["post_moves_updated_at"])

    def revoke(self) -> None:
        """The operator deleted the API token: every call now answers 403."""
        self.secret = "revoked-" + secrets.token_hex(8)

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
            "department": department_object(3),
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
        ticket["submitted_at"] = _as_time(fields.get("submitted_at")) or now
        self._apply(ticket, fields)
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
                ticket["status"] = _status(lookup(STATUSES, value, "Status"))
            elif name == "priority":
                ticket["priority"] = _priority(lookup(PRIORITIES, value, "Priority"))
            elif name == "department":
                ticket["department"] = department_object(int(value))
            elif name == "team":
                ticket["team"] = {"id": int(value), "name": TEAMS[int(value)]} if value else None
            elif name == "user":
                ticket["user"] = _user(lookup(USERS, value, "User")) if value else None
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
        elif message is not None:  # the body: posted when the ticket was submitted
            self._post(ticket, str(message), author=None, posted_at=ticket["submitted_at"])

    def add_comment(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """An update posted in Sirportly's UI (docs/vendor-apis.md §6.2): ``message``,
        ``html_body``, ``private`` (default false), ``posted_at`` (default now), ``user``
        (username or id; without it the ticket's contact wrote it). ``update_count`` and
        ``last_update_posted_at`` move, and so does ``updated_at`` unless the setting
        ``post_moves_updated_at`` is off (UNCONFIRMED at Sirportly, §6.2)."""
        ticket = self.tickets[external_id]
        user = lookup(USERS, fields["user"], "User") if fields.get("user") else None
        update = self._post(
            ticket,
            str(fields.get("message", "")),
            author=user,
            private=bool(fields.get("private", False)),
            html_body=fields.get("html_body"),
            posted_at=_as_time(fields.get("posted_at")),
        )
        if self.post_moves_updated_at:
            ticket["updated_at"] = self.now()
        return update

    def stored_comments(self, external_id: str) -> list[dict[str, Any]]:
        """The ticket's updates (the body included, when it has one), as stored."""
        ticket = self.tickets.get(external_id)
        return [dict(u) for u in ticket["updates"]] if ticket else []

    def _post(
        self,
        ticket: dict[str, Any],
        message: str,
        author: int | None,
        *,
        private: bool = False,
        html_body: Any = None,
        subject: str | None = None,
        posted_at: str | None = None,
    ) -> dict[str, Any]:
        """Append an update by the user ``author`` (None: the ticket's contact); bumps
        ``update_count`` (private updates included, INFERENCE) and ``last_update_posted_at``."""
        if self.misfile_visibility:
            private = not private
        customer = ticket.get("customer") or {}
        if author is None:
            name, address = customer.get("name"), (ticket.get("customer_contact_method") or {})
            who = {"type": "Customer", "id": customer.get("id"), "name": name}
            who |= {"reference": f"C{customer.get('id')}", "pin": customer.get("pin")}
            sender = (name, address.get("data"))
        else:
            user = _user(author)
            who = {"type": "User", **user, "name": f"{user['first_name']} {user['last_name']}"}
            sender = (who["name"], user["email_address"])
        update = {
            "id": next(self._update_ids),
            "subject": subject or ticket.get("subject"),
            "message": message,
            "html_body": html_body,
            "signature_text": None,
            "private": private,
            "posted_at": posted_at or self.now(),
            "from_name": sender[0],
            "from_address": sender[1],
            "author": who,
            "attachments": [],
        }
        ticket["updates"].append(update)
        ticket["update_count"] = len(ticket["updates"])
        latest = max(parse_iso(u["posted_at"]) for u in ticket["updates"])
        ticket["last_update_posted_at"] = iso(latest)
        ticket["last_respondant"] = "customer" if author is None else "staff"
        return update

    demo_field_names = {"title": "subject", "status": "status", "priority": "priority"}

    def demo_value(self, external_id: str, field: str) -> Any:
        value = super().demo_value(external_id, field)
        return value.get("name") if isinstance(value, dict) else value

    def demo_comment(self, body: str) -> dict[str, Any]:
        return {"message": body, "user": "charlie"}

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
            # comments posted without a mapped author need one (docs/vendor-apis.md §6.2)
            "options": {"comment_user": "charlie"},
        }

    def seed_demo(self, count: int) -> None:
        """The demo tickets; every third one carries a customer's HTML reply, then a staff
        private note and a public answer posted at the same second."""
        super().seed_demo(count)
        now = self.clock()
        for index, reference in enumerate(list(self.tickets)):
            if index % 3 == 0:
                html = "<p>Any news?<br>We are <b>blocked</b> &amp; waiting.</p>"
                self.add_comment(reference, message="", html_body=html, posted_at=now)
                self.add_comment(reference, message="Escalated to 2nd line.", private=True,
                                 user="charlie", posted_at=now)  # fmt: skip
                self.add_comment(reference, message="We are on it.", user="charlie", posted_at=now)

    def demo_fields(self, index: int) -> dict[str, Any]:
        return {
            "subject": f"Demo ticket {index + 1}",
            "description": f"Seeded by the Sirportly sandbox ({index + 1}).",
            # every status but "Waiting for Staff", which the demo's map leaves out
            "status": [1, 3, 4, 5, 6][index % 5],
            "priority": list(PRIORITIES)[index % len(PRIORITIES)],
            "email": f"customer{index + 1}@example.com",
        }


def check_placement(department: int, team: int | None, user: int | None) -> None:
    """Raise the 422 ``Rejection`` unless the team is on the department's escalation path
    and the user in the team."""
    if team is not None and team not in teams_of(department):
        raise Rejection(invalid({"team": ["must be within the escalation path of the department"]}))
    if user is not None and team not in USERS[user][3]:
        raise Rejection(invalid({"user": ["must be within the assigned team"]}))


def reply_body(ticket: Mapping[str, Any], *, contact: bool = False) -> dict[str, Any]:
    """A write's reply: the ticket as on the update page, without messages or custom fields."""
    hidden = {"updates", "custom_fields"} | (set() if contact else {"contact"})
    return {k: v for k, v in ticket.items() if k not in hidden}
