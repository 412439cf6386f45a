"""ProProfs Help Desk emulator: create, update and the ticket list, as ProProfs documents them.

Serves (docs/vendor-apis.md §2, and the vendor's "Update a Ticket" page):

- ``POST /app/api/v1/create/ticket/`` (``email`` and ``subject`` required) ->
  ``{"status": "success", "ticket_id": "00700"}``: ids are strings with leading zeros;
- ``POST /app/api/v1/update/ticket/`` (``ticket_id``, a Number) -> the same shape; there is
  no ``status`` parameter (a ``status`` key is recorded as a deviation and ignored);
- ``POST <list_path>`` (default ``/app/api/v1/list/ticket/``: the real path is UNCONFIRMED,
  this is the adapter's default): creation-date, modification-date and ticket-id range
  filters under the adapter's default keys (their real names are UNCONFIRMED), the 3-month
  rule with its start-only / end-only / no-filter defaults, 25 tickets per page, newest
  modification first (the real order is UNCONFIRMED), ``first_page_link``,
  ``previous_page_link``, ``next_page_link`` (absent on the last page), ``last_page_link``,
  ``total_tickets``, ``page``; times in the account's time zone (``time_zone`` setting,
  America/Chicago by default, as ProProfs does for accounts without one).

Every call is a ``POST`` of JSON with ``account_email`` and ``token`` in the body; paths are
case-sensitive and end with ``/`` (an unknown path gets an HTML 404 page, as a web server
would). Failures use the documented envelope ``{"status": "error", "description": ...}``;
the authentication text is the vendor page's, the other texts are INFERENCE, and the HTTP
status of an error is UNCONFIRMED: 200 by default, ``error_status`` changes it. Deviations
recorded (and served): a ``Content-Type`` or ``Accept`` other than JSON, unknown body keys,
``ticket_id`` not a Number, credentials outside the body (then rejected: ProProfs reads the
body).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sync.sandbox.base import DEVIATIONS, Fault, register_emulator
from sync.sandbox.proprofs_data import (
    CUSTOM_FIELDS,
    INBOXES,
    PRIORITIES,
    STAFF,
    ProProfsStore,
    Refusal,
    add_months,
    as_utc,
    custom_pairs,
    id_number,
)

CREATE_PATH = "/app/api/v1/create/ticket/"
UPDATE_PATH = "/app/api/v1/update/ticket/"
# UNCONFIRMED (docs/vendor-apis.md §2.4): the adapter's default
LIST_PATH = "/app/api/v1/list/ticket/"
PAGE_SIZE = 25

AUTH_ERROR = "Unable to authenticate request using account email and token"  # vendor page
_COMMON = {"account_email", "token"}
_WRITE_KEYS = {"email", "name", "phone", "subject", "description", "staff", "priority", "inbox"}
CREATE_KEYS = _COMMON | _WRITE_KEYS | {"custom_fields"}
UPDATE_KEYS = CREATE_KEYS | {"ticket_id"}
FILTER_KEYS = {
    "modified": ("start_modified_date", "end_modified_date"),
    "created": ("start_created_date", "end_created_date"),
}
ID_KEYS = ("start_ticket_id", "end_ticket_id")
LIST_KEYS = _COMMON | {k for pair in FILTER_KEYS.values() for k in pair} | set(ID_KEYS)

Bounds = tuple[datetime, datetime]
IdRange = tuple[int, int] | None

_NOT_FOUND_PAGE = (
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head>"
    "<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>"
)


@register_emulator("proprofs")
class ProProfsEmulator(ProProfsStore):
    """ProProfs Help Desk's ticket API, with the shared control API and faults."""

    def fault_response(self, fault: Fault) -> web.Response:
        if fault.body is not None and not isinstance(fault.body, dict | list):
            return web.Response(status=fault.status, text=str(fault.body), headers=fault.headers)
        body = fault.body or {"status": "error", "description": "Service temporarily unavailable"}
        return web.json_response(body, status=fault.status, headers=dict(fault.headers))

    # -- routes ----------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(CREATE_PATH, self._create)
        router.add_post(UPDATE_PATH, self._update)
        router.add_post(LIST_PATH, self._list)
        router.add_route("*", "/{tail:.*}", self._unrouted)

    async def _unrouted(self, request: web.Request) -> web.Response:
        if request.path in (CREATE_PATH, UPDATE_PATH, LIST_PATH):
            return self._error("Invalid request method. Use POST.")
        return web.Response(status=404, text=_NOT_FOUND_PAGE, content_type="text/html")

    def _error(self, description: str) -> web.Response:
        return web.json_response(
            {"status": "error", "description": description}, status=self.error_status
        )

    async def _guard(self, request: web.Request, known: set[str]) -> dict[str, Any]:
        """The JSON body, checked for shape and credentials; ``Refusal`` if ProProfs refuses."""
        deviations: list[str] = request[DEVIATIONS]
        if request.content_type != "application/json":
            deviations.append(
                f"Content-Type is {request.content_type!r}; the page sends application/json"
            )
        if "application/json" not in request.headers.get("Accept", ""):
            deviations.append("Accept is not application/json, as the page sends it")
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            raise Refusal("Invalid JSON request") from None
        if not isinstance(body, dict):
            raise Refusal("Invalid JSON request")
        elsewhere = [k for k in ("account_email", "token") if k in request.query]
        elsewhere += [k for k in ("account_email", "token") if k in request.headers]
        if elsewhere:
            deviations.append(f"{', '.join(elsewhere)} sent outside the JSON body")
        unknown = sorted(set(body) - known)
        if unknown:
            deviations.append(f"unknown body keys {unknown} (served, ignored)")
        if self.revoked or (body.get("account_email"), body.get("token")) != (
            self.account_email,
            self.token,
        ):
            raise Refusal(AUTH_ERROR)
        return {k: v for k, v in body.items() if k in known}

    # -- handlers --------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await self._guard(request, CREATE_KEYS)
            for required in ("email", "subject"):
                if not body.get(required):
                    raise Refusal(f"The {required} field is required")
            values = self._writable(body)
        except Refusal as refusal:
            return self._error(str(refusal))
        ticket = self.seed(**values)
        return web.json_response({"status": "success", "ticket_id": ticket["ticket_id"]})

    async def _update(self, request: web.Request) -> web.Response:
        try:
            body = await self._guard(request, UPDATE_KEYS)
            if "ticket_id" not in body:
                raise Refusal("The ticket_id field is required")
            if isinstance(body["ticket_id"], bool) or not isinstance(body["ticket_id"], int):
                request[DEVIATIONS].append("ticket_id is not a Number, as the page documents")
            ticket = self.find(body.pop("ticket_id"))
            if ticket is None:
                raise Refusal("Ticket not found")
            values = self._writable(body)
        except Refusal as refusal:
            return self._error(str(refusal))
        if values:
            self.edit(ticket["ticket_id"], **values)
        return web.json_response({"status": "success", "ticket_id": ticket["ticket_id"]})

    def _writable(self, body: Mapping[str, Any]) -> dict[str, Any]:
        values = {k: v for k, v in body.items() if k not in _COMMON}
        checks = (("priority", PRIORITIES), ("inbox", INBOXES), ("staff", STAFF))
        for key, known in checks:
            if key in values and values[key] not in known:
                raise Refusal(f"Invalid {key}: {values[key]}")
        if "custom_fields" in values:
            pairs = custom_pairs(values["custom_fields"])
            for field_id, _ in pairs:
                if field_id not in CUSTOM_FIELDS:
                    raise Refusal(f"Invalid custom field ID: {field_id}")
            values["custom_fields"] = dict(pairs)
        return values

    async def _list(self, request: web.Request) -> web.Response:
        try:
            body = await self._guard(request, LIST_KEYS)
            ranges, ids = self._criteria(body)
        except Refusal as refusal:
            return self._error(str(refusal))
        found = [t for t in self.tickets.values() if _within(t, ranges, ids)]
        found.sort(key=lambda t: (t["modified_at"], int(t["ticket_id"])), reverse=True)
        page = max(1, id_number(request.query.get("page", "1")) or 1)
        last = max(1, -(-len(found) // PAGE_SIZE))
        link = f"{request.scheme}://{request.host}{request.path}?page="
        reply: dict[str, Any] = {
            "status": "success",
            "tickets": [self.render(t) for t in found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]],
            "total_tickets": len(found),
            "page": page,
            "first_page_link": f"{link}1",
            "last_page_link": f"{link}{last}",
        }
        if page > 1:
            reply["previous_page_link"] = f"{link}{page - 1}"
        if page < last:
            reply["next_page_link"] = f"{link}{page + 1}"
        return web.json_response(reply)

    def _criteria(self, body: Mapping[str, Any]) -> tuple[dict[str, Bounds | None], IdRange]:
        """The list's filters, validated the way ProProfs validates them."""
        ranges = {kind: self._dates(body, keys) for kind, keys in FILTER_KEYS.items()}
        ids = self._ids_range(body)
        if ranges == {"modified": None, "created": None} and ids is None:
            now = self.clock()  # no filters: the past three months (DOC)
            ranges["modified"] = (add_months(now, -3), now)
        return ranges, ids

    def _dates(self, body: Mapping[str, Any], keys: tuple[str, str]) -> Bounds | None:
        start, end = (self._date(body.get(k)) for k in keys)
        if start is None and end is None:
            return None
        if start is None:
            assert end is not None
            return add_months(end, -3), end
        if end is None:
            return start, min(add_months(start, 3), self.clock())
        if start >= end:
            raise Refusal("The start date must always be earlier than the end date.")
        if end > add_months(start, 3):
            raise Refusal(
                "The start and end dates for creation and last modification should fall "
                "within a 3-month range."
            )
        return start, end

    def _date(self, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        text = str(value).strip()
        for spelling in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                parsed = datetime.strptime(text, spelling)
            except ValueError:
                continue
            return parsed.replace(tzinfo=self.time_zone).astimezone(UTC)
        raise Refusal(f"Invalid date format: {text}. Use YYYY-MM-DD HH:MM:SS")

    @staticmethod
    def _ids_range(body: Mapping[str, Any]) -> tuple[int, int] | None:
        start, end = (body.get(k) for k in ID_KEYS)
        if start is None and end is None:
            return None
        low, high = id_number(start), id_number(end)
        if (start is not None and low is None) or (end is not None and high is None):
            raise Refusal("Invalid ticket ID")
        if low is not None and high is not None and low >= high:
            raise Refusal(
                "The ticket ID of the starting record must be smaller than the ticket ID "
                "of the ending record."
            )
        return (low or 0, high if high is not None else 10**12)


def _within(ticket: Mapping[str, Any], ranges: Mapping[str, Bounds | None], ids: IdRange) -> bool:
    for kind, bounds in ranges.items():
        at = as_utc(ticket[f"{kind}_at"])
        if bounds is not None and not bounds[0] <= at <= bounds[1]:
            return False
    number = int(ticket["ticket_id"])
    return ids is None or ids[0] <= number <= ids[1]
