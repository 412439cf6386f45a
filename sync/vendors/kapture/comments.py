"""Kapture conversation notes <-> the adapter contract's comments (docs/vendor-apis.md §6.3).

Pure functions, no I/O. Reading: get-ticket (``search-ticket-by-ticket-id``) asked with
``conversation_type: "notes"`` answers each ticket with ``"conversation_type": {"notes":
[...]}`` (3P), entries carrying ``detail`` (or ``chat_message``), ``sender_name`` and
``sentDate``. UNCONFIRMED: an entry's id, private flag, time format and author id. So:

- an entry's external id is a hash of (``sentDate``, ``sender_name``, ``detail``) as sent
  (``n`` + 24 hex digits), with ``-2``, ``-3``... for the second and later identical entries
  of one ticket (two equal notes in one second stay two comments);
- every pulled note is private (``is_public=False``): Kapture states no visibility, and a
  sync may narrow, never widen (docs/architecture.md §8.5);
- entries are sorted by ``sentDate`` (local time in the tenant's zone, or epoch ms), ties
  in the order Kapture lists them; an unreadable time sorts first.

Writing: the update's ``comment`` (DOC example, undescribed; visibility, author, e-mailing
and HTML UNCONFIRMED: sent as plain text with the marker line). The reply is the ticket,
without a comment id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from sync.vendors.base import RemoteComment
from sync.vendors.comments import MAX_BODY_CHARS, split_marker
from sync.vendors.kapture.mapping import BadRecord, parse_time

_DAWN = datetime.min.replace(tzinfo=UTC)
_TEXT_KEYS = ("detail", "chat_message", "message")


def note_id(sent: Any, sender: Any, detail: Any) -> str:
    """The external id of a note: its three documented-in-practice fields, hashed."""
    text = "\x1f".join("" if v is None else str(v) for v in (sent, sender, detail))
    return "n" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:24]


def to_comments(entries: list[Any], zone: tzinfo) -> list[RemoteComment]:
    """The notes as comments, oldest first; ValueError when an entry is not an object."""
    seen: dict[str, int] = {}
    found: list[tuple[datetime, int, RemoteComment]] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"a conversation note is not an object: {entry!r}"[:200])
        text = next((entry[k] for k in _TEXT_KEYS if isinstance(entry.get(k), str)), "")
        sender, sent = entry.get("sender_name"), entry.get("sentDate")
        external_id = note_id(sent, sender, text)
        seen[external_id] = seen.get(external_id, 0) + 1
        if seen[external_id] > 1:
            external_id += f"-{seen[external_id]}"
        body, marker = split_marker(text[:MAX_BODY_CHARS])
        created = _time(sent, zone)
        comment = RemoteComment(
            external_id=external_id,
            body=body,
            is_public=False,
            author_name=str(sender) if isinstance(sender, str) and sender else None,
            created_at=created,
            marker=marker,
            raw=dict(entry),
        )
        found.append((created or _DAWN, position, comment))
    return [comment for _, _, comment in sorted(found, key=lambda f: (f[0], f[1]))]


def conversation_count(counter: str | None) -> int | None:
    """The count part of a ``comment_counter`` value (Kapture's ``totalConversationCount``,
    or the number of notes), or None when it has none."""
    head = (counter or "").partition("|")[0]
    return int(head) if head.isdigit() and len(head) < 12 else None


def _time(value: Any, zone: tzinfo) -> datetime | None:
    try:
        return parse_time(value, zone)
    except BadRecord:
        return None  # an unreadable time sorts first; the note is still read
