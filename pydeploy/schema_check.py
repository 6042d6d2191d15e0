"""Prove that the two homes of the schema agree: `supabase/schemas/` (what readers read, one
definition per object, by domain) and `supabase/migrations/` (what deployments run).

Both are built into throw-away databases of the same cluster, prepared like Supabase, and their
catalogs compared: a schema-only `pg_dump` of `monitoring` and `public` (tables, columns,
constraints, indexes, function bodies, views, triggers, comments, grants) plus the rows the
schema seeds into `monitoring` (rules, jobs, settings), leaving out columns that default to
now(). Any difference means someone edited one without the other.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pydeploy import migrations, sql_split
from pydeploy.engines.local_cluster import find_bindir
from pydeploy.engines.prepare import prepare
from pydeploy.errors import MigrationError, PydeployError
from pydeploy.paths import project_dir

DUMPED_SCHEMAS = ("monitoring", "public")


@dataclass(frozen=True)
class Comparison:
    """The outcome of building both homes of the schema."""

    schema_files: list[str]
    migration_files: list[str]
    diff: list[str]

    @property
    def same(self) -> bool:
        return not self.diff

    def as_json(self) -> str:
        return json.dumps({"same": self.same, "schema_files": self.schema_files,
                           "migration_files": self.migration_files, "diff": self.diff})


def schemas_dir(project: Path | None = None) -> Path:
    return (project or project_dir()) / "supabase" / "schemas"


def schema_files(folder: Path) -> list[Path]:
    """The schema files in the order they are applied (their names sort by domain number)."""
    files = sorted(folder.glob("*.sql"))
    if not files:
        raise PydeployError(f"no schema files in {folder}", "run from the project folder (it holds supabase/schemas)")
    return files


def apply_schema(conn: psycopg.Connection, files: list[Path]) -> None:
    """Apply each schema file in its own transaction, statement by statement, with the same
    error report as a migration (file, statement, caret under the error position)."""
    for path in files:
        statements = sql_split.split_and_trim(path.read_text(encoding="utf-8"))
        with conn.transaction(), conn.cursor() as cur:
            migrations.run_statements(cur, f"schema file {path.name}", statements)


def catalog(dsn: str) -> list[str]:
    """What is compared: the schema-only dump of our schemas and the seeded rows, as lines."""
    dump = subprocess.run(
        [str(find_bindir() / "pg_dump"), "--schema-only", "--no-owner",
         *[f"--schema={s}" for s in DUMPED_SCHEMAS], "--dbname", dsn],
        capture_output=True, text=True, check=False,
    )
    if dump.returncode != 0:
        raise PydeployError(f"pg_dump failed: {dump.stderr.strip()}",
                            "install postgresql-client-15 (make bootstrap does) or set $PG_BINDIR")
    lines = [ln for ln in dump.stdout.splitlines()
             if ln.strip() and not ln.startswith("--") and not ln.startswith(("\\restrict", "\\unrestrict"))]
    return lines + _seeded_rows(dsn)


def _seeded_rows(dsn: str) -> list[str]:
    """Rows of every table in monitoring, without the columns that default to now()."""
    out: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            """select c.relname,
                      coalesce(array_agg(a.attname::text) filter (
                        where pg_get_expr(d.adbin, d.adrelid) ~ 'now\\(\\)'), '{}')
               from pg_class as c
               left join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
               left join pg_attrdef as d on d.adrelid = c.oid and d.adnum = a.attnum
               where c.relnamespace = 'monitoring'::regnamespace and c.relkind in ('r', 'p')
               group by c.relname order by c.relname"""
        ).fetchall()
        for name, volatile in tables:
            rows = conn.execute(
                sql.SQL("select (to_jsonb(t) - %s::text[])::text as r from monitoring.{} as t order by 1")
                .format(sql.Identifier(name)), (list(volatile),)
            ).fetchall()
            out += [f"row monitoring.{name}: {r}" for (r,) in rows]
    return out


@contextmanager
def scratch_database(admin_dsn: str, prefix: str) -> Iterator[str]:
    """A new database in the admin DSN's cluster, prepared like Supabase; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(admin_dsn, dbname=name)
        prepare(dsn)
        yield dsn
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def compare(admin_dsn: str, project: Path | None = None) -> Comparison:
    """Build the migrations and the schema files into two scratch databases and diff them."""
    root = project or project_dir()
    mig_folder = root / "supabase" / "migrations"
    files = schema_files(schemas_dir(root))
    with scratch_database(admin_dsn, "from_migrations") as a, scratch_database(admin_dsn, "from_schemas") as b:
        with psycopg.connect(a, autocommit=True) as conn:
            migrations.migrate(conn, mig_folder)
        with psycopg.connect(b, autocommit=True) as conn:
            try:
                apply_schema(conn, files)
            except MigrationError as exc:
                raise MigrationError(exc.message, exc.hint or "fix the schema file named above") from exc
        diff = list(difflib.unified_diff(catalog(a), catalog(b), "built from supabase/migrations",
                                         "built from supabase/schemas", lineterm="", n=2))
    return Comparison([p.name for p in files], [m.path.name for m in migrations.discover(mig_folder)], diff)
