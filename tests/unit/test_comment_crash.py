"""A comment post killed at any instant converges with no duplicate and no lost comment
(docs/architecture.md §8.5, §3.3): in-process kills at each comment crash point, and one
real SIGKILL of a child process."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.db import Mirror
from sync.engine import crash
from sync.engine.crash import COMMENT_POINTS
from sync.vendors.memory import adapter as memory
from tests.unit.engine_helpers import make_run, sql, vendor
from tests.unit.test_comments import BOTH, add_local, clock, mirror_comments, paired, run

ROOT = Path(__file__).resolve().parents[2]


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing after the crash point runs, nothing commits."""


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    memory.reset_stores()
    yield
    memory.reset_stores()


def killed_at(mirror: Mirror, point: str, monkeypatch: pytest.MonkeyPatch, **options: bool) -> None:
    def kill(pid: int, sig: int) -> None:
        raise Killed(point)

    monkeypatch.setenv("TICKETSYNC_CRASH_AT", point)
    monkeypatch.setattr(crash.os, "kill", kill)
    with pytest.raises(Killed):
        asyncio.run(make_run(mirror, "a", comments=BOTH, clock=clock(), options=options).run())
    monkeypatch.delenv("TICKETSYNC_CRASH_AT")


@pytest.mark.parametrize("point", COMMENT_POINTS)
def test_a_killed_post_is_settled_by_its_marker(
    mirror: Mirror, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid, eid_a, eid_b = paired(mirror)
    add_local(mirror, tid, "hello", public=True)
    killed_at(mirror, point, monkeypatch)
    assert sql(mirror, "SELECT state FROM comment_links WHERE connection = 'a'") == [("posting",)]
    landed = len(vendor("a").comments(eid_a))
    assert landed == (1 if point == "after_comment_ack" else 0)
    for _ in range(2):
        for name in ("a", "b"):
            run(mirror, name)
    assert len(vendor("a").comments(eid_a)) == 1, "posted exactly once"
    assert len(vendor("b").comments(eid_b)) == 1
    assert len(mirror_comments(mirror)) == 1
    assert sql(mirror, "SELECT DISTINCT state FROM comment_links") == [("active",)]


def test_a_post_killed_after_the_ack_is_never_resent_where_it_cannot_be_found(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = {"comments_read": False}
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "hello", public=True)
    killed_at(mirror, "after_comment_ack", monkeypatch, **opts)
    run(mirror, "a", options=opts)
    run(mirror, "a", options=opts)
    assert len(vendor("a").comments(eid_a)) == 1
    ((state, error),) = sql(mirror, "SELECT state, error FROM comment_links")
    assert state == "unknown" and "will not post it again" in error


def test_a_real_sigkill_between_the_post_and_our_commit(mirror: Mirror, tmp_path: Path) -> None:
    tid, eid_a, _ = paired(mirror)
    add_local(mirror, tid, "hello", public=True)
    saved = tmp_path / "stores.pickle"
    url = mirror.url.render_as_string(hide_password=False)
    saved.write_bytes(pickle.dumps(dict(memory._STORES)))
    child = subprocess.run(
        [sys.executable, "-m", "tests.unit.comment_crash_child", url, str(saved)],
        cwd=ROOT,
        env={**os.environ, "TICKETSYNC_CRASH_AT": "after_comment_ack", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    memory.reset_stores()
    memory._STORES.update(pickle.loads(saved.read_bytes()))
    assert len(vendor("a").comments(eid_a)) == 1, "the vendor has it; we have no reply"
    assert sql(mirror, "SELECT state FROM comment_links") == [("posting",)]
    run(mirror, "a")
    run(mirror, "a")
    assert len(vendor("a").comments(eid_a)) == 1, "found by its marker, not posted again"
    assert sql(mirror, "SELECT state FROM comment_links") == [("active",)]
