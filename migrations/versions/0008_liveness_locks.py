"""lock_key on sync_leases and sync_instances: the holder's liveness lock (PostgreSQL).

An instance holds a session-level advisory lock on ``lock_key`` while it holds leases
(``sync.coord.liveness``); the others read ``pg_locks`` to know whether it is still there. NULL:
the holder holds no such lock (behind transaction pooling), so only lease expiry counts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("sync_leases", "sync_instances"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("lock_key", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in ("sync_leases", "sync_instances"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lock_key")
