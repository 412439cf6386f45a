"""Generic checks of loaded YAML values, collecting problems instead of stopping at one.

Each check returns a usable value even when the input is wrong (the default it is given),
so the parser goes on and reports every problem of the file at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def join(path: str, key: object) -> str:
    """``path.key``, or ``key`` at the top level."""
    return f"{path}.{key}" if path else str(key)


def describe(value: Any) -> str:
    """A short description of ``value`` for problems: its repr, or its kind."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def freeze(value: Any) -> Any:
    """``value`` with every mapping made read-only and every list a tuple, recursively."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


class Checker:
    """Typed checks of YAML values; every problem goes to ``problems`` as ``path: message``.

    ``inline_secrets`` collects the paths of secrets written in the file itself (not taken
    from the environment or a file), for the permission warning of ``load_config``.
    """

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []
        #: Secret values met so far: a problem that quotes one (say, a token pasted under
        #: the wrong key as well) is reported with it masked.
        self.secret_values: set[str] = set()
        self.inline_secrets: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    def mapping(self, value: Any, path: str, *, null_ok: bool = True) -> dict[Any, Any]:
        if value is None and null_ok:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {describe(value)}")
            return {}
        return value

    def keys(self, data: Mapping[Any, Any], allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                self.problem(join(path, key), "unknown key" + suggest(str(key), allowed))

    def number(
        self, value: Any, path: str, default: float, *, minimum: float = 0, inclusive: bool = False
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"expected a number, got {describe(value)}")
            return default
        if value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            self.problem(path, f"must be {bound}, got {value!r}")
            return default
        return float(value)

    def integer(self, value: Any, path: str, default: int, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected an integer, got {describe(value)}")
            return default
        if value < minimum:
            self.problem(path, f"must be >= {minimum}, got {value!r}")
            return default
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {describe(value)}")
            return default
        return value

    def string(self, value: Any, path: str, *, secret: bool = False) -> str | None:
        if isinstance(value, str):
            return value
        # A secret's value is never echoed, not even a mistyped one.
        got = type(value).__name__ if secret and value is not None else describe(value)
        self.problem(path, f"expected a string, got {got}" + (" (quote it)" if secret else ""))
        return None

    def choice(self, value: Any, path: str, choices: Iterable[str], default: str) -> str:
        choices = tuple(choices)
        if not isinstance(value, str) or value not in choices:
            self.problem(
                path,
                f"expected one of {', '.join(choices)}, got {describe(value)}"
                + (suggest(value, choices) if isinstance(value, str) else ""),
            )
            return default
        return value

    def scalar(self, value: Any, path: str) -> str | None:
        """A field-map value: a string, or a number turned into its text."""
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.problem(path, f"expected a string or number, got {describe(value)} (quote it)")
        return None

    def expand(self, text: str, path: str) -> tuple[str, bool]:
        """Expand ``${NAME}`` references; returns the text and whether any were used."""
        used = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal used
            if match.group(0) == "$${":
                return "${"
            name = match.group(1)
            if name is None:
                self.problem(path, "malformed ${...} reference (write $${ for a literal ${)")
                return ""
            used = True
            if name not in self.env:
                self.problem(path, f"environment variable {name} is not set")
                return ""
            return self.env[name]

        return _REFERENCE.sub(substitute, text), used

    def url(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if text is None:
            return ""
        return self.check_url(self.expand(text, path)[0], path)

    def check_url(self, text: str, path: str) -> str:
        """An http(s) base URL, without its trailing slash."""
        parts = urlsplit(text)
        try:
            _ = parts.port  # urlsplit checks the port only when asked
        except ValueError:
            self.problem(path, "invalid port")
            return text
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem(path, "expected an http(s) URL with a host, e.g. https://example.com")
        elif parts.username or parts.password:
            self.problem(path, "must not contain a user name or password (use credentials)")
        elif parts.scheme == "http" and not is_loopback(parts.hostname):
            self.problem(path, "must use https:// (plain http is allowed only for loopback hosts)")
        return text.rstrip("/")
