"""What every phase of one connection's run shares: its inputs, its counts and its gates.

The phases (``plan``, ``recover``, ``pull``, ``push``, ``create``) are functions and small
classes over one ``RunState``; ``run.ConnectionRun`` builds it and calls them in order.
Besides the run's inputs it holds what the phases report into (``counts``, the dry run's
``actions``) and the three gates every write passes (docs/architecture.md §7.3): a mirror
transaction commits only under a current lease (``write``), a vendor call waits for the
concurrency gate (``vendor``), and a vendor write is fenced twice: before it queues, and
again by the transport right before its bytes go out (``sync.coord.fence``), after
every wait on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from sync.config.model import CommentSettings, MatchSettings
from sync.coord import fence
from sync.db import Mirror
from sync.db.models import TicketLink
from sync.engine import store
from sync.engine.context import SyncRules
from sync.engine.guard import Guard
from sync.errors import Interrupted, SyncError
from sync.vendors.base import Adapter, Capabilities, Page

T = TypeVar("T")


class Screen(Protocol):
    """What the pull asks of matching (``sync.engine.adopt.Matcher``; a protocol here so
    the state does not import the phase that imports it)."""

    def screen(self, session: Session, page: Page, links: dict[str, TicketLink]) -> set[str]:
        """The keys of the page's vendor tickets held back as match candidates."""
        ...


@dataclass
class Counts:
    pulled: int = 0
    pushed: int = 0
    created: int = 0
    conflicts: int = 0
    errors: int = 0
    #: Tickets whose modified time lay beyond the vendor's now plus ``sync.clock_skew_seconds``
    #: (each once per run; docs/architecture.md §8.2).
    future_dated: int = 0
    #: Strays recorded (``sync.engine.strays``): a metric, not one of the ``runs`` counts.
    strays: int = 0
    #: Comments imported, posted and skipped (docs/architecture.md §8.5): metrics, not
    #: ``runs`` columns.
    comments_pulled: int = 0
    comments_posted: int = 0
    comments_skipped: int = 0
    #: Of ``pulled``, the tickets imported (new in the mirror), which the guard does not count.
    imported: int = 0

    def as_dict(self) -> dict[str, int]:
        """The run's counts as recorded in ``runs`` and printed (metric-only ones left out)."""
        return {k: v for k, v in self.__dict__.items() if k not in METRIC_ONLY}

    def guarded(self) -> int:
        """The writes the mass-change guard counts: updates either way and creates."""
        return self.pushed + self.created + self.pulled - self.imported


#: ``Counts`` fields that are metrics only, not ``runs`` columns.
METRIC_ONLY = frozenset(
    {"strays", "imported", "comments_pulled", "comments_posted", "comments_skipped"}
)


@dataclass
class RunResult:
    connection: str
    outcome: str  # ok | failed | held | interrupted | dry-run
    counts: Counts
    duration_s: float
    error: SyncError | None = None
    #: Planned writes: exact on a dry run, else at most this many (see ``plan``).
    planned: int = 0
    actions: list[str] = field(default_factory=list)
    #: The connection's comments after the run, by ``synced``, ``pending``, ``failed`` and
    #: ``skipped`` (``comment_store.summary``); None while its comments are off.
    comments: dict[str, int] | None = None
    #: Every failing ticket of the connection after the run (its first lines named), and
    #: the ones whose error first appeared or changed in it (docs/architecture.md §8.2).
    failing: int = 0
    failing_lines: list[str] = field(default_factory=list)
    new_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "dry-run")


class Fence(Protocol):
    """What a run asks of its lease before it commits or writes to the vendor (docs/architecture.md
    §7.3)."""

    #: The lease's generation (None before it was taken) and its length in seconds.
    generation: int | None
    seconds: float

    def before_commit(self, session: Session) -> None: ...

    def before_send(self, call_seconds: float) -> None: ...


#: What starts a run (``runs.kind``, docs/architecture.md §8.6): the daemon's interval, a
#: local change (push only), a vendor webhook (a full run), a one-time pass of the CLI.
RUN_KINDS = ("scheduled", "woken", "webhook", "once")


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    force: bool = False
    batch_size: int = 100
    #: Tickets pushed or created at once (the connection's ``http.concurrency``).
    concurrency: int = 1
    guard: Guard = field(default_factory=Guard)
    #: Asked between pages and tickets; True stops the run cleanly (daemon shutdown).
    should_stop: Callable[[], bool] = lambda: False
    #: Told (connection, pages, tickets) after each committed pull page.
    progress: Callable[[str, int, int], None] | None = None
    #: The lease's fence (PostgreSQL with several instances); None: nothing to check.
    fence: Fence | None = None
    #: The longest one vendor call may take (the connection's ``http.total_timeout``).
    call_seconds: float = 60.0
    #: A woken run (docs/architecture.md §8.6): push the dirty tickets and creates only,
    #: with no pull listing and no pull; the lease, fence, guard and rate limits still hold.
    push_only: bool = False
    #: What started the run (one of ``RUN_KINDS``), recorded in ``runs.kind``.
    kind: str = "once"
    #: Matching before creating (docs/architecture.md §8.7); ``on_first_import`` None or
    #: False: the first import imports every vendor ticket.
    match: MatchSettings = field(default_factory=MatchSettings)


