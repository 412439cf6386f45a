"""The mirror database: engine and session factory, migrations, the schema check.

Nothing else lives here: the models are in ``models``, the change-feed triggers in
``triggers``. ``Mirror`` is what the rest of the program holds.
"""

from __future__ import annotations

from sync.db.engine import Mirror, open_mirror
from sync.db.migrate import migrate, schema_state

__all__ = ["Mirror", "migrate", "open_mirror", "schema_state"]
