-- Per-minute rollups of the notification and error tables, refreshed by pg_cron, plus the
-- settings and thresholds the views and health() read, and the Edge Function invocation log.
--
-- How the views stay fast without touching the app's writes (no triggers on the app tables):
--   * monitoring.refresh_rollups() (pg_cron, every minute: `* * * * *`) recomputes from the raw
--     tables every minute bucket in the mutable window (rollup_settings.mutable_window, 30 minutes
--     by default: where statuses still change) and moves the watermark to the current minute.
--   * A view answers "rows created in (p_now - length, +inf)" as: raw rows of the partial first
--     minute + rollup buckets from the first whole minute up to the watermark + raw rows at or
--     after the watermark (the live tail, an index range scan on created_at).
--   * So a new row counts at once; a status change shows after the next refresh (<= 1 minute)
--     when the row is younger than the mutable window, and after the nightly
--     refresh_rollups(p_full => true) when older. Rows whose inserting transaction was still open
--     during a refresh and carry an older created_at show at the next refresh.
--   * After a retention delete or a backfill, run refresh_rollups(p_full => true).
--
-- Latency percentiles come from fixed histogram buckets (monitoring._latency_edges_ms()).


-- =============================================================================================
-- Settings and thresholds (one row each; edit with update)
-- =============================================================================================
create table if not exists monitoring.rollup_settings (
  id boolean primary key default true,
  mutable_window interval not null default interval '30 minutes',
  minute_horizon interval not null default interval '8 days',
  day_horizon interval not null default interval '31 days',
  updated_at timestamptz not null default now()
);

comment on table monitoring.rollup_settings is
'How monitoring.refresh_rollups() works (one row). Views read 7 days of minute rollups and 30 days '
'of daily error rollups, hence the lower bounds on the horizons.';

comment on column monitoring.rollup_settings.id is 'Always true: the table holds one row.';

comment on column monitoring.rollup_settings.mutable_window is
'How far back each regular refresh recomputes minute buckets from raw rows: the age up to which '
'statuses still change. Older changes show after refresh_rollups(p_full => true).';

comment on column monitoring.rollup_settings.minute_horizon is
'Minute buckets older than this (from the watermark) are dropped; p_full recomputes this much.';

comment on column monitoring.rollup_settings.day_horizon is 'Daily error buckets kept (error_trends reads 30 days).';

insert into monitoring.rollup_settings (id) values (true) on conflict (id) do nothing;

-- =============================================================================================
-- Rollup tables
-- =============================================================================================
create table if not exists monitoring.rollup_state (
  id boolean primary key default true check (id),
  watermark timestamptz not null default '-infinity',
  refreshed_for timestamptz,
  refreshed_at timestamptz,
  last_from timestamptz,
  last_full_at timestamptz,
  last_duration_ms numeric
);

comment on table monitoring.rollup_state is 'Where the rollups stand (one row), written by refresh_rollups().';

comment on column monitoring.rollup_state.id is 'Always true: the table holds one row.';

comment on column monitoring.rollup_state.watermark is
'Rollup buckets before this minute are complete; views read raw rows from here on. '
'-infinity until the first refresh (views then read raw rows only: correct, slower).';

comment on column monitoring.rollup_state.refreshed_for is 'p_now of the last refresh.';

comment on column monitoring.rollup_state.refreshed_at is 'Wall-clock time the last refresh ran.';

comment on column monitoring.rollup_state.last_from is 'First minute the last refresh recomputed.';

comment on column monitoring.rollup_state.last_full_at is 'p_now of the last full (p_full) refresh.';

comment on column monitoring.rollup_state.last_duration_ms is 'How long the last refresh took.';

insert into monitoring.rollup_state (id) values (true) on conflict (id) do nothing;

