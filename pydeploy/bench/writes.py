"""Stage 3, writes: the app's write throughput and WAL per write, plain vs monitored (pgbench, back-to-back pairs)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from pydeploy.bench.cluster import MONITORED, PLAIN
from pydeploy.bench.context import Run
from pydeploy.bench.measure import connect
from pydeploy.bench.queries import RECEIPT_SCRIPT, WRITER_SCRIPT
from pydeploy.bench.reads import cron_jobs, run_cycle
from pydeploy.bench.report import summarize
from pydeploy.errors import PydeployError

CRON_PERIOD_S = 60.0  # pg_cron's every-minute jobs


def bench_writes(run: Run) -> None:
    """Each round runs pgbench on both databases at the same time, `writers` clients each, so both
    see the same machine: the ratio of their transaction counts in a round is the monitoring's cost.
    (Rounds run one after the other were noise: on this 2-core virtual machine an A/A check, the
    plain database against a monitored copy with the monitoring's triggers and index removed, gave
    88-122 % per pair; side by side it gave 97-103 %.)"""
    o = run.opts
    pgbench = _pgbench_path()
    dbs = {"plain": run.cluster.url(PLAIN), "monitored": run.cluster.url(MONITORED)}
    hot = {k: _update_stats(u) for k, u in dbs.items()}
    tps: dict[str, list[float]] = {"plain": [], "monitored": []}
    tx: dict[str, int] = {"plain": 0, "monitored": 0}
    wal: dict[str, list[float]] = {"plain": [], "monitored": []}
    cycles: list[float] = []
    next_cycle = 0.0  # in seconds of run time, one cron cycle per CRON_PERIOD_S on the monitored database
    oids = {kind: run.cluster.oid(PLAIN if kind == "plain" else MONITORED) for kind in dbs}
    with tempfile.TemporaryDirectory(prefix="pydeploy-bench-") as tmp:
        script = Path(tmp) / "writer.sql"
        script.write_text(WRITER_SCRIPT)
        for r in range(o.write_rounds):
            run.bar("app writes (pgbench, side by side)", r, o.write_rounds)
            _checkpoint(run)
            offsets = []
            start = r * o.write_seconds
            while next_cycle < start + o.write_seconds:
                offsets.append(max(0.0, next_cycle - start))
                next_cycle += CRON_PERIOD_S
            measured = _reset_statement_wal(run, list(oids.values()))
            done = _pgbench_pair(run, pgbench, script, dbs, offsets, cycles)
            wal_bytes = _statement_wal(run) if measured else None
            for kind, (count, rate) in done.items():
                tx[kind] += count
                tps[kind].append(rate)
                if wal_bytes is not None:
                    wal[kind].append(wal_bytes.get(oids[kind], 0.0) / max(1, count))
        run.bar("app writes (pgbench, side by side)", o.write_rounds, o.write_rounds)
    hot_after = {k: _update_stats(u) for k, u in dbs.items()}
    for kind in ("plain", "monitored"):
        run.report.add(summarize("writes", f"app writes, {kind} database ({o.writers} writers)", tps[kind],
                                 "tx/s", note="tx = INSERT + 2 status UPDATEs; both databases written at once"))
    pairs = [100 * m / max(1e-9, p) for p, m in zip(tps["plain"], tps["monitored"], strict=True)]
    aggregate = 100 * tx["monitored"] / max(1, tx["plain"])
    hot_share = {k: _hot_share(hot[k], hot_after[k]) for k in dbs}
    run.report.add(summarize(
       "writes", "write throughput monitored/plain", [round(x, 1) for x in pairs], "%",
       target=">= 95 %", check=lambda m: m >= 95,
       note=f"median of {len(pairs)} rounds, both databases written side by side (all transactions: "
            f"{aggregate:.1f} %); {len(cycles)} cron cycle(s) ran on the monitored database meanwhile "
            f"(one per {CRON_PERIOD_S:.0f} s); HOT updates: plain {hot_share['plain']} %, "
            f"monitored {hot_share['monitored']} %"))
    # WAL the app's statements wrote per transaction: the work each write costs, free of the noise
    if wal["plain"] and wal["monitored"]:
        for kind in ("plain", "monitored"):
            run.report.add(summarize("writes", f"WAL per transaction, {kind} database", wal[kind], "bytes",
                                     note="WAL of the app's statements (pg_stat_statements.wal_bytes, the "
                                          "triggers' and indexes' included) / transactions"))
        wal_pairs = [round(100 * m / max(1e-9, p), 1) for p, m in zip(wal["plain"], wal["monitored"], strict=True)]
        run.report.add(summarize("writes", "WAL per transaction monitored/plain", wal_pairs, "%",
                                 note="more WAL = more pages written per write: the cost the monitoring adds"))
    run.report.details["writes"] = {"wal_bytes_per_tx": wal, "tps": tps, "transactions": tx,
                                    "seconds_each": o.write_seconds, "hot_update_pct": hot_share,
                                    "cron_cycles_ms": [round(x, 1) for x in cycles]}
    for url in dbs.values():
        with connect(url) as c:
            c.execute("delete from public.whatsapp_notifications where order_id like 'BENCH-%'")
            c.execute("vacuum (analyze) public.whatsapp_notifications")
    with connect(dbs["monitored"]) as c:
        c.execute("select monitoring.refresh_rollups()")  # consume what the deletes logged
    bench_late_receipts(run, pgbench, dbs)


def _pgbench_path() -> str:
    pgbench = shutil.which("pgbench")
    if not pgbench:
        raise PydeployError("pgbench is not installed (it measures the app's write throughput)",
                            "apt-get install postgresql-client")
    return pgbench


def bench_late_receipts(run: Run, pgbench: str, dbs: dict[str, str]) -> None:
    """What a late change costs the app: read receipts for rows 1 to 6 days old, which the
    monitoring's change-capture triggers log (young rows never run them)."""
    o = run.opts
    for url in dbs.values():
        with connect(url) as c:
            c.execute("drop table if exists public.bench_receipt_ids")
            c.execute("""create table public.bench_receipt_ids as
                         select row_number() over ()::integer as k, id from (
                           select id from public.whatsapp_notifications
                           where created_at between now() - interval '6 days' and now() - interval '1 day'
                           order by created_at limit 50000) as s""")
            c.execute("alter table public.bench_receipt_ids add primary key (k)")
    tps: dict[str, list[float]] = {"plain": [], "monitored": []}
    with tempfile.TemporaryDirectory(prefix="pydeploy-bench-") as tmp:
        script = Path(tmp) / "receipts.sql"
        script.write_text(RECEIPT_SCRIPT)
        rounds = max(2, o.write_rounds // 2)
        for r in range(rounds):
            run.bar("late receipts (pgbench, side by side)", r, rounds)
            _checkpoint(run)
            for kind, (_, rate) in _pgbench_pair(run, pgbench, script, dbs, [], []).items():
                tps[kind].append(rate)
        run.bar("late receipts (pgbench, side by side)", rounds, rounds)
    pairs = [round(100 * m / max(1e-9, p), 1) for p, m in zip(tps["plain"], tps["monitored"], strict=True)]
    for kind in ("plain", "monitored"):
        run.report.add(summarize("writes", f"late read receipts, {kind} database ({o.writers} writers)", tps[kind],
                                 "tx/s", note="UPDATE of a row 1-6 days old: the change-capture trigger runs"))
    run.report.add(summarize("writes", "late read receipts monitored/plain", pairs, "%",
                             note="the cost of logging a late change (-1/+1 rows); young rows never pay it"))
    with connect(dbs["monitored"]) as c:
        c.execute("select monitoring.refresh_rollups()")  # consume what the receipts logged
    for url in dbs.values():
        with connect(url) as c:
            c.execute("drop table if exists public.bench_receipt_ids")


def _checkpoint(run: Run) -> None:
    """Every round starts from the same state: no dirty pages of the previous one to write."""
    with connect(run.opts.admin_url) as c, contextlib.suppress(psycopg.Error):
        c.execute("checkpoint")


def _update_stats(url: str) -> tuple[int, int]:
    with connect(url) as c:
        row = c.execute("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables "
                        "where relid = 'public.whatsapp_notifications'::regclass").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _pgbench_pair(run: Run, pgbench: str, script: Path, dbs: dict[str, str], cycle_offsets: list[float],
                  cycles: list[float]) -> dict[str, tuple[int, float]]:
    """pgbench on every database of `dbs` at once; the cron cycles (at `cycle_offsets` seconds) run
    on the monitored one meanwhile. Returns {kind: (transactions, tps)}."""
    o = run.opts
    procs = {}
    for kind, url in dbs.items():
        cmd = [pgbench, "-n", "-f", str(script), "-c", str(o.writers),
               "-j", str(min(o.writers, os.cpu_count() or 1)), "-T", str(int(o.write_seconds)), url]
        procs[kind] = (cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    t0 = time.monotonic()
    if cycle_offsets:
        with connect(dbs["monitored"]) as c:
            jobs = cron_jobs(c)
            for off in cycle_offsets:
                time.sleep(max(0.0, off - (time.monotonic() - t0)))
                cycles.append(sum(run_cycle(c, jobs).values()))
    out: dict[str, tuple[int, float]] = {}
    for kind, (cmd, proc) in procs.items():
        text, _ = proc.communicate(timeout=o.write_seconds * 5 + 60)
        m_tx = re.search(r"number of transactions actually processed: (\d+)", text)
        m_tps = re.search(r"tps = ([0-9.]+)", text)
        if proc.returncode != 0 or not m_tx or not m_tps:
            raise PydeployError(f"pgbench failed on the {kind} database (exit {proc.returncode}):\n{text[-2000:]}",
                                "run the command by hand: " + " ".join(cmd[:-1]) + " <url>")
        out[kind] = (int(m_tx.group(1)), float(m_tps.group(1)))
    return out


def _reset_statement_wal(run: Run, oids: list[int]) -> bool:
    """Zero pg_stat_statements for the benchmark databases alone (a difference of two readings goes
    wrong when an entry is evicted between them); False where the extension is absent."""
    try:
        with connect(run.cluster.url(MONITORED)) as c:
            for oid in oids:
                c.execute("select extensions.pg_stat_statements_reset(0, %s::oid, 0)", (oid,))
    except psycopg.Error:
        return False
    return True


def _statement_wal(run: Run) -> dict[int, float] | None:
    """WAL bytes written by the app's statements since the reset, per database oid (pg_stat_statements
    of the cluster, read in the monitored database where the extension lives); None where it is absent."""
    try:
        with connect(run.cluster.url(MONITORED)) as c:
            rows = c.execute(
                "select s.dbid::bigint, sum(s.wal_bytes)::float8 from extensions.pg_stat_statements as s "
                "where s.query ~* 'public\\.whatsapp_notifications' and s.query !~* '^\\s*(delete|vacuum|select)' "
                "group by s.dbid").fetchall()
    except psycopg.Error:
        return None
    return {int(r[0]): float(r[1]) for r in rows}


def _hot_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    upd = after[0] - before[0]
    return round(100 * (after[1] - before[1]) / upd, 1) if upd > 0 else None
