"""`pydeploy bench`: the monitoring package at production scale, against the spec's own queries.

Two databases in one cluster hold the same generated data (pydeploy.bench_data):
`bench_plain` has the app's tables only (keys and checks, none of the monitoring's indexes) and
`bench_monitored` is a file copy of it with every migration applied on top. Then, in one run:
each view and health(), each check function, a cron cycle, the spec's three queries next to the
views that answer them, the app's write throughput in both databases (pgbench, INSERT then two
status UPDATEs), the scheduled retention procedure (with a probe session measuring how long it
blocks the app), migrate on an empty database, and this process's peak memory.
Every timing is repeated: median, min and max; each figure is shown against its target.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from pydeploy import bench_data, engine, migrations, sql_split
from pydeploy.bench_data import Scale
from pydeploy.errors import ConfigError, PydeployError
from pydeploy.paths import migrations_dir

PLAIN = "bench_plain"
MONITORED = "bench_monitored"
EMPTY = "bench_migrate"
TABLES_MIGRATION = "20261127010000_whatsapp_tables.sql"
REUSE_MAX_AGE = dt.timedelta(hours=1)
CRON_PERIOD_S = 60.0  # pg_cron's every-minute jobs

# Verbatim from the spec (production-monitoring-guide.md, "Database Monitoring").
SPEC_QUERIES: dict[str, str] = {
    "delivery_stats_24h": """-- Delivery rate for last 24 hours
SELECT 
  COUNT(*) as total,
  SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) as successful,
  SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) as failed,
  ROUND(100.0 * SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) / COUNT(*), 2) as delivery_rate
FROM whatsapp_notifications
WHERE created_at > NOW() - INTERVAL '24 hours';""",  # noqa: W291 - verbatim
    "top_errors_24h": """-- Top errors in last 24 hours
SELECT 
  error_type,
  COUNT(*) as count,
  MAX(created_at) as last_occurrence
FROM whatsapp_error_logs
WHERE created_at > NOW() - INTERVAL '24 hours'
GROUP BY error_type
ORDER BY count DESC
LIMIT 10;""",  # noqa: W291 - verbatim
    "active_sessions": """-- Check active sessions
SELECT 
  session_id,
  phone_number,
  is_active,
  updated_at,
  EXTRACT(EPOCH FROM (NOW() - updated_at)) / 3600 as hours_since_update
