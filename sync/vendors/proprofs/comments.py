"""ProProfs ticket messages -> the adapter contract's comments (docs/vendor-apis.md §6.4).

Pure functions, no I/O. ProProfs has no comment API: a ticket's conversation is only seen
as ``messages[]`` inside list items, each with ``created`` in the account's time zone (DOC);
every other message field is UNCONFIRMED, so the text is read from the first of
``message``, ``body``, ``content``, ``text`` (as HTML when it holds a tag), the sender from
``from``/``sender``/``email``/``name``, and an ``id`` when there is one. Without an id a
message's external id is ``m`` + a hash of (``created``, sender, text) as received, with
``-2``, ``-3``... for identical repeats. The earliest message is the ticket's own body (the
description), never a comment (INFERENCE, like Sirportly's first update). Every message is
stored as not public: ProProfs states no visibility (docs/architecture.md §8.5).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sync.vendors.base import RemoteComment
from sync.vendors.comments import MAX_BODY_CHARS, html_to_text, split_marker
from sync.vendors.proprofs.mapping import BadRecord, parse_local

_TEXT_KEYS = ("message", "body", "content", "text")
_SENDER_KEYS = ("from", "sender", "email", "name")
_TAG = re.compile(r"<[A-Za-z/!][^<>]*>")
_DAWN = datetime.min.replace(tzinfo=UTC)


def messages_of(record: Any) -> list[Any]:
    """The ``messages`` of a list item ([] when it has none); ValueError when not a list."""
    if not isinstance(record, Mapping):
        raise ValueError("the ticket is not an object")
    messages = record.get("messages")
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise ValueError(f"messages is {type(messages).__name__}, not a list")
    return messages


def to_comments(messages: list[Any], zone: ZoneInfo) -> list[RemoteComment]:
    """The messages but the ticket's body (the earliest dated one, else the list's first) as
    comments, oldest first, an undated one first; ValueError when a message is not an
    object."""
    seen: dict[str, int] = {}
    found: list[tuple[datetime, int, RemoteComment]] = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"a message is not an object: {message!r}"[:200])
        text = next((message[k] for k in _TEXT_KEYS if isinstance(message.get(k), str)), "")
        sender = next((message[k] for k in _SENDER_KEYS if isinstance(message.get(k), str)), None)
        created = _time(message.get("created"), zone)
        external_id = _message_id(message, sender, text)
        seen[external_id] = seen.get(external_id, 0) + 1
        if seen[external_id] > 1:
            external_id += f"-{seen[external_id]}"
        plain = html_to_text(text) if _TAG.search(text) else text[:MAX_BODY_CHARS]
        body, marker = split_marker(plain)
        comment = RemoteComment(
            external_id=external_id,
            body=body,
            is_public=False,
            author_name=sender if sender and "@" not in sender else None,
            author_email=sender if sender and "@" in sender else None,
            created_at=created,
            marker=marker,
            raw=dict(message),
        )
        found.append((created or _DAWN, position, comment))
    timed = [f for f in found if f[2].created_at is not None]
    body_at = min(timed, key=lambda f: (f[0], f[1]))[1] if timed else 0
    rest = [f for f in found if f[1] != body_at]
    return [c for _, _, c in sorted(rest, key=lambda f: (f[0], f[1]))]


def _message_id(message: Mapping[str, Any], sender: str | None, text: str) -> str:
    given = message.get("id")
    if isinstance(given, str | int) and not isinstance(given, bool) and str(given).strip():
        return str(given).strip()
    raw = "\x1f".join(str(v) for v in (message.get("created"), sender or "", text))
    return "m" + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:24]


def _time(value: Any, zone: ZoneInfo) -> datetime | None:
    try:
        return parse_local(value, zone)
    except BadRecord:
        return None  # an unreadable time sorts first; the message is still read
