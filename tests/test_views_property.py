"""Property: after refresh_rollups(), every monitoring view equals the same aggregate computed
straight from the raw tables, whatever mix of inserts, late status changes, read receipts,
backfills and deletes came first, and every windowed rule's value equals the raw computation at
evaluation.

Two properties:
- any operations anywhere in the horizon, then `refresh_rollups(p_now, p_full => true)`;
- any operations anywhere in the horizon, then the regular `refresh_rollups(p_now)` the
  every-minute job runs (and `evaluate_rules`, which refreshes first): no full refresh needed.

Everything runs inside the `conn` fixture's transaction; each example rolls back to a savepoint.
The app-table triggers log late changes by the wall clock, so P_NOW is a fixed moment a couple of
minutes before the test session started (on the same UTC day).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_WALL = datetime.now(UTC).replace(second=0, microsecond=0)
P_NOW = max(_WALL - timedelta(minutes=2), _WALL.replace(hour=0, minute=0)) + timedelta(seconds=30, microseconds=250_000)
STATUSES = ["pending", "processing", "sent", "delivered", "read", "failed"]
ERROR_TYPES = ["timeout", "invalid_number", "rate_limited", "connection_lost"]
MS_HOUR = 3_600_000
MS_DAY = 24 * MS_HOUR
# offsets from P_NOW (ms) on every window edge the views have: window starts, the first whole
# minute after them (where rollups take over), the final watermark (P_NOW's minute), P_NOW itself
# and the hour boundaries where the hourly tier takes over and hands back to minutes
EDGES = [
    -7 * MS_DAY,
    -7 * MS_DAY + 1_349_750,
    -MS_DAY,
    -MS_DAY + 29_750,
    -MS_DAY + 1_349_750,
    -2_250_250,
    -MS_HOUR,
    -MS_HOUR + 29_750,
    -15 * 60_000,
    -5 * 60_000,
    -90_250,
    -30_250,
    0,
]


def offsets(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Offsets in ms from P_NOW: anywhere in [lo, hi], or within 2 ms of a window edge."""
    near = st.sampled_from([e for e in EDGES if lo <= e <= hi]).flatmap(
        lambda e: st.integers(max(lo, e - 2), min(hi, e + 2))
    )
    return st.one_of(st.integers(lo, hi), near)


def notification(lo: int, hi: int) -> st.SearchStrategy[tuple]:
    delay = st.one_of(st.none(), st.integers(0, 4_000_000))
    return st.tuples(st.just("insert"), offsets(lo, hi), st.sampled_from(STATUSES), delay, delay)


def operation(lo: int, hi: int, deletes: bool) -> st.SearchStrategy[tuple]:
    ops = [
        notification(lo, hi),
        st.tuples(st.just("error"), offsets(lo, hi), st.sampled_from(ERROR_TYPES)),
        st.tuples(st.just("update"), st.integers(0, 10_000), st.sampled_from(STATUSES)),
        # a late send, a delivery receipt or a read receipt, with their timestamps
        st.tuples(st.just("receipt"), st.integers(0, 10_000), st.sampled_from(["sent", "delivered", "read"]),
                  st.integers(0, 4_000_000)),
        st.tuples(st.just("refresh"), st.integers(0, 90)),
    ]
    if deletes:
        ops.append(st.tuples(st.just("delete"), st.integers(-8 * MS_DAY, -MS_HOUR)))
    return st.one_of(*ops)


def at(offset_ms: int) -> datetime:
    return P_NOW + timedelta(milliseconds=offset_ms)


def reset(cur: psycopg.Cursor) -> None:
    cur.execute("delete from public.whatsapp_notifications")
    cur.execute("delete from public.whatsapp_error_logs")
    cur.execute("delete from monitoring.notification_minutes")
    cur.execute("delete from monitoring.latency_minutes")
    cur.execute("delete from monitoring.error_minutes")
    cur.execute("delete from monitoring.error_days")
    cur.execute("delete from monitoring.notification_hours")
    cur.execute("delete from monitoring.latency_hours")
    cur.execute("delete from monitoring.error_hours")
    cur.execute("delete from monitoring._notification_changes")
    cur.execute("delete from monitoring._error_changes")
    cur.execute("update monitoring.rollup_state set watermark = '-infinity', changes_from = '-infinity'")


