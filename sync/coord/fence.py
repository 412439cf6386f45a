"""The last-moment fence of a vendor write (docs/architecture.md §7.3, §8.4).

A write may wait after the engine checked its lease: for the connection's semaphore, a 429
cool-down, the rate limiter, a token refresh. Another instance may take the lease during
that wait. So the engine runs each vendor write inside ``write_fence(check)``, and the
transport calls ``check_write_fence()`` as its very last step before a write's bytes go
out (``sync.http.HttpClient`` for every request that is not safe; the memory vendor for
its creates and updates). ``check`` raises (``LeaseLost``) to stop the write unsent.
Reads are never fenced. The fence is a context variable, so it follows the write into any
task the adapter starts, and concurrent writes each carry their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = ["check_write_fence", "write_fence"]

#: The fence of the vendor write being made in this task, if any (``write_fence``).
_WRITE_FENCE: ContextVar[Callable[[], None] | None] = ContextVar("write_fence", default=None)


@contextlib.contextmanager
def write_fence(check: Callable[[], None]) -> Iterator[None]:
    """Writes sent inside this block (and tasks it starts) call ``check()`` right before
    their bytes go out; ``check`` raises (``LeaseLost``) to stop the write unsent."""
    token = _WRITE_FENCE.set(check)
    try:
        yield
    finally:
        _WRITE_FENCE.reset(token)


def check_write_fence() -> None:
    """Run the current write's fence, if any: a transport calls this as its last step
    before a write leaves (``HttpClient`` does; so does the memory vendor)."""
    check = _WRITE_FENCE.get()
    if check is not None:
        check()
