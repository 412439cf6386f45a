"""sync.config: the YAML contract of docs/architecture.md §2.2 / docs/architecture.md §7.13, its
problems and its secrets."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sync import config as config_module
from sync.config import (
    Config,
    DatabaseConfig,
    HttpSettings,
    PolicySpec,
    Secret,
    find_config_path,
    load_config,
    parse_config,
)
from sync.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
EXAMPLE_VARIABLES = (
    "KAPTURE_TOKEN",
    "PROPROFS_EMAIL",
    "PROPROFS_TOKEN",
    "SIRPORTLY_TOKEN",
    "SIRPORTLY_SECRET",
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_REFRESH_TOKEN",
    "ZOHO_ORG_ID",
)
SENTINEL = "s3ntinel-SECRET-value"

MINIMAL_YAML = """\
connections:
  kap:
    vendor: kapture
    base_url: https://acme.kapturecrm.com/
    credentials: {token: "${KAPTURE_TOKEN}"}
"""


def minimal() -> dict[str, Any]:
    return {
        "connections": {
            "c": {
                "vendor": "kapture",
                "base_url": "https://acme.kapturecrm.com",
                "credentials": {"token": "${TOKEN}"},
            }
        }
    }


def parse(data: Any, env: dict[str, str] | None = None, **kw: Any) -> Config:
    return parse_config(data, env={"TOKEN": SENTINEL} if env is None else env, **kw)


def problems_of(data: Any, env: dict[str, str] | None = None, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data, env, **kw)
    return info.value.problems


def mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = minimal()
    change(data)
    return data


def conn(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["connections"]["c"]
    return result


def write(folder: Path, text: str, mode: int = 0o600, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


# --- good files -------------------------------------------------------------------------


def test_minimal_file_uses_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, MINIMAL_YAML)
    config = load_config(path, env={"KAPTURE_TOKEN": SENTINEL})

    assert config.path == path.absolute()
    assert config.warnings == ()
    assert config.database == DatabaseConfig(f"sqlite:///{tmp_path}/ticketsync.db", True)
    assert config.sync == config_module.SyncSettings()
    assert config.service == config_module.ServiceConfig(None, "auto")
    connection = config.connections["kap"]
    assert connection.base_url == "https://acme.kapturecrm.com"
    assert connection.credential("token") == SENTINEL
    assert connection.credential("read_token") is None
    assert connection.interval == 60.0
    assert connection.direction == "both"
    assert dict(connection.fields) == {}
    assert connection.create_when is None
    assert not connection.creates()
    assert connection.http == HttpSettings()
    assert connection.conflict_policy == PolicySpec()
    assert connection.guard == config_module.GuardSettings(0.5, 10)


def test_example_file_parses_with_every_variable_set() -> None:
    env = {name: f"value-of-{name}" for name in EXAMPLE_VARIABLES}
    config = load_config(EXAMPLE, env=env)

    assert list(config.connections) == ["kapture-india", "proprofs-us", "sirportly-eu", "zoho-desk"]
    assert {c.vendor for c in config.connections.values()} == set(config_module.VENDORS)
    assert all(c.base_url.startswith("https://") for c in config.connections.values())
    kapture = config.connections["kapture-india"]
    assert kapture.fields["status"] == {
        "open": "OP",
        "pending": "P",
        "on_hold": "P",
        "resolved": "RS",
        "closed": "CL",
    }
    assert "priority" not in kapture.fields
    assert kapture.fields["title"] is None
    assert kapture.create_when == {"queue": ("billing",)}
    assert kapture.interval == 30.0
    assert config.connections["proprofs-us"].http == HttpSettings(concurrency=2, rate=2.0)
    assert config.connections["sirportly-eu"].guard == config_module.GuardSettings(0.2, 25)
    zoho = config.connections["zoho-desk"]
    assert zoho.conflict_policy.for_field("status") == "remote"
    assert zoho.conflict_policy.for_field("description") == "local"
    assert zoho.conflict_policy.for_field("queue") == "newest"
    assert zoho.credential("org_id") == "value-of-ZOHO_ORG_ID"
    assert config.secrets() == frozenset(env.values())


def test_example_file_without_variables_names_each_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, env={})
    text = "\n".join(info.value.problems)
    for name in EXAMPLE_VARIABLES:
        assert f"environment variable {name} is not set" in text
    assert info.value.source == str(EXAMPLE)


def test_example_file_credential_files_as_documented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    for name in ("token", "secret"):
        text = text.replace(f'      {name}: "${{SIRPORTLY_{name.upper()}}}"\n', "")
        text = text.replace(f"      # {name}_file: sirportly-", f"      {name}_file: sirportly-")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "sirportly-token").write_text("tok\n")
    (credentials / "sirportly-secret").write_text("sec\n")
    env = {name: "x" for name in EXAMPLE_VARIABLES} | {"CREDENTIALS_DIRECTORY": str(credentials)}

    config = load_config(write(tmp_path, text), env=env)

    sirportly = config.connections["sirportly-eu"]
    assert (sirportly.credential("token"), sirportly.credential("secret")) == ("tok", "sec")


# --- each kind of mistake ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(databse={}), "databse: unknown key (did you mean 'database'?)"),
        (lambda d: d.update(database={"urll": "x"}), "database.urll: unknown key (did you mean"),
        (lambda d: d.update(sync={"intervall": 5}), "sync.intervall: unknown key (did you mean"),
        (
            lambda d: d.update(sync={"http": {"conect_timeout": 1}}),
            "sync.http.conect_timeout: unknown key (did you mean 'connect_timeout'?)",
        ),
        (
            lambda d: d.update(sync={"guard": {"shares": 0.1}}),
            "sync.guard.shares: unknown key (did you mean 'share'?)",
        ),
        (
            lambda d: d.update(service={"log_fromat": "json"}),
            "service.log_fromat: unknown key (did you mean 'log_format'?)",
        ),
        (
            lambda d: conn(d).update(credentails={}),
            "connections.c.credentails: unknown key (did you mean 'credentials'?)",
        ),
        (
            lambda d: conn(d)["credentials"].update(tokn="x"),
            "connections.c.credentials.tokn: unknown key (did you mean 'token'?)",
        ),
        (
            lambda d: conn(d).update(fields={"stauts": None}),
            "connections.c.fields.stauts: unknown key (did you mean 'status'?)",
        ),
        (
            lambda d: conn(d).update(create={"wen": {}}),
            "connections.c.create.wen: unknown key (did you mean 'when'?)",
        ),
        (
            lambda d: conn(d).update(create={"when": {"queu": "x"}}),
            "connections.c.create.when.queu: unknown key (did you mean 'queue'?)",
        ),
        (
            lambda d: conn(d).update(http={"rte": 1}),
            "connections.c.http.rte: unknown key (did you mean 'rate'?)",
        ),
        (
            lambda d: conn(d).update(conflict_policy={"statsu": "local"}),
            "connections.c.conflict_policy.statsu: unknown key (did you mean 'status'?)",
        ),
        (lambda d: d.update(zzz=1), "zzz: unknown key"),
    ],
)
def test_unknown_keys_at_every_level(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    problems = problems_of(mutated(change))
    assert problems[0].startswith(expected), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d.update(sync={"interval": "abc"}),
            "sync.interval: expected a number, got 'abc'",
        ),
        (lambda d: d.update(sync={"interval": True}), "sync.interval: expected a number, got True"),
        (lambda d: d.update(sync={"interval": 0}), "sync.interval: must be > 0, got 0"),
        (
            lambda d: d.update(sync={"lookback_seconds": -1}),
            "sync.lookback_seconds: must be >= 0, got -1",
        ),
        (
            lambda d: d.update(sync={"batch_size": 2.5}),
            "sync.batch_size: expected an integer, got 2.5",
        ),
        (
            lambda d: d.update(sync={"tie_break": "lcoal"}),
            "sync.tie_break: expected one of local, remote, got 'lcoal' (did you mean 'local'?)",
        ),
        (
            lambda d: d.update(sync={"conflict_policy": "oldest"}),
            "sync.conflict_policy: expected one of newest, local, remote, manual, got 'oldest'",
        ),
        (
            lambda d: d.update(sync={"http": {"max_attempts": 0}}),
            "sync.http.max_attempts: must be >= 1, got 0",
        ),
        (
            lambda d: d.update(sync={"http": {"read_timeout": -2}}),
            "sync.http.read_timeout: must be > 0, got -2",
        ),
        (
            lambda d: d.update(sync={"guard": {"share": 1.5}}),
            "sync.guard.share: must be at most 1, got 1.5",
        ),
        (
            lambda d: d.update(sync={"guard": {"share": 0}}),
            "sync.guard.share: must be > 0, got 0",
        ),
        (
            lambda d: d.update(sync={"guard": {"min_count": -1}}),
            "sync.guard.min_count: must be >= 0, got -1",
        ),
        (
            lambda d: d.update(database={"auto_upgrade": "yes"}),
            "database.auto_upgrade: expected true or false, got 'yes'",
        ),
        (
            lambda d: d.update(database={"url": "not a url"}),
            "database.url: not a database URL",
        ),
        (
            lambda d: d.update(database={"url": "postgress://h/db"}),
            "database.url: unknown database kind 'postgress'",
        ),
        (
            lambda d: d.update(service={"log_format": "xml"}),
            "service.log_format: expected one of auto, text, json, got 'xml'",
        ),
        (lambda d: d.update(sync=[1]), "sync: expected a mapping, got a list"),
        (lambda d: d.update(connections=[1]), "connections: expected a mapping, got a list"),
        (lambda d: d.update(connections={}), "connections: must name at least one connection"),
        (lambda d: d.pop("connections"), "connections: required"),
        (
            lambda d: conn(d).update(direction="sideways"),
            "connections.c.direction: expected one of both, pull, push, got 'sideways'",
        ),
        (
            lambda d: conn(d).update(interval=-5),
            "connections.c.interval: must be > 0, got -5",
        ),
        (lambda d: conn(d).update(fields=["status"]), "connections.c.fields: expected a mapping"),
        (
            lambda d: conn(d).update(fields={"queue": {}}),
            "connections.c.fields.queue: empty mapping (use null for pass-through)",
        ),
        (
            lambda d: conn(d).update(fields={"queue": {"a": None}}),
            "connections.c.fields.queue.a: expected a string or number, got null",
        ),
        (
            lambda d: conn(d).update(fields={"status": {"opn": "OP"}}),
            "connections.c.fields.status.opn: not a canonical status value "
            "(expected one of open, pending, on_hold, resolved, closed) (did you mean 'open'?)",
        ),
        (
            lambda d: conn(d).update(fields={"priority": {"critical": "P1"}}),
            "connections.c.fields.priority.critical: not a canonical priority value",
        ),
        (
            lambda d: conn(d).update(create={"when": {"status": "new"}}),
            "connections.c.create.when.status: not a canonical status value",
        ),
        (
            lambda d: conn(d).update(create={"when": {"queue": []}}),
            "connections.c.create.when.queue: empty list",
        ),
        (lambda d: conn(d).update(create={}), "connections.c.create.when: required"),
        (lambda d: conn(d).update(create=None), "connections.c.create: expected a mapping"),
        (lambda d: conn(d).pop("base_url"), "connections.c.base_url: required"),
        (lambda d: conn(d).pop("vendor"), "connections.c.vendor: required"),
        (lambda d: d.update(connections={"-bad": None}), "connections.-bad: invalid connection"),
        (lambda d: d.update(connections={"x" * 64: None}), "connections.xxxx"),
        (lambda d: d.update(connections={"ok": None}), "connections.ok: expected a mapping"),
    ],
)
def test_wrong_values_name_path_and_expectation(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    problems = problems_of(mutated(change))
    assert any(p.startswith(expected) for p in problems), problems


def test_bad_vendor_suggests_the_right_one_and_hides_the_test_vendor() -> None:
    (problem,) = problems_of(mutated(lambda d: conn(d).update(vendor="kaptur")))
    assert problem == (
        "connections.c.vendor: unknown vendor 'kaptur' "
        "(expected one of kapture, proprofs, sirportly, zoho_desk) (did you mean 'kapture'?)"
    )
    assert "memory" not in problem


def test_memory_vendor_is_accepted_for_tests() -> None:
    data: dict[str, Any] = {
        "connections": {"m": {"vendor": "memory", "base_url": "http://127.0.0.1:9"}}
    }
    assert parse(data).connections["m"].vendor == "memory"
    data["connections"]["m"]["credentials"] = {"password": "x"}
    assert problems_of(data) == ["connections.m.credentials.password: unknown key"]


@pytest.mark.parametrize(
    ("vendor", "credentials", "missing"),
    [
        ("zoho_desk", {"client_id": "a", "client_secret": "b", "refresh_token": "c"}, ["org_id"]),
        ("zoho_desk", {}, ["client_id", "client_secret", "refresh_token", "org_id"]),
        ("sirportly", {"token": "a"}, ["secret"]),
        ("proprofs", {"token": "a"}, ["account_email"]),
    ],
)
def test_missing_credentials_are_required(
    vendor: str, credentials: dict[str, str], missing: list[str]
) -> None:
    data = {
        "connections": {
            "c": {"vendor": vendor, "base_url": "https://h", "credentials": credentials}
        }
    }
    assert problems_of(data) == [f"connections.c.credentials.{name}: required" for name in missing]


def test_kapture_needs_token_or_all_three_endpoint_tokens() -> None:
    two = {"create_token": "a", "update_token": "b"}
    data = mutated(lambda d: conn(d).update(credentials=two))
    (problem,) = problems_of(data)
    assert problem.startswith("connections.c.credentials.token: required (unless create_token")

    conn(data)["credentials"]["read_token"] = "c"
    connection = parse(data).connections["c"]
    assert connection.credential("token") is None
    assert connection.credential("read_token") == "c"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acme.kapturecrm.com/", "https://acme.kapturecrm.com"),
        ("https://desk.zoho.eu/api//", "https://desk.zoho.eu/api"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.3.4.5", "http://127.3.4.5"),
        ("http://localhost:9/", "http://localhost:9"),
        ("http://[::1]:8443", "http://[::1]:8443"),
        ("http://${HOST}:${PORT}", "http://127.0.0.1:5000"),
    ],
)
def test_base_url_accepted(url: str, expected: str) -> None:
    data = mutated(lambda d: conn(d).update(base_url=url))
    config = parse(data, {"TOKEN": "t", "HOST": "127.0.0.1", "PORT": "5000"})
    assert config.connections["c"].base_url == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://acme.kapturecrm.com",
            "must use https:// (plain http is allowed only for loopback",
        ),
        ("http://10.0.0.1:80", "must use https://"),
        ("ftp://example.com", "expected an http(s) URL with a host"),
        ("https://", "expected an http(s) URL with a host"),
        ("acme.kapturecrm.com", "expected an http(s) URL with a host"),
        ("https://h:99999", "invalid port"),
        ("https://user:pw@h", "must not contain a user name or password"),
        (42, "expected a string, got 42"),
    ],
)
def test_base_url_rejected(url: object, expected: str) -> None:
    (problem,) = problems_of(mutated(lambda d: conn(d).update(base_url=url)))
    assert problem.startswith(f"connections.c.base_url: {expected}")


def test_zoho_accounts_url_follows_the_base_url_rule() -> None:
    credentials = {
        "client_id": "a",
        "client_secret": "b",
        "refresh_token": "c",
        "org_id": "1",
        "accounts_url": "http://accounts.zoho.eu/",
    }
    data: dict[str, Any] = {
        "connections": {"z": {"vendor": "zoho_desk", "base_url": "https://desk.zoho.eu"}}
    }
    data["connections"]["z"]["credentials"] = credentials
    (problem,) = problems_of(data)
    assert problem.startswith("connections.z.credentials.accounts_url: must use https://")

    credentials["accounts_url"] = "https://accounts.zoho.eu/"
    config = parse(data)
    assert config.connections["z"].credential("accounts_url") == "https://accounts.zoho.eu"
    assert "https://accounts.zoho.eu" not in config.secrets()  # an address, not a secret


def test_both_token_and_token_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("x")
    data = mutated(lambda d: conn(d)["credentials"].update(token_file="tok"))
    assert problems_of(data, base_dir=tmp_path) == [
        "connections.c.credentials.token_file: give either token or token_file, not both"
    ]


def test_missing_secret_file_names_the_path(tmp_path: Path) -> None:
    data = mutated(lambda d: conn(d).update(credentials={"token_file": "nope/token"}))
    assert problems_of(data, base_dir=tmp_path) == [
        f"connections.c.credentials.token_file: cannot read {tmp_path}/nope/token: no such file"
    ]


def test_missing_environment_variable() -> None:
    data = mutated(lambda d: conn(d).update(credentials={"token": "${KAPTURE_TOKEN}"}))
    assert problems_of(data, env={}) == [
        "connections.c.credentials.token: environment variable KAPTURE_TOKEN is not set"
    ]


def test_every_problem_is_reported_in_one_error() -> None:
    data = {
        "databse": {},
        "sync": {"interval": "abc", "tie_break": "x"},
        "connections": {
            "a": {"vendor": "kaptur", "base_url": "http://example.com"},
            "b": {"vendor": "sirportly", "base_url": "https://h", "credentials": {"token": "t"}},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert sorted(p.split(":")[0] for p in info.value.problems) == [
        "connections.a.base_url",
        "connections.a.vendor",
        "connections.b.credentials.secret",
        "databse",
        "sync.interval",
        "sync.tie_break",
    ]
    assert str(info.value).startswith("<config>: ")


# --- secrets from the environment and from files ----------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("${A}", "alpha"),
        ("${A}:${B}", "alpha:beta"),
        ("pre-${A}-post", "pre-alpha-post"),
        ("$${A}", "${A}"),
        ("$$${A}", "$${A}"),
        ("a$b", "a$b"),
        ("literal", "literal"),
    ],
)
def test_environment_references_in_secrets(raw: str, expected: str) -> None:
    data = mutated(lambda d: conn(d).update(credentials={"token": raw}))
    config = parse(data, {"A": "alpha", "B": "beta"})
    assert config.connections["c"].credential("token") == expected


@pytest.mark.parametrize("raw", ["${A", "${1A}", "${}"])
def test_malformed_environment_reference(raw: str) -> None:
    data = mutated(lambda d: conn(d).update(credentials={"token": raw}))
    (problem,) = problems_of(data, {"A": "x"})
    assert problem.startswith("connections.c.credentials.token: malformed ${...} reference")


def test_secret_from_an_empty_variable_is_a_problem() -> None:
    assert problems_of(minimal(), {"TOKEN": ""}) == ["connections.c.credentials.token: is empty"]


def test_environment_variables_are_not_expanded_in_field_maps() -> None:
    data = mutated(lambda d: conn(d).update(fields={"queue": {"q": "${TOKEN}"}}))
    assert parse(data).connections["c"].fields["queue"] == {"q": "${TOKEN}"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [("tok\n", "tok"), ("tok\r\n", "tok"), ("tok\n\n", "tok\n"), ("tok", "tok"), (" t ", " t ")],
)
def test_secret_file_drops_one_trailing_newline(
    tmp_path: Path, content: str, expected: str
) -> None:
    (tmp_path / "token").write_bytes(content.encode())
    data = mutated(lambda d: conn(d).update(credentials={"token_file": "token"}))
    assert parse(data, {}, base_dir=tmp_path).connections["c"].credential("token") == expected


def test_secret_file_prefers_credentials_directory_when_the_file_is_there(tmp_path: Path) -> None:
    config_dir, credentials_dir = tmp_path / "etc", tmp_path / "creds"
    config_dir.mkdir()
    credentials_dir.mkdir()
    for folder in (config_dir, credentials_dir):
        (folder / "token").write_text(f"from-{folder.name}")
    (config_dir / "other").write_text("only-in-etc")
    data = mutated(lambda d: conn(d).update(credentials={"token_file": "token"}))
    env = {"CREDENTIALS_DIRECTORY": str(credentials_dir)}

    assert (
        parse(data, env, base_dir=config_dir).connections["c"].credential("token") == "from-creds"
    )
    conn(data)["credentials"] = {"token_file": "other"}
    assert (
        parse(data, env, base_dir=config_dir).connections["c"].credential("token") == "only-in-etc"
    )
    conn(data)["credentials"] = {"token_file": str(config_dir / "token")}
    assert parse(data, env, base_dir=tmp_path).connections["c"].credential("token") == "from-etc"


def test_secret_file_path_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "kapture.token").write_text(f"{SENTINEL}\n")
    path = write(
        tmp_path, MINIMAL_YAML.replace('{token: "${KAPTURE_TOKEN}"}', "{token_file: kapture.token}")
    )
    assert load_config(path, env={}).connections["kap"].credential("token") == SENTINEL


def test_mistyped_secret_is_not_echoed() -> None:
    data = mutated(lambda d: conn(d).update(credentials={"token": 987654321}))
    (problem,) = problems_of(data)
    assert problem == "connections.c.credentials.token: expected a string, got int (quote it)"


# --- database ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "state_directory", "expected"),
    [
        ("sqlite:///ticketsync.db", None, "sqlite:///{cwd}/ticketsync.db"),
        ("sqlite:///data/t.db", None, "sqlite:///{cwd}/data/t.db"),
        (
            "sqlite:///ticketsync.db",
            "/var/lib/ts:/var/lib/other",
            "sqlite:////var/lib/ts/ticketsync.db",
        ),
        ("sqlite:///ticketsync.db", "/srv/state", "sqlite:////srv/state/ticketsync.db"),
        ("sqlite:////abs/path.db", "/srv/state", "sqlite:////abs/path.db"),
        ("sqlite:///:memory:", "/srv/state", "sqlite:///:memory:"),
        ("sqlite://", None, "sqlite://"),
        ("postgresql://ts@db.internal/ts", None, "postgresql://ts@db.internal/ts"),
        ("postgresql+psycopg://ts@db/ts", None, "postgresql+psycopg://ts@db/ts"),
    ],
)
def test_database_url_resolution(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    state_directory: str | None,
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"TOKEN": "t"} | ({"STATE_DIRECTORY": state_directory} if state_directory else {})
    config = parse(minimal() | {"database": {"url": url}}, env)
    assert config.database.url == expected.format(cwd=tmp_path)


def test_default_database_is_relative_to_state_directory() -> None:
    config = parse(minimal(), {"TOKEN": "t", "STATE_DIRECTORY": "/var/lib/ticketsync"})
    assert config.database.url == "sqlite:////var/lib/ticketsync/ticketsync.db"
    assert config.database.auto_upgrade is True


def test_database_password_is_redacted_and_counted_as_secret() -> None:
    data = minimal() | {"database": {"url": "postgresql://ts:${PGPASSWORD}@db/ts"}}
    config = parse(data, {"TOKEN": "t", "PGPASSWORD": SENTINEL})
    assert config.database.password() == SENTINEL
    assert config.database.redacted_url() == "postgresql://ts:***@db/ts"
    assert SENTINEL not in repr(config.database)
    assert SENTINEL in config.secrets()


def test_bad_database_url_is_not_echoed() -> None:
    data = minimal() | {"database": {"url": f"postgresql://u:{SENTINEL}@h:notaport/db"}}
    problems = problems_of(data)
    assert problems and not any(SENTINEL in p for p in problems)


# --- secrets never show -----------------------------------------------------------------


def test_secret_hides_its_value_everywhere_but_reveal() -> None:
    secret = Secret(SENTINEL)
    assert secret.reveal() == SENTINEL
    assert type(secret.reveal()) is str
    assert secret == SENTINEL
    for shown in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!s}",
        f"{secret:>30}",
        "%s" % secret,  # noqa: UP031  (the old operator must hide it too)
    ):
        assert SENTINEL not in shown
    assert repr(secret) == "Secret('***')"


def test_config_reprs_never_show_a_secret() -> None:
    data = minimal() | {"database": {"url": "postgresql://ts:${TOKEN}@db/ts"}}
    config = parse(data)
    connection = config.connections["c"]
    for shown in (repr(config), str(config), f"{config}", repr(connection), f"{connection}"):
        assert SENTINEL not in shown
    assert connection.credential("token") == SENTINEL
    assert config.secrets() == frozenset({SENTINEL})


# --- policies, merges, service ----------------------------------------------------------


def test_conflict_policy_per_field_and_merge() -> None:
    data = minimal()
    data["sync"] = {"conflict_policy": {"default": "remote", "description": "local"}}
    data["connections"]["d"] = copy.deepcopy(conn(data)) | {"conflict_policy": {"status": "manual"}}
    data["connections"]["e"] = copy.deepcopy(conn(data)) | {"conflict_policy": "local"}
    data["connections"]["f"] = copy.deepcopy(conn(data)) | {
        "conflict_policy": {"default": "newest"}
    }
    config = parse(data)

    def table(name: str) -> tuple[str, ...]:
        policy = config.connections[name].conflict_policy
        return tuple(policy.for_field(f) for f in ("description", "status", "queue"))

    assert config.sync.conflict_policy.for_field("description") == "local"
    assert table("c") == ("local", "remote", "remote")
    assert table("d") == ("local", "manual", "remote")
    assert table("e") == ("local", "local", "local")
    assert table("f") == ("local", "newest", "newest")


def test_http_settings_merge_key_by_key() -> None:
    data = minimal()
    data["sync"] = {"http": {"read_timeout": 10, "rate": 5, "retry_budget": 7}}
    data["connections"]["d"] = copy.deepcopy(conn(data)) | {
        "http": {"rate": None, "concurrency": 2}
    }
    config = parse(data)

    assert config.sync.http == HttpSettings(read_timeout=10.0, rate=5.0, retry_budget=7)
    assert config.connections["c"].http == config.sync.http
    assert config.connections["d"].http == HttpSettings(
        read_timeout=10.0, rate=None, retry_budget=7, concurrency=2
    )
    assert isinstance(config.connections["d"].http.read_timeout, float)


def test_guard_and_interval_merge_over_sync() -> None:
    data = minimal()
    data["sync"] = {"interval": 120, "guard": {"share": 0.25}}
    data["connections"]["d"] = copy.deepcopy(conn(data)) | {
        "interval": 0.5,
        "guard": {"min_count": 0},
    }
    config = parse(data)
    assert (config.connections["c"].interval, config.connections["d"].interval) == (120.0, 0.5)
    assert config.connections["c"].guard == config_module.GuardSettings(0.25, 10)
    assert config.connections["d"].guard == config_module.GuardSettings(0.25, 0)


def test_ca_bundle_resolves_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    data = mutated(lambda d: conn(d).update(http={"ca_bundle": "ca.pem"}))
    assert parse(data, base_dir=tmp_path).connections["c"].http.ca_bundle == str(
        tmp_path / "ca.pem"
    )
    conn(data)["http"]["ca_bundle"] = "missing.pem"
    (problem,) = problems_of(data, base_dir=tmp_path)
    assert problem == f"connections.c.http.ca_bundle: no such file: {tmp_path}/missing.pem"


def test_fields_and_create_rules() -> None:
    data = minimal()
    conn(data)["fields"] = {
        "title": None,
        "status": {"open": "OP", "closed": 7},
        "queue": {10: "TEN", "billing": "BILLING"},
    }
    conn(data)["create"] = {"when": {"queue": ["billing", 10], "status": "open"}}
    connection = parse(data).connections["c"]
    assert dict(connection.fields) == {
        "title": None,
        "status": {"open": "OP", "closed": "7"},
        "queue": {"10": "TEN", "billing": "BILLING"},
    }
    assert connection.create_when == {"queue": ("billing", "10"), "status": ("open",)}
    assert connection.creates()

    conn(data)["create"] = {"when": {}}
    connection = parse(data).connections["c"]
    assert connection.creates()
    assert connection.create_when is not None and dict(connection.create_when) == {}


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:9464", "localhost:0", "[::1]:9464", "0.0.0.0:9464", "[::]:80"]
)
def test_service_listen_accepted(listen: str) -> None:
    config = parse(minimal() | {"service": {"listen": listen, "log_format": "json"}})
    assert config.service.listen == listen
    address = config.service.listen_address()
    assert address is not None and address[1] == int(listen.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("10.1.2.3:9464", "host must be loopback"),
        ("metrics.example.com:9464", "host must be loopback"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:http", "expected host:port"),
        ("127.0.0.1:70000", "port must be 0-65535"),
        (9464, "expected a string, got 9464"),
    ],
)
def test_service_listen_rejected(listen: object, expected: str) -> None:
    (problem,) = problems_of(minimal() | {"service": {"listen": listen}})
    assert problem.startswith(f"service.listen: {expected}")


def test_sync_settings_are_read() -> None:
    data = minimal()
    data["sync"] = {
        "tie_break": "remote",
        "lease_seconds": 12.5,
        "state_dir": "~/ts-state",
        "lookback_seconds": 0,
        "batch_size": 25,
    }
    settings = parse(data).sync
    assert settings.tie_break == "remote"
    assert settings.lease_seconds == 12.5
    assert settings.state_dir == Path("~/ts-state").expanduser()
    assert (settings.lookback_seconds, settings.batch_size) == (0.0, 25)


def test_everything_is_frozen() -> None:
    data = mutated(
        # memory: the test-only vendor leaves option keys it does not know alone
        lambda d: conn(d).update(
            vendor="memory", options={"tables": {"a": [1, 2]}}, fields={"queue": {"a": "A"}}
        )
    )
    config = parse(data)
    connection = config.connections["c"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        connection.base_url = "https://other"  # type: ignore[misc]
    for mapping in (
        config.connections,
        connection.credentials,
        connection.fields,
        connection.options,
    ):
        with pytest.raises(TypeError):
            mapping["x"] = None  # type: ignore[index]
    assert connection.options["tables"]["a"] == (1, 2)
    with pytest.raises(TypeError):
        connection.options["tables"]["b"] = 1


# --- files, YAML and permissions --------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "credentials", "warned"),
    [
        (0o644, '{token: "inline-secret"}', True),
        (0o640, '{token: "inline-secret"}', True),
        (0o600, '{token: "inline-secret"}', False),
        (0o644, '{token: "${KAPTURE_TOKEN}"}', False),
    ],
)
def test_inline_secrets_in_a_readable_file_warn(
    tmp_path: Path, mode: int, credentials: str, warned: bool
) -> None:
    path = write(tmp_path, MINIMAL_YAML.replace('{token: "${KAPTURE_TOKEN}"}', credentials), mode)
    config = load_config(path, env={"KAPTURE_TOKEN": "t"})
    assert bool(config.warnings) is warned
    if warned:
        (warning,) = config.warnings
        assert str(path.absolute()) in warning and "chmod 600" in warning
        assert "inline-secret" not in warning


def test_inline_database_password_in_a_readable_file_warns(tmp_path: Path) -> None:
    text = MINIMAL_YAML + "database: {url: 'postgresql://ts:hunter2@db/ts'}\n"
    config = load_config(write(tmp_path, text, 0o604), env={"KAPTURE_TOKEN": "t"})
    assert len(config.warnings) == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert info.value.problems == ["no such file"]
    assert str(info.value) == f"{tmp_path}/absent.yaml: no such file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_YAML, 0o000)
    with pytest.raises(ConfigError, match="permission denied"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"connections:\n  c:\n    vendor: kapture\n   token: {SENTINEL}: x\n",
            "YAML syntax error at line 4, column",
        ),
        (f"connections: [{SENTINEL}\n", "YAML syntax error at line 2, column 1"),
        (
            "connections:\n  c: {vendor: kapture}\n  c: {vendor: proprofs}\n",
            "YAML syntax error at line 3, column 3: found duplicate key 'c'",
        ),
    ],
)
def test_yaml_errors_give_a_position_but_no_content(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    (problem,) = info.value.problems
    assert problem.startswith(expected)
    assert SENTINEL not in str(info.value)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = """\
