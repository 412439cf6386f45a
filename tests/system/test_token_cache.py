"""Zoho's access token lasts its hour on every database (issue 19 item 7): with no
``sync.state_dir``, a PostgreSQL mirror keeps the token cache in the user's state folder,
so two ``--run-once`` passes make one token refresh, and ``check`` names the cache."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import pg_unavailable
from tests.system.conftest import run_cli
from tests.system.harness import PLUGINS, Setup


@pytest.fixture
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("the SQLite file's folder holds the cache there: covered elsewhere")
    if pg_unavailable():
        pytest.skip("no PostgreSQL")
    return db_url


def test_two_passes_on_postgresql_make_one_token_refresh(tmp_path, pg_url):
    plugin = PLUGINS["zoho_desk"]
    setup = Setup(plugin, tmp_path, db_url=pg_url)
    try:
        data = yaml.safe_load(setup.config.read_text())
        del data["sync"]["state_dir"]  # the default: no folder configured
        setup.config.write_text(yaml.safe_dump(data))
        env = {"XDG_STATE_HOME": str(tmp_path / "xdg"), "STATE_DIRECTORY": ""}
        setup.vendor.seed(plugin.remote_ticket(0))
        for _ in range(2):
            result = setup.run(env=env)
            assert result.returncode == 0, result.stderr
        grants = [e for e in setup.vendor.log() if e["path"] == "/oauth/v2/token"]
        assert len(grants) == 1
        cache = tmp_path / "xdg" / "ticketsync" / "zoho-v.token.json"
        assert cache.exists()
        checked = run_cli("--config", str(setup.config), "check", "--offline", env=env)
        assert checked.returncode == 0, checked.stderr
        assert f"token cache: {cache}" in checked.stdout
    finally:
        setup.stop()
