"""runs.kind: what started a run (scheduled | woken | webhook | once); runs.guarded: the
writes the mass-change guard counts, summed over its window.

Wake-ups and webhooks add runs between the scheduled ones (docs/architecture.md §8.6).
Until now a woken run was told apart by its message ``woken: push only``; those rows
become ``woken`` (and lose the marker), every other existing row ``scheduled``. With
wake-ups a runaway script's edits can spread over many small runs, so the guard counts
the writes of the runs in ``guard.window_seconds`` too (``runs.guarded``; existing rows 0).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_MARKER = "woken: push only"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="scheduled")
        )
        batch.add_column(sa.Column("guarded", sa.Integer, nullable=False, server_default="0"))
    op.execute(
        sa.text("UPDATE runs SET kind = 'woken', message = NULL WHERE message = :m").bindparams(
            m=_MARKER
        )
    )


def downgrade() -> None:
    op.execute(
        sa.text("UPDATE runs SET message = :m WHERE kind = 'woken' AND message IS NULL").bindparams(
            m=_MARKER
        )
    )
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("guarded")
        batch.drop_column("kind")
