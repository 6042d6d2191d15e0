"""The benchmark's databases, created and dropped next to the admin database."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pydeploy import dsn, sql_split
from pydeploy.bench import data as bench_data
from pydeploy.bench.measure import connect
from pydeploy.errors import PydeployError
from pydeploy.paths import migrations_dir

PLAIN = "bench_plain"


MONITORED = "bench_monitored"


EMPTY = "bench_migrate"


APP_TABLES_SCHEMA = "00_app_tables.sql"  # supabase/schemas/: the app tables alone


class Cluster:
    """Creates and drops the benchmark databases next to the admin database."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def url(self, name: str) -> str:
        return dsn.with_database(self.admin_url, name)

    def oid(self, name: str) -> int:
        with connect(self.admin_url) as c:
            row = c.execute("select oid::bigint from pg_database where datname = %s", (name,)).fetchone()
        if not row:
            raise PydeployError(f"database {name} does not exist", "run pydeploy bench again with --fresh")
        return int(row[0])

    def exists(self, name: str) -> bool:
        with connect(self.admin_url) as c:
            return c.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is not None

    def comment(self, name: str) -> str | None:
        with connect(self.admin_url) as c:
            row = c.execute("select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                            (name,)).fetchone()
            return row[0] if row else None

    def drop(self, name: str) -> None:
        with connect(self.admin_url) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    def create(self, name: str, template: str | None = None) -> None:
        self.drop(name)
        with connect(self.admin_url) as c:
            try:
                if template:
                    c.execute(sql.SQL("create database {} template {} strategy file_copy").format(
                        sql.Identifier(name), sql.Identifier(template)))
                else:
                    c.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise PydeployError(f"cannot create database {name}: {exc.diag.message_primary}",
                                    "pydeploy bench needs a role that may create databases; "
                                    "use the local engine (`pydeploy up`)") from exc

    def set_comment(self, name: str, text: str) -> None:
        with connect(self.admin_url) as c:
            c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(text)))


# the rollup tables a full refresh fills (supabase/schemas/10_rollups.sql)
ROLLUP_TABLES = (
    "monitoring.notification_minutes", "monitoring.latency_minutes", "monitoring.error_minutes",
    "monitoring.notification_hours", "monitoring.latency_hours", "monitoring.error_hours", "monitoring.error_days",
)


def create_app_tables(url: str) -> None:
    """The app's own tables as the schema defines them, minus every index that is not a key."""
    path = migrations_dir().parent / "schemas" / APP_TABLES_SCHEMA
    if not path.exists():
        raise PydeployError(f"{path} is missing", "run pydeploy bench from the project folder")
    with connect(url) as c:
        for stmt in sql_split.split_and_trim(path.read_text(encoding="utf-8")):
            c.execute(stmt.encode())
        for table in bench_data.APP_TABLES:
            for (name,) in c.execute(
                """select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid
                   where i.indrelid = %s::regclass
                     and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)""",
                (table,),
            ).fetchall():
                c.execute(sql.SQL("drop index public.{}").format(sql.Identifier(name)))


def index_names(url: str) -> dict[str, list[str]]:
    with connect(url) as c:
        return {t: [r[0] for r in c.execute(
            "select indexrelid::regclass::text from pg_index where indrelid = %s::regclass order by 1", (t,)
        ).fetchall()] for t in bench_data.APP_TABLES}
