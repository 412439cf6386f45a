"""The long-lived service: the scheduler's jobs, the health and metrics endpoint, reloads.

``service`` runs the daemon (signals, systemd notify and watchdog, SIGHUP reload);
``scheduler`` holds one APScheduler job per connection with its failure backoff; ``endpoint``
serves ``/healthz`` and ``/metrics``; ``metrics`` keeps the Prometheus counters. Coordination
between instances (leases, spreading, liveness) is ``sync.coord``, which ``--run-once`` uses
too (docs/architecture.md §3.4).
"""
