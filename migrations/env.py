"""Alembic environment for ticketsync.

``sync.db.migrate`` sets the script location in code and hands the connection over in
``config.attributes["connection"]``; there is no alembic.ini. Offline mode is not
supported: migrations create dialect-specific triggers and need a live connection.
"""

from __future__ import annotations

from alembic import context

from sync.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `ticketsync db upgrade` (sync.db.migrate)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
