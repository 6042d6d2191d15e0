"""`pydeploy up` / `down` / `url`: start an engine, prepare it like Supabase, remember it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pydeploy import dsn as dsnmod
from pydeploy import engine_select, extensions_build
from pydeploy.engine_container import ContainerEngine
from pydeploy.engine_local import (
    LocalEngine,
    binary_version,
    check_extensions,
    db_url,
    find_bindir,
    free_port,
    port_is_free,
)
from pydeploy.errors import EngineError
from pydeploy.paths import SQL_DIR, state_dir

Say = Callable[[str], None]


@dataclass
class UpOptions:
    engine: str = "auto"
    port: int | None = None
    home: Path | None = None


def _home(home: Path | None) -> Path:
    return (home or state_dir()).resolve()


def state_path(home: Path | None = None) -> Path:
    return _home(home) / "engine.json"


def read_state(home: Path | None = None) -> dict[str, object] | None:
    p = state_path(home)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def write_state(state: dict[str, object], home: Path | None = None) -> None:
    p = state_path(home)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(p)


def _wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("select 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.2)
    raise EngineError(f"the database at {dsnmod.redact(url)} did not accept connections: {last}")


def prepare(url: str, *, standin: bool | None = None) -> None:
    """Make the database look like Supabase for our code: roles, schemas, Vault where the server
    loads it, and pg_net's contract: the stand-in's unless the server loads the real pg_net
    (standin None: decided by the server's shared_preload_libraries)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('pydeploy:prepare'))")
        conn.execute((SQL_DIR / "supabase_like.sql").read_text())
        real_pg_net = extensions_build.prepare_sql(conn)
        if standin if standin is not None else not real_pg_net:
            conn.execute((SQL_DIR / "pg_net_standin.sql").read_text())


# -- the pg_net stand-in worker process --------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_net_worker(url: str, home: Path) -> int:
    log = open(home / "net_worker.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "pydeploy.cli", "net-worker", "--db-url", url],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    return proc.pid


def stop_pid(pid: int, timeout: float = 10) -> None:
    if not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- up / down -----------------------------------------------------------------------------------
def up(opts: UpOptions, say: Say = lambda _: None) -> dict[str, object]:
    """Start (or reuse) the engine; return its state (with db_url). Idempotent."""
    home = _home(opts.home)
    state = read_state(home)
    if state and state.get("engine") == "local":
        return _up_local(opts, home, state, say)
    if state and state.get("engine") == "container" and state.get("running"):
        with contextlib.suppress(EngineError):
            _wait_ready(str(state["db_url"]), timeout=5)
            say(f"reusing the running container engine at {dsnmod.redact(str(state['db_url']))}")
            return state
    choice = engine_select.choose(opts.engine, engine_select.docker_answers() if opts.engine != "local" else False)
    if choice.notice:
        say(choice.notice)
    if choice.engine == "container":
        url, cid = ContainerEngine().start()
        _wait_ready(url, timeout=120)
        prepare(url, standin=False)
        state = {"engine": "container", "running": True, "db_url": url, "container_id": cid,
                 "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_state(state, home)
        return state
    return _up_local(opts, home, state, say)


def _up_local(opts: UpOptions, home: Path, state: dict[str, object] | None, say: Say) -> dict[str, object]:
    bindir = find_bindir()
    check_extensions(bindir)
    src = extensions_build.source_dir()
    if src is not None:
        extensions_build.ensure_installed(src, bindir, say)
    eng = LocalEngine(home)
    root = Path(str(state["pg_root"])) if state and state.get("pg_root") else eng.pg_root()
    data = eng.init(root, bindir)
    pid = eng.running_pid(data)
    started = False
    if pid is not None and state and state.get("port"):
        reason = _restart_reason(db_url(int(str(state["port"]))), bindir, eng.settings(data))
        if reason:
            say(f"restarting the local engine: {reason}")
            eng.stop(data, bindir)
            pid = None
    port: int
    if pid is not None and state and state.get("port"):
        port = int(str(state["port"]))
        if opts.port and opts.port != port:
            raise EngineError(f"the local engine already runs on port {port}, not {opts.port}",
                              "run `pydeploy down` first to move it")
        say(f"reusing the running local engine on 127.0.0.1:{port}")
    else:
        if opts.port:
            if not port_is_free(opts.port):
                raise EngineError(f"port {opts.port} on 127.0.0.1 is already in use by another process",
                                  "choose another with --port, or omit --port to pick a free one")
            port = opts.port
        elif state and state.get("port") and port_is_free(int(str(state["port"]))):
            port = int(str(state["port"]))
        else:
            port = free_port()
        say(f"starting Postgres on 127.0.0.1:{port} (data in {data})")
        pid = eng.start(data, bindir, port)
        started = True
    url = db_url(port)
    _wait_ready(url)
    prepare(url)
    worker_pid = int(str(state.get("net_worker_pid", 0))) if state else 0
    with psycopg.connect(url, autocommit=True) as c:
        real_pg_net = "pg_net" in extensions_build.preloaded(c)
    if real_pg_net:
        if worker_pid:
            stop_pid(worker_pid)  # a stand-in worker from before the real pg_net was loaded
            worker_pid = 0
        if started:  # a paused or redirected worker (tests) serves the engine's database again
            extensions_build.serve_database(url, "postgres")
    elif not worker_pid or not _pid_alive(worker_pid):
        worker_pid = start_net_worker(url, home)
        say(f"started the pg_net stand-in worker (pid {worker_pid})")
    new_state: dict[str, object] = {
        "engine": "local", "running": True, "db_url": url, "port": port, "pg_root": str(root), "data_dir": str(data),
        "bindir": str(bindir), "postmaster_pid": pid, "net_worker_pid": worker_pid,
        "pg_net": "extension" if real_pg_net else "stand-in",
        "started_at": (state or {}).get("started_at") if state and state.get("port") == port
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_state(new_state, home)
    return new_state


def _restart_reason(url: str, bindir: Path, settings: dict[str, str]) -> str | None:
    """Why a running local server must be restarted before use, or None.

    - its binaries changed under it (e.g. apt upgraded PostgreSQL's minor version: the running
      server then fails to load plpgsql.so and every new backend's libraries);
    - the libraries it preloads are not the ones this run needs (e.g. $PYDEPLOY_EXTENSIONS_SRC
      was set or unset since it started)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as c:
            row = c.execute("select version(), current_setting('shared_preload_libraries')").fetchone()
    except psycopg.Error as exc:
        return f"it does not answer queries ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})"
    running, preload = (str(row[0]), str(row[1])) if row else ("", "")
    installed = binary_version(bindir)
    if installed and not running.startswith(f"PostgreSQL {installed}"):
        return f"its binaries changed since it started (running {running.split(' on ')[0]}, installed {installed})"
    want = settings.get("shared_preload_libraries", "").strip("'")
    if want and preload.replace(" ", "") != want:
        return f"it preloads '{preload}', this run needs '{want}'"
    return None


def down(home: Path | None = None, purge: bool = False, say: Say = lambda _: None) -> bool:
    """Stop the engine and its worker; with purge, delete its data. False when nothing ran."""
    home_p = _home(home)
    state = read_state(home_p)
    if not state:
        if purge:
            LocalEngine(home_p).purge(home_p / "pg")
        return False
    if state.get("net_worker_pid"):
        stop_pid(int(str(state["net_worker_pid"])))
    if state.get("engine") == "container":
        ContainerEngine.stop(str(state["container_id"]))
        say("stopped the container engine")
    else:
        eng = LocalEngine(home_p)
        data = Path(str(state["data_dir"]))
        eng.stop(data, Path(str(state["bindir"])))
        say("stopped the local engine")
        if purge:
            eng.purge(Path(str(state["pg_root"])))
            say(f"deleted {state['pg_root']}")
    if purge:
        state_path(home_p).unlink(missing_ok=True)
    else:
        state.pop("postmaster_pid", None)
        state["net_worker_pid"] = 0
        state["running"] = False
        write_state(state, home_p)
    return True
