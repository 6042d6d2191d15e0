"""A/B inside one benchmark run: the same data migrated with another revision's migrations.

`pydeploy bench --ab REV` copies the generated app data into a third database, applies the
migrations as they were at git revision REV, and then times every view, health() and the cron
cycle on both databases in alternation (A, B, A, B, ...), so the machine's drift hits both sides
alike. The report gets one row per query and side, and a ratio row (this code / REV).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from pydeploy import migrations
from pydeploy.errors import PydeployError


def git_files(project: Path, rev: str, folder: str) -> dict[str, bytes]:
    """The files of `folder` at revision `rev` (name -> bytes), read with git."""
    listing = subprocess.run(["git", "-C", str(project), "ls-tree", "--name-only", f"{rev}:{folder}"],
                             capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise PydeployError(f"--ab {rev}: git cannot list {folder} at that revision: {listing.stderr.strip()}",
                            "give a commit, tag or branch of this repository (git log --oneline)")
    out: dict[str, bytes] = {}
    for name in listing.stdout.split():
        if name.endswith(".sql"):
            show = subprocess.run(["git", "-C", str(project), "show", f"{rev}:{folder}/{name}"],
                                  capture_output=True, check=True)
            out[name] = show.stdout
    if not out:
        raise PydeployError(f"--ab {rev}: no migrations in {folder} at that revision",
                            "pick a revision that has supabase/migrations/*.sql")
    return out


@contextmanager
def migrations_at(project: Path, rev: str) -> Iterator[Path]:
    """A temporary folder holding supabase/migrations as of `rev`."""
    with tempfile.TemporaryDirectory(prefix="pydeploy-ab-") as tmp:
        folder = Path(tmp)
        for name, data in git_files(project, rev, "supabase/migrations").items():
            (folder / name).write_bytes(data)
        yield folder


def migrate_to(conn: psycopg.Connection, project: Path, rev: str) -> int:
    """Apply the migrations of `rev` to `conn`'s database; return how many files."""
    with migrations_at(project, rev) as folder:
        return len(migrations.migrate(conn, folder))


def alternate(conns: dict[str, psycopg.Connection], query: str | sql.Composable, n: int,
              timed: Callable[[psycopg.Connection, str | sql.Composable], float]) -> dict[str, list[float]]:
    """Time `query` n times on each connection, alternating sides (and who goes first)."""
    out: dict[str, list[float]] = {k: [] for k in conns}
    names = list(conns)
    for name in names:  # one warm-up each
        timed(conns[name], query)
    for i in range(n):
        order = names if i % 2 == 0 else list(reversed(names))
        for name in order:
            out[name].append(timed(conns[name], query))
    return out
