"""The ``comments`` block of a connection (docs/architecture.md §8.5); defaults come from
``sync.config.model.CommentSettings``."""

from __future__ import annotations

import string
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from sync.config.checker import Checker, join
from sync.config.model import CommentSettings

DIRECTIONS = ("both", "pull", "push", "off")
VISIBILITIES = ("public", "private", "both")
#: The placeholders an attribution may use.
PLACEHOLDERS = ("author", "source")


class CommentsParser(Checker):
    """Parses ``connections.NAME.comments``."""

    def comments(self, value: Any, path: str) -> CommentSettings:
        data = self.mapping(value, path)
        self.keys(data, [f.name for f in fields(CommentSettings)], path)
        base = CommentSettings()
        direction = data.get("direction", base.direction)
        if direction is False:  # YAML 1.1 reads a bare `off` as false
            direction = "off"
        return CommentSettings(
            direction=self.choice(
                direction,
                join(path, "direction"),
                DIRECTIONS,
                base.direction,
            ),
            visibility=self.choice(
                data.get("visibility", base.visibility),
                join(path, "visibility"),
                VISIBILITIES,
                base.visibility,
            ),
            attribution=self.attribution(
                data.get("attribution", base.attribution), join(path, "attribution")
            ),
            history=self.boolean(data.get("history", base.history), join(path, "history"), False),
            authors=self.authors(data.get("authors"), join(path, "authors")),
        )

    def attribution(self, value: Any, path: str) -> str:
        """A format with ``{author}`` and ``{source}`` only (empty: no attribution line)."""
        if value is None:
            return ""
        text = self.string(value, path)
        if text is None:
            return CommentSettings.attribution
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
        except ValueError as exc:
            self.problem(path, f"not a valid format ({exc}); e.g. '{{author}} via {{source}}:'")
            return CommentSettings.attribution
        unknown = sorted({n for n in names if n not in PLACEHOLDERS})
        if unknown:
            self.problem(
                path,
                f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)} "
                "(allowed: {author}, {source})",
            )
            return CommentSettings.attribution
        return text

    def authors(self, value: Any, path: str) -> MappingProxyType[str, str]:
        """E-mail -> the vendor's user id; e-mails are compared in lower case."""
        data = self.mapping(value, path)
        result: dict[str, str] = {}
        for email, user in data.items():
            where = join(path, email)
            if not isinstance(email, str) or "@" not in email:
                self.problem(where, "expected an e-mail address as the key")
                continue
            text = self.scalar(user, where)
            if text is not None:
                result[email.strip().lower()] = text
        return MappingProxyType(result)
