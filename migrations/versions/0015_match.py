"""match_candidates and sync_connections.first_match_at: matching before creating.

A connection that matches on its first import puts each vendor ticket that resembles an
unlinked mirror ticket here instead of importing it, and creates nothing until that import
and its match pass are done (``first_match_at``). Connections that already pulled or
succeeded count as matched, so an upgrade never holds an established connection.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db.models import RedactedJSON, UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "match_candidates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("external_key", sa.String(255), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("snapshot", RedactedJSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("done_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_match_candidates"),
        sa.UniqueConstraint(
            "connection", "external_key", name="uq_match_candidates_connection_external_key"
        ),
    )
    op.create_index(
        "ix_match_candidates_connection_state", "match_candidates", ["connection", "state"]
    )
    op.create_index("ix_match_candidates_ticket_id", "match_candidates", ["ticket_id"])
    # A plain ALTER TABLE, not a batch: on SQLite a batch would rebuild sync_connections,
    # which the triggers on tickets name.
    op.add_column("sync_connections", sa.Column("first_match_at", UtcDateTime(), nullable=True))
    op.execute(
        "UPDATE sync_connections SET first_match_at = registered_at "
        "WHERE cursor IS NOT NULL OR last_success_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_column("sync_connections", "first_match_at")  # SQLite 3.35 or later
    op.drop_index("ix_match_candidates_ticket_id", table_name="match_candidates")
    op.drop_index("ix_match_candidates_connection_state", table_name="match_candidates")
    op.drop_table("match_candidates")
