"""Bounds of the mirror database: timeouts, file modes, URLs and messages without secrets."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError

from sync import redact
from sync.config import Config, load_config, parse_config
from sync.coord.locks import InstanceLock
from sync.db import Mirror, migrate, schema_state
from sync.db.engine import Limits
from sync.db.models import Run, SyncConnection, TicketLink
from sync.errors import ConfigError, DatabaseError
from sync.redact import Redactor

SECRET = "SENTINEL-db-secret-77c1"
CONNECTIONS = """\
connections:
  kap: {vendor: kapture, base_url: "https://acme.kapturecrm.com/", credentials: {token: t}}
"""


def _config(database: dict[str, object]) -> Config:
    return parse_config(
        {
            "connections": {
                "kap": {
                    "vendor": "kapture",
                    "base_url": "https://acme.kapturecrm.com/",
                    "credentials": {"token": "${TOKEN}"},
                }
            },
            "database": database,
        },
        env={"TOKEN": "t"},
    )


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_current", Redactor([SECRET]))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- PostgreSQL timeouts -------------------------------------------------------------------


def test_connect_to_a_silent_server_times_out(silent_server: int) -> None:
    mirror = Mirror(
        f"postgresql+psycopg://ts@127.0.0.1:{silent_server}/ts",
        limits=Limits(connect_timeout=1.0),
    )
    started = time.monotonic()
    with pytest.raises(DatabaseError, match="cannot open database"):
        schema_state(mirror)
    assert time.monotonic() - started < 6  # libpq's floor is 2 s per attempt
    mirror.dispose()


def test_statement_timeout_and_idle_timeout_are_set(mirror: Mirror) -> None:
    if mirror.dialect != "postgresql":
        pytest.skip("PostgreSQL settings")
    with mirror.read() as session:
        assert session.execute(text("SHOW statement_timeout")).scalar() == "10s"
        assert session.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "5min"
    with mirror.engine.connect() as conn:
        params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    assert params["keepalives"] == "1" and params["connect_timeout"] == "5"
    assert int(params["tcp_user_timeout"]) > 0


def test_a_long_statement_is_cancelled(mirror: Mirror) -> None:
    if mirror.dialect != "postgresql":
        pytest.skip("PostgreSQL settings")
    short = Mirror(mirror.url, limits=Limits(statement_timeout=1.0))
    try:
        with pytest.raises(Exception, match="statement timeout"), short.read() as session:
            session.execute(text("SELECT pg_sleep(3)"))
    finally:
        short.dispose()


def test_migrations_run_without_the_statement_timeout_and_restore_it(mirror: Mirror) -> None:
    if mirror.dialect != "postgresql":
        pytest.skip("PostgreSQL settings")
    one = Mirror(mirror.url, limits=Limits(statement_timeout=1.0))
    one.engine.pool._pool.maxsize = 1  # type: ignore[attr-defined]
    try:
        migrate(one)
        with one.read() as session:
            assert session.execute(text("SHOW statement_timeout")).scalar() == "1s"
    finally:
        one.dispose()


def test_configured_limits_reach_the_engine(mirror: Mirror, tmp_path: Path) -> None:
    if mirror.dialect != "postgresql":
        pytest.skip("PostgreSQL settings")
    config = _config(
        {
            "url": mirror.url.render_as_string(hide_password=False),
            "statement_timeout": 2.5,
            "connect_timeout": 1.5,
        }
    )
    configured = Mirror.configured(config.database)
    try:
        assert configured.limits == Limits(1.5, 2.5, 0o600)
        with configured.read() as session:
            assert session.execute(text("SHOW statement_timeout")).scalar() == "2500ms"
    finally:
        configured.dispose()


# --- SQLite file modes --------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_mirror_and_side_files_take_the_file_mode_under_umask_022(
    tmp_path: Path, umask_022: None, mode: int
) -> None:
    path = tmp_path / "mirror.db"
    mirror = Mirror(f"sqlite:///{path}", limits=Limits(file_mode=mode))
    migrate(mirror)
    with mirror.write() as session:
        session.execute(text("SELECT count(*) FROM runs"))
        with InstanceLock(path, "test"):
            files = [path, *tmp_path.glob("mirror.db-*"), *tmp_path.glob("mirror.db.*")]
            names = {f.name for f in files}
            assert {"mirror.db", "mirror.db-wal", "mirror.db-shm", "mirror.db.lock"} <= names
            assert "mirror.db.migrate-lock" in names
            assert {f.name: _mode(f) for f in files} == dict.fromkeys(names, mode)
    mirror.dispose()


def test_an_existing_mirror_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "mirror.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    mirror = Mirror(f"sqlite:///{path}")
    migrate(mirror)
    mirror.dispose()
    assert _mode(path) == 0o640


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    target = tmp_path / "elsewhere"
    (tmp_path / "mirror.db.lock").symlink_to(target)
    with pytest.raises(OSError), InstanceLock(path, "test"):
        pass
    assert not target.exists()


@pytest.mark.parametrize(
    ("value", "expected"), [(0o600, 0o600), (0o660, 0o660), ("0o640", 0o640), ("0660", 0o660)]
)
def test_file_mode_accepted(value: object, expected: int) -> None:
    assert _config({"file_mode": value}).database.file_mode == expected


@pytest.mark.parametrize("value", [0o604, 0o666, 0o700, 0o400, "rw", -1])
def test_file_mode_with_a_world_or_odd_bit_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"database\.file_mode"):
        _config({"file_mode": value})


def test_database_limit_defaults() -> None:
    database = _config({}).database
    assert (database.connect_timeout, database.statement_timeout, database.file_mode) == (
        5.0,
        10.0,
        0o600,
    )
    assert Limits.of(database) == Limits()


# --- URLs and messages --------------------------------------------------------------------

URL = f"postgresql://ts:{SECRET}1@db.example/ts?password={SECRET}2&sslpassword={SECRET}3"


def test_passwords_in_the_url_query_are_masked() -> None:
    printed = Mirror(URL).redacted_url()
    assert SECRET not in printed
    assert printed == "postgresql://ts:***@db.example/ts?password=***&sslpassword=***"
    config = _config({"url": URL})
    assert SECRET not in config.database.redacted_url()
    assert SECRET not in repr(config.database)
    assert {f"{SECRET}1", f"{SECRET}2", f"{SECRET}3"} <= config.secrets()


@pytest.mark.parametrize("key", ["password", "sslpassword"])
def test_a_query_password_is_an_inline_secret(tmp_path: Path, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONNECTIONS + f"database: {{url: 'postgresql://ts@db/ts?{key}=hunter2'}}\n")
    path.chmod(0o644)
    (warning,) = load_config(path).warnings
    assert "hunter2" not in warning


def test_a_database_error_names_no_query_password(silent_server: int) -> None:
    url = f"postgresql+psycopg://ts@127.0.0.1:{silent_server}/ts?password={SECRET}"
    mirror = Mirror(url, limits=Limits(connect_timeout=1.0))
    with pytest.raises(DatabaseError) as info:
        schema_state(mirror)
    assert SECRET not in str(info.value)
    assert "password=***" in str(info.value)


def test_messages_are_redacted_at_the_database_boundary(mirror: Mirror, installed: None) -> None:
    leak = f'vendor said {{"access_token": "{SECRET}"}} and Bearer abc.def'
    with mirror.write() as session:
        session.add(SyncConnection(name="c", vendor="memory", last_error={"message": leak}))
        session.add(Run(connection="c", outcome="failed", message=leak))
    with mirror.write() as session:
        session.execute(update(Run).values(message=f"again {SECRET}"))
    with mirror.read() as session:
        raw = [
            str(value)
            for value in session.execute(
                text("SELECT r.message, c.last_error FROM runs r, sync_connections c")
            ).one()
        ]
    assert all(SECRET not in value and "abc.def" not in value for value in raw), raw
    assert raw[0] == "again ***"
    assert "Bearer ***" in raw[1]


def test_ticket_link_errors_are_redacted(mirror: Mirror, installed: None) -> None:
    assert (
        TicketLink.__table__.c.last_error.type.process_bind_param(  # type: ignore[attr-defined]
            f"x {SECRET}", mirror.engine.dialect
        )
        == "x ***"
    )


def test_a_mirror_in_a_missing_folder_fails_as_sqlite_does(tmp_path: Path) -> None:
    mirror = Mirror(f"sqlite:///{tmp_path / 'missing' / 'mirror.db'}")
    with pytest.raises(OperationalError, match="unable to open database file"):
        mirror.engine.connect()
