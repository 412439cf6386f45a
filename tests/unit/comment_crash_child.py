"""A child process for the comment crash tests: one run of memory connection ``a`` with
comments on, its vendor loaded from and saved to a pickle file.

The vendor is saved right after each comment post returns, before the engine records the
reply, so a SIGKILL at ``after_comment_ack`` (``TICKETSYNC_CRASH_AT``) leaves a vendor that
has the comment and a mirror that only has the intent, as a real vendor would.

Usage: ``python -m tests.unit.comment_crash_child DB_URL STORE_FILE``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.config.model import CommentSettings
from sync.db import Mirror
from sync.vendors.base import OutgoingComment, RemoteComment
from sync.vendors.memory import adapter as memory
from tests.unit.engine_helpers import Clock, make_run


def save(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(dict(memory._STORES)))
    os.replace(tmp, path)


def main(url: str, path: Path) -> int:
    memory._STORES.update(pickle.loads(path.read_bytes()))
    post = memory.MemoryAdapter.post_comment

    async def post_and_save(self: Any, external_id: str, comment: OutgoingComment) -> RemoteComment:
        posted = await post(self, external_id, comment)
        save(path)
        return posted

    memory.MemoryAdapter.post_comment = post_and_save  # type: ignore[method-assign]
    clock = Clock()
    clock.now = datetime(2025, 12, 1, tzinfo=UTC)
    mirror = Mirror(url)
    run = make_run(
        mirror, "a", comments=CommentSettings(direction="both"), create_when={}, clock=clock
    )
    result = asyncio.run(run.run())
    save(path)
    mirror.dispose()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
