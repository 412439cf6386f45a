"""Coordination between instances: who may sync a connection, and fencing.

``locks`` keeps two processes off one connection (a file lock on SQLite, leases on
PostgreSQL); ``lease`` holds a connection's lease with its generation and fences; ``spread``
shares connections fairly between running daemons; ``liveness`` is the advisory-lock session
that tells the others an instance is alive. Both ``--run-once`` and the daemon use them
(docs/architecture.md §3.4, §7.3).
"""
