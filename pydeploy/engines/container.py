"""The container engine: Supabase's own Postgres image (real pg_net, pg_cron, Vault).

Runs through testcontainers (`pip install 'pydeploy[container]'`). It is written to work but is
not exercised on machines without a Docker engine, such as this project's CI: there the local
engine runs instead (see pydeploy.engines.choice.choose).
"""

from __future__ import annotations

import contextlib
import os
import subprocess

from pydeploy import dsn as dsnmod
from pydeploy.engines.base import Engine, Say
from pydeploy.engines.prepare import wait_ready
from pydeploy.engines.state import ContainerState, now_utc
from pydeploy.errors import EngineError

IMAGE = "supabase/postgres:15.8.1.085"
PASSWORD = "postgres"


def start_container(image: str = IMAGE) -> tuple[str, str]:
    """Start the container and leave it running; return (db_url, container id)."""
    # `pydeploy up` returns while the database keeps running: no reaper may remove it.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError as exc:
        raise EngineError("the container engine needs testcontainers",
                          "pip install 'pydeploy[container]'") from exc
    container = PostgresContainer(image, username="postgres", password=PASSWORD,
                                  dbname="postgres", driver=None)
    # Supabase's image runs its own init scripts; pg_cron and pg_net are preloaded there.
    container.with_command(
        "postgres -c config_file=/etc/postgresql/postgresql.conf -c cron.database_name=postgres"
    )
    container.start()
    return container.get_connection_url(), container.get_wrapped_container().id


def remove_container(container_id: str) -> None:
    proc = subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, text=True,
                          check=False, timeout=60)
    if proc.returncode != 0 and "No such container" not in proc.stderr:
        raise EngineError(f"could not remove container {container_id}: {proc.stderr.strip()}")


class ContainerEngine(Engine[ContainerState]):
    kind = "container"
    state_type = ContainerState
    standin = False  # the image has the real pg_net

    def resume(self, previous: ContainerState, say: Say) -> ContainerState | None:
        """The running container when it still answers; None (choose again) otherwise."""
        if not previous.running:
            return None
        with contextlib.suppress(EngineError):
            wait_ready(previous.db_url, timeout=5)
            say(f"reusing the running container engine at {dsnmod.redact(previous.db_url)}")
            return previous
        return None

    def up(self, previous: ContainerState | None, say: Say) -> ContainerState:
        url, cid = start_container()
        wait_ready(url, timeout=120)
        self.prepare(url)
        return ContainerState(db_url=url, running=True, container_id=cid, started_at=now_utc())

    def down(self, state: ContainerState, *, purge: bool, say: Say) -> None:
        remove_container(state.container_id)
        say("stopped the container engine")
