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
    o = run.opts
    pgbench = shutil.which("pgbench")
    if not pgbench:
        raise PydeployError("pgbench is not installed (it measures the app's write throughput)",
                            "apt-get install postgresql-client")
    dbs = {"plain": run.cluster.url(PLAIN), "monitored": run.cluster.url(MONITORED)}
    hot = {k: _update_stats(u) for k, u in dbs.items()}
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
                run.bar("app writes (pgbench)", 2 * r + j, steps)
                _checkpoint(run)
                offsets = []
                if kind == "monitored":
                    start = r * o.write_seconds
                    while next_cycle < start + o.write_seconds:
                        offsets.append(max(0.0, next_cycle - start))
                        next_cycle += CRON_PERIOD_S
                lsn = _wal_lsn(run)
                done, rate = _pgbench(run, pgbench, script, dbs[kind], offsets, cycles)
                wal[kind].append(_wal_bytes_since(run, lsn) / max(1, done))
                tx[kind] += done
                tps[kind].append(rate)
        run.bar("app writes (pgbench)", steps, steps)
    hot_after = {k: _update_stats(u) for k, u in dbs.items()}
    for kind in ("plain", "monitored"):
        run.report.add(summarize("writes", f"app writes, {kind} database ({o.writers} writers)", tps[kind],
                                 "tx/s", note="tx = INSERT + 2 status UPDATEs"))
    # each round runs both databases back to back: the ratio of a pair cancels the machine's drift
    pairs = [100 * m / max(1e-9, p) for p, m in zip(tps["plain"], tps["monitored"], strict=True)]
    aggregate = 100 * tx["monitored"] / max(1, tx["plain"])
    hot_share = {k: _hot_share(hot[k], hot_after[k]) for k in dbs}
    run.report.add(summarize(
       "writes", "write throughput monitored/plain", [round(x, 1) for x in pairs], "%",
       target=">= 95 %", check=lambda m: m >= 95,
       note=f"median of {len(pairs)} back-to-back pairs (all transactions: {aggregate:.1f} %); "
            f"{len(cycles)} cron cycle(s) ran during the monitored rounds (one per {CRON_PERIOD_S:.0f} s); "
            f"HOT updates: plain {hot_share['plain']} %, monitored {hot_share['monitored']} %"))
    # WAL written per transaction: the work each write costs, free of the machine's noise
    for kind in ("plain", "monitored"):
        run.report.add(summarize("writes", f"WAL per transaction, {kind} database", wal[kind], "bytes",
                                 note="cluster WAL during the round / transactions (cron cycles included)"))
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
    bench_late_receipts(run, pgbench, dbs)


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
            for j, kind in enumerate(("plain", "monitored") if r % 2 == 0 else ("monitored", "plain")):
                run.bar("late receipts (pgbench)", 2 * r + j, 2 * rounds)
                _checkpoint(run)
                tps[kind].append(_pgbench(run, pgbench, script, dbs[kind], [], [])[1])
        run.bar("late receipts (pgbench)", 2 * rounds, 2 * rounds)
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


def _wal_lsn(run: Run) -> str:
    with connect(run.opts.admin_url) as c:
        row = c.execute("select pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def _wal_bytes_since(run: Run, lsn: str) -> float:
    with connect(run.opts.admin_url) as c:
        row = c.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,)).fetchone()
    return float(row[0]) if row else 0.0


def _checkpoint(run: Run) -> None:
    """Every round starts from the same state: no dirty pages of the previous one to write."""
    with connect(run.opts.admin_url) as c, contextlib.suppress(psycopg.Error):
        c.execute("checkpoint")


def _update_stats(url: str) -> tuple[int, int]:
    with connect(url) as c:
        row = c.execute("select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables "
                        "where relid = 'public.whatsapp_notifications'::regclass").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _pgbench(run: Run, pgbench: str, script: Path, url: str, cycle_offsets: list[float],
             cycles: list[float]) -> tuple[int, float]:
    o = run.opts
    cmd = [pgbench, "-n", "-f", str(script), "-c", str(o.writers), "-j", str(min(o.writers, os.cpu_count() or 1)),
           "-T", str(int(o.write_seconds)), url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    if cycle_offsets:
        with connect(url) as c:
            jobs = cron_jobs(c)
            for off in cycle_offsets:
                time.sleep(max(0.0, off - (time.monotonic() - t0)))
                cycles.append(sum(run_cycle(c, jobs).values()))
    out, _ = proc.communicate(timeout=o.write_seconds * 5 + 60)
    m_tx = re.search(r"number of transactions actually processed: (\d+)", out)
    m_tps = re.search(r"tps = ([0-9.]+)", out)
    if proc.returncode != 0 or not m_tx or not m_tps:
        raise PydeployError(f"pgbench failed (exit {proc.returncode}):\n{out[-2000:]}",
                            "run the command by hand: " + " ".join(cmd[:-1]) + " <url>")
    return int(m_tx.group(1)), float(m_tps.group(1))


def _hot_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    upd = after[0] - before[0]
    return round(100 * (after[1] - before[1]) / upd, 1) if upd > 0 else None
