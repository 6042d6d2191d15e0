"""Fixtures: one local engine per test session, isolated from the user's own `.pydeploy/`.

- `engine_home`: the session engine's state folder (PYDEPLOY_HOME for CLI subprocesses).
- `engine_url`: DSN of its `postgres` database, all of supabase/migrations applied. pg_cron
  runs its jobs only in this database (cron.database_name), so scheduling tests use it.
- `conn`: a connection to it in a transaction that is rolled back after the test.
- `scratch_db`: a factory for throw-away databases in the same cluster, prepared like Supabase.
- `run_cli`: runs the real `pydeploy` entry point in a subprocess against the session engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pydeploy import engines, migrations
from pydeploy.dsn import with_database
from pydeploy.engines import LocalState
from tests.alerting import NetWorker, prepare
from tests.databases import rolled_back

ROOT = Path(__file__).resolve().parent.parent
# The real console script installed with the package, next to this Python.
PYDEPLOY = Path(sys.executable).parent / "pydeploy"


@pytest.fixture(scope="session")
def engine_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("pydeploy-home")
    yield home
    engines.down(home=home, purge=True)


@pytest.fixture(scope="session")
def engine_state(engine_home: Path) -> LocalState:
    state = engines.up(engines.UpOptions(engine="local", home=engine_home))
    assert isinstance(state, LocalState)
    return state


@pytest.fixture(scope="session")
def engine_url(engine_state: LocalState) -> str:
    url = engine_state.db_url
    with psycopg.connect(url, autocommit=True) as c:
        migrations.migrate(c, ROOT / "supabase" / "migrations")
    return url


@pytest.fixture
def conn(engine_url: str) -> Iterator[psycopg.Connection]:
    with rolled_back(engine_url) as c:
        yield c


@pytest.fixture
def scratch_db(engine_state: LocalState) -> Iterator[Callable[[], str]]:
    admin = engine_state.db_url
    made: list[str] = []

    def make() -> str:
        name = "scratch_" + uuid.uuid4().hex[:10]
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'create database "{name}"')
        made.append(name)
        url = with_database(admin, name)
        engines.prepare(url)
        return url

    yield make
    with psycopg.connect(admin, autocommit=True) as c:
        for name in made:
            c.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def alert_db(scratch_db: Callable[[], str]) -> Iterator[str]:
    """Migrated database, short retry settings (tests.alerting.FAST), its own pg_net stand-in worker."""
    url = scratch_db()
    prepare(url)
    with NetWorker(url):
        yield url


@pytest.fixture
def cli_env(engine_home: Path, engine_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SUPABASE_DB_URL"}
    env["PYDEPLOY_HOME"] = str(engine_home)
    env["PYDEPLOY_PROJECT"] = str(ROOT)
    return env


@pytest.fixture
def run_cli(cli_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        e = dict(cli_env)
        if env:
            e.update(env)
        return subprocess.run([str(PYDEPLOY), *args], capture_output=True, text=True,
                              env=e, timeout=timeout, cwd=cwd or ROOT, check=False)

    return run
