"""``ticketsync demo``: see ticketsync work in one command, with no vendor account.

Starts the built-in vendor emulators on 127.0.0.1 with seeded tickets, writes a config
file and a SQLite mirror into a folder, and walks through what the product does with
real syncs over real HTTP: the initial import, a local edit pushed, a vendor edit pulled
(and fanned out where linked), a same-field conflict and how the policy settled it, a
local INSERT created at the vendors, a comment travelling from one vendor to the others,
the undo of the run that pulled the edit, and a ticket both sides already had matched and
linked instead of duplicated.
``--keep-running`` then leaves the emulators and the daemon up until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sync import undo_cmd
from sync.config import Config, load_config
from sync.db import Mirror, migrate
from sync.engine import undo
from sync.errors import LockHeld
from sync.runner import Selection, run_connections
from sync.sandbox.base import Emulator, emulators
from sync.status import collect
from sync.vendors.base import adapter_class

Out = Callable[[str], None]
MAX_PASSES = 4
#: The first vendor carries the walk-through: the one with modification times and every
#: field writable, so the conflict step can show `newest` at work.
DEMO_ORDER = ("zoho_desk", "sirportly", "kapture", "proprofs")


class Demo:
    """One walk-through: emulators, a config, a mirror."""

    def __init__(self, directory: Path, tickets: int, out: Out) -> None:
        self.dir = directory
        self.count = tickets
        self.out = out
        self.emulators: dict[str, Emulator] = {}
        self.config: Config | None = None
        self.mirror: Mirror | None = None

    # -- setting up ----------------------------------------------------------------------

    async def start(self) -> None:
        found = emulators()
        order = sorted(
            found,
            key=lambda v: (v not in DEMO_ORDER, DEMO_ORDER.index(v) if v in DEMO_ORDER else 0, v),
        )
        for vendor in order:
            cls = found[vendor]
            emulator = cls()
            await emulator.start()
            if emulator.demo_connection() is None:
                await emulator.stop()
                continue
            emulator.seed_demo(self.count)
            self.emulators[f"{vendor.replace('_', '-')}-demo"] = emulator
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "config.yaml"
        path.write_text(yaml.safe_dump(self._config_data(), sort_keys=False))
        path.chmod(0o600)
        self.config = load_config(path)
        self.mirror = Mirror(self.config.database.url)
        migrate(self.mirror)

    def _config_data(self) -> dict[str, Any]:
        connections = {}
        for name, emulator in self.emulators.items():
            block = emulator.demo_connection()
            assert block is not None
            block["create"] = {"when": {"queue": "billing"}}
            block["interval"] = 10
            # conversations both ways; what the vendors held before stays there (history)
            block["comments"] = {"direction": "both"}
            connections[name] = block
        return {
            "database": {"url": f"sqlite:///{self.dir / 'mirror.db'}"},
            "sync": {
                "interval": 10,
                "conflict_policy": "newest",
                "state_dir": str(self.dir),
                "guard": {"share": 1.0, "min_count": 1000},
            },
            "connections": connections,
        }

    async def stop(self) -> None:
        for emulator in self.emulators.values():
            await emulator.stop()
        if self.mirror is not None:
            self.mirror.dispose()

    # -- helpers -------------------------------------------------------------------------

    async def sync(self) -> dict[str, int]:
        """Sync every connection until a pass changes nothing; return the summed counts."""
        assert self.config is not None and self.mirror is not None
        totals: dict[str, int] = {}
        for _ in range(MAX_PASSES):
            results = await run_connections(
                self.mirror, self.config, Selection(list(self.config.connections))
            )
            moved = 0
            for result in results:
                if isinstance(result, LockHeld):
                    continue
                for key, value in result.counts.as_dict().items():
                    totals[key] = totals.get(key, 0) + value
                moved += result.counts.pulled + result.counts.pushed + result.counts.created
                if not result.ok:
                    self.out(f"  ! {result.connection}: {result.error}")
            if not moved:
                break
        return totals

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Raw SQL on the mirror file, as any other program would write it."""
        assert self.mirror is not None and self.mirror.sqlite_path is not None
        with sqlite3.connect(self.mirror.sqlite_path) as conn:
            return conn.execute(statement, params).fetchall()

    def links(self, ticket_id: int) -> dict[str, str]:
        rows = self.sql(
            "SELECT connection, external_id FROM ticket_links "
            "WHERE ticket_id = ? AND state = 'active'",
            ticket_id,
        )
        return dict(rows)

    def vendor_value(self, connection: str, external_id: str, field: str) -> Any:
        return self.emulators[connection].demo_value(external_id, field)

    def vendor_edit(self, connection: str, external_id: str, field: str, canonical: str) -> Any:
        """Edit a field at the vendor, as an agent in its UI would; return the vendor value."""
        assert self.config is not None
        emulator = self.emulators[connection]
        fmap = self.config.connections[connection].fields[field]
        value = fmap[canonical] if fmap else canonical
        emulator.edit(external_id, **{emulator.demo_field_names[field]: value})
        return value

    def table(self, ids: Sequence[int]) -> None:
        names = list(self.emulators)
        header = f"  {'id':>3}  {'status':<8} {'priority':<8} {'queue':<8} {'title':<42}"
        self.out(header + "".join(f" {n:<20}" for n in names))
        for ticket_id in ids:
            rows = self.sql(
                "SELECT status, priority, queue, title FROM tickets WHERE id = ?", ticket_id
            )
            if not rows:
                continue
            status, priority, queue, title = (v or "" for v in rows[0])
            links = self.links(ticket_id)
            line = f"  {ticket_id:>3}  {status:<8} {priority:<8} {queue:<8} {title[:42]:<42}"
            self.out(line + "".join(f" {links.get(n, '-'):<20}" for n in names))

    def step(self, number: int, title: str) -> None:
        self.out("")
        self.out(f"== {number}. {title}")

    def _counts(self, totals: dict[str, int]) -> str:
        keys = ("pulled", "pushed", "created", "conflicts", "errors")
        return ", ".join(f"{k} {totals.get(k, 0)}" for k in keys)

    def _other_priorities(self, ticket_id: int, count: int) -> list[str]:
        """``count`` priorities other than the ticket's, so every edit really changes it."""
        current = self.sql("SELECT priority FROM tickets WHERE id = ?", ticket_id)[0][0]
        return [p for p in ("high", "low", "normal") if p != current][:count]

    def _pick(self, connection: str, *, exclude: Sequence[int] = (), status: str = "open") -> int:
        rows = self.sql(
            "SELECT t.id FROM tickets t JOIN ticket_links l ON l.ticket_id = t.id "
            "WHERE l.connection = ? AND t.status = ? ORDER BY t.id",
            connection,
            status,
        )
        for (ticket_id,) in rows:
            if ticket_id not in exclude:
                return int(ticket_id)
        raise RuntimeError(f"the demo found no {status} ticket at {connection}")

    # -- the walk-through ----------------------------------------------------------------

    async def walk(self) -> None:
        names = list(self.emulators)
        first = names[0]
        self.out(f"ticketsync demo in {self.dir}")
        for name, emulator in self.emulators.items():
            self.out(f"  {name}: {emulator.vendor} emulator at {emulator.base_url}")

        self.step(1, "Initial import: every vendor's tickets land in the mirror")
        self.out("  " + self._counts(await self.sync()))
        total = self.sql("SELECT count(*) FROM tickets")[0][0]
        self.out(f"  the mirror now holds {total} tickets; the first few, with their links:")
        self.table(list(range(1, 7)))
        if len(names) > 1:
            self.out("  billing tickets from one vendor were created at the others (fan-out).")

        ticket = self._pick(first)
        external = self.links(ticket)[first]
        self.step(2, "A local edit is pushed: another program closes a ticket with plain SQL")
        self.out(f"  UPDATE tickets SET status = 'closed' WHERE id = {ticket}")
        self.sql("UPDATE tickets SET status = 'closed' WHERE id = ?", ticket)
        before = self.vendor_value(first, external, "status")
        self.out("  " + self._counts(await self.sync()))
        after = self.vendor_value(first, external, "status")
        self.out(f"  {first} ticket {external}: status {before!r} -> {after!r}")

        edited = self._pick(first, exclude=[ticket])
        external = self.links(edited)[first]
        self.step(3, "An edit at the vendor is pulled into the mirror (and fanned out)")
        (target,) = self._other_priorities(edited, 1)
        value = self.vendor_edit(first, external, "priority", target)
        self.out(f"  an agent sets priority {value!r} on {first} ticket {external}")
        self.out("  " + self._counts(await self.sync()))
        self.table([edited])

        contested = self._pick(first, exclude=[ticket, edited])
        external = self.links(contested)[first]
        self.step(4, "A conflict: the same field changed on both sides")
        mine, theirs = self._other_priorities(contested, 2)
        self.sql("UPDATE tickets SET priority = ? WHERE id = ?", mine, contested)
        self.out(f"  the mirror sets priority {mine!r} on ticket {contested}; then, later,")
        await asyncio.sleep(0.05)  # the vendor's edit is the newer one, by a visible margin
        value = self.vendor_edit(first, external, "priority", theirs)
        self.out(f"  an agent sets {value!r} at {first}. Policy `newest` settles it:")
        self.out("  " + self._counts(await self.sync()))
        for row in self.sql(
            "SELECT field, local_value, remote_value, resolution FROM conflicts "
            "WHERE ticket_id = ? ORDER BY id",
            contested,
        ):
            self.out(
                f"  conflict on {row[0]}: local {row[1]!r} vs remote {row[2]!r} -> "
                f"{row[3]} won (both values are kept in the journal)"
            )
        self.table([contested])

        self.step(5, "A local INSERT is created at the vendors whose create rule matches")
        self.sql(
            "INSERT INTO tickets (title, status, priority, queue, requester_email) "
            "VALUES ('Refund request from the new portal', 'open', 'normal', 'billing', "
            "'portal@example.com')"
        )
        new_id = self.sql("SELECT max(id) FROM tickets")[0][0]
        self.out("  INSERT INTO tickets (title, status, priority, queue, ...) VALUES (...)")
        self.out("  " + self._counts(await self.sync()))
        self.table([new_id])

        await self.comment(first, exclude=[ticket, edited, contested])

        await self.undo(first, edited)
        await self.matching()

        self.step(9, "Status, as `ticketsync status` reports it")
        assert self.config is not None and self.mirror is not None
        report = collect(self.config, self.mirror)
        for name, c in report["connections"].items():
            run = c["last_run"] or {}
            self.out(
                f"  {name}: last run {run.get('outcome')}, linked {c['linked_tickets']}, "
                f"pending {c['pending_pushes']}, conflicts open {c['open_conflicts']}, "
                f"credentials {c['credentials']}"
            )

    async def comment(self, connection: str, exclude: Sequence[int]) -> None:
        """An agent's reply at ``connection`` reaches the mirror and every other connection
        linked to the ticket that can post it (docs/architecture.md §8.5); ``exclude``: the
        tickets earlier steps used (the undo step takes back step 3's pull)."""
        ticket = self._most_linked(connection, exclude)
        external = self.links(ticket)[connection]
        emulator = self.emulators[connection]
        self.step(6, "A comment travels: an agent replies at one vendor")
        body = "Refund approved, it will show on your next statement."
        emulator.add_comment(external, **emulator.demo_comment(body))
        # the agent also changes the priority: a Zoho Desk comment alone may not move
        # modifiedTime (UNCONFIRMED), and the comment sweep runs only every few minutes
        (priority,) = self._other_priorities(ticket, 1)
        self.vendor_edit(connection, external, "priority", priority)
        self.out(f"  an agent replies on {connection} ticket {external}: {body!r}")
        self.out(f"  (and sets its priority to {priority!r})")
        self.out("  " + self._counts(await self.sync()))
        rows = self.sql(
            "SELECT c.id, c.author_name FROM ticket_comments c "
            "WHERE c.ticket_id = ? AND c.source = ? AND c.body LIKE ? ORDER BY c.id",
            ticket,
            connection,
            f"%{body}%",
        )
        if not rows:
            self.out(f"  ! the comment did not reach the mirror (ticket {ticket})")
            return
        comment_id, author = rows[-1]
        self.out(f"  in the mirror: ticket_comments #{comment_id} on ticket {ticket}, by {author}")
        arrived = dict(
            (name, (state, external_id))
            for name, state, external_id in self.sql(
                "SELECT connection, state, external_id FROM comment_links WHERE comment_id = ?",
                comment_id,
            )
        )
        for name, linked in self.links(ticket).items():
            if name == connection:
                continue
            state, external_id = arrived.get(name, (None, None))
            if state == "active":
                self.out(f"  {name}: posted on ticket {linked}, comment id {external_id}")
            elif not adapter_class(self.emulators[name].vendor).capabilities.comments_write:
                self.out(f"  {name}: not posted ({self.emulators[name].vendor} is read-only)")
            else:
                self.out(f"  {name}: not posted ({state or 'pending'})")

    def _most_linked(self, connection: str, exclude: Sequence[int]) -> int:
        """The ticket linked at ``connection`` that is linked at the most connections."""
        rows = self.sql(
            "SELECT l.ticket_id, count(*) FROM ticket_links l WHERE l.state = 'active' AND "
            "l.ticket_id IN (SELECT ticket_id FROM ticket_links WHERE connection = ?) "
            "GROUP BY l.ticket_id ORDER BY count(*) DESC, l.ticket_id",
            connection,
        )
        for ticket_id, _ in rows:
            if ticket_id not in exclude:
                return int(ticket_id)
        raise RuntimeError(f"the demo found no ticket at {connection}")

    async def undo(self, connection: str, ticket: int) -> None:
        """Take back the run that pulled step 3's vendor edit (docs/architecture.md §8.7)."""
        assert self.mirror is not None
        ((run_id,),) = self.sql(
            "SELECT max(run_id) FROM journal WHERE action = 'pull' AND connection = ? "
            "AND ticket_id = ? AND field = 'priority'",
            connection,
            ticket,
        )
        self.step(7, f"Undo: take back run #{run_id}, which pulled that vendor edit")
        self.out(f"  ticketsync undo {run_id} --dry-run")
        with self.mirror.read() as session:
            for decision in undo.plan(session, connection, run_id):
                self.out("    " + undo.describe(connection, run_id, decision))
        self.out(f"  ticketsync undo {run_id}: the next pass restores it, as a local edit")
        undo_cmd.record(self.mirror, connection, undo_cmd.UndoAsk(run_id))
        self.out("  " + self._counts(await self.sync()))
        self.table([ticket])
        external = self.links(ticket)[connection]
        value = self.vendor_value(connection, external, "priority")
        self.out(f"  {connection} ticket {external}: priority back to {value!r}")

    async def matching(self) -> None:
        """A ticket both sides already have is matched and linked, not imported twice."""
        from sync.engine import candidates
        from sync.match_cmd import collect as candidates_report
        from sync.match_cmd import render, score_now

        assert self.config is not None and self.mirror is not None
        self.step(8, "Matching: a ticket both sides already have is linked, not duplicated")
        name, emulator = next(iter(self.emulators.items()))
        subject, email = "Printer on floor 3 is jammed", "office@example.com"
        self.sql(
            "INSERT INTO tickets (title, status, priority, queue, requester_email) "
            "VALUES (?, 'open', 'normal', 'support', ?)",
            subject,
            email,
        )
        fields = emulator.demo_fields(self.count)
        emulator.seed(
            **{**fields, emulator.demo_field_names["title"]: f"RE: {subject}", "email": email}
        )
        self.out(f"  the mirror and {name} each got {subject!r} from {email}")
        self.out(f"  ticketsync match {name}   (the first import of a connection does this itself)")
        await score_now(self.mirror, self.config, name)
        report = candidates_report(self.mirror, [name])
        for line in render(report).splitlines()[:-1]:
            self.out("  " + line)
        with self.mirror.write() as session:
            ids = [c["id"] for c in report["candidates"]]
            candidates.decide(session, ids, "approved", datetime.now(UTC))
        self.out(f"  ticketsync match approve {' '.join(map(str, ids))}")
        self.out("  " + self._counts(await self.sync()))
        matched = self.sql("SELECT max(id) FROM tickets")[0][0]
        self.table([matched])
        self.out("  one ticket, linked: the fields that differed went to the conflict policy")

    def next_steps(self, keep_running: bool) -> None:
        config = self.dir / "config.yaml"
        self.out("")
        self.out("== Keep exploring")
        self.out(f"  config:   {config}")
        self.out(f"  mirror:   {self.dir / 'mirror.db'}  (sqlite3 it, UPDATE a ticket, sync again)")
        self.out(f"  status:   ticketsync --config {config} status")
        self.out(f"  journal:  sqlite3 {self.dir / 'mirror.db'} 'SELECT * FROM journal'")
        if keep_running:
            self.out(f"  one pass: ticketsync --config {config} --run-once  (in another terminal)")
            self.out("  the daemon and the emulators keep running; Ctrl-C stops them")
        else:
            self.out("  the emulators stopped with the demo; `ticketsync demo --keep-running`")
            self.out("  leaves them and the daemon up, to edit and sync by hand")


async def run(directory: Path | None, *, keep_running: bool, tickets: int, out: Out) -> int:
    folder = directory or Path(tempfile.mkdtemp(prefix="ticketsync-demo-"))
    demo = Demo(folder.resolve(), tickets, out)
    try:
        await demo.start()
        if not demo.emulators:
            out("ticketsync demo: no vendor emulator is available")
            return 1
        await demo.walk()
        demo.next_steps(keep_running)
        if keep_running:
            await _serve(demo)
    finally:
        await demo.stop()
    return 0


async def _serve(demo: Demo) -> None:
    from sync.daemon.service import Service

    assert demo.config is not None and demo.mirror is not None
    service = Service(demo.mirror, demo.config, list(demo.config.connections), demo.config.path)
    await service.serve()
