"""Engine state: typed, kept in engine.json with the keys it always had, read in one place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pydeploy import engines
from pydeploy.engines import ContainerState, LocalState, StateFile, UrlState
from pydeploy.engines.target import target
from pydeploy.engines.url import UrlEngine
from pydeploy.errors import ConfigError

LOCAL = LocalState(db_url="postgresql://postgres:postgres@127.0.0.1:5999/postgres", port=5999,
                   pg_root=Path("/tmp/x/pg"), data_dir=Path("/tmp/x/pg/data"),
                   bindir=Path("/usr/lib/postgresql/15/bin"),
                   postmaster_pid=123, net_worker_pid=456, started_at="2026-01-01T00:00:00Z")


def test_local_state_file_has_the_keys_it_always_had(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    store.write(LOCAL)
    doc = json.loads((tmp_path / "engine.json").read_text())
    assert doc == {"engine": "local", "running": True, "db_url": LOCAL.db_url, "port": 5999, "pg_root": "/tmp/x/pg",
                   "data_dir": "/tmp/x/pg/data", "bindir": "/usr/lib/postgresql/15/bin", "postmaster_pid": 123,
                   "net_worker_pid": 456, "started_at": "2026-01-01T00:00:00Z",
                   "pg_net": "stand-in"}  # which pg_net delivers (issue 17); a file without it reads as stand-in
    assert os.stat(tmp_path / "engine.json").st_mode & 0o777 == 0o600, "it holds a password"
    assert store.read() == LOCAL


def test_stopped_state_forgets_the_processes(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    store.write(LOCAL.stopped())
    doc = json.loads((tmp_path / "engine.json").read_text())
    assert doc["running"] is False and doc["net_worker_pid"] == 0 and "postmaster_pid" not in doc
    back = store.read()
    assert isinstance(back, LocalState) and back.pg_root == LOCAL.pg_root and not back.running


def test_container_state_round_trips(tmp_path: Path) -> None:
    state = ContainerState(db_url="postgresql://postgres:postgres@127.0.0.1:32768/postgres", container_id="abc",
                           started_at="2026-01-01T00:00:00Z")
    StateFile(tmp_path).write(state)
    assert json.loads((tmp_path / "engine.json").read_text())["engine"] == "container"
    assert StateFile(tmp_path).read() == state


@pytest.mark.parametrize("text", ["", "{", "[]", '{"engine": "local"}', '{"engine": "vm", "db_url": "x"}',
                                  '{"engine": "local", "db_url": "x", "port": 1, "surprise": true, "pg_root": null}'])
def test_an_unreadable_state_file_is_no_state(tmp_path: Path, text: str) -> None:
    (tmp_path / "engine.json").write_text(text)
    got = StateFile(tmp_path).read()
    if "surprise" in text:  # unknown keys are ignored, a null is a default
        assert got == LocalState(db_url="x", port=1)
    else:
        assert got is None


def test_target_prefers_flag_then_environment_then_running_engine(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDEPLOY_HOME", str(tmp_path))
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    with pytest.raises(ConfigError, match="no database to talk to"):
        target(None)
    StateFile(tmp_path).write(LOCAL)
    assert target(None) == LOCAL
    StateFile(tmp_path).write(LOCAL.stopped())
    with pytest.raises(ConfigError, match="no database to talk to"):
        target(None)
    monkeypatch.setenv("SUPABASE_DB_URL", "postgresql://u@db.example.com/postgres?sslmode=require")
    assert target(None) == UrlState(db_url="postgresql://u@db.example.com/postgres?sslmode=require",
                                    source="SUPABASE_DB_URL")
    assert engines.resolve("postgresql://u@other/postgres") == "postgresql://u@other/postgres"
    with pytest.raises(ConfigError, match="SUPABASE_DB_URL has scheme 'mysql'"):
        monkeypatch.setenv("SUPABASE_DB_URL", "mysql://u@h/db")
        target(None)


def test_the_url_engine_never_stops_a_database_it_did_not_start(tmp_path: Path) -> None:
    said: list[str] = []
    state = UrlState(db_url="postgresql://u:secret@db.example.com/postgres")
    UrlEngine(tmp_path).down(state, purge=True, say=said.append)
    assert said == ["not stopping postgresql://u:***@db.example.com/postgres: pydeploy did not start it"]


def test_engine_for_knows_every_kind(tmp_path: Path) -> None:
    assert {engines.engine_for(k, tmp_path).kind for k in ("local", "container", "url")} == {"local", "container",
                                                                                             "url"}
    with pytest.raises(ValueError, match="no engine of kind 'vm'"):
        engines.engine_for("vm", tmp_path)
