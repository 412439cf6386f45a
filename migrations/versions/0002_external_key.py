"""ticket_links.external_key: the normalised external id that lookups compare (docs/architecture.md
§7.9).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Only ``ticket_links`` changes, so the triggers on ``tickets`` are untouched (a SQLite batch
rebuild drops the triggers of the table it rebuilds only). Existing links get their
``external_id`` as key: every adapter so far spelt ids one way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_links") as batch:
        batch.add_column(sa.Column("external_key", sa.String(255)))
    op.execute("UPDATE ticket_links SET external_key = external_id")
    with op.batch_alter_table("ticket_links") as batch:
        batch.create_unique_constraint(
            "uq_ticket_links_connection_external_key", ["connection", "external_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_links") as batch:
        batch.drop_constraint("uq_ticket_links_connection_external_key", type_="unique")
        batch.drop_column("external_key")
