"""Scoring: which unlinked vendor ticket is which unlinked mirror ticket (pure, no I/O).

docs/architecture.md §8.7. Candidates are only looked for within *blocks*: mirror tickets
that share the vendor ticket's normalised requester e-mail or normalised subject (plus the
one its external reference names), so the cost follows the block sizes, never the product
of both sides. Within a block a pair scores the weights of the keys it agrees on, over the
weights of the keys the connection counts:

=================  ======  ===================================================
key                weight  agrees when
=================  ======  ===================================================
requester_email    0.4     equal after trimming and lower-casing
subject            0.4     equal after ``normal_subject``
created_at         0.2     at most ``window_seconds`` apart, and the subject
                           agrees too (the e-mail, when the subject is not
                           counted)
reference          -       the vendor's reference is the mirror ticket's id:
                           the pair scores 1 at once
=================  ======  ===================================================

The creation time only confirms: one customer often writes several tickets a day, to
one helpdesk or to several, so "same requester, same day" alone must stay below the
default ``min_score`` (0.5), while a copy keeps its subject and its day (0.6).

The assignment is greedy and deterministic: pairs in order of score (highest first),
then the smaller distance in creation time, then vendor key and mirror id, each side
taken at most once.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sync.config.model import MatchSettings

WEIGHTS = {"requester_email": 0.4, "subject": 0.4, "created_at": 0.2}
#: Reply and forward prefixes, and bracketed tags ("[#123]", "[External]"), at the front.
_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|antw)\s*(?:\[\d+\])?\s*:|\[[^\]]*\])\s*", re.I)
_NON_WORD = re.compile(r"[\W_]+")
#: The largest block scored in full: a key shared by more tickets than this (a no-reply
#: address, "Question") says little, and scoring it would cost its square.
MAX_BLOCK = 500


def normal_email(value: str | None) -> str | None:
    """The e-mail as compared: trimmed and lower-cased; None when empty."""
    text = (value or "").strip().lower()
    return text or None


def normal_subject(value: str | None) -> str | None:
    """The subject as compared: reply/forward prefixes and leading tags dropped, accents
    folded, punctuation and case ignored, whitespace collapsed; None when nothing is left."""
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(c for c in text if not unicodedata.combining(c))
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    words = _NON_WORD.sub(" ", text.casefold()).split()
    return " ".join(words) or None


@dataclass(frozen=True)
class Side:
    """One ticket's normalised keys: ``key`` is the mirror's id or the vendor's id key."""

    key: str
    email: str | None
    subject: str | None
    created_at: datetime | None
    reference: str | None = None


@dataclass(frozen=True)
class Pair:
    """A scored pair: the mirror ticket, the vendor ticket's key, the score and the keys
    that agreed (in ``WEIGHTS`` order, ``reference`` first when it decided)."""

    ticket_id: int
    external_key: str
    score: float
    reasons: tuple[str, ...]
    distance: float


class MirrorIndex:
    """The unlinked mirror tickets, blocked by e-mail and by subject; ``take`` removes one."""

    def __init__(self, tickets: Iterable[tuple[int, Side]]) -> None:
        self.sides: dict[int, Side] = {}
        self._blocks: dict[tuple[str, str], set[int]] = defaultdict(set)
        for ticket_id, side in tickets:
            self.sides[ticket_id] = side
            for block in _blocks(side):
                self._blocks[block].add(ticket_id)

    def __len__(self) -> int:
        return len(self.sides)

    def near(self, side: Side) -> set[int]:
        """The mirror tickets in ``side``'s blocks, and the one its reference names."""
        found: set[int] = set()
        for block in _blocks(side):
            members = self._blocks.get(block, set())
            if len(members) <= MAX_BLOCK:
                found |= members
        reference = side.reference
        if reference is not None and reference.isdigit() and int(reference) in self.sides:
            found.add(int(reference))
        return found

    def take(self, ticket_id: int) -> None:
        side = self.sides.pop(ticket_id, None)
        if side is not None:
            for block in _blocks(side):
                self._blocks[block].discard(ticket_id)


def _blocks(side: Side) -> list[tuple[str, str]]:
    blocks = []
    if side.email:
        blocks.append(("email", side.email))
    if side.subject:
        blocks.append(("subject", side.subject))
    return blocks


def score(mirror: Side, remote: Side, settings: MatchSettings) -> tuple[float, tuple[str, ...]]:
    """The pair's score (0..1) and the keys that agreed, as the module docstring says."""
    keys = settings.keys
    if "reference" in keys and remote.reference is not None and remote.reference == mirror.key:
        return 1.0, ("reference",)
    total = sum(WEIGHTS[k] for k in keys if k in WEIGHTS)
    if total == 0:
        return 0.0, ()
    agreed = []
    if "requester_email" in keys and mirror.email and mirror.email == remote.email:
        agreed.append("requester_email")
    if "subject" in keys and mirror.subject and mirror.subject == remote.subject:
        agreed.append("subject")
    confirms = "subject" if "subject" in keys else "requester_email"
    distance = _distance(mirror, remote)
    near = distance is not None and distance <= settings.window_seconds
    if "created_at" in keys and near and confirms in agreed:
        agreed.append("created_at")
    return round(sum(WEIGHTS[k] for k in agreed) / total, 6), tuple(agreed)


def _distance(mirror: Side, remote: Side) -> float | None:
    if mirror.created_at is None or remote.created_at is None:
        return None
    return abs((mirror.created_at - remote.created_at).total_seconds())


def best_pairs(index: MirrorIndex, remotes: Sequence[Side], settings: MatchSettings) -> list[Pair]:
    """The pairs of ``remotes`` with ``index`` that score at least ``min_score``, each side
    used once (greedy, deterministic: see the module docstring). Taken mirror tickets are
    removed from ``index``, so a later page cannot claim them again."""
    scored: list[Pair] = []
    for remote in remotes:
        for ticket_id in index.near(remote):
            value, reasons = score(index.sides[ticket_id], remote, settings)
            if value >= settings.min_score:
                distance = _distance(index.sides[ticket_id], remote)
                far = float("inf") if distance is None else distance
                scored.append(Pair(ticket_id, remote.key, value, reasons, far))
    scored.sort(key=lambda p: (-p.score, p.distance, p.external_key, p.ticket_id))
    chosen: list[Pair] = []
    used_remote: set[str] = set()
    for pair in scored:
        if pair.external_key in used_remote or pair.ticket_id not in index.sides:
            continue
        used_remote.add(pair.external_key)
        index.take(pair.ticket_id)
        chosen.append(pair)
    return chosen
