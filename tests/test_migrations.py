"""Migrations: order, one transaction per file, the CLI's ledger, drift, locking, failures."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pydeploy import migrations as mig
from pydeploy.errors import MigrationError


def _write(folder: Path, name: str, sql: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(sql)
    return p


def _ledger(url: str) -> list[tuple[str, str, list[str]]]:
    with psycopg.connect(url) as c:
        return [(v, n, list(s)) for v, n, s in c.execute(
            "select version, name, statements from supabase_migrations.schema_migrations order by version")]


def test_applies_in_version_order_and_records_the_cli_ledger(tmp_path: Path, scratch_db) -> None:
    url = scratch_db()
    folder = tmp_path / "migrations"
    _write(folder, "20240102000000_second.sql", "insert into public.t values (2);")
    _write(folder, "20240101000000_first.sql",
           "-- the table\ncreate table public.t (id int);\ncreate function public.f() returns int\n"
           "language sql as $$ select 1; $$;\n")
    _write(folder, "README.md", "not a migration")
    _write(folder, "notes.sql", "this is skipped: not VERSION_name.sql")
    with psycopg.connect(url, autocommit=True) as c:
        done = mig.migrate(c, folder)
    assert [f.version for f in done] == ["20240101000000", "20240102000000"]
    assert _ledger(url) == [
        ("20240101000000", "first", ["-- the table\ncreate table public.t (id int)",
                                     "create function public.f() returns int\nlanguage sql as $$ select 1; $$"]),
        ("20240102000000", "second", ["insert into public.t values (2)"]),
    ]
    with psycopg.connect(url, autocommit=True) as c:
        assert mig.migrate(c, folder) == []
        assert c.execute("select count(*) from public.t").fetchone() == (1,)


def test_failing_migration_rolls_back_whole_and_names_file_statement_and_error(tmp_path: Path, scratch_db) -> None:
    url = scratch_db()
    folder = tmp_path / "m"
    _write(folder, "20240101000000_ok.sql", "create table public.ok (id int);")
    _write(folder, "20240102000000_broken.sql",
           "create table public.half (id int);\ninsert into public.half values (1);\n"
           "select * from public.no_such_table;\n")
    with psycopg.connect(url, autocommit=True) as c, pytest.raises(MigrationError) as ei:
        mig.migrate(c, folder)
    msg = str(ei.value)
    assert "20240102000000_broken.sql" in msg
    assert "statement 3 of 3" in msg
    assert 'relation "public.no_such_table" does not exist' in msg
    assert "select * from public.no_such_table" in msg
    assert "^" in msg  # a caret under the error position
    with psycopg.connect(url) as c:
        assert c.execute("select to_regclass('public.half')").fetchone() == (None,)
        assert c.execute("select to_regclass('public.ok')").fetchone() == ("ok",)
    assert [v for v, _, _ in _ledger(url)] == ["20240101000000"]


def test_broken_migration_via_cli_is_one_message(tmp_path: Path, scratch_db, run_cli) -> None:
    url = scratch_db()
    project = tmp_path / "proj"
    _write(project / "supabase" / "migrations", "20240101000000_bad.sql", "create tabel oops (id int);")
    res = run_cli("migrate", "--db-url", url, env={"PYDEPLOY_PROJECT": str(project)})
    assert res.returncode == 1
    assert "20240101000000_bad.sql" in res.stderr
    assert 'syntax error at or near "tabel"' in res.stderr
    assert "Traceback" not in res.stderr


def test_status_shows_applied_pending_and_drifted(tmp_path: Path, scratch_db, run_cli) -> None:
    url = scratch_db()
    project = tmp_path / "proj"
    folder = project / "supabase" / "migrations"
    a = _write(folder, "20240101000000_a.sql", "create table public.a (id int);")
    with psycopg.connect(url, autocommit=True) as c:
        mig.migrate(c, folder)
    _write(folder, "20240102000000_b.sql", "create table public.b (id int);")
    # white space only: not drift
    a.write_text("create table public.a  (id int) ;\n\n")
    res = run_cli("status", "--json", "--db-url", url, env={"PYDEPLOY_PROJECT": str(project)})
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["applied"] == ["20240101000000"]
    assert st["pending"] == ["20240102000000"]
    assert st["drifted"] == []
    # a real edit after apply: drift
    a.write_text("create table public.a (id bigint);")
    res = run_cli("status", "--json", "--exit-code", "--db-url", url, env={"PYDEPLOY_PROJECT": str(project)})
    assert res.returncode == 1
    assert json.loads(res.stdout)["drifted"] == ["20240101000000"]
    res = run_cli("status", "--db-url", url, env={"PYDEPLOY_PROJECT": str(project)})
    assert "drifted" in res.stdout and "pending" in res.stdout


def test_concurrent_runs_apply_each_file_once(tmp_path: Path, scratch_db) -> None:
    url = scratch_db()
    folder = tmp_path / "m"
    _write(folder, "20240101000000_slow.sql",
           "create table public.runs (id int);\nselect pg_sleep(1.5);\ninsert into public.runs values (1);")
    _write(folder, "20240102000000_next.sql", "insert into public.runs values (2);")
    results: dict[str, object] = {}
    notices: list[str] = []

    def run(tag: str) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            results[tag] = [f.version for f in mig.migrate(c, folder, wait_notice=notices.append)]

    t1 = threading.Thread(target=run, args=("first",))
    t1.start()
    time.sleep(0.3)
    t2 = threading.Thread(target=run, args=("second",))
    t2.start()
    t1.join(30)
    t2.join(30)
    assert results == {"first": ["20240101000000", "20240102000000"], "second": []}
    assert any("blocked by another migration run" in n for n in notices)
    with psycopg.connect(url) as c:
        assert c.execute("select array_agg(id order by id) from public.runs").fetchone() == ([1, 2],)


def test_migrations_unknown_to_the_folder_are_refused(tmp_path: Path, scratch_db) -> None:
    url = scratch_db()
    folder = tmp_path / "m"
    _write(folder, "20240101000000_a.sql", "select 1;")
    with psycopg.connect(url, autocommit=True) as c:
        mig.migrate(c, folder)
    (folder / "20240101000000_a.sql").unlink()
    _write(folder, "20240102000000_b.sql", "select 2;")
    with psycopg.connect(url, autocommit=True) as c, pytest.raises(MigrationError, match="20240101000000"):
        mig.migrate(c, folder)


def test_db_url_falls_back_to_supabase_db_url(tmp_path: Path, scratch_db, run_cli) -> None:
    url = scratch_db()
    project = tmp_path / "proj"
    _write(project / "supabase" / "migrations", "20240101000000_a.sql", "create table public.env_t (id int);")
    res = run_cli("migrate", env={"PYDEPLOY_PROJECT": str(project), "SUPABASE_DB_URL": url})
    assert res.returncode == 0, res.stderr
    assert "applied 20240101000000_a.sql" in res.stderr
    with psycopg.connect(url) as c:
        assert c.execute("select to_regclass('public.env_t')").fetchone() == ("env_t",)
