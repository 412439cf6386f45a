"""The comments' change feed, per dialect (docs/architecture.md §8.5).

Every INSERT into ``ticket_comments``, by any program, adds a ``comment_dirty`` row for
every registered connection except the write's origin: the tickets' origin rule
(``sync.db.triggers``), so a comment the engine imports from connection A fans out to
every other connection and never back to A. Comments never touch ``tickets.updated_at``
or ``ticket_dirty``. On PostgreSQL the trigger also sends the feed's payload-less
``NOTIFY`` (``sync.db.triggers.NOTIFY_CHANNEL``), so the daemon posts at once
(``sync.daemon.wake`` probes both feeds). ``NAMES`` lets a test assert the triggers exist.
"""

from __future__ import annotations

from collections.abc import Callable

from sync.db.triggers import NOTIFY_CHANNEL, SQLITE_NOW

#: The comment triggers that must exist at head, per dialect.
NAMES = {"sqlite": ("ticket_comments_feed",), "postgresql": ("ticket_comments_feed",)}

SQLITE_V1 = (
    f"""CREATE TRIGGER ticket_comments_feed AFTER INSERT ON ticket_comments
    BEGIN
    INSERT INTO comment_dirty (connection, comment_id, changed_at)
    SELECT c.name, NEW.id, {SQLITE_NOW} FROM sync_connections c
    WHERE c.name IS NOT (SELECT o.origin FROM sync_origin o WHERE o.id = 1)
    ON CONFLICT (connection, comment_id) DO NOTHING;
    END""",
)

POSTGRESQL_V1 = (
    f"""CREATE OR REPLACE FUNCTION ticketsync_comment_feed_v1() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO comment_dirty (connection, comment_id, changed_at)
        SELECT c.name, NEW.id, now() FROM sync_connections c
        WHERE c.name IS DISTINCT FROM NULLIF(current_setting('ticketsync.origin', true), '')
        ON CONFLICT (connection, comment_id) DO NOTHING;
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER ticket_comments_feed AFTER INSERT ON ticket_comments
    FOR EACH ROW EXECUTE FUNCTION ticketsync_comment_feed_v1()""",
)

_CREATE = {"sqlite": SQLITE_V1, "postgresql": POSTGRESQL_V1}
_DROP = {
    "sqlite": ("DROP TRIGGER IF EXISTS ticket_comments_feed",),
    "postgresql": (
        "DROP TRIGGER IF EXISTS ticket_comments_feed ON ticket_comments",
        "DROP FUNCTION IF EXISTS ticketsync_comment_feed_v1()",
    ),
}


def create(execute: Callable[[str], object], dialect: str) -> None:
    """(Re)create the comment feed's trigger for ``dialect``."""
    if dialect not in _CREATE:
        raise ValueError(f"no comment-feed trigger for the {dialect} dialect")
    for statement in _DROP[dialect] + _CREATE[dialect]:
        execute(statement)


def drop(execute: Callable[[str], object], dialect: str) -> None:
    """Drop the comment feed's trigger (and its PostgreSQL function)."""
    for statement in _DROP.get(dialect, ()):
        execute(statement)
