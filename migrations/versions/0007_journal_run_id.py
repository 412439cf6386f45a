"""journal.run_id index: find one run's entries without scanning the journal.

``ticketsync journal --run ID`` (and an undo of a run) read the entries of one run; the
journal only grows, so without an index that read scans every entry ever written.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_journal_run_id", "journal", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_journal_run_id", table_name="journal")
