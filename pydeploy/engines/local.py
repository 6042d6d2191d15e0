"""The local engine: a LocalCluster on 127.0.0.1, prepared like Supabase, with the pg_net stand-in worker
(or the real pg_net and Vault, built from the archives $PYDEPLOY_EXTENSIONS_SRC names)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from pydeploy import extensions_build
from pydeploy.engines.base import Engine, Say
from pydeploy.engines.local_cluster import LocalCluster, binary_version, check_extensions, db_url, find_bindir
from pydeploy.engines.prepare import wait_ready
from pydeploy.engines.processes import pid_alive, start_net_worker, stop_pid
from pydeploy.engines.state import LocalState, now_utc
from pydeploy.errors import EngineError
from pydeploy.ports import free_port, port_is_free


class LocalEngine(Engine[LocalState]):
    kind = "local"
    state_type = LocalState
    standin = None  # the stand-in unless the server loads the real pg_net ($PYDEPLOY_EXTENSIONS_SRC)

    def __init__(self, home: Path, port: int | None = None) -> None:
        super().__init__(home, port)  # port None: the previous one when free, else any free one
        self.cluster = LocalCluster(home)

    def _choose_port(self, previous: LocalState | None) -> int:
        if self.port:
            if not port_is_free(self.port):
                raise EngineError(f"port {self.port} on 127.0.0.1 is already in use by another process",
                                  "choose another with --port, or omit --port to pick a free one")
            return self.port
        if previous and previous.port and port_is_free(previous.port):
            return previous.port
        return free_port()

    def up(self, previous: LocalState | None, say: Say) -> LocalState:
        bindir = find_bindir()
        check_extensions(bindir)
        src = extensions_build.source_dir()
        if src is not None:
            extensions_build.ensure_installed(src, bindir, say)
        root = previous.pg_root if previous and previous.pg_root != Path() else self.cluster.pg_root()
        data = self.cluster.init(root, bindir)
        pid = self.cluster.running_pid(data)
        if pid is not None and previous and previous.port:
            reason = restart_reason(db_url(previous.port), bindir, self.cluster.settings(data))
            if reason:
                say(f"restarting the local engine: {reason}")
                self.cluster.stop(data, bindir)
                pid = None
        started = False
        if pid is not None and previous and previous.port:
            port = previous.port
            if self.port and self.port != port:
                raise EngineError(f"the local engine already runs on port {port}, not {self.port}",
                                  "run `pydeploy down` first to move it")
            say(f"reusing the running local engine on 127.0.0.1:{port}")
        else:
            port = self._choose_port(previous)
            say(f"starting Postgres on 127.0.0.1:{port} (data in {data})")
            pid = self.cluster.start(data, bindir, port)
            started = True
        url = db_url(port)
        wait_ready(url)
        self.prepare(url)
        with psycopg.connect(url, autocommit=True) as c:
            real_pg_net = "pg_net" in extensions_build.preloaded(c)
        worker_pid = previous.net_worker_pid if previous else 0
        if real_pg_net:
            if worker_pid:
                stop_pid(worker_pid)  # a stand-in worker from before the real pg_net was loaded
                worker_pid = 0
            if started:  # a paused or redirected worker (tests) serves the engine's database again
                extensions_build.serve_database(url, "postgres")
        elif not worker_pid or not pid_alive(worker_pid):
            worker_pid = start_net_worker(url, self.home)
            say(f"started the pg_net stand-in worker (pid {worker_pid})")
        same_server = previous is not None and previous.port == port
        return LocalState(db_url=url, running=True, port=port, pg_root=root, data_dir=data, bindir=bindir,
                          postmaster_pid=pid, net_worker_pid=worker_pid,
                          pg_net="extension" if real_pg_net else "stand-in",
                          started_at=previous.started_at if previous and same_server else now_utc())

    def down(self, state: LocalState, *, purge: bool, say: Say) -> None:
        if state.net_worker_pid:
            stop_pid(state.net_worker_pid)
        self.cluster.stop(state.data_dir, state.bindir)
        say("stopped the local engine")
        if purge:
            self.cluster.purge(state.pg_root)
            say(f"deleted {state.pg_root}")

    def purge_default(self) -> None:
        """Delete the data folder where a cluster would be when no state remembers one."""
        self.cluster.purge(self.home / "pg")


def restart_reason(url: str, bindir: Path, settings: dict[str, str]) -> str | None:
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
