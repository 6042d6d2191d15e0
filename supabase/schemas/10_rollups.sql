-- Rollups: per-minute and per-hour sums of the notification and error tables behind every view,
-- kept exact as the app changes rows, plus the Edge Function invocation log.
--
-- A view answers "rows created in (p_now - length, +inf)" as: raw rows of the partial first
-- minute + minute and hour rollups up to the watermark + raw rows at or after the watermark (the
-- live tail, an index range scan on created_at). The rollups are exact for every row created
-- before the watermark, however late the row changed:
--   * Young rows (created less than monitoring._change_lag() = 5 minutes before a change) are
--     still settling (pending -> processing -> sent in seconds). Each refresh recomputes their
--     minutes from the raw rows: from 5 minutes before the oldest change it may not have seen
--     (see "which minutes" below) up to the watermark, about 6 minutes of rows.
--   * Older rows (late sends after an outage, read receipts, provider callbacks, backfills,
--     deletes) are captured by row triggers on the app tables whose WHEN clause is false for
--     young rows, so the app's usual writes never run them. For notifications the trigger logs
--     the row's old and new contribution (-1 / +1 with status and times) in
--     monitoring._notification_changes; for error logs, the minute to recompute in
--     monitoring._error_changes. refresh_rollups() consumes both in the same statement (the
--     same snapshot) that recomputes the young minutes, so a change is counted exactly once.
--   * Which minutes a refresh must recompute: a change to a young row that committed after the
--     previous refresh read the table. Each refresh records (wall-clock time, next transaction
--     id) in monitoring._refresh_marks; the oldest transaction still running at the previous
--     refresh got its id after the latest mark at or below it, so every change it made happened
--     after that mark's time, to rows created at most 5 minutes earlier. That bound is
--     rollup_state.changes_from. A long transaction only widens the next recompute.
--   * monitoring.refresh_rollups() runs every minute (pg_cron) and at the start of each rule
--     evaluation, so views are exact after the next run and rules at evaluation.
--     refresh_rollups(p_full => true) recomputes the whole horizon (needed only after TRUNCATE of
--     an app table, which fires no row trigger).
--
-- Latency percentiles come from fixed histogram bins (monitoring._latency_edges_ms()), stored
-- long: one row per (minute, kind, bin) that has rows.
--
-- Plans: the refresh functions and the window helpers of 20_views.sql run every minute with
-- generic plans (plan_cache_mode = force_generic_plan), planned once per session. Planning a
-- scan of created_at with a value newer than the column's statistics (always the case for "the
-- last minutes") probes the end of the index for its real maximum, which cost 0.5-1.5 ms a
-- statement at 10 M rows, more than the scan. For a generic plan to read the index, every range
-- is bounded on both sides ("bucket < floor" is written "bucket >= '-infinity' and bucket <
-- floor" through a variable): a generic plan estimates a two-sided range at 0.5 % of the table
-- and a one-sided one at a third, which it would scan. Parallel plans are off in these functions
-- (a worker's start costs more than these scans). A full refresh (rare: after TRUNCATE or 8 days
-- down) reads the whole horizon through the same index: 23 s at 10 M rows, 29 s with the custom
-- plans it had before.


-- =============================================================================================
-- Settings (one row; edit with update)
-- =============================================================================================
create table if not exists monitoring.rollup_settings (
  id boolean primary key default true,
  minute_horizon interval not null default interval '8 days',
  day_horizon interval not null default interval '31 days',
  updated_at timestamptz not null default now()
);

comment on table monitoring.rollup_settings is
'How long monitoring.refresh_rollups() keeps rollups (one row). Views read 7 days of minute and hour rollups '
'and 30 days of daily error rollups, hence the lower bounds on the horizons.';

comment on column monitoring.rollup_settings.id is 'Always true: the table holds one row.';

comment on column monitoring.rollup_settings.minute_horizon is
'Minute and hour buckets older than this (from the watermark) are dropped; p_full recomputes this much.';

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
  last_duration_ms numeric,
  changes_from timestamptz not null default '-infinity'
);

comment on table monitoring.rollup_state is 'Where the rollups stand (one row), written by refresh_rollups().';

comment on column monitoring.rollup_state.id is 'Always true: the table holds one row.';

comment on column monitoring.rollup_state.watermark is
'Rollup buckets before this minute are complete; views read raw rows from here on. '
'-infinity until the first refresh (views then read raw rows only: correct, slower).';

comment on column monitoring.rollup_state.refreshed_for is 'p_now of the last refresh.';

comment on column monitoring.rollup_state.refreshed_at is 'Wall-clock time the last refresh ran.';

comment on column monitoring.rollup_state.last_from is 'First minute the last refresh recomputed from raw rows.';

comment on column monitoring.rollup_state.last_full_at is 'p_now of the last full (p_full) refresh.';

comment on column monitoring.rollup_state.last_duration_ms is 'How long the last refresh took.';

comment on column monitoring.rollup_state.changes_from is
'The next refresh recomputes raw rows created from here on (or from the watermark minus the change lag, if '
'earlier): changes to younger rows are not logged by the triggers. -infinity: the next refresh is full.';

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
  queue_sum_ms numeric not null default 0,
  read_count integer not null default 0,
  read_sum_ms numeric not null default 0
);

-- the queue backlog's oldest pending message starts from the first minute that has one
create index if not exists notification_minutes_pending_idx
on monitoring.notification_minutes (bucket) where pending > 0;

comment on table monitoring.notification_minutes is
'Per-minute rollup of public.whatsapp_notifications by created_at minute (UTC): counts by current '
'status, error-log count, count and sum of delivery, queue and read time (histograms: latency_minutes). '
'Written only by refresh_rollups().';

comment on column monitoring.notification_minutes.bucket is 'Start of the minute (created_at truncated, UTC).';

comment on column monitoring.notification_minutes.errors is
'Rows of public.whatsapp_error_logs created in the minute, all types (for hourly_stats).';

comment on column monitoring.notification_minutes.latency_count is 'Rows with sent_at set.';

comment on column monitoring.notification_minutes.latency_sum_ms is 'Sum of (sent_at - created_at) in ms.';

comment on column monitoring.notification_minutes.queue_count is 'Rows with processing_started_at set.';

comment on column monitoring.notification_minutes.queue_sum_ms is
'Sum of (processing_started_at - created_at) in ms.';

comment on column monitoring.notification_minutes.read_count is 'Rows with both sent_at and read_at set.';

