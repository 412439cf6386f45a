"""Redaction of secrets from text: log records, exception messages, vendor replies.

Contract:

- ``Redactor(secrets).redact(text)`` replaces every known secret with ``***``, in the forms it
  takes on the wire (as is, URL-encoded, base64, JSON-escaped), longest first so that a secret
  containing another is masked whole. It also masks, whatever their value, credentials that
  look like credentials: ``Authorization:`` style headers, ``Bearer`` / ``Basic`` /
  ``Zoho-oauthtoken`` values, JSON (or Python repr) values of keys ending in ``token``,
  ``secret`` or ``password`` (also when the text is cut inside the value: the rest of that
  word is masked), and such keys in URL queries. Over-masking is the accepted price: a log
  line that says ``Basic ***`` where a vendor wrote plain prose is harmless.
- ``redactor.with_secrets(more)`` is a redactor for both sets: a reload keeps masking the
  secrets it replaced, since a vendor may still echo them.
- ``remember(secret)`` adds a secret learnt at run time (a freshly minted access token) to
  ``current()``; the last ``MINTED_KEPT`` such secrets are kept.
- ``redact_url(url)`` / ``url_secrets(url)``: a database URL with its password, and the
  ``password`` / ``sslpassword`` query parameters, masked; and those secret values.
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
from collections import deque
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL

MASK = "***"
#: How many secrets learnt at run time ``remember`` keeps (access tokens live for an hour).
MINTED_KEPT = 64

# Header names whose whole value is a credential (docs/vendor-apis.md §1 Kapture,
# docs/vendor-apis.md §3 Sirportly, docs/vendor-apis.md §4 Zoho).
_HEADER = re.compile(
    r"(?im)\b((?:proxy-)?authorization|x-auth-token|x-auth-secret|x-api-key)"
    r"(['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"]*"
)
_SCHEME = re.compile(r"(?i)\b(Zoho-oauthtoken|Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+")
_KEY = r"[\w-]*(?:token|secret|password)"
# A value runs to its closing quote; in text cut inside the value (no closing quote), to the
# next whitespace or quote.
_JSON_DOUBLE = re.compile(rf'(?i)("{_KEY}"\s*:\s*")(?:(?:[^"\\]|\\.)*(")|[^"\s]*)')
_JSON_SINGLE = re.compile(rf"(?i)('{_KEY}'\s*:\s*')(?:(?:[^'\\]|\\.)*(')|[^'\s]*)")
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
        self.secrets = frozenset(s for s in secrets if s)
        forms: set[str] = set()
        for secret in self.secrets:
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

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """A redactor masking this one's secrets and ``more``."""
        return Redactor(self.secrets | frozenset(more))

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
_minted: deque[str] = deque(maxlen=MINTED_KEPT)


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


def remember(secret: str) -> None:
    """Mask ``secret`` from now on in ``current()`` (and so in every filtered log handler).

    For secrets learnt at run time, such as a freshly minted access token. Only the last
    ``MINTED_KEPT`` are kept, so a long-running daemon's redactor does not grow forever.
    """
    global _current
    if not secret or secret in _minted or secret in _current.secrets:
        return
    if len(_minted) == _minted.maxlen:
        dropped = _minted[0]
        _minted.append(secret)
        _current = Redactor((_current.secrets - {dropped}) | {secret})
        return
    _minted.append(secret)
    _current = _current.with_secrets([secret])


#: Query parameters of a database URL that hold a password (libpq's names).
URL_SECRET_PARAMS = ("password", "sslpassword")


_URL_PARAM = re.compile(rf"(?i)([?&](?:{'|'.join(URL_SECRET_PARAMS)})=)[^&#]*")


def url_secrets(url: URL) -> list[str]:
    """The secret values in a database URL: its password and secret query parameters."""
    values = [url.password] if url.password else []
    for key in URL_SECRET_PARAMS:
        value = url.query.get(key)
        for item in (value,) if isinstance(value, str) else value or ():
            if item:
                values.append(item)
    return [str(v) for v in values]


def redact_url(url: URL) -> str:
    """``url`` as text with its password and secret query parameters replaced by ``***``."""
    text = url.render_as_string(hide_password=True)
    return _URL_PARAM.sub(rf"\1{MASK}", text)
