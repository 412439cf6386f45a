"""The in-memory vendor: obeys the adapter contract and carries the engine's tests.

``MemoryVendor`` is the vendor's side (its tickets, its clock, its faults); several
adapters may share one by name (``options.store``, default the connection's name), the
way two runs of the daemon share one real vendor. Faults on demand:

- ``fail(method, error, times=1, after=0)``: raise ``error`` on calls of ``method``, from
  the ``after + 1``-th on;
- ``lose_reply(method, times=1)``: apply the write, then raise ``Retriable``;
- ``stale(times=1)``: ``get`` answers with the ticket as it was before the last write;
- ``unavailable(method, times=1)``: the vendor is briefly unavailable (a 503); reads are
  tried again, up to the connection's ``http.max_attempts``, as ``sync.http`` does, and
  a write raises ``Retriable``;
- ``garble(method, times=1)``: the reply is not a ticket (``ProtocolError``);
- ``revoke()``: every call is refused (``AuthRejected``), as with revoked credentials.

Comments (docs/architecture.md §8.5): ``comment`` adds one as if someone wrote it at the
vendor, ``edit_comment`` and ``delete_comment`` change or remove one. A comment does not
move the ticket's modified time, only its counter (``RemoteTicket.comment_counter``) and
its last-comment time, which ``changed_since`` also looks at (as Sirportly's
``last_update_posted_at`` query does). ``lose_reply("post_comment")`` posts and loses the
reply.

Not for production configs: ``vendor: memory`` exists for tests and benchmarks only.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.coord.fence import check_write_fence
from sync.errors import AuthRejected, NotFound, ProtocolError, Retriable, VendorError
from sync.vendors.base import (
    SYNC_FIELDS,
    Adapter,
    AdapterContext,
    Capabilities,
    Cursor,
    OutgoingComment,
    Page,
    RemoteComment,
    RemoteTicket,
)
from sync.vendors.comments import check_visibility, split_marker, with_marker

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
#: Calls that only read: a transient fault on one is retried, as sync.http retries safe requests.
READS = frozenset(
    {"changed_since", "get", "find_marker", "check", "list_comments", "comment_counters"}
)


@dataclass
class _Comment:
    id: str
    body: str  # as stored: the marker line included
    is_public: bool
    author_name: str | None
    author_email: str | None
    created_at: datetime


@dataclass
class _Record:
    fields: dict[str, str | None]
    modified_at: datetime
    marker: str | None = None
    previous: dict[str, str | None] | None = None
    comments: list[_Comment] = field(default_factory=list)
    #: Moves with every comment added, edited or deleted.
    comment_version: int = 0
    commented_at: datetime | None = None

    def changed_at(self) -> datetime:
        """The later of the ticket's modified time and its last comment's time."""
        if self.commented_at is None:
            return self.modified_at
        return max(self.modified_at, self.commented_at)


@dataclass
class MemoryVendor:
    """A vendor's tickets, with a clock that ticks one second per write."""

    records: dict[str, _Record] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    page_size: int = 50
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    _clock: datetime = EPOCH
    _faults: list[tuple[str, str, Any]] = field(default_factory=list)
    _stalls: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    revoked: bool = False
    #: Store new comments with the opposite visibility (a vendor that misfiles them).
    misfiled: bool = False

    def tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def seed(self, **fields: str | None) -> str:
        """Add a ticket as if someone created it at the vendor; return its id."""
        external_id = str(next(self._ids))
        self.records[external_id] = _Record(dict(fields), self.tick())
        return external_id

    def edit(self, external_id: str, **fields: str | None) -> None:
        """Change a ticket as if someone edited it at the vendor."""
        record = self.records[external_id]
        record.previous = dict(record.fields)
        record.fields.update(fields)
        record.modified_at = self.tick()

    def comment(
        self,
        external_id: str,
        body: str,
        *,
        is_public: bool = True,
        author_name: str | None = None,
        author_email: str | None = None,
    ) -> str:
        """Add a comment as if someone wrote it at the vendor; return its id."""
        record = self.records[external_id]
        comment_id = f"c{next(self._ids)}"
        at = self.tick()
        public = is_public != self.misfiled
        record.comments.append(_Comment(comment_id, body, public, author_name, author_email, at))
        record.comment_version += 1
        record.commented_at = at
        return comment_id

    def edit_comment(self, external_id: str, comment_id: str, body: str) -> None:
        record = self.records[external_id]
        for comment in record.comments:
            if comment.id == comment_id:
                comment.body = body
        record.comment_version += 1
        record.commented_at = self.tick()

    def delete_comment(self, external_id: str, comment_id: str) -> None:
        record = self.records[external_id]
        record.comments = [c for c in record.comments if c.id != comment_id]
        record.comment_version += 1
        record.commented_at = self.tick()

    def comments(self, external_id: str) -> list[_Comment]:
        """The ticket's comments as the vendor holds them (marker lines included)."""
        return list(self.records[external_id].comments)

    def fail(self, method: str, error: VendorError, times: int = 1, after: int = 0) -> None:
        """Raise ``error`` on ``times`` calls of ``method``, once ``after`` calls went through
        (``after=2``: the third call fails)."""
        self._faults.extend([(method, "pass", None)] * after + [(method, "fail", error)] * times)

    def lose_reply(self, method: str, times: int = 1) -> None:
        self._faults.extend([(method, "lose", None)] * times)

    def unavailable(self, method: str, times: int = 1) -> None:
        self._faults.extend([(method, "unavailable", None)] * times)

    def garble(self, method: str, times: int = 1) -> None:
        self._faults.extend([(method, "garbled", None)] * times)

    def stall(self, method: str, wait: Callable[[], Awaitable[None]]) -> None:
        """The next ``method`` write awaits ``wait()`` before it leaves (as a write waits
        in a cool-down or on a limiter); its fence is checked after it (``sync.coord.fence``)."""
        self._stalls.append((method, wait))

    def revoke(self) -> None:
        self.revoked = True

    def stale(self, times: int = 1) -> None:
        self._faults.extend([("get", "stale", None)] * times)

    def writes(self) -> list[tuple[str, str | None]]:
        """The create and update calls received, in order."""
        return [c for c in self.calls if c[0] in ("create", "update")]

    def _fault(self, method: str) -> tuple[str, Any] | None:
        for i, (m, kind, arg) in enumerate(self._faults):
            if m == method:
                del self._faults[i]
                return kind, arg
        return None


