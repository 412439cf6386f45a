"""Comments push: post the comments in this connection's feed, crash-safely
(docs/architecture.md §8.5, §3.3).

The feed (``comment_dirty``) holds every comment inserted since, by another program or
imported from another connection. ``route`` decides per comment (one line per branch);
a post follows the creates' intent pattern: a ``posting`` link with a fresh marker is
committed, with the feed row's removal, before the vendor is called; the vendor's reply
makes it ``active``. A run killed in between leaves the intent, and ``recover`` settles
it: found by its marker (``find_comment``) -> active; not there -> posted again, same
marker; a vendor that cannot be searched -> confirmed when its comment count went up by
exactly one since the intent (Kapture), else ``unknown``, never sent again.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from functools import partial

from sqlalchemy.orm import Session

from sync.db.models import CommentLink, TicketComment, TicketLink
from sync.engine import comment_store, store
from sync.engine.crash import crashpoint
from sync.engine.state import RunState
from sync.errors import ItemError, ProtocolError, VendorError
from sync.vendors.base import OutgoingComment, RemoteComment

#: A post the vendor refused is tried again on this many runs, then left as failed.
MAX_ATTEMPTS = 5


class Route(StrEnum):
    DROP = "drop"  # nothing to do here: leave the feed
    WAIT = "wait"  # the ticket's link is not active yet: look again next run
    SKIP = "skip"  # never posted here: recorded as ``skipped``, with the reason
    POST = "post"


def wants_push(state: RunState) -> bool:
    return state.comments.pushes and state.caps.comments_write


def route(
    state: RunState,
    comment: TicketComment | None,
    link: TicketLink | None,
    existing: CommentLink | None,
) -> tuple[Route, str | None]:
    """What to do with one comment of the feed, and the reason for a skip."""
    if comment is None or existing is not None:
        # deleted from the mirror, or already here (it came from here, or was posted)
        return Route.DROP, None
    if link is None:
        # the ticket is not linked on this connection
        return Route.DROP, None
    if link.state != "active" or link.external_id is None:
        # a create intent, or an orphan: its comments wait for it
        return Route.WAIT, None
    if not state.comments.history and (
        state.comments_since is None
        or comment_store.is_history(comment.created_at, state.comments_since)
    ):
        # history: older than the moment comments were enabled here
        return Route.DROP, None
    if not state.comments.travels(comment.is_public):
        return Route.SKIP, f"comments.visibility is {state.comments.visibility}"
    if not comment.is_public and not state.caps.private_comments:
        # internal stays internal: never posted where it could not stay private
        return Route.SKIP, f"{state.adapter.vendor} cannot post private notes"
    if not comment.is_public and state.private_stopped:
        # a reply once showed another visibility than asked: no more private posts here
        return Route.SKIP, f"private posts stopped: {state.private_stopped}"
    return Route.POST, None


def outgoing(state: RunState, comment: TicketComment, marker: str) -> OutgoingComment:
    """The post of ``comment``: as the mapped user where the vendor posts as named users
    (``comments_as_user``), else as the API user with the attribution line."""
    email = (comment.author_email or "").strip().lower()
    user = None
    if email and state.caps.comments_as_user:
        user = state.comments.authors.get(email)
    body = comment.body
    if user is None and state.comments.attribution:
        source = "ticketsync" if comment.source == "local" else comment.source
        author = comment.author_name or comment.author_email or "someone"
        prefix = state.comments.attribution.format(author=author, source=source)
        body = f"{prefix}\n{body}"
    return OutgoingComment(
        body=body,
        is_public=comment.is_public,
        marker=marker,
        author_name=comment.author_name,
        author_email=comment.author_email,
        author_user=user,
    )


def preview_comments(state: RunState, session: Session) -> set[int]:
    """Plan the comment posts of the feed (read-only): one line per post or skip; return
    the ids of the tickets a post would touch (the guard counts a ticket once)."""
    touched: set[int] = set()
    after = 0
    while True:
        batch = comment_store.dirty_batch(session, state.name, after, state.options.batch_size)
        if not batch:
            return touched
        after = batch[-1]
        for comment_id in batch:
            comment, link, existing = _load(session, state.name, comment_id)
            step, reason = route(state, comment, link, existing)
            if comment is None or link is None or step in (Route.DROP, Route.WAIT):
                continue
            where = (
                f"{state.name}: comment #{comment.id} on #{comment.ticket_id} -> {link.external_id}"
            )
            if step is Route.SKIP:
                state.act(f"{where}: skip ({reason})")
                continue
            touched.add(comment.ticket_id)
            state.act(f"{where}: post ({'public' if comment.is_public else 'private'})")


class CommentPush:
    """Settle earlier post intents, then post the connection's comment feed."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def run(self) -> None:
        state = self.state
        if not wants_push(state):
            # the feed is of no use here; an idle run only looks (it writes nothing)
            with state.mirror.read() as session:
                queued = comment_store.count_feed(session, state.name)
            if queued:
                with state.write() as session:
                    comment_store.clear_feed(session, state.name)
            return
        await self.recover()
        after = 0
        while True:
            state.check_stop()
            with state.mirror.read() as session:
                batch = comment_store.dirty_batch(
                    session, state.name, after, state.options.batch_size
                )
            if not batch:
                return
            after = batch[-1]
            for comment_id in batch:
                await self.one(comment_id)

    async def one(self, comment_id: int) -> None:
        """Route one comment of the feed and carry the decision out."""
        state = self.state
        with state.mirror.read() as session:
            comment, link, existing = _load(session, state.name, comment_id)
            step, reason = route(state, comment, link, existing)
            session.expunge_all()
        if step is Route.WAIT:
            return
        if step is not Route.POST:
            with state.write() as session:
                if step is Route.SKIP and comment is not None:
                    _skip(state, session, comment, reason or "")
                comment_store.clear_dirty(session, state.name, [comment_id])
            return
        assert comment is not None and link is not None and link.external_id is not None
        marker = await self._marker(comment, link.external_id)
        with state.write() as session:
            intent = CommentLink(
                comment_id=comment.id, connection=state.name, state="posting", marker=marker
            )
            session.add(intent)
            comment_store.clear_dirty(session, state.name, [comment_id])
            session.flush()
            intent_id = intent.id
        crashpoint("after_comment_intent")
        await self.send(intent_id, comment, link.external_id, marker)

    async def _marker(self, comment: TicketComment, external_id: str) -> str:
        """A fresh post marker; where comments cannot be read back but counted, it ends in
        the ticket's comment count before the post (``-n<count>``), so that a lost reply
        can be confirmed by the count having gone up by one (docs/architecture.md §8.5).
        The intent stores the marker, so the count needs no column of its own."""
        state = self.state
        marker = f"tsc-{comment.id}-{secrets.token_hex(4)}"
        if state.caps.comments_read or not state.caps.counts_comments:
            return marker
        count = await state.vendor(partial(state.adapter.conversation_count, external_id))
        return marker if count is None else f"{marker}-n{count}"

    async def send(
        self, intent_id: int, comment: TicketComment, external_id: str, marker: str
    ) -> None:
        """Post ``comment`` under the intent ``intent_id`` and make the link active."""
        state = self.state
        post = outgoing(state, comment, marker)
        try:
            remote = await state.vendor(
                lambda: state.adapter.post_comment(external_id, post), write=True
            )
        except ItemError as exc:
            # the vendor answered no: nothing was posted, so it may be sent again
            self._failed(intent_id, exc, "refused")
            return
        except ProtocolError as exc:
            # the reply may show another visibility than asked: stop private posts here
            if not comment.is_public:
                self._stop_private(comment, exc)
            self._failed(intent_id, exc, "lost")
            raise
        except VendorError as exc:
            # no answer we can trust: it may have landed; ``recover`` looks for the marker
            self._failed(intent_id, exc, "lost")
            raise
        crashpoint("after_comment_ack")
        with state.write() as session:
            self._posted(session, intent_id, comment, external_id, remote, note="posted")

    def _posted(
        self,
        session: Session,
        intent_id: int,
        comment: TicketComment,
        external_id: str,
        remote: RemoteComment,
        note: str,
    ) -> None:
        state = self.state
        intent = session.get(CommentLink, intent_id)
        if intent is None:
            return
        intent.state, intent.external_id = "active", remote.external_id
        intent.digest = comment_store.digest(remote.body)
        intent.error = intent.error_kind = None
        state.journal(
            session,
            "comment_post",
            comment.ticket_id,
            external_id,
            new=remote.external_id,
            note=f"comment #{comment.id} ({'public' if comment.is_public else 'private'}): " + note,
        )
        state.counts.comments_posted += 1

    def _stop_private(self, comment: TicketComment, exc: VendorError) -> None:
        state = self.state
        reason = f"posting private comment #{comment.id} got a reply it could not trust ({exc})"
        state.private_stopped = reason
        with state.write() as session:
            comment_store.stop_private(session, state.name, reason)
            state.journal(session, "comment_skip", comment.ticket_id, None, note=reason)

    def _failed(self, intent_id: int, exc: VendorError, kind: str) -> None:
        state = self.state
        state.counts.errors += 1
        with state.write() as session:
            intent = session.get(CommentLink, intent_id)
            if intent is not None:
                intent.attempts += 1
                intent.error, intent.error_kind = f"{state.name}: {exc}", kind

    async def recover(self) -> None:
        """Settle the post intents earlier runs left (docs/architecture.md §3.3)."""
        state = self.state
        with state.mirror.read() as session:
            pending = comment_store.posting_links(session, state.name)
            if not pending:
                return
            comments = {
                c.id: c
                for c in session.query(TicketComment).filter(
                    TicketComment.id.in_([link.comment_id for link, _ in pending])
                )
            }
            session.expunge_all()
        for intent, external_id in pending:
            comment = comments.get(intent.comment_id)
            if comment is None or external_id is None or intent.marker is None:
                continue
            if intent.error_kind == "refused":
                # the vendor said no: nothing landed; try again, a bounded number of times
                if intent.attempts < MAX_ATTEMPTS:
                    marker = await self._recount(intent.id, comment, external_id, intent.marker)
                    await self.resend(intent.id, comment, external_id, marker)
                continue
            if not state.caps.comments_read:
                # cannot be looked for: confirmed by the count, else never sent again
                if not await self._counted(intent.id, comment, external_id, intent.marker):
                    self._unknown(intent.id, comment)
                continue
            find = partial(state.adapter.find_comment, external_id, intent.marker)
            found = await state.vendor(find)
            if found is None:
                # known not to be there: posting again cannot make a duplicate
                await self.resend(intent.id, comment, external_id, intent.marker)
                continue
            with state.write() as session:
                self._posted(session, intent.id, comment, external_id, found, "found by its marker")

    async def _recount(
        self, intent_id: int, comment: TicketComment, external_id: str, marker: str
    ) -> str:
        """The marker to post a refused intent again with: a count recorded before an
        earlier attempt is stale, so it is taken afresh (and stored) before this one."""
        if counted_before(marker) is None:
            return marker
        fresh = await self._marker(comment, external_id)
        with self.state.write() as session:
            intent = session.get(CommentLink, intent_id)
            if intent is not None:
                intent.marker = fresh
        return fresh

    async def _counted(
        self, intent_id: int, comment: TicketComment, external_id: str, marker: str
    ) -> bool:
        """Whether the ticket's comment count is now exactly one more than the count the
        marker recorded before the post; if so the intent is settled as posted."""
        state = self.state
        before = counted_before(marker)
        if before is None or not state.caps.counts_comments:
            return False
        now = await state.vendor(partial(state.adapter.conversation_count, external_id))
        if now != before + 1:
            return False
        posted = RemoteComment(
            external_id=f"posted:{marker}",
            body=comment.body,
            is_public=comment.is_public,
            marker=marker,
        )
        with state.write() as session:
            note = f"confirmed by the comment count ({before} -> {now})"
            self._posted(session, intent_id, comment, external_id, posted, note)
        return True

    async def resend(
        self, intent_id: int, comment: TicketComment, external_id: str, marker: str
    ) -> None:
        """Post an intent known not to have landed again, unless private posts stopped."""
        state = self.state
        if comment.is_public or not state.private_stopped:
            await self.send(intent_id, comment, external_id, marker)
            return
        reason = f"private posts stopped: {state.private_stopped}"
        with state.write() as session:
            intent = session.get(CommentLink, intent_id)
            if intent is not None:
                intent.state, intent.error, intent.error_kind = "skipped", reason, None
                state.journal(
                    session,
                    "comment_skip",
                    comment.ticket_id,
                    None,
                    note=f"comment #{comment.id}: {reason}",
                )
        state.counts.comments_skipped += 1

    def _unknown(self, intent_id: int, comment: TicketComment) -> None:
        state = self.state
        message = (
            f"{state.name}: the outcome of posting comment #{comment.id} on ticket "
            f"#{comment.ticket_id} is unknown and {state.adapter.vendor} comments cannot be "
            "searched; check the ticket at the vendor (ticketsync will not post it again)"
        )
        with state.write() as session:
            intent = session.get(CommentLink, intent_id)
            if intent is not None:
                intent.state, intent.error, intent.error_kind = "unknown", message, "lost"
                state.journal(session, "comment_skip", comment.ticket_id, None, note=message)
        state.counts.errors += 1


def counted_before(marker: str) -> int | None:
    """The comment count a marker recorded before its post (``...-n<count>``), or None."""
    head, sep, tail = marker.rpartition("-n")
    return int(tail) if sep and head and tail.isdigit() and len(tail) < 10 else None


def _load(
    session: Session, connection: str, comment_id: int
) -> tuple[TicketComment | None, TicketLink | None, CommentLink | None]:
    comment = session.get(TicketComment, comment_id)
    if comment is None:
        return None, None, None
    link = store.links_by_ticket(session, connection, [comment.ticket_id]).get(comment.ticket_id)
    existing = (
        session.query(CommentLink)
        .filter(CommentLink.comment_id == comment_id, CommentLink.connection == connection)
        .one_or_none()
    )
    return comment, link, existing


def _skip(state: RunState, session: Session, comment: TicketComment, reason: str) -> None:
    """Record that ``comment`` is not posted on this connection, and why."""
    session.add(
        CommentLink(comment_id=comment.id, connection=state.name, state="skipped", error=reason)
    )
    state.journal(
        session, "comment_skip", comment.ticket_id, None, note=f"comment #{comment.id}: {reason}"
    )
    state.counts.comments_skipped += 1
