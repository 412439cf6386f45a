"""Redaction of secrets from text: log records, exception messages, vendor replies.

Contract:

- ``Redactor(secrets).redact(text)`` replaces every known secret with ``***``, in the forms it
  takes on the wire (as is, URL-encoded, base64, JSON-escaped), longest first so that a secret
  containing another is masked whole. It also masks, whatever their value, credentials that
  look like credentials: ``Authorization:`` style headers, ``Bearer`` / ``Basic`` /
  ``Zoho-oauthtoken`` values, JSON (or Python repr) values of keys ending in ``token``,
  ``secret`` or ``password``, and such keys in URL queries. Over-masking is the accepted
  price: a log line that says ``Basic ***`` where a vendor wrote plain prose is harmless.
- ``RedactingFilter`` applies a redactor to each log record (message, arguments, exception
  traceback, stack) before any formatter sees it.
- ``install(redactor)`` makes ``redactor`` the process-wide ``current()`` one, which
  ``sync.http`` uses for its error messages, and puts a ``RedactingFilter`` on every handler of
  the root logger. Handlers added later need their own ``addFilter(RedactingFilter())``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

# Header names whose whole value is a credential (reference §1 Kapture, §3 Sirportly, §4 Zoho).
_HEADER = re.compile(
    r"(?im)\b((?:proxy-)?authorization|x-auth-token|x-auth-secret|x-api-key)"
    r"(['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"]*"
)
_SCHEME = re.compile(r"(?i)\b(Zoho-oauthtoken|Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+")
_KEY = r"[\w-]*(?:token|secret|password)"
_JSON_DOUBLE = re.compile(rf'(?i)("{_KEY}"\s*:\s*")(?:[^"\\]|\\.)*(")')
_JSON_SINGLE = re.compile(rf"(?i)('{_KEY}'\s*:\s*')(?:[^'\\]|\\.)*(')")
_QUERY = re.compile(rf"(?i)([?&;]{_KEY}=)[^&#\s'\"]*")

_PATTERNS = (
    (_HEADER, rf"\1\2{MASK}"),
    (_SCHEME, rf"\1\2{MASK}"),
    (_JSON_DOUBLE, rf"\1{MASK}\2"),
    (_JSON_SINGLE, rf"\1{MASK}\2"),
    (_QUERY, rf"\1{MASK}"),
)


def _forms(secret: str) -> set[str]:
    """The spellings under which ``secret`` may show up in a URL, header or body."""
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        json.dumps(secret)[1:-1],
    }


class Redactor:
    """Masks a fixed set of secrets, and anything shaped like a credential, in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= _forms(secret)
        ordered = sorted(forms, key=len, reverse=True)
        self._count = len(ordered)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        """``text`` with every secret and credential-shaped value replaced by ``***``."""
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def __repr__(self) -> str:
        return f"Redactor({self._count} forms)"


class RedactingFilter(logging.Filter):
    """Redacts a record in place, so every formatter after it sees only masked text.

    With no redactor of its own it uses ``current()`` at each record, so ``install`` can swap
    the redactor once the configuration (and so the set of secrets) is known.
    """

    _formatter = logging.Formatter()

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self._redactor or current()
        record.msg = redactor.redact(_message(record))
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            # Formatters print exc_text when set; dropping exc_info keeps a formatter that
            # would render the live exception itself from bypassing the redacted text.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        return True


def _message(record: logging.LogRecord) -> str:
    # A filter that raised would break the caller's logging call; a bad format string is
    # the caller's bug, shown as-is rather than lost.
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        return f"{record.msg} {record.args!r}"


_current = Redactor()


def current() -> Redactor:
    """The process-wide redactor (masks credential shapes only until ``install``)."""
    return _current


def install(redactor: Redactor) -> RedactingFilter:
    """Make ``redactor`` current and filter every root handler through it."""
    global _current
    _current = redactor
    installed = RedactingFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(installed)
    return installed
