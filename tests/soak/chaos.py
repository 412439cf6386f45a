"""The soak's random operations, all drawn from one seeded ``random.Random``.

Each step is one of: a local SQL edit or insert (as another program would make it), an
agent's edit or new ticket at a vendor, a fault queued at a vendor (429, 503, dropped
connections, apply-then-drop on updates and creates, latency, hostile payloads), and the
SIGKILL or SIGSTOP of a daemon. A killed daemon is started again, and a paused one
continued, a little later. Every local and remote edit is recorded with its time, for the
lost-edit check (``tests.soak.check``).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.soak.vendors import FAULTS, FIELDS, PRIORITIES, STATUSES, VENDORS
from tests.soak.world import LEASE_S, Daemon, World


@dataclass
class Edits:
    """What the soak changed, and when (UTC, taken after the change was made)."""

    #: (ticket id, field) -> (value, time) of the last local edit.
    local: dict[tuple[int, str], tuple[str, datetime]] = field(default_factory=dict)
    #: (vendor, external id, field, canonical value, time) of every remote edit.
    remote: list[tuple[str, str, str, str, datetime]] = field(default_factory=list)


def now() -> datetime:
    return datetime.now(UTC)


class Chaos:
    """Random steps against a ``World``; ``counts`` says how many of each were made."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.edits = Edits()
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._later: list[tuple[float, Callable[[], None]]] = []
        self._serial = 0

    # -- the run --------------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        """Random steps for ``seconds``, a random short pause between two."""
        deadline = time.monotonic() + seconds
        steps: list[tuple[Callable[[], None], int]] = [
            (self.local_edit, 30),
            (self.local_insert, 6),
            (self.remote_edit, 20),
            (self.remote_insert, 3),
            (self.fault, 8),
            (self.kill, 3),
            (self.pause, 2),
        ]
        actions, weights = zip(*steps, strict=True)
        while time.monotonic() < deadline:
            self._due()
            self.rng.choices(actions, weights)[0]()
            time.sleep(self.rng.uniform(0.02, 0.25))
        self._due(everything=True)

    def _due(self, everything: bool = False) -> None:
        """Carry out the delayed steps (restarts, continues) whose time has come."""
        moment = time.monotonic()
        keep = []
        for at, step in self._later:
            if everything or at <= moment:
                step()
            else:
                keep.append((at, step))
        self._later = keep

    def _after(self, seconds: float, step: Callable[[], None]) -> None:
        self._later.append((time.monotonic() + seconds, step))

    # -- local ----------------------------------------------------------------------------

    def _value(self, name: str) -> str:
        if name == "status":
            return self.rng.choice(STATUSES)
        if name == "priority":
            return self.rng.choice(PRIORITIES)
        self._serial += 1
        return f"Soak title {self._serial}"

    def local_edit(self) -> None:
        ids = self.world.ticket_ids()
        if not ids:
            return
        ticket_id = self.rng.choice(ids)
        name = self.rng.choice(FIELDS)
        value = self._value(name)
        # an UPDATE to the value the mirror already holds changes nothing: not an edit
        changed = self.world.sql(
            f"UPDATE tickets SET {name} = :v WHERE id = :t AND {name} IS DISTINCT FROM :v "
            "RETURNING id",
            v=value,
            t=ticket_id,
        )
        if changed:
            self.edits.local[(ticket_id, name)] = (value, now())
            self.counts["local edits"] += 1

    def local_insert(self) -> None:
        """A new local ticket; in the ``billing`` queue it is created at every vendor."""
        values = {name: self._value(name) for name in FIELDS}
        queue = self.rng.choice(("billing", "billing", "support"))
        ((ticket_id,),) = self.world.sql(
            "INSERT INTO tickets (title, status, priority, queue, requester_email) "
            "VALUES (:title, :status, :priority, :queue, :email) RETURNING id",
            **values,
            queue=queue,
            email=f"soak{self._serial}@example.com",
        )
        moment = now()
        for name, value in values.items():
            self.edits.local[(int(ticket_id), name)] = (value, moment)
        self.counts["local inserts"] += 1

    # -- remote ---------------------------------------------------------------------------

    def remote_edit(self) -> None:
        name = self.rng.choice(sorted(VENDORS))
        tickets = self.world.vendor_tickets(name)
        if not tickets:
            return
        external_id = self.rng.choice(sorted(tickets))
        field_name = self.rng.choice(FIELDS)
        value = self._value(field_name)
        edit: dict[str, Any] = {"id": external_id, **VENDORS[name].remote_edit(field_name, value)}
        self.world.vendors[name].seed(edit)
        self.edits.remote.append((name, external_id, field_name, value, now()))
        self.counts["remote edits"] += 1

    def remote_insert(self) -> None:
        name = self.rng.choice(sorted(VENDORS))
        self._serial += 1
        self.world.vendors[name].seed(VENDORS[name].plugin.remote_ticket(self._serial))
        self.counts["remote inserts"] += 1

    # -- faults and signals ---------------------------------------------------------------

    def fault(self) -> None:
        name = self.rng.choice(sorted(VENDORS))
        kind, params, route = self.rng.choice(FAULTS)
        fault: dict[str, Any] = {"kind": kind, **params}
        if route is not None:
            fault["match"] = VENDORS[name].plugin.routes[route]
        self.world.fault(name, fault)
        label = params.get("payload") or (
            f"{kind} {params['status']}" if "status" in params else kind
        )
        self.faults[f"{label}{' on ' + route if route else ''}"] += 1
        self.counts["faults"] += 1

    def _running(self) -> list[Daemon]:
        return [d for d in self.world.daemons if d.alive and not d.paused]

    def kill(self) -> None:
        running = self._running()
        if len(running) < 2:  # keep one daemon working
            return
        daemon = self.rng.choice(running)
        daemon.kill()
        self.counts["SIGKILLs"] += 1
        self._after(self.rng.uniform(0.5, 4.0), daemon.start)

    def pause(self) -> None:
        running = self._running()
        if len(running) < 2:
            return
        daemon = self.rng.choice(running)
        daemon.pause()
        self.counts["SIGSTOPs"] += 1
        # sometimes shorter than the lease, sometimes past it (a takeover, then fencing)
        self._after(self.rng.uniform(0.5, LEASE_S + 3.0), daemon.resume)

    def settle(self) -> None:
        """The quiet end: every daemon running, no fault queued."""
        self._due(everything=True)
        self.world.clear_faults()
        for daemon in self.world.daemons:
            if daemon.paused:
                daemon.resume()
            if not daemon.alive:
                daemon.start()
