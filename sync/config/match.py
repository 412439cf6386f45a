"""A connection's ``match`` block: matching before creating (docs/architecture.md §8.7).

Defaults come from ``sync.config.model.MatchSettings``; ``on_first_import`` left out
becomes true exactly when the connection has a ``create`` rule.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sync.config.checker import Checker, describe, join
from sync.config.model import MATCH_KEYS, MatchSettings


def parse_match(checker: Checker, value: Any, path: str, *, creates: bool) -> MatchSettings:
    """The ``match`` block at ``path``, every problem reported to ``checker``."""
    data = checker.mapping(value, path)
    checker.keys(data, [f.name for f in fields(MatchSettings)], path)
    base = MatchSettings()
    on_first_import = creates
    if data.get("on_first_import") is not None:
        where = join(path, "on_first_import")
        on_first_import = checker.boolean(data["on_first_import"], where, creates)
    min_score = _share(checker, data.get("min_score", base.min_score), join(path, "min_score"))
    auto_link = data.get("auto_link_above", base.auto_link_above)
    if auto_link is not None:
        auto_link = _share(checker, auto_link, join(path, "auto_link_above"))
        if auto_link is not None and min_score is not None and auto_link < min_score:
            checker.problem(
                join(path, "auto_link_above"),
                f"must be at least min_score ({min_score:g}), got {auto_link:g}",
            )
    window = checker.number(
        data.get("window_seconds", base.window_seconds),
        join(path, "window_seconds"),
        base.window_seconds,
        inclusive=True,
    )
    return MatchSettings(
        on_first_import=on_first_import,
        min_score=base.min_score if min_score is None else min_score,
        auto_link_above=auto_link,
        window_seconds=window,
        keys=_keys(checker, data.get("keys", list(base.keys)), join(path, "keys")),
    )


def _share(checker: Checker, value: Any, path: str) -> float | None:
    """A score between 0 (exclusive) and 1 (inclusive), or None after a problem."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        checker.problem(path, f"expected a number between 0 and 1, got {describe(value)}")
        return None
    if not 0 < value <= 1:
        checker.problem(path, f"must be above 0 and at most 1, got {value!r}")
        return None
    return float(value)


def _keys(checker: Checker, value: Any, path: str) -> tuple[str, ...]:
    """A non-empty list of ``MATCH_KEYS``, kept in their scoring order."""
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        checker.problem(path, f"expected a list of keys ({', '.join(MATCH_KEYS)})")
        return MATCH_KEYS
    unknown = [k for k in value if k not in MATCH_KEYS]
    for key in unknown:
        checker.problem(path, f"unknown key {key!r} (known: {', '.join(MATCH_KEYS)})")
    chosen = tuple(k for k in MATCH_KEYS if k in value)
    if not chosen and not unknown:
        checker.problem(path, "must name at least one key")
    return chosen or MATCH_KEYS
