"""runs.future_dated and sync_pull_failures (docs/architecture.md §8.2).

``ix_ticket_links_failing`` (a partial index) lets a run count and name its failing links
at the cost of the failures, not of the links. ``runs.future_dated`` counts the tickets a
run found dated beyond the vendor's clock plus
``sync.clock_skew_seconds``. ``sync_pull_failures`` keeps the vendor tickets without a link
whose record could not be read: connection, external id, the error, the raw value
(redacted, capped), first and last seen. They are read again on every run and the row goes
when the ticket reads cleanly.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db.models import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ticket_links_failing",
        "ticket_links",
        ["connection", "ticket_id"],
        sqlite_where=sa.text("last_error IS NOT NULL"),
        postgresql_where=sa.text("last_error IS NOT NULL"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("future_dated", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "sync_pull_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("raw_value", sa.Text(), nullable=True),
        sa.Column("first_seen", UtcDateTime(), nullable=False),
        sa.Column("last_seen", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sync_pull_failures"),
        sa.UniqueConstraint(
            "connection", "external_id", name="uq_sync_pull_failures_connection_external_id"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_links_failing", table_name="ticket_links")
    op.drop_table("sync_pull_failures")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("future_dated")
