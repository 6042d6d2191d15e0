"""Interop with the real Supabase CLI (node_modules/.bin/supabase, pinned 2.117.0), both ways."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from pydeploy import migrations as mig

ROOT = Path(__file__).resolve().parent.parent
SUPABASE = ROOT / "node_modules" / ".bin" / "supabase"


@pytest.fixture(scope="module")
def supabase_cli() -> Path:
    if not SUPABASE.exists():
        pytest.fail(f"the Supabase CLI is not installed at {SUPABASE}: run `make bootstrap` (npm ci)")
    return SUPABASE


def _cli(cli: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cli), *args], capture_output=True, text=True, cwd=ROOT, timeout=180,
                          check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT / ".pydeploy"),
                                            "SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"})


def _local_versions() -> list[str]:
    return [f.version for f in mig.discover(ROOT / "supabase" / "migrations")]


def test_cli_lists_what_pydeploy_applied(supabase_cli: Path, engine_url: str) -> None:
    res = _cli(supabase_cli, "migration", "list", "--db-url", engine_url + "?sslmode=disable")
    assert res.returncode == 0, res.stderr + res.stdout
    versions = _local_versions()
    assert versions, "the project has migrations"
    for v in versions:
        # a row with the version in the Local column and again in the Remote column
        assert re.search(rf"{v}\S*\s*\|\s*\S*{v}", res.stdout), f"{v} not applied on both sides:\n{res.stdout}"


def test_cli_push_on_fresh_database_then_pydeploy_sees_nothing_pending(
        supabase_cli: Path, scratch_db, engine_url: str, run_cli) -> None:
    url = scratch_db()
    res = _cli(supabase_cli, "db", "push", "--db-url", url + "?sslmode=disable", "--yes")
    assert res.returncode == 0, res.stderr + res.stdout
    st = run_cli("status", "--json", "--db-url", url)
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["pending"] == [] and status["drifted"] == [] and status["remote_only"] == []
    assert status["applied"] == _local_versions()
    # Both tools record the very same statements for every file.
    q = "select version, name, statements from supabase_migrations.schema_migrations order by version"
    with psycopg.connect(url) as by_cli, psycopg.connect(engine_url) as by_pydeploy:
        assert by_cli.execute(q).fetchall() == by_pydeploy.execute(q).fetchall()


def test_pg_prove_is_installed() -> None:
    assert shutil.which("pg_prove"), "pg_prove is missing: apt-get install libtap-parser-sourcehandler-pgtap-perl"
