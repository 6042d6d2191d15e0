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
from pydeploy.bench.cluster import MONITORED, PLAIN, ROLLUP_TABLES
from pydeploy.bench.context import Run
from pydeploy.bench.measure import connect, timed
from pydeploy.bench.reads import cron_jobs, run_cycle, run_minute
from pydeploy.bench.report import Row, summarize
from pydeploy.errors import PydeployError
from pydeploy.paths import project_dir


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


AB = "bench_ab"


def bench_ab(run: Run) -> None:
    """The A/B stage: this code's database against a copy of the same data at `--ab REV`."""
    ref = run.opts.ab_ref
    if not ref:
        return
    run.say(f"A/B: migrating a copy of the data with the migrations of {ref}")
    run.cluster.drop(AB)
    run.cluster.create(AB, template=PLAIN)
    with connect(run.cluster.url(AB)) as c:
        n = migrate_to(c, project_dir(), ref)
        c.execute("select monitoring.refresh_rollups(p_full => true)")
        for t in ("public.whatsapp_notifications", "public.whatsapp_error_logs", *ROLLUP_TABLES):
            # an older revision may lack a rollup table
            if c.execute("select to_regclass(%s) is not null", (t,)).fetchone()[0]:
                c.execute(f"vacuum (analyze) {t}")
    run.report.details["ab"] = {"ref": ref, "migrations": n}
    with connect(run.cluster.url(MONITORED)) as new, connect(run.cluster.url(AB)) as old:
        jobs = {"new": cron_jobs(new), "old": cron_jobs(old)}
        for side, conn in (("new", new), ("old", old)):
            # as pg_cron did a moment ago: a cycle on each, so both hold the alerts their rules raise
            # (this database ran the cron stage already; views like active_alerts cost per alert)
            run_cycle(conn, jobs[side])
        views = [r[0] for r in new.execute(
            "select table_name from information_schema.views where table_schema = 'monitoring' order by 1"
        ).fetchall()]
        old_views = {r[0] for r in old.execute(
            "select table_name from information_schema.views where table_schema = 'monitoring'").fetchall()}
        queries: list[tuple[str, str | sql.Composable]] = [
            (v, sql.SQL("select * from monitoring.{}").format(sql.Identifier(v))) for v in views if v in old_views
        ]
        queries.append(("health()", "select monitoring.health()"))
        for i, (name, q) in enumerate(queries):
            run.bar("A/B reads", i, len(queries) + 1)
            got = alternate({"new": new, "old": old}, q, run.opts.repeat, timed)
            _add(run, name, got, ref)
        cycles: dict[str, list[float]] = {"new": [], "old": []}
        for i in range(run.opts.repeat):
            for side in (("new", "old") if i % 2 == 0 else ("old", "new")):
                conn = new if side == "new" else old
                cycles[side].append(sum(run_cycle(conn, jobs[side]).values()))
        _add(run, f"full cron cycle ({len(jobs['new'])} jobs, retention apart)", cycles, ref)
        minute_jobs = {"new": cron_jobs(new, every_minute=True), "old": cron_jobs(old, every_minute=True)}
        minutes: dict[str, list[float]] = {"new": [], "old": []}
        for side, conn in (("new", new), ("old", old)):
            run_minute(conn, minute_jobs[side])  # warm-up
        for i in range(run.opts.repeat):
            for side in (("new", "old") if i % 2 == 0 else ("old", "new")):
                conn = new if side == "new" else old
                minutes[side].append(sum(run_minute(conn, minute_jobs[side]).values()))
        _add(run, "ordinary minute (every-minute jobs, rules looked at a minute before)", minutes, ref)
        run.bar("A/B reads", len(queries) + 1, len(queries) + 1)
    if not run.opts.keep:
        run.cluster.drop(AB)


def _add(run: Run, name: str, got: dict[str, list[float]], ref: str) -> None:
    new = summarize("a/b", f"{name}: this code", got["new"])
    old = summarize("a/b", f"{name}: {ref}", got["old"])
    run.report.add(new)
    run.report.add(old)
    if new.median and old.median:
        run.report.add(Row("a/b", f"{name}: this code / {ref}", "x", round(new.median / old.median, 2),
                           note="median of alternating runs on the same data; below 1 is faster"))
