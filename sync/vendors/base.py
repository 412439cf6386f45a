"""The adapter contract every vendor implements (the registry is ``sync.vendors.registry``).

An adapter speaks one vendor's API and nothing else: it knows no database and no merge.
It exchanges *vendor values* (the vendor's own spelling, e.g. Kapture's ``"CL"``) keyed by
canonical field names (``status``, ``queue``...); the engine maps them to and from canonical
values through the connection's ``fields`` maps.

Differences between vendors are capability flags on the class, never special cases in
the engine (vdirsyncer ``storage/base.py`` is the model).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sync.config.model import SyncSettings
from sync.errors import Unreadable
from sync.vendors import registry
from sync.vendors.spec import SYNC_FIELDS

if TYPE_CHECKING:
    from sync.config import ConnectionConfig
    from sync.http import HttpClient

#: JSON-serialisable cursor; its shape belongs to the adapter.
Cursor = Any
T = TypeVar("T")


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter may use beyond its connection's config.

    ``http`` builds an ``HttpClient`` for a base URL with the connection's transport
    settings (an adapter may need two: Zoho's API host and its OAuth host). ``state_dir``
    is where an adapter may keep small private files (Zoho's token cache), or None.
    """

    http: Callable[[str], HttpClient]
    state_dir: Path | None = None
    #: Seconds each changed-since pull reaches back before the cursor (``sync.lookback_seconds``).
    lookback_seconds: float = SyncSettings.lookback_seconds
    #: How far a vendor's modified time may run ahead of its ``Date`` before it counts as
    #: unknown, and how far ``newest_seen`` may lead the cursor (``sync.clock_skew_seconds``).
    clock_skew_seconds: float = SyncSettings.clock_skew_seconds


@dataclass(frozen=True)
class Capabilities:
    """What a vendor's API can do.

    ``readable`` / ``writable``: canonical fields the adapter reads from and writes to the
    vendor. ``can_create``: it creates tickets. ``finds_markers``: after a lost create reply,
    ``find_marker`` can tell whether the ticket exists (without it an unfinished create is
    surfaced to the operator, never retried blindly). ``changed_since``: the vendor can list
    tickets changed since a time; without it, the engine asks the adapter to re-poll linked
    tickets by id (``watch``). ``fetch_before_update``: an update must carry fields the
    engine did not change (Kapture's mandatory ``sub_status``), so the engine reads the
    ticket just before the update and merges against that fresh copy. ``markers_in_pull``:
    pulled tickets carry their create marker, so complete pulls that started after a create
    intent and did not bring its marker show that the create never landed. ``one_look``:
    ``find_marker`` reads the tickets themselves, not a search index that may lag behind a
    create, so one look that misses settles a lost create; without it an intent is sent
    again only after two looks at least ``look_apart()`` apart (docs/architecture.md §8.4).
    ``create_followups``: fields a create sets with a second call (Kapture's sub-status,
    Sirportly's first message), which a lost reply may leave unset. ``broader``: per field,
    the wider vendor value a pulled value falls back to in the field's map when it has no
    entry of its own (Sirportly's ``"3/2"`` -> department ``"3"``).
    """

    readable: frozenset[str]
    writable: frozenset[str]
    can_create: bool = True
    finds_markers: bool = True
    changed_since: bool = True
    fetch_before_update: bool = False
    markers_in_pull: bool = False
    one_look: bool = False
    create_followups: frozenset[str] = frozenset()
    broader: Mapping[str, Callable[[str], str | None]] = field(
        default_factory=dict, hash=False, compare=False
    )
    #: Conversations (docs/architecture.md §8.5). ``comments_read``: ``list_comments``
    #: works. ``comments_write``: ``post_comment`` works. ``private_comments``: a post can
    #: be private (an internal note); without it a private comment is never posted there.
    comments_read: bool = False
    comments_write: bool = False
    private_comments: bool = False
    #: ``post_comment`` honours ``OutgoingComment.author_user`` (Sirportly's ``user``):
    #: the engine maps authors only then, and otherwise always adds the attribution line.
    comments_as_user: bool = False
    #: ``comment_counters`` works: many tickets' counters in one request, for vendors
    #: where a new comment may not show in ``changed_since`` (Zoho, whose ``modifiedTime``
    #: may not move); the engine then sweeps the open linked tickets every
    #: ``Adapter.comment_sweep_seconds`` (docs/architecture.md §8.5).
    comment_counters: bool = False
    #: ``conversation_count`` can tell a ticket's comment count: where comments cannot be
    #: read back, a post whose reply was lost is confirmed by the count having gone up by
    #: exactly one (Kapture's ``totalConversationCount``, docs/architecture.md §8.5).
    counts_comments: bool = False


