"""The real pg_net and Supabase Vault on the local engine, built from their source archives.

`$PYDEPLOY_EXTENSIONS_SRC` names a folder holding `pg_net-0.20.5.tar.gz` and
`supabase_vault-0.3.1.tar.gz` (e.g. ../shared/third_party). When it is set, `pydeploy up` checks
each archive's sha256, builds it with PGXS in a temporary folder (never in the source folder) and
installs it into the server's folders (`make install`, as root), once per archive and server
version; then the engine preloads both (`shared_preload_libraries`), Vault reads its root key
from a per-engine getkey script that only the server user can read, and the database gets
`create extension supabase_vault` as on Supabase (the migrations create pg_net). Without the
variable the local engine uses pydeploy's pg_net stand-in and the migrations' secrets table.

pg_net's background worker serves one database per cluster (`pg_net.database_name`, `postgres`
by default, read when the worker starts): `serve_database` points it at another one and waits
until it is there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pydeploy import dsn as dsnmod
from pydeploy.errors import EngineError

ENV = "PYDEPLOY_EXTENSIONS_SRC"
BUILD_HINT = ("make bootstrap (as root) installs the build packages: postgresql-server-dev-15 "
              "libcurl4-openssl-dev libsodium-dev")


@dataclass(frozen=True)
class Archive:
    extension: str  # the extension's name (and its shared library's)
    file: str
    sha256: str  # from ../shared/third_party/README.md


ARCHIVES = (
    Archive("pg_net", "pg_net-0.20.5.tar.gz",
            "aff602df0c70c3ed00b604c97b56eede944851530b037b6268127821a3765008"),
    Archive("supabase_vault", "supabase_vault-0.3.1.tar.gz",
            "a6f161f9e5a2e6a2e83236cf7c4b1aeb9193d82e35c755755d7e39b247c817f0"),
)
PRELOAD = tuple(a.extension for a in ARCHIVES)
GETKEY = "vault_getkey"  # the getkey script, in the engine's root folder (owned by the server user)
IDLE_DATABASE = "pydeploy_pg_net_idle"  # where a paused pg_net worker waits: no net schema there


def source_dir() -> Path | None:
    """The archive folder named by $PYDEPLOY_EXTENSIONS_SRC, or None when it is not set."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    path = Path(value).resolve()
    if not path.is_dir():
        raise EngineError(f"${ENV} names {path}, which is not a folder",
                          f"point it at the folder holding {', '.join(a.file for a in ARCHIVES)}, or unset it "
                          "to use the pg_net stand-in")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _pg_config(bindir: Path) -> Path:
    for candidate in (bindir / "pg_config", Path(f"/usr/lib/postgresql/{bindir.parent.name}/bin/pg_config")):
        if candidate.exists():
            return candidate
    found = shutil.which("pg_config")
    if found:
        return Path(found)
    raise EngineError("pg_config was not found (needed to build pg_net and Vault)", BUILD_HINT)


