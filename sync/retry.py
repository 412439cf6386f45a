"""Every retry policy of ticketsync and its backoff maths, in one place.

Three levels retry, each on its own clock:

- **Request** (``request_delay``, used by ``sync.http``): a safe request that failed with a
  ``Retriable`` error is tried again after an exponential backoff with full jitter (Brooker,
  "Exponential Backoff And Jitter", AWS Architecture Blog, 2015), never sooner than the
  vendor's ``Retry-After`` or the connection's current 429 cool-down.
- **Ticket** (``ticket_backoff``, used by the engine): a ticket whose push or create failed
  waits ``TICKET_RETRY_BASE * 2**(failures - 1)``, at most ``TICKET_RETRY_CAP``, before the
  next run tries it again.
- **Connection** (``connection_backoff``, used by the daemon's scheduler): a connection whose
  runs keep failing waits ``interval * 2**failures``, at most ``CONNECTION_BACKOFF_CAP_S``.

``parse_retry_after`` reads a vendor's ``Retry-After`` header whatever it holds: garbage,
negative, infinite or absurdly far values never raise, and no wait exceeds
``RETRY_AFTER_MAX_S``.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime

#: First and longest wait of a ticket whose write failed.
TICKET_RETRY_BASE = timedelta(seconds=30)
TICKET_RETRY_CAP = timedelta(hours=1)

#: Longest wait between two runs of a connection that keeps failing.
CONNECTION_BACKOFF_CAP_S = 3600.0

#: The longest ``Retry-After`` believed: a vendor asking for more (``1e12``, a date in the
#: year 9999) is taken to mean a day, which keeps every derived time representable.
RETRY_AFTER_MAX_S = 86400.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    Never raises: unreadable or infinite values give None, negative or past ones 0, and
    anything beyond ``RETRY_AFTER_MAX_S`` is cut to it.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        try:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(RETRY_AFTER_MAX_S, max(0.0, seconds))


def request_backoff(base: float, cap: float, attempt: int, rng: random.Random) -> float:
    """Full-jitter backoff before retry ``attempt + 1`` (``attempt`` counts from 0)."""
    ceiling = min(cap, base * 2 ** min(attempt, 64))
    return rng.uniform(0, ceiling)


def request_delay(
    base: float,
    cap: float,
    attempt: int,
    rng: random.Random,
    *,
    retry_after: float | None = None,
    cooldown: float = 0.0,
) -> float:
    """Seconds before the next attempt: the jittered backoff, but never sooner than the
    vendor's ``retry_after`` or the connection's remaining ``cooldown``."""
    return max(request_backoff(base, cap, attempt, rng), retry_after or 0.0, cooldown)


def cooldown_seconds(base: float, cap: float, attempt: int, retry_after: float | None) -> float:
    """How long a 429 cools the whole connection down: the vendor's ``Retry-After``, else
    the un-jittered backoff of this attempt."""
    if retry_after is not None:
        return retry_after
    return min(cap, base * 2 ** min(attempt, 64))


def ticket_backoff(failures: int) -> timedelta:
    """How long a ticket whose write failed ``failures`` times in a row waits.

    The exponent stops growing long after the cap is reached, so no count overflows.
    """
    return min(TICKET_RETRY_CAP, TICKET_RETRY_BASE * (2 ** min(32, max(0, failures - 1))))


def connection_backoff(interval: float, failures: int) -> float:
    """Seconds before the next run of a connection that failed ``failures`` runs in a row."""
    return min(CONNECTION_BACKOFF_CAP_S, interval * 2 ** min(failures, 16))
