"""The backoff maths of sync.retry: request, ticket and connection retries."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sync.retry import (
    CONNECTION_BACKOFF_CAP_S,
    TICKET_RETRY_CAP,
    connection_backoff,
    cooldown_seconds,
    request_backoff,
    request_delay,
    ticket_backoff,
)


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 30), (1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (9, 3600)],
)
def test_ticket_backoff_doubles_from_30s_up_to_an_hour(failures: int, seconds: int) -> None:
    assert ticket_backoff(failures) == timedelta(seconds=seconds)


def test_ticket_backoff_never_overflows() -> None:
    assert ticket_backoff(10**9) == TICKET_RETRY_CAP
    assert ticket_backoff(-3) == timedelta(seconds=30)


def test_ticket_backoff_matches_the_engine_rule() -> None:
    # The rule the engine applied before it moved here: min(1h, 30s * 2**max(0, n - 1)).
    for failures in range(40):
        expected = min(timedelta(hours=1), timedelta(seconds=30) * 2 ** max(0, failures - 1))
        assert ticket_backoff(failures) == expected


@pytest.mark.parametrize(
    ("interval", "failures", "seconds"),
    [(60, 1, 120), (60, 2, 240), (60, 5, 1920), (60, 6, 3600), (1, 16, 3600), (0.5, 3, 4)],
)
def test_connection_backoff(interval: float, failures: int, seconds: float) -> None:
    assert connection_backoff(interval, failures) == seconds


def test_connection_backoff_is_capped_for_any_count() -> None:
    assert connection_backoff(0.001, 10**9) == min(CONNECTION_BACKOFF_CAP_S, 0.001 * 2**16)
    assert connection_backoff(60, 10**9) == CONNECTION_BACKOFF_CAP_S


def test_request_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [request_backoff(0.5, 30.0, attempt, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not a fixed step


def test_request_delay_honours_retry_after_and_cooldown() -> None:
    rng = random.Random(1)
    assert request_delay(0.5, 1.0, 0, rng, retry_after=7.0) == 7.0
    assert request_delay(0.5, 1.0, 0, rng, cooldown=9.0) == 9.0
    assert request_delay(0.5, 1.0, 0, rng, retry_after=2.0, cooldown=3.0) == 3.0
    assert 0 <= request_delay(0.5, 1.0, 0, rng) <= 0.5


def test_cooldown_seconds() -> None:
    assert cooldown_seconds(0.5, 30.0, 3, 12.0) == 12.0
    assert cooldown_seconds(0.5, 30.0, 3, None) == 4.0
    assert cooldown_seconds(0.5, 30.0, 10**6, None) == 30.0