create table if not exists monitoring.notification_minutes (
  bucket timestamptz primary key,
  total integer not null default 0,
  pending integer not null default 0,
  processing integer not null default 0,
  sent integer not null default 0,
  delivered integer not null default 0,
  read integer not null default 0,
  failed integer not null default 0,
  errors integer not null default 0,
  latency_count integer not null default 0,
  latency_sum_ms numeric not null default 0,
  queue_count integer not null default 0,
  queue_sum_ms numeric not null default 0
);

comment on table monitoring.notification_minutes is
'Per-minute rollup of public.whatsapp_notifications by created_at minute (UTC): counts by current '
'status, error-log count, count and sum of delivery and queue time (histograms: latency_minutes). '
'Narrow on purpose: the 7-day views scan it. Written only by refresh_rollups().';

comment on column monitoring.notification_minutes.bucket is 'Start of the minute (created_at truncated, UTC).';

comment on column monitoring.notification_minutes.errors is
'Rows of public.whatsapp_error_logs created in the minute, all types (for hourly_stats).';

comment on column monitoring.notification_minutes.latency_count is 'Rows with sent_at set.';

comment on column monitoring.notification_minutes.latency_sum_ms is 'Sum of (sent_at - created_at) in ms.';

comment on column monitoring.notification_minutes.queue_count is 'Rows with processing_started_at set.';

comment on column monitoring.notification_minutes.queue_sum_ms is
'Sum of (processing_started_at - created_at) in ms.';

create table if not exists monitoring.latency_minutes (
  bucket timestamptz primary key,
  lat_b01 integer not null default 0,
  lat_b02 integer not null default 0,
  lat_b03 integer not null default 0,
  lat_b04 integer not null default 0,
  lat_b05 integer not null default 0,
  lat_b06 integer not null default 0,
  lat_b07 integer not null default 0,
  lat_b08 integer not null default 0,
  lat_b09 integer not null default 0,
  lat_b10 integer not null default 0,
  lat_b11 integer not null default 0,
  lat_b12 integer not null default 0,
  lat_b13 integer not null default 0,
  lat_b14 integer not null default 0,
  lat_b15 integer not null default 0,
  lat_b16 integer not null default 0,
  lat_b17 integer not null default 0,
  lat_b18 integer not null default 0,
  lat_b19 integer not null default 0,
  lat_b20 integer not null default 0,
  lat_b21 integer not null default 0,
  lat_b22 integer not null default 0,
  lat_b23 integer not null default 0,
  queue_b01 integer not null default 0,
  queue_b02 integer not null default 0,
  queue_b03 integer not null default 0,
  queue_b04 integer not null default 0,
  queue_b05 integer not null default 0,
  queue_b06 integer not null default 0,
  queue_b07 integer not null default 0,
  queue_b08 integer not null default 0,
  queue_b09 integer not null default 0,
  queue_b10 integer not null default 0,
  queue_b11 integer not null default 0,
  queue_b12 integer not null default 0,
  queue_b13 integer not null default 0,
  queue_b14 integer not null default 0,
  queue_b15 integer not null default 0,
  queue_b16 integer not null default 0,
  queue_b17 integer not null default 0,
  queue_b18 integer not null default 0,
  queue_b19 integer not null default 0,
  queue_b20 integer not null default 0,
  queue_b21 integer not null default 0,
  queue_b22 integer not null default 0,
  queue_b23 integer not null default 0
);

comment on table monitoring.latency_minutes is
'Per-minute histograms (monitoring._latency_edges_ms() buckets) of delivery time (sent_at - '
'created_at, lat_bNN) and queue time (processing_started_at - created_at, queue_bNN) of the '
'notifications created in that minute (UTC); percentiles in delivery_latency and queue_stats come '
'from them. Written only by refresh_rollups().';

comment on column monitoring.latency_minutes.bucket is 'Start of the minute (created_at truncated, UTC).';

do $$
declare
  v_edges integer[] := array[0, 100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000, 45000, 60000, 90000, 120000, 300000, 600000, 1800000];
  v_i integer;
