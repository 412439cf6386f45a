"""``python -m sync``: the same entry point as the ``ticketsync`` command."""

from sync.cli import main

raise SystemExit(main())
