"""Named crash points for the crash tests (docs/architecture.md §4).

``TICKETSYNC_CRASH_AT=<name>`` makes the process kill itself with SIGKILL the first time
it reaches that point: no cleanup, no flush, exactly like power loss. Points:
``after_plan``, ``after_create_intent``, ``after_vendor_ack``, ``mid_page``. Unset (always,
outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_plan", "after_create_intent", "after_vendor_ack", "mid_page")


def crashpoint(name: str) -> None:
    if os.environ.get("TICKETSYNC_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