comment on column monitoring.notification_minutes.read_sum_ms is 'Sum of (read_at - sent_at) in ms: time to read.';

create table if not exists monitoring.latency_minutes (
  bucket timestamptz not null,
  kind text not null check (kind in ('latency', 'queue')),
  bin smallint not null check (bin between 1 and 23),
  n integer not null,
  primary key (bucket, kind, bin)
);

-- bins a late change emptied, found without scanning the table (refresh_rollups deletes them)
create index if not exists latency_minutes_empty_idx on monitoring.latency_minutes (bucket) where n = 0;

comment on column monitoring.latency_minutes.kind is
'latency: delivery time (sent_at - created_at); queue: queue time (processing_started_at - created_at).';

comment on column monitoring.latency_minutes.n is 'Rows in the bin (never 0: empty bins are deleted).';

comment on table monitoring.latency_minutes is
'Per-minute histograms of delivery time (kind latency: sent_at - created_at) and queue time (kind queue: '
'processing_started_at - created_at) of the notifications created in that minute (UTC): n rows in bin '
'[edge[bin], edge[bin + 1]) of monitoring._latency_edges_ms(). Bins with no rows have no row. Percentiles in '
'delivery_latency and queue_stats come from it. Written only by refresh_rollups().';

comment on column monitoring.latency_minutes.bucket is 'Start of the minute (created_at truncated, UTC).';

comment on column monitoring.latency_minutes.bin is
'Bin number, 1 to 23: greatest(1, width_bucket(ms, monitoring._latency_edges_ms())).';

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

