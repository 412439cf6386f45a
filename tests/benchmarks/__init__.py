"""Benchmarks of ticketsync against the vendor emulators (docs/architecture.md §3.4, §7.15, issue
11).

They measure; the test suite asserts behaviour. Run them with ``python -m tests.benchmarks``
(``--help`` lists the options); ``tests/unit/test_benchmarks_smoke.py`` runs a tiny version
so they keep working. Every measurement talks to an emulator on 127.0.0.1 and a SQLite
mirror in a temporary folder, prints a table and lands in one JSON file.

- ``push``: N local edits pushed with per-request latency L, concurrency C and rate R,
  against the physical bound max(requests·L/C, requests/R); a latency-bound and a
  rate-bound run (docs/architecture.md §7.15).
- ``pull``: the first import of N remote tickets, each size in its own process so that
  peak RSS is its own.
- ``idle``: a run with nothing changed: HTTP requests, SQL statements, writes.
- ``changes``: 100 changed tickets (local, then remote) in a small and a large mirror.
"""
