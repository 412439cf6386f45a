"""Logging: readable text on a terminal, JSON lines under systemd, secrets redacted.

Redaction is one step of the pipeline: a filter on the handler, fed by the config's
secret marks (``Config.secrets()``), so every record and traceback passes through it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from sync.redact import RedactingFilter, Redactor
from sync.redact import install as install_redactor

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's structured ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def choose_format(requested: str) -> str:
    """``auto``: JSON under systemd (its journal stream) or when not a terminal, else text."""
    if requested != "auto":
        return requested
    if os.environ.get("JOURNAL_STREAM") or not sys.stderr.isatty():
        return "json" if os.environ.get("JOURNAL_STREAM") else "text"
    return "text"


def setup(
    fmt: str = "auto", *, verbose: bool = False, secrets: frozenset[str] = frozenset()
) -> None:
    """(Re)configure the root logger: one stderr handler, redacting, in the chosen format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if choose_format(fmt) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    redactor = Redactor(secrets)
    install_redactor(redactor)
    handler.addFilter(RedactingFilter(redactor))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("apscheduler", "aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
