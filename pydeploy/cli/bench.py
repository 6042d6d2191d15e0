"""`pydeploy bench`: the command line face of pydeploy.bench (registered by pydeploy.cli.main)."""

from __future__ import annotations

import json
import sys

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pydeploy import bench as benchmod
from pydeploy import dsn as dsnmod
from pydeploy import engines
from pydeploy.bench.data import QUICK_FACTOR, Scale
from pydeploy.cli.common import err, out
from pydeploy.errors import ConfigError


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("ms", "x") and abs(v) < 100:
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def render(report: benchmod.Report) -> Table:
    m, d = report.machine, report.data
    table = Table(title=(f"pydeploy bench: {d.get('notifications', 0):,} notifications "
                         f"({d.get('notifications_24h', 0):,} in 24 h), {d.get('errors', 0):,} errors; "
                         f"{m.get('nproc')} cores, {m.get('memory_gb')} GB"), title_justify="left")
    for col, just in (("group", "left"), ("what", "left"), ("median", "right"), ("min", "right"), ("max", "right"),
                      ("unit", "left"), ("n", "right"), ("target", "left"), ("", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    last = ""
    for r in report.rows:
        colour = {"PASS": "green", "MISS": "bold red"}.get(r.status, "")
        table.add_row("" if r.group == last else r.group, r.name, _fmt(r.median, r.unit), _fmt(r.low, r.unit),
                      _fmt(r.high, r.unit), r.unit, str(r.n), r.target, f"[{colour}]{r.status}[/]" if colour else "")
        last = r.group
    return table


@click.command()
@click.option("--db-url", default=None,
              help="Any database of the cluster to benchmark in (it is only used to create bench_plain and "
                   "bench_monitored beside it). Default: $SUPABASE_DB_URL, else the running local engine.")
@click.option("--scale", "scale_text", default=None, metavar="FACTOR|ROWS",
              help="Data size: a factor of the default 10 M notifications (0.1, 2) or a notification count "
                   "(500k, 3M). The last 24 h hold a tenth, errors are a tenth.")
@click.option("--quick", is_flag=True, help=f"About 1 M notifications (--scale {QUICK_FACTOR}), shorter write "
                                            "rounds: a run of a few minutes.")
@click.option("--repeat", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Timed runs of each query (after one warm-up); medians, min and max are reported.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (progress stays on stderr).")
@click.option("--keep", is_flag=True, help="Keep the benchmark databases afterwards (a rerun within an hour "
                                           "reuses them instead of generating again).")
@click.option("--fresh", is_flag=True, help="Generate the data again even when kept databases could be reused.")
@click.option("--write-seconds", type=click.FloatRange(1, 600), default=None,
              help="Length of each pgbench round (default 10 s, 5 s with --quick; 8 rounds, 6 with --quick).")
@click.option("--write-rounds", type=click.IntRange(1, 100), default=None,
              help="pgbench rounds per database, run as back-to-back pairs (default 8, 6 with --quick).")
@click.option("--ab", "ab_ref", default=None, metavar="REV",
              help="Also migrate a copy of the same data with the migrations of git revision REV (a commit, tag or "
                   "branch) and time every view, health(), the cron cycle and an ordinary minute on both, alternating: "
                   "an A/B in one run.")
def bench(db_url: str | None, scale_text: str | None, quick: bool, repeat: int, as_json: bool, keep: bool,
          fresh: bool, write_seconds: float | None, write_rounds: int | None, ab_ref: str | None) -> None:
    """Measure the monitoring at production scale, side by side with the spec's queries.

    Creates two databases beside the one given (bench_plain: the app's tables only;
    bench_monitored: the same data plus every migration), fills them with realistic traffic
    (default 10 M notifications over 40 days, 1 M in the last 24 h, 1 M error rows), then
    measures in one run: every monitoring view and health(), each alert check, a full cron
    cycle (every rule due), an ordinary cron minute (the every-minute jobs, most rules not due),
    the pg_stat_statements snapshot the evaluate job adds every fifth minute,
    the spec's three queries against the views that answer them, the app's write
    throughput with and without the monitoring (pgbench, 4 writers), retention's cleanup rate
    and the longest lock wait it causes, migrate on an empty database and this process's peak
    memory. Each figure is shown against its target (PASS or MISS). Your own databases are
    never touched; the benchmark databases (bench_plain, bench_monitored, bench_migrate:
    replaced if they exist) are dropped at the end unless --keep.

    \b
    Example:
      pydeploy bench --quick                       # ~1 M rows, a few minutes
      pydeploy bench --json > bench.json           # full scale, 10 M rows
      pydeploy bench --scale 0.01 --repeat 3 --keep
      pydeploy bench --quick --ab 5fef6e1             # this code against an older commit, same data
    """
    if quick and scale_text:
        raise ConfigError("--quick and --scale both set the data size", "give one of them")
    scale = Scale.parse(scale_text) if scale_text else Scale.factor(QUICK_FACTOR) if quick else Scale()
    url = engines.resolve(db_url)
    if not dsnmod.is_url(url):
        raise ConfigError("--db-url must be a URL (postgresql://…) for pydeploy bench",
                          "use e.g. postgresql://postgres:postgres@127.0.0.1:5432/postgres")
    opts = benchmod.BenchOptions(admin_url=url, scale=scale, repeat=repeat, keep=keep, fresh=fresh, quick=quick,
                                 write_seconds=write_seconds or (5.0 if quick else 10.0),
                                 write_rounds=write_rounds or (6 if quick else 8), ab_ref=ab_ref)
    with Progress(TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def bar(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        report = benchmod.run(opts, say=lambda m: progress.console.print(m), bar=bar)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, default=str) + "\n")
        return
    out.print(render(report))
    t = report.to_json()["targets"]
    out.print(f"targets: {t['pass']} PASS, {t['miss']} MISS; wall time {report.wall_seconds:.0f} s")
    for r in report.rows:
        if r.note and r.ok is not None:
            out.print(f"[dim]{r.name}: {r.note}[/]")
