"""The whole file in one pass: sections, then connections with their vendor's declaration.

A connection's credentials and options are checked against its vendor's ``VendorSpec``
(``sync.vendors.registry``), in the same pass as the rest of the file, so every problem,
vendor options included, is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sync.config.checker import describe, freeze, join, suggest
from sync.config.comments import CommentsParser
from sync.config.match import parse_match
from sync.config.model import Config, ConnectionConfig, Secret, SyncSettings
from sync.config.sections import SectionParser
from sync.vendors.registry import VENDORS, public_vendors, spec
from sync.vendors.spec import PATH_SECRET_MIN, SYNC_FIELDS, Credential, VendorSpec

DIRECTIONS = ("both", "pull", "push")
CANONICAL_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "status": ("open", "pending", "on_hold", "resolved", "closed"),
        "priority": ("low", "normal", "high", "urgent"),
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
    "comments",
    "match",
)
_CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PATH_SECRET = re.compile(rf"[A-Za-z0-9_-]{{{PATH_SECRET_MIN},}}")
#: Shorter secrets are not masked in problems: they would garble the paths around them.
MASK_MIN = 8


class Parser(SectionParser, CommentsParser):
    """Walks the loaded YAML once, collecting every problem instead of stopping at the first.

    Each section method returns a usable object even when the section is wrong (falling back
    to defaults), so later sections are still checked; the caller raises if anything was wrong.
    """

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

    def connections(self, value: Any, sync: SyncSettings) -> Mapping[str, ConnectionConfig]:
        if value is None:
            self.problem("connections", "required: a mapping of connection name -> settings")
            return MappingProxyType({})
        data = self.mapping(value, "connections")
        if isinstance(value, dict) and not data:
            self.problem("connections", "must name at least one connection")
        result: dict[str, ConnectionConfig] = {}
        for name, item in data.items():
            path = join("connections", name)
            if not isinstance(name, str) or not _CONNECTION_NAME.fullmatch(name):
                self.problem(
                    path,
                    "invalid connection name (1-63 letters, digits, '_', '.', '-', "
                    "starting with a letter or digit)",
                )
            result[str(name)] = self.connection(str(name), item, sync)
        return MappingProxyType(result)

    def connection(self, name: str, value: Any, sync: SyncSettings) -> ConnectionConfig:
        path = join("connections", name)
        data = self.mapping(value, path, null_ok=False)
        self.keys(data, _CONNECTION_KEYS, path)
        vendor = self.vendor(data.get("vendor"), join(path, "vendor"))
        base_url = ""
        if "base_url" in data:
            base_url = self.url(data["base_url"], join(path, "base_url"))
        else:
            self.problem(join(path, "base_url"), "required")
        create_when = None
        if "create" in data:
            create_when = self.create(data["create"], join(path, "create"))
        interval = sync.interval
        if "interval" in data:
            interval = self.number(data["interval"], join(path, "interval"), sync.interval)
        options = self.mapping(data.get("options"), join(path, "options"))
        if vendor is not None:
            self.problems += [f"{path}.{p}" for p in vendor.check_options(options)]
        return ConnectionConfig(
            name=name,
            vendor=vendor.vendor if vendor else "",
            base_url=base_url,
            credentials=self.credentials(data.get("credentials"), path, vendor),
            interval=interval,
            direction=self.choice(
                data.get("direction", ConnectionConfig.direction),
                join(path, "direction"),
                DIRECTIONS,
                ConnectionConfig.direction,
            ),
            fields=self.field_maps(data.get("fields"), join(path, "fields")),
            create_when=create_when,
            options=freeze(options),
            http=self.http(data.get("http"), join(path, "http"), sync.http),
            conflict_policy=self.policy(
                data.get("conflict_policy"), join(path, "conflict_policy"), sync.conflict_policy
            ),
            guard=self.guard(data.get("guard"), join(path, "guard"), sync.guard),
            comments=self.comments(data.get("comments"), join(path, "comments")),
            match=parse_match(
                self, data.get("match"), join(path, "match"), creates=create_when is not None
            ),
        )

    def vendor(self, value: Any, path: str) -> VendorSpec | None:
        known = public_vendors()
        if value is None:
            self.problem(path, f"required: one of {', '.join(known)}")
            return None
        if isinstance(value, str) and value in VENDORS:
            return spec(value)
        hint = suggest(value, known) if isinstance(value, str) else ""
        self.problem(
            path, f"unknown vendor {describe(value)} (expected one of {', '.join(known)}){hint}"
        )
        return None

    def credentials(self, value: Any, path: str, vendor: VendorSpec | None) -> Mapping[str, Secret]:
        path = join(path, "credentials")
        data = self.mapping(value, path)
        if vendor is None:
            return MappingProxyType({})  # which names are valid depends on the vendor
        names = tuple(c.name for c in vendor.credentials)
        self.keys(data, names + tuple(f"{n}_file" for n in names), path)
        result: dict[str, Secret] = {}
        for declared in vendor.credentials:
            secret = self.credential(data, declared, path)
            if secret is not None:
                result[declared.name] = secret
        if vendor.credential_rule is not None:
            given = frozenset(key.removesuffix("_file") for key in data if isinstance(key, str))
            for key, message in vendor.credential_rule(given):
                self.problem(join(path, key), message)
        for declared in vendor.credentials:
            if declared.url and declared.name in result:
                where = join(path, declared.name)
                url = self.check_url(result[declared.name].reveal(), where)
                result[declared.name] = Secret(url)
        return MappingProxyType(result)

    def credential(self, data: Mapping[Any, Any], declared: Credential, path: str) -> Secret | None:
        name = declared.name
        file_key = f"{name}_file"
        before = len(self.problems)
        if name in data and file_key in data:
            self.problem(join(path, file_key), f"give either {name} or {file_key}, not both")
            return None
        if name in data:
            where = join(path, name)
            text = self.string(data[name], where, secret=True)
            if text is None:
                return None
            value, used_env = self.expand(text, where)
            if not used_env and declared.secret:
                self.inline_secrets.append(where)
        elif file_key in data:
            where = join(path, file_key)
            value = self.secret_file(data[file_key], where)
        else:
            if declared.required:
                self.problem(join(path, name), "required")
            return None
        if value == "" and len(self.problems) == before:
            self.problem(where, "is empty")
        if declared.in_path and value and not _PATH_SECRET.fullmatch(value):
            self.problem(
                where,
                f"must be at least {PATH_SECRET_MIN} characters of A-Z, a-z, 0-9, '-' and '_' "
                "(it is part of a URL); e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        if len(value) >= MASK_MIN and not declared.url:
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
        data = self.mapping(value, path)
        self.keys(data, SYNC_FIELDS, path)
        result: dict[str, Mapping[str, str] | None] = {}
        for key, item in data.items():
            if key in SYNC_FIELDS:
                result[key] = None if item is None else self.field_map(key, item, join(path, key))
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
            self.canonical(name, key, join(path, key))
            text = self.scalar(vendor_value, join(path, key))
            if text is not None:
                result[key] = text
        return MappingProxyType(result)

    def canonical(self, name: str, value: str, path: str) -> None:
        allowed = CANONICAL_VALUES.get(name)
        if allowed is not None and value not in allowed:
            self.problem(
                path,
                f"not a canonical {name} value (expected one of {', '.join(allowed)})"
                + suggest(value, allowed),
            )

    def create(self, value: Any, path: str) -> Mapping[str, tuple[str, ...]]:
        data = self.mapping(value, path, null_ok=False)
        self.keys(data, ("when",), path)
        if isinstance(value, dict) and "when" not in data:
            self.problem(join(path, "when"), "required (use `when: {}` to create every ticket)")
        path = join(path, "when")
        when = self.mapping(data.get("when", {}), path, null_ok=False)
        self.keys(when, SYNC_FIELDS, path)
        result: dict[str, tuple[str, ...]] = {}
        for key, item in when.items():
            if key in SYNC_FIELDS:
                result[key] = self.create_values(key, item, join(path, key))
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
