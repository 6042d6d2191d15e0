"""The local engine as a user meets it: up, url, reuse, down, and its Supabase-like shape."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

from pydeploy import engines
from pydeploy.engines import LocalState, local, local_cluster
from pydeploy.errors import EngineError


def _pids_of_cluster(data_dir: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if data_dir in line]


def test_engine_is_supabase_like(engine_url: str) -> None:
    with psycopg.connect(engine_url) as c:
        roles = {r[0]: r[1] for r in c.execute(
            "select rolname, rolbypassrls from pg_roles "
            "where rolname in ('anon','authenticated','service_role','authenticator')")}
        assert roles == {"anon": False, "authenticated": False, "service_role": True, "authenticator": False}
        assert c.execute("select to_regnamespace('extensions') is not null").fetchone() == (True,)
        exts = {r[0]: r[1] for r in c.execute(
            "select e.extname, n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace")}
        assert exts["pgcrypto"] == "extensions"
        assert exts["pg_stat_statements"] == "extensions"
        libs = c.execute("show shared_preload_libraries").fetchone()
        assert libs is not None and "pg_cron" in libs[0] and "pg_stat_statements" in libs[0]
        assert c.execute("show cron.database_name").fetchone() == ("postgres",)
        # pg_net's contract is there (the stand-in), with pg_net's defaults.
        sig = c.execute("select pg_get_function_arguments('net.http_post'::regproc)").fetchone()
        assert sig is not None
        assert "timeout_milliseconds integer DEFAULT 5000" in sig[0]
        assert "headers jsonb DEFAULT '{\"Content-Type\": \"application/json\"}'::jsonb" in sig[0]


def test_the_engine_loads_the_real_pg_net_and_vault_exactly_when_given_their_sources(engine_url: str) -> None:
    """CI sets $PYDEPLOY_EXTENSIONS_SRC (.ci/run, ../shared/third_party): the whole suite then runs on the real
    pg_net and Vault, and this says so; without it, on the stand-in and monitoring._secrets."""
    given = bool(os.environ.get("PYDEPLOY_EXTENSIONS_SRC", "").strip())
    with psycopg.connect(engine_url) as c:
        exts = {r[0] for r in c.execute("select extname from pg_extension")}
        libs = str((c.execute("show shared_preload_libraries").fetchone() or ("",))[0])
        pg_net = c.execute("select monitoring.health() -> 'delivery' ->> 'pgNetImplementation'").fetchone()
        store = c.execute("select to_regclass('vault.decrypted_secrets') is not null").fetchone()
    if given:
        assert {"pg_net", "supabase_vault"} <= exts, exts
        assert "pg_net" in libs and "supabase_vault" in libs, libs
        assert pg_net is not None and str(pg_net[0]).startswith("pg_net "), pg_net
        assert store == (True,)
    else:
        assert "pg_net" not in exts and "supabase_vault" not in exts, exts
        assert pg_net == ("pydeploy stand-in",)
        assert store == (False,)


def test_server_runs_unprivileged(engine_state: LocalState) -> None:
    assert engine_state.postmaster_pid is not None
    pid = engine_state.postmaster_pid
    uid = os.stat(f"/proc/{pid}").st_uid
    assert uid != 0, "Postgres must not run as root"


def test_up_is_idempotent_and_url_prints_dsn(engine_state: LocalState, run_cli) -> None:
    res = run_cli("up", "--engine", "local", "--no-schedule")
    assert res.returncode == 0, res.stderr
    assert "reusing the running local engine" in res.stderr
    assert res.stdout.strip() == engine_state.db_url
    res = run_cli("url")
    assert res.returncode == 0
    assert res.stdout.strip() == engine_state.db_url
    with psycopg.connect(res.stdout.strip()) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_state_file_holds_db_url(engine_home: Path, engine_state: LocalState) -> None:
    state = json.loads((engine_home / "engine.json").read_text())
    assert state["db_url"] == engine_state.db_url
    assert state["engine"] == "local"


def test_down_leaves_no_process_and_up_again(tmp_path: Path, run_cli, cli_env) -> None:
    home = tmp_path / "own-engine"
    env = {"PYDEPLOY_HOME": str(home)}
    res = run_cli("up", "--engine", "local", "--no-migrate", env=env)
    assert res.returncode == 0, res.stderr
    state = json.loads((home / "engine.json").read_text())
    data_dir = state["data_dir"]
    assert _pids_of_cluster(data_dir), "postgres should be running"
    if state["pg_net"] == "stand-in":
        assert os.path.exists(f"/proc/{state['net_worker_pid']}")
    else:  # the real pg_net's worker is a Postgres background worker: no process of pydeploy's
        assert state["pg_net"] == "extension" and state["net_worker_pid"] == 0
    res = run_cli("down", env=env)
    assert res.returncode == 0, res.stderr
    assert _pids_of_cluster(data_dir) == []
    if state["net_worker_pid"]:
        assert not os.path.exists(f"/proc/{state['net_worker_pid']}"), "the pg_net stand-in worker must stop"
    res = run_cli("url", env=env)
    assert res.returncode == 1
    assert "no local engine is running" in res.stderr
    # data survives a plain down: up again finds the same cluster
    res = run_cli("up", "--engine", "local", "--no-migrate", env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("down", "--purge", env=env)
    assert res.returncode == 0
    assert _pids_of_cluster(data_dir) == []
    assert not Path(state["pg_root"]).exists()
    assert not (home / "engine.json").exists()


def test_busy_port_is_one_clear_message(tmp_path: Path, run_cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_cli("up", "--engine", "local", "--port", str(port), env={"PYDEPLOY_HOME": str(tmp_path / "h")})
    assert res.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_postgres_binary_is_one_clear_message(tmp_path: Path, run_cli) -> None:
    res = run_cli("up", "--engine", "local",
                  env={"PYDEPLOY_HOME": str(tmp_path / "h"), "PG_BINDIR": str(tmp_path / "nowhere")})
    assert res.returncode == 1
    assert "PostgreSQL server binaries" in res.stderr
    assert "apt-get install" in res.stderr
    assert "Traceback" not in res.stderr


def test_engine_error_type_for_stop_of_unknown_cluster(tmp_path: Path) -> None:
    assert engines.down(home=tmp_path / "never-started") is False


@pytest.mark.parametrize(("dsn", "needle"), [
    ("mysql://root@127.0.0.1/db", "not a Postgres URL"),
    ("postgresql://postgres@127.0.0.1:99999/postgres", "invalid port"),
    ("postgresql:///postgres", "names no host"),
    ("host=127.0.0.1 port=1 dbname=x connect_timeout=2", "cannot connect"),
    ("this is not a dsn", "not a valid connection string"),
])
def test_bad_dsn_is_one_clear_message(run_cli, dsn: str, needle: str) -> None:
    res = run_cli("status", "--db-url", dsn)
    assert res.returncode == 1
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_engine_error_has_hint() -> None:
    err = EngineError("x", "do y")
    assert "do y" in str(err)


def test_up_restarts_a_server_whose_binaries_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apt may upgrade PostgreSQL's minor version under a running server (which then cannot load
    plpgsql.so): `up` notices that `postgres -V` no longer matches the running server and restarts it.
    The upgrade itself is simulated by what `postgres -V` reports; the restart is real."""
    home = tmp_path / "upgraded"
    opts = engines.UpOptions(engine="local", home=home)
    try:
        first = engines.up(opts)
        assert isinstance(first, LocalState)
        said: list[str] = []
        same = engines.up(opts, said.append)
        assert isinstance(same, LocalState) and same.postmaster_pid == first.postmaster_pid, said
        assert not any("restarting" in s for s in said)
        real = local_cluster.binary_version(first.bindir)
        monkeypatch.setattr(local, "binary_version", lambda _bindir: real.replace("15.", "15.99", 1))
        said.clear()
        again = engines.up(opts, said.append)
        assert isinstance(again, LocalState)
        assert any("restarting the local engine: its binaries changed" in s for s in said), said
        assert again.postmaster_pid != first.postmaster_pid
        with psycopg.connect(again.db_url) as c:
            assert c.execute("select 1").fetchone() == (1,)
    finally:
        engines.down(home, purge=True)