@dataclass(frozen=True)
class RemoteTicket:
    """One ticket as the vendor holds it, normalised but not mapped.

    ``fields`` holds vendor values (strings, or None when empty) keyed by canonical field
    name, for every readable field; ``due_at`` and other times are ISO-8601 UTC strings.
    ``modified_at`` is the vendor's modification time in UTC, or None when the vendor has
    none. ``marker`` is the engine's create marker when the ticket carries one. ``raw`` is
    the vendor's record as received, for error messages and the operator.
    """

    external_id: str
    fields: Mapping[str, str | None]
    modified_at: datetime | None = None
    marker: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: An opaque summary of the ticket's conversation counters (Zoho ``commentCount``,
    #: Sirportly ``update_count`` + ``last_update_posted_at``, Kapture
    #: ``totalConversationCount`` + ``lastConversationTime``), or None when the record
    #: carries none. The engine reads a ticket's comments only when this value moved since
    #: it last read them, or when the ticket is new to it.
    comment_counter: str | None = None
    #: The vendor's modified time when it lies beyond the vendor's now plus
    #: ``sync.clock_skew_seconds``; ``modified_at`` is then None, so the merge treats the
    #: time as unknown (docs/architecture.md §8.2, ``sync.vendors.cursor``).
    future_at: datetime | None = None
    #: Fields whose vendor value the adapter could not read (a key missing from an options
    #: table, a value that does not parse), by canonical name; they are left out of
    #: ``fields``, so that field waits with a per-field error while the rest syncs
    #: (docs/architecture.md §8.2).
    unreadable: Mapping[str, FieldProblem] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class FieldProblem:
    """One field of a record that parsed: the vendor's ``value`` as text, and ``error``
    (what is wrong and what to do)."""

    value: str | None
    error: str

    def describe(self, name: str) -> str:
        return f"the vendor's {name} {self.value!r}: {self.error}"


@dataclass(frozen=True)
class RecordFailure:
    """A record that did not parse: one ticket's problem, not its page's
    (docs/architecture.md §8.2). ``external_id`` is None when the record names no id."""

    external_id: str | None
    error: str
    raw: str = ""

    @classmethod
    def of(cls, exc: Unreadable) -> RecordFailure:
        return cls(exc.external_id, str(exc), exc.raw)


@dataclass(frozen=True)
class RemoteComment:
    """One comment (public reply or private note) as the vendor holds it.

    ``external_id`` is unique per connection (Kapture's notes carry none: its adapter
    derives one from a hash of sentDate, sender_name and detail). ``marker`` is the
    engine's post marker when the body carries one (``sync.vendors.comments``).
    ``body`` is plain text, with the marker line removed.
    """

    external_id: str
    body: str
    is_public: bool
    author_name: str | None = None
    author_email: str | None = None
    created_at: datetime | None = None
    marker: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class OutgoingComment:
    """A comment the engine posts. ``body`` already holds the attribution prefix where
    the connection asks for one; the adapter appends the marker line itself
    (``sync.vendors.comments.with_marker``) so ``find_comment`` can find it after a lost
    reply. ``author_user`` is the vendor's user id to post as, from the connection's
    author map, or None to post as the API user."""

    body: str
    is_public: bool
    marker: str
    author_name: str | None = None
    author_email: str | None = None
    author_user: str | None = None


@dataclass(frozen=True)
class MatchKeys:
    """What matching compares of a vendor ticket (docs/architecture.md §8.7), unnormalised:
    the requester's e-mail, the subject, the creation time (UTC) and an external reference
    that names the mirror's ticket id, each None where the vendor carries none."""

    requester_email: str | None = None
    subject: str | None = None
    created_at: datetime | None = None
    reference: str | None = None