def insert_notification(
    cur: psycopg.Cursor, key: int, offset: int, status: str, queue: int | None, latency: int | None
) -> None:
    created = at(offset)
    cur.execute(
        """insert into public.whatsapp_notifications
             (order_id, phone_number, status, created_at, processing_started_at, sent_at)
           values (%s, '+5511999999999', %s, %s, %s, %s)""",
        (
            f"p{key}",
            status,
            created,
            None if queue is None else created + timedelta(milliseconds=queue),
            None if latency is None else created + timedelta(milliseconds=latency),
        ),
    )


def apply(cur: psycopg.Cursor, ops: list[tuple], keys: list[int]) -> None:
    for op in ops:
        kind = op[0]
        if kind == "insert":
            keys.append(len(keys))
            insert_notification(cur, keys[-1], *op[1:])
        elif kind == "error":
            cur.execute(
                "insert into public.whatsapp_error_logs (error_type, created_at) values (%s, %s)",
                (op[2], at(op[1])),
            )
        elif kind == "update" and keys:
            cur.execute(
                "update public.whatsapp_notifications set status = %s where order_id = %s",
                (op[2], f"p{keys[op[1] % len(keys)]}"),
            )
        elif kind == "receipt" and keys:
            _, pick, status, after = op
            cur.execute(
                """update public.whatsapp_notifications set
                     status = %(s)s,
                     sent_at = coalesce(sent_at, created_at + %(d)s * interval '1 millisecond'),
                     delivered_at = case when %(s)s in ('delivered', 'read') then now() end,
                     read_at = case when %(s)s = 'read'
                       then coalesce(sent_at, created_at) + %(d)s * interval '2 milliseconds' end
                   where order_id = %(k)s""",
                {"s": status, "d": after, "k": f"p{keys[pick % len(keys)]}"},
            )
        elif kind == "delete":
            cur.execute("delete from public.whatsapp_notifications where created_at < %s", (at(op[1]),))
            cur.execute("delete from public.whatsapp_error_logs where created_at < %s", (at(op[1]),))
        elif kind == "refresh":
            cur.execute("select monitoring.refresh_rollups(%s)", (P_NOW - timedelta(minutes=op[1]),))


# --- what the views say ------------------------------------------------------------------------

VIEW_QUERIES = {
    "delivery_stats": "select * from monitoring.get_delivery_stats(%(p)s)",
    "delivery_stats_24h": "select * from monitoring.get_delivery_stats_24h(%(p)s)",
    "top_errors_24h": "select * from monitoring.get_top_errors_24h(%(p)s)",
    "all_errors_24h": "select * from monitoring._error_window(%(p)s, interval '24 hours') order by 1",
    "error_trends": "select * from monitoring.get_error_trends(%(p)s) order by 1, 2",
    "queue_stats": "select * from monitoring.get_queue_stats(%(p)s)",
    "delivery_latency": "select * from monitoring.get_delivery_latency(%(p)s)",
    "hourly_stats": "select * from monitoring.get_hourly_stats(%(p)s)",
}

# --- the same questions asked of the raw tables only -------------------------------------------

ACCEPTED = "status in ('sent', 'delivered', 'read')"
RAW_COUNTS = f"""
  select %(name)s, %(p)s::timestamptz - %(len)s::interval,
    count(*), count(*) filter (where status = 'sent'), count(*) filter (where status = 'failed'),
    count(*) filter (where status = 'pending'), count(*) filter (where status = 'processing'),
    count(*) filter (where status = 'delivered'), count(*) filter (where status = 'read'),
    case when count(*) = 0 then 100.00
         else round(100.0 * count(*) filter (where {ACCEPTED}) / count(*), 2) end,
    count(*) filter (where {ACCEPTED}),
    case when count(*) filter (where {ACCEPTED}) > 0 then round(100.0 * count(*) filter (
      where status in ('delivered', 'read')) / count(*) filter (where {ACCEPTED}), 2) end,
    case when count(*) filter (where {ACCEPTED}) > 0 then round(100.0 * count(*) filter (
      where status = 'read') / count(*) filter (where {ACCEPTED}), 2) end,
    round(avg(extract(epoch from read_at - sent_at) * 1000) / 1000, 3)
  from public.whatsapp_notifications where created_at > %(p)s::timestamptz - %(len)s::interval
"""

