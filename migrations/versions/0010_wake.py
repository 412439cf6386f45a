"""The PostgreSQL change feed notifies ``ticketsync_dirty``: the daemon pushes at once.

``ticketsync_feed_v2`` marks the ticket dirty as v1 did and sends a payload-less
``NOTIFY ticketsync_dirty``, which the daemon LISTENs for (``sync.daemon.wake``). SQLite
is untouched: its daemon probes the feed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from sync.db import triggers

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        triggers.create(op.execute, "postgresql")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        triggers.downgrade_notify(op.execute)
