"""Zoho Desk ticket comments <-> the adapter contract (docs/vendor-apis.md §6.1).

Pure functions, no I/O. A Zoho comment (``GET|POST /api/v1/tickets/{id}/comments``) has a
numeric-string ``id``, ``content`` (HTML unless ``contentType`` is ``plainText``; the
default is ``html``), ``isPublic``, ``commentedTime`` (ISO ``...Z``, or epoch milliseconds
in some examples) and ``commenter{name, email, type}``. Mentions are inline tokens
(``zsu[@user:ID]zsu``): read as ``@name`` text, and broken up in what we post so a synced
comment can never notify a Zoho agent (INFERENCE, §6.1).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sync.vendors.base import OutgoingComment, RemoteComment
from sync.vendors.comments import MAX_BODY_CHARS, html_to_text, split_marker, with_marker
from sync.vendors.zoho_desk.mapping import parse_time

#: Zoho's documented ceiling for a comment's ``content``.
MAX_CONTENT = 32000
_DAWN = datetime.min.replace(tzinfo=UTC)
_MENTION = re.compile(r"zsu\[@(?:user|team):([^\[\]]{0,200}?)\]zsu")


def to_comment(record: Any) -> RemoteComment:
    """A Zoho comment as a ``RemoteComment``; ValueError/KeyError/TypeError when it is not one."""
    if not isinstance(record, dict):
        raise TypeError(f"a comment is an object, not {type(record).__name__}")
    external_id = str(record["id"])
    if not external_id.isdigit():
        raise ValueError(f"comment id {external_id!r} is not a Zoho id")
    public = record.get("isPublic")
    if isinstance(public, str) and public in ("true", "false"):
        public = public == "true"  # the OAS example writes it as a string
    if not isinstance(public, bool):
        raise ValueError(f"comment {external_id}: isPublic is {public!r}")
    content, kind = record.get("content"), record.get("contentType") or "html"
    if not isinstance(content, str):  # list items also carry ``plainText``
        plain = record.get("plainText")
        content, kind = (plain if isinstance(plain, str) else ""), "plainText"
    text = content[:MAX_BODY_CHARS] if kind == "plainText" else html_to_text(content)
    body, marker = split_marker(_MENTION.sub(_mention_text, text))
    found = record.get("commenter")
    commenter: dict[str, Any] = found if isinstance(found, dict) else {}
    return RemoteComment(
        external_id=external_id,
        body=body,
        is_public=public,
        author_name=_text(commenter.get("name")),
        author_email=_text(commenter.get("email")),
        created_at=parse_time(record.get("commentedTime")),
        marker=marker,
        raw=record,
    )


def post_body(comment: OutgoingComment) -> dict[str, Any]:
    """The create-comment body: plain text, ``isPublic`` always sent (docs/architecture.md §8.5)."""
    content = with_marker(neutralise_mentions(comment.body), comment.marker)
    if len(content) > MAX_CONTENT:
        raise ValueError(f"{len(content)} characters; Zoho takes at most {MAX_CONTENT}")
    return {"content": content, "contentType": "plainText", "isPublic": comment.is_public}


def neutralise_mentions(text: str) -> str:
    """``text`` with Zoho's mention opener broken up, so posting it notifies nobody."""
    return text.replace("zsu[@", "zsu[ @")


def order_key(comment: RemoteComment) -> tuple[datetime, int]:
    """Oldest first; equal times by id (Zoho's ids grow); a comment without a time first."""
    return (comment.created_at or _DAWN, int(comment.external_id))


def _mention_text(found: re.Match[str]) -> str:
    target = found.group(1)
    _, _, name = target.partition("_")  # teams are "<id>_<name>"
    return "@" + (name or target)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
