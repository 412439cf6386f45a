"""``ticketsync journal`` through the real command line, on SQLite and PostgreSQL.

The mirror is seeded in-process by real syncs against the memory vendor; the command
then runs as ``python -m sync`` against the same database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.cli import main
from sync.db import Mirror
from sync.vendors.memory.adapter import reset_stores
from tests.system.conftest import run_cli
from tests.unit.engine_helpers import links, sql, sync, update_ticket, vendor


@pytest.fixture(autouse=True)
def _stores() -> Iterator[None]:
    reset_stores()
    yield
    reset_stores()


@pytest.fixture
def config(mirror: Mirror, tmp_path: Path) -> Path:
    """A configuration naming ``mem`` and ``other`` whose journal holds three runs."""
    mem = vendor("mem")
    a = mem.seed(title="A", status="Open")
    mem.seed(title="B", status="Open")
    assert sync(mirror, "mem").ok
    vendor("other").seed(title="C", status="Open")
    assert sync(mirror, "other").ok
    ticket = {e: t for t, e in links(mirror, "mem").items()}[a]
    update_ticket(mirror, ticket, status="closed")
    assert sync(mirror, "mem").ok
    url = mirror.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    connection = "{vendor: memory, base_url: 'http://127.0.0.1:9', fields: {status: null}}"
    path.write_text(
        f"database: {{url: {json.dumps(url)}}}\n"
        f"connections:\n  mem: {connection}\n  other: {connection}\n"
    )
    return path


def journal(config: Path, *args: str) -> Any:
    return run_cli("--config", str(config), "journal", *args)


def runs(mirror: Mirror) -> list[int]:
    return [r[0] for r in sql(mirror, "SELECT id FROM runs ORDER BY id")]


def test_help() -> None:
    result = run_cli("journal", "--help")
    assert result.returncode == 0
    for option in ("--run", "--ticket", "--connection", "--limit", "--json"):
        assert option in result.stdout


def test_text_output_groups_runs_and_explains_limits(config: Path, mirror: Mirror) -> None:
    result = journal(config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first, second, third = runs(mirror)
    assert [line.split()[:3] for line in lines if line.startswith("run #")] == [
        ["run", f"#{third}", "mem"],
        ["run", f"#{second}", "other"],
        ["run", f"#{first}", "mem"],
    ]
    assert any("push" in line and "'Open' -> 'Closed'" in line for line in lines)
    assert lines[-1] == "4 entries shown, all that match"

    limited = journal(config, "--limit", "1")
    assert limited.returncode == 0
    assert limited.stdout.splitlines()[-1].startswith(
        "showing the newest 1 of 4 entries; 3 older ones are left out"
    )

    unknown = journal(config, "--run", "999")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        f"ticketsync: --run 999: no such run (the newest run is #{third})"
    )
    assert unknown.stdout == ""


def test_json_output_and_its_filters(config: Path, mirror: Mirror) -> None:
    last = runs(mirror)[-1]
    result = journal(config, "--json", "--connection", "mem", "--run", str(last))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == 1
    assert report["filters"] == {"run": last, "ticket": None, "connections": ["mem"]}
    assert (report["limit"], report["total"], report["shown"], report["omitted"]) == (50, 1, 1, 0)
    (entry,) = report["entries"]
    assert set(entry) == {
        "id",
        "at",
        "run_id",
        "run",
        "connection",
        "ticket_id",
        "external_id",
        "action",
        "field",
        "old_value",
        "new_value",
        "note",
        "generation",
        "old_canonical",
        "new_canonical",
        "old_vendor",
        "new_vendor",
        "undo_of",
    }
    assert (entry["old_canonical"], entry["new_canonical"]) == ("open", "closed")
    assert entry["at"].endswith("Z") and entry["run"]["outcome"] == "ok"
    assert (entry["action"], entry["old_value"], entry["new_value"]) == ("push", "Open", "Closed")

    (ticket,) = links(mirror, "other")
    args = ("--json", "--connection", "other", "--connection", "mem", "--ticket", str(ticket))
    other = json.loads(journal(config, *args, "--limit", "0").stdout)
    assert other["filters"] == {"run": None, "ticket": ticket, "connections": ["other", "mem"]}
    assert other["limit"] is None, "--limit 0 shows everything"
    assert [(e["connection"], e["action"]) for e in other["entries"]] == [("other", "import")]


@pytest.mark.parametrize(
    "args",
    [("--run", "abc"), ("--run", "0"), ("--ticket", "7x"), ("--limit", "-1")],
    ids=lambda a: " ".join(a),
)
def test_a_malformed_value_is_a_usage_error(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:  # refused before any configuration is read
        main(["journal", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {args[0]}" in err and repr(args[1]) in err


def test_a_malformed_value_exits_2_from_the_command_line() -> None:
    result = run_cli("journal", "--run", "abc")
    assert result.returncode == 2
    assert "argument --run: 'abc' is not an integer >= 1" in result.stderr
    assert "Traceback" not in result.stderr
