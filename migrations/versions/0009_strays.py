"""sync_strays: duplicates found at a vendor, reported and never imported.

A pulled vendor ticket that carries one of our create markers, while the marker's mirror
ticket already has a link on that connection, is a stray: a second vendor ticket for one
mirror ticket. It is recorded here once (unique on connection and external id) and listed
by ``status``; ticketsync never deletes it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db.models import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_strays",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("marker", sa.String(128), nullable=False),
        sa.Column("first_seen", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sync_strays"),
        sa.UniqueConstraint(
            "connection", "external_id", name="uq_sync_strays_connection_external_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("sync_strays")
