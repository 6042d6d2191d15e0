"""The benchmark's data: realistic, time-ordered WhatsApp traffic generated inside Postgres.

Shape (defaults, `Scale()`): 10 M notifications over 40 days, 1 M of them in the last 24 hours,
about 1 M error rows, 20 sessions. Traffic follows a day curve (busy afternoons, quiet nights,
quieter weekends) and grows slowly; a few hours carry a delivery-rate dip. Every notification
goes pending -> processing -> sent | failed with `processing_started_at`, `sent_at` or
`failed_at` set; rows of the last `update_window` (2 h, where statuses still change in
production) are inserted as `pending` and moved on by later UPDATEs, as the sender does, and
the newest ones stay queued. Error rows follow the failures (one per failed or retried
notification) plus connection errors with no notification.

Fast: one set-based `insert ... select ... generate_series` per chunk of hours (a data-modifying
CTE writes the chunk's error rows in the same statement), with the tables' indexes dropped
during the load and rebuilt once after it (sorted builds beat 10 M random B-tree inserts).
Per-hour counts are computed here so totals are exact; everything else is `random()` in SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg

from pydeploy.errors import ConfigError

NOTIFICATIONS = "public.whatsapp_notifications"
ERRORS = "public.whatsapp_error_logs"
SESSIONS = "public.whatsapp_sessions"
APP_TABLES = (NOTIFICATIONS, ERRORS, SESSIONS)

DEFAULT_NOTIFICATIONS = 10_000_000
QUICK_FACTOR = 0.1

# progress callback: (task, rows done, rows total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Scale:
    """How much data to generate. Counts are exact for notifications; errors are about `errors`."""

    notifications: int = DEFAULT_NOTIFICATIONS
    recent: int = 1_000_000  # rows created in the last 24 hours
    errors: int = 1_000_000
    days: int = 40  # history; error rows older than 30 days are what retention deletes
    sessions: int = 20
    failure_ratio: float = 0.05  # share of notifications that end failed (dip hours excepted)
    connection_error_share: float = 0.1  # share of error rows with no notification (connection lost)
    update_window_minutes: int = 120  # inserted pending, then updated (the sender's lifecycle)
    chunk_rows: int = 250_000
    seed: int = 7

    @classmethod
    def factor(cls, f: float) -> Scale:
        """The default shape with every count multiplied by f (at least a few rows each)."""
        if not f > 0:
            raise ConfigError(f"--scale must be positive (got {f})", "use e.g. --scale 0.1 or --scale 2M")
        base = cls()
        return replace(
            base,
            notifications=max(100, round(base.notifications * f)),
            recent=max(10, round(base.recent * f)),
            errors=max(10, round(base.errors * f)),
            sessions=max(3, min(base.sessions, round(base.sessions * max(f, 0.2)))),
        )

    @classmethod
    def parse(cls, text: str) -> Scale:
        """`--scale`: a factor of the default (0.1, 1, 2) or a notification count (1M, 250k, 3000)."""
        s = text.strip().lower().replace("_", "")
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([km]?)", s)
        if not m:
            raise ConfigError(f"--scale {text!r} is neither a factor nor a row count",
                              "use a factor such as 0.1 or 1, or a count such as 2M, 500k or 3000")
        value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2)]
        if m.group(2) or value > 100:
            return cls.factor(value / DEFAULT_NOTIFICATIONS)
        return cls.factor(value)

    def describe(self) -> str:
        return (f"{self.notifications:,} notifications over {self.days} days ({self.recent:,} in the last 24 h), "
                f"~{self.errors:,} error rows, {self.sessions} sessions")


@dataclass(frozen=True)
class Slot:
    """One hour of traffic."""

    start: dt.datetime
    rows: int
    fail_p: float


def _spread(total: int, weights: list[float]) -> list[int]:
    """Split total over weights exactly (largest remainder)."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    out = [math.floor(r) for r in raw]
    rest = total - sum(out)
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)[:rest]:
        out[i] += 1
    return out


def _weight(t: dt.datetime, day_index: int) -> float:
    hour = t.hour + t.minute / 60
    diurnal = 1 + 0.6 * math.sin(2 * math.pi * (hour - 10) / 24)  # peak ~16:00 UTC, trough ~04:00
    weekend = 0.75 if t.weekday() >= 5 else 1.0
    growth = 1.01 ** day_index
    return diurnal * weekend * growth