class RunState:
    """One run of one connection: its inputs, what it reports, and its gates."""

    def __init__(
        self,
        mirror: Mirror,
        name: str,
        adapter: Adapter,
        rules: SyncRules,
        *,
        direction: str,
        create_when: dict[str, tuple[str, ...]] | None,
        options: RunOptions,
        clock: Callable[[], datetime],
        report: Callable[[str], None],
        comments: CommentSettings | None = None,
    ) -> None:
        self.mirror = mirror
        self.name = name
        self.adapter = adapter
        self.rules = rules
        self.direction = direction
        self.create_when = create_when
        self.options = options
        self.clock = clock
        self.report = report
        self.counts = Counts()
        #: The connection's ``comments`` settings (docs/architecture.md §8.5).
        self.comments = comments or CommentSettings()
        #: When comments were enabled on the connection (``record.start`` reads it).
        self.comments_since: datetime | None = None
        #: True when this run is the one that enabled comments on the connection.
        self.comments_enabled_now = False
        #: Why private posts stopped on this connection, or None (``record.start`` reads it).
        self.private_stopped: str | None = None
        #: The comment summary the run ended with (``RunResult.comments``).
        self.comment_summary: dict[str, int] | None = None
        #: The ``runs`` row of this run (None on a dry run).
        self.run_id: int | None = None
        #: One line per planned or carried-out action (printed on a dry run).
        self.actions: list[str] = []
        #: What the run did besides syncing, for ``runs.message`` ("undo of run #7").
        self.note: str | None = None
        #: Failing tickets whose error first appeared or changed in this run (the daemon
        #: logs these; docs/architecture.md §8.2).
        self.new_failures: list[str] = []
        #: True when --force or an approval let this run past the guard.
        self.guard_passed = False
        self._gate = asyncio.Semaphore(max(1, options.concurrency))
        #: Screens pulled pages for matching (``sync.engine.adopt``); None: imports all.
        self.matcher: Screen | None = None
        #: Whether the push holds back the create of a mirror ticket (a match is pending).
        self.holds: Callable[[int], bool] = lambda ticket_id: False

    @property
    def caps(self) -> Capabilities:
        return self.adapter.capabilities

    @property
    def creates(self) -> bool:
        """True when this connection creates tickets at the vendor."""
        return self.create_when is not None and self.direction != "pull" and self.caps.can_create

    def check_stop(self) -> None:
        """Raise ``Interrupted`` when the daemon is shutting down."""
        if self.options.should_stop():
            raise Interrupted(f"{self.name}: stopped for shutdown", connection=self.name)

    @contextmanager
    def write(self, origin: str | None = None) -> Iterator[Session]:
        """A write transaction of the sync proper: it commits only under a current lease."""
        with self.mirror.write(origin) as session:
            yield session
            if self.options.fence is not None:
                self.options.fence.before_commit(session)

    async def vendor(self, call: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        """One vendor call under the concurrency gate.

        The gate is released as soon as the vendor answers, and the caller yields once
        before its commit, so the next call goes out while this one's bookkeeping runs
        (otherwise replies that arrive together would be committed in lock-step, each
        holding up the next request).
        """
        async with self._gate:
            if not write:
                result = await call()
            else:  # checked inside the gate: a call queued before a pause is fenced too
                self.before_send()
                with fence.write_fence(self.before_send):  # and again as it leaves
                    result = await call()
        await asyncio.sleep(0)
        return result

    def before_send(self) -> None:
        if self.options.fence is not None:
            self.options.fence.before_send(self.options.call_seconds)

    def journal(
        self,
        session: Session,
        action: str,
        ticket_id: int | None,
        external_id: str | None,
        **entry: Any,
    ) -> None:
        """Journal one entry of this run (``entry``: field, old, new, note)."""
        store.journal(
            session,
            run_id=self.run_id,
            connection=self.name,
            action=action,
            ticket_id=ticket_id,
            external_id=external_id,
            **entry,
        )

    def journal_row(self, action: str, **entry: Any) -> dict[str, Any]:
        """One journal row of this run, for ``store.journal_many``."""
        return store.journal_row(run_id=self.run_id, connection=self.name, action=action, **entry)

    def note_failure(self, line: str) -> None:
        """Note a ticket whose error first appeared or changed in this run."""
        self.new_failures.append(line)

    def act(self, line: str) -> None:
        """Note one action (printed at once on a dry run)."""
        self.actions.append(line)
        if self.options.dry_run:
            self.report(line)

    def ticket_message(self, link: TicketLink, text: str) -> str:
        return (
            f"{self.name}: ticket #{link.ticket_id} <-> {link.external_id or '(creating)'}: {text}"
        )
