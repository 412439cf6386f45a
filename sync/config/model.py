"""The validated configuration's objects: frozen dataclasses, each key's default written here.

Every default of the config file lives in exactly one place: the field's default below.
The parser (``sync.config.parser``) reads them from these classes; config.example.yaml
documents them for operators.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync.redact import redact_url, url_secrets
from sync.vendors.registry import VENDORS, spec

DEFAULT_DATABASE_URL = "sqlite:///ticketsync.db"


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
    """The mirror's database. ``url`` is resolved: a relative SQLite path is made absolute.

    ``connect_timeout`` and ``statement_timeout`` are seconds; ``file_mode`` is the mode of
    an SQLite file ticketsync creates (owner and group bits only).
    """

    url: str = DEFAULT_DATABASE_URL
    auto_upgrade: bool = True
    connect_timeout: float = 5.0
    statement_timeout: float = 10.0
    file_mode: int = 0o600

    def redacted_url(self) -> str:
        """The URL with its passwords (``password``, ``sslpassword`` too) replaced by ``***``."""
        try:
            return redact_url(make_url(self.url))
        except (ArgumentError, ValueError):
            return "<invalid database url>"

    def url_secrets(self) -> list[str]:
        """Every secret in the URL: the password, ``password`` and ``sslpassword``."""
        try:
            return url_secrets(make_url(self.url))
        except (ArgumentError, ValueError):
            return []

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
    """The mass-change guard (docs/architecture.md §7.5); ``window_seconds``: the writes of
    the runs in this many seconds count together (None: the connection's interval, §8.6)."""

    share: float = 0.5
    min_count: int = 10
    window_seconds: float | None = None


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
    """Transport settings of one connection (used by ``sync.http``).

    The parser checks each key by its annotation: ``int`` at least 1, ``float`` above 0,
    ``float | None`` a number or null, ``str | None`` a CA bundle file or null.
    """

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
    #: The largest reply body read from a vendor, in bytes.
    max_reply_bytes: int = 16_777_216


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
    #: How far a vendor's modified time may run ahead of its clock before it counts as unknown.
    clock_skew_seconds: float = 120.0


#: The keys matching may compare (docs/architecture.md §8.7), in scoring order.
MATCH_KEYS = ("requester_email", "subject", "created_at", "reference")


@dataclass(frozen=True)
class MatchSettings:
    """Matching before creating (docs/architecture.md §8.7): a connection's ``match`` block.

    ``on_first_import`` None means "true when the connection has a ``create`` rule"; the
    parser resolves it, so a parsed connection always holds a bool. ``min_score``: the
    lowest score that makes a candidate; ``auto_link_above``: a score from which a pair is
    linked without review (None: never); ``window_seconds``: how far apart two creation
    times may be and still agree; ``keys``: which of ``MATCH_KEYS`` count.
    """

    on_first_import: bool | None = None
    min_score: float = 0.5
    auto_link_above: float | None = None
    window_seconds: float = 86400.0
    keys: tuple[str, ...] = MATCH_KEYS


@dataclass(frozen=True)
class ServiceConfig:
    """The daemon's own settings: health/metrics endpoint (off by default), log format,
    and the most connections its endpoint serves at once; the vendor webhook listener
    (off by default, docs/architecture.md §8.6) and its own connection cap."""

    listen: str | None = None
    log_format: str = "auto"
    max_connections: int = 64
    webhook_listen: str | None = None
    webhook_max_connections: int = 32
    #: Rows of ``runs`` older than this many days are deleted by the daemon.
    runs_keep_days: float = 30.0

    def listen_address(self) -> tuple[str, int] | None:
        """``listen`` split into (host, port), brackets removed from IPv6; None when off."""
        return _address(self.listen)

    def webhook_address(self) -> tuple[str, int] | None:
        """``webhook_listen`` split like ``listen_address``; None when off."""
        return _address(self.webhook_listen)


def _address(listen: str | None) -> tuple[str, int] | None:
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class CommentSettings:
    """A connection's ``comments`` block (docs/architecture.md §8.5).

    ``direction``: ``both``, ``pull`` (vendor -> mirror), ``push`` (mirror -> vendor) or
    ``off``. ``visibility``: which comments travel, ``public``, ``private`` or ``both``.
    ``attribution``: the first line of a comment posted as the API user, with ``{author}``
    and ``{source}`` (empty: none). ``history``: also carry comments older than the moment
    comments were enabled. ``authors``: e-mail -> the vendor's user id to post as.
    """

    direction: str = "off"
    visibility: str = "both"
    attribution: str = "{author} via {source}:"
    history: bool = False
    authors: Mapping[str, str] = field(default_factory=_empty_mapping)

    @property
    def pulls(self) -> bool:
        return self.direction in ("both", "pull")

    @property
    def pushes(self) -> bool:
        return self.direction in ("both", "push")

    def travels(self, is_public: bool) -> bool:
        """Whether a comment of this visibility travels on the connection."""
        return self.visibility == "both" or (self.visibility == "public") == is_public


@dataclass(frozen=True)
class ConnectionConfig:
    """One connection to one vendor account, with ``sync``'s defaults merged in."""

    name: str
    vendor: str
    base_url: str
    credentials: Mapping[str, Secret] = field(default_factory=_empty_mapping)
    interval: float = SyncSettings.interval
    direction: str = "both"
    fields: Mapping[str, Mapping[str, str] | None] = field(default_factory=_empty_mapping)
    create_when: Mapping[str, tuple[str, ...]] | None = None
    options: Mapping[str, Any] = field(default_factory=_empty_mapping)
    http: HttpSettings = field(default_factory=HttpSettings)
    conflict_policy: PolicySpec = field(default_factory=PolicySpec)
    guard: GuardSettings = field(default_factory=GuardSettings)
    comments: CommentSettings = field(default_factory=CommentSettings)
    match: MatchSettings = field(default_factory=MatchSettings)

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
        """Every credential value but addresses, and the database password, for redaction."""
        values = {
            secret.reveal()
            for connection in self.connections.values()
            for name, secret in connection.credentials.items()
            if not _is_address(connection.vendor, name)
        }
        values.update(self.database.url_secrets())
        return frozenset(values)


def _is_address(vendor: str, name: str) -> bool:
    """Whether credential ``name`` is an address (redacting it would only blind the logs)."""
    declared = spec(vendor).credential(name) if vendor in VENDORS else None
    return declared is not None and declared.url
