"""Property: a private note never becomes public anywhere (docs/architecture.md §8.5),
whatever the comments' sources, their order, the runs between them and which vendors can
post private notes."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.db import Mirror, migrate
from sync.vendors.memory import adapter as memory
from tests.unit.test_comments import add_local, mirror_comments, paired, run

SOURCES = ("a", "b", "local")
BODY = re.compile(r"comment \d+")
MARKER = "[ticketsync:"
events = st.lists(
    st.tuples(st.sampled_from(SOURCES), st.booleans(), st.booleans()), min_size=1, max_size=6
)


@settings(max_examples=6, deadline=None)
@given(events=events, private_at_b=st.booleans(), visibility=st.sampled_from(["both", "private"]))
def test_a_private_note_never_turns_public(
    events: list[tuple[str, bool, bool]], private_at_b: bool, visibility: str
) -> None:
    from sync.config.model import CommentSettings

    memory.reset_stores()
    comments = CommentSettings(direction="both", visibility=visibility)
    opts = {"a": {}, "b": {"private_comments": private_at_b}}
    with tempfile.TemporaryDirectory() as folder:
        mirror = Mirror(f"sqlite:///{Path(folder) / 'm.db'}")
        migrate(mirror)
        try:
            tid, eid_a, eid_b = paired(mirror, comments=comments)
            ids = {"a": eid_a, "b": eid_b}
            private: set[str] = set()
            for i, (source, public, sync_now) in enumerate(events):
                body = f"comment {i}"
                if not public:
                    private.add(body)
                if source == "local":
                    add_local(mirror, tid, body, public=public)
                else:
                    memory.store(source).comment(ids[source], body, is_public=public)
                if sync_now:
                    run(mirror, "a", comments=comments, options=opts["a"])
            for _ in range(2):
                for name in ("a", "b"):
                    run(mirror, name, comments=comments, options=opts[name])
            for name in ("a", "b"):
                for c in memory.store(name).comments(ids[name]):
                    (text,) = BODY.findall(c.body)
                    assert not (c.is_public and text in private), (name, c)
                    if name == "b" and not private_at_b and MARKER in c.body:
                        assert c.is_public, "never posted where it could not stay private"
            for body, public, _ in mirror_comments(mirror):
                assert not (public and body in private), body
        finally:
            mirror.dispose()
            memory.reset_stores()
