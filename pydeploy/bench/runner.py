"""A whole benchmark run: the stages in order, the process's own figures, and the clean-up."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydeploy.bench import ab, dashboard, digests, ingest, reads, retention, setup, writes
from pydeploy.bench.cluster import EMPTY, MONITORED, PLAIN
from pydeploy.bench.context import BenchOptions, Run, Say
from pydeploy.bench.measure import connect, peak_memory_mb
from pydeploy.bench.report import Report, Row


def run_all(run: Run) -> Report:
    started = time.monotonic()
    setup.prepare_data(run)
    setup.bench_migrate(run)
    with connect(run.cluster.url(MONITORED)) as c:
        reads.bench_views(run, c)
        for row in dashboard.measure(c, run.opts.repeat):
            run.report.add(row)
        for row in digests.measure(c, run.opts.repeat):
            run.report.add(row)
        reads.bench_checks(run, c)
        reads.bench_cron(run, c)
        reads.bench_spec(run, c)
    ab.bench_ab(run)
    writes.bench_writes(run)
    retention.bench_retention(run)
    ingest.bench_ingest(run)
    own, kids = peak_memory_mb()
    run.report.add(Row("process", "peak memory of the benchmark process", "MB", round(own, 1),
                       target="< 500 MB", ok=own < 500, note=f"largest child (pgbench): {kids:.1f} MB"))
    run.report.wall_seconds = time.monotonic() - started
    if run.opts.quick:
        run.report.add(Row("process", "bench --quick wall time", "s", round(run.report.wall_seconds),
                           target="< 600 s", ok=run.report.wall_seconds < 600))
    if not run.opts.keep:
        for name in (MONITORED, PLAIN, EMPTY):
            run.cluster.drop(name)
    return run.report


def run(opts: BenchOptions, say: Say, bar: Callable[[str, int, int], None]) -> Report:
    """Run every stage of the benchmark once; the report holds every figure."""
    return run_all(Run(opts, say, bar))
