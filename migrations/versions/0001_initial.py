"""The mirror's tables, the engine's state and the change-feed triggers.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db import triggers
from sync.db.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    if op.get_bind().dialect.name == "sqlite":
        return sa.text(triggers.SQLITE_NOW)
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("title", sa.Text()),
        sa.Column("description", sa.Text()),
        sa.Column("status", sa.String(32)),
        sa.Column("priority", sa.String(32)),
        sa.Column("queue", sa.String(255)),
        sa.Column("assignee", sa.String(255)),
        sa.Column("requester_email", sa.String(320)),
        sa.Column("due_at", UtcDateTime()),
        sa.Column("created_at", UtcDateTime(), server_default=_now()),
        sa.Column("updated_at", UtcDateTime(), server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
    )
    op.create_table(
        "ticket_links",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("remote_modified_at", UtcDateTime()),
        sa.Column("marker", sa.String(128)),
        sa.Column("fail_count", sa.Integer(), nullable=False),
        sa.Column("next_retry_at", UtcDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_error_kind", sa.String(32)),
        sa.Column("missing_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_links"),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name="fk_ticket_links_ticket_id_tickets",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "connection", "external_id", name="uq_ticket_links_connection_external_id"
        ),
        sa.UniqueConstraint("connection", "ticket_id", name="uq_ticket_links_connection_ticket_id"),
    )
    op.create_index(
        "ix_ticket_links_connection_next_retry_at",
        "ticket_links",
        ["connection", "next_retry_at"],
    )
    op.create_table(
        "sync_connections",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("cursor", sa.JSON()),
        sa.Column("creates", sa.Boolean(), nullable=False),
        sa.Column("registered_at", UtcDateTime(), nullable=False),
        sa.Column("last_success_at", UtcDateTime()),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("next_retry_at", UtcDateTime()),
        sa.Column("cooldown_until", UtcDateTime()),
        sa.Column("credentials", sa.String(16), nullable=False),
        sa.Column("last_error", sa.JSON()),
        sa.Column("guard_held", sa.JSON()),
        sa.Column("guard_approved_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("name", name="pk_sync_connections"),
    )
    op.create_table(
        "ticket_dirty",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("connection", "ticket_id", name="pk_ticket_dirty"),
    )
    op.create_table(
        "sync_origin",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sync_origin"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime()),
        sa.Column("duration_s", sa.Float()),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("pulled", sa.Integer(), nullable=False),
        sa.Column("pushed", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_connection_started_at", "runs", ["connection", "started_at"])
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer()),
        sa.Column("external_id", sa.String(255)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("field", sa.String(32)),
        sa.Column("old_value", sa.Text()),
        sa.Column("new_value", sa.Text()),
        sa.Column("note", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_journal"),
    )
    op.create_index("ix_journal_ticket_id", "journal", ["ticket_id"])
    op.create_index("ix_journal_connection_at", "journal", ["connection", "at"])
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(255)),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("base_value", sa.Text()),
        sa.Column("local_value", sa.Text()),
        sa.Column("remote_value", sa.Text()),
        sa.Column("remote_canonical", sa.Text()),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("resolution", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_conflicts"),
    )
    op.create_index("ix_conflicts_connection_resolution", "conflicts", ["connection", "resolution"])
    triggers.create(op.execute, op.get_bind().dialect.name)


def downgrade() -> None:
    triggers.drop(op.execute, op.get_bind().dialect.name)
    for table in (
        "conflicts",
        "journal",
        "runs",
        "sync_origin",
        "ticket_dirty",
        "sync_connections",
        "ticket_links",
        "tickets",
    ):
        op.drop_table(table)
