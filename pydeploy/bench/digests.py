"""The digests in `pydeploy bench`: monitoring.digest(kind) for each kind, target well under a second.

Measured on the monitored database, inside a transaction rolled back at the end (a digest writes its
hourly history, monitoring.digest_hours), after giving it what a deployment that has run for a year
holds: 400 days of hourly history and 90 days of alert transitions.
"""

from __future__ import annotations

import psycopg

from pydeploy.bench.measure import repeat_timed, timed
from pydeploy.bench.report import Row, summarize

TARGET_MS = 1000.0
KINDS = ("daily", "weekly", "monthly")

# a year of hours before the ones the digest copies itself from the hour rollups (the last 7 days)
FILL_HOURS = """
insert into monitoring.digest_hours (
  hour, total, accepted, failed, errors, latency_count, latency_sum_ms, queue_count, queue_sum_ms,
  latency_hist, queue_hist, taken_at
)
select
  h, 10000, 9500, 500, 40 + (extract(hour from h)::integer % 7) * 3, 9500, 9500 * 1800, 10000, 10000 * 4000,
  array[0,0,0,0,0,0,100,900,3000,4000,1000,300,100,50,30,20,0,0,0,0,0,0,0],
  array[0,0,0,0,0,0,0,200,1000,5000,3000,500,200,100,0,0,0,0,0,0,0,0,0],
  now()
from generate_series(date_trunc('hour', now()) - interval '400 days', date_trunc('hour', now()) - interval '8 days',
  interval '1 hour') as h
on conflict (hour) do nothing
"""

# 90 days of transitions: every rule fires and resolves about every 3 hours (about 8,600 episodes)
FILL_HISTORY = """
insert into monitoring.alert_history (fingerprint, rule_name, labels, from_state, to_state, value, message, occurred_at)
select
  'bench' || r.name, r.name, jsonb_build_object('alertname', r.name, 'severity', r.severity),
  case when s.k = 0 then 'pending' else 'firing' end, case when s.k = 0 then 'firing' else 'resolved' end,
  1, 'bench', now() - interval '90 days' + g * interval '3 hours' + s.k * interval '40 minutes'
from monitoring.alert_rules as r
cross join generate_series(0, 719) as g
cross join (values (0), (1)) as s (k)
"""


def measure(conn: psycopg.Connection, repeat: int) -> list[Row]:
    """Wall time of monitoring.digest(kind) per kind (median of `repeat` after a warm-up), and of the
    first digest of a day, which copies 7 days of hour rollups into digest_hours."""
    if conn.execute("select to_regprocedure('monitoring.digest(text, timestamptz)') is null").fetchone() == (True,):
        return []
    rows: list[Row] = []
    with conn.transaction(force_rollback=True):
        conn.execute(FILL_HOURS)
        conn.execute(FILL_HISTORY)
        conn.execute("analyze monitoring.digest_hours")
        conn.execute("analyze monitoring.alert_history")
        first = timed(conn, "select monitoring.digest('daily')")
        rows.append(Row("digests", "first digest (copies 7 days of hour rollups)", "ms", round(first, 1),
                        target=f"< {TARGET_MS:.0f} ms", ok=first < TARGET_MS))
        for kind in KINDS:
            samples = repeat_timed(conn, "select monitoring.digest(%s)", repeat, (kind,))
            rows.append(summarize("digests", f"digest('{kind}')", samples, target=f"< {TARGET_MS:.0f} ms",
                                  check=lambda m: m < TARGET_MS,
                                  note="400 days of digest_hours, 90 days of alert history"))
    return rows