begin
  for v_i in 1..pg_catalog.array_length(v_edges, 1) loop
    execute format(
      'comment on column monitoring.latency_minutes.%I is %L', 'lat_b' || pg_catalog.lpad(v_i::text, 2, '0'),
      format('Rows whose delivery time (ms) is in [%s, %s).', v_edges[v_i], coalesce(v_edges[v_i + 1]::text, 'inf'))
    );
    execute format(
      'comment on column monitoring.latency_minutes.%I is %L', 'queue_b' || pg_catalog.lpad(v_i::text, 2, '0'),
      format('Rows whose queue time (ms) is in [%s, %s).', v_edges[v_i], coalesce(v_edges[v_i + 1]::text, 'inf'))
    );
  end loop;
end
$$;

create table if not exists monitoring.error_minutes (
  bucket timestamptz not null,
  error_type text not null,
  error_count integer not null,
  last_at timestamptz not null,
  primary key (bucket, error_type)
);

comment on table monitoring.error_minutes is
'Per-minute, per-type rollup of public.whatsapp_error_logs (created_at minute, UTC). '
'A null error_type (older tables) is counted as ''(unknown)''. Written only by refresh_rollups().';

comment on column monitoring.error_minutes.bucket is 'Start of the minute (created_at truncated, UTC).';

comment on column monitoring.error_minutes.last_at is 'Latest created_at in the bucket.';

create table if not exists monitoring.error_days (
  day date not null,
  error_type text not null,
  error_count integer not null,
  last_at timestamptz not null,
  primary key (day, error_type)
);

comment on table monitoring.error_days is
'Per-day (UTC), per-type rollup of public.whatsapp_error_logs for error_trends (30 days). '
'Built from error_minutes inside the minute horizon, from raw rows before it. Written only by '
'refresh_rollups().';

comment on column monitoring.error_days.day is 'UTC calendar day of created_at.';

comment on column monitoring.error_days.last_at is 'Latest created_at of that type on that day (before the watermark).';

-- =============================================================================================
-- Edge Function invocations (our own table: read raw by function_stats)
-- =============================================================================================
create table if not exists monitoring.function_invocations (
  id bigint generated always as identity primary key,
  function_name text not null check (char_length(function_name) between 1 and 200),
  status_code integer not null check (status_code between 100 and 599),
  duration_ms numeric not null check (duration_ms >= 0),
  created_at timestamptz not null default now()
);

create index if not exists function_invocations_created_at_idx
on monitoring.function_invocations (created_at) include (function_name, status_code, duration_ms);

comment on table monitoring.function_invocations is
'One row per Edge Function invocation, written by monitoring.record_invocation(). An error is a '
'status_code >= 500. Read raw by monitoring.function_stats (index on created_at).';

comment on column monitoring.function_invocations.status_code is 'HTTP status the function answered.';

comment on column monitoring.function_invocations.duration_ms is 'Wall time of the invocation in ms.';

-- =============================================================================================
-- API: Private
-- =============================================================================================
create or replace function monitoring._latency_edges_ms()
returns integer[]
language sql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
  select array[0, 100, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000, 45000, 60000, 90000, 120000, 300000, 600000, 1800000]::integer [];
$$;

comment on function monitoring._latency_edges_ms() is
'Lower edges (ms) of the fixed histogram buckets for delivery and queue time: bucket i holds '
'[edge[i], edge[i+1]), the last is open-ended, values below 0 (clock skew) go to bucket 1. '
'Every spec threshold (2 s, 5 s, 30 s, 60 s) is an edge, so comparing a percentile with it is exact.';

create or replace function monitoring._watermark()
returns timestamptz
language sql
stable
set search_path = ''
set jit = off
as $$
  select coalesce((select s.watermark from monitoring.rollup_state as s where s.id), '-infinity'::timestamptz);
$$;

comment on function monitoring._watermark() is
'The rollup watermark: buckets before it are complete; -infinity before the first refresh.';

