"""The Sirportly adapter: pull by SPQL (or the ticket list), get, update, create.

Wire facts are from Sirportly's API pages and its own client libraries (docs/vendor-apis.md §3):
every call is a POST to ``/api/v2/<group>/<method>`` with form parameters (custom
fields as ``custom[NAME]``) and the ``X-Auth-Token`` / ``X-Auth-Secret`` headers; replies are
JSON. The emulator in ``sync/sandbox/sirportly.py`` serves the same wire format.

Operator notes
--------------
- Credentials: ``token`` and ``secret`` of an API token (Sirportly: Admin > API Tokens).
  If the token is restricted by method, allow ``tickets/spql`` (or ``tickets/all``),
  ``tickets/ticket``, ``tickets/update``, ``tickets/submit`` and ``tickets/post_update``; if
  by IP address, allow the host that runs ticketsync. Sirportly answers 403 otherwise, which
  stops the connection until the operator acts. ``base_url`` is
  ``https://api.sirportly.com`` for hosted accounts, else the install's own address.
- Field values in ``fields`` maps: ``status`` and ``priority`` are the names shown in
  Sirportly (spelled exactly so, e.g. ``"Waiting for Staff"``); ``queue`` is
  ``"<department id>/<team id>"`` (e.g. ``"3/2"``): the team must lie on the department's
  escalation path, so each queue names a valid pair (a ticket without a team reads as
  ``"<department id>"``). A ``"<department id>"`` entry also matches that department's
  tickets whatever their team (an exact entry wins); pushed, it sends the department alone,
  then again with the path's first team if Sirportly refuses the ticket's team, and a create
  takes that first team; ``assignee`` is a username, and the user must belong to the team.
- Synced fields: title (subject), status, priority, queue, assignee and due_at
  (``resolution_due_at``) both ways; description (the ticket's first message) and
  requester_email (its e-mail contact method) are read, and sent only when creating.
  Sirportly's documented API cannot clear a field, so emptying one in the mirror is a
  per-ticket error.
- Creating tickets (``create:``): Sirportly requires a subject, status, priority, team and a
  contact. The queue comes from the ticket, else ``options.default_queue``; the contact from
  ``requester_email``, else ``options.default_requester_email``. The description is posted as
  the first update, authored by that contact. The engine's create marker is stored in a
  custom field: create a text custom field with system name ``ticketsync_marker`` (or set
  ``options.marker_field``) before the first create. Whether Sirportly rejects or silently
  drops an unknown custom field is UNCONFIRMED; a created ticket whose marker did not stick
  is logged as a warning.
- Lost create replies: SPQL is not documented to query custom fields, so the marker cannot
  be searched for (capability ``finds_markers`` is off). Pulled tickets carry their custom
  fields (``markers_in_pull``): the next pull links a created ticket by its marker, and a
  create intent that a complete pull started after it did not find never reached Sirportly,
  so the engine creates it again.
- Options (``connections.NAME.options``): ``disable_rules`` (true: our writes send
  ``X-Sirportly-Rules: disabled``, so Sirportly's rules do not answer them with more
  changes; a header the vendor's own gem sends, not in the retrieved docs),
  ``marker_field``, ``lookback_seconds`` (default ``sync.lookback_seconds``: each pull
  re-reads this much before its cursor), ``default_queue``, ``default_requester_email``,
  ``comment_user`` (the username comments are posted as when their author maps to no
  Sirportly user: an account token needs an author for ``post_update``, a user token posts
  as its own user and needs none).
- Comments (docs/vendor-apis.md §6.2): read from the ticket's ``updates`` (the first is the
  description), written with ``tickets/post_update`` with ``private`` always sent and checked
  in the reply. The counter is ``update_count`` with ``last_update_posted_at``.
- Pull and freshness: SPQL needs reporting access for user tokens; when Sirportly refuses
  the query (403 or 422) the adapter lists ``tickets/all`` sorted by ``updated_at`` instead
  (logged once), which reads more per run. Each changed ticket is then fetched in full
  (``tickets/ticket``): SPQL gives no messages or custom fields. Unconfirmed: the SPQL date
  literal syntax and its time zone (the adapter sends UTC ``'YYYY-MM-DD HH:MM:SS'``; if
  the account's time zone is behind UTC and Sirportly reads literals in it, raise
  ``lookback_seconds`` to at least that offset); ``updated_at`` in ticket JSON (without it
  a ticket has no modification time); the request date format (ISO 8601 with offset sent).
- Rate limits are undocumented: 429 and 503 are retried with backoff.

Cursor: ``{"updated_after": "<ISO UTC>"}``, the newest ``updated_at`` the pull has seen.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sync import redact
from sync.errors import (
    ConfigError,
    ItemError,
    ProtocolError,
    Unreadable,
    VendorError,
)
from sync.http import Response
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
    read_each,
)
from sync.vendors.comments import check_visibility, parsed
from sync.vendors.cursor import PullClock, rule_for
from sync.vendors.errors import vendor_error
from sync.vendors.sirportly.comments import comments_of, find_update, post_params, to_comment
from sync.vendors.sirportly.errors import ERRORS
from sync.vendors.sirportly.mapping import (
    FULL_KEYS,
    READABLE,
    WRITABLE,
    describe_errors,
    first_teams,
    parse_time,
    to_params,
    to_remote,
)
from sync.vendors.sirportly.options import (
    SirportlyOptions,
    department_of,
    submit_params,
    validate_options,
)
from sync.vendors.sirportly.pull import EPOCH, ListScan, Row, SpqlScan, record_time, spql_query

if TYPE_CHECKING:
    from sync.config import ConnectionConfig

log = logging.getLogger(__name__)

#: Statuses the adapter reads itself; 429 and 5xx stay with sync.http, which retries them.
HANDLED = (200, 201, 403, 404, 409, 422)
API = "/api/v2"


class SpqlRefused(Exception):
    """Sirportly refused our SPQL query (403 or 422): pull through ``tickets/all``."""


class SirportlyAdapter(Adapter):
    """Sirportly: six fields written, eight read; creates, but cannot search for markers."""

    vendor = "sirportly"
    capabilities = Capabilities(
        readable=READABLE,
        writable=WRITABLE,
        can_create=True,
        finds_markers=False,
        markers_in_pull=True,
        changed_since=True,
        # the due date is set by an update after submit; the description, by post_update
        create_followups=frozenset({"due_at", "description"}),
        # a fields.queue entry "3" matches a pulled "3/2" that has no exact entry
        broader={"queue": department_of},
        comments_read=True,
        comments_write=True,
        private_comments=True,
        # post_update takes ``user``: mapped authors post as themselves (§6.2)
        comments_as_user=True,
    )

    def __init__(self, connection: ConnectionConfig, context: AdapterContext) -> None:
        super().__init__(connection, context)
        problems = validate_options(connection.options)
        if connection.comments.pushes and not connection.options.get("comment_user"):
            # An account token's post_update needs an author, and whether a token is a
            # user's cannot be told: always send one (docs/vendor-apis.md §6.2).
            problems.append(
                "options.comment_user: required when comments are pushed (Sirportly needs "
                "an author on every post: the username comments without a mapped author use)"
            )
        if problems:
            raise ConfigError([f"connections.{connection.name}.{p}" for p in problems])
        self.options = SirportlyOptions.from_mapping(connection.options)
        self._api = self.client()
        self._auth = {
            "X-Auth-Token": connection.credential("token") or "",
            "X-Auth-Secret": connection.credential("secret") or "",
        }
        self._spql_refused: str | None = None
        self._first_teams: dict[str, str] | None = None

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Problems with ``connection.options``, each as ``options.KEY: message``."""
        return validate_options(options)

    # -- the contract ----------------------------------------------------------------------

    async def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        rule = rule_for(self, "updated_after", parse_time, self.options.lookback_seconds)
        start = max(rule.start(cursor) or EPOCH, EPOCH)
        if self._spql_refused is None:
            try:
                async for page in self._spql_pages(start, rule.pull(cursor)):
                    yield page
                return
            except SpqlRefused as refused:
                self._spql_refused = str(refused)
                log.warning(
                    "%s: Sirportly refused the SPQL query (%s); pulling through tickets/all "
                    "sorted by updated_at instead",
                    self.name,
                    refused,
                )
        async for page in self._list_pages(start, rule.pull(cursor)):
            yield page

    def match_keys(self, ticket: RemoteTicket) -> MatchKeys:
        """``submitted_at`` as the creation time (docs/vendor-apis.md §3.3); Sirportly
        documents no external reference."""
        try:
            created = parse_time(ticket.raw.get("submitted_at"))
        except (ValueError, TypeError):
            created = None
        return MatchKeys(ticket.fields.get("requester_email"), ticket.fields.get("title"), created)

    async def get(self, external_id: str) -> RemoteTicket | None:
        if not external_id:
            return None
        response = await self._post("tickets/ticket", {"ticket": external_id}, safe=True)
        if response.status == 404:
            return None
        self._raise_for(response, "tickets/ticket", f"ticket {external_id}")
        return self._ticket(response.json(), external_id, read=True)

    async def update(
        self, external_id: str, changes: Mapping[str, str | None]
    ) -> RemoteTicket | None:
        params, problems = to_params(changes)
        if problems:
            raise ItemError(
                f"{self.name}: ticket {external_id}: " + "; ".join(problems), connection=self.name
            )
        if not params:
            return None
        data = {"ticket": external_id, **params}
        try:
            reply = await self._write("tickets/update", data, external_id)
        except ItemError as exc:
            if "department" not in params or "team" in params or not _names_team(exc):
                raise
            # A department-only queue: the ticket's team is off the new department's
            # escalation path, so it moves to that path's first team.
            data["team"] = await self._first_team(params["department"], external_id)
            reply = await self._write("tickets/update", data, external_id)
        ticket = self._ticket(reply, external_id)
        # The documented update reply carries no messages or custom fields: not a full ticket.
        return ticket if FULL_KEYS.issubset(reply) else None

    async def create(self, values: Mapping[str, str | None], marker: str) -> RemoteTicket:
        params, problems = submit_params(values, marker, self.options)
        if problems:
            raise ItemError(
                f"{self.name}: cannot create: " + "; ".join(problems), connection=self.name
            )
        if "team" not in params:  # a department-only queue: the path's first team
            params["team"] = await self._first_team(params["department"], "(new)")
        submitted = self._ticket(await self._write("tickets/submit", params, "(new)"), "(new)")
        reference = submitted.external_id
        try:
            ticket = await self._complete_create(reference, values, submitted.raw)
        except VendorError as exc:
            # Not an ItemError: the ticket exists, so the engine must not create it again.
            raise VendorError(
                f"{self.name}: ticket {reference} was created but not completed ({exc}); "
                "the next pull links it by its marker",
                connection=self.name,
                status=exc.status,
                vendor_message=exc.vendor_message,
            ) from exc
        if ticket.marker != marker:
            log.warning(
                "%s: ticket %s was created without its marker in custom field %r; create that "
                "custom field in Sirportly (or set options.marker_field)",
                self.name,
                reference,
                self.options.marker_field,
            )
        return RemoteTicket(reference, ticket.fields, ticket.modified_at, marker, ticket.raw)

    # -- comments (docs/vendor-apis.md §6.2) -------------------------------------------------

    async def list_comments(self, external_id: str) -> Sequence[RemoteComment]:
        """The ticket's updates but the first (its body), oldest first: one ``tickets/ticket``."""
        record = await self._full_record(external_id)
        return parsed(
            self.name,
            external_id,
            "a ticket with updates",
            lambda: comments_of(record, self.options.marker_field),
        )

    async def post_comment(self, external_id: str, comment: OutgoingComment) -> RemoteComment:
        """``tickets/post_update`` with ``private`` always sent; the reply's ``private`` must
        match. A reply without it is checked against the ticket's updates (one more read)."""
        params = post_params(external_id, comment, self.options.comment_user)
        reply = await self._write("tickets/post_update", params, external_id)
        posted = parsed(self.name, external_id, "an update", lambda: to_comment(reply))
        if not isinstance(reply, dict) or "private" not in reply:
            record = await self._full_record(external_id)
            stored = find_update(record, posted.external_id)
            posted = parsed(self.name, external_id, "an update", lambda: to_comment(stored))
        check_visibility(self.name, external_id, comment.is_public, posted)
        return posted

    async def _full_record(self, external_id: str) -> dict[str, Any]:
        response = await self._post("tickets/ticket", {"ticket": external_id}, safe=True)
        self._raise_for(response, "tickets/ticket", f"ticket {external_id}")
        record = response.json()
        if not isinstance(record, dict):
            raise ProtocolError(
                f"{self.name}: ticket {external_id}: Sirportly's reply is not a ticket",
                connection=self.name,
            )
        return record

    def look_apart(self) -> timedelta:
        return self.lookback(self.options.lookback_seconds)

    async def check(self) -> None:
        """One cheap call: the pull's own query for one row, or its fallback's first page."""
        if self._spql_refused is None:
            try:
                await self._spql(spql_query(datetime.now(UTC), 0, 1), first=True)
                return
            except SpqlRefused as refused:
                self._spql_refused = str(refused)
        await self._list_page(1)

    # -- pull ------------------------------------------------------------------------------

    async def _spql_pages(self, start: datetime, clock: PullClock) -> AsyncIterator[Page]:
        first = True

        async def query(spql: str) -> Any:
            nonlocal first
            try:
                return await self._spql(spql, first=first, observe=clock.observe)
            finally:
                first = False

        async for rows in SpqlScan(self.name, query).pages(start):
            tickets, failures = await read_each(rows, self._row)
            for row in rows:
                clock.see(row.changed_at)  # a new update (comment) counts as a change
            yield Page([clock.stamp(t) for t in tickets], clock.page_cursor(), failures)
        yield Page([], clock.complete())

    async def _list_pages(self, start: datetime, clock: PullClock) -> AsyncIterator[Page]:
        # Newest first: a cursor is only safe to store once the whole pass is read.
        held = clock.page_cursor()
        lister = functools.partial(self._list_page, observe=clock.observe)
        async for records in ListScan(self.name, lister).pages(start):
            tickets, failures = await read_each(records, self._complete)
            for record in records:
                clock.see(record_time(record, self.name))
            yield Page([clock.stamp(t) for t in tickets], held, failures)
        yield Page([], clock.complete())

    async def _spql(
        self, spql: str, *, first: bool, observe: Callable[[Response], None] | None = None
    ) -> Any:
        response = await self._post("tickets/spql", {"spql": spql}, safe=True)
        if observe is not None:
            observe(response)
        if response.status in (403, 422) and first:
            raise SpqlRefused(f"HTTP {response.status}: {self._said(response)}")
        if response.status == 422:
            raise ProtocolError(
                f"{self.name}: Sirportly rejected an SPQL page it accepted before: "
                f"{self._said(response)}",
                connection=self.name,
                status=422,
            )
        self._raise_for(response, "tickets/spql", "SPQL query")
        return response.json()

    async def _list_page(self, page: int, observe: Callable[[Response], None] | None = None) -> Any:
        params = {"page": str(page), "sort_by": "updated_at", "order": "desc"}
        response = await self._post("tickets/all", params, safe=True)
        if observe is not None:
            observe(response)
        self._raise_for(response, "tickets/all", f"ticket list page {page}")
        return response.json()

    async def _row(self, row: Row) -> RemoteTicket | None:
        return await self.get(row.reference)  # None: deleted since the query

    async def _complete(self, record: Mapping[str, Any]) -> RemoteTicket | None:
        """The record as a ticket, fetched in full when it lacks messages or custom fields."""
        ticket = self._ticket(record, str(record.get("reference")), read=True)
        if FULL_KEYS.issubset(record):
            return ticket
        return await self.get(ticket.external_id)

    # -- create ----------------------------------------------------------------------------

    async def _complete_create(
        self, reference: str, values: Mapping[str, str | None], submitted: Mapping[str, Any]
    ) -> RemoteTicket:
        """Post the description, set what submit cannot take, and read the ticket back."""
        description = values.get("description")
        if description:
            author = _contact_id(submitted)
            if author is None:
                raise ProtocolError(
                    f"{self.name}: ticket {reference}: the submit reply names no contact to "
                    "post the description as",
                    connection=self.name,
                )
            message = {
                "ticket": reference,
                "message": description,
                "contact": author,
                "private": "0",  # the customer's own words: public, and said so
            }
            await self._write("tickets/post_update", message, reference)
        if values.get("due_at"):
            await self.update(reference, {"due_at": values["due_at"]})
        ticket = await self.get(reference)
        if ticket is None:
            raise ProtocolError(
                f"{self.name}: ticket {reference} is not found right after its creation",
                connection=self.name,
            )
        return ticket

    # -- departments -----------------------------------------------------------------------

    async def _first_team(self, department: str, external_id: str) -> str:
        """The first team on ``department``'s escalation path, read once per adapter."""
        if self._first_teams is None:
            self._first_teams = first_teams(
                await self._objects("departments"), await self._objects("escalation_paths")
            )
        team = self._first_teams.get(department)
        if team is None:
            raise ItemError(
                f"{self.name}: ticket {external_id}: Sirportly's department {department} has "
                "no team on its escalation path; map the queue as '<department id>/<team id>'",
                connection=self.name,
            )
        return team

    async def _objects(self, kind: str) -> Any:
        response = await self._post(f"objects/{kind}", {}, safe=True)
        self._raise_for(response, f"objects/{kind}", kind)
        return response.json()

    # -- requests --------------------------------------------------------------------------

    async def _post(self, method: str, data: Mapping[str, str], *, safe: bool) -> Response:
        return await self._api.request(
            "POST", f"{API}/{method}", data=dict(data), headers=self._auth, safe=safe, ok=HANDLED
        )

    async def _write(self, method: str, data: Mapping[str, str], external_id: str) -> Any:
        headers = dict(self._auth)
        if self.options.disable_rules:
            headers["X-Sirportly-Rules"] = "disabled"
        response = await self._api.request(
            "POST", f"{API}/{method}", data=dict(data), headers=headers, safe=False, ok=HANDLED
        )
        self._raise_for(response, method, f"ticket {external_id}")
        return response.json()

    def _said(self, response: Response) -> str:
        said = describe_errors(_document(response)) or "no error message"
        return redact.current().redact(said)

    def _raise_for(self, response: Response, method: str, subject: str) -> None:
        """Sirportly's error statuses as our error tree, by its table (``sirportly.errors``)."""
        status = response.status
        if status < 300:
            return
        said = self._said(response)
        text = f"{self.name}: {method} ({subject}) -> HTTP {status}: {said}"
        raise vendor_error(ERRORS, text, connection=self.name, status=status, said=said)

    def _ticket(self, document: Any, external_id: str, *, read: bool = False) -> RemoteTicket:
        """``document`` as a ticket. One that does not parse is ``Unreadable`` (that ticket's
        failure) when read, a ``ProtocolError`` in a write's reply."""
        try:
            return to_remote(document, self.options.marker_field)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
            message = (
                f"{self.name}: ticket {external_id}: Sirportly's reply is not a ticket ({exc!r})"
            )
            if read:
                raise Unreadable(
                    message, connection=self.name, external_id=external_id, raw=document
                ) from None
            raise ProtocolError(message, connection=self.name) from None


def _names_team(exc: ItemError) -> bool:
    """Whether a rejected write's 422 names the team (Sirportly's ``errors.team``)."""
    said = getattr(exc, "vendor_message", None) or ""
    return getattr(exc, "status", None) == 422 and any(
        part.startswith("team ") for part in said.split("; ")
    )


def _document(response: Response) -> Any:
    try:
        return response.json()
    except ProtocolError:
        return None  # an error page that is not JSON: its status still tells what happened


def _contact_id(ticket: Mapping[str, Any]) -> str | None:
    # ``customer`` is in the documented ticket JSON; ``contact`` is read by the vendor's WHMCS
    # module (3P, docs/vendor-apis.md §5.9). Either names the contact that post_update may author
    # as.
    for key in ("customer", "contact"):
        value = ticket.get(key)
        if isinstance(value, dict) and value.get("id") not in (None, ""):
            return str(value["id"])
    return None