RAW_HIST = """
  with r as (
    select extract(epoch from {col} - created_at) * 1000 as ms
    from public.whatsapp_notifications
    where created_at > %(p)s::timestamptz - %(len)s::interval and {col} is not null
  ),
  h as (
    select array_agg(coalesce(c.n, 0) order by i.i)::bigint[] as hist
    from generate_series(1, array_length(monitoring._latency_edges_ms(), 1)) as i (i)
    left join (
      select greatest(1, width_bucket(ms, monitoring._latency_edges_ms())) as b, count(*) as n
      from r group by 1
    ) as c on c.b = i.i
  )
  select count(*), round(sum(r.ms) / nullif(count(*), 0) / 1000, 3),
    (select hist from h)
  from r
"""


def raw_answers(cur: psycopg.Cursor) -> dict[str, list[tuple]]:
    p = P_NOW
    out: dict[str, list[tuple]] = {}

    rows = []
    for name, length in (("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days")):
        cur.execute(RAW_COUNTS, {"name": name, "p": p, "len": length})
        rows.append(cur.fetchone())
    out["delivery_stats"] = rows
    day = rows[1]
    out["delivery_stats_24h"] = [(day[2], day[10], day[4], day[9])]

    cur.execute(
        """select error_type, count(*), max(created_at) from public.whatsapp_error_logs
           where created_at > %(p)s::timestamptz - interval '24 hours' group by 1 order by 1""",
        {"p": p},
    )
    out["all_errors_24h"] = cur.fetchall()
    out["top_errors_24h"] = sorted(out["all_errors_24h"], key=lambda r: (-r[1], r[0]))[:10]

    cur.execute(
        """select (created_at at time zone 'UTC')::date, error_type, count(*), max(created_at)
           from public.whatsapp_error_logs
           where created_at >= ((%(p)s::timestamptz at time zone 'UTC')::date - 29)::timestamp at time zone 'UTC'
           group by 1, 2 order by 1, 2""",
        {"p": p},
    )
    out["error_trends"] = cur.fetchall()

    cur.execute(
        """select count(*) filter (where status = 'pending'), count(*) filter (where status = 'processing'),
             min(created_at) filter (where status = 'pending'),
             round(extract(epoch from %(p)s::timestamptz - min(created_at) filter (where status = 'pending')), 1)
           from public.whatsapp_notifications where created_at > %(p)s::timestamptz - interval '8 days'""",
        {"p": p},
    )
    pending, processing, oldest, age = cur.fetchone()
    queue = []
    for name, length in (("15m", "15 minutes"), ("1h", "1 hour")):
        cur.execute(RAW_HIST.format(col="processing_started_at"), {"p": p, "len": length})
        n, avg, hist = cur.fetchone()
        cur.execute("select round(monitoring._hist_quantile(%s, 0.95) / 1000, 3)", (hist,))
        p95 = cur.fetchone()[0]
        queue.append((name, p - parse_interval(length), pending, processing, oldest, age, n, avg, p95))
    out["queue_stats"] = queue

    latency = []
    for name, length in (("1h", "1 hour"), ("24h", "24 hours")):
        cur.execute(RAW_HIST.format(col="sent_at"), {"p": p, "len": length})
        n, avg, hist = cur.fetchone()
        cur.execute(
            """select round(monitoring._hist_quantile(%(h)s, 0.50) / 1000, 3),
                      round(monitoring._hist_quantile(%(h)s, 0.95) / 1000, 3),
                      round(monitoring._hist_quantile(%(h)s, 0.99) / 1000, 3)""",
            {"h": hist},
        )
        latency.append((name, p - parse_interval(length), n, avg, *cur.fetchone()))
    out["delivery_latency"] = latency

    cur.execute(
        """with hours as (
             select generate_series(
               date_bin('1 hour', %(p)s::timestamptz, '2000-01-01 00:00:00+00') - interval '167 hours',
               date_bin('1 hour', %(p)s::timestamptz, '2000-01-01 00:00:00+00'), interval '1 hour') as hour
           )
           select h.hour, count(n.*),
             count(*) filter (where n.status = 'sent'), count(*) filter (where n.status = 'failed'),
             case when count(n.*) = 0 then 100.00
                  else round(100.0 * count(*) filter (where n.status in ('sent', 'delivered', 'read'))
                             / count(n.*), 2) end,
             (select count(*) from public.whatsapp_error_logs as e
              where e.created_at >= h.hour and e.created_at < h.hour + interval '1 hour'),
             count(*) filter (where n.status in ('sent', 'delivered', 'read'))
           from hours as h
           left join public.whatsapp_notifications as n
             on n.created_at >= h.hour and n.created_at < h.hour + interval '1 hour'
           group by h.hour order by h.hour desc""",
        {"p": p},
    )
    out["hourly_stats"] = cur.fetchall()
    return out


