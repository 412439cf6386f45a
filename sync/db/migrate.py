"""Schema migrations with Alembic, with the script location set in code (docs/architecture.md §7.1).

The top-level ``migrations/`` folder ships in the wheel as ``sync.migrations``; in a
source checkout it is found beside the package. Two processes that start at once never
migrate together: PostgreSQL takes an advisory lock, SQLite a lock file beside the
database. Migrations run without the statement timeout: a long migration, or a wait for
another process's migration, is not a hung server.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from sync.db.engine import Mirror, private_file
from sync.errors import DatabaseError
from sync.redact import current, url_secrets

#: Any constant unique to ticketsync; the advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x7469636B  # "tick"


def script_location() -> Path:
    """Where the Alembic scripts are: inside the installed package, else the checkout."""
    spec = importlib.util.find_spec("sync.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise DatabaseError("the migrations are missing from this installation; reinstall ticketsync")


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(script_location()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: ``current`` revision (None: empty) against ``head``."""

    exists: bool
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the migration scripts have no head"
    return head


def schema_state(mirror: Mirror) -> SchemaState:
    """Report the database's revision without creating anything.

    A SQLite file that does not exist is reported as not existing (and is not created).
    """
    head = head_revision()
    path = mirror.sqlite_path
    if path is not None and not path.exists():
        return SchemaState(exists=False, current=None, head=head)
    try:
        with mirror.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot open database {mirror.redacted_url()}: {_short(exc, mirror)}"
        ) from None
    return SchemaState(exists=True, current=current, head=head)


def migrate(mirror: Mirror, revision: str = "head") -> SchemaState:
    """Upgrade the database to ``revision``, creating it if needed; safe to run concurrently."""
    path = mirror.sqlite_path
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {path.parent}: {exc}") from None
    try:
        with (
            _migration_lock(mirror),
            mirror.engine.connect() as conn,
            _no_statement_timeout(conn),
        ):
            command.upgrade(_alembic_config(conn), revision)
            conn.commit()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot migrate {mirror.redacted_url()}: {_short(exc, mirror)}"
        ) from None
    return schema_state(mirror)


@contextmanager
def _migration_lock(mirror: Mirror) -> Iterator[None]:
    path = mirror.sqlite_path
    if path is not None:
        lock = path.with_name(path.name + ".migrate-lock")
        with open(private_file(lock, mirror.limits.file_mode, os.O_WRONLY), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    if mirror.dialect != "postgresql":
        yield
        return
    with mirror.engine.connect() as conn, _no_statement_timeout(conn):
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()


@contextmanager
def _no_statement_timeout(conn: Connection) -> Iterator[None]:
    """Lift the statement timeout on ``conn`` inside the block (the pool reuses ``conn``)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.execute(text("SET statement_timeout = 0"))
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(text("RESET statement_timeout"))
        conn.commit()


def _short(exc: SQLAlchemyError, mirror: Mirror) -> str:
    """The driver's first line, without SQLAlchemy's statement dump, secrets masked."""
    orig = getattr(exc, "orig", None) or exc
    line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(exc).__name__
    return current().with_secrets(url_secrets(mirror.url)).redact(line)
