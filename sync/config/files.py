"""Reading the config file: its bytes, strict YAML, and the inline-secrets warning."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sync.errors import ConfigError


def read_bytes(file: Path, source: str) -> bytes:
    """The file's content; ``ConfigError`` saying why it cannot be read."""
    try:
        return file.read_bytes()
    except FileNotFoundError:
        problem = "no such file"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except PermissionError:
        problem = "cannot read it: permission denied (check its owner and mode)"
    except OSError as exc:
        problem = f"cannot read it: {exc.strerror}"
    raise ConfigError([problem], source=source)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<" merges are overrides by design
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # unhashable keys are SafeLoader's to reject
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(content: bytes, source: str) -> Any:
    """Parse YAML; ``ConfigError`` with the position (never the line: it may hold a secret)."""
    try:
        return yaml.load(content, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"YAML syntax error{where}: {message}"], source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"YAML error: {exc}"], source=source) from None


def permission_warnings(file: Path, inline: Sequence[str]) -> tuple[str, ...]:
    """A warning when ``file`` holds secrets inline (their paths in ``inline``) and group or
    others may read it. Only declared secrets count, never identifiers such as a client id."""
    if not inline:
        return ()
    try:
        mode = file.stat().st_mode
    except OSError:
        return ()
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return ()
    file = file.absolute()
    return (
        f"{file} holds secrets inline ({', '.join(inline)}) and is readable by group or "
        f"others: run `chmod 600 {file}`, or move them to ${{NAME}} variables or NAME_file "
        "files",
    )
