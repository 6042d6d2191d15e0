"""Serve the Edge Functions locally with Deno, as Supabase's Edge Runtime serves them.

`supabase/functions/_dev/serve.ts` routes `/functions/v1/<name>` to each function on one port, so
`{SUPABASE_URL}/functions/v1/health` (what supabase-py's `functions.invoke("health")` calls)
works against `http://127.0.0.1:PORT`. Used by `pydeploy functions serve` and by the tests.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydeploy import dsn as dsnmod
from pydeploy.errors import ConfigError, PydeployError
from pydeploy.paths import project_dir
from pydeploy.ports import free_port

FUNCTIONS = ("health", "check-error-rate", "monitoring-dashboard", "ingest")
ROUTER = Path("_dev") / "serve.ts"
# What the functions may do: reach the database and callers, read their settings and files.
DENO_FLAGS = ("--allow-net", "--allow-env", "--allow-read", "--no-prompt")


class FunctionsServerError(PydeployError):
    """The Deno process could not be started or did not answer."""


def functions_dir(project: Path | None = None) -> Path:
    return (project or project_dir()) / "supabase" / "functions"


def deno_binary(project: Path | None = None) -> Path:
    """The pinned Deno from package.json: the real binary, not the npm wrapper (one process)."""
    root = project or project_dir()
    for candidate in (root / "node_modules" / "deno" / "deno", root / "node_modules" / ".bin" / "deno"):
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        f"Deno is not installed in {root / 'node_modules'}",
        "run `make bootstrap` (npm ci installs the pinned deno@2.9.6)",
    )


def dev_service_key() -> str:
    """A random key for local use only (never a real project's key)."""
    return "dev-service-role-" + secrets.token_urlsafe(24)


def deno_command(project: Path | None = None) -> list[str]:
    return [str(deno_binary(project)), "run", *DENO_FLAGS, "--config", "deno.json", str(ROUTER)]


@dataclass
class FunctionsServer:
    """A running dev router: its base URL (SUPABASE_URL), the key it accepts, the process."""

    url: str
    service_key: str
    db_url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def function_url(self, name: str) -> str:
        return f"{self.url}/functions/v1/{name}"

    def log(self) -> str:
        """What the functions logged so far (their structured JSON lines)."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def alive(self) -> bool:
        return self.process.poll() is None


def build_env(db_url: str, url: str, port: int, host: str, service_key: str,
              extra: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({
        "SUPABASE_DB_URL": db_url,
        "SUPABASE_URL": url,
        "SUPABASE_SERVICE_ROLE_KEY": service_key,
        "PORT": str(port),
        "HOST": host,
        "NO_COLOR": "1",
    })
    env.update(extra or {})
    return env


def _answers(url: str) -> bool:
    """Whether the router answers HTTP at all (its 404 for an unknown path is an answer)."""
    try:
        with urllib.request.urlopen(url + "/functions/v1/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def start(db_url: str, *, port: int | None = None, host: str = "127.0.0.1", service_key: str | None = None,
          env: dict[str, str] | None = None, log_path: Path | None = None, project: Path | None = None,
          timeout: float = 120, output: int | None = None) -> FunctionsServer:
    """Start the dev router with SUPABASE_DB_URL=db_url; return once it answers HTTP.

    The first start may download the npm packages the functions import (postgres) into Deno's
    cache, hence the generous timeout. The functions' log lines go to `log_path`, else to the
    file descriptor `output` (e.g. 2 for our stderr), else nowhere.
    """
    # the URL is only handed to the functions; validate it so a typo fails here, clearly
    db_url = dsnmod.validate(db_url, "--db-url") if db_url else db_url
    folder = functions_dir(project)
    if not (folder / ROUTER).exists():
        raise ConfigError(f"{folder / ROUTER} does not exist", "run from the project folder (with supabase/)")
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    key = service_key or dev_service_key()
    full_env = build_env(db_url, url, port, host, key, env)
    log_file = None
    out: int | IO[bytes]
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        out = log_file
    elif output is not None:
        out = output
    else:
        out = subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            deno_command(project), cwd=folder, env=full_env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=out,
            start_new_session=True,  # its own process group: stop() ends exactly what we started
        )
    finally:
        if log_file:
            log_file.close()
    server = FunctionsServer(url=url, service_key=key, db_url=db_url, process=proc, log_path=log_path,
                             env=full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = server.log()[-2000:]
            raise FunctionsServerError(
                f"deno exited with status {proc.returncode} before serving on {url}"
                + (f":\n{tail}" if tail else ""),
                f"is port {port} free? try `--port` with another one; check `deno check` in {folder}",
            )
        if _answers(url):
            return server
        time.sleep(0.1)
    stop(server)
    raise FunctionsServerError(f"the functions did not answer on {url} within {timeout:.0f} s",
                               "the first start downloads npm:postgres; is the npm registry reachable?")


def stop(server: FunctionsServer, timeout: float = 10) -> None:
    """Stop the router (SIGTERM, then SIGKILL) and whatever it started, nothing else."""
    proc = server.process
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


@contextlib.contextmanager
def serving(db_url: str, **kwargs: object) -> Iterator[FunctionsServer]:
    """`with serving(url) as s:` a running router, stopped on exit."""
    server = start(db_url, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop(server)
