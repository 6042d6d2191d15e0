"""Stage 2, reads: every view and health(), each check function, a cron cycle, the spec's queries next to ours."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pydeploy import exporter_queries
from pydeploy.bench.context import Run
from pydeploy.bench.measure import repeat_timed, timed
from pydeploy.bench.queries import SPEC_QUERIES
from pydeploy.bench.report import Row, summarize
from pydeploy.paths import project_dir


def bench_views(run: Run, c: psycopg.Connection) -> None:
    c.execute("select monitoring.refresh_rollups()")  # as pg_cron did a moment ago
    views = [r[0] for r in c.execute(
        "select table_name from information_schema.views where table_schema = 'monitoring' order by 1"
    ).fetchall()]
    total = len(views) + 1
    for i, v in enumerate(views):
        run.bar("views", i, total)
        q = sql.SQL("select * from monitoring.{}").format(sql.Identifier(v))
        run.report.add(summarize("views", v, repeat_timed(c, q, run.opts.repeat),
                                 target="< 10 ms", check=lambda m: m < 10))
    run.report.add(summarize("views", "health()", repeat_timed(c, "select monitoring.health()", run.opts.repeat),
                             target="< 10 ms", check=lambda m: m < 10))
    run.bar("views", total, total)
    # one postgres_exporter scrape: every query of prometheus/postgres_exporter_queries.yaml, as its role
    queries = exporter_queries.load(project_dir() / exporter_queries.QUERIES_FILE)
    samples = [exporter_queries.scrape_ms(c, queries) for _ in range(run.opts.repeat + 1)][1:]
    run.report.add(summarize("views", f"postgres_exporter scrape ({len(queries)} queries)", samples,
                             target="< 20 ms", check=lambda m: m < 20))


def bench_checks(run: Run, c: psycopg.Connection) -> None:
    rules = c.execute("select name, check_function from monitoring.alert_rules order by name").fetchall()
    q = ("select count(*) from monitoring.alert_rules as r "
         "cross join lateral monitoring._run_check(r, now()) as c where r.name = %s")
    for i, (name, fn) in enumerate(rules):
        run.bar("check functions", i, len(rules))
        run.report.add(summarize("checks", f"{fn} ({name})", repeat_timed(c, q, run.opts.repeat, (name,))))
    run.bar("check functions", len(rules), len(rules))


def cron_jobs(c: psycopg.Connection, every_minute: bool = False) -> list[tuple[str, str, str]]:
    """(name, job, command) of every expected job but retention, which is measured on its own;
    every_minute: only those pg_cron starts every minute."""
    return [(r[0], r[1], r[2]) for r in c.execute(
        "select name, job, command from monitoring.expected_jobs where job <> 'retention' "
        "and (not %s or schedule = '* * * * *') order by name", (every_minute,)
    ).fetchall()]


def make_all_due(c: psycopg.Connection) -> None:
    """Every rule due, as at the top of an hour, so each cycle evaluates every rule."""
    c.execute("update monitoring.rule_state set last_checked_at = null")


def run_cycle(c: psycopg.Connection, jobs: list[tuple[str, str, str]]) -> dict[str, float]:
    make_all_due(c)
    return {name: timed(c, command) for name, _, command in jobs}


def run_minute(c: psycopg.Connection, jobs: list[tuple[str, str, str]]) -> dict[str, float]:
    """An ordinary minute: every rule was looked at a minute before, so only the rules due in this
    minute are evaluated (every rule at :00, the */5 and */15 ones at their minutes) and the others
    are only asked whether they are due: what pg_cron's evaluate job does most minutes."""
    c.execute("update monitoring.rule_state set last_checked_at = now() - interval '1 minute'")
    return {name: timed(c, command) for name, _, command in jobs}