-- =============================================================================================
-- API: Public
-- =============================================================================================
create or replace function monitoring.refresh_rollups(
  -- refresh up to the minute holding p_now: buckets before date_trunc('minute', p_now) complete
  p_now timestamptz default now(),
  -- true: recompute the whole horizon (nightly reconcile, after retention deletes or backfills)
  p_full boolean default false
)
returns jsonb
language plpgsql
volatile
security definer -- callers (service_role, pg_cron) may only read the rollups; this writes them
set search_path = ''
set jit = off
as $$
declare
  v_result jsonb;
  v_w timestamptz;
  v_floor timestamptz;
  v_from timestamptz;
  v_h_from timestamptz;
  v_h_to timestamptz;
  v_hours integer;
  v_error_hours integer;
begin
  -- takes the refresh lock, validates the arguments, writes the minutes and the watermark
  v_result := monitoring._refresh_minutes(p_now, p_full);
  v_w := (v_result ->> 'watermark')::timestamptz;
  v_floor := v_w - (select s.minute_horizon from monitoring.rollup_settings as s where s.id);
  v_from := (v_result ->> 'from')::timestamptz;

  -- every hour holding a recomputed minute, complete (before the watermark's hour) and whole
  -- inside the minute horizon
  v_h_from := greatest(pg_catalog.date_bin('1 hour', v_from, '2000-01-01 00:00:00+00'), monitoring._hour_ceil(v_floor));
  v_h_to := pg_catalog.date_bin('1 hour', v_w, '2000-01-01 00:00:00+00');

  delete from monitoring.notification_hours as h
  where h.bucket >= pg_catalog.date_bin('1 hour', v_from, '2000-01-01 00:00:00+00') or h.bucket < v_floor;
  insert into monitoring.notification_hours (bucket, total, pending, processing, sent, delivered, read, failed, errors)
  select
    pg_catalog.date_bin('1 hour', m.bucket, '2000-01-01 00:00:00+00'),
    sum(m.total),
    sum(m.pending),
    sum(m.processing),
    sum(m.sent),
    sum(m.delivered),
    sum(m.read),
    sum(m.failed),
    sum(m.errors)
  from monitoring.notification_minutes as m
  where m.bucket >= v_h_from and m.bucket < v_h_to
  group by 1;
  get diagnostics v_hours = row_count;

  delete from monitoring.error_hours as h
  where h.bucket >= pg_catalog.date_bin('1 hour', v_from, '2000-01-01 00:00:00+00') or h.bucket < v_floor;
  insert into monitoring.error_hours (bucket, error_type, error_count, last_at)
  select
    pg_catalog.date_bin('1 hour', m.bucket, '2000-01-01 00:00:00+00'),
    m.error_type,
    sum(m.error_count),
    max(m.last_at)
  from monitoring.error_minutes as m
  where m.bucket >= v_h_from and m.bucket < v_h_to
  group by 1, 2;
  get diagnostics v_error_hours = row_count;

  return v_result || jsonb_build_object('notificationHours', v_hours, 'errorHours', v_error_hours);
end
$$;

comment on function monitoring.refresh_rollups(timestamptz, boolean) is
'Recompute the minute rollups (notification_minutes, latency_minutes, error_minutes), the daily error rollups and '
'the hourly tier (notification_hours, error_hours) from the raw tables and move the watermark to '
'date_trunc(''minute'', p_now). Regular runs recompute the mutable window (rollup_settings.mutable_window, or '
'back to the previous watermark if older); p_full recomputes the whole horizon. Schedule: every minute '
'(* * * * *), plus p_full nightly and after retention deletes. Serialised by an advisory transaction lock. '
'Returns a summary.';

create or replace function monitoring.record_invocation(
  -- the Edge Function's name, e.g. 'health'
  function_name text,
  -- the HTTP status it answered (>= 500 counts as an error)
  status_code integer,
  -- how long it ran, in ms
  duration_ms numeric,
  -- when it ran (tests and backfills pass it)
  p_now timestamptz default now()
)
returns bigint
language plpgsql
volatile
security definer -- callers get no direct write access to monitoring.function_invocations
set search_path = ''
set jit = off
as $$
declare
  v_id bigint;
begin
  if record_invocation.function_name is null or char_length(record_invocation.function_name) not between 1 and 200 then
    raise exception using
      errcode = 'check_violation',
      message = 'record_invocation: function_name must be 1-200 characters',
      hint = 'pass the Edge Function''s name, such as ''health''';
  end if;
  if record_invocation.status_code is null or record_invocation.status_code not between 100 and 599 then
    raise exception using
      errcode = 'check_violation',
      message = format('record_invocation: status_code must be an HTTP status 100-599 (got %s)',
        coalesce(record_invocation.status_code::text, 'null')),
      hint = 'pass the status the function answered, such as 200';
  end if;
  if record_invocation.duration_ms is null or record_invocation.duration_ms in ('NaN', 'Infinity')
    or record_invocation.duration_ms < 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('record_invocation: duration_ms must be a number >= 0 (got %s)',
        coalesce(record_invocation.duration_ms::text, 'null')),
      hint = 'pass the wall time in ms, such as 120';
  end if;
  if record_invocation.p_now is null or not isfinite(record_invocation.p_now) then
    raise exception using
      errcode = 'check_violation',
      message = format('record_invocation: p_now must be a finite time (got %s)',
        coalesce(record_invocation.p_now::text, 'null')),
      hint = 'leave p_now out (it defaults to now())';
  end if;
  insert into monitoring.function_invocations (function_name, status_code, duration_ms, created_at)
  values (
    record_invocation.function_name,
    record_invocation.status_code,
    record_invocation.duration_ms,
    record_invocation.p_now
  )
  returning id into v_id;
  return v_id;
end
$$;

comment on function monitoring.record_invocation(text, integer, numeric, timestamptz) is
'Log one Edge Function invocation (name, HTTP status, duration ms) for monitoring.function_stats. '
'Returns the new row id; bad arguments raise naming the argument.';

-- The limits of rollup_settings (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, min_value, max_value, hint) values
('rollup_settings', 'minute_horizon', '8 days', '366 days', 'use ''8 days'': the views read 7 days of minute rollups'),
('rollup_settings', 'day_horizon', '31 days', '3660 days', 'use ''31 days'': error_trends reads 30 days')
on conflict (table_name, column_name) do nothing;

create or replace function monitoring._validate_rollup_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.mutable_window is null or new.mutable_window not between interval '1 minute' and interval '7 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('rollup_settings.mutable_window must be between 1 minute and 7 days (got %s)',
        coalesce(new.mutable_window::text, 'null')),
      hint = 'use an interval such as ''30 minutes''';
  end if;
  return new;
