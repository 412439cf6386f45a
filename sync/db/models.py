"""SQLAlchemy models: the mirror's public tables and the engine's own state.

Public (docs/architecture.md §2.3; other programs read and write them with plain SQL):
``tickets`` and ``ticket_links``. Everything else belongs to the engine:

- ``sync_connections``: one row per configured connection: cursor, health, cool-down,
  guard, lease. Triggers read it to know which connections a local write concerns.
- ``sync_leases`` and ``sync_instances`` (PostgreSQL): who syncs which connection, and
  which daemon instances are alive to share them.
- ``ticket_dirty``: the local change feed, one row per (connection, ticket) that some
  writer touched since that connection last synced it. Database triggers maintain it for
  every writer; ``version`` counts writes so a consumer removes only what it has seen.
- ``sync_origin``: on SQLite, the connection a write of the engine comes from (docs/architecture.md
§7.6); the
  triggers skip that connection. PostgreSQL uses a transaction-local setting instead.
- ``journal``: every field change in either direction, every conflict resolution.
- ``conflicts``: same-field conflicts and how they were settled (``manual`` ones wait).
- ``runs``: one row per connection run, for ``status``.
- ``match_candidates``: scored pairs of an unlinked mirror ticket and an unlinked vendor
  ticket, waiting for review or for the pass that carries out the decision.
- ``sync_strays``: vendor tickets that carry our create marker of a ticket already linked
  on that connection (a duplicate create); reported, never imported or deleted.
- ``undo_requests``: ``ticketsync undo`` requests, executed by the connection's next pass
  (docs/architecture.md §8.7).
- ``ticket_comments`` (public: other programs may INSERT) and the engine's
  ``comment_links``, ``comment_dirty`` (the comments' change feed, filled by a trigger)
  and ``comment_counters`` (docs/architecture.md §8.5).

Error messages (``runs.message``, both ``last_error`` columns) are redacted as they are
written, whatever code path writes them (``RedactedText``, ``RedactedJSON``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from sync.redact import current

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC timestamp: ``timestamptz`` on PostgreSQL, ISO text on SQLite (docs/architecture.md
    §7.2).

    Values go in as aware datetimes (naive ones are taken as UTC) and come back aware in
    UTC. SQLite stores ``YYYY-MM-DD HH:MM:SS.ffffff``, the same text the triggers write.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RedactedText(TypeDecorator[str]):
    """Text that is redacted on its way into the database (``sync.redact.current()``).

    For messages built from errors, which may quote what a vendor echoed: whatever path
    wrote them, no known secret or credential-shaped value reaches the table.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else current().redact(value)


