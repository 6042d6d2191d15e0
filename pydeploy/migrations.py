"""Apply supabase/migrations/*.sql exactly as `supabase db push` does, and report their status.

The ledger is the CLI's own table, `supabase_migrations.schema_migrations (version, statements,
name)`, created with the CLI's statements, so either tool sees what the other applied. Each file
runs statement by statement in one transaction, under a session advisory lock so that two
concurrent runs never apply a file twice (the second waits, then finds nothing to do).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pydeploy import sql_split
from pydeploy.errors import MigrationError

FILE_PATTERN = re.compile(r"^([0-9]+)_(.*)\.sql$")
LOCK_KEY = "pydeploy:migrate"

# The CLI's own statements (supabase/cli pkg/migration/history.go), verbatim.
CREATE_LEDGER = (
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
INSERT_VERSION = (
    "INSERT INTO supabase_migrations.schema_migrations(version, name, statements) VALUES(%s, %s, %s)"
)


@dataclass(frozen=True)
class MigrationFile:
    version: str
    name: str
    path: Path

    @property
    def statements(self) -> list[str]:
        return sql_split.split_and_trim(self.path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Status:
    applied: list[str]
    pending: list[MigrationFile]
    drifted: list[MigrationFile]
    remote_only: list[str]

    @property
    def clean(self) -> bool:
        return not (self.pending or self.drifted or self.remote_only)


def discover(folder: Path) -> list[MigrationFile]:
    """Migration files in version order; files not named VERSION_name.sql are skipped, as by the CLI."""
    files = []
    for path in folder.glob("*.sql"):
        m = FILE_PATTERN.match(path.name)
        if m:
            files.append(MigrationFile(m.group(1), m.group(2), path))
    return sorted(files, key=lambda f: f.version)


def _fingerprint(statements: list[str]) -> str:
    """What drift compares: the statements' text with all white space and semicolons removed."""
    return re.sub(r"[\s;]+", "", "".join(statements))


def ensure_ledger(conn: psycopg.Connection) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = '4s'")
        for stmt in CREATE_LEDGER:
            cur.execute(stmt)


def read_ledger(conn: psycopg.Connection) -> dict[str, list[str]]:
    with conn.cursor() as cur:
        cur.execute("select to_regclass('supabase_migrations.schema_migrations') is not null")
        row = cur.fetchone()
        if not row or not row[0]:
            return {}
        cur.execute("select version, coalesce(statements, '{}') from supabase_migrations.schema_migrations")
        return {v: list(s) for v, s in cur.fetchall()}


def status(conn: psycopg.Connection, folder: Path) -> Status:
    files = discover(folder)
    ledger = read_ledger(conn)
    local = {f.version for f in files}
    applied = [f.version for f in files if f.version in ledger]
    pending = [f for f in files if f.version not in ledger]
    drifted = [f for f in files if f.version in ledger and ledger[f.version]
               and _fingerprint(ledger[f.version]) != _fingerprint(f.statements)]
    remote_only = sorted(v for v in ledger if v not in local)
    return Status(applied, pending, drifted, remote_only)


def _mark(statement: str, position: int | None) -> str:
    """The statement with a caret under the error position (1-based, as Postgres reports it)."""
    if not position:
        return statement
    lines = statement.split("\n")
    pos = position
    for i, line in enumerate(lines):
        if pos > len(line) + 1:
            pos -= len(line) + 1
            continue
        return "\n".join([*lines[: i + 1], " " * (pos - 1) + "^"])
    return statement


def run_statements(cur: psycopg.Cursor[Any], label: str, statements: list[str]) -> None:
    """Run statements in order; the first failure raises a MigrationError naming `label`, the
    statement (with a caret under the error position) and Postgres' message and hint."""
    for i, stmt in enumerate(statements):
        try:
            cur.execute(stmt.encode())
        except psycopg.Error as exc:
            diag = exc.diag
            pos = int(diag.statement_position) if diag.statement_position else None
            parts = [f"{label} failed at statement {i + 1} of {len(statements)}:",
                     f"  {diag.message_primary or str(exc).strip()}"]
            if diag.message_detail:
                parts.append(f"  detail: {diag.message_detail}")
            parts.append("  statement:")
            parts += ["    " + ln for ln in _mark(stmt, pos).splitlines()]
            parts.append("nothing of this file was applied (rolled back)")
            raise MigrationError("\n".join(parts), diag.message_hint) from exc


def apply_file(conn: psycopg.Connection, mf: MigrationFile) -> int:
    """Apply one file and its ledger row in one transaction; return the number of statements."""
    statements = mf.statements
    with conn.cursor() as cur, conn.transaction():
        run_statements(cur, f"migration {mf.path.name}", statements)
        cur.execute(INSERT_VERSION, (mf.version, mf.name, statements))
    return len(statements)


def _lock(conn: psycopg.Connection, wait_notice: Callable[[str], None], timeout: float) -> None:
    start = time.monotonic()
    told = False
    delay = 0.1
    with conn.cursor() as cur:
        while True:
            cur.execute("select pg_try_advisory_lock(hashtext(%s))", (LOCK_KEY,))
            row = cur.fetchone()
            if row and row[0]:
                return
            waited = time.monotonic() - start
            if waited > timeout:
                raise MigrationError(f"another migration run still holds the lock after {timeout:.0f} s",
                                     "wait for it to finish, or find it in pg_stat_activity")
            if not told or int(waited) % 10 == 0:
                wait_notice(f"blocked by another migration run, waiting ({waited:.0f} s)")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def migrate(conn: psycopg.Connection, folder: Path, *,
            on_applied: Callable[[MigrationFile, int, float], None] = lambda *_: None,
            wait_notice: Callable[[str], None] = lambda _: None,
            lock_timeout: float = 600) -> list[MigrationFile]:
    """Apply every pending file in version order; return the files applied."""
    if not conn.autocommit:
        raise ValueError("migrate needs an autocommit connection")
    _lock(conn, wait_notice, lock_timeout)
    try:
        ensure_ledger(conn)
        st = status(conn, folder)
        if st.remote_only:
            raise MigrationError(
                "the database has migrations that are not in "
                f"{folder}: {', '.join(st.remote_only)}",
                "pull them into the folder (supabase db pull / migration fetch) or repair the history",
            )
        done = []
        for mf in st.pending:
            t0 = time.monotonic()
            n = apply_file(conn, mf)
            on_applied(mf, n, time.monotonic() - t0)
            done.append(mf)
        return done
    finally:
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_unlock(hashtext(%s))", (LOCK_KEY,))
