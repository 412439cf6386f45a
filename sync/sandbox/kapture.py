"""Kapture CRM emulator: the four ticket endpoints as Kapture documents them.

Routes (all ``POST``, JSON, ``Authorization: Basic <auth key>``; docs/vendor-apis.md §1):

- ``/add-ticket-from-other-source.html/v.2.0``: ``[{title, ticket_details, due_date,
  email_id, ...extra}]`` -> ``{"ticket": {...}, "ticket_id", ..., "status": "success"}``;
- ``/update-ticket-from-other-source.html/v.2.0``: ``[{ticket_id, sub_status, queue,
  comment}]`` -> ``{"status": "success", "message", "ticket": {...}}``; a ``comment`` is
  filed as a conversation note by the API user (INFERENCE: its visibility is UNCONFIRMED);
- ``/search-ticket-by-ticket-id.html/v.2.0``: ``{"ticket_ids": "1,2"}`` -> ``[{"task_details":
  {...}, "additional_info": {...}, "history": {...}}, ...]``; with ``conversation_type:
  "notes"`` each element also holds ``"conversation_type": {"notes": [...]}`` (3P);
- ``/select-ticket-between-start-and-end-dates.html/v.2.0``: ``[{start_date, end_date, limit,
  offset}]`` -> ``{"totalCount", "message": [summaries], "status": "success"}``, by
  *creation* day in the tenant's zone, at most 24 hours per call.

Failures are Kapture's body-level ``{"message": ..., "status": "failed"}`` under HTTP 200
(``failure_status`` changes that, to test adapters against 4xx too). Messages are the
documented ones where there is one ("Invalid Auth Key", "title is missing", "No Data
found/ticket_id is missing", "ticket_ids are missing.", "Invalid Json.", "Invalid Format.
callback_date should be yyyy-MM-dd hh:mm:ss."); the others are this emulator's wording, in
the same style (marked "invented" below). The tenant tables, the ticket store, the time
formats and the seed fields are ``sync.sandbox.kapture_data``'s.

Lenient to serve, strict to judge: served but recorded as deviations are a bare object body
where an array of one is documented (add, update, pull: public clients send objects,
docs/vendor-apis.md §1.1) or an array where an object is (get), ``ticket_id`` instead of
``ticket_ids``, a window
of more than one day (served as its first day only: "at most 24 hours of data"), the 3P pull
variant's ``customer_code``/``status``, non-string values and placeholder empty strings
(docs/vendor-apis.md §5.9). ``offset`` is accepted without a deviation: the documented ``limit``
cannot page without it, and a public client sends it (3P, UNCONFIRMED).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from sync.sandbox.base import DEVIATIONS, Fault, register_emulator
from sync.sandbox.kapture_data import KaptureStore

PATHS = {
    "create": "/add-ticket-from-other-source.html/v.2.0",
    "update": "/update-ticket-from-other-source.html/v.2.0",
    "get": "/search-ticket-by-ticket-id.html/v.2.0",
    "pull": "/select-ticket-between-start-and-end-dates.html/v.2.0",
}
_TOKEN_OF = {"create": "create", "update": "update", "get": "read", "pull": "read"}
_GET_FLAGS = frozenset(
    {
        "ticket_ids",
        "conversation_type",
        "history_type",
        "assigned",
        "disposed",
        "response",
        "landing_queue",
        "create",
        "resolved",
        "include_emailbody",
        "read_ticket_history_details",
    }
)
#: Documented fields, whose values Kapture's pages show as strings.
_TEXT_FIELDS = frozenset(
    {"title", "ticket_details", "due_date", "email_id", "queue", "ticket_id", "sub_status"}
    | {"ticket_ids", "start_date", "end_date", "comment", "callback_time", "disposition"}
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: The sender of notes filed through the update API (the API definition's user; invented).
API_USER = "API Integration"


class _Failed(Exception):
    """A request Kapture answers with ``{"message": ..., "status": "failed"}``."""


@register_emulator("kapture")
class KaptureEmulator(KaptureStore):
    """Kapture's ticket API, with the shared control API and faults."""

    secret_headers = frozenset({"authorization", "cookie", "x-api-key"})

    def fault_response(self, fault: Fault) -> web.Response:
        headers = dict(fault.headers)
        if fault.body is not None and not isinstance(fault.body, dict | list):
            return web.Response(status=fault.status, text=str(fault.body), headers=headers)
        body = fault.body
        if body is None:
            # The older page's error name (docs/vendor-apis.md §1.8); 429 wording invented.
            message = "Too Many Requests" if fault.status == 429 else "ServerFailure"
            body = {"message": message, "status": "failed"}
        return web.json_response(body, status=fault.status, headers=headers)

    # -- routes ----------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(PATHS["create"], self._route(self._add, array=True))
        router.add_post(PATHS["update"], self._route(self._update, array=True))
        router.add_post(PATHS["get"], self._route(self._get, array=False))
        router.add_post(PATHS["pull"], self._route(self._pull, array=True))

    def _route(self, action: Any, *, array: bool) -> Any:
        async def handle(request: web.Request) -> web.Response:
            deviations = request[DEVIATIONS]
            endpoint = next(k for k, v in PATHS.items() if v == request.path)
            try:
                self._authenticate(request, endpoint)
                item = await self._body(request, array, deviations)
                _check_values(item, deviations)
                return web.json_response(action(item, deviations))
            except _Failed as exc:
                body = {"message": str(exc), "status": "failed"}
                return web.json_response(body, status=self.failure_status)

        return handle

    def _authenticate(self, request: web.Request, endpoint: str) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if self.revoked or scheme != "Basic" or token != self.tokens[_TOKEN_OF[endpoint]]:
            raise _Failed("Invalid Auth Key")

    async def _body(self, request: web.Request, array: bool, deviations: list[str]) -> Any:
        if request.content_type != "application/json":
            deviations.append(f"Content-Type {request.content_type!r} (expected JSON)")
        try:
            payload = json.loads(await request.text())
        except ValueError:
            raise _Failed("Invalid Json.") from None
        if isinstance(payload, list):
            if not array:
                deviations.append("array body (documented: a JSON object)")
            if len(payload) != 1 or not isinstance(payload[0], dict):
                if not payload or not isinstance(payload[0], dict):
                    raise _Failed("Invalid Json.")
                deviations.append(f"array of {len(payload)} objects (documented: one)")
            return payload[0]
        if not isinstance(payload, dict):
            raise _Failed("Invalid Json.")
        if array:
            deviations.append("bare object body (documented: an array of one object)")
        return payload

    # -- endpoints -------------------------------------------------------------------------

    def _add(self, item: dict[str, Any], deviations: list[str]) -> Any:
        title = item.get("title")
        if not title:
            raise _Failed("title is missing")
        due = None
        if item.get("due_date"):
            due = self._parse_local(
                item["due_date"], "Invalid Format.due_date should be yyyy-MM-dd hh:mm:ss."
            )
        queue = item.get("queue") or ""
        if queue and queue not in self.queues:
            raise _Failed("Invalid queue key.")  # invented wording
        known = {"title", "ticket_details", "due_date", "email_id", "queue"}
        # "map any extra associate body according to your use case" (DOC): kept as is.
        additional = {k: v for k, v in item.items() if k not in known}
        ticket = self.seed(
            title=str(title),
            detail=str(item.get("ticket_details") or ""),
            email=str(item.get("email_id") or ""),
            queueKey=queue,
            due=due,
            additional=additional,
        )
        local_due = self._local(ticket["due"] or ticket["created"], "%Y-%m-%d %H:%M:%S")
        return {
            "ticket": self.ticket_object(ticket),
            "Additional_details": {},
            "due_date": local_due,
            "title": ticket["title"],
            "customer_id": 0,
            "ticket_id": ticket["ticketId"],
            "Ticket Id": ticket["ticketId"],
            "ticket_url": f"{self.base_url or ''}{self.ticket_object(ticket)['ticketURL']}",
            "status": "success",
        }

    def _update(self, item: dict[str, Any], deviations: list[str]) -> Any:
        ticket_id = str(item.get("ticket_id") or "")
        if ticket_id not in self.tickets:
            raise _Failed("No Data found/ticket_id is missing")
        sub_status = item.get("sub_status")
        if not sub_status:
            deviations.append("sub_status missing (documented as mandatory)")
            raise _Failed("sub_status is missing")  # invented wording
        if sub_status not in self.sub_statuses:
            raise _Failed("Invalid sub_status key.")  # invented wording
        queue = item.get("queue")
        if queue and queue not in self.queues:
            raise _Failed("Invalid queue key.")  # invented wording
        if item.get("callback_time"):
            self._parse_local(
                item["callback_time"],
                "Invalid Format.callback_date should be yyyy-MM-dd hh:mm:ss.",
            )
        changes: dict[str, Any] = {"substatus": sub_status}
        if queue:
            changes["queueKey"] = queue
        ticket = self.edit(ticket_id, **changes)
        if item.get("comment"):  # filed as a note by the API user (INFERENCE, §6.3)
            self.add_comment(ticket_id, detail=str(item["comment"]), sender_name=API_USER)
        return {
            "status": "success",
            "message": "Ticket updated successfully.",
            "ticket": self.ticket_object(ticket),
        }

    def _get(self, item: dict[str, Any], deviations: list[str]) -> Any:
        for key in sorted(set(item) - _GET_FLAGS - {"ticket_id"}):
            deviations.append(f"unknown field {key!r}")
        if "ticket_ids" not in item and "ticket_id" in item:
            deviations.append("ticket_id instead of ticket_ids (the documented example's name)")
        wanted = str(item.get("ticket_ids") or item.get("ticket_id") or "")
        ids = [i.strip() for i in wanted.split(",") if i.strip()]
        if not ids:
            raise _Failed("ticket_ids are missing.")
        found = [self.tickets[i] for i in ids[: self.batch_limit] if i in self.tickets]
        if not found:
            raise _Failed("No Data found")  # UNCONFIRMED: Kapture's answer for unknown ids
        elements = [self.task_details(t) for t in found]
        kind = item.get("conversation_type")
        if kind in ("notes", "chat"):  # 3P: entries under the kind asked for (§5.9)
            for element, ticket in zip(elements, found, strict=True):
                entries = [self.note(n) for n in ticket["notes"]] if kind == "notes" else []
                element["conversation_type"] = {kind: entries}
        return elements

    def _pull(self, item: dict[str, Any], deviations: list[str]) -> Any:
        for key in ("customer_code", "status"):
            if key in item:
                deviations.append(f"{key} (the 3P body variant, not documented)")
        for key in sorted(set(item) - {"start_date", "end_date", "limit", "offset"}):
            if key not in ("customer_code", "status"):
                deviations.append(f"unknown field {key!r}")
        start = self._day(item.get("start_date"), "start_date")
        end = self._day(item.get("end_date"), "end_date")
        if end < start:
            raise _Failed("end_date should not be before start_date.")  # invented wording
        if end > start:
            deviations.append(f"window of {(end - start).days + 1} days (at most 24 hours)")
        begin = datetime.combine(start, time(), self.zone)
        stop = begin + timedelta(days=1)
        rows = sorted(
            (
                t
                for t in self.tickets.values()
                if begin <= datetime.fromisoformat(t["created"]) < stop
            ),
            key=lambda t: (t["created"], t["taskId"]),
        )
        total = len(rows)
        if self.paginate and "limit" in item:
            offset = _count(item.get("offset", 0), "offset")
            rows = rows[offset : offset + _count(item["limit"], "limit")]
        if not rows:
            raise _Failed("No Data found")  # UNCONFIRMED: the empty answer's shape
        return {
            "totalCount": total,
            "message": [self.summary(t) for t in rows],
            "status": "success",
        }

    # -- parsing ---------------------------------------------------------------------------

    def _parse_local(self, value: Any, failure: str) -> str:
        for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                local = datetime.strptime(str(value), pattern)
            except ValueError:
                continue
            return local.replace(tzinfo=self.zone).astimezone(UTC).isoformat()
        raise _Failed(failure)

    @staticmethod
    def _day(value: Any, name: str) -> date:
        if not value:
            raise _Failed(f"{name} is missing.")  # invented wording
        if not isinstance(value, str) or not _DAY.fullmatch(value):
            raise _Failed(f"Invalid Format.{name} should be yyyy-MM-dd.")  # invented wording
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _Failed(f"Invalid Format.{name} should be yyyy-MM-dd.") from None


def _count(value: Any, name: str) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit():
        raise _Failed(f"Invalid Format.{name} should be a number.")  # invented wording
    return int(text)


def _check_values(item: Mapping[str, Any], deviations: list[str]) -> None:
    for key, value in item.items():
        if value == "":
            deviations.append(f"{key}: placeholder empty string (send only what changes)")
        elif key in _TEXT_FIELDS and not isinstance(value, str):
            deviations.append(f"{key}: {type(value).__name__} value (Kapture's are strings)")
