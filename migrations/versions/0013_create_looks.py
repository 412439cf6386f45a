"""ticket_links.first_look_at: when recovery first looked for a lost create and missed it.

A create intent whose reply was lost is sent again only after two looks at least the
lookback window apart have both missed it, unless one read settles it at that vendor
(docs/architecture.md §8.4). The first miss's time is kept here; NULL: not looked at yet
(or sent again since).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.db.models import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_links") as batch:
        batch.add_column(sa.Column("first_look_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_links") as batch:
        batch.drop_column("first_look_at")