def parse_interval(text: str) -> timedelta:
    n, unit = text.split()
    return timedelta(**{unit if unit.endswith("s") else unit + "s": int(n)})


def view_answers(cur: psycopg.Cursor) -> dict[str, list[tuple]]:
    out = {}
    for name, sql in VIEW_QUERIES.items():
        cur.execute(sql, {"p": P_NOW})
        out[name] = cur.fetchall()
    return out


def assert_views_equal_raw(cur: psycopg.Cursor) -> None:
    views = view_answers(cur)
    raw = raw_answers(cur)
    for name in VIEW_QUERIES:
        assert [tuple(r) for r in views[name]] == [tuple(r) for r in raw[name]], name


def seed(cur: psycopg.Cursor, initial: list[tuple], ops: list[tuple], first_refresh_minutes: int) -> list[int]:
    """Empty tables, then `initial`, a full refresh `first_refresh_minutes` before P_NOW, then `ops`;
    returns the keys of the notifications inserted."""
    reset(cur)
    keys: list[int] = []
    apply(cur, initial, keys)
    cur.execute(
        "select monitoring.refresh_rollups(%s, p_full => true)", (P_NOW - timedelta(minutes=first_refresh_minutes),)
    )
    apply(cur, ops, keys)
    return keys


def run_example(
    conn: psycopg.Connection, initial: list[tuple], ops: list[tuple], full: bool, first_refresh_minutes: int
) -> None:
    with conn.transaction(), conn.cursor() as cur:
        seed(cur, initial, ops, first_refresh_minutes)
        cur.execute("select monitoring.refresh_rollups(%s, p_full => %s)", (P_NOW, full))
        assert_views_equal_raw(cur)
        raise psycopg.Rollback()


PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    initial=st.lists(notification(-8 * MS_DAY, 120_000), max_size=40),
    ops=st.lists(operation(-8 * MS_DAY, 120_000, deletes=True), max_size=30),
    first_refresh_minutes=st.integers(0, 3 * 24 * 60),
)
def test_full_refresh_equals_raw(
    conn: psycopg.Connection, initial: list[tuple], ops: list[tuple], first_refresh_minutes: int
) -> None:
    run_example(conn, initial, ops, full=True, first_refresh_minutes=first_refresh_minutes)


RULES_OVER_WINDOWS = ["low_delivery_rate", "high_error_rate", "slow_queue", "slow_delivery"]

RAW_RULE_VALUES = f"""
  select 'high_error_rate', count(*)::numeric from public.whatsapp_error_logs
    where created_at > %(p)s::timestamptz - interval '1 hour'
  union all
  select 'low_delivery_rate', case when count(*) = 0 then 100.00
    else round(100.0 * count(*) filter (where {ACCEPTED}) / count(*), 2) end
    from public.whatsapp_notifications where created_at > %(p)s::timestamptz - interval '1 hour'
  union all
  select 'slow_delivery', round(avg(extract(epoch from sent_at - created_at)), 2)
    from public.whatsapp_notifications
    where created_at > %(p)s::timestamptz - interval '1 hour' and sent_at is not null
  union all
  select 'slow_queue', greatest(
    coalesce((select round(avg(extract(epoch from processing_started_at - created_at)), 1)
      from public.whatsapp_notifications
      where created_at > %(p)s::timestamptz - interval '15 minutes' and processing_started_at is not null), 0),
    coalesce((select round(extract(epoch from %(p)s::timestamptz - min(created_at)), 1)
      from public.whatsapp_notifications
      where status = 'pending' and created_at > %(p)s::timestamptz - interval '8 days'), 0))
"""


