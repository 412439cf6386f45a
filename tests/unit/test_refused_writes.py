"""Which refused writes the push sends again, and within what limits (issue 19 item 6)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sync.config.model import HttpSettings
from sync.engine.refused import WriteRefusals
from sync.errors import ItemError, RateLimited, Retriable


def refusals(**http: Any) -> WriteRefusals:
    settings = HttpSettings(**http)
    state: Any = SimpleNamespace(adapter=SimpleNamespace(connection=SimpleNamespace(http=settings)))
    return WriteRefusals(state)


def test_only_a_refusal_is_sent_again() -> None:
    assert WriteRefusals.refused(RateLimited("x", status=429))
    assert WriteRefusals.refused(Retriable("x", status=503, retry_after=1))
    assert not WriteRefusals.refused(Retriable("x", status=503))  # maybe applied: lost reply
    assert not WriteRefusals.refused(Retriable("x"))  # timed out: maybe applied
    assert not WriteRefusals.refused(ItemError("x", status=422))
    # a create answered 503 keeps the lost-reply path, even with Retry-After
    assert not WriteRefusals.refused(Retriable("x", status=503, retry_after=1), create=True)
    assert WriteRefusals.refused(RateLimited("x", status=429), create=True)


async def test_waits_stay_within_the_cap_and_the_budget() -> None:
    gate = refusals(retry_after_cap=5.0, retry_budget=2)
    assert not await gate.wait(RateLimited("x", status=429, retry_after=6))
    assert await gate.wait(RateLimited("x", status=429, retry_after=0))
    assert await gate.wait(RateLimited("x", status=429, retry_after=0))
    assert not await gate.wait(RateLimited("x", status=429, retry_after=0))  # budget spent
