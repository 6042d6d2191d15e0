"""Helpers for the tests that drive the alerting pipeline (rule → outbox → pg_net stand-in → HTTP).

The tests drive the jobs' functions directly with short retry settings (FAST), so they take
seconds instead of the minutes pg_cron's one-minute granularity would need.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from pydeploy import extensions_build, migrations
from pydeploy.net_worker import Worker
from pydeploy.receiver import Received

ROOT = Path(__file__).resolve().parent.parent
SECRET = "e2e-signing-key-0123456789"
# backoff 1 s, 4 attempts, 1 s HTTP timeout, 1 s response grace; a group may send again at once
# (group_interval 0: the tests evaluate seconds apart, not minutes)
FAST = ("update monitoring.settings set backoff_base = '1 second', backoff_cap = '1 second', "
        "max_attempts = 4, http_timeout_ms = 1000, response_grace = '1 second', group_interval = '0'")


def q(url: str, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement in its own autocommit connection; its rows, if any."""
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else []


def prepare(url: str, fast: bool = True) -> None:
    """Apply every migration to `url`, then (fast) the short retry settings."""
    with psycopg.connect(url, autocommit=True) as c:
        migrations.migrate(c, ROOT / "supabase" / "migrations")
        if fast:
            c.execute(FAST)


def real_pg_net(url: str) -> bool:
    """Whether the cluster of `url` loads the real pg_net (built from $PYDEPLOY_EXTENSIONS_SRC)."""
    with psycopg.connect(url, autocommit=True) as c:
        return "pg_net" in extensions_build.preloaded(c)


class NetWorker:
    """pg_net's worker for one database; stoppable and restartable.

    - With the real pg_net: the cluster's one background worker (it serves one database,
      pg_net.database_name) is pointed at this database while the block runs, parked in an empty
      database by stop(), and given back to the engine's `postgres` database at the end.
    - Otherwise: the stand-in worker, in a thread of this process.
    """

    def __init__(self, url: str, poll_interval: float = 0.05) -> None:
        self.url, self.poll_interval = url, poll_interval
        self.real = real_pg_net(url)
        self.worker: Worker | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> NetWorker:
        if self.real:
            extensions_build.serve_database(self.url)
            return self
        self.worker = Worker(self.url, poll_interval=self.poll_interval)
        self.thread = threading.Thread(target=self.worker.run, kwargs={"install_signals": False}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.real:
            extensions_build.serve_database(self.url, extensions_build.IDLE_DATABASE)
            return
        if self.worker is not None and self.thread is not None:
            self.worker.stop()
            self.thread.join(10)
            assert not self.thread.is_alive(), "the stand-in worker did not stop"
        self.worker = self.thread = None

    def __enter__(self) -> NetWorker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        if self.real:
            extensions_build.serve_database(self.url, "postgres")
        else:
            self.stop()


def signed_ok(r: Received, key: str = SECRET) -> bool:
    return r.signed_by(key)


def payloads(rec: Any) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in rec.requests]


def add_channel(url: str, rec_url: str, name: str = "ops") -> None:
    q(url, "select monitoring.set_channel(%s, 'webhook', %s, %s, 'info')", (name, rec_url, SECRET))


def breach_errors(url: str, n: int = 25) -> None:
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message) "
           "select 'timeout', 'e2e' from generate_series(1, %s)", (n,))


def clear_errors(url: str) -> None:
    q(url, "delete from public.whatsapp_error_logs")
    q(url, "select monitoring.refresh_rollups(p_full => true)")


def evaluate(url: str, rule: str = "high_error_rate") -> None:
    q(url, "select monitoring.evaluate_rules(now(), array[%s], false)", (rule,))


def pump(url: str, until: Callable[[], bool], timeout: float = 30, watch: Callable[[], None] | None = None) -> None:
    """What monitoring-dispatch does each minute (reconcile, then dispatch), every 0.2 s, until done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q(url, "select monitoring.reconcile_deliveries(now())")
        q(url, "select monitoring.dispatch_deliveries(now())")
        if watch is not None:
            watch()
        if until():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time: " + json.dumps(
        [list(map(str, r)) for r in q(url, "select id, channel, event, status, attempts, last_status_code, "
                                           "last_error from monitoring.deliveries order by id")]))


# -- the secret store: Vault where the server loads it (the real extension), else monitoring._secrets --
def _has_vault(c: psycopg.Connection) -> bool:
    row = c.execute("select to_regclass('vault.decrypted_secrets') is not null").fetchone()
    return bool(row and row[0])


def secret_store(c: psycopg.Connection) -> str:
    """What monitoring.set_secret() answers: 'vault' or 'monitoring._secrets'."""
    return "vault" if _has_vault(c) else "monitoring._secrets"


def read_secret_sql(c: psycopg.Connection) -> str:
    """A query for one secret's value by name (%s)."""
    return ("select decrypted_secret from vault.decrypted_secrets where name = %s" if _has_vault(c)
            else "select secret from monitoring._secrets where name = %s")


def secret_names_sql(c: psycopg.Connection) -> str:
    return "select name from vault.secrets" if _has_vault(c) else "select name from monitoring._secrets"


def delete_secrets_sql(c: psycopg.Connection) -> str:
    """Delete the secrets whose names are in the array %s."""
    return ("delete from vault.secrets where name = any(%s)" if _has_vault(c)
            else "delete from monitoring._secrets where name = any(%s)")
