"""Databases for tests: a migrated one per module, and a connection whose work is rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from pydeploy import engines, migrations
from pydeploy.dsn import with_database
from pydeploy.engines import LocalState

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def migrated_database(engine_state: LocalState, prefix: str) -> Iterator[str]:
    """A database of its own in the session cluster, prepared like Supabase, every migration
    applied; dropped afterwards. For module-scoped fixtures (scratch_db is per test)."""
    admin = engine_state.db_url
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'create database "{name}"')
    try:
        url = with_database(admin, name)
        engines.prepare(url)
        with psycopg.connect(url, autocommit=True) as c:
            migrations.migrate(c, ROOT / "supabase" / "migrations")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def rolled_back(url: str, *settings: str) -> Iterator[psycopg.Connection]:
    """A connection to `url` in a transaction that is rolled back at the end; `settings` run first."""
    c = psycopg.connect(url, autocommit=False)
    try:
        for statement in settings:
            c.execute(statement)  # type: ignore[arg-type]
        yield c
    finally:
        c.rollback()
        c.close()
