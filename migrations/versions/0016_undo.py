"""undo: request rows, and journal entries in both spellings (docs/architecture.md §8.1, §8.7).

``undo_requests`` holds each ``ticketsync undo`` until its connection's next pass
executes it. ``journal`` gains the canonical and the vendor value of every ``pull`` and
``push`` change (undo restores a pull in the mirror's values and a push in the vendor's),
and ``undo_of``, the run an undo entry takes back. Nothing touches ``tickets``: its
triggers stay.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db.models import RedactedJSON, UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_JOURNAL_TEXT = ("old_canonical", "new_canonical", "old_vendor", "new_vendor")


def upgrade() -> None:
    op.create_table(
        "undo_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("executed_by", sa.Integer(), nullable=True),
        sa.Column("result", RedactedJSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_undo_requests"),
    )
    op.create_index("ix_undo_requests_connection_state", "undo_requests", ["connection", "state"])
    for name in _JOURNAL_TEXT:
        op.add_column("journal", sa.Column(name, sa.Text(), nullable=True))
    op.add_column("journal", sa.Column("undo_of", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journal") as batch:
        for name in (*_JOURNAL_TEXT, "undo_of"):
            batch.drop_column(name)
    op.drop_index("ix_undo_requests_connection_state", table_name="undo_requests")
    op.drop_table("undo_requests")
