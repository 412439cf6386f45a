"""``connections.NAME.comments`` (docs/architecture.md §8.5): defaults, parsing, and every
problem reported together."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from sync.config import CommentSettings, parse_config
from sync.errors import ConfigError


def config(comments: Any = None) -> dict[str, Any]:
    connection: dict[str, Any] = {"vendor": "memory", "base_url": "http://127.0.0.1:9"}
    if comments is not None:
        connection["comments"] = comments
    return {"connections": {"m": connection}}


def test_comments_are_off_by_default() -> None:
    settings = parse_config(config()).connections["m"].comments
    assert settings == CommentSettings()
    assert (settings.direction, settings.visibility, settings.history) == ("off", "both", False)
    assert settings.attribution == "{author} via {source}:"
    assert not settings.pulls and not settings.pushes


def test_a_full_block_is_parsed() -> None:
    text = """
connections:
  m:
    vendor: memory
    base_url: http://127.0.0.1:9
    comments:
      direction: push
      visibility: public
      attribution: "{author} ({source}) wrote:"
      history: true
      authors: {Alice@Example.com: 42, bob@example.com: agent-bob}
"""
    settings = parse_config(yaml.safe_load(text)).connections["m"].comments
    assert settings.pushes and not settings.pulls
    assert settings.travels(True) and not settings.travels(False)
    assert settings.attribution == "{author} ({source}) wrote:" and settings.history
    assert dict(settings.authors) == {"alice@example.com": "42", "bob@example.com": "agent-bob"}


def test_a_bare_yaml_off_means_off_and_null_attribution_means_none() -> None:
    data = yaml.safe_load("direction: off\nattribution: null\n")
    settings = parse_config(config(data)).connections["m"].comments
    assert settings.direction == "off" and settings.attribution == ""


def test_every_problem_is_reported_at_once() -> None:
    bad = {
        "direction": "sideways",
        "visibility": "secret",
        "attribution": "{author} via {vendor}",
        "history": "yes",
        "authors": {"not-an-email": "1", "a@b.c": [1]},
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as info:
        parse_config(config(bad))
    text = "\n".join(info.value.problems)
    for where in (
        "connections.m.comments.direction",
        "connections.m.comments.visibility",
        "connections.m.comments.attribution",
        "connections.m.comments.history",
        "connections.m.comments.authors.not-an-email",
        "connections.m.comments.authors.a@b.c",
        "colour",
    ):
        assert where in text, where
    assert "{vendor}" in text


def test_check_says_what_the_vendor_cannot_do_with_comments() -> None:
    from sync.checks import _comments
    from sync.runner import build_adapter

    data = config({"direction": "both"})
    data["connections"]["m"]["options"] = {"comments_read": False, "private_comments": False}
    connection = parse_config(data).connections["m"]
    (line,) = _comments(connection, build_adapter(connection, None))
    assert line == (
        "  comments: both (both); memory reads no comments and posts no private notes "
        "(they are skipped there)"
    )
    off = parse_config(config()).connections["m"]
    assert _comments(off, build_adapter(off, None)) == []
