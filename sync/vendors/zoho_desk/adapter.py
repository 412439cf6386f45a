"""The Zoho Desk adapter: OAuth, pull by search, get, update, create with a marker.

Wire facts are from Zoho's API page and OpenAPI files (docs/vendor-apis.md §4); the emulator
in ``sync/sandbox/zoho_desk.py`` checks every request against the latter.

Setting up Zoho Desk (for the README)
-------------------------------------
- Credentials: ``client_id``, ``client_secret`` and ``refresh_token`` of a Zoho API console
  client ("Self Client" is enough) with the scopes ``Desk.tickets.ALL`` and
  ``Desk.search.READ``; ``org_id`` of the Desk organisation (Setup > Developer Space > API);
  ``accounts_url`` when the account is not in the US data centre (e.g.
  ``https://accounts.zoho.eu``; by default it follows ``base_url``'s ``desk.zoho.<tld>``).
- The create marker: connections that create tickets store the engine's create marker in a
  custom ticket field, so that a create whose reply was lost can be found again. Before the
  first run, create a single-line text field in Setup > Customization > Layouts and Fields >
  Tickets, label it e.g. "ticketsync marker", and put its API name (``cf_...``) in
  ``options.marker_field`` (default ``cf_ticketsync_marker``). A create naming a field the
  portal lacks fails for that ticket (``INVALID_DATA`` is the expected answer: UNCONFIRMED).
- Options (``connections.NAME.options``): ``lookback_seconds`` (default
  ``sync.lookback_seconds``: each pull re-reads this much before its cursor, against clock
  skew and search-index lag), ``marker_field``,
  ``default_department_id`` (the department of created tickets whose queue is not mapped),
  ``default_contact_id`` (the contact of created tickets without a requester e-mail),
  ``disable_closure_notification`` (false: true stops Zoho mailing the contact when a pushed
  status closes a ticket), ``comment_sweep_seconds`` (600: how often the ``commentCount`` of
  the open linked tickets is read, 100 tickets per search, since a new comment may not move
  ``modifiedTime``; docs/architecture.md §8.5).

Pull (``zoho_desk.pull.py``): ticket search by ``modifiedTimeRange``, oldest change first.
The cursor follows Zoho's ``Date`` header (``sync.vendors.cursor``, docs/architecture.md
§8.2); pages carry ``{"modified_after": "<ISO UTC>"}``, the newest ``modifiedTime`` yielded.
Each pull's window starts ``lookback_seconds`` before the cursor and ends a day past now, so
a clock skew between us and Zoho cannot hide an edit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from multidict import MultiDict

from sync import redact
from sync.errors import (
    ConfigError,
    ItemError,
    NotFound,
    ProtocolError,
    Unreadable,
    VendorError,
)
from sync.http import Response, parse_retry_after
from sync.vendors.base import (
    SYNC_FIELDS,
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
from sync.vendors.cursor import rule_for
from sync.vendors.errors import vendor_error
from sync.vendors.zoho_desk.auth import (
    ClientCredentials,
    ZohoAuth,
    accounts_for,
    api_root,
    token_cache_path,
)
from sync.vendors.zoho_desk.comments import order_key, post_body, to_comment
from sync.vendors.zoho_desk.errors import ERRORS, REFRESH_CODES
from sync.vendors.zoho_desk.mapping import (
    PULL_KEYS,
    comment_counter,
    describe_field_errors,
    encode_marker,
    envelope,
    is_zoho_id,
    list_created,
    list_marker,
    parse_time,
    to_body,
    to_remote,
    zoho_time,
)
from sync.vendors.zoho_desk.options import ZohoOptions, validate_options
from sync.vendors.zoho_desk.pull import EPOCH, PAGE, WindowScan

if TYPE_CHECKING:
    from sync.config import ConnectionConfig

#: Statuses the adapter reads itself; 429 and 5xx stay with sync.http, which retries them.
HANDLED = (200, 201, 204, 400, 401, 403, 404, 422)
#: Comments read of one ticket at most (a bound against a vendor that never ends a list).
MAX_COMMENTS = 10_000


class ZohoDeskAdapter(Adapter):
    """Zoho Desk: every synced field readable and writable, creates with a marker."""

    vendor = "zoho_desk"
    capabilities = Capabilities(
        readable=frozenset(SYNC_FIELDS),
        writable=frozenset(SYNC_FIELDS),
        can_create=True,
        finds_markers=True,
        one_look=True,
        changed_since=True,
        comments_read=True,
        comments_write=True,
        private_comments=True,
        comment_counters=True,
    )

    def __init__(self, connection: ConnectionConfig, context: AdapterContext) -> None:
        super().__init__(connection, context)
        problems = validate_options(connection.options)
        if problems:
            raise ConfigError([f"connections.{connection.name}.{p}" for p in problems])
        self.options = ZohoOptions.from_mapping(connection.options)
        self.comment_sweep_seconds = self.options.comment_sweep_seconds
        self._org_id = connection.credential("org_id") or ""
        self._api = self.client(api_root(connection.base_url))
        accounts = connection.credential("accounts_url") or accounts_for(connection.base_url)
        self.auth = ZohoAuth(
            connection.name,
            self.client(accounts),
            ClientCredentials(
                client_id=connection.credential("client_id") or "",
                client_secret=connection.credential("client_secret") or "",
                refresh_token=connection.credential("refresh_token") or "",
                accounts_url=accounts,
            ),
            token_cache_path(context.state_dir, connection.name),
        )

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Problems with ``connection.options``, each as ``options.KEY: message``."""
        return validate_options(options)

    # -- the contract ----------------------------------------------------------------------

    async def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        rule = rule_for(self, "modified_after", parse_time, self.options.lookback_seconds)
        start = rule.start(cursor)
        clock = rule.pull(cursor)
        end = datetime.now(UTC) + timedelta(days=1)

        async def search(params: Mapping[str, str]) -> list[dict[str, Any]]:
            response = await self._call("GET", "/api/v1/tickets/search", params=params)
            clock.observe(response)
            return _items(response, self.name)

        scan = WindowScan(self.name, search)
        async for items in scan.pages(max(start or EPOCH, EPOCH), end):
            tickets, failures = await read_each(items, self._complete)
            yield Page([clock.stamp(t) for t in tickets], clock.page_cursor(), failures)
        yield Page([], clock.complete())

    def match_keys(self, ticket: RemoteTicket) -> MatchKeys:
        """``createdTime``, and ``source.extId`` as the external reference (docs/vendor-apis.md
        §4.3); a search result may lack either (tolerated: the key is then None)."""
        source = ticket.raw.get("source")
        reference = source.get("extId") if isinstance(source, Mapping) else None
        try:
            created = parse_time(ticket.raw.get("createdTime"))
        except (ValueError, TypeError, OverflowError, OSError):
            created = None
        return MatchKeys(
            ticket.fields.get("requester_email"),
            ticket.fields.get("title"),
            created,
            str(reference) if reference not in (None, "") else None,
        )

    async def get(self, external_id: str) -> RemoteTicket | None:
        if not is_zoho_id(external_id):
            return None  # Zoho ids are digits: no such ticket can exist
        response = await self._call("GET", f"/api/v1/tickets/{external_id}", missing_ok=True)
        if response.status == 404:
            return None
        return self._ticket(response.json(), external_id, read=True)

    async def update(
        self, external_id: str, changes: Mapping[str, str | None]
    ) -> RemoteTicket | None:
        if not is_zoho_id(external_id):
            raise NotFound(
                f"{self.name}: ticket {external_id!r} is not a Zoho id", connection=self.name
            )
        body, problems = to_body(changes)
        if problems:
            raise ItemError(
                f"{self.name}: ticket {external_id}: " + "; ".join(problems), connection=self.name
            )
        if not body:
            return None
        params = (
            {"disableClosureNotification": "true"}
            if self.options.disable_closure_notification
            else None
        )
        response = await self._call(
            "PATCH", f"/api/v1/tickets/{external_id}", params=params, json=body
        )
        return self._ticket(response.json(), external_id) if response.body else None

    async def create(self, values: Mapping[str, str | None], marker: str) -> RemoteTicket:
        body = self._create_body(values, marker)
        response = await self._call("POST", "/api/v1/tickets", json=body)
        ticket = self._ticket(response.json(), "(new)")
        return RemoteTicket(
            ticket.external_id, ticket.fields, ticket.modified_at, marker, ticket.raw
        )

    async def find_marker(self, marker: str, since: datetime | None = None) -> RemoteTicket | None:
        """The ticket carrying ``marker``, read from the ticket list newest first.

        The list (``GET /api/v1/tickets?sortBy=-createdTime`` with the marker field
        requested, docs/vendor-apis.md §4.4) reads the tickets themselves, not the search
        index, whose lag after a create is UNCONFIRMED; so one look that misses settles a
        lost create (``one_look``, docs/architecture.md §8.4). The scan stops at the first
        ticket created before ``since`` (the intent; else a day ago) less the lookback, for
        clock skew between us and Zoho.
        """
        floor = (since or datetime.now(UTC) - timedelta(days=1)) - self.look_apart()
        field = self.options.marker_field
        start = 0
        while True:
            params = {
                "sortBy": "-createdTime",
                "from": str(start),
                "limit": str(PAGE),
                "fields": f"createdTime,{field}",
            }
            items = _items(await self._call("GET", "/api/v1/tickets", params=params), self.name)
            for item in items:
                if list_marker(item, field) == marker:
                    return await self._complete(item, ("cf",))
                created = list_created(item)
                if created is not None and created < floor:
                    return None
            if len(items) < PAGE:
                return None
            start += PAGE

    def look_apart(self) -> timedelta:
        return self.lookback(self.options.lookback_seconds)

    # -- comments (docs/vendor-apis.md §6.1) -------------------------------------------------

    async def list_comments(self, external_id: str) -> Sequence[RemoteComment]:
        """Every comment, oldest first: ``GET .../comments`` by ``commentedTime`` ascending,
        100 a page, until a short page. Threads (e-mails) are not comments: out of scope."""
        if not is_zoho_id(external_id):
            raise NotFound(
                f"{self.name}: ticket {external_id!r} is not a Zoho id", connection=self.name
            )
        found: dict[str, RemoteComment] = {}
        path = f"/api/v1/tickets/{external_id}/comments"
        for start in range(0, MAX_COMMENTS, PAGE):
            params = {"from": str(start), "limit": str(PAGE), "sortBy": "commentedTime"}
            response = await self._call("GET", path, params=params)
            items = _comment_items(response, self.name, external_id)
            for item in items:
                comment = self._comment(item, external_id)
                found.setdefault(comment.external_id, comment)
            if len(items) < PAGE:
                return sorted(found.values(), key=order_key)
        raise ProtocolError(
            f"{self.name}: ticket {external_id} has more than {MAX_COMMENTS} comments",
            connection=self.name,
        )

    async def post_comment(self, external_id: str, comment: OutgoingComment) -> RemoteComment:
        """``POST .../comments`` as the API user (Zoho has no impersonation here, so
        ``author_user`` is unused: the attribution prefix names the author). ``isPublic`` is
        always sent, and the reply's is checked: Zoho's default is UNCONFIRMED (§6.1)."""
        if not is_zoho_id(external_id):
            raise NotFound(
                f"{self.name}: ticket {external_id!r} is not a Zoho id", connection=self.name
            )
        try:
            body = post_body(comment)
        except ValueError as exc:
            raise ItemError(
                f"{self.name}: ticket {external_id}: comment too long: {exc}", connection=self.name
            ) from None
        response = await self._call("POST", f"/api/v1/tickets/{external_id}/comments", json=body)
        posted = self._comment(response.json(), external_id)
        check_visibility(self.name, external_id, comment.is_public, posted)
        return posted

    async def comment_counters(self, external_ids: Sequence[str]) -> Mapping[str, str | None]:
        """``commentCount`` of up to 100 tickets in one ticket search by ``id``
        (docs/vendor-apis.md §4.4, §6.1): Search.json declares ``id`` an array in form style
        with ``explode``, so each id is its own ``id=`` parameter, and ``limit`` goes to 100.
        UNCONFIRMED: how many ids Zoho takes at once, and how soon its search index shows a
        new ``commentCount`` (a late one is seen by the next sweep). A ticket the search
        does not return (deleted, or not a Zoho id) is left out."""
        ids = [i for i in external_ids if is_zoho_id(i)]
        if len(ids) > self.counters_per_call:
            raise ValueError(f"at most {self.counters_per_call} ids per call, not {len(ids)}")
        if not ids:
            return {}
        params = MultiDict([("id", i) for i in ids])
        params.update(limit=str(PAGE))
        response = await self._call("GET", "/api/v1/tickets/search", params=params)
        wanted = set(ids)
        return {
            str(item["id"]): comment_counter(item)
            for item in _items(response, self.name)
            if str(item["id"]) in wanted
        }

    def _comment(self, document: Any, external_id: str) -> RemoteComment:
        return parsed(self.name, external_id, "a comment", lambda: to_comment(document))

    async def check(self) -> None:
        """One cheap call that proves the grant, the org and both scopes the adapter needs."""
        now = datetime.now(UTC)
        params = {
            "modifiedTimeRange": f"{zoho_time(now - timedelta(days=1))},{zoho_time(now)}",
            "limit": "1",
        }
        await self._call("GET", "/api/v1/tickets/search", params=params)

    # -- pull ------------------------------------------------------------------------------

    async def _search(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        response = await self._call("GET", "/api/v1/tickets/search", params=params)
        return _items(response, self.name)

    async def _complete(self, item: Mapping[str, Any], extra: Iterable[str] = ()) -> RemoteTicket:
        """The item as a ticket, fetched in full when the search result lacks a field."""
        wanted = PULL_KEYS.union(extra)
        if wanted.issubset(item):
            return self._ticket(item, str(item.get("id")), read=True)
        fetched = await self.get(str(item.get("id")))
        if fetched is None:  # deleted between the search and the fetch
            return self._ticket(item, str(item.get("id")), read=True)
        return fetched

    # -- requests --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Response:
        """Send an API request with auth; refresh and resend once on ``INVALID_OAUTH``."""
        for attempt in (1, 2):
            token = await self.auth.token()
            headers = {"Authorization": f"Zoho-oauthtoken {token}", "orgId": self._org_id}
            response = await self._api.request(
                method, path, params=params, json=json, headers=headers, ok=HANDLED
            )
            if response.status < 300 or (missing_ok and response.status == 404):
                return response
            code, message, errors = envelope(_document(response))
            if response.status == 401 and (code in REFRESH_CODES or code is None) and attempt == 1:
                self.auth.invalidate(token)
                continue
            raise self._error(method, path, response, code, message, errors)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _error(
        self,
        method: str,
        path: str,
        response: Response,
        code: str | None,
        message: str,
        errors: Sequence[Mapping[str, Any]],
    ) -> VendorError:
        """Zoho's error envelope as our error tree, by its table (``zoho_desk.errors``)."""
        status = response.status
        said = f"{code}: {message}" if code else (message or "no error message")
        if errors:
            said += "; fields: " + describe_field_errors(errors)
        said = redact.current().redact(said)
        return vendor_error(
            ERRORS,
            f"{self.name}: {method} {path} -> HTTP {status}: {said}",
            connection=self.name,
            status=status,
            said=said,
            code=code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _ticket(self, document: Any, external_id: str, *, read: bool = False) -> RemoteTicket:
        """``document`` as a ticket. One that does not parse is ``Unreadable`` (that ticket's
        failure) when read, a ``ProtocolError`` in a write's reply."""
        try:
            return to_remote(document, self.options.marker_field)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
            message = f"{self.name}: ticket {external_id}: Zoho's reply is not a ticket ({exc!r})"
            if read:
                raise Unreadable(
                    message, connection=self.name, external_id=external_id, raw=document
                ) from None
            raise ProtocolError(message, connection=self.name) from None

    def _create_body(self, values: Mapping[str, str | None], marker: str) -> dict[str, Any]:
        present = {k: v for k, v in values.items() if v not in (None, "")}
        body, problems = to_body(present)
        department = body.get("departmentId") or self.options.default_department_id
        if not department:
            problems.append("queue: needed to create (or set options.default_department_id)")
        body["departmentId"] = department
        email = present.get("requester_email")
        if email:
            body["contact"] = {"email": email, "lastName": email.split("@", 1)[0] or email}
        elif self.options.default_contact_id:
            body["contactId"] = self.options.default_contact_id
        else:
            problems.append("requester_email: needed to create (or set options.default_contact_id)")
        if problems:
            raise ItemError(
                f"{self.name}: cannot create: " + "; ".join(problems), connection=self.name
            )
        body["cf"] = {self.options.marker_field: encode_marker(marker)}
        return body


def _document(response: Response) -> Any:
    try:
        return response.json()
    except ProtocolError:
        return None  # an error page that is not JSON: its status still tells what happened


def _items(response: Response, connection: str) -> list[dict[str, Any]]:
    """The ``data`` of a search reply; 204 (no content) is Zoho's empty result."""
    if response.status == 204 or not response.body:
        return []
    document = response.json()
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(isinstance(i, dict) and "id" in i for i in data):
        raise ProtocolError(
            f"{connection}: Zoho's search reply has no list of tickets under 'data'",
            connection=connection,
        )
    return data


def _comment_items(response: Response, connection: str, external_id: str) -> list[Any]:
    """The ``data`` of a comment list; 204 (tolerated, as for ticket lists) is none."""
    if response.status == 204 or not response.body:
        return []
    document = response.json()
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise ProtocolError(
            f"{connection}: ticket {external_id}: Zoho's comment list has no 'data' list",
            connection=connection,
        )
    return data