class Watch(tuple[str, ...]):
    """Linked external ids to re-poll (vendors without changed-since): the ``open_count``
    first ones are tickets not yet resolved or closed, the rest are, so an adapter can give
    the closed ones a lower share of its budget (docs/architecture.md §7.12)."""

    open_count: int

    def __new__(cls, open_ids: Sequence[str] = (), closed_ids: Sequence[str] = ()) -> Watch:
        watch = super().__new__(cls, (*open_ids, *closed_ids))
        watch.open_count = len(open_ids)
        return watch


@dataclass(frozen=True)
class Page:
    """A page of changed tickets and the cursor to resume *after* this page; ``failures``:
    the page's records that did not parse (each one ticket's error)."""

    tickets: Sequence[RemoteTicket]
    cursor: Cursor
    failures: Sequence[RecordFailure] = ()


class Adapter(ABC):
    """One connection's view of one vendor.

    Contract for every method: vendor failures raise ``sync.errors.VendorError``
    subclasses (``ItemError`` for one ticket, ``AuthRejected``, ``Retriable``,
    ``ProtocolError`` for a malformed answer); nothing else escapes for vendor reasons.
    """

    vendor: ClassVar[str]
    #: Class-level for real vendors; the in-memory adapter sets it per instance.
    capabilities: Capabilities
    #: With ``capabilities.comment_counters``: how often the engine sweeps the counters of
    #: the open linked tickets (seconds), and how many ids one ``comment_counters`` call
    #: takes at most. None: no sweep.
    comment_sweep_seconds: float | None = None
    counters_per_call: ClassVar[int] = 100

    def __init__(self, connection: ConnectionConfig, context: AdapterContext) -> None:
        self.connection = connection
        self.context = context
        self._clients: list[HttpClient] = []

    def client(self, base_url: str | None = None) -> HttpClient:
        """A new HTTP client for ``base_url`` (default: the connection's), closed by ``aclose``."""
        http = self.context.http(base_url or self.connection.base_url)
        self._clients.append(http)
        return http

    @property
    def name(self) -> str:
        """The connection's name, for messages."""
        return self.connection.name

    @abstractmethod
    def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        """Yield pages of tickets changed since ``cursor`` (None: from the beginning).

        The adapter applies its own lookback window, so a ticket may be yielded again;
        the engine treats repeats as no-ops. Each page's cursor may be stored once that
        page is committed. ``watch`` lists linked external ids to re-poll, for vendors
        without a changed-since API.
        """

    @abstractmethod
    async def get(self, external_id: str) -> RemoteTicket | None:
        """Return the ticket, or None when the vendor says it does not exist."""

    @abstractmethod
    async def update(
        self, external_id: str, changes: Mapping[str, str | None]
    ) -> RemoteTicket | None:
        """Write ``changes`` (vendor values of writable fields) to the ticket.

        Returns the ticket as the vendor holds it after the write when its reply says so,
        else None. Not retried here: a failed write is retried by the engine.
        """

    async def create(self, values: Mapping[str, str | None], marker: str) -> RemoteTicket:
        """Create a ticket carrying ``marker`` where ``find_marker`` can find it."""
        raise NotImplementedError(f"{self.vendor} does not create tickets")

    async def find_marker(self, marker: str, since: datetime | None = None) -> RemoteTicket | None:
        """Return the ticket carrying ``marker``, or None if no such ticket exists.

        ``since``: when the create intent was recorded (the ticket cannot be older), for
        vendors that can only scan by date.
        """
        raise NotImplementedError(f"{self.vendor} cannot search for create markers")

    async def list_comments(self, external_id: str) -> Sequence[RemoteComment]:
        """Every comment of the ticket, oldest first (``capabilities.comments_read``)."""
        raise NotImplementedError(f"{self.vendor} does not read comments")

    async def post_comment(self, external_id: str, comment: OutgoingComment) -> RemoteComment:
        """Post ``comment`` on the ticket and return it as the vendor now holds it
        (``capabilities.comments_write``). The adapter sends the visibility explicitly and
        raises ``ProtocolError`` when the reply shows another visibility than asked."""
        raise NotImplementedError(f"{self.vendor} does not post comments")

    async def comment_counters(self, external_ids: Sequence[str]) -> Mapping[str, str | None]:
        """The comment counters (``RemoteTicket.comment_counter``) of up to
        ``counters_per_call`` tickets, in one request (``capabilities.comment_counters``).
        A ticket the vendor no longer has is left out of the mapping."""
        raise NotImplementedError(f"{self.vendor} does not read comment counters in bulk")

    async def find_comment(self, external_id: str, marker: str) -> RemoteComment | None:
        """The ticket's comment carrying ``marker``, or None; for posts whose reply was lost."""
        for comment in await self.list_comments(external_id):
            if comment.marker == marker:
                return comment
        return None

    async def reread(self, external_ids: Sequence[str]) -> AsyncIterator[Page]:
        """Read these tickets again (their records failed before), as pages whose cursor
        is not stored. One ``get`` each; vendors that read many ids at once batch them.
        A ticket the vendor no longer has is simply absent."""
        for external_id in external_ids:
            try:
                ticket = await self.get(external_id)
            except Unreadable as exc:
                yield Page([], None, [RecordFailure.of(exc)])
                continue
            yield Page([ticket] if ticket is not None else [], None)

    def match_keys(self, ticket: RemoteTicket) -> MatchKeys:
        """The keys matching compares (docs/architecture.md §8.7): by default the e-mail and
        subject from ``fields``; a vendor whose record carries a creation time or an external
        reference reads them from ``raw``. Never raises: an unreadable key is None."""
        return MatchKeys(ticket.fields.get("requester_email"), ticket.fields.get("title"))

    async def conversation_count(self, external_id: str) -> int | None:
        """The ticket's comment count as the vendor shows it on a read, or None when this
        read shows none (``capabilities.counts_comments``)."""
        raise NotImplementedError(f"{self.vendor} does not count comments")

    def lookback(self, override: float | None = None) -> timedelta:
        """How far a pull reaches back before its cursor: the connection's own
        ``options.lookback_seconds`` when given, else ``sync.lookback_seconds``."""
        return timedelta(seconds=self.context.lookback_seconds if override is None else override)

    def look_apart(self) -> timedelta:
        """How far apart two looks for a lost create must be (docs/architecture.md §8.4): the
        connection's pull lookback, which covers the vendor's lag in listing a new ticket."""
        return self.lookback()

    def id_key(self, external_id: str) -> str:
        """The form of an external id used for comparisons (ProProfs drops leading zeros)."""
        return external_id

    async def check(self) -> None:
        """Make one cheap authenticated call; raise ``AuthRejected`` if rejected."""
        async for _ in self.changed_since(None):
            break

    def cooldown_until(self) -> float | None:
        """The latest rate-limit cool-down (epoch seconds) any of its clients is under."""
        until = [c.cooldown_until for c in self._clients if c.cooldown_until is not None]
        return max(until) if until else None

    async def aclose(self) -> None:
        """Release what the adapter holds (its HTTP sessions)."""
        for http in self._clients:
            await http.aclose()
        self._clients.clear()


