"""A vendor's reply as ticketsync reads it: the body, its text and JSON, the vendor's words.

Whatever a vendor sends, reading it gives a value or a ``ProtocolError``: any declared
charset decodes (an unknown one, or a codec such as ``base64`` that is not a text encoding,
falls back to UTF-8), JSON nested too deeply is a ``ProtocolError``, and an error body is
read for the vendor's message from its first ``ERROR_BODY_BYTES`` only, with linear-time
code (a 1 MB page of unclosed tags costs milliseconds). ``sync.http`` builds the replies.
"""

from __future__ import annotations

import codecs
import json as jsonlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from yarl import URL

from sync import redact
from sync.errors import ProtocolError
from sync.redact import Redactor

_MESSAGE_KEYS = ("message", "error", "errors", "description", "Message")
_SNIPPET = 200  # characters of a body quoted in a ProtocolError
_VENDOR_MESSAGE = 300  # characters of the vendor's own words kept in an error
#: Bytes of an error reply that are read for the vendor's message: a bound on the work a
#: hostile error page can cause.
ERROR_BODY_BYTES = 8192
_SCRIPT_OPEN = re.compile(r"<(script|style)\b")
_TAG = re.compile(r"<[^<>]*>")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


@dataclass(frozen=True, repr=False)
class Response:
    """A vendor's answer, body read in full. ``url`` carries no query string."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (CIMultiDictProxy)
    body: bytes
    url: str
    method: str = "GET"
    connection: str = ""
    redactor: Redactor | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        # Bodies and headers may carry tokens (an OAuth reply, Set-Cookie): never shown.
        return f"<Response {self.status} {self.method} {self._path()}>"

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def date(self) -> datetime | None:
        """The reply's ``Date`` header (the vendor's clock, whole seconds) as aware UTC;
        None when absent or unreadable (docs/architecture.md §8.2)."""
        value = self.headers.get("Date")
        if not value:
            return None
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:  # "-0000": RFC 5322's "UTC, origin unknown"
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def text(self, limit: int | None = None) -> str:
        """The body (its first ``limit`` bytes) decoded by its declared charset (UTF-8 if
        none, unknown or not a text encoding), undecodable bytes replaced."""
        return _decode(self.body if limit is None else self.body[:limit], self.content_type)

    def json(self) -> Any:
        """The body parsed as JSON; ``ProtocolError`` for HTML, empty, truncated, invalid or
        too deeply nested JSON.

        HTML is recognised by the body, not only by the label: some vendors send JSON
        labelled ``text/html``, which is accepted.
        """
        text = self.text()
        start = text.lstrip()[:1]
        if not start:
            raise self._protocol_error("empty body instead of JSON")
        if start == "<":
            raise self._protocol_error("HTML instead of JSON")
        try:
            return jsonlib.loads(text)
        except RecursionError:
            raise self._protocol_error("JSON nested too deeply to read") from None
        except ValueError as exc:
            if "html" in self.content_type.lower():
                raise self._protocol_error("HTML instead of JSON") from None
            raise self._protocol_error(f"invalid or truncated JSON ({exc})") from None

    def _path(self) -> str:
        return (self.redactor or redact.current()).redact(URL(self.url).path)

    def _protocol_error(self, problem: str) -> ProtocolError:
        redactor = self.redactor or redact.current()
        # Redact before cutting, so a secret across the cut cannot leak by halves.
        snippet = redactor.redact(self.text(_SNIPPET * 40)[: _SNIPPET * 10])[:_SNIPPET]
        path = self._path()
        kind = self.content_type or "no content-type"
        return ProtocolError(
            f"{self.connection}: {self.method} {path} -> HTTP {self.status} ({kind}): "
            f"{problem}; body starts {snippet!r}",
            connection=self.connection,
            status=self.status,
        )


def _charset(content_type: str) -> str:
    """The declared charset when Python knows it as a text encoding, else UTF-8."""
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    if match is None:
        return "utf-8"
    try:
        info = codecs.lookup(match.group(1))
    except LookupError:
        return "utf-8"
    # base64, zlib, rot13 and the like are codecs but not text encodings.
    return info.name if getattr(info, "_is_text_encoding", True) else "utf-8"


def _decode(body: bytes, content_type: str) -> str:
    """``body`` as text; never raises, whatever charset a vendor declares."""
    try:
        return body.decode(_charset(content_type), errors="replace")
    except (LookupError, UnicodeError, ValueError):  # codecs that refuse "replace" (idna)
        return body.decode("utf-8", errors="replace")


def status_phrase(status: int) -> str:
    """The standard reason phrase of ``status``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def vendor_message(response: Response) -> str:
    """The vendor's own words, best effort: a JSON message field, an HTML title, a line.

    Only the first ``ERROR_BODY_BYTES`` of the body are read, with linear-time code, so a
    hostile error page costs bounded work.
    """
    text = response.text(ERROR_BODY_BYTES).strip()
    if not text:
        return ""
    try:
        return _json_message(text)
    except (ValueError, RecursionError):
        pass
    if "html" in response.content_type.lower() or text.startswith("<"):
        return html_text(text)
    return text.splitlines()[0]


def _json_message(text: str) -> str:
    """The message of a JSON error body; ValueError when ``text`` holds no JSON object or list."""
    document = jsonlib.loads(text)
    if not isinstance(document, dict | list):
        raise ValueError("not a JSON object or list")
    return _flatten(document)


def _flatten(value: Any, depth: int = 0) -> str:
    if depth > 20:
        return ""
    if isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            found = value.get(key)
            if _present(found):
                return _flatten(found, depth + 1)
        return jsonlib.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "; ".join(part for item in value if (part := _flatten(item, depth + 1)))
    return str(value)


def _present(value: Any) -> bool:
    # ``"error": false`` beside the real message is common; it is no message itself.
    if value is None or isinstance(value, bool):
        return False
    return not (isinstance(value, str | list | dict) and not value)


def html_text(text: str) -> str:
    """An HTML page's title, else its text without tags, scripts and styles; linear time."""
    lower = text.translate(_ASCII_LOWER)  # same length as ``text``, unlike str.lower()
    title = _title(text, lower)
    if title.strip():
        return title
    return _strip_tags(text, lower)


def _title(text: str, lower: str) -> str:
    start = lower.find("<title")
    opened = lower.find(">", start) if start >= 0 else -1
    closed = lower.find("</title", opened) if opened >= 0 else -1
    return text[opened + 1 : closed] if closed >= 0 else ""


def _strip_tags(text: str, lower: str) -> str:
    """``text`` without script and style elements, its tags replaced by spaces.

    Linear time: each search starts where the last one ended, and the tag pattern cannot
    backtrack past the next ``<``. An unclosed script or style drops the rest of the text;
    a ``<`` that no ``>`` closes before the next ``<`` stays as text.
    """
    kept: list[str] = []
    at = 0
    while (opened := _SCRIPT_OPEN.search(lower, at)) is not None:
        kept.append(text[at : opened.start()])
        closed = lower.find(f"</{opened.group(1)}", opened.end())
        end = lower.find(">", closed) if closed >= 0 else -1
        at = end + 1 if end >= 0 else len(text)
    kept.append(text[at:])
    return _TAG.sub(" ", " ".join(kept))


def shorten(text: str) -> str:
    """``text`` on one line, cut to the length kept of a vendor's words."""
    text = " ".join(text.split())
    if len(text) <= _VENDOR_MESSAGE:
        return text
    return text[: _VENDOR_MESSAGE - 1] + "…"
