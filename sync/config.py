"""The configuration file: YAML in, validated and frozen objects out (design §2.2, §7.13).

Contract:

- ``load_config(path)`` reads a file, ``parse_config(data)`` checks already-loaded data; both
  return a ``Config`` or raise ``ConfigError`` listing *every* problem at once, each as
  ``"dotted.path: message"``. A user mistake is never a traceback.
- Unknown keys are errors at every level (with "did you mean" when one is close).
- Everything returned is frozen: dataclasses are ``frozen=True``, mappings are read-only.
- Secrets are ``Secret`` objects: a ``str`` whose ``str()``, ``repr()`` and f-string forms
  are ``***``; only ``Secret.reveal()`` gives the value. ``Config.secrets()`` lists every
  value, so the logging pipeline can redact them.
- ``${NAME}`` takes text from the environment in credentials, ``database.url`` and
  ``base_url`` only (``$${`` is a literal ``${``); nowhere else, so a ``$`` in a field map
  stays what it is. ``NAME_file: PATH`` reads a credential from a file, the way systemd
  hands credentials over (``$CREDENTIALS_DIRECTORY``).
- Conflict policies: a connection's ``conflict_policy`` given as a plain name applies to
  every field of that connection; given as a mapping it is merged key by key over
  ``sync.conflict_policy``. ``http`` and ``guard`` are merged key by key over ``sync``'s.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from sync.errors import ConfigError

#: Where ``find_config_path`` looks after ``--config`` and ``$TICKETSYNC_CONFIG``.
LOCAL_CONFIG = Path("config.yaml")
SYSTEM_CONFIG = Path("/etc/ticketsync/config.yaml")

DEFAULT_DATABASE_URL = "sqlite:///ticketsync.db"
VENDORS = ("kapture", "proprofs", "sirportly", "zoho_desk")
# "memory" is the in-memory vendor of sync/vendors/memory.py, for tests only: it is accepted
# here but deliberately left out of messages and config.example.yaml.
TEST_VENDORS = ("memory",)
DIRECTIONS = ("both", "pull", "push")
POLICIES = ("newest", "local", "remote", "manual")
TIE_BREAKS = ("local", "remote")
LOG_FORMATS = ("auto", "text", "json")
CANONICAL_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "status": ("open", "pending", "on_hold", "resolved", "closed"),
        "priority": ("low", "normal", "high", "urgent"),
    }
)

# vendor -> (required credentials, optional credentials); kapture's token has its own rule.
_CREDENTIALS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "kapture": ((), ("token", "create_token", "update_token", "read_token")),
        "proprofs": (("account_email", "token"), ()),
        "sirportly": (("token", "secret"), ()),
        "zoho_desk": (("client_id", "client_secret", "refresh_token", "org_id"), ("accounts_url",)),
        "memory": ((), ("token",)),
    }
)
_CONNECTION_KEYS = (
    "vendor",
    "base_url",
    "credentials",
    "interval",
    "direction",
    "fields",
    "create",
    "options",
    "http",
    "conflict_policy",
    "guard",
)
_KAPTURE_PER_ENDPOINT = ("create_token", "update_token", "read_token")
# Credentials that are addresses, not secrets: redacting them would only blind the logs.
_NOT_SECRET = frozenset({"accounts_url"})
_CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})


class Secret(str):
    """A secret string: every printable form is ``***``; ``reveal()`` gives the value."""

    __slots__ = ()

    def reveal(self) -> str:
        """The secret's value, as a plain ``str``."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, format_spec: str) -> str:
        return format("***", format_spec)