async def read_each(
    items: Iterable[T], read: Callable[[T], Awaitable[RemoteTicket | None]]
) -> tuple[list[RemoteTicket], list[RecordFailure]]:
    """``read`` every item of a page, concurrently (the HTTP client bounds it), in order; a
    record that does not parse (``Unreadable``) is that ticket's failure, not its page's
    (docs/architecture.md §8.2). None (deleted since listed) is skipped."""

    async def one(item: T) -> RemoteTicket | RecordFailure | None:
        try:
            return await read(item)
        except Unreadable as exc:
            return RecordFailure.of(exc)

    results = await asyncio.gather(*(one(item) for item in items))
    tickets = [r for r in results if isinstance(r, RemoteTicket)]
    return tickets, [r for r in results if isinstance(r, RecordFailure)]


def adapter_class(vendor: str) -> type[Adapter]:
    """The adapter class of ``vendor`` (importing its module); KeyError when unknown."""
    cls: type[Adapter] = registry.load(registry.spec(vendor).adapter)
    return cls


def registered() -> Mapping[str, type[Adapter]]:
    """Every vendor id and its adapter class (importing every adapter module)."""
    return {vendor: adapter_class(vendor) for vendor in registry.VENDORS}


__all__ = [
    "SYNC_FIELDS",
    "Adapter",
    "AdapterContext",
    "Capabilities",
    "Cursor",
    "FieldProblem",
    "MatchKeys",
    "OutgoingComment",
    "Page",
    "RecordFailure",
    "RemoteComment",
    "RemoteTicket",
    "Watch",
    "adapter_class",
    "read_each",
    "registered",
]
