"""The configuration file: YAML in, validated and frozen objects out.

The contract is docs/architecture.md §2.2 and docs/architecture.md §7.13.

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
- A connection's credentials and ``options`` are checked against its vendor's declaration
  (``sync.vendors.registry``) in the same pass as everything else.

Modules: ``model`` (the frozen objects and every default), ``checker`` (generic checks),
``sections`` (database, sync, service), ``parser`` (connections and the whole file),
``files`` (reading YAML, the permission warning).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from sync.config.files import load_yaml, permission_warnings, read_bytes
from sync.config.model import (
    DEFAULT_DATABASE_URL,
    CommentSettings,
    Config,
    ConnectionConfig,
    DatabaseConfig,
    GuardSettings,
    HttpSettings,
    PolicySpec,
    Secret,
    ServiceConfig,
    SyncSettings,
)
from sync.config.parser import CANONICAL_VALUES, DIRECTIONS, Parser
from sync.config.sections import LOG_FORMATS, POLICIES, TIE_BREAKS
from sync.errors import ConfigError
from sync.vendors.registry import public_vendors

__all__ = [
    "CANONICAL_VALUES",
    "DEFAULT_DATABASE_URL",
    "DIRECTIONS",
    "LOCAL_CONFIG",
    "LOG_FORMATS",
    "POLICIES",
    "SYSTEM_CONFIG",
    "TIE_BREAKS",
    "VENDORS",
    "CommentSettings",
    "Config",
    "ConnectionConfig",
    "DatabaseConfig",
    "GuardSettings",
    "HttpSettings",
    "PolicySpec",
    "Secret",
    "ServiceConfig",
    "SyncSettings",
    "find_config_path",
    "load_config",
    "parse_config",
]

#: Where ``find_config_path`` looks after ``--config`` and ``$TICKETSYNC_CONFIG``.
LOCAL_CONFIG = Path("config.yaml")
SYSTEM_CONFIG = Path("/etc/ticketsync/config.yaml")

#: The vendor ids a config may name (``memory``, for tests only, is accepted but not listed).
VENDORS = public_vendors()


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
    data = load_yaml(read_bytes(file, source), source)
    config, inline = _parse(data, source=source, env=env, base_dir=file.absolute().parent)
    return replace(config, path=file.absolute(), warnings=permission_warnings(file, inline))


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate already-loaded data (``base_dir`` anchors relative ``*_file`` paths)."""
    return _parse(data, source=source, env=env, base_dir=base_dir)[0]


def _parse(
    data: Any, *, source: str, env: Mapping[str, str] | None, base_dir: Path | None
) -> tuple[Config, tuple[str, ...]]:
    """The config and the paths of the secrets written inline in it."""
    parser = Parser(os.environ if env is None else env, base_dir or Path.cwd())
    config = parser.config(data)
    if parser.problems:
        raise ConfigError(_masked(parser.problems, parser.secret_values), source=source)
    return config, tuple(parser.inline_secrets)


def _masked(problems: list[str], secrets: set[str]) -> list[str]:
    for secret in sorted(secrets, key=len, reverse=True):
        problems = [p.replace(secret, "***") for p in problems]
    return problems
