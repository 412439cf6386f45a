"""Sirportly ticket updates <-> the adapter contract's comments (docs/vendor-apis.md §6.2).

Pure functions, no I/O. A ticket's conversation is its ``updates[]`` (``tickets/ticket``),
private notes included; the first (earliest posted) update is the ticket's body, read as the
description, never as a comment. An update has an integer ``id``, ``message`` (plain text),
``html_body``, ``private``, ``posted_at`` (ISO 8601), ``from_name`` / ``from_address`` and an
``author``. Their order in the list is UNCONFIRMED, so comments are sorted by (``posted_at``,
``id``). Comments are written with ``tickets/post_update`` (form parameters, 201 with the
update).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sync.vendors.base import OutgoingComment, RemoteComment
from sync.vendors.comments import MAX_BODY_CHARS, html_to_text, split_marker, with_marker
from sync.vendors.sirportly.mapping import first_update, marker_of, parse_time

_DAWN = datetime.min.replace(tzinfo=UTC)
_TRUE = ("1", "true", "t", "yes")
_FALSE = ("0", "false", "f", "no")


def private_flag(value: Any) -> bool | None:
    """An update's ``private`` as a bool (Rails also writes "1"/"true"), None when unknown."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def to_comment(update: Any) -> RemoteComment:
    """An update as a ``RemoteComment``; ValueError/KeyError/TypeError when it is not one.

    An update without a readable ``private`` counts as private: a sync may narrow, never
    widen (docs/vendor-apis.md §6.5)."""
    if not isinstance(update, dict):
        raise TypeError(f"an update is an object, not {type(update).__name__}")
    raw_id = update["id"]
    if isinstance(raw_id, bool) or not str(raw_id).isdigit():
        raise ValueError(f"update id {raw_id!r} is not a number")
    message = update.get("message")
    if isinstance(message, str) and message.strip():
        text = message[:MAX_BODY_CHARS]
    else:
        html_body = update.get("html_body")
        text = html_to_text(html_body) if isinstance(html_body, str) else ""
    body, marker = split_marker(text)
    private = private_flag(update.get("private"))
    name, email = _author(update)
    return RemoteComment(
        external_id=str(raw_id),
        body=body,
        is_public=private is False,
        author_name=name,
        author_email=email,
        created_at=parse_time(update.get("posted_at")),
        marker=marker,
        raw=update,
    )


def comments_of(record: Mapping[str, Any], marker_field: str | None = None) -> list[RemoteComment]:
    """The ticket's comments, oldest first: every update but the first, the body (see
    ``first_update``: a ticket carrying our create marker in ``marker_field`` may have none)."""
    updates = record.get("updates")
    if updates is None:
        return []
    if not isinstance(updates, list):
        raise ValueError("updates is not a list")
    ours = marker_field is not None and marker_of(record, marker_field) is not None
    body = first_update(updates, ours)
    comments = [to_comment(u) for u in updates if u is not body]
    return sorted(comments, key=lambda c: (c.created_at or _DAWN, int(c.external_id)))


def post_params(
    external_id: str, comment: OutgoingComment, default_user: str | None
) -> dict[str, str]:
    """``tickets/post_update`` form parameters: the message with its marker line, the
    private flag always (``1``/``0``), and ``user`` (the mapped author, else the connection's
    ``options.comment_user``, which the adapter requires when comments are pushed)."""
    params = {
        "ticket": external_id,
        "message": with_marker(comment.body, comment.marker),
        "private": "0" if comment.is_public else "1",
    }
    user = comment.author_user or default_user
    if user:
        params["user"] = user
    return params


def find_update(record: Mapping[str, Any], update_id: str) -> Mapping[str, Any] | None:
    """The update ``update_id`` of a full ticket record, or None."""
    updates = record.get("updates")
    for update in updates if isinstance(updates, Sequence) else ():
        if isinstance(update, dict) and str(update.get("id")) == update_id:
            return update
    return None


def _author(update: Mapping[str, Any]) -> tuple[str | None, str | None]:
    author = update.get("author") if isinstance(update.get("author"), dict) else {}
    assert isinstance(author, dict)
    name = update.get("from_name") or author.get("name")
    if not name and (author.get("first_name") or author.get("last_name")):
        name = " ".join(str(p) for p in (author.get("first_name"), author.get("last_name")) if p)
    email = update.get("from_address") or author.get("email_address")
    return (
        str(name) if isinstance(name, str) and name else None,
        str(email) if isinstance(email, str) and email else None,
    )
