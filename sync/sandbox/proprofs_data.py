"""ProProfs Help Desk emulator, its data: the account's tables, the ticket store, rendering.

``ProProfsStore`` holds what a ProProfs Help Desk account knows (inboxes, staff, custom
fields, tickets with their messages) and renders tickets as the list answers them;
``sync.sandbox.proprofs`` adds the create, update and list routes on top of it.

Messages (docs/vendor-apis.md §2.4, §6.4): a ticket's ``messages[]`` in list items, each with
``created`` (account time zone, DOC); the other message fields are UNCONFIRMED, so the
emulator's are a guess: ``id`` (none: ProProfs documents no message id), ``from`` (the
sender's e-mail), ``message`` (the text, HTML when an agent formatted it). The first message
is the ticket's own (its description). ``add_comment`` appends one; whether that moves
``modified_date_time`` is UNCONFIRMED: it does by default, the ``message_moves_modified``
setting turns that off. There is no write route for messages (none is documented).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync.sandbox.base import Emulator

INBOXES = {"IB238-436": "Support", "IB238-437": "Billing"}
STAFF = {"ST007-007": "John Smith", "ST007-009": "Asha Rao"}
CUSTOM_FIELDS = {"CF007-07": "Model", "CF007-08": "Range", "CF007-09": "ticketsync marker"}
PRIORITIES = ("high", "normal", "low")
#: Status values are UNCONFIRMED (docs/vendor-apis.md §2.7); these are the Help Desk UI's
# (INFERENCE).
STATUSES = ("Open", "Pending", "On Hold", "Resolved", "Closed")


class Refusal(ValueError):
    """A request ProProfs refuses: its ``description``."""


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` shifted by calendar months, the day clipped to the target month's length."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    following = datetime(year + month // 12, month % 12 + 1, 1)
    last_day = (following - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def id_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class ProProfsStore(Emulator):
    """A ProProfs Help Desk account's tables and tickets.

    Abstract: ``ProProfsEmulator`` (``sync.sandbox.proprofs``) adds the routes and the fault
    replies.
    """

    secret_fields = frozenset({"token", "account_email"})

    def __init__(
        self,
        *,
        account_email: str = "agent@example.com",
        token: str = "sandbox0proprofs0token0123456789",
        time_zone: str = "America/Chicago",
    ) -> None:
        super().__init__()
        self.account_email = account_email
        self.token = token
        self.time_zone = ZoneInfo(time_zone)
        self.reset_state()

    def reset_state(self) -> None:
        super().reset_state()
        self.revoked = False
        self.error_status = 200
        self.message_moves_modified = True
        self._ids = itertools.count(701)

    # -- settings and test helpers ---------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        own = {"time_zone", "error_status", "token", "message_moves_modified"}
        super().configure(**{k: v for k, v in settings.items() if k not in own})
        if "time_zone" in settings:
            self.time_zone = ZoneInfo(str(settings["time_zone"]))
        if "error_status" in settings:
            self.error_status = int(settings["error_status"])
        if "token" in settings:
            self.token = str(settings["token"])
        if "message_moves_modified" in settings:
            self.message_moves_modified = bool(settings["message_moves_modified"])

    def revoke(self) -> None:
        """The account owner regenerated the API key: the old token stops working."""
        self.revoked = True

    def local(self, moment: datetime) -> str:
        """A time as ProProfs answers it: ``YYYY-MM-DD HH:MM:SS`` in the account's zone."""
        return moment.astimezone(self.time_zone).strftime("%Y-%m-%d %H:%M:%S")

    def find(self, external_id: Any) -> dict[str, Any] | None:
        """The ticket with this id, however its zeros are spelled."""
        number = id_number(external_id)
        for ticket in self.tickets.values():
            if id_number(ticket["ticket_id"]) == number:
                return ticket
        return None

    # -- tickets ---------------------------------------------------------------------------

    def seed(self, **fields: Any) -> dict[str, Any]:
        """A ticket created at the vendor (ProProfs keys; ``modified_at``/``created_at`` UTC)."""
        existing = self.find(fields["ticket_id"]) if "ticket_id" in fields else None
        if existing is not None:
            fields.pop("ticket_id")
            return self.edit(existing["ticket_id"], **fields)
        now = iso_utc(self.clock())
        ticket_id = str(fields.pop("ticket_id", None) or f"{next(self._ids):05d}")
        ticket: dict[str, Any] = {
            "ticket_id": ticket_id,
            "subject": "Sandbox ticket",
            "description": None,
            "status": "Open",
            "priority": "normal",
            "inbox": next(iter(INBOXES)),
            "staff": None,
            "email": "customer@example.com",
            "name": None,
            "phone": None,
            "custom_fields": dict.fromkeys(CUSTOM_FIELDS),
            "created_at": now,
            "modified_at": now,
        }
        self._apply(ticket, fields)
        ticket["created_at"] = iso_utc(as_utc(fields.get("created_at", ticket["created_at"])))
        ticket["modified_at"] = iso_utc(as_utc(fields.get("modified_at", ticket["modified_at"])))
        self.tickets[ticket_id] = ticket
        return ticket

    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """An agent's edit in the Help Desk: fields change and the modification time moves."""
        ticket = self.find(external_id)
        if ticket is None:
            raise KeyError(external_id)
        self._apply(ticket, fields)
        ticket["modified_at"] = iso_utc(as_utc(fields.get("modified_at", self.clock())))
        return ticket

    @staticmethod
    def _apply(ticket: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            if name == "custom_fields":
                items = value.items() if isinstance(value, Mapping) else custom_pairs(value)
                ticket["custom_fields"].update(items)
            elif name not in ("modified_at", "created_at"):
                ticket[name] = value

    def render(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """A ticket as the list answers it."""
        created = self.local(as_utc(ticket["created_at"]))
        return {
            "ticket_id": ticket["ticket_id"],
            "subject": ticket["subject"],
            "description": ticket["description"],
            "status": ticket["status"],
            "priority": ticket["priority"],
            "inbox": ticket["inbox"],
            "staff": ticket["staff"],
            "email": ticket["email"],
            "name": ticket["name"],
            "phone": ticket["phone"],
            "custom_fields": [
                {"id": key, "value": value} for key, value in ticket["custom_fields"].items()
            ],
            "created_date_time": created,
            "modified_date_time": self.local(as_utc(ticket["modified_at"])),
            "messages": [
                {"created": created, "from": ticket["email"], "message": ticket["description"]},
                *(
                    {**m, "created": self.local(as_utc(m["created"]))}
                    for m in self.comments.get(ticket["ticket_id"], [])
                ),
            ],
        }

    def add_comment(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """A message on the ticket (an agent's reply or note, or the customer's answer):
        ``message``, ``from`` (default the first staff member's address), ``created``
        (datetime or ISO UTC; default now). See the module docstring for what is a guess."""
        ticket = self.find(external_id)
        if ticket is None:
            raise KeyError(external_id)
        message = {
            "created": iso_utc(as_utc(fields.get("created") or self.clock())),
            "from": str(fields.get("from") or "john.smith@helpdesk.example.com"),
            "message": str(fields.get("message", "")),
        }
        self.comments.setdefault(ticket["ticket_id"], []).append(message)
        if self.message_moves_modified:
            ticket["modified_at"] = iso_utc(self.clock())
        return message

    demo_field_names = {"title": "subject", "status": "status", "priority": "priority"}

    def demo_comment(self, body: str) -> dict[str, Any]:
        return {"message": body}

    def demo_connection(self) -> dict[str, Any]:
        assert self.base_url is not None
        return {
            "vendor": "proprofs",
            "base_url": self.base_url,
            "credentials": {"account_email": self.account_email, "token": self.token},
            "fields": {
                "title": None,
                "status": {
                    "open": "Open",
                    "pending": "Pending",
                    "on_hold": "On Hold",
                    "resolved": "Resolved",
                    "closed": "Closed",
                },
                "priority": {"low": "low", "normal": "normal", "high": "high"},
                "queue": {name.lower(): inbox for inbox, name in INBOXES.items()},
            },
            "options": {"time_zone": str(self.time_zone)},
        }

    def seed_demo(self, count: int) -> None:
        """The demo tickets; every third one carries an agent's HTML reply and the
        customer's answer in the same second."""
        super().seed_demo(count)
        now = self.clock()
        for index, ticket in enumerate(list(self.tickets.values())):
            if index % 3 == 0:
                html = "<p>Please try <b>Settings &gt; Reset</b>.</p>"
                self.add_comment(ticket["ticket_id"], message=html, created=now)
                self.add_comment(ticket["ticket_id"], message="Done, it works.",
                                 created=now, **{"from": ticket["email"]})  # fmt: skip

    def demo_fields(self, index: int) -> dict[str, Any]:
        subjects = (
            "Query about the GPS tracking device",
            "Invoice shows the wrong address",
            "Cannot log in to the portal",
            "Refund for a duplicate order",
        )
        return {
            "subject": f"{subjects[index % len(subjects)]} (#{index + 1})",
            "description": f"Customer {index + 1} wrote in by e-mail.",
            "priority": PRIORITIES[index % len(PRIORITIES)],
            "inbox": list(INBOXES)[index % len(INBOXES)],
            "email": f"customer{index + 1}@example.com",
        }


def custom_pairs(value: Any) -> list[tuple[str, Any]]:
    """``custom_fields`` as sent on create/update: ``[{"id": ..., "value": ...}]`` (DOC)."""
    if not isinstance(value, list) or not all(isinstance(i, dict) and "id" in i for i in value):
        raise Refusal("Invalid custom_fields: expected an array of {id, value}")
    return [(str(i["id"]), i.get("value")) for i in value]
