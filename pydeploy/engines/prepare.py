"""Make a fresh database look like Supabase for our code, and wait until a server answers.

`prepare` is the hook for anything an engine installs into each database before the migrations
run (roles, schemas, extensions; pg_net's contract where the real pg_net is absent).
"""

from __future__ import annotations

import time

import psycopg

from pydeploy import dsn as dsnmod
from pydeploy.errors import EngineError
from pydeploy.paths import SQL_DIR

SUPABASE_LIKE = "supabase_like.sql"
PG_NET_STANDIN = "pg_net_standin.sql"


def prepare_files(*, standin: bool) -> list[str]:
    """The files of pydeploy/sql that `prepare` runs, in order."""
    return [SUPABASE_LIKE] + ([PG_NET_STANDIN] if standin else [])


def prepare(url: str, *, standin: bool) -> None:
    """Make the database look like Supabase for our code: roles, schemas, pg_net's contract."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('pydeploy:prepare'))")
        for name in prepare_files(standin=standin):
            conn.execute((SQL_DIR / name).read_text())


def wait_ready(url: str, timeout: float = 30) -> None:
    """Return once the database accepts connections; EngineError after `timeout` seconds."""
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
