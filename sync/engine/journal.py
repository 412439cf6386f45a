"""What a run records besides the mirror's values: ticket errors and the sends it makes.

- A ticket's failure is recorded on its link (count, message, kind, the backoff's next
  retry) and as the connection's last error, so ``status`` shows it; a ticket the vendor
  says is gone on two runs in a row becomes ``orphaned`` (docs/architecture.md §7.8).
- Unmapped values are recorded on the link, and cleared once they are gone.
- Under a lease, every update is journaled with the lease generation before it is sent
  (``Sends``, docs/architecture.md §7.3): the pull then tells a late write of ours from an agent's
  edit.
- On a dry run, each planned field change is one line (``describe``, docs/architecture.md §7.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sync.db.models import SyncConnection, TicketLink
from sync.engine import store
from sync.engine.mapping import canonical_text
from sync.engine.merge import Action, TicketMerge
from sync.engine.state import RunState
from sync.errors import VendorError
from sync.retry import ticket_backoff


def link_error(
    state: RunState,
    link: TicketLink,
    local: Sequence[str | None] = (),
    remote: Sequence[str | None] = (),
    *,
    saw_remote: bool = True,
) -> None:
    """Record the ticket's unmapped values on its link, or clear those that are gone.

    ``local`` / ``remote``: problems with a mirror / a vendor value. A problem with a
    vendor value is cleared only by a merge that saw the vendor's values (``saw_remote``).
    """
    found = [p for p in (*local, *remote) if p]
    kind = "unmapped_remote" if any(remote) else "unmapped"
    if found:
        message = state.ticket_message(link, "; ".join(found))
        if (link.last_error, link.last_error_kind) != (message, kind):
            link.last_error, link.last_error_kind = message, kind
            state.note_failure(message)
        state.counts.errors += 1
    elif link.last_error_kind == "unmapped" or (
        saw_remote and link.last_error_kind == "unmapped_remote"
    ):
        link.last_error = link.last_error_kind = None


def problems(merge: TicketMerge) -> tuple[list[str | None], list[str | None]]:
    """A merge's unmapped values: with a mirror value, and with a vendor value."""
    errors = merge.of(Action.ERROR)
    local = [d.error for d in errors if d.was_remote is None]
    return local, [d.error for d in errors if d.was_remote is not None]


def ticket_failure(
    state: RunState,
    link: TicketLink,
    exc: VendorError,
    *,
    backoff: bool,
    missing: bool = False,
) -> None:
    """Record a vendor failure for one ticket on its link and as the connection's error.

    ``backoff``: the ticket waits before its next try; ``missing``: a plain get said the
    ticket is not found (the second time in a row orphans the link).
    """
    state.counts.errors += 1
    now = state.clock()
    with state.write() as session:
        current = session.get(TicketLink, link.id)
        if current is None:
            return
        current.fail_count += 1
        current.last_error = state.ticket_message(current, str(exc))
        current.last_error_kind = exc.kind
        if backoff:
            current.next_retry_at = now + ticket_backoff(current.fail_count)
        if missing:
            current.missing_count += 1
            if current.missing_count >= 2:
                current.state = "orphaned"
        row = session.get(SyncConnection, state.name)
        if row is not None:
            row.last_error = {
                "at": now.isoformat(),
                "kind": exc.kind,
                "message": current.last_error,
                "ticket_id": current.ticket_id,
                "external_id": current.external_id,
            }


def connection_error(state: RunState, exc: VendorError, ticket_id: int | None) -> None:
    """Record a problem of a ticket without a link as the connection's last error."""
    with state.write() as session:
        row = session.get(SyncConnection, state.name)
        if row is not None:
            row.last_error = {
                "at": state.clock().isoformat(),
                "kind": exc.kind,
                "message": f"{state.name}: ticket #{ticket_id}: {exc}",
                "ticket_id": ticket_id,
                "external_id": None,
            }


def describe(
    state: RunState, link: TicketLink, merge: TicketMerge, only: tuple[Action, ...]
) -> None:
    """Note one line per decision of ``merge`` whose action is in ``only``."""
    for d in merge.decisions:
        if d.action not in only:
            continue
        ids = f"#{link.ticket_id} {{}} {link.external_id}  {d.field}:"
        if d.pushes:
            line = f"{ids.format('->')} {d.was_remote!r} -> {d.remote!r}  (push)"
        elif d.pulls:
            line = f"{ids.format('<-')} {d.was_local!r} -> {d.local!r}  (pull)"
        else:
            line = (
                f"{ids.format('<>')} local {d.was_local!r}, remote {d.was_remote!r}"
                "  (conflict, manual)"
            )
        state.act(f"{state.name}: {line}")


class Sends:
    """The ``send`` journal entries of one run: each value is journaled once, before it
    is first sent, with the lease generation (docs/architecture.md §7.3)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        #: (link id, field) -> the value a ``send`` entry of this run holds.
        self._sent: dict[tuple[int, str], Any] = {}

    def journal(self, pushes: Sequence[tuple[TicketLink, dict[str, Any]]]) -> None:
        """Journal the updates about to be sent: one transaction for a batch, before any
        of its sends. Without a lease: nothing."""
        fence = self.state.options.fence
        if fence is None:
            return
        rows = []
        for link, values in pushes:
            unsent = {k: v for k, v in values.items() if self._sent.get((link.id, k)) != v}
            for name, value in unsent.items():
                self._sent[(link.id, name)] = value
                rows.append(
                    self.state.journal_row(
                        "send",
                        ticket_id=link.ticket_id,
                        external_id=link.external_id,
                        field=name,
                        new=canonical_text(value),
                        generation=fence.generation,
                    )
                )
        if rows:
            with self.state.write() as session:
                store.journal_many(session, rows)