end
$$;

comment on function monitoring._validate_rollup_settings() is
'Trigger: validate rollup_settings.mutable_window, raising a check_violation whose message names the field (the '
'horizons are limits in monitoring._limits).';

create or replace trigger rollup_settings_limits
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_limits();

create or replace trigger rollup_settings_single_row
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_single_row();

create or replace trigger rollup_settings_validate_nulls
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_not_null();

create or replace trigger rollup_settings_validate
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_rollup_settings();

create or replace trigger rollup_state_finite_times
before update on monitoring.rollup_state
for each row execute function monitoring._validate_finite_times('refreshed_for');

-- An hourly rollup tier under the 24-hour and 7-day windows and hourly_stats.
--
-- At 1 M notifications a day, delivery_stats_24h summed 1,433 minute buckets (about 1 ms) and
-- top_errors_24h about 8,000 (minute, type) buckets (3-5 ms), so both were short of the 100x
-- target against the spec's raw queries. Windows now read whole hours from notification_hours and
-- error_hours, and minute buckets only for the partial hours at either end:
--   raw partial first minute + minutes up to the first whole hour + whole hours
--   + minutes from the last whole hour to the watermark + raw live tail.
-- The hour tables hold complete hours only (before the watermark's hour) and are rebuilt from the
-- minute tables by refresh_rollups() for every hour the minute refresh touched, in the same
-- transaction, so a reader never sees hours and minutes that disagree.
create table if not exists monitoring.notification_hours (
  bucket timestamptz primary key,
  total integer not null default 0,
  pending integer not null default 0,
  processing integer not null default 0,
  sent integer not null default 0,
  delivered integer not null default 0,
  read integer not null default 0,
  failed integer not null default 0,
  errors integer not null default 0
);

comment on table monitoring.notification_hours is
'Per-hour sums of monitoring.notification_minutes (complete hours before the watermark''s hour, within the '
'minute horizon). Written only by refresh_rollups().';

comment on column monitoring.notification_hours.bucket is 'Start of the hour (UTC).';

create table if not exists monitoring.error_hours (
  bucket timestamptz not null,
  error_type text not null,
  error_count integer not null,
  last_at timestamptz not null,
  primary key (bucket, error_type)
);

comment on table monitoring.error_hours is
'Per-hour, per-type sums of monitoring.error_minutes (complete hours before the watermark''s hour, within the '
'minute horizon). Written only by refresh_rollups().';

comment on column monitoring.error_hours.bucket is 'Start of the hour (UTC).';

comment on column monitoring.error_hours.last_at is 'Latest created_at of that type in the hour.';

create or replace function monitoring._refresh_minutes(
  -- refresh up to the minute holding p_now: buckets before date_trunc('minute', p_now) complete
  p_now timestamptz default now(),
  -- true: recompute the whole horizon (nightly reconcile, after retention deletes or backfills)
  p_full boolean default false
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_settings monitoring.rollup_settings;
  v_old timestamptz;
  v_w timestamptz;
  v_floor timestamptz;
  v_from timestamptz;
  v_day_floor date;
  v_day_from date;
  v_cover date;
  v_minutes integer;
  v_hist integer;
  v_errors integer;
  v_days integer;
  v_more integer;
  v_full boolean;
begin
  if p_now is null or p_full is null then
    raise exception using
      message = 'monitoring.refresh_rollups: p_now and p_full must not be null',
      hint = 'call monitoring.refresh_rollups() or monitoring.refresh_rollups(p_full => true)';
  end if;

  -- one refresh at a time; a second caller waits and then recomputes on top of the first
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('monitoring.refresh_rollups'));

  select * into strict v_settings from monitoring.rollup_settings where id;
  select s.watermark into v_old from monitoring.rollup_state as s where s.id;
  v_old := coalesce(v_old, '-infinity'::timestamptz);

  v_w := pg_catalog.date_bin('1 minute', p_now, '2000-01-01 00:00:00+00');
  v_floor := v_w - v_settings.minute_horizon;
  v_full := p_full or v_old < v_floor;
  if v_full then
    v_from := v_floor;
  else
    -- the mutable window, or further back when the previous refresh is older than that
    v_from := greatest(least(v_old, v_w - v_settings.mutable_window), v_floor);
  end if;

  -- minutes of notifications: group rows by (minute, status, histogram buckets), then pivot the
  -- few groups into the counts table and the histogram table
  delete from monitoring.notification_minutes as m where m.bucket >= v_from or m.bucket < v_floor;
  delete from monitoring.latency_minutes as m where m.bucket >= v_from or m.bucket < v_floor;
  with
  g as (
    select
      r.bucket,
      r.status,
      r.lat_b,
      r.queue_b,
      count(*) as n,
      sum(r.lat_ms) as lat_ms,
      sum(r.queue_ms) as queue_ms
    from (
      select
        x.bucket,
        x.status,
        x.lat_ms,
        x.queue_ms,
        case when x.lat_ms is not null then greatest(1, width_bucket(x.lat_ms, monitoring._latency_edges_ms())) end
          as lat_b,
        case
          when x.queue_ms is not null then greatest(1, width_bucket(x.queue_ms, monitoring._latency_edges_ms()))
        end as queue_b
      from (
        select
          pg_catalog.date_bin('1 minute', n.created_at, '2000-01-01 00:00:00+00') as bucket,
          n.status::text as status,
          extract(epoch from n.sent_at - n.created_at) * 1000 as lat_ms,
          extract(epoch from n.processing_started_at - n.created_at) * 1000 as queue_ms
        from public.whatsapp_notifications as n
        where n.created_at >= v_from and n.created_at < v_w
      ) as x
    ) as r
    group by r.bucket, r.status, r.lat_b, r.queue_b
  ),
  hist as (
    insert into monitoring.latency_minutes (bucket, lat_b01, lat_b02, lat_b03, lat_b04, lat_b05, lat_b06, lat_b07, lat_b08, lat_b09, lat_b10,
    lat_b11, lat_b12, lat_b13, lat_b14, lat_b15, lat_b16, lat_b17, lat_b18, lat_b19, lat_b20,
    lat_b21, lat_b22, lat_b23, queue_b01, queue_b02, queue_b03, queue_b04, queue_b05, queue_b06, queue_b07, queue_b08,
    queue_b09, queue_b10, queue_b11, queue_b12, queue_b13, queue_b14, queue_b15, queue_b16,
    queue_b17, queue_b18, queue_b19, queue_b20, queue_b21, queue_b22, queue_b23)
    select
      g.bucket,
    coalesce(sum(g.n) filter (where g.lat_b = 1), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 2), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 3), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 4), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 5), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 6), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 7), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 8), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 9), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 10), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 11), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 12), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 13), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 14), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 15), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 16), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 17), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 18), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 19), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 20), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 21), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 22), 0),
    coalesce(sum(g.n) filter (where g.lat_b = 23), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 1), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 2), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 3), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 4), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 5), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 6), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 7), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 8), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 9), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 10), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 11), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 12), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 13), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 14), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 15), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 16), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 17), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 18), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 19), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 20), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 21), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 22), 0),
    coalesce(sum(g.n) filter (where g.queue_b = 23), 0)
    from g
    where g.lat_b is not null or g.queue_b is not null
    group by g.bucket
    returning 1
  ),
  counts as (
    insert into monitoring.notification_minutes (
      bucket, total, pending, processing, sent, delivered, read, failed,
      latency_count, latency_sum_ms, queue_count, queue_sum_ms
    )
    select
      g.bucket,
      sum(g.n),
      coalesce(sum(g.n) filter (where g.status = 'pending'), 0),
      coalesce(sum(g.n) filter (where g.status = 'processing'), 0),
      coalesce(sum(g.n) filter (where g.status = 'sent'), 0),
      coalesce(sum(g.n) filter (where g.status = 'delivered'), 0),
      coalesce(sum(g.n) filter (where g.status = 'read'), 0),
      coalesce(sum(g.n) filter (where g.status = 'failed'), 0),
      coalesce(sum(g.n) filter (where g.lat_b is not null), 0),
      coalesce(sum(g.lat_ms), 0),
      coalesce(sum(g.n) filter (where g.queue_b is not null), 0),
      coalesce(sum(g.queue_ms), 0)
    from g
    group by g.bucket
    returning 1
  )
  select (select count(*) from counts)::integer, (select count(*) from hist)::integer into v_minutes, v_hist;

  -- minutes of errors
  delete from monitoring.error_minutes as m where m.bucket >= v_from or m.bucket < v_floor;
  insert into monitoring.error_minutes (bucket, error_type, error_count, last_at)
  select
    pg_catalog.date_bin('1 minute', e.created_at, '2000-01-01 00:00:00+00'),
    coalesce(e.error_type::text, '(unknown)'),
    count(*),
    max(e.created_at)
  from public.whatsapp_error_logs as e
  where e.created_at >= v_from and e.created_at < v_w
  group by 1, 2;
  get diagnostics v_errors = row_count;

  -- all-type error counts per minute next to the notification counts (hourly_stats reads both)
  insert into monitoring.notification_minutes (bucket, errors)
  select m.bucket, sum(m.error_count)
  from monitoring.error_minutes as m
  where m.bucket >= v_from and m.bucket < v_w
  group by m.bucket
  on conflict (bucket) do update set errors = excluded.errors;

  -- days of errors: from raw rows before the first whole day inside the minute horizon,
  -- from error_minutes after it
  v_day_floor := ((v_w - v_settings.day_horizon) at time zone 'UTC')::date;
  v_cover := ((v_floor at time zone 'UTC') - interval '1 microsecond')::date + 1;
  v_day_from := case when v_full then v_day_floor else (v_from at time zone 'UTC')::date end;
  delete from monitoring.error_days as d where d.day >= v_day_from or d.day < v_day_floor;
  insert into monitoring.error_days (day, error_type, error_count, last_at)
  select
    (e.created_at at time zone 'UTC')::date,
    coalesce(e.error_type::text, '(unknown)'),
    count(*),
    max(e.created_at)
  from public.whatsapp_error_logs as e
  where
    e.created_at >= (v_day_from::timestamp at time zone 'UTC')
    and e.created_at < least(v_cover::timestamp at time zone 'UTC', v_w)
  group by 1, 2;
  get diagnostics v_days = row_count;
  insert into monitoring.error_days (day, error_type, error_count, last_at)
  select
    (m.bucket at time zone 'UTC')::date,
    m.error_type,
    sum(m.error_count),
    max(m.last_at)
  from monitoring.error_minutes as m
  where m.bucket >= (greatest(v_day_from, v_cover)::timestamp at time zone 'UTC') and m.bucket < v_w
  group by 1, 2;
  get diagnostics v_more = row_count;

  update monitoring.rollup_state as s set
    watermark = v_w,
    refreshed_for = p_now,
    refreshed_at = pg_catalog.clock_timestamp(),
    last_from = v_from,
    last_full_at = case when v_full then p_now else s.last_full_at end,
    last_duration_ms = round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000, 1)
  where s.id;

  return jsonb_build_object(
    'watermark', v_w,
    'from', v_from,
    'full', v_full,
    'notificationMinutes', v_minutes,
    'latencyMinutes', v_hist,
    'errorMinutes', v_errors,
    'errorDays', v_days + v_more,
    'durationMs', round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000, 1)
  );