def bench_cron(run: Run, c: psycopg.Connection) -> None:
    jobs = cron_jobs(c)
    run_cycle(c, jobs)  # warm-up
    per_job: dict[str, list[float]] = {name: [] for name, _, _ in jobs}
    totals: list[float] = []
    for i in range(run.opts.repeat):
        run.bar("cron cycle", i, run.opts.repeat)
        times = run_cycle(c, jobs)
        for k, v in times.items():
            per_job[k].append(v)
        totals.append(sum(times.values()))
    run.bar("cron cycle", run.opts.repeat, run.opts.repeat)
    longest = max((max(v) for v in per_job.values() if v), default=0.0)
    run.report.add(Row("cron", "longest job transaction (app-table locks held at most this long)", "ms",
                       round(longest, 1), target="< 100 ms", ok=longest < 100,
                       note="each job is one transaction; the rollup refresh only reads the app tables"))
    for name, job, _ in jobs:
        run.report.add(summarize("cron", f"job {name} (run_job('{job}'))", per_job[name]))
    # every rule is due (make_all_due): the cycle at the top of an hour. Since the refresh moved into
    # the evaluate job there is no separate refresh job, so "the checks" and the full cycle are one figure
    run.report.add(summarize("cron", f"full cron cycle ({len(jobs)} jobs, retention apart, all rules due)", totals,
                             target="< 50 ms", check=lambda m: m < 50,
                             note="the slow-statement snapshot is not in it: taken in the warm-up, kept 5 min"))
    bench_snapshot(run, c)
    minute_jobs = cron_jobs(c, every_minute=True)
    run_minute(c, minute_jobs)  # warm-up
    minutes = [sum(run_minute(c, minute_jobs).values()) for _ in range(run.opts.repeat)]
    run.report.add(summarize(
        "cron", f"ordinary minute ({', '.join(j for _, j, _ in minute_jobs)}; rules looked at a minute before)",
        minutes, target="< 50 ms", check=lambda m: m < 50))


def bench_snapshot(run: Run, c: psycopg.Connection) -> None:
    """What the evaluate job adds every fifth minute: the slow-statement snapshot of pg_stat_statements,
    whose cost grows with the statements it holds (this database's own, collected by the run so far)."""
    if c.execute("select to_regprocedure('extensions.pg_stat_statements(boolean)') is null").fetchone() != (False,):
        return
    n = c.execute("select count(*) from extensions.pg_stat_statements(false)").fetchone()
    samples = repeat_timed(c, "select monitoring._snapshot_slow_queries()", run.opts.repeat)
    run.report.add(summarize(
        "cron", f"slow-statement snapshot ({n[0] if n else 0:,} statements in pg_stat_statements)", samples,
        note="the evaluate job adds it every fifth minute"))


def bench_spec(run: Run, c: psycopg.Connection) -> None:
    c.execute("select monitoring.refresh_rollups()")
    for i, (ours, spec_sql) in enumerate(SPEC_QUERIES.items()):
        run.bar("spec queries", i, len(SPEC_QUERIES))
        spec = summarize("spec vs ours", f"spec query: {ours}", repeat_timed(c, spec_sql, run.opts.repeat))
        mine = summarize("spec vs ours", f"monitoring.{ours}", repeat_timed(
            c, sql.SQL("select * from monitoring.{}").format(sql.Identifier(ours)), run.opts.repeat))
        run.report.add(spec)
        run.report.add(mine)
        assert spec.median is not None and mine.median is not None and spec.low is not None
        ratios = [s / o for s, o in zip((spec.median, spec.low, spec.high or 0),
                                        (mine.median, mine.high or 1, mine.low or 1), strict=True)]
        run.report.add(Row("spec vs ours", f"ratio spec/ours: {ours}", "x", round(ratios[0], 1),
                           round(ratios[1], 1), round(ratios[2], 1), spec.n, ">= 100x", ratios[0] >= 100,
                           "min/max: slowest ours vs fastest spec and the reverse"))
    run.bar("spec queries", len(SPEC_QUERIES), len(SPEC_QUERIES))
