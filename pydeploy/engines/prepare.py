"""Make a fresh database look like Supabase for our code, and wait until a server answers.

`prepare` is the hook for anything an engine installs into each database before the migrations
run (roles, schemas, extensions, Vault where the server loads it; pg_net's contract where the real
pg_net is absent).
"""

from __future__ import annotations

import time

import psycopg

from pydeploy import dsn as dsnmod
from pydeploy import extensions_build
from pydeploy.errors import EngineError
from pydeploy.paths import SQL_DIR

SUPABASE_LIKE = "supabase_like.sql"
PG_NET_STANDIN = "pg_net_standin.sql"


def prepare(url: str, *, standin: bool | None = None) -> None:
    """Make the database look like Supabase for our code: roles, schemas, Vault where the server
    loads it, and pg_net's contract: the stand-in's unless the server loads the real pg_net
    (standin None: decided by the server's shared_preload_libraries)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('pydeploy:prepare'))")
        conn.execute((SQL_DIR / SUPABASE_LIKE).read_text())
        real_pg_net = extensions_build.prepare_sql(conn)
        if (not real_pg_net) if standin is None else standin:
            conn.execute((SQL_DIR / PG_NET_STANDIN).read_text())


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