def plan(scale: Scale, t0: dt.datetime) -> list[Slot]:
    """Hour slots from t0 - days to t0, oldest first; the last 24 hold exactly `recent` rows."""
    if scale.recent > scale.notifications:
        raise ConfigError("the last 24 hours cannot hold more rows than the whole history",
                          "lower the recent count or raise the total")
    if scale.days < 2:
        raise ConfigError("days of history must be at least 2", "use 2 or more days")
    rng = random.Random(scale.seed)
    start = t0 - dt.timedelta(days=scale.days)
    hours = [start + dt.timedelta(hours=h) for h in range(scale.days * 24)]
    old, new = hours[:-24], hours[-24:]
    weights_old = [_weight(t, i // 24) for i, t in enumerate(old)]
    weights_new = [_weight(t, scale.days) for t in new]
    counts = _spread(scale.notifications - scale.recent, weights_old) + _spread(scale.recent, weights_new)
    # a delivery-rate dip now and then (provider trouble), and one six hours ago
    dips = {i for i in range(len(hours)) if rng.random() < 0.01} | {len(hours) - 6}
    return [Slot(t, c, min(0.6, scale.failure_ratio * 7) if i in dips else scale.failure_ratio)
            for i, (t, c) in enumerate(zip(hours, counts, strict=True))]


def retry_ratio(scale: Scale, slots: list[Slot]) -> float:
    """Share of sent notifications that needed a retry (one error row each), so errors ~ scale.errors."""
    linked = scale.errors * (1 - scale.connection_error_share)
    failed = sum(s.rows * s.fail_p for s in slots)
    sent = sum(s.rows * (1 - s.fail_p) for s in slots)
    return 0.0 if sent <= 0 else max(0.0, min(1.0, (linked - failed) / sent))


def chunks(slots: list[Slot], rows: int) -> list[list[Slot]]:
    out: list[list[Slot]] = [[]]
    n = 0
    for s in slots:
        if n >= rows and out[-1]:
            out.append([])
            n = 0
        out[-1].append(s)
        n += s.rows
    return [c for c in out if c]


# -- SQL ------------------------------------------------------------------------------------------

# A chunk of hours: notifications (final state, or pending inside the update window) and, in the
# same statement, the error rows of their failures and retries plus connection errors.
CHUNK_SQL = """
with slot as (
  select s.start, s.cnt, s.fail_p
  from unnest(%(starts)s::timestamptz[], %(cnts)s::int[], %(fails)s::float8[]) as s (start, cnt, fail_p)
),
planned as (
  select
    x.created_at,
    x.created_at >= %(pending_from)s as queued,
    case when x.r_fail < x.fail_p then 'failed' else 'sent' end as final,
    x.r_retry < %(retry_p)s as retried,
    x.created_at + make_interval(secs => case
      when x.r_slow < 0.02 then 20 + x.r_q * 100          -- a queue spike now and then
      else -ln(1 - x.r_q * 0.999) * 1.5 end) as picked,
    make_interval(secs => 0.3 + -ln(1 - x.r_s * 0.999) * 0.7) as send_time,
    floor(x.r_ph * 90000000 + 10000000)::bigint as ph
  from (
    select
      slot.start + ((i - 1) + random()) * interval '1 hour' / slot.cnt as created_at,
      slot.fail_p, random() as r_fail, random() as r_retry, random() as r_slow, random() as r_q,
      random() as r_s, random() as r_ph
    from slot, generate_series(1, slot.cnt) as i
  ) as x
),
n as (
  insert into public.whatsapp_notifications (
    order_id, phone_number, template_name, message, status, attempts, error_code, error_message,
    created_at, processing_started_at, sent_at, failed_at, updated_at
  )
  select
    'ORD-' || p.ph,
    '+55 ' || substr(p.ph::text, 1, 2) || ' 9' || substr(p.ph::text, 3, 4) || '-' || substr(p.ph::text, 5, 4),
    (array['order_confirmed', 'order_shipped', 'order_delivered', 'payment_reminder', 'otp'])[1 + p.ph %% 5],
    'Hello! Your order ORD-' || p.ph || ' '
    || (array['is confirmed.', 'has shipped.', 'was delivered.', 'awaits payment.', 'code: 123456.'])[1 + p.ph %% 5],
    case when p.queued then 'pending' else p.final end,
    case when p.queued then 0 when p.final = 'failed' then 3 when p.retried then 2 else 1 end,
    case when not p.queued and p.final = 'failed' then '131026' end,
    case when not p.queued and p.final = 'failed' then 'Message undeliverable' end,
    p.created_at,
    case when not p.queued then p.picked end,
    case when not p.queued and p.final = 'sent' then p.picked + p.send_time end,
    case when not p.queued and p.final = 'failed' then p.picked + 3 * p.send_time end,
    case when p.queued then p.created_at else p.picked + p.send_time end
  from planned as p
  returning id, status, attempts, processing_started_at, sent_at, failed_at
)
insert into public.whatsapp_error_logs (error_type, error_message, error_code, notification_id, context, created_at)
select e.error_type, e.error_message, e.error_code, e.notification_id, e.context, e.created_at
from (
  select
    case when n.status = 'failed'
      then (array['invalid_number', 'template_rejected', 'timeout'])[1 + floor(random() * 3)::int]
      else (array['rate_limited', 'timeout'])[1 + floor(random() * 2)::int] end as error_type,
    case when n.status = 'failed' then 'giving up after 3 attempts' else 'retrying' end as error_message,
    case when n.status = 'failed' then '131026' else '130429' end as error_code,
    n.id as notification_id,
    jsonb_build_object('attempt', n.attempts) as context,
    coalesce(n.failed_at, n.processing_started_at + (n.sent_at - n.processing_started_at) / 2) as created_at
  from n
  where n.status = 'failed' or n.attempts > 1
  union all
  select
    (array['connection_lost', 'session_expired'])[1 + floor(random() * 2)::int],
    'WhatsApp connection closed', null, null, '{}'::jsonb,
    %(first)s::timestamptz + random() * (%(last)s::timestamptz - %(first)s::timestamptz)
  from generate_series(1, %(conn_errors)s)
) as e
order by e.created_at
"""

# The sender's lifecycle for the newest rows: picked up (processing), then sent or failed.
PICK_SQL = """
update public.whatsapp_notifications as n
set status = 'processing', attempts = 1,
    processing_started_at = least(n.created_at + make_interval(secs => -ln(1 - random() * 0.999) * 1.5), %(t0)s),
    updated_at = least(n.created_at + interval '2 seconds', %(t0)s)
where n.created_at >= %(pending_from)s and n.created_at < %(picked_before)s and n.status = 'pending'
"""

FINISH_SQL = """
with u as (
  update public.whatsapp_notifications as n
  set status = v.final,
      attempts = case when v.final = 'failed' then 3 else n.attempts end,
      sent_at = case when v.final = 'sent' then least(n.processing_started_at + v.send_time, %(t0)s) end,
      failed_at = case when v.final = 'failed' then least(n.processing_started_at + 3 * v.send_time, %(t0)s) end,
      error_code = case when v.final = 'failed' then '131026' end,
      error_message = case when v.final = 'failed' then 'Message undeliverable' end,
      updated_at = least(n.processing_started_at + v.send_time, %(t0)s)
  from (
    select x.id,
      case when random() < %(fail_p)s then 'failed' else 'sent' end as final,
      make_interval(secs => 0.3 + -ln(1 - random() * 0.999) * 0.7) as send_time
    from public.whatsapp_notifications as x
    where x.created_at >= %(pending_from)s and x.created_at < %(done_before)s and x.status = 'processing'
  ) as v
  where n.id = v.id
  returning n.id, n.status, n.failed_at
)
insert into public.whatsapp_error_logs (error_type, error_message, error_code, notification_id, context, created_at)
select (array['invalid_number', 'template_rejected', 'timeout'])[1 + floor(random() * 3)::int],
       'giving up after 3 attempts', '131026', u.id, '{"attempt": 3}'::jsonb, u.failed_at
from u
where u.status = 'failed'
order by u.failed_at
"""

SESSIONS_SQL = """
insert into public.whatsapp_sessions (
  session_id, phone_number, is_active, connection_state, state_changed_at, last_connected_at, created_at, updated_at
)
select
  'session-' || lpad(i::text, 3, '0'),
  '+55 11 9' || (40000000 + i * 7919)::text,
  i %% 10 <> 0,                                                     -- every tenth session is retired
  case when i = 2 then 'disconnected' when i %% 10 = 0 then 'logged_out' else 'connected' end,
  %(t0)s::timestamptz - case when i = 2 then interval '10 minutes' else make_interval(days => 1 + i %% 5) end,
  case when i = 2 then %(t0)s::timestamptz - interval '10 minutes'
       when i %% 10 = 0 then %(t0)s::timestamptz - interval '20 days'
       else %(t0)s::timestamptz - make_interval(secs => i %% 50) end,
  %(t0)s::timestamptz - interval '60 days',
  case when i %% 10 = 0 then %(t0)s::timestamptz - interval '20 days'
       else %(t0)s::timestamptz - make_interval(secs => i %% 50) end
from generate_series(1, %(n)s) as i
on conflict (session_id) do nothing
"""


# -- index handling -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedIndex:
    table: str
    name: str
    constraint: bool
    definition: str

    def recreate_sql(self) -> str:
        if self.constraint:
            return f'alter table {self.table} add constraint "{self.name}" {self.definition}'
        return self.definition


def drop_indexes(conn: psycopg.Connection, table: str) -> list[SavedIndex]:
    """Drop every index of table (constraints included), returning what recreates them."""
    saved: list[SavedIndex] = []
    rows = conn.execute(
        """
        select c.relname, con.conname, pg_get_constraintdef(con.oid), pg_get_indexdef(i.indexrelid)
        from pg_index as i
        join pg_class as c on c.oid = i.indexrelid
        left join pg_constraint as con on con.conindid = i.indexrelid and con.conrelid = i.indrelid
        where i.indrelid = %s::regclass
        """,
        (table,),
    ).fetchall()
    for relname, conname, condef, indexdef in rows:
        if conname:
            saved.append(SavedIndex(table, conname, True, condef))
            conn.execute(f'alter table {table} drop constraint "{conname}"')
        else:
            saved.append(SavedIndex(table, relname, False, indexdef))
            conn.execute(f'drop index "{table.split(".")[0]}"."{relname}"')
    return saved


def restore_indexes(conn: psycopg.Connection, saved: list[SavedIndex]) -> None:
    # constraints first: a primary key is what the others were built next to
    for s in sorted(saved, key=lambda s: not s.constraint):
        conn.execute(s.recreate_sql())


# -- the generator --------------------------------------------------------------------------------

@dataclass
class Generated:
    t0: dt.datetime
    notifications: int
    errors: int
    sessions: int
    seconds: float


def generate(conn: psycopg.Connection, scale: Scale, progress: Progress | None = None,
             t0: dt.datetime | None = None) -> Generated:
    """Fill the app tables (which must exist and may hold rows) with `scale`'s traffic up to t0 (now)."""
    import time

    if not conn.autocommit:
        raise ValueError("generate needs an autocommit connection")
    say = progress or (lambda *_: None)
    started = time.monotonic()
    conn.execute("set synchronous_commit = off")
    conn.execute("set maintenance_work_mem = '256MB'")
    conn.execute("set jit = off")
    row = conn.execute("select now()").fetchone()
    now = t0 or (row[0] if row else dt.datetime.now(dt.UTC))
    slots = plan(scale, now)
    retry_p = retry_ratio(scale, slots)
    pending_from = now - dt.timedelta(minutes=scale.update_window_minutes)
    conn_errors_total = round(scale.errors * scale.connection_error_share)

    saved = [s for t in (NOTIFICATIONS, ERRORS) for s in drop_indexes(conn, t)]
    try:
        done = 0
        say("notifications", 0, scale.notifications)
        for part in chunks(slots, scale.chunk_rows):
            rows = sum(s.rows for s in part)
            first, last = part[0].start, part[-1].start + dt.timedelta(hours=1)
            conn.execute(CHUNK_SQL, {
                "starts": [s.start for s in part], "cnts": [s.rows for s in part],
                "fails": [s.fail_p for s in part], "retry_p": retry_p, "pending_from": pending_from,
                "first": first, "last": min(last, now),
                "conn_errors": round(conn_errors_total * rows / max(1, scale.notifications)),
            })
            done += rows
            say("notifications", done, scale.notifications)
        say("indexes", 0, len(saved))
        for i, s in enumerate(sorted(saved, key=lambda s: not s.constraint)):
            conn.execute(s.recreate_sql())
            say("indexes", i + 1, len(saved))
    except BaseException:
        # leave the tables usable (indexes back) even when interrupted
        for s in saved:
            with contextlib.suppress(psycopg.Error):
                conn.execute(s.recreate_sql())
        raise

    # the sender's lifecycle on the newest rows: picked after ~20 s, finished after ~40 s
    say("status updates", 0, 2)
    conn.execute(PICK_SQL, {"t0": now, "pending_from": pending_from,
                            "picked_before": now - dt.timedelta(seconds=20)})
    say("status updates", 1, 2)
    conn.execute(FINISH_SQL, {"t0": now, "pending_from": pending_from, "fail_p": scale.failure_ratio,
                              "done_before": now - dt.timedelta(seconds=40)})
    say("status updates", 2, 2)
    conn.execute(SESSIONS_SQL, {"t0": now, "n": scale.sessions})
    say("vacuum analyze", 0, len(APP_TABLES))
    for i, t in enumerate(APP_TABLES):
        conn.execute(f"vacuum (analyze) {t}")
        say("vacuum analyze", i + 1, len(APP_TABLES))

    counts = [conn.execute(f"select count(*) from {t}").fetchone() for t in APP_TABLES]
    n, e, s = (int(c[0]) if c else 0 for c in counts)
    return Generated(now, n, e, s, time.monotonic() - started)