FROM whatsapp_sessions
WHERE is_active = true;""",  # noqa: W291 - verbatim
}

# pgbench's transaction: what the sender does per message (insert, pick up, mark sent).
WRITER_SCRIPT = "\n".join([
    r"\set ph random(10000000, 99999999)",
    "insert into public.whatsapp_notifications (order_id, phone_number, template_name, message) "
    "values ('BENCH-' || :ph, '+55 11 9' || :ph, 'order_confirmed', "
    "'Hello! Your order ORD-' || :ph || ' is confirmed.') returning id \\gset",
    "update public.whatsapp_notifications set status = 'processing', attempts = 1, "
    "processing_started_at = now(), updated_at = now() where id = ':id';",
    "update public.whatsapp_notifications set status = 'sent', sent_at = now(), updated_at = now() "
    "where id = ':id';",
    "",
])

Say = Callable[[str], None]


# -- options and results --------------------------------------------------------------------------

@dataclass
class BenchOptions:
    admin_url: str  # a database of the cluster the bench databases are created in
    scale: Scale = field(default_factory=Scale)
    repeat: int = 10
    keep: bool = False
    fresh: bool = False
    quick: bool = False
    writers: int = 4
    write_seconds: float = 10.0
    write_rounds: int = 8
    migrate_rounds: int = 3


@dataclass
class Row:
    """One figure: the median of n runs (with min and max), its target and whether it meets it."""

    group: str
    name: str
    unit: str
    median: float | None
    low: float | None = None
    high: float | None = None
    n: int = 1
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def status(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def summarize(group: str, name: str, samples: list[float], unit: str = "ms", *, target: str = "",
              check: Callable[[float], bool] | None = None, note: str = "") -> Row:
    med = statistics.median(samples) if samples else None
    ok = None if check is None or med is None else bool(check(med))
    return Row(group, name, unit, med, min(samples) if samples else None, max(samples) if samples else None,
               len(samples), target, ok, note)


@dataclass
class Report:
    machine: dict[str, Any]
    scale: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        rows = [asdict(r) | {"status": r.status} for r in self.rows]
        return {
            "machine": self.machine, "scale": self.scale, "data": self.data, "setup": self.setup,
            "rows": rows, "details": self.details, "wall_seconds": round(self.wall_seconds, 1),
            "targets": {"pass": sum(r.ok is True for r in self.rows), "miss": sum(r.ok is False for r in self.rows)},
        }


# -- small helpers --------------------------------------------------------------------------------

def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme:
        return urlunsplit(parts._replace(path="/" + name))
    raise ConfigError("--db-url must be a URL (postgresql://…) for pydeploy bench",
                      "use e.g. postgresql://postgres:postgres@127.0.0.1:5432/postgres")


def connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, application_name="pydeploy-bench", connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise PydeployError(f"cannot connect to the benchmark database: {str(exc).strip().splitlines()[0]}",
                            "start the local engine with `pydeploy up`, or pass --db-url") from exc


def timed(conn: psycopg.Connection, query: str | sql.Composable, params: Any = None) -> float:
    """Run a query and fetch every row; return the wall time in ms."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(query, params)
        if cur.description is not None:
            cur.fetchall()
    return (time.perf_counter() - t0) * 1000


