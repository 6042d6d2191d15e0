"""Module-scoped databases for tests that share one migrated database across their tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from pydeploy import engine, migrations

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def migrated_database(engine_state: dict[str, object], prefix: str) -> Iterator[str]:
    """A database of its own in the session cluster, prepared like Supabase, every migration
    applied; dropped afterwards. For module-scoped fixtures (scratch_db is per test)."""
    admin = str(engine_state["db_url"])
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'create database "{name}"')
    try:
        url = admin.rsplit("/", 1)[0] + "/" + name
        engine.prepare(url)
        with psycopg.connect(url, autocommit=True) as c:
            migrations.migrate(c, ROOT / "supabase" / "migrations")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'drop database if exists "{name}" with (force)')
