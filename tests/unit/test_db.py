"""Migrations at head match the models; the change-feed triggers exist and see every writer."""

from __future__ import annotations

import time

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from sync.db import Mirror, migrate, schema_state, triggers
from sync.db.engine import clear_origin, set_origin
from sync.db.models import Base


def _register(mirror: Mirror, *names: str) -> None:
    with mirror.write() as s:
        for name in names:
            s.execute(
                text(
                    "INSERT INTO sync_connections (name, vendor, creates, registered_at, "
                    "consecutive_failures, credentials) VALUES (:n, 'memory', false, "
                    "CURRENT_TIMESTAMP, 0, 'unknown')"
                ),
                {"n": name},
            )


def _dirty(mirror: Mirror) -> dict[tuple[str, int], int]:
    with mirror.read() as s:
        rows = s.execute(text("SELECT connection, ticket_id, version FROM ticket_dirty"))
        return {(r[0], r[1]): r[2] for r in rows}


def test_upgrade_from_empty_reaches_head_and_matches_models(db_url):
    mirror = Mirror(db_url)
    assert schema_state(mirror).current is None
    state = migrate(mirror)
    assert state.up_to_date
    with mirror.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    mirror.dispose()


def test_upgrade_twice_is_a_no_op(mirror):
    assert migrate(mirror).up_to_date


def test_every_trigger_exists_at_head(mirror):
    with mirror.engine.connect() as conn:
        if mirror.dialect == "sqlite":
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'tickets'::regclass "
                    "AND NOT tgisinternal"
                )
            )
        names = {r[0] for r in rows}
    assert set(triggers.NAMES[mirror.dialect]) <= names


def test_raw_sql_from_another_connection_is_recorded(mirror):
    _register(mirror, "a", "b")
    other = create_engine(mirror.url)  # another program, with its own engine
    with other.begin() as conn:
        conn.execute(text("INSERT INTO tickets (title, status) VALUES ('x', 'open')"))
    assert _dirty(mirror) == {("a", 1): 1, ("b", 1): 1}
    with other.begin() as conn:
        conn.execute(text("UPDATE tickets SET status = 'closed' WHERE id = 1"))
    assert _dirty(mirror) == {("a", 1): 2, ("b", 1): 2}
    other.dispose()


def test_engine_writes_skip_their_origin_only(mirror):
    _register(mirror, "a", "b")
    with mirror.write() as s:
        s.execute(text("INSERT INTO tickets (title) VALUES ('x')"))
    with mirror.write(origin="a") as s:
        s.execute(text("UPDATE tickets SET title = 'y' WHERE id = 1"))
    assert _dirty(mirror) == {("a", 1): 1, ("b", 1): 2}
    with mirror.read() as s:
        assert s.execute(text("SELECT count(*) FROM sync_origin")).scalar() == 0


def test_origin_mark_ends_with_its_transaction(mirror):
    _register(mirror, "a")
    with mirror.write() as s:
        s.execute(text("INSERT INTO tickets (title) VALUES ('x')"))
        set_origin(s, "a")
        clear_origin(s)
        s.execute(text("UPDATE tickets SET title = 'z' WHERE id = 1"))
    assert _dirty(mirror) == {("a", 1): 2}


def test_triggers_stamp_created_and_updated_at(mirror):
    with mirror.engine.begin() as conn:
        conn.execute(text("INSERT INTO tickets (title) VALUES ('x')"))
        created, updated = conn.execute(
            text("SELECT created_at, updated_at FROM tickets WHERE id = 1")
        ).one()
        assert created is not None and updated is not None
    time.sleep(0.01)  # SQLite's clock in triggers ticks in milliseconds
    with mirror.engine.begin() as conn:
        conn.execute(text("UPDATE tickets SET title = 'y' WHERE id = 1"))
        later = conn.execute(text("SELECT updated_at FROM tickets WHERE id = 1")).scalar()
    assert str(later) > str(updated)


def test_links_are_unique_per_connection(mirror):
    cols = {
        tuple(u["column_names"])
        for u in inspect(mirror.engine).get_unique_constraints("ticket_links")
    }
    assert ("connection", "external_id") in cols
    assert ("connection", "ticket_id") in cols


def test_the_comment_feed_trigger_exists_at_head(mirror):
    from sync.db import comment_triggers

    with mirror.engine.connect() as conn:
        if mirror.dialect == "sqlite":
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ticket_comments'::regclass "
                    "AND NOT tgisinternal"
                )
            )
        names = {r[0] for r in rows}
    assert set(comment_triggers.NAMES[mirror.dialect]) <= names


def test_migration_0011_downgrades_and_upgrades_again(mirror):
    from alembic import command

    from sync.db.migrate import _alembic_config

    with mirror.engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0010")
    assert "ticket_comments" not in inspect(mirror.engine).get_table_names()
    assert migrate(mirror).up_to_date
    assert "ticket_comments" in inspect(mirror.engine).get_table_names()


def test_migration_0017_downgrades_and_upgrades_again(mirror):
    from alembic import command

    from sync.db.migrate import _alembic_config

    def columns() -> set[str]:
        return {c["name"] for c in inspect(mirror.engine).get_columns("sync_connections")}

    assert "comments_swept_at" in columns()
    with mirror.engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0016")
    assert "comments_swept_at" not in columns()
    assert migrate(mirror).up_to_date
    assert "comments_swept_at" in columns()
