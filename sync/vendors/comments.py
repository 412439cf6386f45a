"""The post marker a comment carries, so a post whose reply was lost can be found again
(docs/architecture.md §8.5).

The marker rides on the comment's last line, ``[ticketsync:<marker>]``. It is plain text,
so it survives vendors that strip HTML, and it is short enough to stay out of the way.
"""

from __future__ import annotations

import html as htmllib
import re
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sync.errors import ProtocolError

if TYPE_CHECKING:
    from sync.vendors.base import RemoteComment

T = TypeVar("T")

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LINE = re.compile(r"\n*\[ticketsync:([A-Za-z0-9_-]{6,64})\]\s*$")


def with_marker(body: str, marker: str) -> str:
    """``body`` followed by the marker line."""
    return f"{body.rstrip()}\n\n[ticketsync:{marker}]"


def split_marker(body: str) -> tuple[str, str | None]:
    """``(body without the marker line, marker)``; the marker is None when there is none."""
    found = _LINE.search(body)
    if found is None:
        return body, None
    return body[: found.start()], found.group(1)


#: Characters of a vendor's comment body read at most; the rest is cut (a bound on the work
#: a hostile body can cause: Zoho documents 32,000 characters per comment).
MAX_BODY_CHARS = 200_000
_SKIPPED = re.compile(r"<(script|style)\b", re.IGNORECASE)
#: A tag: ``[^<>]*`` cannot run past the next ``<``, so matching stays linear.
_TAG = re.compile(r"<(?:(/?)([A-Za-z][A-Za-z0-9]*)|[!?])[^<>]*>")
_BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre"})
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def html_to_text(html: str) -> str:
    """A comment's HTML body as plain text: tags dropped, ``<br>`` and block ends as line
    breaks, entities decoded, script and style elements removed.

    Linear time on at most ``MAX_BODY_CHARS`` characters (each search starts where the last
    ended, and no pattern backtracks past a ``<``), so a page of unclosed tags costs
    milliseconds; an unclosed script or style drops the rest, and a lone ``<`` stays text.
    """
    text = html[:MAX_BODY_CHARS]
    kept: list[str] = []
    at = 0
    lower = text.translate(_ASCII_LOWER)  # same length as ``text``, unlike str.lower()
    while (opened := _SKIPPED.search(text, at)) is not None:
        kept.append(text[at : opened.start()])
        closed = lower.find(f"</{opened.group(1).lower()}", opened.end())
        end = lower.find(">", closed) if closed >= 0 else -1
        at = end + 1 if end >= 0 else len(text)
    kept.append(text[at:])
    stripped = _TAG.sub(_tag_text, "".join(kept))
    plain = htmllib.unescape(stripped).replace("\xa0", " ").replace("\r\n", "\n")
    return _BLANK_LINES.sub("\n\n", plain).strip()


def _tag_text(found: re.Match[str]) -> str:
    name = (found.group(2) or "").lower()
    if name == "br" or (found.group(1) and name in _BREAKS):
        return "\n"
    return ""


def check_visibility(connection: str, external_id: str, asked: bool, posted: RemoteComment) -> None:
    """Raise ``ProtocolError`` unless the vendor holds ``posted`` with the visibility asked
    (``asked``: public); a mismatch stops private posts on the connection
    (docs/architecture.md §8.5)."""
    if posted.is_public == asked:
        return
    wanted, held = ("public", "private") if asked else ("private", "public")
    raise ProtocolError(
        f"{connection}: ticket {external_id}: comment {posted.external_id} was posted {wanted} "
        f"but the vendor holds it as {held}",
        connection=connection,
    )


def parsed(connection: str, external_id: str, what: str, parse: Callable[[], T]) -> T:
    """``parse()``, its ValueError/KeyError/TypeError/... as a ``ProtocolError`` naming the
    ticket and ``what`` the vendor's reply should have been."""
    try:
        return parse()
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
        raise ProtocolError(
            f"{connection}: ticket {external_id}: the vendor's reply is not {what} ({exc!r})",
            connection=connection,
        ) from None
