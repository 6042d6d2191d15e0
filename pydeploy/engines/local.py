"""The local engine: a LocalCluster on 127.0.0.1, prepared like Supabase, with the pg_net stand-in worker."""

from __future__ import annotations

from pathlib import Path

from pydeploy.engines.base import Engine, Say
from pydeploy.engines.local_cluster import LocalCluster, check_extensions, db_url, find_bindir
from pydeploy.engines.prepare import wait_ready
from pydeploy.engines.processes import pid_alive, start_net_worker, stop_pid
from pydeploy.engines.state import LocalState, now_utc
from pydeploy.errors import EngineError
from pydeploy.ports import free_port, port_is_free


class LocalEngine(Engine[LocalState]):
    kind = "local"
    state_type = LocalState
    standin = True

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
        root = previous.pg_root if previous and previous.pg_root != Path() else self.cluster.pg_root()
        data = self.cluster.init(root, bindir)
        pid = self.cluster.running_pid(data)
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
        url = db_url(port)
        wait_ready(url)
        self.prepare(url)
        worker_pid = previous.net_worker_pid if previous else 0
        if not worker_pid or not pid_alive(worker_pid):
            worker_pid = start_net_worker(url, self.home)
            say(f"started the pg_net stand-in worker (pid {worker_pid})")
        same_server = previous is not None and previous.port == port
        return LocalState(db_url=url, running=True, port=port, pg_root=root, data_dir=data, bindir=bindir,
                          postmaster_pid=pid, net_worker_pid=worker_pid,
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
