"""Engine and sessions for the mirror, with the settings each dialect needs.

SQLite (§7.1): WAL mode, a busy timeout, foreign keys on. Other programs write the same
file while the daemon runs, so the engine's write transactions start with ``BEGIN
IMMEDIATE``: a deferred transaction that reads and then writes can fail at once with
SQLITE_BUSY when another writer got in between, whatever the busy timeout says. Reads
(``status``, dry runs) use plain deferred transactions and never block writers.

PostgreSQL: a plain ``postgresql://`` URL works (SQLAlchemy 2.1 maps it to psycopg 3).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from sync.errors import DatabaseError

SQLITE_BUSY_TIMEOUT_S = 30.0


class Mirror:
    """The mirror database: one engine, a read and a write session factory."""

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.engine = _create(self.url, echo=echo)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(ticketsync_write=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sqlite_path(self) -> Path | None:
        """The database file on SQLite (None for in-memory or other dialects)."""
        if self.dialect != "sqlite" or not self.url.database or self.url.database == ":memory:":
            return None
        return Path(self.url.database)

    def redacted_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; closing it ends the transaction (objects stay loaded)."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self, origin: str | None = None) -> Iterator[Session]:
        """A write transaction, committed on success and rolled back on error.

        With ``origin``, the change-feed triggers attribute writes to ``tickets`` in this
        transaction to that connection, which therefore does not see them as local edits.
        """
        with self._write.begin() as session:
            if origin is not None:
                set_origin(session, origin)
            yield session
            if origin is not None:
                clear_origin(session)

    def dispose(self) -> None:
        self.engine.dispose()


def set_origin(session: Session, origin: str) -> None:
    """Mark the rest of this transaction's ticket writes as coming from ``origin``."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT set_config('ticketsync.origin', :o, true)"), {"o": origin})
    else:
        session.execute(text("DELETE FROM sync_origin WHERE id = 1"))
        session.execute(text("INSERT INTO sync_origin (id, origin) VALUES (1, :o)"), {"o": origin})


def clear_origin(session: Session) -> None:
    """End the origin mark before commit (SQLite: no other writer may ever see it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT set_config('ticketsync.origin', '', true)"))
    else:
        session.execute(text("DELETE FROM sync_origin WHERE id = 1"))


def _create(url: URL, *, echo: bool) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _create_sqlite(url, echo=echo)
    try:
        return create_engine(url, echo=echo, pool_pre_ping=True)
    except ModuleNotFoundError as exc:  # a driver the URL names is not installed
        raise DatabaseError(
            f"database.url: no driver for {url.render_as_string(hide_password=True)} ({exc})"
        ) from None


def _create_sqlite(url: URL, *, echo: bool) -> Engine:
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN is ours (SQLAlchemy recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if url.database and url.database != ":memory:":
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("ticketsync_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def open_mirror(url: str, *, echo: bool = False) -> Mirror:
    """Open the mirror at ``url`` (does not create or migrate anything)."""
    return Mirror(url, echo=echo)
