"""Wake-ups: a local change pushes at once instead of at the next interval
(docs/architecture.md §8.6).

``Wakes`` keeps, per connection, an event and a loop: a wake-up sets the event; the loop
waits until the wake-ups pause for ``DEBOUNCE_S`` (but no longer than ``MAX_DELAY_S``
after the first), clears the event and calls the run. A wake-up that arrives during that
run sets the event again, which is the "push again after this run" flag: however many
arrive, exactly one follow-up run comes after it. A burst of edits is therefore one or
two runs, never one per edit. A wake-up with ``pull`` (a vendor webhook) makes the next
run a full one, pull included; local wake-ups alone make push-only runs.

``DirtyProbe`` finds the local changes: once a second, one query per feed reads each
connection's newest ``ticket_dirty.changed_at`` (through the table's primary key, which
starts with the connection) and ``comment_dirty.changed_at``, and wakes the connections
whose value passed their high-water mark. Tickets that wait (a backoff, a conflict) keep
their dirty rows, so comparing with the mark, not testing for any row, keeps an idle
daemon idle. A change committed by a transaction that began before the mark is left to
the scheduled run.

``PgListener`` (PostgreSQL): the change feed sends a payload-less ``NOTIFY`` on
``sync.db.triggers.NOTIFY_CHANNEL``; a dedicated connection LISTENs (psycopg's async
notifications: the event loop never blocks) and each notification makes the probe look at
once. While it listens, the probe's own round slows to ``FALLBACK_S``; while it is down
(a database restart, transaction pooling) the probe runs every second, and the listener
reconnects by itself. It also LISTENs on ``WAKE_CHANNEL``: a webhook that reached an
instance which does not hold the connection's lease is passed on there (``forward``,
payload = the connection's name) to the one that does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL

from sync.db import Mirror
from sync.db.models import CommentDirty, TicketDirty
from sync.db.triggers import NOTIFY_CHANNEL

#: Where a webhook is passed on to the holder of its connection's lease (PostgreSQL).
WAKE_CHANNEL = "ticketsync_wake"

log = logging.getLogger("sync.wake")

#: Wait for this pause in the wake-ups before running.
DEBOUNCE_S = 0.1
#: Never wait longer than this after the first wake-up.
MAX_DELAY_S = 1.0
#: How often the change feed is probed.
PROBE_S = 1.0
#: How often it is probed while the PostgreSQL listener is up (a safety net only).
FALLBACK_S = 30.0
#: The wait before the listener reconnects.
RECONNECT_S = 1.0


class Wakes:
    """Per-connection wake-up events, each served by one loop that calls ``run(name)``.

    ``run(name, pull)`` decides whether the woken run may go ahead (backoff, cool-down)
    and serialises it with the scheduled runs; it must not raise. ``pull`` is True when a
    wake-up since the last run asked for one.
    """

    def __init__(self, run: Callable[[str, bool], Awaitable[None]]) -> None:
        self._run = run
        self._pull: set[str] = set()
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def set_connections(self, names: Iterable[str]) -> None:
        """Serve exactly ``names``: start loops for new ones, stop the others'."""
        wanted = set(names)
        for name in set(self._tasks) - wanted:
            self._tasks.pop(name).cancel()
            self._events.pop(name, None)
        for name in wanted - set(self._tasks):
            self._events[name] = asyncio.Event()
            self._tasks[name] = asyncio.ensure_future(self._loop(name, self._events[name]))

    def wake(self, name: str, *, pull: bool = False) -> None:
        """Ask for a run of ``name`` soon, push-only unless ``pull``; unknown names are
        ignored."""
        event = self._events.get(name)
        if event is not None:
            if pull:
                self._pull.add(name)
            event.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Start no more runs; let a run in hand finish for up to ``timeout``, then cancel."""
        self._closing = True
        tasks = list(self._tasks.values())
        for event in self._events.values():
            event.set()  # an idle loop sees the flag and ends
        self._tasks.clear()
        self._events.clear()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _loop(self, name: str, event: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await event.wait()
            if self._closing:
                return
            deadline = loop.time() + MAX_DELAY_S
            while True:  # debounce: run once the wake-ups pause, or at the deadline
                event.clear()
                wait = min(DEBOUNCE_S, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except TimeoutError:
                    break
            event.clear()
            if self._closing:
                return
            pull = name in self._pull
            self._pull.discard(name)
            await self._run(name, pull)


class DirtyProbe:
    """Probe ``ticket_dirty`` every ``PROBE_S`` and wake the connections it moved for."""

    def __init__(
        self,
        mirror: Mirror,
        wake: Callable[[str], None],
        every: Callable[[], float] = lambda: PROBE_S,
    ) -> None:
        self.mirror = mirror
        self.wake = wake
        #: The pause between two probes (asked each round).
        self.every = every
        self._marks: dict[str, datetime] | None = None
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Probe now rather than at the end of the pause (a notification came)."""
        self._poked.set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)
            self._task = None

    def newest(self) -> dict[str, datetime]:
        """Each connection's newest change in the feeds: tickets (by the primary key) and
        comments (docs/architecture.md §8.5), one query each."""
        newest: dict[str, datetime] = {}
        with self.mirror.read() as session:
            for model in (TicketDirty, CommentDirty):
                query = select(model.connection, func.max(model.changed_at)).group_by(
                    model.connection
                )
                for name, at in session.execute(query):
                    if at is not None and (name not in newest or at > newest[name]):
                        newest[name] = at
        return newest

    def probe(self) -> list[str]:
        """Move the high-water marks; return the connections with a newer change.

        The first probe only sets the marks: the daemon's first runs take what is there.
        The marks have the feed's time resolution (SQLite: 1 ms): a change committed in the
        very millisecond of a mark wakes nothing by itself; the next change or the
        scheduled run takes it.
        """
        newest = self.newest()
        if self._marks is None:
            self._marks = newest
            return []
        moved = [n for n, at in newest.items() if n not in self._marks or at > self._marks[n]]
        for name in moved:
            self._marks[name] = newest[name]
        return moved

    async def _loop(self) -> None:
        while True:
            self._poked.clear()  # a poke during the probe asks for one more
            try:
                for name in await asyncio.to_thread(self.probe):
                    self.wake(name)
            except Exception as exc:  # a database restart: the next probe retries
                log.debug("change-feed probe failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.every())


def listen_url(url: URL) -> str:
    """``url`` as a libpq connection string for psycopg (its query options kept)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def forward(mirror: Mirror, name: str) -> None:
    """Pass a webhook for ``name`` on to the instance that holds its lease (PostgreSQL)."""
    with mirror.engine.begin() as conn:
        conn.execute(
            text("SELECT pg_notify(:channel, :name)"), {"channel": WAKE_CHANNEL, "name": name}
        )


class PgListener:
    """LISTEN on the change feed's channel and call ``notified`` for each notification,
    and once after each (re)connect, for the changes made while it was away; with
    ``forwarded``, LISTEN on ``WAKE_CHANNEL`` too and call it with each payload."""

    def __init__(
        self,
        conninfo: str,
        notified: Callable[[], None],
        forwarded: Callable[[str], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.notified = notified
        self.forwarded = forwarded
        #: True while the LISTEN is in place.
        self.listening = False
        #: The listening connection's server process (None: not connected).
        self.backend_pid: int | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)
            self._task = None
        self.listening = False

    async def _loop(self) -> None:
        while True:
            try:
                await self._listen()
            except psycopg.Error as exc:
                if self.listening:
                    log.warning("change-feed listener lost its connection; reconnecting: %s", exc)
                else:
                    log.debug("change-feed listener cannot connect: %s", exc)
            finally:
                self.listening = False
                self.backend_pid = None
            await asyncio.sleep(RECONNECT_S)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            if self.forwarded is not None:
                await conn.execute(f"LISTEN {WAKE_CHANNEL}")
            self.backend_pid = conn.info.backend_pid
            self.listening = True
            log.debug("listening on %s", NOTIFY_CHANNEL)
            self.notified()
            async for note in conn.notifies():
                if note.channel == WAKE_CHANNEL and self.forwarded is not None:
                    self.forwarded(note.payload)
                else:
                    self.notified()