x-base: &base {vendor: kapture, base_url: "https://h"}
connections:
  c:
    <<: *base
    credentials: {token: t}
"""
    # x-base is not a config key: merge keys work, unknown top-level keys are still errors.
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.problems == ["x-base: unknown key"]


def test_empty_file_asks_for_connections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert info.value.problems == [
        "connections: required: a mapping of connection name -> settings"
    ]


# --- where the file is ------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", tmp_path / "etc" / "config.yaml")
    return tmp_path


def test_find_config_path_order(places: Path) -> None:
    named, from_env = places / "named.yaml", places / "env.yaml"
    for path in (named, from_env):
        path.write_text("")
    env = {"TICKETSYNC_CONFIG": str(from_env)}
    assert find_config_path(str(named), env) == named
    assert find_config_path(None, env) == from_env

    with pytest.raises(ConfigError) as info:
        find_config_path(None, {})
    (problem,) = info.value.problems
    assert "--config" in problem and "$TICKETSYNC_CONFIG" in problem
    assert str(places / "config.yaml") in problem and str(places / "etc" / "config.yaml") in problem

    (places / "etc").mkdir()
    (places / "etc" / "config.yaml").write_text("")
    assert find_config_path(None, {}) == places / "etc" / "config.yaml"
    (places / "config.yaml").write_text("")
    assert find_config_path(None, {}) == Path("config.yaml")


@pytest.mark.parametrize("where", ["explicit", "env"])
def test_find_config_path_named_file_must_exist(places: Path, where: str) -> None:
    (places / "config.yaml").write_text("")  # never silently used instead of the named file
    missing = str(places / "missing.yaml")
    explicit, env = (missing, {}) if where == "explicit" else (None, {"TICKETSYNC_CONFIG": missing})
    with pytest.raises(ConfigError, match=r"missing\.yaml .*no such file"):
        find_config_path(explicit, env)


# --- one pass, vendor declarations, new keys ---------------------------------------------


def test_every_problem_is_reported_at_once_vendor_options_included() -> None:
    data = {
        "database": {"file_mode": 0o644},
        "sync": {"interval": -1, "http": {"max_reply_bytes": 0}},
        "service": {"max_connections": 0},
        "connections": {
            "k": {
                "vendor": "kapture",
                "base_url": "https://acme.kapturecrm.com",
                "credentials": {"token": "${TOKEN}", "colour": "red"},
                "options": {"batch_size": 0, "time_zone": "Mars/Olympus"},
            },
            "z": {
                "vendor": "zoho_desk",
                "base_url": "https://desk.zoho.com",
                "credentials": {"client_id": "1", "client_secret": "s", "refresh_token": "r"},
                "options": {"colour": "blue"},
            },
        },
    }
    found = problems_of(data)
    for path in (
        "database.file_mode",
        "sync.interval",
        "sync.http.max_reply_bytes",
        "service.max_connections",
        "connections.k.credentials.colour",
        "connections.k.options.batch_size",
        "connections.k.options.time_zone",
        "connections.z.credentials.org_id",
        "connections.z.options.colour",
    ):
        assert sum(p.startswith(path + ":") for p in found) == 1, (path, found)
    assert len(found) == 9


IDENTIFIERS_YAML = """\
connections:
  p:
    vendor: proprofs
    base_url: https://www.proprofsdesk.com
    credentials: {account_email: "help@example.com", token: "${T}"}
  z:
    vendor: zoho_desk
    base_url: https://desk.zoho.com
    credentials:
      client_id: "1000.ABCDEFGHIJ"
      org_id: "60001234"
      client_secret: "${T}"
      refresh_token: "${T}"
