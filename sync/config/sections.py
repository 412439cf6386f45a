"""The sections of the file other than ``connections``: database, sync, service, and the
``http``, ``guard`` and ``conflict_policy`` blocks that connections merge over ``sync``'s."""

from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from sync.config.checker import Checker, is_loopback, join
from sync.config.model import (
    DatabaseConfig,
    GuardSettings,
    HttpSettings,
    PolicySpec,
    ServiceConfig,
    SyncSettings,
)
from sync.redact import url_secrets
from sync.statedir import unsafe_reason
from sync.vendors.spec import SYNC_FIELDS

POLICIES = ("newest", "local", "remote", "manual")
TIE_BREAKS = ("local", "remote")
LOG_FORMATS = ("auto", "text", "json")
_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})
#: The bits of ``database.file_mode`` that may be set: read and write, owner's and group's.
_FILE_MODE_BITS = 0o660


class SectionParser(Checker):
    """Parses the database, sync and service sections; defaults come from the model."""

    def database(self, value: Any) -> DatabaseConfig:
        data = self.mapping(value, "database")
        self.keys(data, [f.name for f in fields(DatabaseConfig)], "database")
        base = DatabaseConfig()
        settings = replace(
            base,
            auto_upgrade=self.boolean(
                data.get("auto_upgrade", base.auto_upgrade),
                "database.auto_upgrade",
                base.auto_upgrade,
            ),
            connect_timeout=self.number(
                data.get("connect_timeout", base.connect_timeout),
                "database.connect_timeout",
                base.connect_timeout,
            ),
            statement_timeout=self.number(
                data.get("statement_timeout", base.statement_timeout),
                "database.statement_timeout",
                base.statement_timeout,
            ),
            file_mode=self.file_mode(data.get("file_mode", base.file_mode), base.file_mode),
        )
        raw = self.string(data.get("url", base.url), "database.url")
        if raw is None:
            return settings
        text, used_env = self.expand(raw, "database.url")
        url = self.database_url(text)
        if url is None:
            return settings
        if url_secrets(make_url(url)) and not used_env:
            self.inline_secrets.append("database.url")
        return replace(settings, url=url)

    def file_mode(self, value: Any, default: int) -> int:
        """An octal mode: an integer (YAML reads ``0600`` as octal) or a string of octal digits."""
        path = "database.file_mode"
        mode: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        elif isinstance(value, str):
            digits = value.strip().lower().removeprefix("0o")
            if digits and all(c in "01234567" for c in digits):
                mode = int(digits, 8)
        if mode is None or not 0 <= mode <= 0o777:
            self.problem(path, f"expected an octal file mode such as 0600 or 0660, got {value!r}")
            return default
        if mode & 0o007:
            self.problem(
                path,
                f"{mode:#o} gives other users access to the database: use 0600 (owner only) "
                "or 0660 (owner and group)",
            )
            return default
        if mode & ~_FILE_MODE_BITS or mode & 0o600 != 0o600:
            self.problem(
                path,
                f"{mode:#o} is not a mode for a database file: the owner reads and writes, the "
                "group at most reads and writes, nobody executes (0600, 0640 or 0660)",
            )
            return default
        return mode

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
        self.keys(data, [f.name for f in fields(SyncSettings)], "sync")
        base = SyncSettings()

        def number(key: str, *, inclusive: bool = False) -> float:
            default = getattr(base, key)
            where = join("sync", key)
            return self.number(data.get(key, default), where, default, inclusive=inclusive)

        state_dir = data.get("state_dir")
        return SyncSettings(
            interval=number("interval"),
            conflict_policy=self.policy(data.get("conflict_policy"), "sync.conflict_policy"),
            tie_break=self.choice(
                data.get("tie_break", base.tie_break), "sync.tie_break", TIE_BREAKS, base.tie_break
            ),
            lease_seconds=number("lease_seconds"),
            state_dir=None if state_dir is None else self.state_dir(state_dir),
            lookback_seconds=number("lookback_seconds", inclusive=True),
            guard=self.guard(data.get("guard"), "sync.guard", base.guard),
            http=self.http(data.get("http"), "sync.http", base.http),
            batch_size=self.integer(
                data.get("batch_size", base.batch_size),
                "sync.batch_size",
                base.batch_size,
                minimum=1,
            ),
            clock_skew_seconds=number("clock_skew_seconds", inclusive=True),
        )

    def state_dir(self, value: Any) -> Path | None:
        text = self.string(value, "sync.state_dir")
        folder = None if text is None else Path(text).expanduser().absolute()
        reason = None if folder is None else unsafe_reason(folder)
        if reason:
            self.problem("sync.state_dir", f"{folder}: {reason}; run `chmod go-w {folder}`")
        return folder

    def policy(self, value: Any, path: str, base: PolicySpec | None = None) -> PolicySpec:
        """A policy name (every field), or a mapping merged over ``base``."""
        base = base or PolicySpec()
        if value is None:
            return base
        if isinstance(value, str):
            return PolicySpec(self.choice(value, path, POLICIES, base.default))
        data = self.mapping(value, path)
        self.keys(data, ("default", *SYNC_FIELDS), path)
        per_field = dict(base.per_field)
        for key, item in data.items():
            if key in SYNC_FIELDS:
                per_field[key] = self.choice(item, join(path, key), POLICIES, PolicySpec.default)
        default = data.get("default", base.default)
        default = self.choice(default, join(path, "default"), POLICIES, base.default)
        return PolicySpec(default, MappingProxyType(per_field))

    def guard(self, value: Any, path: str, base: GuardSettings) -> GuardSettings:
        data = self.mapping(value, path)
        self.keys(data, [f.name for f in fields(GuardSettings)], path)
        share = base.share
        if "share" in data:
            share = self.number(data["share"], join(path, "share"), base.share)
            if share > 1:
                self.problem(join(path, "share"), f"must be at most 1, got {share:g}")
        min_count = base.min_count
        if "min_count" in data:
            where = join(path, "min_count")
            min_count = self.integer(data["min_count"], where, GuardSettings.min_count, minimum=0)
        window = base.window_seconds
        if data.get("window_seconds") is not None:
            where = join(path, "window_seconds")
            window = self.number(data["window_seconds"], where, 0.0, inclusive=True)
        elif "window_seconds" in data:
            window = None  # null: the connection's interval
        return GuardSettings(share, min_count, window)

    def http(self, value: Any, path: str, base: HttpSettings) -> HttpSettings:
        """Keys merged over ``base``, each checked by its annotation in ``HttpSettings``."""
        data = self.mapping(value, path)
        kinds = {f.name: str(f.type) for f in fields(HttpSettings)}
        self.keys(data, kinds, path)
        changes: dict[str, Any] = {}
        for key, item in data.items():
            where, kind = join(path, key), kinds.get(key)
            if kind == "int":
                changes[key] = self.integer(item, where, getattr(base, key), minimum=1)
            elif kind == "float | None":
                changes[key] = (
                    None if item is None else self.number(item, where, getattr(base, key))
                )
            elif kind == "str | None":
                changes[key] = None if item is None else self.ca_bundle(item, where)
            elif kind == "float":
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
        self.keys(data, [f.name for f in fields(ServiceConfig)], "service")
        base = ServiceConfig()
        listen = data.get("listen")
        if listen is not None:
            listen = self.listen(listen, "service.listen")
        log_format = self.choice(
            data.get("log_format", base.log_format),
            "service.log_format",
            LOG_FORMATS,
            base.log_format,
        )
        max_connections = self.integer(
            data.get("max_connections", base.max_connections),
            "service.max_connections",
            base.max_connections,
            minimum=1,
        )
        webhook_listen = data.get("webhook_listen")
        if webhook_listen is not None:
            # Authenticated by each connection's secret, and meant for the vendor to reach.
            webhook_listen = self.listen(webhook_listen, "service.webhook_listen", anywhere=True)
            if webhook_listen is not None and webhook_listen == listen:
                self.problem(
                    "service.webhook_listen",
                    "must differ from service.listen: /metrics and /healthz are never served "
                    "to the vendors",
                )
        webhook_max = self.integer(
            data.get("webhook_max_connections", base.webhook_max_connections),
            "service.webhook_max_connections",
            base.webhook_max_connections,
            minimum=1,
        )
        keep = self.number(
            data.get("runs_keep_days", base.runs_keep_days),
            "service.runs_keep_days",
            base.runs_keep_days,
        )
        return ServiceConfig(listen, log_format, max_connections, webhook_listen, webhook_max, keep)

    def listen(self, value: Any, path: str, *, anywhere: bool = False) -> str | None:
        """``host:port``; unless ``anywhere``, on loopback or on every address on purpose."""
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
        if not anywhere and not (is_loopback(host) or host in _ANY_ADDRESS):
            # The endpoint has no authentication: listening beyond this host must be deliberate.
            self.problem(
                path,
                "host must be loopback (127.0.0.1, ::1, localhost), or 0.0.0.0 / [::] to listen "
                "on every address on purpose",
            )
            return None
        return text