def assert_rules_equal_raw(cur: psycopg.Cursor) -> None:
    """evaluate_rules refreshes the rollups first; each windowed rule's value then equals the raw tables."""
    cur.execute("select monitoring.evaluate_rules(%s, %s)", (P_NOW, RULES_OVER_WINDOWS))
    cur.execute(
        """select r.name, c.value from monitoring.alert_rules as r
           cross join lateral monitoring._run_check(r, %s) as c
           where r.name = any(%s) order by 1""",
        (P_NOW, RULES_OVER_WINDOWS),
    )
    ours = {name: value for name, value in cur.fetchall()}
    cur.execute(RAW_RULE_VALUES, {"p": P_NOW})
    raw_values = cur.fetchall()
    assert {name for name, _ in raw_values} == set(RULES_OVER_WINDOWS)
    for name, raw in raw_values:
        assert ours.get(name) == raw, (name, ours.get(name), raw)


@PROPERTY_SETTINGS
@given(
    initial=st.lists(notification(-8 * MS_DAY, 120_000), max_size=30),
    ops=st.lists(operation(-8 * MS_DAY, 120_000, deletes=True), max_size=30),
    first_refresh_minutes=st.integers(0, 3 * 24 * 60),
)
def test_regular_refresh_equals_raw_after_late_changes(
    conn: psycopg.Connection, initial: list[tuple], ops: list[tuple], first_refresh_minutes: int
) -> None:
    """Late status changes, receipts, backfills and deletes anywhere in the 7-day horizon show after
    the every-minute refresh alone, and in the rules at evaluation."""
    with conn.transaction(), conn.cursor() as cur:
        keys = seed(cur, initial, ops, first_refresh_minutes)
        cur.execute("select (monitoring.refresh_rollups(%s)) ->> 'full'", (P_NOW,))
        assert cur.fetchone()[0] == "false"
        assert_views_equal_raw(cur)
        apply(cur, [op for op in ops if op[0] in ("update", "receipt", "error")], keys)
        assert_rules_equal_raw(cur)
        # the spec's hourly check, in the same minute: it refreshes the error rollups alone
        apply(cur, [op for op in ops if op[0] == "error"], keys)
        assert_spec_check_equals_raw(cur)
        raise psycopg.Rollback()


def assert_spec_check_equals_raw(cur: psycopg.Cursor) -> None:
    """check_error_rate (the hourly job) counts exactly what the spec's query counts, from rollups
    refreshed for errors only (the watermark already stands at P_NOW's minute)."""
    cur.execute("select watermark from monitoring.rollup_state")
    assert cur.fetchone()[0] == P_NOW.replace(second=0, microsecond=0), "same minute: the error-only path"
    cur.execute("select (monitoring.check_error_rate(50, %s)) ->> 'errorCount'", (P_NOW,))
    ours = int(cur.fetchone()[0])
    cur.execute("select count(*) from public.whatsapp_error_logs "
                "where created_at > %s::timestamptz - interval '1 hour'", (P_NOW,))
    assert ours == cur.fetchone()[0]
    # and the views that read the error rollups (hourly_stats, top errors, trends) agree too
    assert_views_equal_raw(cur)


def test_crafted_edges_equal_raw(conn: psycopg.Connection) -> None:
    """One deterministic example on every edge, so a failure here is easy to read."""
    initial = [("insert", e + d, s, 1_000, 2_000) for e in EDGES for d in (-1, 0, 1) for s in ("sent", "failed")]
    run_example(
        conn,
        initial,
        [("refresh", 30), ("update", 3, "sent"), ("delete", -3 * MS_DAY)],
        full=True,
        first_refresh_minutes=90,
    )


@pytest.mark.parametrize("full", [True, False])
def test_empty_tables_rate_100(conn: psycopg.Connection, full: bool) -> None:
    run_example(conn, [], [], full=full, first_refresh_minutes=0)


def test_refresh_after_a_minute_recomputes_whole_minutes(conn: psycopg.Connection) -> None:
    """The every-minute job's case: the previous refresh ran a minute ago, so the next one starts
    from a moment inside a minute (rollup_state.changes_from); it must recompute that minute whole."""
    with conn.transaction(), conn.cursor() as cur:
        keys = seed(cur, [("insert", -m * 30_000 - 7_000, s, 1_000, 2_000)
                          for m in range(40) for s in ("sent", "failed", "pending")], [], 0)
        assert keys
        cur.execute("update monitoring.rollup_state set changes_from = %s",
                    (P_NOW - timedelta(minutes=7, seconds=31, milliseconds=250),))
        cur.execute("select (monitoring.refresh_rollups(%s)) ->> 'from'", (P_NOW,))
        start = datetime.fromisoformat(cur.fetchone()[0])
        assert start.second == 0 and start.microsecond == 0, "the recompute starts on a whole minute"
        assert_views_equal_raw(cur)
        raise psycopg.Rollback()


