"""Conversations: ticket_comments, their links, their change feed and the counters.

``ticket_comments`` is public: other programs may INSERT into it, and an AFTER INSERT
trigger (``sync.db.comment_triggers``) fills ``comment_dirty`` for every connection but
the write's origin. ``comment_links`` ties a comment to its copy at each connection
(unique on connection and external id); ``comment_counters`` keeps, per connection and
ticket, the vendor's comment counter when the comments were last read and the one the
pull last saw (``due`` while they differ), so unchanged tickets are not re-read and a
read that failed or was killed is done later.
``sync_connections.comments_since`` is when comments were enabled on the connection (the
history rule); ``private_comments_stopped`` why private posts stopped there (a reply
showed another visibility than asked). Comments never touch ``tickets`` or ``ticket_dirty``
(docs/architecture.md §8.5).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db import comment_triggers, triggers
from sync.db.models import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    if op.get_bind().dialect.name == "sqlite":
        return sa.text(triggers.SQLITE_NOW)
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "ticket_comments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author_name", sa.String(255)),
        sa.Column("author_email", sa.String(320)),
        sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", UtcDateTime(), nullable=False, server_default=_now()),
        sa.Column("source", sa.String(64), nullable=False, server_default="local"),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_comments"),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name="fk_ticket_comments_ticket_id_tickets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_ticket_comments_ticket_id", "ticket_comments", ["ticket_id"])
    op.create_table(
        "comment_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("marker", sa.String(128)),
        sa.Column("error", sa.Text()),
        sa.Column("error_kind", sa.String(16)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_comment_links"),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["ticket_comments.id"],
            name="fk_comment_links_comment_id_ticket_comments",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "connection", "external_id", name="uq_comment_links_connection_external_id"
        ),
        sa.UniqueConstraint(
            "comment_id", "connection", name="uq_comment_links_comment_id_connection"
        ),
    )
    op.create_index("ix_comment_links_connection_state", "comment_links", ["connection", "state"])
    op.create_index("ix_comment_links_connection_marker", "comment_links", ["connection", "marker"])
    op.create_table(
        "comment_dirty",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("connection", "comment_id", name="pk_comment_dirty"),
    )
    op.create_table(
        "comment_counters",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("counter", sa.String(255)),
        sa.Column("seen", sa.String(255)),
        sa.Column("due", sa.Boolean(), nullable=False),
        sa.Column("read_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("connection", "ticket_id", name="pk_comment_counters"),
    )
    op.create_index("ix_comment_counters_connection_due", "comment_counters", ["connection", "due"])
    op.add_column("sync_connections", sa.Column("comments_since", UtcDateTime()))
    op.add_column("sync_connections", sa.Column("private_comments_stopped", sa.Text()))
    comment_triggers.create(op.execute, op.get_bind().dialect.name)


def downgrade() -> None:
    comment_triggers.drop(op.execute, op.get_bind().dialect.name)
    # A plain DROP COLUMN (SQLite 3.35+): a batch rebuild of sync_connections would break
    # the tickets' triggers, which read it.
    for column in ("private_comments_stopped", "comments_since"):
        op.execute(f"ALTER TABLE sync_connections DROP COLUMN {column}")
    op.drop_index("ix_comment_counters_connection_due", "comment_counters")
    op.drop_table("comment_counters")
    op.drop_table("comment_dirty")
    op.drop_index("ix_comment_links_connection_marker", "comment_links")
    op.drop_index("ix_comment_links_connection_state", "comment_links")
    op.drop_table("comment_links")
    op.drop_index("ix_ticket_comments_ticket_id", "ticket_comments")
    op.drop_table("ticket_comments")
