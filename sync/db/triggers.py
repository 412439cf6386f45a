"""Change-feed triggers on ``tickets``, per dialect (docs/architecture.md §2.3, §7.1, §7.6).

Every write to ``tickets``, by any program, marks the ticket dirty for every registered
connection except the write's origin, and keeps ``updated_at`` current when the writer
left it unchanged. The origin is the connection an engine write comes from: on SQLite a
row in ``sync_origin`` that the engine inserts and deletes inside its own transaction (a
trigger may not read a temp table, and no writer but the engine ever sees the row); on
PostgreSQL the transaction-local setting ``ticketsync.origin``. Triggers use only
built-in functions, never one the daemon registers.

SQLite batch ALTERs rebuild the table and drop its triggers, so every migration that
touches ``tickets`` calls ``create(op)`` again; ``NAMES`` lets a test assert they exist.
Functions are versioned by name so old migrations keep meaning what they meant.

On PostgreSQL the feed also sends a payload-less ``NOTIFY`` on ``NOTIFY_CHANNEL``
(``ticketsync_feed_v2``, migration 0010): the daemon LISTENs and pushes at once
(``sync.daemon.wake``). Notifications of one transaction collapse into one at its COMMIT,
so a 1,000-row UPDATE is one notification; an engine write sends one too, which costs the
daemon one probe query and no run.
"""

from __future__ import annotations

from collections.abc import Callable

#: The triggers that must exist at head, per dialect.
NAMES = {
    "sqlite": ("tickets_feed_insert", "tickets_feed_update"),
    "postgresql": ("tickets_touch", "tickets_feed"),
}

SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"

_SQLITE_MARK = f"""
    INSERT INTO ticket_dirty (connection, ticket_id, version, changed_at)
    SELECT c.name, NEW.id, 1, {SQLITE_NOW} FROM sync_connections c
    WHERE c.name IS NOT (SELECT o.origin FROM sync_origin o WHERE o.id = 1)
    ON CONFLICT (connection, ticket_id)
    DO UPDATE SET version = ticket_dirty.version + 1, changed_at = excluded.changed_at;
"""

SQLITE_V1 = (
    f"""CREATE TRIGGER tickets_feed_insert AFTER INSERT ON tickets
    BEGIN {_SQLITE_MARK} END""",
    # Touch and mark in one trigger: the inner UPDATE does not fire this trigger again
    # (recursive_triggers is off), so one write yields one mark.
    f"""CREATE TRIGGER tickets_feed_update AFTER UPDATE ON tickets
    BEGIN
    UPDATE tickets SET updated_at = {SQLITE_NOW}
        WHERE id = NEW.id AND NEW.updated_at IS OLD.updated_at;
    {_SQLITE_MARK}
    END""",
)

POSTGRESQL_V1 = (
    """CREATE OR REPLACE FUNCTION ticketsync_touch_v1() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := now();
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE OR REPLACE FUNCTION ticketsync_feed_v1() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ticket_dirty (connection, ticket_id, version, changed_at)
        SELECT c.name, NEW.id, 1, now() FROM sync_connections c
        WHERE c.name IS DISTINCT FROM NULLIF(current_setting('ticketsync.origin', true), '')
        ON CONFLICT (connection, ticket_id)
        DO UPDATE SET version = ticket_dirty.version + 1, changed_at = EXCLUDED.changed_at;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER tickets_touch BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION ticketsync_touch_v1()""",
    """CREATE TRIGGER tickets_feed AFTER INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION ticketsync_feed_v1()""",
)

#: The channel the PostgreSQL change feed notifies (docs/architecture.md §8.6).
NOTIFY_CHANNEL = "ticketsync_dirty"

POSTGRESQL_FEED_V2 = f"""CREATE OR REPLACE FUNCTION ticketsync_feed_v2() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ticket_dirty (connection, ticket_id, version, changed_at)
        SELECT c.name, NEW.id, 1, now() FROM sync_connections c
        WHERE c.name IS DISTINCT FROM NULLIF(current_setting('ticketsync.origin', true), '')
        ON CONFLICT (connection, ticket_id)
        DO UPDATE SET version = ticket_dirty.version + 1, changed_at = EXCLUDED.changed_at;
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
        RETURN NULL;
    END $$"""

POSTGRESQL_V2 = (
    POSTGRESQL_V1[0],
    POSTGRESQL_FEED_V2,
    POSTGRESQL_V1[2],
    """CREATE TRIGGER tickets_feed AFTER INSERT OR UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION ticketsync_feed_v2()""",
)

_DROP = {
    "sqlite": tuple(f"DROP TRIGGER IF EXISTS {n}" for n in NAMES["sqlite"]),
    "postgresql": tuple(f"DROP TRIGGER IF EXISTS {n} ON tickets" for n in NAMES["postgresql"]),
}
_CREATE = {"sqlite": SQLITE_V1, "postgresql": POSTGRESQL_V2}
#: The PostgreSQL triggers before migration 0010 (its downgrade).
_POSTGRESQL_BEFORE_0010 = _DROP["postgresql"] + POSTGRESQL_V1


def create(execute: Callable[[str], object], dialect: str) -> None:
    """(Re)create the triggers for ``dialect`` by calling ``execute`` with each statement."""
    if dialect not in _CREATE:
        raise ValueError(f"no change-feed triggers for the {dialect} dialect")
    for statement in _DROP[dialect] + _CREATE[dialect]:
        execute(statement)


def drop(execute: Callable[[str], object], dialect: str) -> None:
    """Drop the triggers for ``dialect``."""
    for statement in _DROP.get(dialect, ()):
        execute(statement)


def downgrade_notify(execute: Callable[[str], object]) -> None:
    """Put back the PostgreSQL triggers without ``NOTIFY`` (migration 0010's downgrade)."""
    for statement in _POSTGRESQL_BEFORE_0010:
        execute(statement)
    execute("DROP FUNCTION IF EXISTS ticketsync_feed_v2()")