"""


def test_inline_identifiers_are_not_secrets_to_warn_about(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, IDENTIFIERS_YAML, 0o644), env={"T": "x" * 12})
    assert config.warnings == ()


def test_the_inline_secrets_warning_names_only_the_secrets(tmp_path: Path) -> None:
    text = IDENTIFIERS_YAML.replace('client_secret: "${T}"', 'client_secret: "inline-secret"')
    config = load_config(write(tmp_path, text, 0o644), env={"T": "x" * 12})
    (warning,) = config.warnings
    assert "connections.z.credentials.client_secret" in warning
    for name in ("account_email", "client_id", "org_id", "refresh_token"):
        assert name not in warning
    assert "inline-secret" not in warning


def test_new_keys_have_their_defaults() -> None:
    config = parse(minimal())
    assert config.database.connect_timeout == 5.0
    assert config.database.statement_timeout == 10.0
    assert config.database.file_mode == 0o600
    assert config.sync.clock_skew_seconds == 120.0
    assert config.sync.http.max_reply_bytes == 16_777_216
    assert config.connections["c"].http.max_reply_bytes == 16_777_216
    assert config.service.max_connections == 64


def test_new_keys_are_read() -> None:
    data = mutated(lambda d: conn(d).update(http={"max_reply_bytes": 1024}))
    data["database"] = {"connect_timeout": 1.5, "statement_timeout": 2, "file_mode": 0o660}
    data["sync"] = {"clock_skew_seconds": 0, "http": {"max_reply_bytes": 4096}}
    data["service"] = {"max_connections": 8}
    config = parse(data)
    assert (config.database.connect_timeout, config.database.statement_timeout) == (1.5, 2.0)
    assert config.database.file_mode == 0o660
    assert config.sync.clock_skew_seconds == 0.0
    assert config.sync.http.max_reply_bytes == 4096
    assert config.connections["c"].http.max_reply_bytes == 1024
    assert config.service.max_connections == 8


@pytest.mark.parametrize(
    ("written", "mode"), [(0o600, 0o600), (0o660, 0o660), ("0660", 0o660), ("0o640", 0o640)]
)
def test_file_mode_owner_and_group_only(written: Any, mode: int) -> None:
    data = minimal()
    data["database"] = {"file_mode": written}
    assert parse(data).database.file_mode == mode


@pytest.mark.parametrize(
    ("written", "words"),
    [
        (0o644, "0o644 gives other users access"),
        (0o602, "0o602 gives other users access"),
        (600, "expected an octal file mode"),
        ("rw-------", "expected an octal file mode"),
        (True, "expected an octal file mode"),
    ],
)
def test_file_mode_refuses_world_bits_and_non_modes(written: Any, words: str) -> None:
    data = minimal()
    data["database"] = {"file_mode": written}
    (problem,) = problems_of(data)
    assert problem.startswith("database.file_mode: ") and words in problem