class RedactedJSON(TypeDecorator[Any]):
    """JSON whose string values (at any depth) are redacted on the way in."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return _redact_strings(value)


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return current().redact(value)
    if isinstance(value, dict):
        return {k: _redact_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_strings(v) for v in value]
    return value


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str | None] = mapped_column(String(255))
    assignee: Mapped[str | None] = mapped_column(String(255))
    requester_email: Mapped[str | None] = mapped_column(String(320))
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TicketLink(Base):
    """Which external ticket is which internal one, and the base of the three-way merge.

    ``base`` maps a field to ``{"local": canonical, "remote": vendor}``: the last values
    both sides agreed on. ``external_id`` keeps the vendor's spelling; ``external_key`` is
    its normalised form (``Adapter.id_key``: ProProfs' "00700" and "700" are one ticket),
    which lookups use (docs/architecture.md §7.9). ``state`` is ``active``, ``creating`` (intent
    recorded, the
    vendor may or may not have the ticket: ``marker`` finds it) or ``orphaned``.
    ``first_look_at``: when recovery first looked for a ``creating`` link's marker and
    missed it (docs/architecture.md §8.4); NULL until then, and again once it is re-sent.
    """

    __tablename__ = "ticket_links"
    __table_args__ = (
        UniqueConstraint("connection", "external_id"),
        UniqueConstraint("connection", "ticket_id"),
        UniqueConstraint("connection", "external_key"),
        Index(None, "connection", "next_retry_at"),
        Index(None, "connection", "state"),
        # the failing links only: counting and naming them costs what fails (§8.2)
        Index(
            "ix_ticket_links_failing",
            "connection",
            "ticket_id",
            sqlite_where=text("last_error IS NOT NULL"),
            postgresql_where=text("last_error IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False
    )
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(255))
    external_key: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    base: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    remote_modified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    marker: Mapped[str | None] = mapped_column(String(128))
    fail_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(RedactedText)
    last_error_kind: Mapped[str | None] = mapped_column(String(32))
    missing_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    first_look_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )


class SyncConnection(Base):
    __tablename__ = "sync_connections"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32), nullable=False)
    cursor: Mapped[Any] = mapped_column(JSON, nullable=True)
    creates: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cooldown_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    credentials: Mapped[str] = mapped_column(String(16), nullable=False, default="unknown")
    last_error: Mapped[dict[str, Any] | None] = mapped_column(RedactedJSON)
    guard_held: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    guard_approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: When comments were enabled on the connection (the history rule,
    #: docs/architecture.md §8.5); None while its comments are off.
    comments_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: Why private comment posts stopped on the connection (a reply showed another
    #: visibility than asked), or None; cleared by hand once the vendor is checked.
    private_comments_stopped: Mapped[str | None] = mapped_column(RedactedText)
    #: When the first import's match pass finished (docs/architecture.md §8.7); until then a
    #: connection that matches on its first import creates nothing.
    first_match_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: When the connection last completed a sweep of its open linked tickets' comment
    #: counters (docs/architecture.md §8.5), or None.
    comments_swept_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SyncLease(Base):
    """Who syncs a connection (PostgreSQL, several instances; docs/architecture.md §3.4, §7.3).

    ``generation`` grows on every takeover; a run commits only while its generation is the
    row's and ``expires_at`` (database time) lies ahead: that is the fence.
    """

    __tablename__ = "sync_leases"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance: Mapped[str] = mapped_column(String(128), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    lock_key: Mapped[int | None] = mapped_column(BigInteger)  # the holder's liveness lock


class SyncInstance(Base):
    """A running daemon instance (PostgreSQL, several instances; ``sync.coord.spread``).

    Each daemon registers itself at start, refreshes ``seen_at`` (database time) with its
    lease heartbeat and removes its row on a clean stop. An instance is live while
    ``seen_at`` is less than ``sync.lease_seconds`` old; the live ones share the connections.
    """

    __tablename__ = "sync_instances"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    lock_key: Mapped[int | None] = mapped_column(BigInteger)  # its liveness lock


class PullFailure(Base):
    """A vendor ticket without a link whose record could not be read (docs/architecture.md
    §8.2): read again on every run, and deleted once it reads cleanly.

    ``raw_value`` is the record as received, redacted and capped (``errors.Unreadable``).
    """

    __tablename__ = "sync_pull_failures"
    __table_args__ = (UniqueConstraint("connection", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    external_id: Mapped[str] = mapped_column(String(255), nullable=False)
    error: Mapped[str] = mapped_column(RedactedText, nullable=False)
    raw_value: Mapped[str | None] = mapped_column(RedactedText)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)


class SyncStray(Base):
    """A duplicate at a vendor: a pulled ticket whose create marker names a mirror ticket
    that already has a link on that connection (docs/architecture.md §8.4).

    It is linked nowhere, never imported, matched or fanned out, and never deleted by
    ticketsync: ``status`` lists it until someone removes it at the vendor and here.
    """

    __tablename__ = "sync_strays"
    __table_args__ = (UniqueConstraint("connection", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    external_id: Mapped[str] = mapped_column(String(255), nullable=False)
    ticket_id: Mapped[int] = mapped_column(Integer, nullable=False)
    marker: Mapped[str] = mapped_column(String(128), nullable=False)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)


class TicketDirty(Base):
    __tablename__ = "ticket_dirty"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SyncOrigin(Base):
    __tablename__ = "sync_origin"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(64), nullable=False)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index(None, "connection", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="running")
    pulled: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pushed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    conflicts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: Tickets dated beyond the vendor's clock plus the skew (docs/architecture.md §8.2).
    future_dated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(RedactedText)
    #: What started it: scheduled | woken | webhook | once (``sync.engine.state.RUN_KINDS``).
    kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default="scheduled")
    #: Writes the mass-change guard counts (``sync.engine.guard``): updates of linked
    #: tickets either way and creates; 0 for a run that passed by --force or an approval.
    guarded: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


class JournalEntry(Base):
    __tablename__ = "journal"
    __table_args__ = (
        Index(None, "ticket_id"),
        Index(None, "connection", "at"),
        Index(None, "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    run_id: Mapped[int | None] = mapped_column(Integer)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    field: Mapped[str | None] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    #: The lease generation a ``send`` entry's update went out under (PostgreSQL).
    generation: Mapped[int | None] = mapped_column(Integer)
    #: A ``pull`` or ``push`` change in both spellings (docs/architecture.md §8.1):
    #: canonical (the mirror's) and the vendor's. ``old_value``/``new_value`` keep the
    #: spelling of the side written (pulls canonical, pushes the vendor's).
    old_canonical: Mapped[str | None] = mapped_column(Text)
    new_canonical: Mapped[str | None] = mapped_column(Text)
    old_vendor: Mapped[str | None] = mapped_column(Text)
    new_vendor: Mapped[str | None] = mapped_column(Text)
    #: The run an ``undo`` entry takes back (docs/architecture.md §8.7).
    undo_of: Mapped[int | None] = mapped_column(Integer)


class Conflict(Base):
    """Both sides changed one field to different values since the base.

    ``local_value`` is canonical, ``remote_value`` the vendor's value (``remote_canonical``
    its mapping, when it has one). ``resolution``: ``pending`` (manual), ``local`` or
    ``remote``.
    """

    __tablename__ = "conflicts"
    __table_args__ = (Index(None, "connection", "resolution"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    ticket_id: Mapped[int] = mapped_column(Integer, nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(255))
    field: Mapped[str] = mapped_column(String(32), nullable=False)
    base_value: Mapped[str | None] = mapped_column(Text)
    local_value: Mapped[str | None] = mapped_column(Text)
    remote_value: Mapped[str | None] = mapped_column(Text)
    remote_canonical: Mapped[str | None] = mapped_column(Text)
    policy: Mapped[str] = mapped_column(String(16), nullable=False)
    resolution: Mapped[str] = mapped_column(String(16), nullable=False)
    run_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class UndoRequest(Base):
    """A ``ticketsync undo RUN_ID`` waiting for, or done by, its connection's next pass
    (docs/architecture.md §8.7), as ``guard approve`` leaves an approval for it.

    ``connection`` is the undone run's; ``ticket_id`` limits the undo to one ticket.
    ``state``: ``pending`` (recorded), ``running`` (a pass started it; a killed pass leaves
    it so and the next one executes it again), ``done``, ``held`` (the mass-change guard;
    ask again with ``--force``) or ``failed``. ``result`` counts what was restored, what
    became a conflict and what was left; ``executed_by`` is the run that did it.
    """

    __tablename__ = "undo_requests"
    __table_args__ = (Index(None, "connection", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, nullable=False)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    force: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    executed_by: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(RedactedJSON)


class TicketComment(Base):
    """One comment of a ticket: a public reply or a private note (docs/architecture.md §8.5).

    Public: other programs may INSERT rows (a plain INSERT is seen by the comment feed's
    trigger); ``is_public`` defaults to false, so a writer that forgets it never publishes
    a note. ``source`` is the connection the comment came from, or ``local``. Comments
    are append-only: the engine never updates or deletes one.
    """

    __tablename__ = "ticket_comments"
    __table_args__ = (Index(None, "ticket_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)
    author_name: Mapped[str | None] = mapped_column(String(255))
    author_email: Mapped[str | None] = mapped_column(String(320))
    is_public: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    source: Mapped[str] = mapped_column(String(64), nullable=False, default="local")


class CommentLink(Base):
    """A comment's copy at one connection.

    ``state``: ``active`` (linked by the vendor's id), ``posting`` (intent recorded with
    ``marker`` before the post: the vendor may or may not have it), ``unknown`` (a post
    whose reply was lost at a vendor that cannot be searched: never sent again) or
    ``skipped`` (not posted there: ``error`` says why). ``digest`` is the body last seen
    at the vendor, so an edit there is journaled once.
    """

    __tablename__ = "comment_links"
    __table_args__ = (
        UniqueConstraint("connection", "external_id"),
        UniqueConstraint("comment_id", "connection"),
        Index(None, "connection", "state"),
        Index(None, "connection", "marker"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    comment_id: Mapped[int] = mapped_column(
        ForeignKey("ticket_comments.id", ondelete="CASCADE"), nullable=False
    )
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    marker: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(RedactedText)
    #: ``refused`` (the vendor answered no: nothing was posted) or ``lost`` (no answer).
    error_kind: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )


class CommentDirty(Base):
    """The comments' change feed: a comment some connection has not handled yet."""

    __tablename__ = "comment_dirty"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    comment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CommentCounter(Base):
    """A linked ticket's comment counter (``RemoteTicket.comment_counter``): ``counter``
    when its comments were last read, ``seen`` as the pull last saw it. ``due``: the
    comments must be read (the counter moved, the ticket is new to us, or the vendor gives
    no counter); the pull sets it in its page's transaction, so a read that failed or was
    killed is not forgotten."""

    __tablename__ = "comment_counters"
    __table_args__ = (Index(None, "connection", "due"),)

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counter: Mapped[str | None] = mapped_column(String(255))
    seen: Mapped[str | None] = mapped_column(String(255))
    due: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class MatchCandidate(Base):
    """A mirror ticket and a vendor ticket that may be one ticket (docs/architecture.md §8.7).

    ``state``: ``pending`` (waiting for review; neither side is imported or created on
    this connection), ``approved`` (a request: the connection's next pass links the pair),
    ``linked`` (done), ``rejected`` (the vendor ticket is imported as usual; ``done_at``
    is set once the pass did it). ``snapshot`` is the vendor side's matching keys, redacted
    and capped, for the reviewer. A vendor ticket has at most one candidate per connection.
    """

    __tablename__ = "match_candidates"
    __table_args__ = (
        UniqueConstraint("connection", "external_key"),
        Index(None, "connection", "state"),
        Index(None, "ticket_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(64), nullable=False)
    ticket_id: Mapped[int] = mapped_column(Integer, nullable=False)
    external_id: Mapped[str] = mapped_column(String(255), nullable=False)
    external_key: Mapped[str] = mapped_column(String(255), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    reasons: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    snapshot: Mapped[dict[str, Any]] = mapped_column(RedactedJSON, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
