"""Stage 1, setup: generate the data (or reuse a recent run's), migrate onto it; migrate on an empty database."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict

from pydeploy import migrations
from pydeploy.bench import data as bench_data
from pydeploy.bench.cluster import EMPTY, MONITORED, PLAIN, ROLLUP_TABLES, create_app_tables, index_names
from pydeploy.bench.context import Run
from pydeploy.bench.measure import connect, migrations_fingerprint
from pydeploy.bench.report import summarize
from pydeploy.engines import prepare
from pydeploy.paths import migrations_dir

REUSE_MAX_AGE = dt.timedelta(hours=1)



def prepare_data(run: Run) -> None:
    """bench_plain and bench_monitored with the data of this scale: reused when a kept run made them
    within the hour for the same migrations, else generated; then what the report says about them."""
    tag = json.dumps({"scale": asdict(run.opts.scale), "migrations": migrations_fingerprint()}, sort_keys=True)
    reuse = _reusable(run, tag)
    run.report.setup["reused_data"] = reuse
    if reuse:
        run.say("reusing the benchmark databases from a run less than an hour ago (--fresh regenerates)")
    else:
        _generate(run, tag)
    _describe_data(run)


def _reusable(run: Run, tag: str) -> bool:
    if run.opts.fresh or not (run.cluster.exists(PLAIN) and run.cluster.exists(MONITORED)):
        return False
    comment = run.cluster.comment(MONITORED) or ""
    if not comment.startswith("pydeploy bench ") or comment.split(" ", 3)[3:] != [tag]:
        return False
    made = dt.datetime.fromisoformat(comment.split(" ")[2])
    return dt.datetime.now(dt.UTC) - made < REUSE_MAX_AGE


def _generate(run: Run, tag: str) -> None:
    """Generate into bench_plain, copy it to bench_monitored, migrate onto the copy, refresh and analyze."""
    o, rep = run.opts, run.report
    run.say(f"generating {o.scale.describe()} into {PLAIN}")
    run.cluster.drop(MONITORED)
    run.cluster.create(PLAIN)
    prepare(run.cluster.url(PLAIN))
    create_app_tables(run.cluster.url(PLAIN))
    with connect(run.cluster.url(PLAIN)) as c:
        g = bench_data.generate(c, o.scale, run.bar)
    rep.setup["generate_s"] = round(g.seconds, 1)
    rep.setup["generate_rows_per_s"] = round((g.notifications + g.errors) / g.seconds)
    t0 = time.monotonic()
    run.cluster.create(MONITORED, template=PLAIN)
    rep.setup["copy_database_s"] = round(time.monotonic() - t0, 1)
    run.say(f"applying the migrations to {MONITORED} (onto {g.notifications:,} existing rows)")
    t0 = time.monotonic()
    with connect(run.cluster.url(MONITORED)) as c:
        migrations.migrate(c, migrations_dir())
    rep.setup["migrate_onto_data_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    with connect(run.cluster.url(MONITORED)) as c:
        c.execute("select monitoring.refresh_rollups(p_full => true)")
        # every table the full refresh just filled gets statistics now, as a database that has run for
        # a while has them: left to autovacuum, they were analyzed during the timed stages (their
        # load and the plans made before it moved the cron figures)
        for t in (*bench_data.APP_TABLES, *ROLLUP_TABLES):
            c.execute(f"vacuum (analyze) {t}")
    rep.setup["initial_full_refresh_s"] = round(time.monotonic() - t0, 1)
    run.cluster.set_comment(MONITORED, f"pydeploy bench {dt.datetime.now(dt.UTC).isoformat()} {tag}")


def _describe_data(run: Run) -> None:
    rep = run.report
    with connect(run.cluster.url(MONITORED)) as c:
        row = c.execute(
            """select (select count(*) from public.whatsapp_notifications),
                      (select count(*) from public.whatsapp_notifications
                        where created_at > now() - interval '24 hours'),
                      (select count(*) from public.whatsapp_error_logs),
                      (select count(*) from public.whatsapp_error_logs
                        where created_at < now() - interval '30 days'),
                      (select count(*) from public.whatsapp_sessions),
                      pg_size_pretty(pg_database_size(current_database())),
                      version(), current_setting('shared_buffers'), current_setting('jit')"""
        ).fetchone()
    assert row is not None
    rep.data = {"notifications": row[0], "notifications_24h": row[1], "errors": row[2],
                "errors_older_than_30d": row[3], "sessions": row[4], "database_size": row[5]}
    rep.machine |= {"postgres": row[6], "shared_buffers": row[7], "jit": row[8]}
    rep.details["indexes"] = {"plain": index_names(run.cluster.url(PLAIN)),
                              "monitored": index_names(run.cluster.url(MONITORED))}


def bench_migrate(run: Run) -> None:
    samples = []
    for i in range(run.opts.migrate_rounds):
        run.bar("migrate (empty database)", i, run.opts.migrate_rounds)
        run.cluster.create(EMPTY)
        url = run.cluster.url(EMPTY)
        prepare(url)
        with connect(url) as c:
            t0 = time.perf_counter()
            migrations.migrate(c, migrations_dir())
            samples.append((time.perf_counter() - t0) * 1000)
        run.cluster.drop(EMPTY)
    run.bar("migrate (empty database)", run.opts.migrate_rounds, run.opts.migrate_rounds)
    n = len(migrations.discover(migrations_dir()))
    run.report.add(summarize("setup", f"migrate, empty database ({n} files)", samples))
