"""The container engine: Supabase's own Postgres image (real pg_net, pg_cron, Vault).

Runs through testcontainers (`pip install 'pydeploy[container]'`). It is written to work but is
not exercised on machines without a Docker engine, such as this project's CI: there the local
engine runs instead (see engine_select.choose).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from pydeploy.errors import EngineError

IMAGE = "supabase/postgres:15.8.1.085"
PASSWORD = "postgres"


@dataclass
class ContainerEngine:
    image: str = IMAGE

    def start(self) -> tuple[str, str]:
        """Start the container and leave it running; return (db_url, container id)."""
        # `pydeploy up` returns while the database keeps running: no reaper may remove it.
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        try:
            from testcontainers.postgres import PostgresContainer
        except ImportError as exc:
            raise EngineError("the container engine needs testcontainers",
                              "pip install 'pydeploy[container]'") from exc
        container = PostgresContainer(self.image, username="postgres", password=PASSWORD,
                                      dbname="postgres", driver=None)
        # Supabase's image runs its own init scripts; pg_cron and pg_net are preloaded there.
        container.with_command(
            "postgres -c config_file=/etc/postgresql/postgresql.conf -c cron.database_name=postgres"
        )
        container.start()
        return container.get_connection_url(), container.get_wrapped_container().id

    @staticmethod
    def stop(container_id: str) -> None:
        proc = subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, text=True,
                              check=False, timeout=60)
        if proc.returncode != 0 and "No such container" not in proc.stderr:
            raise EngineError(f"could not remove container {container_id}: {proc.stderr.strip()}")
