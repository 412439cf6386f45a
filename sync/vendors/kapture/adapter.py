"""The Kapture CRM adapter: created-date pull plus re-poll by id, update, create with a marker.

Wire facts are from Kapture's add-ticket and update-ticket pages and docs/vendor-apis.md §1,
whose DOC / 3P / UNCONFIRMED tags the comments repeat; the emulator in
``sync/sandbox/kapture.py`` serves the same shapes. The modules: ``kapture.wire`` (paths,
auth keys, body-level errors), ``kapture.pull`` (reads and the cursor), ``kapture.mapping``
(records, tables, times, the marker), ``kapture.options``.

Capabilities: every synced field is read; only ``status`` (the sub-status key) and ``queue``
(the queue key) are written, because the update API takes nothing else (``priority``,
``assignee``, ``title``... are not writable: the engine neither pushes nor waits for them).
No modification time (``modified_at`` is None, docs/architecture.md §7.2); no changed-since API, so
the
engine passes the linked ids to re-poll; ``fetch_before_update``: the engine reads a ticket
right before updating it, since every update must carry a sub-status (docs/architecture.md §7.12).

Operator notes (for the README)
-------------------------------
- Credentials: ``token``, the "Auth Key" of an API definition in Kapture's admin (API
  Configuration), sent as ``Authorization: Basic <key>`` exactly as Kapture shows it. Kapture
  issues one key per API definition: ``create_token`` (add-ticket), ``update_token``
  (update-ticket) and ``read_token`` (search-ticket-by-ticket-id and the created-date pull)
  override ``token`` per endpoint. ``ticketsync check`` proves the read key with one
  created-date call; the create and update keys are proven on their first use, and a
  rejected one ("Invalid Auth Key") fails the run naming the credential, without retries.
- ``fields.status`` maps canonical statuses to *sub-status keys* (``P``, ``CL``, or your
  tenant's own, e.g. ``OP``, ``RS``, ``CRS``), which is what updates take; reads return
  display names. So ``options.sub_statuses`` must list the tenant's table, key -> name
  (Settings > Statuses; default ``{US: Unattended, P: Pending, CL: Closed}``); a sub-status
  read that is neither a key nor a name in it fails that page, naming the ticket, until it is
  added. ``options.queues`` (key -> name) is needed only if your tenant answers with queue
  names instead of ``queueKey``; ``options.priorities`` (key -> name) likewise for priority,
  which is read (as Kapture spells it, e.g. ``0``) but never written.
- Options: ``time_zone`` (default ``Asia/Kolkata``; Kapture writes local times without a
  zone, the mirror stores UTC), ``repoll_budget`` (500), ``batch_size`` (50 ids per
  search-ticket-by-ticket-id call), ``page_size`` (100 tickets per created-date call),
  ``initial_days`` (30: how far back the first import reads), ``marker_days`` (7),
  ``api_key_headers`` (false: true also sends ``x-api-key``/``x-api-type: TICKET``, as one
  public client does; whether some tenants need them is UNCONFIRMED), ``read_notes``
  (false: true reads the tickets' conversation notes into the mirror), ``comment_visibility``
  (``public``: see Comments).
- Comments (docs/vendor-apis.md §6.3). Posted through the update's ``comment`` field with
  the ticket's current sub-status (mandatory), as plain text with the marker line; Kapture's
  reply names no comment. Who sees such a note (the customer or agents only) is
  UNCONFIRMED, so by default only public comments are posted (``comment_visibility:
  public``); set ``comment_visibility: private`` when your tenant keeps them internal, and
  private notes are posted too. With ``read_notes: true`` get-ticket is asked for the
  ``notes`` conversation (3P), whose entries become comments (stored as not public, since
  Kapture states no visibility; the id is a hash of sentDate, sender and text), and every
  re-poll carries them, which also gives the counter. Without it nothing is read back, and a
  post whose reply was lost is confirmed by ``totalConversationCount`` alone.
- Freshness. New tickets appear on the run after their creation (today's created-date pull
  is repeated every run, so its cost follows the tickets created today). Changes to linked
  tickets are seen only by re-polling: a run re-reads B = ``repoll_budget`` links, 80% of
  B cycling through the tickets not resolved or closed and 20% through the others (a side
  that needs less leaves the rest to the other; ``kapture.pull.CLOSED_SHARE``). An open
  ticket is re-read at least once every ceil(open / 0.8 B) runs, a closed one every
  ceil(closed / 0.2 B) runs, i.e. within that many ``interval`` plus one run. Kapture has
  no modified time: an edit is known only to lie between two polls, so a local edit of the
  same field in that interval is settled by ``sync.tie_break`` (docs/architecture.md §7.2).
- Create marker: the engine's marker goes into ``ticket_details`` as a last line
  ``[ticketsync:<marker>]`` (stripped again when the description is read) and into an extra
  body field ``ticketsync_marker`` (the add-ticket page invites extra fields). Kapture has
  no documented search by field, so ``find_marker`` scans the created-date pull of today and
  the ``marker_days - 1`` days before (tenant time), where the ticket's ``detail`` carries
  the line. A create whose reply was lost is therefore found again only if ticketsync runs
  again within ``marker_days``; the first run after an outage does this before anything else.
- Creating: add-ticket takes ``title`` (required), ``ticket_details``, ``due_date``,
  ``email_id`` and ``queue``, not a status; when the mirror ticket's status maps to another
  sub-status than the new ticket got, one update-ticket call follows to set it. Priority and
  assignee cannot be sent: a created ticket has Kapture's defaults (priority ``0``), so map
  ``fields.priority`` so that your mirror's default priority maps to ``0``.
- UNCONFIRMED and tolerated: bodies are sent as an array of one object (add, update, pull)
  and an object (get), as documented, and both shapes are read back; the batch get answer
  may be short (missing ids are re-asked one by one); offset paging of the created-date
  pull (a page repeating earlier tickets is an error, never a silent gap); the reply field
  names beyond the documented examples (``kapture.mapping.FIELD_KEYS``); HTTP status of
  failures (the body decides); ``dd-MM-yyyy HH:mm`` times carry minutes only, so a due date
  with seconds reads back rounded down once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sync.errors import ConfigError, ItemError, NotFound, ProtocolError, VendorError
from sync.vendors.base import (
    Adapter,
    AdapterContext,
    Capabilities,
    Cursor,
    MatchKeys,
    OutgoingComment,
    Page,
    RemoteComment,
    RemoteTicket,
    Watch,
)
from sync.vendors.comments import parsed
from sync.vendors.comments import with_marker as with_comment_marker
from sync.vendors.kapture.comments import conversation_count, to_comments
from sync.vendors.kapture.mapping import (
    MARKER_KEY,
    READABLE,
    BadRecord,
    Reader,
    Table,
    local_text,
    note_entries,
    parse_iso,
    parse_time,
    with_marker,
)
from sync.vendors.kapture.options import KaptureOptions, validate_options
from sync.vendors.kapture.pull import KaptureReads, PullSettings
from sync.vendors.kapture.wire import ENDPOINTS, KaptureWire

if TYPE_CHECKING:
    from sync.config import ConnectionConfig

log = logging.getLogger(__name__)

WRITABLE = frozenset({"status", "queue"})
#: How long a read stands in for the one an update needs for its sub-status (seconds).
FRESH_READ_S = 5.0
_JUST_READ_MAX = 1000


class KaptureAdapter(Adapter):
    """Kapture CRM: reads every field, writes sub-status and queue, creates with a marker."""

    vendor = "kapture"
    capabilities = Capabilities(
        readable=READABLE,
        writable=WRITABLE,
        can_create=True,
        finds_markers=True,
        changed_since=False,
        fetch_before_update=True,
        create_followups=frozenset({"status"}),  # add-ticket cannot set the sub-status
        comments_write=True,  # reads and private posts: per connection (options), see __init__
    )

    def __init__(self, connection: ConnectionConfig, context: AdapterContext) -> None:
        super().__init__(connection, context)
        problems = validate_options(connection.options)
        problems += _token_problems(connection)
        if problems:
            raise ConfigError([f"connections.{connection.name}.{p}" for p in problems])
        self.options = options = KaptureOptions.from_mapping(connection.options)
        self.capabilities = replace(
            type(self).capabilities,
            comments_read=options.read_notes,
            private_comments=options.comment_visibility == "private",
            # without the notes, a lost post is confirmed by the count alone (§6.3)
            counts_comments=not options.read_notes,
        )
        self.zone = options.zone
        self.sub_statuses = Table("sub-status", "sub_statuses", options.sub_statuses)
        self._just_read: dict[str, tuple[float, RemoteTicket]] = {}
        self.reader = Reader(
            self.zone,
            self.sub_statuses,
            Table("queue", "queues", options.queues),
            Table("priority", "priorities", options.priorities),
        )
        self.wire = KaptureWire(
            connection.name,
            self.client(),
            _tokens(connection),
            api_key_headers=options.api_key_headers,
        )
        settings = PullSettings(
            zone=self.zone,
            page_size=options.page_size,
            batch_size=options.batch_size,
            repoll_budget=options.repoll_budget,
            initial_days=options.initial_days,
            read_notes=options.read_notes,
        )
        self.reads = KaptureReads(connection.name, self.wire, self.reader, settings)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Problems with ``connection.options``, each as ``options.KEY: message``."""
        return validate_options(options)

    def id_key(self, external_id: str) -> str:
        return external_id.strip()

    def match_keys(self, ticket: RemoteTicket) -> MatchKeys:
        """``date`` (``task_details.date`` in a get) as the creation time: the created-date
        pull files tickets by it (docs/vendor-apis.md §1.3, §1.4; that it is the creation
        time is UNCONFIRMED). Kapture documents no external reference."""
        details = ticket.raw.get("task_details")
        record = details if isinstance(details, Mapping) else ticket.raw
        try:
            created = parse_time(record.get("date"), self.zone)
        except BadRecord:
            created = None
        return MatchKeys(ticket.fields.get("requester_email"), ticket.fields.get("title"), created)

    # -- the contract ----------------------------------------------------------------------

    def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        """New tickets by created day, then ``repoll_budget`` of ``watch`` (``kapture.pull``)."""
        split = getattr(watch, "open_count", len(watch))
        plain = [[i for i in part if _plain_id(i)] for part in (watch[:split], watch[split:])]
        return self.reads.pages(cursor, Watch(*plain))

    def reread(self, external_ids: Sequence[str]) -> AsyncIterator[Page]:
        """Failing tickets read again, up to ``batch_size`` ids a request (``kapture.pull``)."""
        return self.reads.reread([i.strip() for i in external_ids if _plain_id(i)])

    async def get(self, external_id: str) -> RemoteTicket | None:
        if not _plain_id(external_id):
            return None  # a comma would turn one id into a batch; no ticket has one
        found = await self.reads.one(external_id.strip())
        if found is not None:
            if len(self._just_read) >= _JUST_READ_MAX:  # reads no update followed
                self._just_read.clear()
            self._just_read[external_id] = (time.monotonic(), found)
        return found

    async def update(
        self, external_id: str, changes: Mapping[str, str | None]
    ) -> RemoteTicket | None:
        what = f"ticket {external_id}"
        unwritable = sorted(set(changes) - WRITABLE)
        if unwritable:
            raise self._item(what, f"Kapture's update API cannot write {', '.join(unwritable)}")
        if not changes:
            return None
        sub_status = await self._sub_status(external_id, changes)
        body: dict[str, str] = {"ticket_id": external_id, "sub_status": sub_status}
        if "queue" in changes:
            queue = changes["queue"]
            if not queue:
                # An empty value is a placeholder to Kapture (docs/vendor-apis.md §5.9), not a
                # clear.
                raise self._item(what, "Kapture's update API cannot clear a ticket's queue")
            body["queue"] = queue
        document = await self.wire.call("update", [body], what)
        return self._reply_ticket(document, what, required=False)

    async def create(self, values: Mapping[str, str | None], marker: str) -> RemoteTicket:
        what = f"new ticket (marker {marker})"
        body = self._create_body(values, marker, what)
        wanted = values.get("status")
        if wanted:
            self._check_sub_status(wanted, what)
        document = await self.wire.call("create", [body], what)
        created = self._reply_ticket(document, what, required=True)
        assert created is not None
        created = _with_marker(created, marker)
        if not wanted or created.fields.get("status") == wanted:
            return created
        # add-ticket takes no status: a second call gives the ticket the mirror's one.
        try:
            updated = await self.update(created.external_id, {"status": wanted})
        except VendorError:
            log.warning(
                "%s: ticket %s was created (marker %s) but setting its sub-status %s failed",
                self.name,
                created.external_id,
                marker,
                wanted,
            )
            raise
        return _with_marker(updated, marker) if updated else created

    async def find_marker(self, marker: str, since: datetime | None = None) -> RemoteTicket | None:
        """Scan the created-date pull from the intent's day (``since``; else the last
        ``marker_days`` days) up to today for a ticket carrying ``marker``."""
        today = self.reads.today()
        days = self.options.marker_days
        if since is not None:
            days = max(1, (today - since.astimezone(self.zone).date()).days + 1)
        for back in range(days):
            async with aclosing(self.reads.created_on(today - timedelta(days=back))) as pages:
                async for tickets, _ in pages:
                    for ticket in tickets:
                        if ticket.marker == marker:
                            return ticket
        return None

    # -- comments (docs/vendor-apis.md §6.3) -------------------------------------------------

    async def list_comments(self, external_id: str) -> Sequence[RemoteComment]:
        """The ticket's notes, oldest first (``options.read_notes`` only): one get-ticket."""
        if not self.options.read_notes:
            raise NotImplementedError(f"{self.name}: options.read_notes is off")
        ticket = await self.reads.one(external_id.strip()) if _plain_id(external_id) else None
        if ticket is None:
            raise NotFound(
                f"{self.name}: ticket {external_id}: Kapture has no such ticket",
                connection=self.name,
            )
        # A reply without a notes list is read as no notes (its shape is 3P, UNCONFIRMED).
        entries = note_entries(ticket.raw) or []
        what = "a list of conversation notes"
        return parsed(self.name, external_id, what, lambda: to_comments(entries, self.zone))

    async def post_comment(self, external_id: str, comment: OutgoingComment) -> RemoteComment:
        """An update carrying ``comment`` and the ticket's current sub-status (mandatory, so
        the status stays). Kapture's reply names no comment: with ``read_notes`` the note is
        read back by its marker for its id; otherwise (or when it does not show yet) the
        comment is returned with the id ``posted:<marker>``, which no read note can have.
        Its visibility at Kapture is UNCONFIRMED, so it cannot be checked."""
        what = f"ticket {external_id}"
        if not comment.is_public and not self.capabilities.private_comments:
            raise self._item(
                what, "a private note is not posted to Kapture (options.comment_visibility)"
            )
        sub_status = await self._sub_status(external_id, {})
        text = with_comment_marker(comment.body, comment.marker)
        body = {"ticket_id": external_id, "sub_status": sub_status, "comment": text}
        document = await self.wire.call("update", [body], what)
        if self.options.read_notes:
            found = await self.find_comment(external_id, comment.marker)
            if found is not None:
                return found
        return RemoteComment(
            external_id=f"posted:{comment.marker}",
            body=comment.body,
            is_public=comment.is_public,
            marker=comment.marker,
            raw=document if isinstance(document, Mapping) else {},
        )

    async def find_comment(self, external_id: str, marker: str) -> RemoteComment | None:
        """The note carrying ``marker`` (``options.read_notes`` only; else NotImplementedError).

        For the engine, the lost-reply rule (docs/architecture.md §8.5): a post whose reply
        was lost is confirmed by this marker when notes are read, or else by the ticket's
        ``totalConversationCount`` being exactly one more than the count known before the
        post. ``sync.vendors.kapture.comments.conversation_count`` reads the count from a
        ``RemoteTicket.comment_counter``; Kapture documents the count on add/update replies
        (so a later update's reply shows it) and not on get-ticket, whose counter is the
        number of notes when they are read. With neither a marker nor both counts, the post
        is ``unknown`` and never re-sent: Kapture has no idempotency key, and a second post
        would duplicate the note."""
        if not self.options.read_notes:
            raise NotImplementedError(f"{self.name}: options.read_notes is off")
        return await super().find_comment(external_id, marker)

    async def conversation_count(self, external_id: str) -> int | None:
        """``totalConversationCount`` as get-ticket shows it, or None: Kapture documents
        it on add/update replies only, so whether get-ticket carries it is UNCONFIRMED
        (docs/vendor-apis.md §6.3); tolerated either way. The read is kept for the post
        that follows (its sub-status), so it costs no second request."""
        ticket = await self.get(external_id)
        return conversation_count(ticket.comment_counter) if ticket is not None else None

    async def check(self) -> None:
        """One created-date call for today: proves the read key (``Invalid Auth Key``)."""
        async with aclosing(self.reads.created_on(self.reads.today())) as pages:
            async for _ in pages:
                break

    # -- helpers ---------------------------------------------------------------------------

    async def _sub_status(self, external_id: str, changes: Mapping[str, str | None]) -> str:
        """The sub-status key to send: the change's, else the ticket's current one."""
        what = f"ticket {external_id}"
        unknown = ""
        if "status" in changes:
            sub_status = changes["status"]
        else:
            current = self._fresh(external_id) or await self.get(external_id)
            if current is None:
                raise NotFound(
                    f"{self.name}: {what}: Kapture has no such ticket", connection=self.name
                )
            sub_status = current.fields.get("status")
            problem = current.unreadable.get("status")
            unknown = f" ({problem.describe('status')})" if problem is not None else ""
        if not sub_status:
            raise self._item(
                what, "Kapture needs a sub-status on every update; none is known" + unknown
            )
        self._check_sub_status(sub_status, what)
        return sub_status

    def _fresh(self, external_id: str) -> RemoteTicket | None:
        """The ticket as ``get`` read it just now (the engine reads before each update,
        ``fetch_before_update``), once: the update then sends the sub-status the engine's
        merge saw, without reading the ticket a second time."""
        read_at, found = self._just_read.pop(external_id, (0.0, None))
        return found if time.monotonic() - read_at <= FRESH_READ_S else None

    def _check_sub_status(self, key: str, what: str) -> None:
        if key not in self.sub_statuses.names:
            known = ", ".join(sorted(self.sub_statuses.names))
            raise self._item(
                what,
                f"sub-status key {key!r} is not in options.sub_statuses ({known}); add it "
                "with its display name so that reads can be mapped back",
            )

    def _create_body(
        self, values: Mapping[str, str | None], marker: str, what: str
    ) -> dict[str, str]:
        title = values.get("title")
        if not title:
            raise self._item(what, "Kapture requires a title to create a ticket")
        body = {"title": title, "ticket_details": with_marker(values.get("description"), marker)}
        due = values.get("due_at")
        if due:
            try:
                body["due_date"] = local_text(parse_iso(due), self.zone)
            except ValueError:
                raise self._item(what, f"due_at {due!r} is not an ISO-8601 time") from None
        # Never an empty value: Kapture takes "" as a placeholder (docs/vendor-apis.md §5.9).
        for name, key in (("requester_email", "email_id"), ("queue", "queue")):
            value = values.get(name)
            if value:
                body[key] = value
        body[MARKER_KEY] = marker
        return body

    def _reply_ticket(self, document: Any, what: str, *, required: bool) -> RemoteTicket | None:
        """The ``ticket`` object of an add or update reply (both ids kept in ``raw``)."""
        ticket = document.get("ticket") if isinstance(document, Mapping) else None
        if not isinstance(ticket, Mapping):
            if not required:
                return None
            raise ProtocolError(
                f"{self.name}: {what}: Kapture's reply has no 'ticket' object",
                connection=self.name,
            )
        try:
            return self.reader.ticket(ticket, document)
        except BadRecord as exc:
            raise ProtocolError(
                f"{self.name}: {what}: unreadable Kapture reply: {exc}", connection=self.name
            ) from None

    def _item(self, what: str, problem: str) -> ItemError:
        return ItemError(f"{self.name}: {what}: {problem}", connection=self.name)


def _with_marker(ticket: RemoteTicket, marker: str) -> RemoteTicket:
    return replace(ticket, modified_at=None, marker=marker)


def _plain_id(external_id: str) -> bool:
    text = external_id.strip()
    return bool(text) and "," not in text


def _tokens(connection: ConnectionConfig) -> dict[str, tuple[str, str]]:
    """Credential slot -> (the credential that fills it, its value)."""
    tokens = {}
    for _, slot, _ in ENDPOINTS.values():
        for name in (slot, "token"):
            value = connection.credential(name)
            if value:
                tokens[slot] = (name, value)
                break
    return tokens


def _token_problems(connection: ConnectionConfig) -> list[str]:
    missing = [slot for _, slot, _ in ENDPOINTS.values() if slot not in _tokens(connection)]
    return [f"credentials.{slot}: required (or give token)" for slot in dict.fromkeys(missing)]
