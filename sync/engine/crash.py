"""Named crash points for the crash tests (docs/architecture.md §4).

``TICKETSYNC_CRASH_AT=<name>`` makes the process kill itself with SIGKILL the first time
it reaches that point: no cleanup, no flush, exactly like power loss. Points:
``after_plan``, ``after_create_intent``, ``after_vendor_ack``, ``mid_page``, and the comment
post's ``after_comment_intent`` and ``after_comment_ack`` (``COMMENT_POINTS``). Unset (always,
outside tests) it costs one dictionary lookup.

Only a pass that carries out an undo (docs/architecture.md §8.7) reaches ``UNDO_POINTS``:
``mid_undo`` after its first change is settled, ``undo_before_send`` after a restored
push's base moved and before its update leaves, ``undo_after_vendor_ack`` after the vendor
took it and before anything else is recorded.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_plan", "after_create_intent", "after_vendor_ack", "mid_page")
UNDO_POINTS = ("mid_undo", "undo_before_send", "undo_after_vendor_ack")
#: Crash points of a comment post (docs/architecture.md §8.5): after its intent is
#: committed, and after the vendor acknowledged it but before we recorded the reply.
COMMENT_POINTS = ("after_comment_intent", "after_comment_ack")


def crashpoint(name: str) -> None:
    if os.environ.get("TICKETSYNC_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
