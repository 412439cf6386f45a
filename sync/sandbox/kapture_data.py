"""Kapture CRM emulator, its data: the tenant tables, the ticket store and record rendering.

``KaptureStore`` holds what a Kapture tenant knows; ``sync.sandbox.kapture`` adds the four
ticket endpoints on top of it. Writes take keys, reads return display names, from the tenant
tables (``sub_statuses``, ``statuses``, ``queues``: ``configure`` replaces them). Times are
written in the tenant's zone (``time_zone``, IST by default): ``yyyy-MM-dd HH:mm:ss`` in
add/update replies, ``dd-MM-yyyy HH:mm`` in get/pull, epoch ms in ``lastConversationTime``.

In the control API and ``seed``/``edit``, a ticket's ``id`` is its public ``ticketId``
(string); the internal numeric id is ``taskId``. Seed fields use Kapture's names: ``title``,
``detail``, ``email``, ``substatus`` (key), ``queueKey``, ``priority``, ``assignedToName``,
``due`` and ``created`` (ISO UTC or datetime), ``additional`` (dict).

Conversation notes (docs/vendor-apis.md §6.3): each ticket keeps ``notes``, entries
``{"detail", "sender_name", "sentDate"}`` (the 3P entry fields; ``sentDate`` in the tenant's
zone as ``yyyy-MM-dd HH:mm:ss``, its format UNCONFIRMED), added by ``add_comment`` or by an
update's ``comment``. The add/update ``ticket`` object counts them in
``totalConversationCount`` and dates the last in ``lastConversationTime`` (epoch ms, DOC
fields; that a comment moves them is UNCONFIRMED, assumed here); pull summaries carry
``lastConvesationTime`` (sic). Get-ticket's ``task_details`` documents neither.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sync.sandbox.base import Emulator

#: Status key -> display name, and sub-status key -> (display name, its status key); the
#: add-ticket example shows status P "Pending" with sub-status US "Unattended", the update
#: page sub-statuses P and CL, public clients OP, RS, CO (docs/vendor-apis.md §1.7).
STATUSES = {"P": "Pending", "C": "Complete"}
SUB_STATUSES = {
    "US": ("Unattended", "P"),
    "P": ("Pending", "P"),
    "OP": ("Open", "P"),
    "RS": ("Resolved", "C"),
    "CL": ("Closed", "C"),
}
QUEUES = {"SUPPORT": "Support", "BILLING": "Billing"}
TOKEN = "c2FuZGJveDprYXB0dXJlLWF1dGgta2V5"  # base64 of "sandbox:kapture-auth-key"
_DEMO_TITLES = ("Refund not received", "App crashes on login", "Wrong invoice", "Late delivery")


def _utc(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


class KaptureStore(Emulator):
    """A Kapture tenant's tables and tickets, and their rendering in Kapture's shapes.

    Abstract: ``KaptureEmulator`` (``sync.sandbox.kapture``) adds the routes and the
    fault replies.
    """

    def __init__(self, *, token: str = TOKEN, time_zone: str = "Asia/Kolkata") -> None:
        super().__init__()
        self.default_token = token
        self.default_zone = time_zone
        self.reset_state()

    def reset_state(self) -> None:
        super().reset_state()
        self.tokens = dict.fromkeys(("create", "update", "read"), self.default_token)
        self.revoked = False
        self.zone = ZoneInfo(self.default_zone)
        self.statuses = dict(STATUSES)
        self.sub_statuses = dict(SUB_STATUSES)
        self.queues = dict(QUEUES)
        self.failure_status = 200
        self.batch_limit = 50
        self.paginate = True
        self.new_sub_status = "US"
        self._ids = itertools.count(1)

    def configure(self, **settings: Any) -> None:
        own = {
            "tokens",
            "time_zone",
            "statuses",
            "sub_statuses",
            "queues",
            "failure_status",
            "batch_limit",
            "paginate",
        }
        super().configure(**{k: v for k, v in settings.items() if k not in own})
        if "tokens" in settings:
            self.tokens.update(settings["tokens"])
        if "time_zone" in settings:
            self.zone = ZoneInfo(settings["time_zone"])
        if "statuses" in settings:
            self.statuses = dict(settings["statuses"])
        if "sub_statuses" in settings:
            self.sub_statuses = {k: (v[0], v[1]) for k, v in settings["sub_statuses"].items()}
        if "queues" in settings:
            self.queues = dict(settings["queues"])
        if "failure_status" in settings:
            self.failure_status = int(settings["failure_status"])
        if "batch_limit" in settings:
            self.batch_limit = int(settings["batch_limit"])
        if "paginate" in settings:
            self.paginate = bool(settings["paginate"])

    def revoke(self) -> None:
        """The admin disabled every API definition's auth key."""
        self.revoked = True

    demo_field_names = {"title": "title", "status": "substatus", "priority": "priority"}

    def demo_comment(self, body: str) -> dict[str, Any]:
        return {"detail": body}

    def demo_connection(self) -> dict[str, Any]:
        assert self.base_url is not None
        return {
            "vendor": "kapture",
            "base_url": self.base_url,
            "credentials": {"token": self.default_token},
            "fields": {
                "title": None,
                "status": {"open": "US", "pending": "P", "closed": "CL"},
                "priority": {"normal": "0", "low": "1", "high": "2"},
                "queue": {k.lower(): k for k in self.queues},
            },
            "options": {
                "sub_statuses": {k: v[0] for k, v in self.sub_statuses.items()},
                "time_zone": self.default_zone,
            },
        }

    def seed_demo(self, count: int) -> None:
        """The demo tickets; every third one carries three notes in one second, two of them
        with the same text by different agents."""
        super().seed_demo(count)
        now = self.clock()
        for index, ticket_id in enumerate(list(self.tickets)):
            if index % 3 == 0:
                self.add_comment(
                    ticket_id, detail="Customer called, app version 4.2.", sentDate=now
                )
                self.add_comment(ticket_id, detail="Asked for logs.", sentDate=now)
                self.add_comment(ticket_id, detail="Asked for logs.", sender_name="Arjun Mehta",
                                 sentDate=now)  # fmt: skip

    def demo_fields(self, index: int) -> dict[str, Any]:
        return {
            "title": f"{_DEMO_TITLES[index % len(_DEMO_TITLES)]} #{index + 1}",
            "detail": "Customer wrote in through the app.",
            "email": f"customer{index + 1}@example.com",
            "queueKey": list(self.queues)[index % len(self.queues)],
        }

    # -- tickets ---------------------------------------------------------------------------

    def seed(self, **fields: Any) -> dict[str, Any]:
        n = next(self._ids)
        given = fields.pop("id", None) or fields.pop("ticketId", None)
        ticket_id = str(given or 713516551148 + n)
        now = self.clock().isoformat()
        ticket: dict[str, Any] = {
            "id": ticket_id,  # the control API's handle: the public ticketId
            "taskId": 530348198 + n,
            "ticketId": ticket_id,
            "title": "Sandbox ticket",
            "detail": "",
            "email": "",
            "substatus": self.new_sub_status,
            "queueKey": "",
            "priority": 0,
            "assignedToName": "",
            "due": None,
            "created": now,
            "updated": now,
            "additional": {},
            "notes": [],
        }
        self.tickets[ticket_id] = ticket
        return self.edit(ticket_id, **fields)

    def edit(self, external_id: str, **fields: Any) -> dict[str, Any]:
        ticket = self.tickets[str(external_id)]
        unknown = set(fields) - set(ticket) | {"id", "ticketId", "taskId", "notes"} & set(fields)
        if unknown:
            raise ValueError(f"unknown or fixed Kapture ticket fields: {sorted(unknown)}")
        if "substatus" in fields and fields["substatus"] not in self.sub_statuses:
            raise ValueError(f"unknown sub-status key {fields['substatus']!r}")
        if fields.get("queueKey") and fields["queueKey"] not in self.queues:
            raise ValueError(f"unknown queue key {fields['queueKey']!r}")
        for key in ("due", "created"):
            if key in fields:
                fields[key] = _utc(fields[key])
        ticket.update(fields)
        ticket["updated"] = self.clock().isoformat()
        return ticket

    def add_comment(self, external_id: str, **fields: Any) -> dict[str, Any]:
        """A note on the ticket: ``detail``, ``sender_name`` (default an agent's name),
        ``sentDate`` (datetime or ISO UTC; default now). Returns the note as rendered."""
        ticket = self.tickets[str(external_id)]
        sent = _utc(fields.get("sentDate") or self.clock())
        note = {
            "detail": str(fields.get("detail", "")),
            "sender_name": str(fields.get("sender_name") or "Priya Sharma"),
            "sent": sent,
        }
        ticket["notes"].append(note)
        return self.note(note)

    def stored_comments(self, external_id: str) -> list[dict[str, Any]]:
        """The ticket's notes as get-ticket lists them."""
        ticket = self.tickets.get(str(external_id))
        return [self.note(n) for n in ticket["notes"]] if ticket else []

    def note(self, note: Mapping[str, Any]) -> dict[str, Any]:
        """A note as get-ticket's ``conversation_type: {"notes": [...]}`` lists it (3P)."""
        sent = self._local(note["sent"], "%Y-%m-%d %H:%M:%S")
        return {"detail": note["detail"], "sender_name": note["sender_name"], "sentDate": sent}

    def _conversation(self, ticket: Mapping[str, Any]) -> tuple[int, int]:
        """(totalConversationCount, lastConversationTime in epoch ms: the last note's, else
        the ticket's creation, its first message)."""
        notes = ticket["notes"]
        last = max((n["sent"] for n in notes), default=ticket["created"])
        return len(notes), int(datetime.fromisoformat(last).timestamp() * 1000)

    # -- rendering -------------------------------------------------------------------------

    def _local(self, iso: str | None, pattern: str) -> str:
        if iso is None:
            return ""
        return datetime.fromisoformat(iso).astimezone(self.zone).strftime(pattern)

    def _names(self, ticket: Mapping[str, Any]) -> tuple[str, str, str, str]:
        sub_name, status = self.sub_statuses[ticket["substatus"]]
        return (
            status,
            self.statuses.get(status, status),
            sub_name,
            self.queues.get(ticket["queueKey"], ""),
        )

    def ticket_object(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """The ``ticket`` of an add or update reply, as in the add-ticket example."""
        status, status_name, sub_name, queue_name = self._names(ticket)
        long = "%Y-%m-%d %H:%M:%S"
        created = self._local(ticket["created"], long)
        end = self._local(ticket["due"] or ticket["created"], long)
        count, ms = self._conversation(ticket)
        url = f"/employee/view-task-detail.html?detail=5/{ticket['taskId']}/{ticket['ticketId']}"
        return {
            "id": ticket["taskId"],
            "type": "O",
            "email": ticket["email"],
            "phone": "",
            "status": status,
            "orderId": "",
            "queueKey": ticket["queueKey"],
            "ticketId": ticket["ticketId"],
            "folderId": 0,
            "detail": ticket["detail"],
            "isUnread": True,
            "isOutOfSLA": False,
            "priority": ticket["priority"],
            "creatorId": 0,
            "contactId": 0,
            "substatus": ticket["substatus"],
            "assignedToId": 0,
            "statusName": status_name,
            "lastConversationType": "O",
            "lastConversationTime": ms,
            "date": created,
            "totalConversationCount": count,
            "taskTitle": ticket["title"],
            "typeName": "Mobile App",
            "taskEnddate": end,
            "lastFollowUp": created,
            "nextFollowUp": end,
            "substatusName": sub_name,
            "ticketURL": url,
            "isEscalated": False,
            "folders": ["Inbox"],
            "queueName": queue_name,
            "creatorName": "",
            "assignedToName": ticket["assignedToName"],
            "mergeTicketId": "",
        }

    def task_details(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """A search-ticket-by-ticket-id element: names, ``dd-MM-yyyy HH:mm`` times."""
        _, status_name, sub_name, queue_name = self._names(ticket)
        short = "%d-%m-%Y %H:%M"
        return {
            "additional_info": dict(ticket["additional"]),
            "history": {"created": self._local(ticket["created"], short)},
            "task_details": {
                "ticketId": ticket["ticketId"],
                "taskId": ticket["taskId"],
                "title": ticket["title"],
                "detail": ticket["detail"],
                "status": status_name,
                "substatus": sub_name,
                "queueKey": ticket["queueKey"],
                "queueName": queue_name,
                "priority": ticket["priority"],
                "customerEmail": ticket["email"],
                "date": self._local(ticket["created"], short),
                "taskEnddate": self._local(ticket["due"] or ticket["created"], short),
                "tat": "0 Day 0 Hr 5 Min",
                "sla": "",
                "disposition": "",
                "assignedToName": ticket["assignedToName"],
                "url": f"/employee/view-task-detail.html?detail=5/{ticket['taskId']}",
            },
        }

    def summary(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        """A created-date pull item (fields of the pull example and the older page)."""
        details = self.task_details(ticket)["task_details"]
        _, ms = self._conversation(ticket)
        summary = {
            key: details[key]
            for key in (
                "tat",
                "sla",
                "date",
                "status",
                "substatus",
                "ticketId",
                "taskId",
                "detail",
                "title",
                "queueKey",
                "priority",
                "taskEnddate",
                "disposition",
                "assignedToName",
                "customerEmail",
            )
        }
        summary.update(
            {
                "nextFollowUp": details["taskEnddate"],
                "lastFollowUp": details["date"],
                "lastSource": "API",
                "orderId": "",
                "lastConvesationTime": ms,  # sic, as Kapture spells it
                "folderId": 0,
                "primarySource": "API",
                "mergedTicketId": "",
                "contactId": 0,
                "customerName": "",
                "customerPhone": "",
                "additional_info": dict(ticket["additional"]),
            }
        )
        return summary
