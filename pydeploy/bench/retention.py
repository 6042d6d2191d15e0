"""Stage 4, retention: the scheduled cleanup's rate, and how long it makes the app wait (probe and lock sampler)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import psycopg

from pydeploy.bench.cluster import MONITORED
from pydeploy.bench.context import Run
from pydeploy.bench.measure import connect, timed
from pydeploy.bench.report import Row
from pydeploy.errors import PydeployError


def bench_retention(run: Run) -> None:
    """The scheduled job's command (monitoring.expected_jobs): batches committed one by one.

    It really deletes (the databases are the benchmark's own). When fewer than 100,000 error
    rows are older than keep_for (a rerun on --keep data), 200,000 are added first so that
    every run measures a comparable cleanup.
    """
    url = run.cluster.url(MONITORED)
    batch_size, topped_up = _top_up(url)
    total_ms, detail, probe, sampler = _run_watched(run, url)
    _add_rows(run, total_ms, detail, probe, sampler, batch_size, topped_up)


def _top_up(url: str) -> tuple[int, int]:
    """(batch size, rows added): 200,000 expired error rows when fewer than 100,000 are there."""
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
    return batch_size, topped_up


def _run_watched(run: Run, url: str) -> tuple[float, dict[str, Any], Probe, LockSampler]:
    """Call the retention job while the probe and the lock sampler watch; (ms, its job_runs detail, them)."""
    stop = threading.Event()
    probe = Probe(url, stop)
    with connect(url) as c:
        pid = c.info.backend_pid
        sampler = LockSampler(url, pid, stop)
        probe.start()
        sampler.start()
        time.sleep(0.3)  # the probe's baseline
        run.bar("retention", 0, 1)
        try:
            t0 = time.perf_counter()
            c.execute(_job_command(c))
            total_ms = (time.perf_counter() - t0) * 1000
        finally:
            time.sleep(0.2)
            stop.set()
            probe.join()
            sampler.join()
        run.bar("retention", 1, 1)
        row = c.execute("select ok, error, detail from monitoring.job_runs where job = 'retention' "
                        "order by id desc limit 1").fetchone()
    if not row or not row[0]:
        raise PydeployError(f"the retention job failed: {row[1] if row else 'no job_runs row'}",
                            "see select * from monitoring.job_runs where job = 'retention'")
    return total_ms, row[2] or {}, probe, sampler


def _job_command(c: psycopg.Connection) -> str:
    """The retention job's pg_cron command, as schedule_jobs() installs it."""
    row = c.execute("select command from monitoring.expected_jobs where job = 'retention'").fetchone()
    if not row:
        raise PydeployError("monitoring.expected_jobs has no retention job",
                            "enable it: update monitoring.jobs set enabled = true where job = 'retention'")
    return str(row[0])


def _add_rows(run: Run, total_ms: float, detail: dict[str, Any], probe: Probe, sampler: LockSampler,
              batch_size: int, topped_up: int) -> None:
    deleted = int(sum(int(v) for v in (detail.get("deleted") or {}).values()))
    refresh_ms = float(detail.get("refreshMs") or 0)
    batch_ms = float(detail.get("longestBatchMs") or 0)
    delete_s = max(1e-6, (total_ms - refresh_ms) / 1000)
    rate = deleted / delete_s if deleted else 0.0
    seeded = f" ({topped_up:,} expired rows added first)" if topped_up else ""
    run.report.add(Row("retention", "cleanup rate (batched deletes, each committed)", "rows/s", round(rate),
                       n=1, target=">= 100000 rows/s", ok=rate >= 100_000,
                       note=f"{deleted:,} rows in {delete_s:.2f} s{seeded}; then a regular refresh_rollups() "
                            f"{refresh_ms:.0f} ms in its own transaction"))
    run.report.add(Row("retention", "longest lock wait it caused (app, sampled every 10 ms)", "ms",
                       round(sampler.longest_wait_ms, 1), n=sampler.samples, target="<= 100 ms",
                       ok=sampler.longest_wait_ms <= 100,
                       note="sessions blocked by the retention backend (pg_blocking_pids) while it ran"))
    run.report.add(Row("retention", "slowest app statement during retention (probe)", "ms",
                       round(probe.max_ms, 1), n=probe.count,
                       note="INSERT of an error row and UPDATE of a recent notification in a loop; "
                            "includes CPU contention, not only locks"))
    write_ms = max(batch_ms, sampler.longest_xact_ms(write=True))
    run.report.add(Row("retention", "longest write lock held on app tables (one batch transaction)", "ms",
                       round(write_ms, 1), n=1, target="<= 100 ms", ok=write_ms <= 100,
                       note=f"batches of {batch_size:,} rows, each committed; measured by the job "
                            "(longestBatchMs) and by the sampler (transaction age while it held "
                            "RowExclusiveLock or stronger on a whatsapp_ table)"))
    read_ms = max(refresh_ms, sampler.longest_xact_ms(write=False))
    run.report.add(Row("retention", "longest read lock held on app tables (full refresh transaction)", "ms",
                       round(read_ms, 1), n=1, target="<= 100 ms", ok=read_ms <= 100,
                       note="AccessShareLock only: blocks no INSERT/UPDATE/DELETE, but a DDL statement "
                            "(ALTER TABLE, CREATE INDEX) on these tables would wait for it; strongest "
                            "locks seen: " + (", ".join(sampler.strongest()) or "none")))
    run.report.details["retention"] = {"detail": detail, "total_ms": total_ms, "topped_up": topped_up,
                                       "probe_ms_max": probe.max_ms, "probe_count": probe.count,
                                       "lock_modes": sorted(sampler.modes), "batch_size": batch_size}


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