def repeat_timed(conn: psycopg.Connection, query: str | sql.Composable, n: int, params: Any = None,
                 before: Callable[[], None] | None = None) -> list[float]:
    """One warm-up run (plans cached, pages in memory), then n timed runs."""
    if before:
        before()
    timed(conn, query, params)
    out = []
    for _ in range(n):
        if before:
            before()
        out.append(timed(conn, query, params))
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        m = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
        model = m.group(1).strip() if m else ""
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(m.group(1)) if m else 0
    return {"cpu_model": model, "nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "os": platform.platform(), "python": platform.python_version()}


def migrations_fingerprint() -> str:
    h = hashlib.sha256()
    for f in migrations.discover(migrations_dir()):
        h.update(f.path.name.encode())
        h.update(f.path.read_bytes())
    return h.hexdigest()[:16]


def peak_memory_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child (pgbench), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, kids


# -- databases ------------------------------------------------------------------------------------

class Cluster:
    """Creates and drops the benchmark databases next to the admin database."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def url(self, name: str) -> str:
        return with_db(self.admin_url, name)

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


def create_app_tables(url: str) -> None:
    """The app's own tables as the tables migration creates them, minus every index that is not a key."""
    path = migrations_dir() / TABLES_MIGRATION
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


# -- the benchmark --------------------------------------------------------------------------------

class Bench:
    def __init__(self, opts: BenchOptions, say: Say, bar: Callable[[str, int, int], None]) -> None:
        self.opts = opts
        self.say = say
        self.bar = bar
        self.cluster = Cluster(opts.admin_url)
        self.report = Report(machine(), asdict(opts.scale) | {"quick": opts.quick, "repeat": opts.repeat})

    # ---- setup
    def prepare_data(self) -> None:
        o, rep = self.opts, self.report
        tag = json.dumps({"scale": asdict(o.scale), "migrations": migrations_fingerprint()}, sort_keys=True)
        reuse = False
        if not o.fresh and self.cluster.exists(PLAIN) and self.cluster.exists(MONITORED):
            comment = self.cluster.comment(MONITORED) or ""
            if comment.startswith("pydeploy bench ") and comment.split(" ", 3)[3:] == [tag]:
                made = dt.datetime.fromisoformat(comment.split(" ")[2])
                reuse = dt.datetime.now(dt.UTC) - made < REUSE_MAX_AGE
        rep.setup["reused_data"] = reuse
        if reuse:
            self.say("reusing the benchmark databases from a run less than an hour ago (--fresh regenerates)")
        else:
            self.say(f"generating {o.scale.describe()} into {PLAIN}")
            self.cluster.drop(MONITORED)
            self.cluster.create(PLAIN)
            engine.prepare(self.cluster.url(PLAIN))
            create_app_tables(self.cluster.url(PLAIN))
            with connect(self.cluster.url(PLAIN)) as c:
                g = bench_data.generate(c, o.scale, self.bar)
            rep.setup["generate_s"] = round(g.seconds, 1)
            rep.setup["generate_rows_per_s"] = round((g.notifications + g.errors) / g.seconds)
            t0 = time.monotonic()
            self.cluster.create(MONITORED, template=PLAIN)
            rep.setup["copy_database_s"] = round(time.monotonic() - t0, 1)
            self.say(f"applying the migrations to {MONITORED} (onto {g.notifications:,} existing rows)")
            t0 = time.monotonic()
            with connect(self.cluster.url(MONITORED)) as c:
                migrations.migrate(c, migrations_dir())
            rep.setup["migrate_onto_data_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            with connect(self.cluster.url(MONITORED)) as c:
                c.execute("select monitoring.refresh_rollups(p_full => true)")
                for t in (*bench_data.APP_TABLES, "monitoring.notification_minutes", "monitoring.error_minutes"):
                    c.execute(f"vacuum (analyze) {t}")
            rep.setup["initial_full_refresh_s"] = round(time.monotonic() - t0, 1)
            self.cluster.set_comment(MONITORED, f"pydeploy bench {dt.datetime.now(dt.UTC).isoformat()} {tag}")
        with connect(self.cluster.url(MONITORED)) as c:
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
        rep.details["indexes"] = {"plain": index_names(self.cluster.url(PLAIN)),
                                  "monitored": index_names(self.cluster.url(MONITORED))}

    # ---- migrate on an empty database
    def bench_migrate(self) -> None:
        samples = []
        for i in range(self.opts.migrate_rounds):
            self.bar("migrate (empty database)", i, self.opts.migrate_rounds)
            self.cluster.create(EMPTY)
            url = self.cluster.url(EMPTY)
            engine.prepare(url)
            with connect(url) as c:
                t0 = time.perf_counter()
                migrations.migrate(c, migrations_dir())
                samples.append((time.perf_counter() - t0) * 1000)
            self.cluster.drop(EMPTY)
        self.bar("migrate (empty database)", self.opts.migrate_rounds, self.opts.migrate_rounds)
        n = len(migrations.discover(migrations_dir()))
        self.report.add(summarize("setup", f"migrate, empty database ({n} files)", samples))

    # ---- reads
    def bench_views(self, c: psycopg.Connection) -> None:
        c.execute("select monitoring.refresh_rollups()")  # as pg_cron did a moment ago
        views = [r[0] for r in c.execute(
            "select table_name from information_schema.views where table_schema = 'monitoring' order by 1"
        ).fetchall()]
        total = len(views) + 1
        for i, v in enumerate(views):
            self.bar("views", i, total)
            q = sql.SQL("select * from monitoring.{}").format(sql.Identifier(v))
            self.report.add(summarize("views", v, repeat_timed(c, q, self.opts.repeat),
                                      target="< 10 ms", check=lambda m: m < 10))
        self.report.add(summarize("views", "health()", repeat_timed(c, "select monitoring.health()", self.opts.repeat),
                                  target="< 10 ms", check=lambda m: m < 10))
        self.bar("views", total, total)

    def bench_checks(self, c: psycopg.Connection) -> None:
        rules = c.execute("select name, check_function from monitoring.alert_rules order by name").fetchall()
        q = ("select count(*) from monitoring.alert_rules as r "
             "cross join lateral monitoring._run_check(r, now()) as c where r.name = %s")
        for i, (name, fn) in enumerate(rules):
            self.bar("check functions", i, len(rules))
            self.report.add(summarize("checks", f"{fn} ({name})", repeat_timed(c, q, self.opts.repeat, (name,))))
        self.bar("check functions", len(rules), len(rules))

    def cron_jobs(self, c: psycopg.Connection) -> list[tuple[str, str, str]]:
        """(name, job, command) of every expected job but retention, which is measured on its own."""
        return [(r[0], r[1], r[2]) for r in c.execute(
            "select name, job, command from monitoring.expected_jobs where job <> 'retention' order by name"
        ).fetchall()]

    @staticmethod
    def make_all_due(c: psycopg.Connection) -> None:
        """Every rule due, as at the top of an hour, so each cycle evaluates every rule."""
        c.execute("update monitoring.rule_state set last_checked_at = null")

    def run_cycle(self, c: psycopg.Connection, jobs: list[tuple[str, str, str]]) -> dict[str, float]:
        self.make_all_due(c)
        return {name: timed(c, command) for name, _, command in jobs}

    def bench_cron(self, c: psycopg.Connection) -> None:
        jobs = self.cron_jobs(c)
        self.run_cycle(c, jobs)  # warm-up
        per_job: dict[str, list[float]] = {name: [] for name, _, _ in jobs}
        totals: list[float] = []
        for i in range(self.opts.repeat):
            self.bar("cron cycle", i, self.opts.repeat)
            times = self.run_cycle(c, jobs)
            for k, v in times.items():
                per_job[k].append(v)
            totals.append(sum(times.values()))
        self.bar("cron cycle", self.opts.repeat, self.opts.repeat)
        for name, job, _ in jobs:
            self.report.add(summarize("cron", f"job {name} (run_job('{job}'))", per_job[name]))
        checks = [name for name, job, _ in jobs if job != "refresh-rollups"]
        check_totals = [sum(per_job[n][i] for n in checks) for i in range(len(totals))]
        self.report.add(summarize("cron", f"check cycle ({len(checks)} jobs, all rules due)", check_totals,
                                  target="< 50 ms", check=lambda m: m < 50))
        self.report.add(summarize("cron", f"full cron cycle ({len(jobs)} jobs, retention apart)", totals,
                                  target="< 50 ms", check=lambda m: m < 50))

    def bench_spec(self, c: psycopg.Connection) -> None:
        c.execute("select monitoring.refresh_rollups()")
        for i, (ours, spec_sql) in enumerate(SPEC_QUERIES.items()):
            self.bar("spec queries", i, len(SPEC_QUERIES))
            spec = summarize("spec vs ours", f"spec query: {ours}", repeat_timed(c, spec_sql, self.opts.repeat))
            mine = summarize("spec vs ours", f"monitoring.{ours}", repeat_timed(
                c, sql.SQL("select * from monitoring.{}").format(sql.Identifier(ours)), self.opts.repeat))
            self.report.add(spec)
            self.report.add(mine)
            assert spec.median is not None and mine.median is not None and spec.low is not None
            ratios = [s / o for s, o in zip((spec.median, spec.low, spec.high or 0),
                                            (mine.median, mine.high or 1, mine.low or 1), strict=True)]
            self.report.add(Row("spec vs ours", f"ratio spec/ours: {ours}", "x", round(ratios[0], 1),
                                round(ratios[1], 1), round(ratios[2], 1), spec.n, ">= 100x", ratios[0] >= 100,
                                "min/max: slowest ours vs fastest spec and the reverse"))
        self.bar("spec queries", len(SPEC_QUERIES), len(SPEC_QUERIES))

    # ---- writes
    def bench_writes(self) -> None:
        o = self.opts
        pgbench = shutil.which("pgbench")
        if not pgbench:
            raise PydeployError("pgbench is not installed (it measures the app's write throughput)",
                                "apt-get install postgresql-client")
        dbs = {"plain": self.cluster.url(PLAIN), "monitored": self.cluster.url(MONITORED)}
        hot = {k: self._update_stats(u) for k, u in dbs.items()}
        tps: dict[str, list[float]] = {"plain": [], "monitored": []}
        tx: dict[str, int] = {"plain": 0, "monitored": 0}
        wal: dict[str, list[float]] = {"plain": [], "monitored": []}
        cycles: list[float] = []
        next_cycle = 0.0  # in seconds of monitored run time, one cron cycle per CRON_PERIOD_S
        with tempfile.TemporaryDirectory(prefix="pydeploy-bench-") as tmp:
            script = Path(tmp) / "writer.sql"
            script.write_text(WRITER_SCRIPT)
            steps = o.write_rounds * 2
            for r in range(o.write_rounds):
                for j, kind in enumerate(("plain", "monitored") if r % 2 == 0 else ("monitored", "plain")):
                    self.bar("app writes (pgbench)", 2 * r + j, steps)
                    self._checkpoint()
                    offsets = []
                    if kind == "monitored":
                        start = r * o.write_seconds
                        while next_cycle < start + o.write_seconds:
                            offsets.append(max(0.0, next_cycle - start))
                            next_cycle += CRON_PERIOD_S
                    lsn = self._wal_lsn()
                    done, rate = self._pgbench(pgbench, script, dbs[kind], offsets, cycles)
                    wal[kind].append(self._wal_bytes_since(lsn) / max(1, done))
                    tx[kind] += done
                    tps[kind].append(rate)
            self.bar("app writes (pgbench)", steps, steps)
        hot_after = {k: self._update_stats(u) for k, u in dbs.items()}
        for kind in ("plain", "monitored"):
            self.report.add(summarize("writes", f"app writes, {kind} database ({o.writers} writers)", tps[kind],
                                      "tx/s", note="tx = INSERT + 2 status UPDATEs"))
        # each round runs both databases back to back: the ratio of a pair cancels the machine's drift
        pairs = [100 * m / max(1e-9, p) for p, m in zip(tps["plain"], tps["monitored"], strict=True)]
        aggregate = 100 * tx["monitored"] / max(1, tx["plain"])
        hot_share = {k: _hot_share(hot[k], hot_after[k]) for k in dbs}
        self.report.add(summarize(
            "writes", "write throughput monitored/plain", [round(x, 1) for x in pairs], "%",
            target=">= 95 %", check=lambda m: m >= 95,
            note=f"median of {len(pairs)} back-to-back pairs (all transactions: {aggregate:.1f} %); "
                 f"{len(cycles)} cron cycle(s) ran during the monitored rounds (one per {CRON_PERIOD_S:.0f} s); "
                 f"HOT updates: plain {hot_share['plain']} %, monitored {hot_share['monitored']} %"))
        # WAL written per transaction: the work each write costs, free of the machine's noise
        for kind in ("plain", "monitored"):
            self.report.add(summarize("writes", f"WAL per transaction, {kind} database", wal[kind], "bytes",
                                      note="cluster WAL during the round / transactions (cron cycles included)"))
        wal_pairs = [round(100 * m / max(1e-9, p), 1) for p, m in zip(wal["plain"], wal["monitored"], strict=True)]
        self.report.add(summarize("writes", "WAL per transaction monitored/plain", wal_pairs, "%",
                                  note="more WAL = more pages written per write: the cost the monitoring adds"))
        self.report.details["writes"] = {"wal_bytes_per_tx": wal, "tps": tps, "transactions": tx,
                                         "seconds_each": o.write_seconds, "hot_update_pct": hot_share,
                                         "cron_cycles_ms": [round(x, 1) for x in cycles]}
        for url in dbs.values():
            with connect(url) as c:
                c.execute("delete from public.whatsapp_notifications where order_id like 'BENCH-%'")
                c.execute("vacuum (analyze) public.whatsapp_notifications")

    def _wal_lsn(self) -> str:
        with connect(self.opts.admin_url) as c:
            row = c.execute("select pg_current_wal_lsn()::text").fetchone()
        return str(row[0]) if row else "0/0"

    def _wal_bytes_since(self, lsn: str) -> float:
        with connect(self.opts.admin_url) as c:
            row = c.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,)).fetchone()
        return float(row[0]) if row else 0.0

    def _checkpoint(self) -> None:
        """Every round starts from the same state: no dirty pages of the previous one to write."""
        with connect(self.opts.admin_url) as c, contextlib.suppress(psycopg.Error):
            c.execute("checkpoint")

    @staticmethod
    def _update_stats(url: str) -> tuple[int, int]:
        with connect(url) as c:
            row = c.execute("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables "
                            "where relid = 'public.whatsapp_notifications'::regclass").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _pgbench(self, pgbench: str, script: Path, url: str, cycle_offsets: list[float],
                 cycles: list[float]) -> tuple[int, float]:
        o = self.opts
        cmd = [pgbench, "-n", "-f", str(script), "-c", str(o.writers), "-j", str(min(o.writers, os.cpu_count() or 1)),
               "-T", str(int(o.write_seconds)), url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.monotonic()
        if cycle_offsets:
            with connect(url) as c:
                jobs = self.cron_jobs(c)
                for off in cycle_offsets:
                    time.sleep(max(0.0, off - (time.monotonic() - t0)))
                    cycles.append(sum(self.run_cycle(c, jobs).values()))
        out, _ = proc.communicate(timeout=o.write_seconds * 5 + 60)
        m_tx = re.search(r"number of transactions actually processed: (\d+)", out)
        m_tps = re.search(r"tps = ([0-9.]+)", out)
        if proc.returncode != 0 or not m_tx or not m_tps:
            raise PydeployError(f"pgbench failed (exit {proc.returncode}):\n{out[-2000:]}",
                                "run the command by hand: " + " ".join(cmd[:-1]) + " <url>")
        return int(m_tx.group(1)), float(m_tps.group(1))

    # ---- retention
    def bench_retention(self) -> None:
        """The scheduled job's command (monitoring.expected_jobs): batches committed one by one.

        It really deletes (the databases are the benchmark's own). When fewer than 100,000 error
        rows are older than keep_for (a rerun on --keep data), 200,000 are added first so that
        every run measures a comparable cleanup.
        """
        url = self.cluster.url(MONITORED)
        with connect(url) as c:
            row = c.execute("select batch_size, keep_for from monitoring.retention_policies "
                            "where target = 'whatsapp_error_logs'").fetchone()
            batch_size, keep_for = (int(row[0]), row[1]) if row else (10_000, dt.timedelta(days=30))
            old = c.execute("select count(*) from public.whatsapp_error_logs where created_at < now() - %s",
                            (keep_for,)).fetchone()
            topped_up = 0
            if old and int(old[0]) < 100_000:
                topped_up = 200_000
                c.execute("insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
                          "select 'bench_old', 'expired', now() - %s - g * interval '10 seconds' "
                          "from generate_series(1, %s) as g", (keep_for, topped_up))
        stop = threading.Event()
        probe = Probe(url, stop)
        with connect(url) as c:
            pid = c.info.backend_pid
            sampler = LockSampler(url, pid, stop)
            probe.start()
            sampler.start()
            time.sleep(0.3)  # the probe's baseline
            self.bar("retention", 0, 1)
            try:
                t0 = time.perf_counter()
                cmd = c.execute("select command from monitoring.expected_jobs where job = 'retention'").fetchone()
                c.execute(str(cmd[0]) if cmd else "")
                total_ms = (time.perf_counter() - t0) * 1000
            finally:
                time.sleep(0.2)
                stop.set()
                probe.join()
                sampler.join()
            self.bar("retention", 1, 1)
            row = c.execute("select ok, error, detail from monitoring.job_runs where job = 'retention' "
                            "order by id desc limit 1").fetchone()
        if not row or not row[0]:
            raise PydeployError(f"the retention job failed: {row[1] if row else 'no job_runs row'}",
                                "see select * from monitoring.job_runs where job = 'retention'")
        detail: dict[str, Any] = row[2] or {}
        deleted = int(sum(int(v) for v in (detail.get("deleted") or {}).values()))
        refresh_ms = float(detail.get("refreshMs") or 0)
        batch_ms = float(detail.get("longestBatchMs") or 0)
        delete_s = max(1e-6, (total_ms - refresh_ms) / 1000)
        rate = deleted / delete_s if deleted else 0.0
        seeded = f" ({topped_up:,} expired rows added first)" if topped_up else ""
        self.report.add(Row("retention", "cleanup rate (batched deletes, each committed)", "rows/s", round(rate),
                            n=1, target=">= 100000 rows/s", ok=rate >= 100_000,
                            note=f"{deleted:,} rows in {delete_s:.2f} s{seeded}; then refresh_rollups(p_full) "
                                 f"{refresh_ms:.0f} ms in its own transaction"))
        self.report.add(Row("retention", "longest lock wait it caused (app, sampled every 10 ms)", "ms",
                            round(sampler.longest_wait_ms, 1), n=sampler.samples, target="<= 100 ms",
                            ok=sampler.longest_wait_ms <= 100,
                            note="sessions blocked by the retention backend (pg_blocking_pids) while it ran"))
        self.report.add(Row("retention", "slowest app statement during retention (probe)", "ms",
                            round(probe.max_ms, 1), n=probe.count,
                            note="INSERT of an error row and UPDATE of a recent notification in a loop; "
                                 "includes CPU contention, not only locks"))
        write_ms = max(batch_ms, sampler.longest_xact_ms(write=True))
        self.report.add(Row("retention", "longest write lock held on app tables (one batch transaction)", "ms",
                            round(write_ms, 1), n=1, target="<= 100 ms", ok=write_ms <= 100,
                            note=f"batches of {batch_size:,} rows, each committed; measured inside the procedure "
                                 "(longestBatchMs) and by the sampler (transaction age while it held "
                                 "RowExclusiveLock or stronger on a whatsapp_ table)"))
        read_ms = max(refresh_ms, sampler.longest_xact_ms(write=False))
        self.report.add(Row("retention", "longest read lock held on app tables (full refresh transaction)", "ms",
                            round(read_ms, 1), n=1, target="<= 100 ms", ok=read_ms <= 100,
                            note="AccessShareLock only: blocks no INSERT/UPDATE/DELETE, but a DDL statement "
                                 "(ALTER TABLE, CREATE INDEX) on these tables would wait for it; strongest "
                                 "locks seen: " + (", ".join(sampler.strongest()) or "none")))
        self.report.details["retention"] = {"detail": detail, "total_ms": total_ms, "topped_up": topped_up,
                                            "probe_ms_max": probe.max_ms, "probe_count": probe.count,
                                            "lock_modes": sorted(sampler.modes), "batch_size": batch_size}

    # ---- all of it
    def run(self) -> Report:
        started = time.monotonic()
        self.prepare_data()
        self.bench_migrate()
        with connect(self.cluster.url(MONITORED)) as c:
            self.bench_views(c)
            self.bench_checks(c)
            self.bench_cron(c)
            self.bench_spec(c)
        self.bench_writes()
        self.bench_retention()
        own, kids = peak_memory_mb()
        self.report.add(Row("process", "peak memory of the benchmark process", "MB", round(own, 1),
                            target="< 500 MB", ok=own < 500, note=f"largest child (pgbench): {kids:.1f} MB"))
        self.report.wall_seconds = time.monotonic() - started
        if self.opts.quick:
            self.report.add(Row("process", "bench --quick wall time", "s", round(self.report.wall_seconds),
                                target="< 600 s", ok=self.report.wall_seconds < 600))
        if not self.opts.keep:
            for name in (MONITORED, PLAIN, EMPTY):
                self.cluster.drop(name)
        return self.report


def _hot_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    upd = after[0] - before[0]
    return round(100 * (after[1] - before[1]) / upd, 1) if upd > 0 else None


# -- the retention probes -------------------------------------------------------------------------

class Probe(threading.Thread):
    """The app during retention: inserts an error row and updates a recent notification, in a loop."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.max_ms = 0.0
        self.count = 0

    def run(self) -> None:
        with connect(self.url) as c:
            c.execute("set lock_timeout = '30s'")
            row = c.execute("select id from public.whatsapp_notifications "
                            "where created_at > now() - interval '1 hour' limit 1").fetchone()
            nid = row[0] if row else None
            stmts = [("insert into public.whatsapp_error_logs (error_type, error_message) "
                      "values ('bench_probe', 'probe')", None)]
            if nid is not None:
                stmts.append(("update public.whatsapp_notifications set updated_at = updated_at where id = %s", nid))
            while not self.stop.is_set():
                for q, arg in stmts:
                    ms = timed(c, q, (arg,) if arg is not None else None)
                    self.max_ms = max(self.max_ms, ms)
                    self.count += 1
                time.sleep(0.005)
            c.execute("delete from public.whatsapp_error_logs where error_type = 'bench_probe'")


class LockSampler(threading.Thread):
    """Every 10 ms: which locks the retention backend holds on app tables, and who waits on it."""

    ORDER = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
             "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")

    def __init__(self, url: str, pid: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.stop = url, pid, stop
        self.modes: set[tuple[str, str]] = set()
        self.longest_wait_ms = 0.0
        self.samples = 0
        # per transaction of the retention backend (keyed by xact_start): its age at the last
        # sample where it held a lock on an app table, and whether that lock was a write lock
        self.xacts: dict[dt.datetime, tuple[float, bool]] = {}

    def longest_xact_ms(self, write: bool) -> float:
        """Longest-lived transaction seen holding a (write, or only read) lock on an app table."""
        return max((age for age, wrote in self.xacts.values() if wrote == write), default=0.0)

    def strongest(self) -> list[str]:
        best: dict[str, str] = {}
        for rel, mode in self.modes:
            if mode in self.ORDER and (rel not in best or self.ORDER.index(mode) > self.ORDER.index(best[rel])):
                best[rel] = mode
        return [f"{mode} on {rel}" for rel, mode in sorted(best.items())]

    def run(self) -> None:
        waiting_since: dict[int, float] = {}
        with connect(self.url) as c:
            while not self.stop.is_set():
                held = c.execute(
                    "select c.relname::text, l.mode, a.xact_start, "
                    "extract(epoch from clock_timestamp() - a.xact_start) "
                    "from pg_locks as l join pg_class as c on c.oid = l.relation "
                    "join pg_stat_activity as a on a.pid = l.pid "
                    "where l.pid = %s and l.locktype = 'relation' and c.relkind in ('r', 'p') "
                    "and c.relname like 'whatsapp\\_%%'", (self.pid,)
                ).fetchall()
                for rel, mode, xact_start, age_s in held:
                    self.modes.add((rel, mode))
                    if xact_start is not None:
                        prev_age, prev_write = self.xacts.get(xact_start, (0.0, False))
                        self.xacts[xact_start] = (max(prev_age, float(age_s) * 1000),
                                                  prev_write or mode != "AccessShareLock")
                now = time.monotonic()
                blocked = {r[0] for r in c.execute(
                    "select pid from pg_stat_activity where %s = any(pg_blocking_pids(pid))", (self.pid,)
                ).fetchall()}
                self.samples += 1
                for p in blocked:
                    waiting_since.setdefault(p, now)
                for p in list(waiting_since):
                    self.longest_wait_ms = max(self.longest_wait_ms, (now - waiting_since[p]) * 1000)
                    if p not in blocked:
                        del waiting_since[p]
                time.sleep(0.01)


def run(opts: BenchOptions, say: Say, bar: Callable[[str, int, int], None]) -> Report:
    return Bench(opts, say, bar).run()
