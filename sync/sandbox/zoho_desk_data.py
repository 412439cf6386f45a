"""Zoho Desk emulator, its data: the portal's tables, the OAuth state and the ticket store.

``ZohoDeskStore`` holds what a Zoho Desk portal knows: its statuses, priorities, departments,
agents and custom fields, the OAuth client and the access tokens it issued, the contacts and
the tickets (Zoho's field names, string ids, ISO ``...SSSZ`` times), and the filter of the
ticket search. ``sync.sandbox.zoho_desk`` adds the OAuth endpoint and the ticket API on top.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sync.sandbox.base import Emulator

#: Default statuses of a Zoho Desk department and their ``statusType`` group (DOC [Z-status];
#: Escalated's group is UNCONFIRMED, Open is the likely one).
STATUSES = {"Open": "Open", "On Hold": "On Hold", "Escalated": "Open", "Closed": "Closed"}
#: The default priority picklist (INFERENCE, docs/vendor-apis.md §5.3).
PRIORITIES = ("High", "Medium", "Low")
DEPARTMENTS = {"1892000000006907": "Support", "1892000000082069": "Billing"}
AGENTS = {"1892000000056007": "George Vincent", "1892000000056011": "Asha Rao"}
CUSTOM_FIELDS = ("cf_ticketsync_marker", "cf_modelname")
#: Comments the demo portal's tickets carry (``seed_demo``): an HTML reply from the
#: customer, a private note and a public reply at the same second, a mention.
DEMO_COMMENTS = (
    {
        "content": "<div>Hi,<br>the invoice still shows <b>20%</b> VAT &amp; we are exempt.</div>",
        "isPublic": True,
        "commenter": "customer",
    },
    {
        "content": "<div>Checked with zsu[@user:1892000000056011]zsu: exemption on file.</div>",
        "isPublic": False,
    },
    {"content": "We are correcting it now.", "contentType": "plainText", "isPublic": True},
)


def iso_ms(moment: datetime) -> str:
    """Zoho's time format: ``2016-06-21T13:16:14.000Z`` (UTC, milliseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ZohoDeskStore(Emulator):
    """A Zoho Desk portal's tables, OAuth state and tickets.

    Abstract: ``ZohoDeskEmulator`` (``sync.sandbox.zoho_desk``) adds the routes and the
    fault replies.
    """

    def __init__(
        self,
        *,
        client_id: str = "1000.SANDBOXCLIENT",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str = "1000.sandbox.refresh-token",
        org_id: str = "60001234",
        token_lifetime: float = 3600.0,
        refresh_limit: int = 10,
        refresh_window: float = 600.0,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.org_id = org_id
        self.token_lifetime = token_lifetime
        self.refresh_limit = refresh_limit
        self.refresh_window = refresh_window
        self.custom_fields = set(CUSTOM_FIELDS)
        self.reset_state()

    def reset_state(self) -> None:
        super().reset_state()
        self.access_tokens: dict[str, float] = {}
        self.grants: list[float] = []
        self.revoked = False
        self.contacts: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._comment_ids = itertools.count(1)
        self.search_lag = 0.0

    # -- settings and test helpers ---------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        own = {
            "token_lifetime",
            "refresh_limit",
            "refresh_window",
            "custom_fields",
            "client_secret",
            "refresh_token",
            "search_lag",
        }
        super().configure(**{k: v for k, v in settings.items() if k not in own})
        if "token_lifetime" in settings:
            self.token_lifetime = float(settings["token_lifetime"])
        if "refresh_limit" in settings:
            self.refresh_limit = int(settings["refresh_limit"])
        if "refresh_window" in settings:
            self.refresh_window = float(settings["refresh_window"])
        if "custom_fields" in settings:
            self.custom_fields = set(settings["custom_fields"])
        if "client_secret" in settings:
            self.client_secret = str(settings["client_secret"])
        if "refresh_token" in settings:
            self.refresh_token = str(settings["refresh_token"])
        if "search_lag" in settings:
            self.search_lag = float(settings["search_lag"])

    def indexed(self, ticket: Mapping[str, Any]) -> bool:
        """Whether the search index holds ``ticket`` yet: ``search_lag`` seconds after its
        creation (emulator clock). Zoho's lag is undocumented (docs/vendor-apis.md §4.4);
        the default 0 indexes at once, tests set it to show the list does not depend on it."""
        if self.search_lag <= 0:
            return True
        created = parse_iso(str(ticket["createdTime"]))
        return (self.clock() - created).total_seconds() >= self.search_lag

    def revoke(self) -> None:
        """The operator revoked the refresh token: grants fail, live tokens stop working."""
        self.revoked = True
        self.access_tokens.clear()

    def expire_tokens(self) -> None:
        """Every access token expires now (as if an hour had passed)."""
        self.access_tokens.clear()

    def token_grants(self) -> int:
        """How many token requests were logged (successful or not)."""
        return len(self.requests("POST", "/oauth/v2/token"))

    # -- tickets ---------------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(1892000000100000 + next(self._ids) * 1000 + 3)

    def seed(self, **fields: Any) -> dict[str, Any]:
        """A ticket created at the vendor; Zoho field names, ``modifiedTime`` may be given."""
        now = iso_ms(self.clock())
        ticket_id = str(fields.pop("id", None) or self._new_id())
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "ticketNumber": str(len(self.tickets) + 101),
            "subject": "Sandbox ticket",
            "description": None,
            "status": "Open",
            "priority": None,
            "departmentId": next(iter(DEPARTMENTS)),
            "assigneeId": None,
            "contactId": None,
            "email": None,
            "phone": None,
            "dueDate": None,
            "channel": "Web",
            "category": None,
            "createdTime": now,
            "modifiedTime": now,
            "modifiedBy": "1892000000056007",
            "closedTime": None,
            "onholdTime": None,
            "threadCount": "1",
            "commentCount": "0",
            "isSpam": False,
            "cf": dict.fromkeys(sorted(self.custom_fields)),
        }
        self._apply(ticket, fields)
        ticket["createdTime"] = _as_time(fields.get("createdTime", ticket["createdTime"]))
        ticket["modifiedTime"] = _as_time(fields.get("modifiedTime", ticket["modifiedTime"]))
        self.tickets[ticket_id] = ticket
        return ticket

    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """An agent's edit in the Zoho UI: fields change and ``modifiedTime`` moves."""
        ticket = self.tickets[external_id]
        self._apply(ticket, fields)
        ticket["modifiedTime"] = _as_time(fields.get("modifiedTime", iso_ms(self.clock())))
        return ticket

    def add_comment(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """A comment on the ticket, Zoho's shape (docs/vendor-apis.md §6.1): ``content``,
        ``contentType`` (default html), ``isPublic`` (default true here), ``commentedTime``
        (default now), ``commenter`` (an agent id, or ``"customer"``; default the first
        agent, the API user). ``commentCount`` goes up; ``modifiedTime`` does not move:
        whether it does at Zoho is UNCONFIRMED, so nothing may rely on it."""
        ticket = self.tickets[external_id]
        public = bool(fields.get("isPublic", True))
        if self.misfile_visibility:
            public = not public
        commenter = self._commenter(ticket, fields.get("commenter"))
        comment: dict[str, Any] = {
            "id": str(1892000000200000 + next(self._comment_ids) * 1000 + 7),
            "content": str(fields.get("content", "")),
            "contentType": fields.get("contentType") or "html",
            "isPublic": public,
            "commentedTime": _as_time(fields.get("commentedTime") or self.clock()),
            "modifiedTime": None,
            "commenterId": commenter["id"],
            "commenter": commenter,
            "impersonatedUser": None,
            "attachments": [],
        }
        self.comments.setdefault(external_id, []).append(comment)
        ticket["commentCount"] = str(len(self.comments[external_id]))
        return comment

    def _commenter(self, ticket: Mapping[str, Any], who: Any) -> dict[str, Any]:
        if who == "customer":
            email = ticket.get("email") or "customer@example.com"
            first, _, last = str(email).partition("@")
            return {
                "id": ticket.get("contactId") or "1892000000042000",
                "name": first,
                "firstName": "",
                "lastName": first,
                "email": email,
                "photoURL": None,
                "roleName": "PortalUser",
                "type": ["END_USER"],
            }
        agent = str(who) if who in AGENTS else next(iter(AGENTS))
        first, _, last = AGENTS[agent].partition(" ")
        return {
            "id": agent,
            "name": AGENTS[agent],
            "firstName": first,
            "lastName": last,
            "email": f"{first.lower()}@sandbox.example.com",
            "photoURL": None,
            "roleName": "Agent",
            "type": ["AGENT"],
        }

    def seed_demo(self, count: int) -> None:
        """The demo tickets; every third one carries ``DEMO_COMMENTS``, the last two at
        the same second."""
        super().seed_demo(count)
        for index, ticket_id in enumerate(list(self.tickets)):
            if index % 3 == 0:
                now = self.clock()
                times = (now - timedelta(minutes=5), now, now)
                for moment, comment in zip(times, DEMO_COMMENTS, strict=True):
                    self.add_comment(ticket_id, commentedTime=moment, **comment)

    def _apply(self, ticket: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if name == "cf":
                ticket["cf"].update(value or {})
            elif name == "contact":
                ticket["contactId"] = self._contact(value)
                ticket["email"] = ticket["email"] or value.get("email")
            elif name not in ("modifiedTime", "createdTime"):
                ticket[name] = value
        ticket["statusType"] = STATUSES.get(ticket["status"], "Open")
        closed = ticket["statusType"] == "Closed"
        ticket["closedTime"] = (ticket["closedTime"] or iso_ms(self.clock())) if closed else None

    def _contact(self, contact: Mapping[str, Any]) -> str:
        email = str(contact.get("email") or contact.get("lastName"))
        return self.contacts.setdefault(email, str(1892000000042000 + len(self.contacts) * 2))

    demo_field_names = {
        "title": "subject",
        "status": "status",
        "priority": "priority",
        "queue": "departmentId",
    }

    def demo_comment(self, body: str) -> dict[str, Any]:
        return {"content": body, "contentType": "plainText", "isPublic": True}

    def demo_connection(self) -> dict[str, Any]:
        assert self.base_url is not None
        queues = {name.lower(): dep for dep, name in DEPARTMENTS.items()}
        return {
            "vendor": "zoho_desk",
            "base_url": self.base_url,
            "credentials": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "refresh_token": self.refresh_token,
                "org_id": self.org_id,
                "accounts_url": self.base_url,
            },
            "fields": {
                "title": None,
                "status": {"open": "Open", "on_hold": "On Hold", "closed": "Closed"},
                "priority": {"low": "Low", "normal": "Medium", "high": "High", "urgent": "High"},
                "queue": queues,
            },
        }

    def demo_fields(self, index: int) -> dict[str, Any]:
        subjects = (
            "Invoice shows the wrong VAT rate",
            "Cannot reset my password",
            "Refund for a duplicate charge",
            "App crashes when exporting a report",
            "Change the billing address",
            "Two-factor codes arrive late",
            "Upgrade to the annual plan",
            "Webhook deliveries are failing",
        )
        statuses = ("Open", "Open", "On Hold", "Closed")
        return {
            "subject": f"{subjects[index % len(subjects)]} (#{index + 1})",
            "description": f"Customer {index + 1} wrote in through the web form.",
            "status": statuses[index % len(statuses)],
            "priority": PRIORITIES[index % len(PRIORITIES)],
            "departmentId": list(DEPARTMENTS)[index % len(DEPARTMENTS)],
            "email": f"customer{index + 1}@example.com",
        }


def _as_time(value: Any) -> str:
    return iso_ms(value) if isinstance(value, datetime) else str(value)


_RANGES = {
    "modifiedTimeRange": "modifiedTime",
    "createdTimeRange": "createdTime",
    "dueDateRange": "dueDate",
}
_EXACT = ("id", "departmentId", "assigneeId", "status", "priority", "email", "contactId")


def search_matches(ticket: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """Whether ``ticket`` passes every filter of a ticket search's ``query``: the time
    ranges (both ends inclusive), the exact fields (comma-separated, any case) and the
    ``customField`` criteria (``*`` wildcards)."""
    for param, field in _RANGES.items():
        if param in query and not _in_range(ticket.get(field), query[param]):
            return False
    for name in _EXACT:
        if name in query:
            wanted = {v.strip().lower() for v in query[name].split(",")}
            if str(ticket.get(name) or "").lower() not in wanted:
                return False
    for name, value in query.items():
        if name.startswith("customField") and not _custom_matches(ticket, value):
            return False
    return True


def _in_range(value: Any, bounds: str) -> bool:
    if not value:
        return False
    low, _, high = bounds.partition(",")
    # Both ends inclusive (INFERENCE: Zoho does not document it; the adapter tolerates either).
    return parse_iso(low) <= parse_iso(str(value)) <= parse_iso(high)


def _custom_matches(ticket: Mapping[str, Any], criterion: str) -> bool:
    api_name, _, wanted = criterion.partition(":")
    actual = (ticket.get("cf") or {}).get(api_name)
    if actual is None:
        return False
    # Zoho's search takes "*" as its only wildcard, and matches without regard to case.
    pattern = ".*".join(re.escape(part) for part in wanted.split("*"))
    return re.fullmatch(pattern, str(actual), re.IGNORECASE) is not None
