"""An index on ticket_links (connection, state): counting a connection's active links and
finding its create intents no longer reads every link.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ticket_links_connection_state", "ticket_links", ["connection", "state"])


def downgrade() -> None:
    op.drop_index("ix_ticket_links_connection_state", "ticket_links")