end
$$;

comment on function monitoring._refresh_minutes(timestamptz, boolean) is
'The minute part of refresh_rollups() (minute and daily rollups, watermark); call refresh_rollups() instead.';

create or replace function monitoring._hour_ceil(
  -- any time
  p_at timestamptz
)
returns timestamptz
language sql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
  select pg_catalog.date_bin('1 hour', p_at - interval '1 microsecond', '2000-01-01 00:00:00+00') + interval '1 hour';
$$;

comment on function monitoring._hour_ceil(timestamptz) is 'The first whole UTC hour at or after p_at.';

create or replace function monitoring._hour_span(
  -- the first whole minute a window reads from the rollups
  p_first_minute timestamptz,
  -- the rollup watermark
  p_watermark timestamptz,
  -- whole hours [hours_from, hours_to) come from the hourly tier; minutes cover the rest
  out hours_from timestamptz,
  out hours_to timestamptz
)
language plpgsql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
begin
  -- no whole hour in between (or no refresh yet): an empty span at the watermark, all minutes
  hours_from := p_watermark;
  hours_to := p_watermark;
  if isfinite(p_watermark)
    and monitoring._hour_ceil(p_first_minute) < pg_catalog.date_bin('1 hour', p_watermark, '2000-01-01 00:00:00+00')
    then
    hours_from := monitoring._hour_ceil(p_first_minute);
    hours_to := pg_catalog.date_bin('1 hour', p_watermark, '2000-01-01 00:00:00+00');
  end if;
end
$$;

comment on function monitoring._hour_span(timestamptz, timestamptz) is
'The whole UTC hours a window reads from notification_hours/error_hours: from the first whole hour at or after '
'p_first_minute to the watermark''s hour; empty (both = the watermark) when there is none.';
