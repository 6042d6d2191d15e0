"""The spec's three SQL queries, run verbatim, give the same numbers as the views; the seed loads
and fills every view; the tables migration upgrades a project whose tables have fewer columns.

Inside one transaction now() is fixed, so the spec's NOW() and the views' now() agree.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from pydeploy.sql_split import split_and_trim

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "supabase" / "migrations"
OUR_MIGRATIONS = sorted(MIGRATIONS.glob("*.sql"))

# Verbatim from spec/production-monitoring-guide.md, "Database Monitoring" (checked against the
# spec itself below when ../shared/spec is beside the checkout, as in CI and the work tree).
SPEC_FILE = ROOT.parent / "shared" / "spec" / "production-monitoring-guide.md"
SPEC_DELIVERY_RATE = "\n".join(
    [
        "-- Delivery rate for last 24 hours",
        "SELECT ",
        "  COUNT(*) as total,",
        "  SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) as successful,",
        "  SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) as failed,",
        "  ROUND(100.0 * SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) / COUNT(*), 2) as delivery_rate",
        "FROM whatsapp_notifications",
        "WHERE created_at > NOW() - INTERVAL '24 hours';",
    ]
)

SPEC_TOP_ERRORS = "\n".join(
    [
        "-- Top errors in last 24 hours",
        "SELECT ",
        "  error_type,",
        "  COUNT(*) as count,",
        "  MAX(created_at) as last_occurrence",
        "FROM whatsapp_error_logs",
        "WHERE created_at > NOW() - INTERVAL '24 hours'",
        "GROUP BY error_type",
        "ORDER BY count DESC",
        "LIMIT 10;",
    ]
)

SPEC_ACTIVE_SESSIONS = "\n".join(
    [
        "-- Check active sessions",
        "SELECT ",
        "  session_id,",
        "  phone_number,",
        "  is_active,",
        "  updated_at,",
        "  EXTRACT(EPOCH FROM (NOW() - updated_at)) / 3600 as hours_since_update",
        "FROM whatsapp_sessions",
        "WHERE is_active = true;",
    ]
)


def test_queries_are_the_spec_verbatim() -> None:
    if not SPEC_FILE.exists():
        pytest.skip(f"{SPEC_FILE} not found")
    spec = SPEC_FILE.read_text()
    for query in (SPEC_DELIVERY_RATE, SPEC_TOP_ERRORS, SPEC_ACTIVE_SESSIONS):
        assert f"```sql\n{query}\n```" in spec


def fetch(conn: psycopg.Connection, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


@pytest.fixture
def traffic(conn: psycopg.Connection) -> psycopg.Connection:
    """A day of traffic relative to now(), error counts without ties, two sessions."""
    with conn.cursor() as cur:
        cur.execute("set local search_path = public, extensions")
        cur.execute("delete from public.whatsapp_notifications")
        cur.execute("delete from public.whatsapp_error_logs")
        cur.execute("delete from public.whatsapp_sessions")
        # As if the rollups had never been refreshed (a pg_cron job may have refreshed them in this
        # engine): the "none" cases then read raw rows only, the others refresh first.
        cur.execute("update monitoring.rollup_state set watermark = '-infinity'")
        for table in ("notification_minutes", "latency_minutes", "error_minutes", "error_days"):
            cur.execute(f"delete from monitoring.{table}")
        cur.execute(
            """insert into public.whatsapp_notifications (phone_number, status, created_at)
               select '+5511999999999',
                 (array['sent', 'sent', 'sent', 'failed', 'pending', 'processing'])[1 + g % 6],
                 now() - g * interval '37 seconds'
               from generate_series(0, 4000) as g"""
        )
        cur.execute(
            """insert into public.whatsapp_error_logs (error_type, created_at)
               select 'type_' || lpad(k::text, 2, '0'), now() - i * interval '5 minutes' - k * interval '1 second'
               from generate_series(1, 14) as k, generate_series(1, 15 * k) as i"""
        )
        cur.execute(
            """insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state, updated_at)
               values ('a', '+5511999999999', true, 'connected', now() - interval '90 minutes'),
                      ('b', '+447911123456', true, 'disconnected', now() - interval '3 days'),
                      ('c', '+5521988887777', false, 'logged_out', now() - interval '9 days')"""
        )
    return conn


@pytest.mark.parametrize("refresh", ["none", "regular", "full"])
def test_delivery_rate_query_equals_view(traffic: psycopg.Connection, refresh: str) -> None:
    if refresh != "none":
        traffic.execute("select monitoring.refresh_rollups(p_full => %s)", (refresh == "full",))
    spec = fetch(traffic, SPEC_DELIVERY_RATE)
    view = fetch(traffic, "select total, successful, failed, delivery_rate from monitoring.delivery_stats_24h")
    assert spec == view
    assert spec[0][0] > 0


@pytest.mark.parametrize("refresh", ["none", "regular", "full"])
def test_receipts_are_the_one_deliberate_difference(traffic: psycopg.Connection, refresh: str) -> None:
    """A message WhatsApp accepted stays delivered when its receipts arrive; the spec's query, which
    counts only status 'sent', would count each receipt as a failed delivery."""
    traffic.execute(
        """update public.whatsapp_notifications set status = case when g % 2 = 0 then 'delivered' else 'read' end
           from (select id, row_number() over (order by created_at) as g from public.whatsapp_notifications
                 where status = 'sent' and created_at > now() - interval '20 hours' limit 500) as r
           where whatsapp_notifications.id = r.id"""
    )
    if refresh != "none":
        traffic.execute("select monitoring.refresh_rollups(p_full => %s)", (refresh == "full",))
    (total, spec_ok, spec_failed, spec_rate), = fetch(traffic, SPEC_DELIVERY_RATE)
    (v_total, ours_ok, ours_failed, ours_rate), = fetch(
        traffic, "select total, successful, failed, delivery_rate from monitoring.delivery_stats_24h")
    assert (v_total, ours_failed) == (total, spec_failed)
    assert ours_ok == spec_ok + 500, "delivered and read messages still count as delivered"
    assert ours_rate > spec_rate
    (receipts,) = fetch(traffic, "select delivered + read from monitoring.delivery_stats where window_name = '24h'")[0]
    assert receipts == 500


@pytest.mark.parametrize("refresh", ["none", "regular", "full"])
def test_top_errors_query_equals_view(traffic: psycopg.Connection, refresh: str) -> None:
    if refresh != "none":
        traffic.execute("select monitoring.refresh_rollups(p_full => %s)", (refresh == "full",))
    spec = fetch(traffic, SPEC_TOP_ERRORS)
    view = fetch(traffic, "select error_type, count, last_occurrence from monitoring.top_errors_24h")
    assert len(spec) == 10
    assert spec == view


def test_active_sessions_query_equals_view_with_masked_phones(traffic: psycopg.Connection) -> None:
    spec = {r[0]: r for r in fetch(traffic, SPEC_ACTIVE_SESSIONS)}
    view = {r[0]: r for r in fetch(traffic, "select * from monitoring.active_sessions")}
    assert spec.keys() == view.keys() == {"a", "b"}
    for key, row in spec.items():
        assert view[key][2:] == row[2:]
    assert view["a"][1] == "+55*******9999"
    assert view["b"][1] == "+44******3456"


def test_empty_tables_rate_100_where_spec_gives_null(conn: psycopg.Connection) -> None:
    conn.execute("set local search_path = public, extensions")
    conn.execute("delete from public.whatsapp_notifications")
    assert fetch(conn, SPEC_DELIVERY_RATE) == [(0, None, None, None)]
    assert fetch(conn, "select * from monitoring.delivery_stats_24h") == [(0, 0, 0, 100)]
    assert [r[0] for r in fetch(conn, "select delivery_rate from monitoring.delivery_stats")] == [100, 100, 100]


def test_seed_loads_fast_and_fills_every_view(conn: psycopg.Connection) -> None:
    seed = (ROOT / "supabase" / "seed.sql").read_text()
    started = time.monotonic()
    with conn.cursor() as cur:
        for statement in split_and_trim(seed):
            cur.execute(statement)
    assert time.monotonic() - started < 10
    for view in (
        "delivery_stats",
        "delivery_stats_24h",
        "top_errors_24h",
        "error_trends",
        "active_sessions",
        "connection_status",
        "queue_stats",
        "delivery_latency",
        "hourly_stats",
        "function_stats",
    ):
        rows = fetch(conn, f"select * from monitoring.{view}")
        assert rows, view
    # the story the seed tells
    one_hour = fetch(conn, "select delivery_rate from monitoring.delivery_stats where window_name = '1h'")[0][0]
    assert one_hour < 90
    assert fetch(conn, "select count(*) from monitoring.queue_stats where backlog_pending > 0")[0][0] == 2
    assert fetch(conn, "select monitoring.health() #>> '{services,whatsapp,status}'")[0][0] == "connected"


def test_tables_migration_upgrades_fewer_columns(scratch_db) -> None:
    """A project with older, thinner tables gets the missing columns, keys, checks and indexes;
    its rows survive; a row breaking a new check keeps the check `not valid`."""
    url = scratch_db()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            """create table public.whatsapp_notifications (
                 id bigserial primary key, phone_number text, status text, created_at timestamptz default now());
               insert into public.whatsapp_notifications (phone_number, status)
                 values ('+5511999999999', 'sent'), ('+5511999999998', 'queued');
               create table public.whatsapp_error_logs (id bigserial primary key, error_type text,
                 created_at timestamptz default now());
               insert into public.whatsapp_error_logs (error_type) values ('timeout'), (null);
               create table public.whatsapp_sessions (id serial primary key, session_id text, phone_number text,
                 is_active boolean, updated_at timestamptz);
               insert into public.whatsapp_sessions values (1, 's1', '+5511999999999', true, now());"""
        )
        for path in OUR_MIGRATIONS:
            for _ in range(2):  # and again: re-applying changes nothing and does not fail
                with c.transaction():
                    for statement in split_and_trim(path.read_text()):
                        c.execute(statement)
        cols = {
            r[0]
            for r in c.execute(
                """select column_name from information_schema.columns
               where table_schema = 'public' and table_name = 'whatsapp_notifications'"""
            ).fetchall()
        }
        assert {"order_id", "attempts", "processing_started_at", "sent_at", "updated_at"} <= cols
        assert c.execute("select count(*) from public.whatsapp_notifications").fetchone()[0] == 2
        checks = dict(
            c.execute(
                """select conname, convalidated from pg_constraint
               where conrelid = 'public.whatsapp_notifications'::regclass and contype = 'c'"""
            ).fetchall()
        )
        assert checks["whatsapp_notifications_status_check"] is False
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("insert into public.whatsapp_notifications (phone_number, status) values ('x', 'queued')")
        c.execute("select monitoring.refresh_rollups()")
        assert c.execute("select total, successful from monitoring.delivery_stats_24h").fetchone() == (2, 1)
        assert c.execute("select count(*) from monitoring.top_errors_24h").fetchone()[0] == 2
        assert c.execute("select phone_number from monitoring.active_sessions").fetchone()[0] == "+55*******9999"