-- The hour tier: the 24-hour and 7-day windows and hourly_stats read whole hours here and
-- minutes only for the partial hours at either end (about 24 + 120 rows instead of 1,440 for a
-- day). The hour tables hold complete hours only (before the watermark's hour) and are rebuilt
-- from the minute tables by refresh_rollups() for every hour whose minutes it touched, in the same
-- transaction, so a reader never sees hours and minutes that disagree.
create table if not exists monitoring.notification_hours (
  like monitoring.notification_minutes including defaults including constraints including indexes
);

comment on table monitoring.notification_hours is
'Per-hour sums of monitoring.notification_minutes (complete hours before the watermark''s hour, within the '
'minute horizon), same columns. Written only by refresh_rollups().';

comment on column monitoring.notification_hours.bucket is 'Start of the hour (UTC).';

create table if not exists monitoring.latency_hours (
  like monitoring.latency_minutes including defaults including constraints including indexes
);

comment on table monitoring.latency_hours is
'Per-hour sums of monitoring.latency_minutes (complete hours before the watermark''s hour). Written only by '
'refresh_rollups().';

comment on column monitoring.latency_hours.bucket is 'Start of the hour (UTC).';

create table if not exists monitoring.error_hours (
  like monitoring.error_minutes including defaults including constraints including indexes
);

comment on table monitoring.error_hours is
'Per-hour, per-type sums of monitoring.error_minutes (complete hours before the watermark''s hour, within the '
'minute horizon). Written only by refresh_rollups().';

comment on column monitoring.error_hours.bucket is 'Start of the hour (UTC).';

comment on column monitoring.error_hours.last_at is 'Latest created_at of that type in the hour.';

-- =============================================================================================
-- Change capture: what the app changed in rows the rollups already hold
-- =============================================================================================
create table if not exists monitoring._notification_changes (
  bucket timestamptz not null,
  status text,
  latency_ms numeric,
  queue_ms numeric,
  read_ms numeric,
  n smallint not null check (n in (-1, 1))
);

comment on table monitoring._notification_changes is
'Internal change log: a notification row''s contribution to its minute, removed (n = -1: the old row of an '
'update or delete) or added (n = +1: a backfilled insert, the new row of an update), written by the app-table '
'trigger for rows older than monitoring._change_lag(); consumed (deleted) by refresh_rollups().';

create table if not exists monitoring._error_changes (
  bucket timestamptz not null
);

comment on table monitoring._error_changes is
'Internal change log: minutes of public.whatsapp_error_logs to recompute (a row older than '
'monitoring._change_lag() was inserted, changed or deleted); consumed (deleted) by refresh_rollups().';

create table if not exists monitoring._refresh_marks (
  taken_at timestamptz primary key,
  next_xid xid8 not null
);

comment on table monitoring._refresh_marks is
'Internal: one row per refresh, the wall-clock time just before it read the tables and the first transaction id '
'not yet assigned then. A transaction whose id is at least next_xid changed nothing before taken_at.';

-- =============================================================================================
-- Edge Function invocations (our own table: read raw by function_stats)
-- =============================================================================================
create table if not exists monitoring.function_invocations (
  id bigint generated always as identity primary key,
  function_name text not null check (char_length(function_name) between 1 and 200),
  status_code integer not null check (status_code between 100 and 599),
  duration_ms numeric not null check (duration_ms >= 0),
  created_at timestamptz not null default now(),
  request_id text check (char_length(request_id) <= 200),
  region text check (char_length(region) <= 50)
);

create index if not exists function_invocations_created_at_idx
on monitoring.function_invocations (created_at) include (function_name, status_code, duration_ms);

comment on table monitoring.function_invocations is
'One row per function invocation, written by monitoring.record_invocation() (our Edge Functions) or '
'monitoring.ingest() (the app''s Pages and Edge Functions, through the ingest Edge Function). An error is a '
'status_code >= 500. Read raw by monitoring.function_stats (index on created_at).';

comment on column monitoring.function_invocations.status_code is 'HTTP status the function answered.';

comment on column monitoring.function_invocations.duration_ms is 'Wall time of the invocation in ms.';

comment on column monitoring.function_invocations.request_id is
'The request''s id (e.g. Cloudflare''s cf-ray), when sent through monitoring.ingest().';

comment on column monitoring.function_invocations.region is
'Where the request was served (e.g. Cloudflare''s colo GRU), when sent through monitoring.ingest().';

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
'Lower edges (ms) of the fixed histogram bins for delivery and queue time: bin i holds '
'[edge[i], edge[i+1]), the last is open-ended, values below 0 (clock skew) go to bin 1. '
'Every spec threshold (2 s, 5 s, 30 s, 60 s) is an edge, so comparing a percentile with it is exact.';

create or replace function monitoring._watermark()
returns timestamptz
language plpgsql
stable
set search_path = ''
set jit = off
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return coalesce((select s.watermark from monitoring.rollup_state as s where s.id), '-infinity'::timestamptz);
end
$$;

comment on function monitoring._watermark() is
'The rollup watermark: buckets before it are complete; -infinity before the first refresh.';

create or replace function monitoring._change_lag()
returns interval
language sql
immutable
parallel safe
set search_path = ''
as $$
  select interval '5 minutes';
$$;

comment on function monitoring._change_lag() is
'Changes to rows created longer ago than this are logged by the app-table triggers; younger rows are recomputed '
'by every refresh. Stated once here: refresh_rollups() reads it and _install_rollup_triggers() writes it into '
'the triggers'' WHEN clauses.';

create or replace function monitoring._change_horizon()
returns interval
language sql
immutable
parallel safe
set search_path = ''
as $$
  select interval '8 days';
$$;

comment on function monitoring._change_horizon() is
'Changes to notifications created longer ago than this are not logged: no view reads them (the longest '
'notification window is 7 days).';

create or replace function monitoring._error_change_horizon()
returns interval
language sql
immutable
parallel safe
set search_path = ''
as $$
  select interval '30 days';
$$;

comment on function monitoring._error_change_horizon() is
'Changes to error logs created longer ago than this are not logged: error_trends reads the 30 UTC days up to '
'today, all younger than this; retention deletes only older rows, so it logs nothing.';

-- ---------------------------------------------------------------------------------------------
-- The triggers on the app tables (see the file header)
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._log_notification_change()
returns trigger
language plpgsql
security definer -- the app's roles change the app tables; only this function writes the change log
set search_path = ''
as $$
declare
  -- the WHEN clauses test only "older than _change_lag()"; the rest of the test is here, where
  -- it costs nothing to the app's usual writes (see _install_rollup_triggers)
  v_oldest timestamptz := pg_catalog.clock_timestamp() - monitoring._change_horizon();
begin
  if tg_op = 'UPDATE' and (
    greatest(old.created_at, new.created_at) < v_oldest
    or (old.status, old.created_at, old.sent_at, old.processing_started_at, old.read_at)
    is not distinct from (new.status, new.created_at, new.sent_at, new.processing_started_at, new.read_at)
  ) then
    return null;
  end if;
  if tg_op <> 'INSERT' and old.created_at >= v_oldest then
    insert into monitoring._notification_changes (bucket, status, latency_ms, queue_ms, read_ms, n)
    values (
      pg_catalog.date_bin('1 minute', old.created_at, '2000-01-01 00:00:00+00'),
      old.status::text,
      extract(epoch from old.sent_at - old.created_at) * 1000,
      extract(epoch from old.processing_started_at - old.created_at) * 1000,
      extract(epoch from old.read_at - old.sent_at) * 1000,
      -1
    );
  end if;
  if tg_op <> 'DELETE' and new.created_at >= v_oldest then
    insert into monitoring._notification_changes (bucket, status, latency_ms, queue_ms, read_ms, n)
    values (
      pg_catalog.date_bin('1 minute', new.created_at, '2000-01-01 00:00:00+00'),
      new.status::text,
      extract(epoch from new.sent_at - new.created_at) * 1000,
      extract(epoch from new.processing_started_at - new.created_at) * 1000,
      extract(epoch from new.read_at - new.sent_at) * 1000,
      1
    );
  end if;
  return null;
end
$$;

comment on function monitoring._log_notification_change() is
'Trigger on public.whatsapp_notifications (after insert, update, delete of rows older than _change_lag()): log '
'the old row''s contribution as -1 and the new row''s as +1 in monitoring._notification_changes, for rows '
'created within _change_horizon() and updates that change a column the rollups count.';

create or replace function monitoring._log_error_change()
returns trigger
language plpgsql
security definer -- the app's roles change the app tables; only this function writes the change log
set search_path = ''
as $$
declare
  v_oldest timestamptz := pg_catalog.clock_timestamp() - monitoring._error_change_horizon();
begin
  if tg_op = 'UPDATE' and (
    greatest(old.created_at, new.created_at) < v_oldest
    or (old.created_at, old.error_type) is not distinct from (new.created_at, new.error_type)
  ) then
    return null;
  end if;
  if tg_op <> 'INSERT' and old.created_at >= v_oldest then
    insert into monitoring._error_changes (bucket)
    values (pg_catalog.date_bin('1 minute', old.created_at, '2000-01-01 00:00:00+00'));
  end if;
  if tg_op <> 'DELETE' and new.created_at >= v_oldest then
    insert into monitoring._error_changes (bucket)
    values (pg_catalog.date_bin('1 minute', new.created_at, '2000-01-01 00:00:00+00'));
  end if;
  return null;
end
$$;

comment on function monitoring._log_error_change() is
'Trigger on public.whatsapp_error_logs (after insert, update, delete of rows older than _change_lag()): log the '
'minutes to recompute in monitoring._error_changes, for rows created within _error_change_horizon().';

create or replace function monitoring._install_rollup_triggers()
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  -- The WHEN clauses are as short as the test can be: Postgres parses and prepares each one
  -- again in every statement that writes the table, so their length is paid by every insert and
  -- status update of the app, though they are false for its young rows. Measured with pgbench
  -- (insert + 2 status updates, plain and monitored databases running side by side): the old
  -- clauses, which also held the horizon and the "did a counted column change" test, cost 5.5 %
  -- of throughput; these cost about 1 %. The rest of the test is in the trigger functions, which
  -- run only for rows older than _change_lag() (late changes, backfills). The delete triggers keep
  -- the horizon so that retention's deletes of old rows never call them.
  -- The constants go in as literals: a WHEN clause runs with the privileges of whoever writes
  -- the app table, and anon or authenticated may not call anything in monitoring.
  v_lag text := pg_catalog.quote_literal(monitoring._change_lag());
  v_keep text := pg_catalog.quote_literal(monitoring._change_horizon());
  v_keep_errors text := pg_catalog.quote_literal(monitoring._error_change_horizon());
begin
  execute format(
    'create or replace trigger monitoring_rollups_insert after insert on public.whatsapp_notifications '
    'for each row when (new.created_at < pg_catalog.clock_timestamp() - %1$s::interval) '
    'execute function monitoring._log_notification_change()', v_lag
  );
  execute format(
    'create or replace trigger monitoring_rollups_update '
    'after update of status, created_at, sent_at, processing_started_at, read_at on public.whatsapp_notifications '
    'for each row when (least(old.created_at, new.created_at) < pg_catalog.clock_timestamp() - %1$s::interval) '
    'execute function monitoring._log_notification_change()', v_lag
  );
  execute format(
    'create or replace trigger monitoring_rollups_delete after delete on public.whatsapp_notifications '
    'for each row when (old.created_at < pg_catalog.clock_timestamp() - %1$s::interval '
    'and old.created_at >= pg_catalog.clock_timestamp() - %2$s::interval) '
    'execute function monitoring._log_notification_change()', v_lag, v_keep
  );
  execute format(
    'create or replace trigger monitoring_rollups_insert after insert on public.whatsapp_error_logs '
    'for each row when (new.created_at < pg_catalog.clock_timestamp() - %1$s::interval) '
    'execute function monitoring._log_error_change()', v_lag
  );
  execute format(
    'create or replace trigger monitoring_rollups_update after update of created_at, error_type '
    'on public.whatsapp_error_logs '
    'for each row when (least(old.created_at, new.created_at) < pg_catalog.clock_timestamp() - %1$s::interval) '
    'execute function monitoring._log_error_change()', v_lag
  );
  execute format(
    'create or replace trigger monitoring_rollups_delete after delete on public.whatsapp_error_logs '
    'for each row when (old.created_at < pg_catalog.clock_timestamp() - %1$s::interval '
    'and old.created_at >= pg_catalog.clock_timestamp() - %2$s::interval) '
    'execute function monitoring._log_error_change()', v_lag, v_keep_errors
  );
end
$$;

comment on function monitoring._install_rollup_triggers() is
'Internal: create (or replace) the six change-capture triggers on the app tables (after insert, update, delete on '
'whatsapp_notifications and whatsapp_error_logs), whose WHEN clauses skip rows younger than _change_lag() (and, '
'for deletes, older than the change horizon; the trigger functions apply the horizon to the rest). Idempotent; '
'run by the schema. The WHEN clauses hold the intervals as literals.';

select monitoring._install_rollup_triggers();

create or replace function monitoring._hour_ceil(
  -- any time
  p_at timestamptz
)
returns timestamptz
language plpgsql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return pg_catalog.date_bin('1 hour', p_at - interval '1 microsecond', '2000-01-01 00:00:00+00') + interval '1 hour';
end
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

-- ---------------------------------------------------------------------------------------------
-- The refresh, stage by stage
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._notification_minute_sigs(
  -- first minute
  p_from timestamptz,
  -- end (exclusive)
  p_to timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
begin
  return (
    select coalesce(jsonb_object_agg(m.bucket, jsonb_build_array(
      m.total, m.pending, m.processing, m.sent, m.delivered, m.read, m.failed, m.latency_count, m.latency_sum_ms,
      m.queue_count, m.queue_sum_ms, m.read_count, m.read_sum_ms,
      (
        select jsonb_agg(jsonb_build_array(l.kind, l.bin, l.n) order by l.kind, l.bin)
        from monitoring.latency_minutes as l
        where l.bucket = m.bucket and l.n <> 0
      )
    )), '{}'::jsonb)
    from monitoring.notification_minutes as m
    where m.bucket >= p_from and m.bucket < p_to and m.total <> 0
  );
end
$$;

comment on function monitoring._notification_minute_sigs(timestamptz, timestamptz) is
'Internal: each minute of [p_from, p_to) with notifications, as its counts and histogram bins (the errors column '
'apart), so a refresh can tell which recomputed minutes changed and rebuild only their hours.';

create or replace function monitoring._error_minute_sigs(
  -- first minute
  p_from timestamptz,
  -- end (exclusive)
  p_to timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
begin
  return (
    select coalesce(jsonb_object_agg(e.bucket, e.sig), '{}'::jsonb)
    from (
      select m.bucket, jsonb_agg(jsonb_build_array(m.error_type, m.error_count, m.last_at) order by m.error_type) as sig
      from monitoring.error_minutes as m
      where m.bucket >= p_from and m.bucket < p_to
      group by m.bucket
    ) as e
  );
end
$$;

comment on function monitoring._error_minute_sigs(timestamptz, timestamptz) is
'Internal: each minute of [p_from, p_to) with errors, as its types, counts and last times, so a refresh can tell '
'which recomputed minutes changed and rebuild only their hours and days.';

create or replace function monitoring._changed_minutes(
  -- minutes as they were (from _notification_minute_sigs or _error_minute_sigs)
  p_before jsonb,
  -- and as they are
  p_after jsonb
)
returns timestamptz[]
language plpgsql
stable
set search_path = ''
as $$
begin
  return array(
    select k.bucket::timestamptz
    from (select jsonb_object_keys(p_before) union select jsonb_object_keys(p_after)) as k (bucket)
    where p_before -> k.bucket is distinct from p_after -> k.bucket
  );
end
$$;

comment on function monitoring._changed_minutes(jsonb, jsonb) is
'Internal: the minutes whose signature differs between two readings (appeared, gone or changed).';

create or replace function monitoring._refresh_notifications(
  -- recompute minutes [p_from, p_to) from raw rows
  p_from timestamptz,
  -- the new watermark: changes at or after it stay logged (views read raw rows there)
  p_to timestamptz,
  -- minutes before this are outside the horizon
  p_floor timestamptz
)
returns timestamptz[]
language plpgsql
volatile
set search_path = ''
set jit = off
-- generic plans, every range bounded on both sides (see the file header)
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_begin constant timestamptz := '-infinity'::timestamptz;
  -- a regular refresh recomputes a few minutes: compare them, so an hour whose minutes did not
  -- change is not rebuilt (in the first minutes of an hour the previous one would be, each time)
  v_compare constant boolean := p_to - p_from <= interval '1 day';
  v_before jsonb;
  v_buckets timestamptz [];
begin
  if v_compare then
    v_before := monitoring._notification_minute_sigs(p_from, p_to);
  end if;
  delete from monitoring.notification_minutes as m
  where (m.bucket >= p_from and m.bucket < p_to) or (m.bucket >= v_begin and m.bucket < p_floor);
  delete from monitoring.latency_minutes as m
  where (m.bucket >= p_from and m.bucket < p_to) or (m.bucket >= v_begin and m.bucket < p_floor);

  -- One statement, one snapshot: the logged changes it consumes and the raw rows it reads agree,
  -- so each change counts once (in the raw recompute when its minute is recomputed, else as a delta).
  with
  consumed as (
    delete from monitoring._notification_changes as c
    where c.bucket < p_to
    returning c.bucket, c.status, c.latency_ms, c.queue_ms, c.read_ms, c.n
  ),
  facts as (
    select
      pg_catalog.date_bin('1 minute', r.created_at, '2000-01-01 00:00:00+00') as bucket,
      r.status::text as status,
      extract(epoch from r.sent_at - r.created_at) * 1000 as latency_ms,
      extract(epoch from r.processing_started_at - r.created_at) * 1000 as queue_ms,
      extract(epoch from r.read_at - r.sent_at) * 1000 as read_ms,
      1 as n
    from public.whatsapp_notifications as r
    where r.created_at >= p_from and r.created_at < p_to
    union all
    select c.bucket, c.status, c.latency_ms, c.queue_ms, c.read_ms, c.n
    from consumed as c
    where c.bucket >= p_floor and c.bucket < p_from
  ),
  counts as (
    insert into monitoring.notification_minutes as m (
      bucket, total, pending, processing, sent, delivered, read, failed,
      latency_count, latency_sum_ms, queue_count, queue_sum_ms, read_count, read_sum_ms
    )
    select
      f.bucket,
      sum(f.n),
      coalesce(sum(f.n) filter (where f.status = 'pending'), 0),
      coalesce(sum(f.n) filter (where f.status = 'processing'), 0),
      coalesce(sum(f.n) filter (where f.status = 'sent'), 0),
      coalesce(sum(f.n) filter (where f.status = 'delivered'), 0),
      coalesce(sum(f.n) filter (where f.status = 'read'), 0),
      coalesce(sum(f.n) filter (where f.status = 'failed'), 0),
      coalesce(sum(f.n) filter (where f.latency_ms is not null), 0),
      coalesce(sum(f.n * f.latency_ms), 0),
      coalesce(sum(f.n) filter (where f.queue_ms is not null), 0),
      coalesce(sum(f.n * f.queue_ms), 0),
      coalesce(sum(f.n) filter (where f.read_ms is not null), 0),
      coalesce(sum(f.n * f.read_ms), 0)
    from facts as f
    group by f.bucket
    on conflict (bucket) do update set
      total = m.total + excluded.total,
      pending = m.pending + excluded.pending,
      processing = m.processing + excluded.processing,
      sent = m.sent + excluded.sent,
      delivered = m.delivered + excluded.delivered,
      read = m.read + excluded.read,
      failed = m.failed + excluded.failed,
      latency_count = m.latency_count + excluded.latency_count,
      latency_sum_ms = m.latency_sum_ms + excluded.latency_sum_ms,
      queue_count = m.queue_count + excluded.queue_count,
      queue_sum_ms = m.queue_sum_ms + excluded.queue_sum_ms,
      read_count = m.read_count + excluded.read_count,
      read_sum_ms = m.read_sum_ms + excluded.read_sum_ms
    returning m.bucket
  ),
  bins as (
    -- two arms over facts, not a lateral (values ...) per row: 3.5 against 5.9 ms at 3,400 rows
    insert into monitoring.latency_minutes as m (bucket, kind, bin, n)
    select k.bucket, k.kind, k.bin, sum(k.n)
    from (
      select
        f.bucket, 'latency' as kind,
        greatest(1, pg_catalog.width_bucket(f.latency_ms, monitoring._latency_edges_ms()))::smallint as bin, f.n
      from facts as f
      where f.latency_ms is not null
      union all
      select f.bucket, 'queue', greatest(1, pg_catalog.width_bucket(f.queue_ms, monitoring._latency_edges_ms()))::smallint, f.n
      from facts as f
      where f.queue_ms is not null
    ) as k
    group by k.bucket, k.kind, k.bin
    on conflict (bucket, kind, bin) do update set n = m.n + excluded.n
    returning m.bucket
  )
  -- the older minutes the logged changes touched
  select array(
    select distinct t.bucket
    from (select b.bucket from counts as b union all select b.bucket from bins as b) as t
    where t.bucket < p_from
  )
  into v_buckets;

  delete from monitoring.latency_minutes as m where m.n = 0;
  -- and the recomputed minutes that changed (all of them when not compared)
  if v_compare then
    return v_buckets || monitoring._changed_minutes(v_before, monitoring._notification_minute_sigs(p_from, p_to));
  end if;
  return v_buckets || array(
    select h from pg_catalog.generate_series(
      pg_catalog.date_bin('1 hour', p_from, '2000-01-01 00:00:00+00'), p_to, interval '1 hour'
    ) as h
  );
end
$$;

comment on function monitoring._refresh_notifications(timestamptz, timestamptz, timestamptz) is
'Refresh stage 1: recompute notification_minutes and latency_minutes for [p_from, p_to) from raw rows and add '
'the logged changes of older minutes (>= p_floor), in one statement. Returns the minutes whose counts changed '
'(for a range over a day: the start of every hour in it).';

create or replace function monitoring._refresh_errors(
  -- recompute minutes [p_from, p_to) from raw rows
  p_from timestamptz,
  -- the new watermark
  p_to timestamptz,
  -- minutes before this are outside the minute horizon
  p_floor timestamptz
)
returns timestamptz[]
language plpgsql
volatile
set search_path = ''
set jit = off
-- generic plans, every range bounded on both sides (see the file header)
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_begin constant timestamptz := '-infinity'::timestamptz;
  v_compare constant boolean := p_to - p_from <= interval '1 day';
  v_before jsonb;
  v_dirty timestamptz [];
  v_minutes timestamptz [];
begin
  if v_compare then
    v_before := monitoring._error_minute_sigs(p_from, p_to);
  end if;
  -- Minutes whose error rows changed (recomputing a minute twice is harmless, so the log may be
  -- read in a statement of its own).
  with c as (delete from monitoring._error_changes as e where e.bucket < p_to returning e.bucket)
  select coalesce(array_agg(distinct c.bucket), '{}') into v_dirty from c where c.bucket < p_from;

  v_minutes := array(select d from unnest(v_dirty) as d where d >= p_floor);
  delete from monitoring.error_minutes as m
  where
    (m.bucket >= p_from and m.bucket < p_to) or m.bucket = any(v_minutes)
    or (m.bucket >= v_begin and m.bucket < p_floor);
  insert into monitoring.error_minutes (bucket, error_type, error_count, last_at)
  select
    pg_catalog.date_bin('1 minute', e.created_at, '2000-01-01 00:00:00+00'),
    coalesce(e.error_type::text, '(unknown)'),
    count(*),
    max(e.created_at)
  from (
    select x.created_at, x.error_type from public.whatsapp_error_logs as x
    where x.created_at >= p_from and x.created_at < p_to
    union all
    select x.created_at, x.error_type
    from unnest(v_minutes) as d (bucket)
    inner join public.whatsapp_error_logs as x
      on x.created_at >= d.bucket and x.created_at < d.bucket + interval '1 minute'
  ) as e
  group by 1, 2;

  -- all-type error counts per minute next to the notification counts (hourly_stats reads both)
  update monitoring.notification_minutes as m set errors = 0
  where m.errors <> 0 and ((m.bucket >= p_from and m.bucket < p_to) or m.bucket = any(v_minutes));
  insert into monitoring.notification_minutes as m (bucket, errors)
  select e.bucket, sum(e.error_count)
  from monitoring.error_minutes as e
  where (e.bucket >= p_from and e.bucket < p_to) or e.bucket = any(v_minutes)
  group by e.bucket
  on conflict (bucket) do update set errors = excluded.errors;

  -- the logged minutes, and the recomputed minutes that changed (all of them when not compared)
  if v_compare then
    return v_dirty || monitoring._changed_minutes(v_before, monitoring._error_minute_sigs(p_from, p_to));
  end if;
  return v_dirty || array(
    select h from pg_catalog.generate_series(
      pg_catalog.date_bin('1 hour', p_from, '2000-01-01 00:00:00+00'), p_to, interval '1 hour'
    ) as h
  );
end
$$;

comment on function monitoring._refresh_errors(timestamptz, timestamptz, timestamptz) is
'Refresh stage 2: recompute error_minutes for [p_from, p_to) and for every logged minute inside the horizon, and '
'the per-minute error counts in notification_minutes. Returns the logged minutes before p_from (any age: their '
'days are refreshed too) and the recomputed minutes that changed (for a range over a day: every hour''s start).';

create or replace function monitoring._refresh_hours(
  -- hours whose minutes changed
  p_hours timestamptz[],
  -- the watermark: only hours before its hour are complete
  p_to timestamptz,
  -- hours before the first whole hour after this are outside the horizon
  p_floor timestamptz,
  -- false: only the error counts changed (the notification and latency hours stay as they are)
  p_notifications boolean default true
)
returns integer
language plpgsql
volatile
set search_path = ''
set jit = off
-- generic plans, every range bounded on both sides (see the file header)
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_begin constant timestamptz := '-infinity'::timestamptz;
  v_hours timestamptz [];
  v_n integer;
begin
  v_hours := array(
    select distinct h from unnest(p_hours) as h
    where h >= monitoring._hour_ceil(p_floor) and h < pg_catalog.date_bin('1 hour', p_to, '2000-01-01 00:00:00+00')
  );
  delete from monitoring.error_hours as h where h.bucket = any(p_hours) or (h.bucket >= v_begin and h.bucket < p_floor);
  insert into monitoring.error_hours (bucket, error_type, error_count, last_at)
  select h.hour, m.error_type, sum(m.error_count), max(m.last_at)
  from unnest(v_hours) as h (hour)
  inner join monitoring.error_minutes as m on m.bucket >= h.hour and m.bucket < h.hour + interval '1 hour'
  group by h.hour, m.error_type;
  if not p_notifications then
    -- the hourly error totals next to the notification counts (hourly_stats reads both); an hour
    -- that had neither notifications nor errors gets its row here
    insert into monitoring.notification_hours as n (bucket, errors)
    select h.hour, coalesce(sum(m.errors), 0)
    from unnest(v_hours) as h (hour)
    left join monitoring.notification_minutes as m on m.bucket >= h.hour and m.bucket < h.hour + interval '1 hour'
    group by h.hour
    on conflict (bucket) do update set errors = excluded.errors;
    return 0;
  end if;

  delete from monitoring.notification_hours as h
  where h.bucket = any(p_hours) or (h.bucket >= v_begin and h.bucket < p_floor);
  delete from monitoring.latency_hours as h
  where h.bucket = any(p_hours) or (h.bucket >= v_begin and h.bucket < p_floor);

  insert into monitoring.notification_hours (
    bucket, total, pending, processing, sent, delivered, read, failed, errors,
    latency_count, latency_sum_ms, queue_count, queue_sum_ms, read_count, read_sum_ms
  )
  select
    h.hour, sum(m.total), sum(m.pending), sum(m.processing), sum(m.sent), sum(m.delivered), sum(m.read),
    sum(m.failed), sum(m.errors), sum(m.latency_count), sum(m.latency_sum_ms), sum(m.queue_count),
    sum(m.queue_sum_ms), sum(m.read_count), sum(m.read_sum_ms)
  from unnest(v_hours) as h (hour)
  inner join monitoring.notification_minutes as m on m.bucket >= h.hour and m.bucket < h.hour + interval '1 hour'
  group by h.hour;
  get diagnostics v_n = row_count;

  insert into monitoring.latency_hours (bucket, kind, bin, n)
  select h.hour, m.kind, m.bin, sum(m.n)
  from unnest(v_hours) as h (hour)
  inner join monitoring.latency_minutes as m on m.bucket >= h.hour and m.bucket < h.hour + interval '1 hour'
  group by h.hour, m.kind, m.bin;
  return v_n;
end
$$;

comment on function monitoring._refresh_hours(timestamptz[], timestamptz, timestamptz, boolean) is
'Refresh stage 3: rebuild the hour tier (notification_hours, latency_hours, error_hours) of the given hours from '
'the minute tables: complete hours (before the watermark''s hour) inside the horizon. p_notifications false: the '
'error hours and the hourly error totals only.';

create or replace function monitoring._refresh_days(
  -- the UTC days to rebuild
  p_days date[],
  -- the watermark
  p_to timestamptz,
  -- minutes before this are outside the minute horizon
  p_floor timestamptz,
  -- days before this are outside the day horizon
  p_day_floor date
)
returns integer
language plpgsql
volatile
set search_path = ''
set jit = off
-- generic plans, every range bounded on both sides (see the file header)
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  -- the first day the minute tables cover whole
  v_cover date := ((p_floor at time zone 'UTC') - interval '1 microsecond')::date + 1;
  v_hour timestamptz := pg_catalog.date_bin('1 hour', p_to, '2000-01-01 00:00:00+00');
  -- the span of the days, so the hour and minute tables are read by their index
  v_first timestamptz := (select min(d) from unnest(p_days) as d)::timestamp at time zone 'UTC';
  v_last timestamptz := ((select max(d) from unnest(p_days) as d) + 1)::timestamp at time zone 'UTC';
  v_n integer;
begin
  delete from monitoring.error_days as d where d.day = any(p_days) or d.day < p_day_floor;
  -- covered days: whole hours from error_hours, the watermark's hour from error_minutes
  insert into monitoring.error_days (day, error_type, error_count, last_at)
  select x.day, x.error_type, sum(x.n), max(x.last_at)
  from (
    select (h.bucket at time zone 'UTC')::date as day, h.error_type, h.error_count as n, h.last_at
    from monitoring.error_hours as h
    where
      h.bucket >= v_first and h.bucket < least(v_hour, v_last)
      and (h.bucket at time zone 'UTC')::date = any(p_days)
    union all
    select (m.bucket at time zone 'UTC')::date, m.error_type, m.error_count, m.last_at
    from monitoring.error_minutes as m
    where
      m.bucket >= greatest(v_hour, v_first) and m.bucket < least(p_to, v_last)
      and (m.bucket at time zone 'UTC')::date = any(p_days)
  ) as x
  where x.day >= v_cover and x.day >= p_day_floor
  group by x.day, x.error_type;
  get diagnostics v_n = row_count;
  -- older days from the raw rows (a regular refresh has none)
  if not exists (select from unnest(p_days) as d (day) where d.day < v_cover and d.day >= p_day_floor) then
    return v_n;
  end if;
  insert into monitoring.error_days (day, error_type, error_count, last_at)
  select (e.created_at at time zone 'UTC')::date, coalesce(e.error_type::text, '(unknown)'), count(*), max(e.created_at)
  from unnest(p_days) as d (day)
  inner join public.whatsapp_error_logs as e
    on
      e.created_at >= (d.day::timestamp at time zone 'UTC')
      and e.created_at < least((d.day + 1)::timestamp at time zone 'UTC', p_to)
  where d.day < v_cover and d.day >= p_day_floor
  group by 1, 2;
  return v_n;
end
$$;

comment on function monitoring._refresh_days(date[], timestamptz, timestamptz, date) is
'Refresh stage 4: rebuild error_days for the given UTC days: from error_hours and error_minutes where the minute '
'horizon covers the whole day, from the raw error logs before it.';

create or replace function monitoring._recompute_from(
  -- the new watermark
  p_to timestamptz,
  -- rollup_state as the previous refresh left it
  p_state monitoring.rollup_state
)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
begin
  -- the first minute whose raw rows a refresh up to p_to must recompute (see the file header):
  -- young rows, rows a transaction running at the previous refresh may have changed, and the
  -- minutes since the previous watermark; whole minutes only
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return pg_catalog.date_bin(
    '1 minute', least(p_to - monitoring._change_lag(), p_state.changes_from, p_state.watermark),
    '2000-01-01 00:00:00+00'
  );
end
$$;

comment on function monitoring._recompute_from(timestamptz, monitoring.rollup_state) is
'Internal: where a refresh up to p_to starts recomputing minutes from raw rows, given the state the previous '
'refresh left; for refresh_rollups() and _refresh_error_rollups().';

create or replace function monitoring._refresh_range(
  -- recompute minutes [p_from, p_to) from raw rows, and apply the logged changes before p_to
  p_from timestamptz,
  -- the watermark
  p_to timestamptz,
  -- minutes before this are outside the minute horizon
  p_floor timestamptz,
  -- days before this are outside the day horizon
  p_day_floor date,
  -- every day of the day horizon is rebuilt (a full refresh)
  p_full boolean,
  -- false: the error rollups only (the notification minutes stay as they are)
  p_notifications boolean,
  -- the watermark the previous refresh left: hours it had not completed are built now
  p_since timestamptz
)
returns integer
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_hours timestamptz [] := '{}'::timestamptz [];
  v_errors timestamptz [];
  v_n integer;
begin
  if p_notifications then
    v_hours := monitoring._refresh_notifications(p_from, p_to, p_floor);
  end if;
  v_errors := monitoring._refresh_errors(p_from, p_to, p_floor);
  -- hours: of the minutes that changed (logged or recomputed), the hours the watermark completed
  -- since the previous refresh, and on a full refresh every hour
  v_hours := array(
    select pg_catalog.date_bin('1 hour', b, '2000-01-01 00:00:00+00') from unnest(v_hours || v_errors) as b
  ) || array(
    select h from pg_catalog.generate_series(
      pg_catalog.date_bin(
        '1 hour', case when p_full then p_from else greatest(p_from, p_since) end, '2000-01-01 00:00:00+00'
      ),
      p_to, interval '1 hour'
    ) as h
  );
  v_n := monitoring._refresh_hours(v_hours, p_to, p_floor, p_notifications);
  perform monitoring._refresh_days(
    case
      when p_full then array(
          select d::date from pg_catalog.generate_series(p_day_floor, (p_to at time zone 'UTC')::date, interval '1 day') as d
        )
      -- the days of the error minutes that changed (a day's row sums its hours and the watermark's
      -- hour's minutes, so it changes only when one of those minutes does)
      else array(select distinct (b at time zone 'UTC')::date from unnest(v_errors) as b)
    end,
    p_to, p_floor, p_day_floor
  );
  return v_n;
end
$$;

comment on function monitoring._refresh_range(
  timestamptz, timestamptz, timestamptz, date, boolean, boolean, timestamptz
) is
'Internal: the stages of a refresh between two bounds (notification minutes, error minutes, hours, days), for '
'refresh_rollups() and _refresh_error_rollups(): the hours and days of the minutes that changed are rebuilt, and '
'the hours the watermark completed. Returns the number of hours rebuilt.';

create or replace function monitoring._refresh_error_rollups(
  -- the evaluation's now
  p_now timestamptz
)
returns jsonb
language plpgsql
volatile
security definer -- callers (service_role, pg_cron) may only read the rollups; this writes them
set search_path = ''
set jit = off
as $$
declare
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_settings monitoring.rollup_settings;
  v_state monitoring.rollup_state;
  v_w timestamptz := pg_catalog.date_bin('1 minute', p_now, '2000-01-01 00:00:00+00');
  v_floor timestamptz;
  v_from timestamptz;
  v_n integer;
begin
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('monitoring.refresh_rollups'));
  select * into strict v_settings from monitoring.rollup_settings as s where s.id;
  select * into strict v_state from monitoring.rollup_state as s where s.id;
  v_floor := v_w - v_settings.minute_horizon;
  -- Only within the minute of the last refresh: moving the watermark (which both kinds of
  -- rollups share) is refresh_rollups' work. The bound of the young minutes is the one that
  -- refresh left (see the file header): the changes since were logged by the triggers or touch
  -- rows younger than _change_lag(). rollup_state is left alone, so the next refresh_rollups()
  -- recomputes at least as much as it would have.
  if v_state.watermark is distinct from v_w or v_state.changes_from < v_floor then
    return monitoring.refresh_rollups(p_now);
  end if;
  v_from := monitoring._recompute_from(v_w, v_state);
  v_n := monitoring._refresh_range(
    v_from, v_w, v_floor, ((v_w - v_settings.day_horizon) at time zone 'UTC')::date, false, false, v_state.watermark
  );
  return jsonb_build_object(
    'watermark', v_w,
    'from', v_from,
    'errorsOnly', true,
    'hours', v_n,
    'durationMs', round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000, 1)
  );
end
$$;

comment on function monitoring._refresh_error_rollups(timestamptz) is
'Internal: make the error rollups exact at p_now for a rule that reads only them (the spec''s hourly error check): '
'within the minute of the last refresh, recompute the young error minutes and apply the logged error changes, '
'without the notification minutes; otherwise a full monitoring.refresh_rollups(p_now).';

-- =============================================================================================
-- API: Public
-- =============================================================================================
create or replace function monitoring.refresh_rollups(
  -- refresh up to the minute holding p_now: buckets before date_trunc('minute', p_now) complete
  p_now timestamptz default now(),
  -- true: recompute the whole horizon from raw rows (after a TRUNCATE of an app table)
  p_full boolean default false
)
returns jsonb
language plpgsql
volatile
security definer -- callers (service_role, pg_cron) may only read the rollups; this writes them
set search_path = ''
set jit = off
-- generic plans, every range bounded on both sides (see the file header)
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_begin constant timestamptz := '-infinity'::timestamptz;
  v_settings monitoring.rollup_settings;
  v_state monitoring.rollup_state;
  v_snap pg_catalog.pg_snapshot;
  v_bound timestamptz;
  v_w timestamptz;
  v_floor timestamptz;
  v_from timestamptz;
  v_full boolean;
  v_n integer;
begin
  if p_now is null or p_full is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('monitoring.refresh_rollups: p_now must be a finite time and p_full not null (got %s, %s)',
        coalesce(p_now::text, 'null'), coalesce(p_full::text, 'null')),
      hint = 'call monitoring.refresh_rollups() or monitoring.refresh_rollups(p_full => true)';
  end if;

  -- one refresh at a time; a second caller waits and then recomputes on top of the first
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('monitoring.refresh_rollups'));

  select * into strict v_settings from monitoring.rollup_settings as s where s.id;
  select * into strict v_state from monitoring.rollup_state as s where s.id;

  -- Where the next refresh must start (rollup_state.changes_from): see the file header. The
  -- time is taken before the snapshot, so a transaction id >= next_xid changed nothing earlier.
  v_snap := pg_catalog.pg_current_snapshot();
  insert into monitoring._refresh_marks (taken_at, next_xid)
  values (v_started, pg_catalog.pg_snapshot_xmax(v_snap))
  on conflict (taken_at) do nothing;
  -- The oldest other transaction still running that may write here: this one's own changes are
  -- visible to it, and a transaction of another database cannot change the app tables (a
  -- transaction pg_stat_activity does not show counts, to be safe).
  select max(k.taken_at) into v_bound
  from monitoring._refresh_marks as k
  where k.next_xid <= coalesce(
    (
      select min(x.xid) from pg_catalog.pg_snapshot_xip(v_snap) as x (xid)
      where
        x.xid is distinct from pg_catalog.pg_current_xact_id_if_assigned()
        and not exists (
          select 1 from pg_catalog.pg_stat_activity as a
          where
            a.backend_xid::text::bigint = x.xid::text::bigint % 4294967296
            and a.datname is distinct from pg_catalog.current_database()
        )
    ),
    pg_catalog.pg_snapshot_xmax(v_snap)
  );

  v_w := pg_catalog.date_bin('1 minute', p_now, '2000-01-01 00:00:00+00');
  v_floor := v_w - v_settings.minute_horizon;
  v_full := p_full or v_state.watermark < v_floor or v_state.changes_from < v_floor;
  v_from := case when v_full then v_floor else monitoring._recompute_from(v_w, v_state) end;

  v_n := monitoring._refresh_range(
    v_from, v_w, v_floor, ((v_w - v_settings.day_horizon) at time zone 'UTC')::date, v_full, true, v_state.watermark
  );

  delete from monitoring._refresh_marks as k
  where k.taken_at >= v_begin and k.taken_at < v_started - v_settings.minute_horizon;
  update monitoring.rollup_state as s set
    watermark = v_w,
    changes_from = coalesce(v_bound - monitoring._change_lag(), '-infinity'),
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
    'hours', v_n,
    'durationMs', round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000, 1)
  );
