"""The post marker a comment carries, so a post whose reply was lost can be found again
(docs/architecture.md §8.5).

The marker rides on the comment's last line, ``[ticketsync:<marker>]``. It is plain text,
so it survives vendors that strip HTML, and it is short enough to stay out of the way.
"""

from __future__ import annotations

import re

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
