"""Engine and sessions for the mirror, with the settings each dialect needs.

SQLite (docs/architecture.md §7.1): WAL mode, a busy timeout, foreign keys on. Other programs write
the same
file while the daemon runs, so the engine's write transactions start with ``BEGIN
IMMEDIATE``: a deferred transaction that reads and then writes can fail at once with
SQLITE_BUSY when another writer got in between, whatever the busy timeout says. Reads
(``status``, dry runs) use plain deferred transactions and never block writers.

PostgreSQL: a plain ``postgresql://`` URL works (SQLAlchemy 2.1 maps it to psycopg 3).
Every connection has bounds (``Limits``): a connect timeout, a server-side statement timeout
(lifted for migrations, see ``sync.db.migrate``), an idle-in-transaction timeout and TCP
keepalives, so a hung or vanished server ends in a ``DatabaseError`` instead of a hang.

Files: a new SQLite mirror is created with ``Limits.file_mode`` (0600 by default) whatever
the umask; SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, and
``private_file`` opens our own side files (locks) the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from sync.errors import DatabaseError
from sync.redact import redact_url

if TYPE_CHECKING:
    from sync.config import DatabaseConfig

SQLITE_BUSY_TIMEOUT_S = 30.0
#: A session idle inside a transaction this long is ended by the server (its locks freed).
IDLE_IN_TRANSACTION_S = 300.0
#: TCP keepalives: first probe after this idle time, then every interval, give up after count.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3


@dataclass(frozen=True)
class Limits:
    """Bounds on the mirror's connections and files (``database.*`` in the config).

    ``statement_timeout`` of 0 means none. ``file_mode`` applies to files this program
    creates for the mirror.
    """

    connect_timeout: float = 5.0
    statement_timeout: float = 10.0
    file_mode: int = 0o600

    @classmethod
    def of(cls, database: DatabaseConfig) -> Limits:
        return cls(database.connect_timeout, database.statement_timeout, database.file_mode)


class Mirror:
    """The mirror database: one engine, a read and a write session factory."""

    def __init__(self, url: str | URL, *, echo: bool = False, limits: Limits | None = None) -> None:
        self.url = make_url(url)
        self.limits = limits or Limits()
        self.engine = _create(self.url, echo=echo, limits=self.limits)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(ticketsync_write=True), expire_on_commit=False
        )

    @classmethod
    def configured(cls, database: DatabaseConfig) -> Mirror:
        """The mirror of the config's ``database`` section, with its limits."""
        return cls(database.url, limits=Limits.of(database))

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
        """The URL with every password (``password``, ``sslpassword`` too) as ``***``."""
        return redact_url(self.url)

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


def _create(url: URL, *, echo: bool, limits: Limits) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _create_sqlite(url, echo=echo, limits=limits)
    args = _postgres_args(url, limits) if url.get_backend_name() == "postgresql" else {}
    try:
        return create_engine(url, echo=echo, pool_pre_ping=True, connect_args=args)
    except ModuleNotFoundError as exc:  # a driver the URL names is not installed
        raise DatabaseError(f"database.url: no driver for {redact_url(url)} ({exc})") from None


def _postgres_args(url: URL, limits: Limits) -> dict[str, Any]:
    """libpq connection parameters bounding every wait on the server.

    Parameters in the URL's query win (connect_args would replace them); ``options`` in the
    URL come after ours, so the server applies the URL's own ``-c`` settings last.
    """
    options = [f"-c idle_in_transaction_session_timeout={int(IDLE_IN_TRANSACTION_S * 1000)}"]
    if limits.statement_timeout > 0:
        options.append(f"-c statement_timeout={int(limits.statement_timeout * 1000)}")
    given = url.query.get("options")
    options.extend([given] if isinstance(given, str) else given or ())
    args = {
        "connect_timeout": max(1, math.ceil(limits.connect_timeout)),  # libpq: whole seconds
        "options": " ".join(options),
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_S,
        "keepalives_interval": KEEPALIVE_INTERVAL_S,
        "keepalives_count": KEEPALIVE_COUNT,
        # Sent data unacknowledged this long drops the connection (a vanished server).
        "tcp_user_timeout": int((KEEPALIVE_IDLE_S + limits.connect_timeout) * 1000),
    }
    return {k: v for k, v in args.items() if k == "options" or k not in url.query}


def private_file(path: Path, mode: int, flags: int = os.O_RDWR) -> int:
    """Open ``path`` without following a symlink; a new file gets exactly ``mode``.

    The umask does not narrow ``mode`` (it is set again after creation); an existing file
    keeps its mode. Returns the file descriptor.
    """
    base = flags | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, base | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, base)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def side_file_mode(database: Path, default: int = 0o600) -> int:
    """The mode for a side file of ``database``: the database file's own, as SQLite does."""
    try:
        return database.stat().st_mode & 0o660 or default
    except OSError:
        return default


def _create_sqlite(url: URL, *, echo: bool, limits: Limits) -> Engine:
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "do_connect")
    def _before_connect(*_args: Any) -> None:
        # Create the file ourselves with the configured mode; SQLite then opens it.
        database = url.database or ":memory:"
        in_a_file = database != ":memory:" and not database.startswith("file:")
        if in_a_file and not os.path.exists(database):
            # A missing folder or a permission problem: SQLite's own error says it better.
            with contextlib.suppress(OSError):
                os.close(private_file(Path(database), limits.file_mode))

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


def open_mirror(url: str, *, echo: bool = False, limits: Limits | None = None) -> Mirror:
    """Open the mirror at ``url`` (does not create or migrate anything)."""
    return Mirror(url, echo=echo, limits=limits)
