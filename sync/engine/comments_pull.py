"""Comments pull: import the new comments of the tickets whose counters moved
(docs/architecture.md §8.5).

The ticket pull records, in each page's transaction, the vendor's comment counter of
every linked ticket it went through (``RemoteTicket.comment_counter``, ``note_page``). A
ticket's comments are due when that counter differs from the one stored when they were
last read, when they were never read (a ticket new to us), or when the vendor gives no
counter; a due ticket stays due until a read succeeds, so a failed or killed read is
done by a later run, while unchanged tickets are never re-read. One transaction per
ticket, written with this connection as its origin: the feed's trigger then fans each
imported comment out to every other connection and never back here.

Per remote comment: one already linked is at most journaled as edited; one carrying the
marker of one of our post intents settles that intent (the reply was lost); one older
than the moment comments were enabled (``history: false``), or of a visibility the
connection does not carry, is left alone; any other is imported and linked. A linked
comment gone from the vendor is journaled once as deleted, never deleted here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from sqlalchemy.orm import Session

from sync.db.models import CommentLink, TicketComment, TicketLink
from sync.engine import comment_store, store
from sync.engine.state import RunState
from sync.errors import ItemError, ProtocolError
from sync.vendors.base import Page, RemoteComment

#: What the vendor says when a linked comment is gone (journaled once).
DELETED = "deleted at the vendor"


def wants_pull(state: RunState) -> bool:
    return state.comments.pulls and state.caps.comments_read


def note_page(
    state: RunState, session: Session, page: Page, links: Mapping[str, TicketLink]
) -> None:
    """In the page's transaction: record the comment counters its linked tickets carry,
    so the ones whose comments must be read are ``due`` even if this run dies first."""
    if not wants_pull(state):
        return
    seen: dict[int, str | None] = {}
    for remote in page.tickets:
        link = links.get(state.adapter.id_key(remote.external_id))
        if link is not None and link.state == "active" and link.ticket_id is not None:
            seen[link.ticket_id] = remote.comment_counter
    baseline = None
    if state.comments_enabled_now and not state.comments.history:
        baseline = state.comments_since  # what the vendor holds now is history
    comment_store.note_counters(session, state.name, seen, baseline=baseline)


class CommentPull:
    """Read and import the comments of the tickets whose counters moved."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def run(self) -> None:
        """Read the comments of every ticket that is due, one transaction per ticket."""
        state = self.state
        if not wants_pull(state):
            return
        after = 0
        while True:
            state.check_stop()
            with state.mirror.read() as session:
                batch = comment_store.due_batch(
                    session, state.name, after, state.options.batch_size
                )
            if not batch:
                return
            after = batch[-1][0]
            for ticket_id, external_id, counter in batch:
                await self.read(ticket_id, external_id, counter)

    async def read(self, ticket_id: int, external_id: str, counter: str | None) -> None:
        state = self.state
        try:
            comments = await state.vendor(partial(state.adapter.list_comments, external_id))
        except (ItemError, ProtocolError) as exc:
            # one ticket's error (docs/architecture.md §3.3); it stays due: read again later
            state.counts.errors += 1
            state.report(f"{state.name}: comments of #{ticket_id}: {exc}")
            return
        with state.write(origin=state.name) as session:
            link = store.links_by_ticket(session, state.name, [ticket_id]).get(ticket_id)
            if link is None or link.external_id != external_id:
                return
            self.apply(session, link, comments)
            comment_store.read_done(session, state.name, ticket_id, counter, state.clock())

    def apply(self, session: Session, link: TicketLink, comments: Sequence[RemoteComment]) -> None:
        """Import the ticket's new comments, settle intents, journal edits and deletions."""
        state = self.state
        mine = comment_store.ticket_links_of(session, state.name, link.ticket_id)
        by_id = {c.external_id: c for c in mine if c.external_id is not None}
        by_marker = {c.marker: c for c in mine if c.marker is not None}
        for remote in comments:
            known = by_id.get(remote.external_id)
            if known is not None:
                self._seen_again(session, link, known, remote)
            elif remote.marker is not None and remote.marker in by_marker:
                self._ours(session, link, by_marker[remote.marker], remote)
            elif self._carried(remote):
                self._import(session, link, remote)
        present = {r.external_id for r in comments}
        for gone in mine:
            if gone.state == "active" and gone.external_id not in present:
                self._deleted(session, link, gone)

    def _carried(self, remote: RemoteComment) -> bool:
        """Whether the connection imports this comment (visibility and history rules)."""
        state = self.state
        if not state.comments.travels(remote.is_public):
            return False
        if state.comments.history or state.comments_since is None:
            return True
        return not comment_store.is_history(remote.created_at, state.comments_since)

    def _import(self, session: Session, link: TicketLink, remote: RemoteComment) -> None:
        state = self.state
        comment = TicketComment(
            ticket_id=link.ticket_id,
            body=remote.body,
            author_name=remote.author_name,
            author_email=remote.author_email,
            is_public=remote.is_public,
            created_at=remote.created_at or state.clock(),
            source=state.name,
        )
        session.add(comment)
        session.flush()
        session.add(
            CommentLink(
                comment_id=comment.id,
                connection=state.name,
                external_id=remote.external_id,
                state="active",
                digest=comment_store.digest(remote.body),
            )
        )
        state.journal(
            session,
            "comment_pull",
            link.ticket_id,
            link.external_id,
            new=remote.external_id,
            note=f"comment #{comment.id} ({_visibility(remote.is_public)})",
        )
        state.counts.comments_pulled += 1

    def _ours(
        self, session: Session, link: TicketLink, intent: CommentLink, remote: RemoteComment
    ) -> None:
        """A comment carrying our marker: the post of ``intent`` landed (its reply was lost)."""
        state = self.state
        if intent.state == "active":
            # a second copy of one post (never expected: the intent pattern prevents it)
            state.journal(
                session,
                "comment_skip",
                link.ticket_id,
                link.external_id,
                new=remote.external_id,
                note=f"a second copy of comment #{intent.comment_id} (marker {intent.marker})",
            )
            return
        intent.state, intent.external_id = "active", remote.external_id
        intent.digest = comment_store.digest(remote.body)
        intent.error = intent.error_kind = None
        state.journal(
            session,
            "comment_post",
            link.ticket_id,
            link.external_id,
            new=remote.external_id,
            note=f"comment #{intent.comment_id}: found by its marker",
        )
        state.counts.comments_posted += 1

    def _seen_again(
        self, session: Session, link: TicketLink, known: CommentLink, remote: RemoteComment
    ) -> None:
        """A linked comment: journal an edit at the vendor once; never applied here."""
        now = comment_store.digest(remote.body)
        if known.error == DELETED:
            known.error = None
        if known.digest is None:
            known.digest = now
        elif known.digest != now:
            known.digest = now
            self.state.journal(
                session,
                "comment_edited",
                link.ticket_id,
                link.external_id,
                new=remote.external_id,
                note=f"comment #{known.comment_id} was edited at the vendor (not applied)",
            )

    def _deleted(self, session: Session, link: TicketLink, gone: CommentLink) -> None:
        if gone.error == DELETED:
            return
        gone.error = DELETED
        self.state.journal(
            session,
            "comment_deleted",
            link.ticket_id,
            link.external_id,
            old=gone.external_id,
            note=f"comment #{gone.comment_id} was deleted at the vendor (kept here)",
        )


def _visibility(is_public: bool) -> str:
    return "public" if is_public else "private"
