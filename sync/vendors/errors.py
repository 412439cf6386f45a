"""Vendors' error rules as data: each vendor's package holds a table of ``ErrorRule`` rows
(its ``errors`` module), and ``vendor_error`` turns a failure into our error tree by it.

A row applies when every condition it gives holds (a condition left empty always holds):
``words`` is searched in the vendor's own text (case-insensitive), ``codes`` lists vendor
error codes (None stands for "no code"), ``statuses`` HTTP statuses, and ``reads`` limits the
row to reads (True) or writes (False). The first row that applies decides, so a table ends
with a catch-all row. Two rows with the same outcome say "either condition".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync.errors import Retriable, VendorError


@dataclass(frozen=True)
class ErrorRule:
    """One row of a vendor's error table; ``hint`` is appended to the message, formatted
    with ``{name}`` (the connection) and the context ``vendor_error`` is given."""

    error: type[VendorError]
    words: str | None = None
    codes: frozenset[str | None] = frozenset()
    statuses: frozenset[int] = frozenset()
    reads: bool | None = None
    hint: str = ""

    def applies(self, said: str, status: int, code: str | None, reads: bool) -> bool:
        """Whether every condition of this row holds."""
        return (
            (self.words is None or re.search(self.words, said, re.IGNORECASE) is not None)
            and (not self.codes or code in self.codes)
            and (not self.statuses or status in self.statuses)
            and (self.reads is None or self.reads == reads)
        )


def classify(
    rules: Sequence[ErrorRule], said: str, status: int, code: str | None = None, reads: bool = False
) -> ErrorRule:
    """The first row of ``rules`` that applies; LookupError if none does."""
    for rule in rules:
        if rule.applies(said, status, code, reads):
            return rule
    raise LookupError(f"no error rule for HTTP {status}, code {code!r}: {said!r}")


def vendor_error(
    rules: Sequence[ErrorRule],
    message: str,
    *,
    connection: str,
    status: int,
    said: str,
    code: str | None = None,
    reads: bool = False,
    retry_after: float | None = None,
    **context: Any,
) -> VendorError:
    """The error ``rules`` choose for this failure, with ``message`` and the row's hint.

    ``said`` is the vendor's own (redacted) text: it is searched by ``words`` and kept as
    ``vendor_message``. ``retry_after`` goes to retriable errors (e.g. ``RateLimited``).
    """
    rule = classify(rules, said, status, code, reads)
    kw: dict[str, Any] = {"connection": connection, "status": status, "vendor_message": said}
    if issubclass(rule.error, Retriable):
        kw["retry_after"] = retry_after
    return rule.error(message + rule.hint.format(name=connection, **context), **kw)
