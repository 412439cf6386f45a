"""Comment sweep: when a connection last swept its tickets' comment counters
(docs/architecture.md §8.5).

``sync_connections.comments_swept_at``: the end of the last complete sweep of the open
linked tickets' comment counters (Zoho, where a comment may not move ``modifiedTime``);
None until the first. Nothing touches ``tickets``: its triggers stay.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db.models import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sync_connections", sa.Column("comments_swept_at", UtcDateTime()))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch rebuild of sync_connections would break
    # the tickets' triggers, which read it.
    op.execute("ALTER TABLE sync_connections DROP COLUMN comments_swept_at")