def test_hour_completed_by_a_refresh_that_changed_none_of_its_minutes(conn: psycopg.Connection) -> None:
    """A refresh at H:31 rolls H's first minutes into the minute tier (H is not complete: no hour
    row yet). The next regular refresh, an hour or more later, recomputes only from about H:26, where
    nothing changed: it must still build H's hour rows, or every window over H loses H:05 and H:20."""
    w1 = P_NOW.replace(second=0, microsecond=0) - timedelta(minutes=60 + (P_NOW.minute - 31) % 60)
    assert w1.minute == 31 and timedelta(hours=1) <= P_NOW - w1 < timedelta(hours=2)
    hour = w1.replace(minute=0)
    with conn.transaction(), conn.cursor() as cur:
        reset(cur)
        for key, minute in enumerate((5, 20)):
            offset = int((hour + timedelta(minutes=minute) - P_NOW).total_seconds() * 1000)
            insert_notification(cur, key, offset, "sent", 1_000, 2_000)
            cur.execute("insert into public.whatsapp_error_logs (error_type, created_at) values ('timeout', %s)",
                        (at(offset),))
        cur.execute("select monitoring.refresh_rollups(%s, p_full => true)", (w1 + timedelta(seconds=10),))
        cur.execute("select count(*) from monitoring.notification_hours where bucket = %s", (hour,))
        assert cur.fetchone()[0] == 0, "H is the watermark's hour: not built yet"
        cur.execute("select (monitoring.refresh_rollups(%s)) ->> 'from'", (P_NOW,))
        assert datetime.fromisoformat(cur.fetchone()[0]) > hour + timedelta(minutes=20), "H:05 and H:20 not recomputed"
        cur.execute("select total from monitoring.notification_hours where bucket = %s", (hour,))
        assert cur.fetchone() == (2,)
        cur.execute("select sum(error_count) from monitoring.error_hours where bucket = %s", (hour,))
        assert cur.fetchone() == (2,)
        assert_views_equal_raw(cur)
        raise psycopg.Rollback()


def test_refresh_stages_report_only_the_minutes_that_changed(conn: psycopg.Connection) -> None:
    """The refresh rebuilds the hours and days of the recomputed minutes that changed, so the
    stages must report every such minute (new, gone or changed) and none that did not change."""
    m = P_NOW.replace(second=0, microsecond=0) - timedelta(hours=3)
    args = (m - timedelta(minutes=30), m + timedelta(minutes=30), P_NOW - timedelta(days=8))

    def changed() -> tuple[list[datetime], list[datetime]]:
        cur.execute("select monitoring._refresh_notifications(%s, %s, %s), monitoring._refresh_errors(%s, %s, %s)",
                    args + args)
        notifications, errors = cur.fetchone()
        return sorted(notifications), sorted(errors)

    with conn.transaction(), conn.cursor() as cur:
        reset(cur)
        offset = int((m + timedelta(seconds=7) - P_NOW).total_seconds() * 1000)
        insert_notification(cur, 0, offset, "pending", 1_000, None)
        cur.execute("insert into public.whatsapp_error_logs (error_type, created_at) values ('timeout', %s)",
                    (at(offset),))
        assert changed() == ([m], [m]), "new minutes"
        assert changed() == ([], []), "nothing changed"
        cur.execute("update public.whatsapp_notifications set status = 'sent', sent_at = created_at + interval '2 s'")
        assert changed()[0] == [m], "a changed minute"
        cur.execute("update public.whatsapp_error_logs set error_type = 'rate_limited'")
        assert changed()[1] == [m], "a changed error minute"
        cur.execute("delete from public.whatsapp_notifications")
        cur.execute("delete from public.whatsapp_error_logs")
        assert changed() == ([m], [m]), "minutes gone"
        raise psycopg.Rollback()
