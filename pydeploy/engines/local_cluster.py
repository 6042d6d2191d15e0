"""The local engine's cluster: Debian's PostgreSQL 15 with pg_cron, in a folder pydeploy owns.

Postgres refuses to run as root, so when pydeploy runs as root every server command runs as
the unprivileged `postgres` user. That user must be able to reach the data folder; when the
project sits below a folder it cannot traverse (such as /root) the data goes to the system
temp folder instead, and engine.json says where.

The server's settings are written in one place, `write_settings` (SETTINGS, plus the real pg_net's
and Vault's when $PYDEPLOY_EXTENSIONS_SRC is set, into data/pydeploy.conf on every start); `init`
only makes the cluster include that file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydeploy import extensions_build
from pydeploy.engines.processes import pid_alive, wait_gone
from pydeploy.errors import EngineError

SERVER_USER = "postgres"
PASSWORD = "postgres"
INSTALL_HINT = (
    "as root run `make bootstrap`, or: apt-get update && apt-get install -y postgresql-15 "
    "postgresql-15-cron postgresql-15-pgtap postgresql-15-plpgsql-check"
)

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "shared_preload_libraries": "'pg_cron,pg_stat_statements'",
    "cron.database_name": "'postgres'",
    "cron.use_background_workers": "on",
    "cron.max_running_jobs": "8",
    "max_worker_processes": "32",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "pg_stat_statements.track": "all",
}


def find_bindir() -> Path:
    """The folder holding initdb/pg_ctl/postgres: $PG_BINDIR, else Debian's 15 (or newer)."""
    if os.environ.get("PG_BINDIR"):
        candidates = [Path(os.environ["PG_BINDIR"])]
    else:
        candidates = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (15, 16, 17)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    raise EngineError("PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found",
                      INSTALL_HINT)


def check_extensions(bindir: Path) -> None:
    """Fail loudly when pg_cron is not installed for this server."""
    version = bindir.parent.name
    sharedir = Path(f"/usr/share/postgresql/{version}/extension")
    if not (sharedir / "pg_cron.control").exists():
        raise EngineError(f"pg_cron is not installed for PostgreSQL {version}",
                          f"apt-get install -y postgresql-{version}-cron")


@dataclass
class LocalCluster:
    """A Postgres cluster under `home` (or the temp folder when the server user cannot reach it)."""

    home: Path

    # -- where things are -------------------------------------------------------------------
    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def _user(self) -> pwd.struct_passwd | None:
        if not self.as_root:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise EngineError(
                f"running as root and there is no unprivileged '{SERVER_USER}' user to run Postgres",
                "apt-get install -y postgresql-15 (it creates the user), or: "
                f"useradd --system --home /var/lib/postgresql {SERVER_USER}",
            ) from exc

    def _run(self, args: list[str], *, check: bool = True, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
        user = self._user()
        kwargs: dict[str, object] = {}
        env = dict(os.environ)
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = user.pw_dir
        try:
            proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout,
                                  check=False, cwd="/", **kwargs)  # type: ignore[arg-type]
        except FileNotFoundError as exc:
            raise EngineError(f"{args[0]} was not found", INSTALL_HINT) from exc
        if check and proc.returncode != 0:
            out = (proc.stderr or proc.stdout).strip()
            raise EngineError(f"{Path(args[0]).name} failed: {out}")
        return proc

    def _reachable(self, path: Path) -> bool:
        if self._user() is None:
            return True
        return self._run(["test", "-x", str(path)], check=False).returncode == 0

    def pg_root(self) -> Path:
        """The folder owned by the server user: data/ and postgres.log inside."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o755)
        if self._reachable(self.home):
            return self.home / "pg"
        digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"pydeploy-{digest}"

    # -- lifecycle --------------------------------------------------------------------------
    def init(self, root: Path, bindir: Path) -> Path:
        """initdb into root/data unless it already holds a cluster; return the data folder."""
        data = root / "data"
        if (data / "PG_VERSION").exists():
            return data
        root.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o700)
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            self._run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                       f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                       "-E", "UTF8", "--locale=C.UTF-8"], timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        conf = data / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\n# pydeploy: the local engine's settings live in pydeploy.conf\n")
            f.write("include_if_exists = 'pydeploy.conf'\n")
        return data

    def settings(self, data: Path) -> dict[str, str]:
        """SETTINGS, plus the real pg_net's and Vault's when $PYDEPLOY_EXTENSIONS_SRC is set."""
        user = self._user()
        extra = extensions_build.server_settings(data.parent, user.pw_uid if user else None,
                                                 user.pw_gid if user else None)
        return {**SETTINGS, **extra}

    def write_settings(self, data: Path, port: int) -> None:
        """data/pydeploy.conf: settings() (shared_preload_libraries, pg_cron's, …) and the port."""
        lines = [f"{k} = {v}" for k, v in self.settings(data).items()] + [f"port = {port}"]
        path = data / "pydeploy.conf"
        path.write_text("# written by pydeploy up; edits are overwritten\n" + "\n".join(lines) + "\n")
        user = self._user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def running_pid(self, data: Path) -> int | None:
        pidfile = data / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, data: Path, bindir: Path, port: int) -> int:
        """Start the server on `port`; return the postmaster pid."""
        self.write_settings(data, port)
        log = data.parent / "postgres.log"
        proc = self._run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                          "start"], check=False, timeout=90)
        if proc.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = "\n".join(log.read_text().strip().splitlines()[-5:])
            raise EngineError(f"Postgres did not start on 127.0.0.1:{port}:\n{tail or proc.stderr}",
                              f"see {log}")
        pid = self.running_pid(data)
        if pid is None:
            raise EngineError("Postgres reported a start but no postmaster is running", f"see {log}")
        return pid

    def stop(self, data: Path, bindir: Path) -> None:
        pid = self.running_pid(data)
        if pid is None:
            return
        self._run([str(bindir / "pg_ctl"), "-D", str(data), "stop", "-m", "fast", "-w", "-t", "60"],
                  check=False, timeout=90)
        if wait_gone(pid, 30, poll=0.1):
            return
        raise EngineError(f"Postgres (pid {pid}) did not stop within 30 s",
                          f"stop it by hand: kill {pid}")

    def purge(self, root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)


def binary_version(bindir: Path) -> str:
    """What `postgres -V` says, e.g. '15.18 (Debian 15.18-0+deb12u1)'."""
    out = subprocess.run([str(bindir / "postgres"), "-V"], capture_output=True, text=True, check=False).stdout
    return out.strip().removeprefix("postgres (PostgreSQL) ")


def db_url(port: int, dbname: str = "postgres") -> str:
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{dbname}"