end
$$;

comment on function monitoring.refresh_rollups(timestamptz, boolean) is
'Bring the rollups (notification, latency and error minutes and hours, error days) up to date and move the '
'watermark to date_trunc(''minute'', p_now): recompute the young minutes from raw rows and apply every logged '
'change to older rows, so the views equal the raw tables. p_full recomputes the whole horizon (only needed after '
'TRUNCATE of an app table). Runs every minute (pg_cron) and before rule evaluation; serialised by an advisory '
'transaction lock. Returns a summary.';

create or replace function monitoring._refresh_for_evaluation(
  -- the evaluation's now
  p_now timestamptz,
  -- true: the rules to evaluate read only the error rollups (_refresh_error_rollups)
  p_errors_only boolean default false
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  if p_errors_only then
    perform monitoring._refresh_error_rollups(p_now);
  else
    perform monitoring.refresh_rollups(p_now);
  end if;
exception when others then
  -- rules still run on the rollups as they are; the refresh job's own failure shows in job_runs
  -- and health()
  raise warning 'monitoring: refreshing the rollups before evaluation failed: %', sqlerrm;
end
$$;

comment on function monitoring._refresh_for_evaluation(timestamptz, boolean) is
'Internal: refresh the rollups before rules read them, so a rule''s value equals the raw tables at evaluation (a '
'failure is a warning: the rules then read the rollups as they are). p_errors_only: the error rollups suffice.';

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

create or replace trigger rollup_settings_limits
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_limits();

create or replace trigger rollup_settings_single_row
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_single_row();

create or replace trigger rollup_settings_validate_nulls
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_not_null();

create or replace trigger rollup_state_finite_times
before update on monitoring.rollup_state
for each row execute function monitoring._validate_finite_times('refreshed_for');
