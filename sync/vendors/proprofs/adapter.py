"""The ProProfs Help Desk adapter: pull by modification date, get by id range, update, create.

Wire facts are from ProProfs's create, update and list pages (docs/vendor-apis.md §2, whose DOC
and UNCONFIRMED tags the comments repeat); the emulator in ``sync/sandbox/proprofs.py``
serves the same shapes. Every call is a ``POST`` of JSON to a case-sensitive path ending in
``/``, with ``account_email`` and ``token`` in the body (DOC). Modules: ``proprofs.wire``
(paths, credentials, the error envelope), ``proprofs.mapping`` (records, ids, times,
markers), ``proprofs.pull`` (date windows and page links), ``proprofs.options``.

Capabilities: subject, description, status, priority, inbox (queue), staff (assignee) and
requester e-mail are read; all but status are written. The documented update API has no
status parameter (DOC [P-update]), so status is read-only: the engine never pushes a local
status change, never retries one, and ``status`` / ``check`` list it as not supported by
the connection. Modification times are read (``modified_date_time``); changed-since is the
list's modification-date filter; creates carry the engine's marker; ``find_marker`` scans
recent creations (see below).

Operator notes (for the README)
-------------------------------
- Credentials: ``account_email`` (the e-mail the Help Desk account was registered with) and
  ``token`` (the API key on the Help Desk's "My Account" page). ProProfs answers a wrong
  pair with "Unable to authenticate request using account email and token"; the connection
  then stops with that message and is not retried until the credentials change.
- Field maps: ``fields.queue`` maps to inbox ids (``IB238-436``) and ``fields.assignee`` to
  staff ids (``ST007-007``), the ids ProProfs shows for each inbox and staff member;
  ``fields.priority`` to ``high``, ``normal``, ``low``. Status values are UNCONFIRMED: map
  ``fields.status`` to the spelling the list answers (an unmapped value is reported per
  ticket with the raw value); status is pulled only, a local status edit waits as "not
  supported by this connection".
- ``options.list_path`` (default ``/app/api/v1/list/ticket/``): the ticket-list endpoint is
  UNCONFIRMED. ProProfs's page "How to Retrieve Ticket List via API" documents the call
  (POST, JSON, filters, 25 per page, page links) but the copy we had lacks its path; the
  default follows the pattern of the documented ``/app/api/v1/create/ticket/`` and
  ``/app/api/v1/update/ticket/``. Copy the path from that page into ``list_path`` (it is
  case-sensitive and ends with ``/``); ``ticketsync check`` proves it: a wrong path fails
  with a message naming this option. ``options.list_fields`` renames the filter keys, whose
  spelling is UNCONFIRMED too (defaults: ``start_modified_date``/``end_modified_date``,
  ``start_created_date``/``end_created_date``, ``start_ticket_id``/``end_ticket_id``; dates
  are sent as ``YYYY-MM-DD HH:MM:SS`` in the account's time zone).
- ``options.time_zone`` (default ``America/Chicago``): ProProfs writes times in the account's
  global time zone, or America/Chicago when none is set (DOC). Set it to the zone in the
  Help Desk's settings; a wrong zone shifts every modification time by the difference.
- Create marker: with ``options.marker_field_id`` (a text custom field's id, e.g.
  ``CF007-09``, created in the Help Desk for ticketsync) the marker goes into that custom
  field; without it, into the description as a last line ``[ticketsync:<marker>]`` (visible
  to agents, stripped again when the description is read). Create needs a requester e-mail
  and a subject (DOC): a mirror ticket without ``requester_email`` is created with
  ``options.default_requester_email``, or fails for that ticket.
- Lost create replies: the list cannot filter by marker or text, so ``find_marker`` reads
  the tickets created since the create intent was recorded (a day early, against clock skew
  and a time zone set off by some hours; when the engine gives no time, the last
  ``options.marker_days``, default 7) and compares each one's marker, one call per 25
  tickets created meanwhile. If the list's tickets carry no ``custom_fields`` (or no
  ``description``, without a marker field) ``find_marker`` fails loudly rather than answer
  "not found" and risk a duplicate.
- Comments (docs/vendor-apis.md §6.4): read only, from the list items' ``messages`` (the
  first is the ticket's body); ProProfs documents no way to post one, so none is posted
  (capability ``comments_write`` off). Their fields beyond ``created`` are UNCONFIRMED (see
  ``proprofs.comments``); they are stored as not public. The counter is derived: the number
  of messages and the last one's time.
- Other options: ``import_since`` (default 2005-01-01: the first import reads every ticket
  modified since, in 89-day windows, one call each at least), ``lookback_seconds`` (default
  ``sync.lookback_seconds``).
- Freshness: each run re-reads the tickets modified since ``lookback_seconds`` before the
  previous run's start (and up to a day ahead, against clock skew), 25 per call. A clock
  skew between ProProfs and this host larger than ``lookback_seconds`` could hide an edit.
- UNCONFIRMED and tolerated: the list path and filter keys (options above); whether a
  ticket-id range may be empty (start = end): single tickets are fetched with
  ``start = id - 1``, ``end = id + 1``, which satisfies "start smaller than end" and works for
  inclusive or exclusive bounds, the answer being filtered for the id; whether the list's
  3-month default applies when only an id range is given (if so, a ticket not modified for
  three months reads as missing to a single get: it is then only marked orphaned,
  docs/architecture.md §7.8, and comes back on its next edit); the list reply's key for tickets
  (``tickets`` or
  ``data``), inbox/staff as ids or ``{id: ...}`` objects, ids as strings or numbers, the time
  spelling, how the last page ends (no ``next_page_link``, null, or empty), the sort order
  (a short pass is read again), HTTP statuses of errors (the body's ``status`` decides), and
  the wording of errors other than the authentication one. A list item lacking the key of a
  synced field fails that page, naming the ticket, rather than erase the mirror's value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sync.errors import ConfigError, ItemError, NotFound, ProtocolError, Unreadable
from sync.vendors.base import (
    Adapter,
    AdapterContext,
    Capabilities,
    Cursor,
    MatchKeys,
    Page,
    RemoteComment,
    RemoteTicket,
    read_each,
)
from sync.vendors.comments import parsed
from sync.vendors.cursor import PullClock, rule_for
from sync.vendors.proprofs.comments import messages_of, to_comments
from sync.vendors.proprofs.mapping import (
    READABLE,
    WRITABLE,
    BadRecord,
    carries_marker_field,
    id_key,
    local_text,
    parse_local,
    record_id,
    spelled_id,
    to_body,
    to_remote,
    wire_id,
    with_marker,
)
from sync.vendors.proprofs.options import ProProfsOptions, validate_options
from sync.vendors.proprofs.pull import ListReader, windows
from sync.vendors.proprofs.wire import CREATE_PATH, UPDATE_PATH, ProProfsWire

if TYPE_CHECKING:
    from sync.config import ConnectionConfig

_END_AHEAD = timedelta(days=1)  # windows end a day past now, against clock skew
_MARKER_MARGIN = timedelta(days=1)


class ProProfsAdapter(Adapter):
    """ProProfs Help Desk: reads status, writes the rest of its fields, creates with a marker."""

    vendor = "proprofs"
    capabilities = Capabilities(
        readable=READABLE,
        writable=WRITABLE,
        can_create=True,
        finds_markers=True,
        changed_since=True,
        # Read-only conversation: list items carry messages, no API posts one (§6.4).
        comments_read=True,
    )

    def __init__(self, connection: ConnectionConfig, context: AdapterContext) -> None:
        super().__init__(connection, context)
        problems = validate_options(connection.options)
        if problems:
            raise ConfigError([f"connections.{connection.name}.{p}" for p in problems])
        self.options = ProProfsOptions.from_mapping(connection.options)
        credentials = {
            "account_email": connection.credential("account_email") or "",
            "token": connection.credential("token") or "",
        }
        self._http = self.client()
        self._wire = ProProfsWire(connection.name, self._http, credentials, self.options.list_path)
        # Only the keys of synced fields must be present in list items (see to_remote).
        self._required = frozenset(connection.fields) & READABLE
        self._list = ListReader(connection.name, self.options.list_path, self._list_post)
        #: The running pull's clock: its list calls report their replies' ``Date`` to it.
        self._pull_clock: PullClock | None = None

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Problems with ``connection.options``, each as ``options.KEY: message``."""
        return validate_options(options)

    def id_key(self, external_id: str) -> str:
        return id_key(external_id)

    def match_keys(self, ticket: RemoteTicket) -> MatchKeys:
        """``created_date_time`` in the account's zone as the creation time (docs/vendor-apis.md
        §2.4, §2.9); ProProfs documents no external reference."""
        try:
            created = parse_local(ticket.raw.get("created_date_time"), self.options.time_zone)
        except BadRecord:
            created = None
        return MatchKeys(ticket.fields.get("requester_email"), ticket.fields.get("title"), created)

    # -- the contract ----------------------------------------------------------------------

    async def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        """Windows of modification dates, oldest first; see the module docstring.

        Inside a window the sort order is UNCONFIRMED, so its pages carry the cursor that
        held before the window; only a window read to its end moves the cursor, to its
        newest modification time or its end (whichever is later, never past this pull's
        start), so an interrupted pull re-reads the window instead of skipping part of it.
        """
        started = datetime.now(UTC)
        rule = rule_for(self, "modified_after", _parse_cursor, self.options.lookback_seconds)
        clock = self._pull_clock = rule.pull(cursor)
        after = clock.resumed
        begin = rule.start(cursor) or self.options.import_since
        held = after
        try:
            for low, high in windows(begin, started + _END_AHEAD):
                newest: datetime | None = None
                what = f"tickets modified {low:%Y-%m-%d %H:%M} .. {high:%Y-%m-%d %H:%M} UTC"
                async for items in self._list.scan(self._range("modified", low, high), what):
                    read, failures = await read_each(items, self._read)
                    tickets = [clock.stamp(t) for t in read]
                    for ticket in tickets:
                        if ticket.modified_at and (newest is None or ticket.modified_at > newest):
                            newest = ticket.modified_at
                    yield Page(tickets, _cursor(held), failures)
                held = max(t for t in (held, newest, min(high, started)) if t is not None)
        finally:
            self._pull_clock = None
        complete = clock.complete()
        yield Page([], complete if clock.vendor_now is not None else _cursor(held))

    async def get(self, external_id: str) -> RemoteTicket | None:
        number = wire_id(external_id)
        if number is None:
            return None  # ProProfs ids are numbers: no such ticket can exist
        # "The ticket ID of the starting record must be smaller than the ticket ID of the
        # ending record" (DOC): whether the bounds are inclusive is UNCONFIRMED, so the range
        # reaches one past each side and the answer is filtered.
        keys = self.options.list_fields
        filters = {keys["id_from"]: max(number - 1, 0), keys["id_to"]: number + 1}
        wanted = id_key(external_id)
        async for items in self._list.scan(filters, f"ticket {external_id}"):
            for item in items:
                if isinstance(item, Mapping) and self._item_key(item) == wanted:
                    return self._ticket(item, read=True)
        return None

    async def update(
        self, external_id: str, changes: Mapping[str, str | None]
    ) -> RemoteTicket | None:
        number = wire_id(external_id)
        if number is None:
            raise NotFound(
                f"{self.name}: ticket {external_id!r} is not a ProProfs ticket number",
                connection=self.name,
            )
        body, problems = to_body(changes)
        if problems:
            raise ItemError(
                f"{self.name}: ticket {external_id}: " + "; ".join(problems), connection=self.name
            )
        if not body:
            return None
        # ticket_id is a Number on update (DOC), though create answers "00700".
        await self._wire.call(UPDATE_PATH, {"ticket_id": number, **body}, f"ticket {external_id}")
        return None  # the reply holds only status and ticket_id

    async def create(self, values: Mapping[str, str | None], marker: str) -> RemoteTicket:
        body = self._create_body(values, marker)
        document = await self._wire.call(CREATE_PATH, body, "new ticket")
        try:
            if not isinstance(document, Mapping):
                raise BadRecord("the reply is not an object")
            external_id = spelled_id(document.get("ticket_id"))
        except BadRecord as exc:
            raise ProtocolError(
                f"{self.name}: new ticket: ProProfs's create reply has no usable ticket_id "
                f"({exc}); the marker {marker!r} lets the next run find the ticket",
                connection=self.name,
            ) from None
        # The reply carries only the id: the fields are what we sent, except status, which
        # ProProfs chose and does not say (left out, so the engine does not read it as empty).
        fields = {name: values.get(name) or None for name in READABLE if name != "status"}
        return RemoteTicket(external_id, fields, None, marker, dict(document))

    async def find_marker(self, marker: str, since: datetime | None = None) -> RemoteTicket | None:
        """Scan the tickets created since the intent (a day early) for the marker.

        The list filters by creation date but not by marker or text, so the match is ours.
        """
        now = datetime.now(UTC)
        if since is None:
            begin = now - timedelta(days=self.options.marker_days)
        else:
            # A day early: clock skew, and a time_zone option that is off by some hours.
            begin = (since if since.tzinfo else since.replace(tzinfo=UTC)) - _MARKER_MARGIN
        for low, high in windows(begin, now + _END_AHEAD):
            what = f"create marker {marker!r} among tickets created since {low:%Y-%m-%d}"
            async for items in self._list.scan(self._range("created", low, high), what):
                for item in items:
                    if not carries_marker_field(item, self.options.marker_field_id):
                        raise self._markerless(item, what)
                    ticket = self._ticket(item)
                    if ticket.marker == marker:
                        return ticket
        return None

    async def list_comments(self, external_id: str) -> Sequence[RemoteComment]:
        """The ticket's messages but its first (the body), oldest first, as not public: one
        list call (``get``). ProProfs documents no way to post one: ``comments_write`` is off."""
        ticket = await self.get(external_id)
        if ticket is None:
            raise NotFound(
                f"{self.name}: ticket {external_id}: ProProfs has no such ticket",
                connection=self.name,
            )
        zone = self.options.time_zone
        return parsed(
            self.name,
            external_id,
            "a list of messages",
            lambda: to_comments(messages_of(ticket.raw), zone),
        )

    def look_apart(self) -> timedelta:
        return self.lookback(self.options.lookback_seconds)

    async def check(self) -> None:
        """One list call over the last day: proves the credentials and ``options.list_path``."""
        now = datetime.now(UTC)
        filters = self._range("modified", now - timedelta(days=1), now)
        await self._list.first_page(filters, "check")

    # -- requests --------------------------------------------------------------------------

    def _range(self, kind: str, low: datetime, high: datetime) -> dict[str, str]:
        keys, zone = self.options.list_fields, self.options.time_zone
        return {
            keys[f"{kind}_from"]: local_text(low, zone),
            keys[f"{kind}_to"]: local_text(high, zone),
        }

    async def _list_post(self, path: str, filters: Mapping[str, Any], what: str) -> Any:
        clock = self._pull_clock
        observe = clock.observe if clock is not None else None
        return await self._wire.call(path, filters, what, reads=True, observe=observe)

    # -- records ---------------------------------------------------------------------------

    async def _read(self, item: Any) -> RemoteTicket:
        return self._ticket(item, read=True)

    def _ticket(self, item: Any, *, read: bool = False) -> RemoteTicket:
        """``item`` as a ticket. One that does not parse is ``Unreadable`` (that ticket's
        failure) when read, a ``ProtocolError`` in a write's reply."""
        try:
            return to_remote(
                item,
                self.options.time_zone,
                marker_field_id=self.options.marker_field_id,
                required=self._required,
            )
        except BadRecord as exc:
            message = (
                f"{self.name}: ticket {self._label(item)}: ProProfs's list item is not a usable "
                f"ticket: {exc}"
            )
            if read:
                key = self._item_key(item) if isinstance(item, Mapping) else None
                raise Unreadable(message, connection=self.name, external_id=key, raw=item) from None
            raise ProtocolError(
                message,
                connection=self.name,
            ) from None

    def _item_key(self, item: Mapping[str, Any]) -> str | None:
        try:
            return id_key(record_id(item))
        except BadRecord:
            return None

    def _label(self, item: Any) -> str:
        if isinstance(item, Mapping):
            try:
                return record_id(item)
            except BadRecord:
                return repr(item.get("ticket_id"))[:40]
        return "(unknown)"

    def _markerless(self, item: Any, what: str) -> ProtocolError:
        carrier = "custom_fields" if self.options.marker_field_id else "description"
        return ProtocolError(
            f"{self.name}: {what}: ticket {self._label(item)} in the list has no {carrier!r}, "
            "so ticketsync cannot tell whether a create whose reply was lost reached ProProfs. "
            "Check ProProfs for that ticket before letting ticketsync create it again.",
            connection=self.name,
        )

    def _create_body(self, values: Mapping[str, str | None], marker: str) -> dict[str, Any]:
        present = {k: v for k, v in values.items() if v not in (None, "") and k != "status"}
        body, problems = to_body(present)
        if not body.get("subject"):
            problems.append("title: needed to create (ProProfs requires a subject)")
        if not body.get("email"):
            if self.options.default_requester_email:
                body["email"] = self.options.default_requester_email
            else:
                problems.append(
                    "requester_email: needed to create (or set options.default_requester_email)"
                )
        if self.options.marker_field_id:
            body["custom_fields"] = [{"id": self.options.marker_field_id, "value": marker}]
        else:
            try:
                body["description"] = with_marker(body.get("description"), marker)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ItemError(
                f"{self.name}: cannot create: " + "; ".join(problems), connection=self.name
            )
        return body


def _cursor(moment: datetime | None) -> dict[str, str] | None:
    if moment is None:
        return None
    return {"modified_after": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _parse_cursor(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