_STORES: dict[str, MemoryVendor] = {}


def store(name: str) -> MemoryVendor:
    """The shared in-memory vendor called ``name`` (created on first use)."""
    return _STORES.setdefault(name, MemoryVendor())


def reset_stores() -> None:
    _STORES.clear()


class MemoryAdapter(Adapter):
    """Adapter over a ``MemoryVendor``. Options: ``store``, ``writable`` (list of fields),
    ``finds_markers``, ``can_create``, ``comments_read``, ``comments_write``,
    ``private_comments`` and ``comments_as_user`` (booleans, default true);
    ``one_look`` (bool, default true: the store is read directly, so one look settles a
    lost create; false makes recovery take two looks as for a vendor whose search may lag);
    ``comment_sweep_seconds`` (a number: ``comment_counters`` is offered and the engine
    sweeps that often; default none) and ``comments_move_ticket`` (default true; false: a
    comment does not show in ``changed_since``, as may be the case at Zoho)."""

    vendor = "memory"

    def __init__(self, connection: Any, context: AdapterContext | None = None) -> None:
        super().__init__(connection, context or AdapterContext(http=_no_http))
        options: Mapping[str, Any] = connection.options
        self.store = store(str(options.get("store", connection.name)))
        self.capabilities = Capabilities(
            readable=frozenset(SYNC_FIELDS),
            writable=frozenset(options.get("writable", SYNC_FIELDS)),
            can_create=bool(options.get("can_create", True)),
            finds_markers=bool(options.get("finds_markers", True)),
            comments_read=bool(options.get("comments_read", True)),
            comments_write=bool(options.get("comments_write", True)),
            private_comments=bool(options.get("private_comments", True)),
            comments_as_user=bool(options.get("comments_as_user", True)),
            comment_counters=options.get("comment_sweep_seconds") is not None,
            counts_comments=bool(options.get("counts_comments", False)),
            one_look=bool(options.get("one_look", True)),
        )
        sweep = options.get("comment_sweep_seconds")
        self.comment_sweep_seconds = None if sweep is None else float(sweep)
        self._comments_move = bool(options.get("comments_move_ticket", True))

    def _call(self, method: str, arg: str | None = None) -> tuple[str, Any] | None:
        """Record the call and apply the vendor's next fault for ``method``, if any."""
        http = getattr(self.connection, "http", None)
        attempts = getattr(http, "max_attempts", 1)
        while True:
            self.store.calls.append((method, arg))
            if self.store.revoked:
                raise AuthRejected(
                    f"{self.name}: the credentials were revoked", connection=self.name
                )
            fault = self.store._fault(method)
            kind = None if fault is None else fault[0]
            if kind == "unavailable" and method in READS and attempts > 1:
                attempts -= 1
                continue
            if kind == "unavailable":
                raise Retriable(f"{self.name}: {method}: vendor unavailable", connection=self.name)
            if kind == "garbled":
                raise ProtocolError(
                    f"{self.name}: {method}: the reply is not a ticket", connection=self.name
                )
            if fault is not None and kind == "fail":
                raise fault[1]
            return fault

    async def _leave(self, method: str) -> None:
        """A write's way out: its stall (if any), then its last-moment fence."""
        for i, (m, wait) in enumerate(self.store._stalls):
            if m == method:
                del self.store._stalls[i]
                await wait()
                break
        check_write_fence()

    def _remote(self, external_id: str, record: _Record) -> RemoteTicket:
        return RemoteTicket(
            external_id=external_id,
            fields=self._fields(record.fields),
            modified_at=record.modified_at,
            marker=record.marker,
            comment_counter=f"{len(record.comments)}/{record.comment_version}",
        )

    def _fields(self, values: Mapping[str, str | None]) -> dict[str, str | None]:
        """Every readable field, None where the ticket has no value (the contract's shape)."""
        return {n: values.get(n) for n in SYNC_FIELDS if n in self.capabilities.readable}

    async def changed_since(
        self, cursor: Cursor | None, watch: Sequence[str] = ()
    ) -> AsyncIterator[Page]:
        self._call("changed_since")
        since = datetime.fromisoformat(cursor) if cursor else None
        times = {eid: self._changed_at(r) for eid, r in self.store.records.items()}
        changed = sorted((at, eid) for eid, at in times.items() if since is None or at >= since)
        size = self.store.page_size
        for start in range(0, len(changed), size):
            chunk = changed[start : start + size]
            tickets = [self._remote(eid, self.store.records[eid]) for _, eid in chunk]
            yield Page(tickets, chunk[-1][0].isoformat())

    def _changed_at(self, record: _Record) -> datetime:
        return record.changed_at() if self._comments_move else record.modified_at

    async def get(self, external_id: str) -> RemoteTicket | None:
        fault = self._call("get", external_id)
        record = self.store.records.get(external_id)
        if record is None:
            return None
        if fault is not None and fault[0] == "stale" and record.previous is not None:
            return RemoteTicket(external_id, self._fields(record.previous), record.modified_at)
        return self._remote(external_id, record)

    async def update(
        self, external_id: str, changes: Mapping[str, str | None]
    ) -> RemoteTicket | None:
        await self._leave("update")
        fault = self._call("update", external_id)
        if external_id not in self.store.records:
            raise NotFound(f"{self.name}: ticket {external_id} not found", connection=self.name)
        self.store.edit(external_id, **changes)
        if fault is not None and fault[0] == "lose":
            raise Retriable(f"{self.name}: the reply to an update was lost", connection=self.name)
        return self._remote(external_id, self.store.records[external_id])

    async def create(self, values: Mapping[str, str | None], marker: str) -> RemoteTicket:
        await self._leave("create")
        fault = self._call("create", marker)
        external_id = self.store.seed(**values)
        self.store.records[external_id].marker = marker
        if fault is not None and fault[0] == "lose":
            raise Retriable(f"{self.name}: the reply to a create was lost", connection=self.name)
        return self._remote(external_id, self.store.records[external_id])

    async def find_marker(self, marker: str, since: datetime | None = None) -> RemoteTicket | None:
        self._call("find_marker", marker)
        for eid, record in self.store.records.items():
            if record.marker == marker:
                return self._remote(eid, record)
        return None

    async def check(self) -> None:
        self._call("check")

    async def list_comments(self, external_id: str) -> Sequence[RemoteComment]:
        self._call("list_comments", external_id)
        record = self.store.records.get(external_id)
        if record is None:
            raise NotFound(f"{self.name}: ticket {external_id} not found", connection=self.name)
        # oldest first; equal times keep the order they were written in
        return [_remote_comment(c) for c in sorted(record.comments, key=lambda c: c.created_at)]

    async def comment_counters(self, external_ids: Sequence[str]) -> Mapping[str, str | None]:
        """One call for up to ``counters_per_call`` tickets; unknown ids are left out."""
        if len(external_ids) > self.counters_per_call:
            raise ProtocolError(f"{self.name}: more than {self.counters_per_call} ids in one call")
        self._call("comment_counters", ",".join(external_ids))
        records = self.store.records
        return {
            eid: self._remote(eid, records[eid]).comment_counter
            for eid in external_ids
            if eid in records
        }

    async def post_comment(self, external_id: str, comment: OutgoingComment) -> RemoteComment:
        await self._leave("post_comment")
        fault = self._call("post_comment", external_id)
        if external_id not in self.store.records:
            raise NotFound(f"{self.name}: ticket {external_id} not found", connection=self.name)
        if not comment.is_public and not self.capabilities.private_comments:
            raise ProtocolError(f"{self.name}: private comments are not supported")
        comment_id = self.store.comment(
            external_id,
            with_marker(comment.body, comment.marker),
            is_public=comment.is_public,
            author_name=comment.author_user or comment.author_name,
            author_email=comment.author_email,
        )
        if fault is not None and fault[0] == "lose":
            raise Retriable(f"{self.name}: the reply to a comment was lost", connection=self.name)
        stored = next(c for c in self.store.records[external_id].comments if c.id == comment_id)
        posted = _remote_comment(stored)
        check_visibility(self.name, external_id, comment.is_public, posted)
        return posted

    async def conversation_count(self, external_id: str) -> int | None:
        self._call("conversation_count", external_id)
        record = self.store.records.get(external_id)
        return None if record is None else len(record.comments)


def _remote_comment(comment: _Comment) -> RemoteComment:
    body, marker = split_marker(comment.body)
    return RemoteComment(
        external_id=comment.id,
        body=body,
        is_public=comment.is_public,
        author_name=comment.author_name,
        author_email=comment.author_email,
        created_at=comment.created_at,
        marker=marker,
    )


def _no_http(base_url: str) -> Any:
    raise RuntimeError("the memory vendor performs no HTTP")