def _pg_config_value(pg_config: Path, flag: str) -> str:
    return subprocess.run([str(pg_config), flag], capture_output=True, text=True, check=True).stdout.strip()


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One build at a time on this machine (parallel test sessions, other worktrees)."""
    with open(Path(tempfile.gettempdir()) / "pydeploy-extensions.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stamp(sharedir: Path, archive: Archive) -> Path:
    return sharedir / "extension" / f".pydeploy-{archive.extension}.sha256"


def ensure_installed(src: Path, bindir: Path, say: object = None) -> dict[str, str]:
    """Build and install each archive unless this server already has it; {extension: archive}."""
    pg_config = _pg_config(bindir)
    sharedir = Path(_pg_config_value(pg_config, "--sharedir"))
    pkglibdir = Path(_pg_config_value(pg_config, "--pkglibdir"))
    server = _pg_config_value(pg_config, "--version")
    if not Path(_pg_config_value(pg_config, "--pgxs")).exists():
        raise EngineError(f"PGXS ({server}) is not installed, so pg_net and Vault cannot be built", BUILD_HINT)
    done: dict[str, str] = {}
    with _lock():
        for archive in ARCHIVES:
            path = src / archive.file
            if not path.is_file():
                raise EngineError(f"{archive.file} is missing from ${ENV} ({src})",
                                  f"put the archive there, or unset {ENV} to use the pg_net stand-in")
            digest = _sha256(path)
            if digest != archive.sha256:
                raise EngineError(f"{path} has sha256 {digest}, not {archive.sha256} (third_party/README.md)",
                                  "use the unchanged archive from the shared folder")
            stamp = _stamp(sharedir, archive)
            want = f"{archive.sha256} {server}\n"
            installed = (pkglibdir / f"{archive.extension}.so").exists() and (
                sharedir / "extension" / f"{archive.extension}.control").exists()
            if installed and stamp.exists() and stamp.read_text() == want:
                done[archive.extension] = archive.file
                continue
            if callable(say):
                say(f"building {archive.file} with PGXS against {server}")
            _build_and_install(path, pg_config)
            stamp.write_text(want)
            done[archive.extension] = archive.file
    return done


def _build_and_install(archive: Path, pg_config: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pydeploy-build-") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        roots = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(roots) != 1:
            raise EngineError(f"{archive.name} does not hold one top folder")
        for target in ([], ["install"]):
            proc = subprocess.run(["make", f"PG_CONFIG={pg_config}", *target], cwd=roots[0],
                                  capture_output=True, text=True, check=False, timeout=600)
            if proc.returncode != 0:
                out = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
                hint = BUILD_HINT if not target else "make install writes into the server's folders: run as root"
                raise EngineError(f"make {' '.join(target)} failed for {archive.name}:\n" + "\n".join(out), hint)


# -- the engine's settings (hook: engines.local_cluster.LocalCluster.settings) ---------------------
def server_settings(root: Path, uid: int | None, gid: int | None) -> dict[str, str]:
    """postgresql.conf settings for an engine that loads the real extensions; {} without them.

    Writes the engine's getkey script into `root` (mode 0500, owned by the server user) with a
    root key made once per engine."""
    if source_dir() is None:
        return {}
    script = root / GETKEY
    if not script.exists():
        key = secrets.token_hex(32)
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o500)
        with os.fdopen(fd, "w") as f:
            f.write(f"#!/bin/sh\n# Supabase Vault root key of this pydeploy engine\necho {key}\n")
        if uid is not None and gid is not None:
            os.chown(script, uid, gid)
    return {
        "shared_preload_libraries": "'" + ",".join(("pg_cron", "pg_stat_statements", *PRELOAD)) + "'",
        "vault.getkey_script": f"'{script}'",
        "pg_net.database_name": "'postgres'",
    }


# -- the database (hook: engines.prepare.prepare) --------------------------------------------------
def preloaded(conn: psycopg.Connection) -> set[str]:
    row = conn.execute("select current_setting('shared_preload_libraries')").fetchone()
    return {p.strip() for p in str(row[0] if row else "").split(",") if p.strip()}


def prepare_sql(conn: psycopg.Connection) -> bool:
    """Create Vault where the server loads it (Supabase has it in every project); whether the
    real pg_net is loaded (else the stand-in is needed)."""
    libs = preloaded(conn)
    if "supabase_vault" in libs:
        conn.execute("create extension if not exists supabase_vault")
    return "pg_net" in libs


# -- pg_net's one worker ---------------------------------------------------------------------------
def _admin(url: str) -> str:
    return dsnmod.with_database(url, "postgres")


def worker_database(url: str) -> str | None:
    """The database pg_net's worker is connected to now (None: no worker running)."""
    with psycopg.connect(_admin(url), autocommit=True) as c:
        row = c.execute("select datname from pg_stat_activity where backend_type like 'pg_net%'").fetchone()
    return str(row[0]) if row and row[0] else None


def serve_database(url: str, dbname: str | None = None, timeout: float = 30) -> None:
    """Point pg_net's worker at `dbname` (default: the database of `url`) and wait until it runs there."""
    target = dbname or str(conninfo_to_dict(url).get("dbname") or "postgres")
    with psycopg.connect(_admin(url), autocommit=True) as c:
        if target == IDLE_DATABASE and not c.execute(
                "select 1 from pg_database where datname = %s", (target,)).fetchone():
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                c.execute(f'create database "{IDLE_DATABASE}"')
        c.execute(psycopg.sql.SQL("alter system set pg_net.database_name = {}").format(psycopg.sql.Literal(target)))
        c.execute("select pg_reload_conf()")
    deadline = time.monotonic() + timeout
    restarted = 0.0
    while time.monotonic() < deadline:
        if worker_database(url) == target:
            return
        if time.monotonic() - restarted > 5:
            time.sleep(0.2)  # the postmaster reloads its configuration asynchronously
            with psycopg.connect(_admin(url), autocommit=True) as c:
                # SIGTERM: the worker exits and the postmaster starts it again within 1 s
                c.execute("select pg_terminate_backend(pid) from pg_stat_activity where backend_type like 'pg_net%'")
            restarted = time.monotonic()
        time.sleep(0.1)
    raise EngineError(f"pg_net's worker did not move to database {target} within {timeout:.0f} s",
                      "see the server log (postgres.log in the engine's folder)")
