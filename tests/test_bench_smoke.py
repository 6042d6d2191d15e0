"""`pydeploy bench` at tiny scale: the generator's data has the promised shape, and the command runs
end to end and prints every figure as JSON. The full benchmark is not part of `make test`."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from pydeploy import bench
from pydeploy.bench import data as bench_data
from pydeploy.bench.data import Scale
from pydeploy.errors import ConfigError

TINY = Scale(notifications=6000, recent=1500, errors=600, days=40, sessions=5, chunk_rows=1000)


def test_scale_parses_factors_and_counts() -> None:
    assert Scale.parse("1").notifications == 10_000_000
    assert Scale.parse("0.1") == Scale.factor(0.1)
    assert Scale.factor(0.1).notifications == 1_000_000
    assert Scale.factor(0.1).recent == 100_000
    assert Scale.parse("2M").notifications == 2_000_000
    assert Scale.parse("500k").errors == 50_000
    assert Scale.parse("3000").notifications == 3000
    for bad in ("", "abc", "-1", "0"):
        with pytest.raises(ConfigError):
            Scale.parse(bad)


def test_plan_is_exact_and_time_ordered() -> None:
    t0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    slots = bench_data.plan(TINY, t0)
    assert sum(s.rows for s in slots) == TINY.notifications
    assert sum(s.rows for s in slots if s.start >= t0 - dt.timedelta(hours=24)) == TINY.recent
    assert [s.start for s in slots] == sorted(s.start for s in slots)
    assert slots[0].start == t0 - dt.timedelta(days=TINY.days)
    chunks = bench_data.chunks(slots, TINY.chunk_rows)
    assert sum(len(c) for c in chunks) == len(slots)


@pytest.fixture
def generated(scratch_db) -> tuple[str, bench_data.Generated]:
    url = scratch_db()
    bench.create_app_tables(url)
    with psycopg.connect(url, autocommit=True) as c:
        g = bench_data.generate(c, TINY)
    return url, g


def one(c: psycopg.Connection, q: str, *args: object) -> object:
    row = c.execute(q, args or None).fetchone()
    assert row is not None
    return row[0]


def test_generated_data_has_the_promised_shape(generated) -> None:
    url, g = generated
    t0 = g.t0
    window = dt.timedelta(minutes=TINY.update_window_minutes)
    with psycopg.connect(url) as c:
        assert g.notifications == TINY.notifications
        assert one(c, "select count(*) from whatsapp_notifications where created_at >= %s",
                   t0 - dt.timedelta(hours=24)) == TINY.recent
        assert one(c, "select max(created_at) from whatsapp_notifications") < t0
        assert one(c, "select min(created_at) from whatsapp_notifications") >= t0 - dt.timedelta(days=TINY.days)
        # time-ordered on disk (rows the sender updated afterwards moved, as in production; a row that did
        # not fit on the last page of one chunk may leave room that the next chunk's first row takes)
        assert one(c, """select count(*) from (
                           select created_at, lag(created_at) over (order by ctid) as prev
                           from whatsapp_notifications where created_at < %s) as x
                         where created_at < prev""", t0 - window) <= 0.005 * TINY.notifications
        # the status lifecycle
        statuses = dict(c.execute("select status, count(*) from whatsapp_notifications group by 1").fetchall())
        assert set(statuses) <= {"pending", "processing", "sent", "failed"}
        assert {"sent", "failed"} <= set(statuses)
        assert 0.03 <= statuses["failed"] / g.notifications <= 0.12
        assert one(c, """select count(*) from whatsapp_notifications
                         where status in ('pending', 'processing') and created_at < %s""", t0 - window) == 0
        assert one(c, """select count(*) from whatsapp_notifications where status = 'sent' and not (
                           sent_at >= processing_started_at and processing_started_at >= created_at)""") == 0
        assert one(c, "select count(*) from whatsapp_notifications where status = 'failed' and failed_at is null") == 0
        assert one(c, "select count(*) from whatsapp_notifications where status = 'pending' "
                      "and processing_started_at is not null") == 0
        # rows of the update window went through UPDATEs (pending -> processing -> sent/failed)
        assert one(c, """select count(*) from whatsapp_notifications
                         where created_at >= %s and status in ('sent', 'failed')""", t0 - window) > 0
        # errors: about the ratio asked, linked to real notifications, a tenth without one
        assert 0.07 <= g.errors / g.notifications <= 0.13
        assert one(c, """select count(*) from whatsapp_error_logs e where e.notification_id is not null
                         and not exists (select 1 from whatsapp_notifications n where n.id = e.notification_id)""") == 0
        unlinked = one(c, "select count(*) from whatsapp_error_logs where notification_id is null")
        assert 0.05 * g.errors <= unlinked <= 0.2 * g.errors
        assert one(c, "select count(*) from whatsapp_error_logs where created_at < %s",
                   t0 - dt.timedelta(days=30)) > 0  # something for retention to delete
        assert one(c, "select count(distinct error_type) from whatsapp_error_logs") >= 4
        # sessions: the requested number, one of them disconnected for 10 minutes
        assert g.sessions == TINY.sessions
        assert one(c, "select count(*) from whatsapp_sessions where connection_state = 'disconnected'") == 1
        assert one(c, "select count(*) from whatsapp_sessions where is_active") >= 1
        # indexes are back after the load
        assert one(c, "select count(*) from pg_index where indrelid = 'whatsapp_notifications'::regclass") == 1


def test_bench_runs_end_to_end_and_prints_every_figure(run_cli, engine_url) -> None:
    r = run_cli("bench", "--scale", "3000", "--repeat", "2", "--write-seconds", "1", "--write-rounds", "2", "--json",
                timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    rows = {(x["group"], x["name"]): x for x in doc["rows"]}
    names = {n for _, n in rows}
    groups = {g for g, _ in rows}
    assert {"setup", "views", "checks", "cron", "spec vs ours", "writes", "retention", "ingest", "process",
            "digests"} <= groups
    ingest = [x for (g, _), x in rows.items() if g == "ingest"]
    assert len(ingest) == 1 and ingest[0]["n"] == 2 and ingest[0]["target"] == "< 50 ms"
    for kind in ("daily", "weekly", "monthly"):
        assert rows[("digests", f"digest('{kind}')")]["median"] > 0, kind
    for view in ("delivery_stats", "delivery_stats_24h", "top_errors_24h", "error_trends", "active_sessions",
                 "connection_status", "queue_stats", "delivery_latency", "hourly_stats", "function_stats",
                 "slow_queries", "health()"):
        assert ("views", view) in rows, view
    for ours in bench.SPEC_QUERIES:
        assert f"ratio spec/ours: {ours}" in names
    assert any(n.startswith("full cron cycle") for n in names)
    # what the evaluate job adds every fifth minute is shown beside the cycle that leaves it out
    assert any(n.startswith("slow-statement snapshot (") for n in names)
    minute = [x for (g, n), x in rows.items() if g == "cron" and n.startswith("ordinary minute (")]
    assert len(minute) == 1 and minute[0]["median"] > 0 and minute[0]["target"] == "< 50 ms"
    assert "evaluate, watchdog, dispatch" in minute[0]["name"] or "dispatch, evaluate, watchdog" in minute[0]["name"]
    assert "write throughput monitored/plain" in names
    # both databases written side by side: per-database WAL, never a difference gone negative
    for kind in ("plain", "monitored"):
        assert rows[("writes", f"WAL per transaction, {kind} database")]["low"] > 0, kind
    assert 90 <= rows[("writes", "WAL per transaction monitored/plain")]["high"] <= 200
    assert "cleanup rate (batched deletes, each committed)" in names
    assert any(n.startswith("longest lock wait it caused") for n in names)
    assert any(n.startswith("longest write lock held on app tables") for n in names)
    assert any(n.startswith("longest read lock held on app tables") for n in names)
    assert rows[("retention", "cleanup rate (batched deletes, each committed)")]["median"] > 0, "it deleted rows"
    assert "peak memory of the benchmark process" in names
    assert any(n.startswith("migrate, empty database") for n in names)
    assert sum(g == "checks" for g, _ in rows) >= 5
    for x in doc["rows"]:
        assert x["median"] is not None, x
        assert x["status"] in ("", "PASS", "MISS")
        assert (x["status"] == "") == (x["target"] == ""), x
    assert doc["data"]["notifications"] == 3000
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["postgres"].startswith("PostgreSQL")
    assert doc["targets"]["pass"] + doc["targets"]["miss"] == sum(x["target"] != "" for x in doc["rows"])
    # the benchmark cleans up after itself
    with psycopg.connect(engine_url) as c:
        assert one(c, "select count(*) from pg_database where datname like 'bench\\_%'") == 0