def _empty_mapping() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, repr=False)
class DatabaseConfig:
    """The mirror's database. ``url`` is resolved: a relative SQLite path is made absolute."""

    url: str = DEFAULT_DATABASE_URL
    auto_upgrade: bool = True

    def redacted_url(self) -> str:
        """The URL with its password replaced by ``***``, for messages and ``status``."""
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):
            return "<invalid database url>"

    def password(self) -> str | None:
        """The password in the URL, or None."""
        try:
            return make_url(self.url).password
        except (ArgumentError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"DatabaseConfig(url={self.redacted_url()!r}, auto_upgrade={self.auto_upgrade!r})"


@dataclass(frozen=True)
class GuardSettings:
    """The mass-change guard (design §7.5)."""

    share: float = 0.5
    min_count: int = 10


@dataclass(frozen=True)
class PolicySpec:
    """How conflicts are settled: ``per_field`` overrides, else ``default``."""

    default: str = "newest"
    per_field: Mapping[str, str] = field(default_factory=_empty_mapping)

    def for_field(self, name: str) -> str:
        """The policy for the canonical field ``name``."""
        return self.per_field.get(name, self.default)


@dataclass(frozen=True)
class HttpSettings:
    """Transport settings of one connection (used by ``sync.http``)."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 20.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 300.0
    retry_budget: int = 50
    concurrency: int = 4
    rate: float | None = None
    ca_bundle: str | None = None
    max_reply_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class SyncSettings:
    """The ``sync`` section: defaults for every connection, and engine settings."""

    interval: float = 60.0
    conflict_policy: PolicySpec = field(default_factory=PolicySpec)
    tie_break: str = "local"
    lease_seconds: float = 30.0
    state_dir: Path | None = None
    lookback_seconds: float = 300.0
    guard: GuardSettings = field(default_factory=GuardSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    batch_size: int = 100


@dataclass(frozen=True)
class ServiceConfig:
    """The daemon's own settings: health/metrics endpoint (off by default), log format."""

    listen: str | None = None
    log_format: str = "auto"

    def listen_address(self) -> tuple[str, int] | None:
        """``listen`` split into (host, port), brackets removed from IPv6; None when off."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ConnectionConfig:
    """One connection to one vendor account, with ``sync``'s defaults merged in."""

    name: str
    vendor: str
    base_url: str
    credentials: Mapping[str, Secret] = field(default_factory=_empty_mapping)
    interval: float = 60.0
    direction: str = "both"
    fields: Mapping[str, Mapping[str, str] | None] = field(default_factory=_empty_mapping)
    create_when: Mapping[str, tuple[str, ...]] | None = None
    options: Mapping[str, Any] = field(default_factory=_empty_mapping)
    http: HttpSettings = field(default_factory=HttpSettings)
    conflict_policy: PolicySpec = field(default_factory=PolicySpec)
    guard: GuardSettings = field(default_factory=GuardSettings)

    def credential(self, name: str) -> str | None:
        """The revealed value of credential ``name``, or None when not configured."""
        secret = self.credentials.get(name)
        return None if secret is None else secret.reveal()

    def creates(self) -> bool:
        """Whether this connection creates tickets at the vendor (it has ``create:``)."""
        return self.create_when is not None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path | None
    database: DatabaseConfig
    sync: SyncSettings
    service: ServiceConfig
    connections: Mapping[str, ConnectionConfig]
    warnings: tuple[str, ...] = ()

    def secrets(self) -> frozenset[str]:
        """Every secret value (credentials and the database password), for redaction."""
        values = {
            secret.reveal()
            for connection in self.connections.values()
            for name, secret in connection.credentials.items()
            if name not in _NOT_SECRET
        }
        password = self.database.password()
        if password:
            values.add(password)
        return frozenset(values)


def find_config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The config file to use: ``--config``, ``$TICKETSYNC_CONFIG``, ./config.yaml, /etc/...

    A file named by ``--config`` or ``$TICKETSYNC_CONFIG`` must exist: silently using
    another file than the one the operator named would sync the wrong thing.
    """
    env = os.environ if env is None else env
    for named, origin in (
        (explicit, "--config"),
        (env.get("TICKETSYNC_CONFIG"), "$TICKETSYNC_CONFIG"),
    ):
        if named:
            path = Path(named).expanduser()
            if not path.is_file():
                raise ConfigError([f"{path} (from {origin}): no such file"], source=str(path))
            return path
    for path in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in (LOCAL_CONFIG.absolute(), SYSTEM_CONFIG))
    raise ConfigError(
        [f"no configuration file found (looked in --config, $TICKETSYNC_CONFIG, {looked})"]
    )


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at ``path``; raise ``ConfigError`` listing every problem."""
    file = Path(path).expanduser()
    source = str(path)
    data = _load_yaml(_read_bytes(file, source), source)
    config, inline = _parse(data, source=source, env=env, base_dir=file.absolute().parent)
    return replace(config, path=file.absolute(), warnings=_permission_warnings(file, inline))


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate already-loaded data (``base_dir`` anchors relative ``*_file`` paths)."""
    return _parse(data, source=source, env=env, base_dir=base_dir)[0]


def _read_bytes(file: Path, source: str) -> bytes:
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


def _load_yaml(content: bytes, source: str) -> Any:
    try:
        return yaml.load(content, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        # str(exc) quotes the offending line, which may hold a secret: keep only the position.
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"YAML syntax error{where}: {message}"], source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"YAML error: {exc}"], source=source) from None


def _permission_warnings(file: Path, inline: bool) -> tuple[str, ...]:
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
        f"{file} holds secrets inline and is readable by group or others: run "
        f"`chmod 600 {file}`, or move them to ${{NAME}} variables or NAME_file files",
    )


def _parse(
    data: Any, *, source: str, env: Mapping[str, str] | None, base_dir: Path | None
) -> tuple[Config, bool]:
    parser = _Parser(os.environ if env is None else env, base_dir or Path.cwd())
    config = parser.config(data)
    if parser.problems:
        raise ConfigError(_masked(parser.problems, parser.secret_values), source=source)
    return config, parser.inline_secrets


#: Shorter values are not masked in problems: they would garble the paths around them.
_MASK_MIN = 8


def _masked(problems: list[str], secrets: set[str]) -> list[str]:
    for secret in sorted(secrets, key=len, reverse=True):
        problems = [p.replace(secret, "***") for p in problems]
    return problems


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


class _Parser:
    """Walks the loaded YAML once, collecting every problem instead of stopping at the first.

    Each section method returns a usable object even when the section is wrong (falling back
    to defaults), so later sections are still checked; ``_parse`` raises if anything was wrong.
    """

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []
        #: Secret values met so far: a problem that quotes one (say, a token pasted under
        #: the wrong key as well) is reported with it masked.
        self.secret_values: set[str] = set()
        self.inline_secrets = False

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    # --- generic checks -------------------------------------------------------------

    def mapping(self, value: Any, path: str, *, null_ok: bool = True) -> dict[Any, Any]:
        if value is None and null_ok:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_describe(value)}")
            return {}
        return value

    def keys(self, data: Mapping[Any, Any], allowed: Iterable[str], path: str) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                self.problem(_join(path, key), "unknown key" + _suggest(str(key), allowed))

    def number(
        self, value: Any, path: str, default: float, *, minimum: float = 0, inclusive: bool = False
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"expected a number, got {_describe(value)}")
            return default
        if value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            self.problem(path, f"must be {bound}, got {value!r}")
            return default
        return float(value)

    def integer(self, value: Any, path: str, default: int, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected an integer, got {_describe(value)}")
            return default
        if value < minimum:
            self.problem(path, f"must be >= {minimum}, got {value!r}")
            return default
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {_describe(value)}")
            return default
        return value

    def string(self, value: Any, path: str, *, secret: bool = False) -> str | None:
        if isinstance(value, str):
            return value
        # A secret's value is never echoed, not even a mistyped one.
        got = type(value).__name__ if secret and value is not None else _describe(value)
        self.problem(path, f"expected a string, got {got}" + (" (quote it)" if secret else ""))
        return None

    def choice(self, value: Any, path: str, choices: Iterable[str], default: str) -> str:
        choices = tuple(choices)
        if not isinstance(value, str) or value not in choices:
            self.problem(
                path,
                f"expected one of {', '.join(choices)}, got {_describe(value)}"
                + (_suggest(value, choices) if isinstance(value, str) else ""),
            )
            return default
        return value

    def scalar(self, value: Any, path: str) -> str | None:
        """A field-map value: a string, or a number turned into its text."""
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.problem(path, f"expected a string or number, got {_describe(value)} (quote it)")
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
        elif parts.scheme == "http" and not _is_loopback(parts.hostname):
            self.problem(path, "must use https:// (plain http is allowed only for loopback hosts)")
        return text.rstrip("/")

    # --- sections -------------------------------------------------------------------

    def config(self, data: Any) -> Config:
        root = self.mapping(data, "", null_ok=True)
        self.keys(root, ("database", "sync", "connections", "service"), "")
        database = self.database(root.get("database"))
        sync = self.sync(root.get("sync"))
        service = self.service(root.get("service"))
        connections = self.connections(root.get("connections"), sync)
        if database.url.startswith("postgresql"):
            self.leases_outlive_calls(sync, connections)
        return Config(None, database, sync, service, connections)

    def leases_outlive_calls(
        self, sync: SyncSettings, connections: Mapping[str, ConnectionConfig]
    ) -> None:
        """On PostgreSQL a run writes to a vendor only while its lease outlasts the call."""
        for name, connection in connections.items():
            if connection.http.total_timeout >= sync.lease_seconds:
                self.problem(
                    f"connections.{name}.http.total_timeout",
                    f"must be below sync.lease_seconds ({sync.lease_seconds:g}): a vendor "
                    "write is sent only while the lease outlasts it",
                )

    def database(self, value: Any) -> DatabaseConfig:
        data = self.mapping(value, "database")
        self.keys(data, ("url", "auto_upgrade"), "database")
        auto_upgrade = self.boolean(data.get("auto_upgrade", True), "database.auto_upgrade", True)
        raw = self.string(data.get("url", DEFAULT_DATABASE_URL), "database.url")
        if raw is None:
            return DatabaseConfig(auto_upgrade=auto_upgrade)
        text, used_env = self.expand(raw, "database.url")
        url = self.database_url(text)
        if url is None:
            return DatabaseConfig(auto_upgrade=auto_upgrade)
        if make_url(url).password and not used_env:
            self.inline_secrets = True
        return DatabaseConfig(url, auto_upgrade)

    def database_url(self, text: str) -> str | None:
        """The URL as given, except that a relative SQLite path is made absolute."""
        try:
            url = make_url(text)
            url.get_dialect()
        except NoSuchModuleError:
            self.problem("database.url", f"unknown database kind {make_url(text).drivername!r}")
            return None
        except (ArgumentError, ValueError):
            # SQLAlchemy's message quotes the URL, password included: say it our way.
            self.problem(
                "database.url",
                "not a database URL (e.g. sqlite:///ticketsync.db or postgresql://user@host/db)",
            )
            return None
        database = url.database
        if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return text
        if database.startswith("file:"):
            return text  # an SQLite URI filename: its own rules
        path = Path(database).expanduser()
        if path.is_absolute():
            return text
        absolute = os.path.abspath(self.state_root() / path)
        return url.set(database=absolute).render_as_string(hide_password=False)

    def state_root(self) -> Path:
        """Where a relative SQLite path lives: systemd's first state folder, else the cwd."""
        first = self.env.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(first) if first else Path.cwd()

    def sync(self, value: Any) -> SyncSettings:
        data = self.mapping(value, "sync")
        names = [f.name for f in fields(SyncSettings)]
        self.keys(data, names, "sync")
        base = SyncSettings()
        state_dir = data.get("state_dir")
        return SyncSettings(
            interval=self.number(data.get("interval", base.interval), "sync.interval", 60.0),
            conflict_policy=self.policy(data.get("conflict_policy"), "sync.conflict_policy"),
            tie_break=self.choice(
                data.get("tie_break", base.tie_break), "sync.tie_break", TIE_BREAKS, "local"
            ),
            lease_seconds=self.number(
                data.get("lease_seconds", base.lease_seconds), "sync.lease_seconds", 30.0
            ),
            state_dir=None if state_dir is None else self.state_dir(state_dir),
            lookback_seconds=self.number(
                data.get("lookback_seconds", base.lookback_seconds),
                "sync.lookback_seconds",
                300.0,
                inclusive=True,
            ),
            guard=self.guard(data.get("guard"), "sync.guard", base.guard),
            http=self.http(data.get("http"), "sync.http", base.http),
            batch_size=self.integer(
                data.get("batch_size", base.batch_size), "sync.batch_size", 100, minimum=1
            ),
        )

    def state_dir(self, value: Any) -> Path | None:
        text = self.string(value, "sync.state_dir")
        return None if text is None else Path(text).expanduser().absolute()

    def policy(self, value: Any, path: str, base: PolicySpec | None = None) -> PolicySpec:
        """A policy name (every field), or a mapping merged over ``base``."""
        base = base or PolicySpec()
        if value is None:
            return base
        if isinstance(value, str):
            return PolicySpec(self.choice(value, path, POLICIES, base.default))
        data = self.mapping(value, path)
        from sync.vendors.base import SYNC_FIELDS  # lazily: vendors import this module

        self.keys(data, ("default", *SYNC_FIELDS), path)
        per_field = dict(base.per_field)
        for key, item in data.items():
            if key in SYNC_FIELDS:
                per_field[key] = self.choice(item, _join(path, key), POLICIES, "newest")
        default = data.get("default", base.default)
        default = self.choice(default, _join(path, "default"), POLICIES, base.default)
        return PolicySpec(default, MappingProxyType(per_field))

    def guard(self, value: Any, path: str, base: GuardSettings) -> GuardSettings:
        data = self.mapping(value, path)
        self.keys(data, ("share", "min_count"), path)
        share = base.share
        if "share" in data:
            share = self.number(data["share"], _join(path, "share"), base.share)
            if share > 1:
                self.problem(_join(path, "share"), f"must be at most 1, got {share:g}")
        min_count = base.min_count
        if "min_count" in data:
            min_count = self.integer(data["min_count"], _join(path, "min_count"), 10, minimum=0)
        return GuardSettings(share, min_count)

    def http(self, value: Any, path: str, base: HttpSettings) -> HttpSettings:
        data = self.mapping(value, path)
        self.keys(data, [f.name for f in fields(HttpSettings)], path)
        changes: dict[str, Any] = {}
        for key, item in data.items():
            where = _join(path, key)
            if key in ("max_attempts", "retry_budget", "concurrency", "max_reply_bytes"):
                changes[key] = self.integer(item, where, getattr(base, key), minimum=1)
            elif key == "rate":
                changes[key] = None if item is None else self.number(item, where, 1.0)
            elif key == "ca_bundle":
                changes[key] = None if item is None else self.ca_bundle(item, where)
            elif hasattr(base, key):
                changes[key] = self.number(item, where, getattr(base, key))
        return replace(base, **changes)

    def ca_bundle(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        bundle = self.base_dir / Path(text).expanduser()
        if not bundle.is_file():
            self.problem(path, f"no such file: {bundle}")
        return str(bundle)

    def service(self, value: Any) -> ServiceConfig:
        data = self.mapping(value, "service")
        self.keys(data, ("listen", "log_format"), "service")
        listen = data.get("listen")
        if listen is not None:
            listen = self.listen(listen, "service.listen")
        log_format = self.choice(
            data.get("log_format", "auto"), "service.log_format", LOG_FORMATS, "auto"
        )
        return ServiceConfig(listen, log_format)

    def listen(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        host, sep, port = text.rpartition(":")
        host = host.strip("[]") if host.startswith("[") else host
        if not sep or not host or not port.isdigit():
            self.problem(path, f"expected host:port (e.g. 127.0.0.1:9464), got {text!r}")
            return None
        if int(port) > 65535:
            self.problem(path, f"port must be 0-65535, got {port}")
            return None
        if not (_is_loopback(host) or host in _ANY_ADDRESS):
            # The endpoint has no authentication: listening beyond this host must be deliberate.
            self.problem(
                path,
                "host must be loopback (127.0.0.1, ::1, localhost), or 0.0.0.0 / [::] to listen "
                "on every address on purpose",
            )
            return None
        return text

    # --- connections ----------------------------------------------------------------

    def connections(self, value: Any, sync: SyncSettings) -> Mapping[str, ConnectionConfig]:
        if value is None:
            self.problem("connections", "required: a mapping of connection name -> settings")
            return MappingProxyType({})
        data = self.mapping(value, "connections")
        if isinstance(value, dict) and not data:
            self.problem("connections", "must name at least one connection")
        result: dict[str, ConnectionConfig] = {}
        for name, item in data.items():
            path = _join("connections", name)
            if not isinstance(name, str) or not _CONNECTION_NAME.fullmatch(name):
                self.problem(
                    path,
                    "invalid connection name (1-63 letters, digits, '_', '.', '-', "
                    "starting with a letter or digit)",
                )
            result[str(name)] = self.connection(str(name), item, sync)
        return MappingProxyType(result)

    def connection(self, name: str, value: Any, sync: SyncSettings) -> ConnectionConfig:
        path = _join("connections", name)
        data = self.mapping(value, path, null_ok=False)
        self.keys(data, _CONNECTION_KEYS, path)
        vendor = self.vendor(data.get("vendor"), _join(path, "vendor"))
        base_url = ""
        if "base_url" in data:
            base_url = self.url(data["base_url"], _join(path, "base_url"))
        else:
            self.problem(_join(path, "base_url"), "required")
        create_when = None
        if "create" in data:
            create_when = self.create(data["create"], _join(path, "create"))
        interval = sync.interval
        if "interval" in data:
            interval = self.number(data["interval"], _join(path, "interval"), sync.interval)
        options = self.mapping(data.get("options"), _join(path, "options"))
        return ConnectionConfig(
            name=name,
            vendor=vendor or "",
            base_url=base_url,
            credentials=self.credentials(data.get("credentials"), path, vendor),
            interval=interval,
            direction=self.choice(
                data.get("direction", "both"), _join(path, "direction"), DIRECTIONS, "both"
            ),
            fields=self.field_maps(data.get("fields"), _join(path, "fields")),
            create_when=create_when,
            options=_freeze(options),
            http=self.http(data.get("http"), _join(path, "http"), sync.http),
            conflict_policy=self.policy(
                data.get("conflict_policy"), _join(path, "conflict_policy"), sync.conflict_policy
            ),
            guard=self.guard(data.get("guard"), _join(path, "guard"), sync.guard),
        )

    def vendor(self, value: Any, path: str) -> str | None:
        if value is None:
            self.problem(path, f"required: one of {', '.join(VENDORS)}")
            return None
        if value in VENDORS or value in TEST_VENDORS:
            return str(value)
        hint = _suggest(value, VENDORS) if isinstance(value, str) else ""
        self.problem(
            path, f"unknown vendor {_describe(value)} (expected one of {', '.join(VENDORS)}){hint}"
        )
        return None

    def credentials(self, value: Any, path: str, vendor: str | None) -> Mapping[str, Secret]:
        path = _join(path, "credentials")
        data = self.mapping(value, path)
        if vendor is None:
            return MappingProxyType({})  # which names are valid depends on the vendor
        required, optional = _CREDENTIALS[vendor]
        names = required + optional
        self.keys(data, names + tuple(f"{n}_file" for n in names), path)
        result: dict[str, Secret] = {}
        for name in names:
            secret = self.credential(data, name, path, required=name in required)
            if secret is not None:
                result[name] = secret
        given = {key.removesuffix("_file") for key in data if isinstance(key, str)}
        if vendor == "kapture" and "token" not in given and not given >= {*_KAPTURE_PER_ENDPOINT}:
            self.problem(
                _join(path, "token"),
                "required (unless create_token, update_token and read_token are all given)",
            )
        if "accounts_url" in result:
            url = self.check_url(result["accounts_url"].reveal(), _join(path, "accounts_url"))
            result["accounts_url"] = Secret(url)
        return MappingProxyType(result)

    def credential(
        self, data: Mapping[Any, Any], name: str, path: str, *, required: bool
    ) -> Secret | None:
        file_key = f"{name}_file"
        before = len(self.problems)
        if name in data and file_key in data:
            self.problem(_join(path, file_key), f"give either {name} or {file_key}, not both")
            return None
        if name in data:
            where = _join(path, name)
            text = self.string(data[name], where, secret=True)
            if text is None:
                return None
            value, used_env = self.expand(text, where)
            if not used_env and name not in _NOT_SECRET:
                self.inline_secrets = True
        elif file_key in data:
            where = _join(path, file_key)
            value = self.secret_file(data[file_key], where)
        else:
            if required:
                self.problem(_join(path, name), "required")
            return None
        if value == "" and len(self.problems) == before:
            self.problem(where, "is empty")
        if len(value) >= _MASK_MIN and name not in _NOT_SECRET:
            self.secret_values.add(value)
        return Secret(value)

    def secret_file(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if text is None:
            return ""
        text, _ = self.expand(text, path)
        file = self.secret_path(Path(text).expanduser())
        try:
            content = file.read_bytes().decode("utf-8")
        except FileNotFoundError:
            self.problem(path, f"cannot read {file}: no such file")
            return ""
        except UnicodeDecodeError:
            self.problem(path, f"cannot read {file}: not UTF-8 text")
            return ""
        except OSError as exc:
            self.problem(path, f"cannot read {file}: {exc.strerror}")
            return ""
        # Files written by editors and `echo` end with one newline that is not the secret's.
        for newline in ("\r\n", "\n"):
            if content.endswith(newline):
                return content[: -len(newline)]
        return content

    def secret_path(self, file: Path) -> Path:
        """A relative path: systemd's credentials folder if it is there, else the config's."""
        if file.is_absolute():
            return file
        credentials_dir = self.env.get("CREDENTIALS_DIRECTORY")
        if credentials_dir and (Path(credentials_dir) / file).is_file():
            return Path(credentials_dir) / file
        return self.base_dir / file

    def field_maps(self, value: Any, path: str) -> Mapping[str, Mapping[str, str] | None]:
        from sync.vendors.base import SYNC_FIELDS  # lazily: vendors import this module

        data = self.mapping(value, path)
        self.keys(data, SYNC_FIELDS, path)
        result: dict[str, Mapping[str, str] | None] = {}
        for key, item in data.items():
            if key in SYNC_FIELDS:
                result[key] = None if item is None else self.field_map(key, item, _join(path, key))
        return MappingProxyType(result)

    def field_map(self, name: str, value: Any, path: str) -> Mapping[str, str]:
        data = self.mapping(value, path, null_ok=False)
        if isinstance(value, dict) and not data:
            self.problem(path, "empty mapping (use null for pass-through)")
        result: dict[str, str] = {}
        for canonical, vendor_value in data.items():
            key = self.scalar(canonical, path)
            if key is None:
                continue
            self.canonical(name, key, _join(path, key))
            text = self.scalar(vendor_value, _join(path, key))
            if text is not None:
                result[key] = text
        return MappingProxyType(result)

    def canonical(self, name: str, value: str, path: str) -> None:
        allowed = CANONICAL_VALUES.get(name)
        if allowed is not None and value not in allowed:
            self.problem(
                path,
                f"not a canonical {name} value (expected one of {', '.join(allowed)})"
                + _suggest(value, allowed),
            )

    def create(self, value: Any, path: str) -> Mapping[str, tuple[str, ...]]:
        from sync.vendors.base import SYNC_FIELDS  # lazily: vendors import this module

        data = self.mapping(value, path, null_ok=False)
        self.keys(data, ("when",), path)
        if isinstance(value, dict) and "when" not in data:
            self.problem(_join(path, "when"), "required (use `when: {}` to create every ticket)")
        path = _join(path, "when")
        when = self.mapping(data.get("when", {}), path, null_ok=False)
        self.keys(when, SYNC_FIELDS, path)
        result: dict[str, tuple[str, ...]] = {}
        for key, item in when.items():
            if key in SYNC_FIELDS:
                result[key] = self.create_values(key, item, _join(path, key))
        return MappingProxyType(result)

    def create_values(self, name: str, value: Any, path: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            self.problem(path, "empty list (it would match no ticket)")
        values = []
        for item in items:
            text = self.scalar(item, path)
            if text is not None:
                self.canonical(name, text, path)
                values.append(text)
        return tuple(values)
