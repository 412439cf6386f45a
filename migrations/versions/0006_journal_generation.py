"""journal.generation: the lease generation an update was sent under (docs/architecture.md §7.3).

A ``send`` entry is written before each update on PostgreSQL, under a lease; a later pull
that finds the vendor holding a value a superseded generation sent knows it for a late
write of ours, not an agent's edit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("generation")
