-- Digests: the spec's maintenance checklists (daily, weekly, monthly), built inside Postgres from
-- the rollups and the alert history, scheduled on pg_cron (monitoring.jobs) and delivered through
-- the same outbox as the alerts (monitoring.deliveries, event 'digest').
--
--   monitoring.digest(kind, p_now)        the digest of the last complete period before p_now, as jsonb
--   monitoring.send_digest(kind, p_now)   build it and queue it to the chosen channels
--   monitoring.set_digest(kind, ...)      channels, schedule, on/off (rescheduled with pg_cron)
--
-- Periods are UTC: daily = the previous day, weekly = the previous ISO week (Monday to Monday),
-- monthly = the previous calendar month. Jobs monitoring-digest-daily/-weekly/-monthly (rows of
-- monitoring.jobs, disabled with enabled = false) run monitoring.run_job('digest-<kind>'), which
-- sends each period once.
--
-- History: the hour rollups keep 8 days (rollup_settings.minute_horizon), the daily error rollup
-- 31 days. A monthly review needs two months of hours, so every digest build first copies the
-- complete hours of the hour rollups into monitoring.digest_hours (one row per hour: counts and
-- the latency and queue histograms, about 9,000 rows a year). The daily digest's job keeps that
-- copy current even when it is sent to no channel.


-- =============================================================================================
-- Settings
-- =============================================================================================
create table if not exists monitoring.digest_settings (
  kind text primary key,
  channels text[] not null default '{}',
  top_n integer not null default 5,
  review_percentile numeric not null default 99,
  updated_at timestamptz not null default now()
);

comment on table monitoring.digest_settings is
'One row per digest (daily, weekly, monthly): the channels it is sent to and how it is built. Its schedule and '
'on/off switch are the row monitoring-digest-<kind> of monitoring.jobs; change all three with '
'monitoring.set_digest().';

comment on column monitoring.digest_settings.kind is 'daily, weekly or monthly.';

comment on column monitoring.digest_settings.channels is
'Names of monitoring.channels (webhook, slack, discord or edge_function) the digest is sent to; empty: built and '
'kept in monitoring.digest_runs, sent nowhere.';

comment on column monitoring.digest_settings.top_n is 'How many error types and slow queries a digest lists.';

comment on column monitoring.digest_settings.review_percentile is
'Monthly threshold review: the percentile of normal hours a suggested threshold sits at (99: a normal hour '
'crosses it about 1 % of the time; for "less than" rules the mirror percentile, 1).';

-- The limits of digest_settings (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, min_value, min_exclusive, max_value, allowed, hint) values
('digest_settings', 'kind', null, false, null, '{daily,weekly,monthly}', 'use daily, weekly or monthly'),
('digest_settings', 'top_n', '1', false, '50', null, 'use a count such as 5'),
('digest_settings', 'review_percentile', '50', false, '99.9', null, 'use a percentile such as 99')
on conflict (table_name, column_name) do nothing;

create or replace function monitoring._validate_digest_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_name text;
  v_kind text;
begin
  if new.channels is not null then
    foreach v_name in array new.channels loop
      select c.kind into v_kind from monitoring.channels as c where c.name = v_name;
      if not found then
        raise exception using
          errcode = 'check_violation',
          message = format('digest_settings.channels: channel %L does not exist', left(v_name, 200)),
          hint = 'create it first (monitoring.set_channel or pydeploy channel add), see select name from '
            || 'monitoring.channels';
      end if;
      if v_kind = 'alertmanager' then
        raise exception using
          errcode = 'check_violation',
          message = format('digest_settings.channels: %s is an alertmanager channel, which takes alerts, not '
            || 'digests', v_name),
          hint = 'send digests to a webhook, slack, discord or edge_function channel';
      end if;
    end loop;
    if cardinality(new.channels) <> (select count(distinct c) from unnest(new.channels) as c) then
      raise exception using
        errcode = 'check_violation',
        message = 'digest_settings.channels names a channel twice',
        hint = 'list each channel once';
    end if;
  end if;
  new.updated_at := now();
  return new;
end
$$;

comment on function monitoring._validate_digest_settings() is
'Trigger: every channel a digest goes to exists, is not an alertmanager channel and is listed once.';

create or replace trigger digest_settings_limits
before insert or update on monitoring.digest_settings
for each row execute function monitoring._validate_limits();

create or replace trigger digest_settings_validate
before insert or update on monitoring.digest_settings
for each row execute function monitoring._validate_digest_settings();

create or replace trigger digest_settings_validate_nulls
before insert or update on monitoring.digest_settings
for each row execute function monitoring._validate_not_null();

insert into monitoring.digest_settings (kind) values ('daily'), ('weekly'), ('monthly')
on conflict (kind) do nothing;

insert into monitoring.jobs (name, job, schedule, description) values
(
  'monitoring-digest-daily', 'digest-daily', '5 8 * * *',
  'Daily digest of the previous UTC day (connection, delivery rates, critical errors, alerts), sent to '
  || 'digest_settings.channels; also keeps monitoring.digest_hours current.'
),
(
  'monitoring-digest-weekly', 'digest-weekly', '10 8 * * 1',
  'Weekly digest of the previous ISO week (error patterns, queue, sessions, performance, slow queries).'
),
(
  'monitoring-digest-monthly', 'digest-monthly', '15 8 1 * *',
  'Monthly digest of the previous month (log cleanup, threshold review, trends).'
)
on conflict (name) do nothing;

-- =============================================================================================
-- History the digests read
-- =============================================================================================
create table if not exists monitoring.digest_hours (
  hour timestamptz primary key,
  total integer not null,
  accepted integer not null,
  failed integer not null,
  errors integer not null,
  latency_count integer not null,
  latency_sum_ms numeric not null,
  queue_count integer not null,
  queue_sum_ms numeric not null,
  latency_hist integer[] not null,
  queue_hist integer[] not null,
  taken_at timestamptz not null
);

comment on table monitoring.digest_hours is
'Per-hour copy of the hour rollups (notification_hours, latency_hours, error_hours) kept beyond their 8 days for '
'the digests: counts, sums and the 23-bin latency and queue histograms (monitoring._latency_edges_ms()). Written by '
'monitoring._digest_snapshot(); kept 400 days (retention_policies.digest_hours).';

comment on column monitoring.digest_hours.accepted is 'Messages WhatsApp accepted (sent, delivered or read).';

comment on column monitoring.digest_hours.errors is 'Rows of public.whatsapp_error_logs created in the hour.';

comment on column monitoring.digest_hours.latency_hist is 'Delivery time (sent_at - created_at) per histogram bin.';

comment on column monitoring.digest_hours.queue_hist is
'Queue time (processing_started_at - created_at) per histogram bin.';

create table if not exists monitoring.digest_runs (
  id bigint generated always as identity primary key,
  kind text not null,
  period_start timestamptz not null,
  period_end timestamptz not null,
  scheduled boolean not null,
  built_at timestamptz not null,
  build_ms numeric not null,
  channels text[] not null,
  queued integer not null,
  digest jsonb not null
);

comment on table monitoring.digest_runs is
'Every digest sent (or built for no channel) by send_digest(): its period, channels, deliveries queued and the '
'digest itself. A scheduled run sends each period once. Kept 400 days (retention_policies.digest_runs).';

comment on column monitoring.digest_runs.scheduled is 'Sent by the digest job (true) or on demand (false).';

create unique index if not exists digest_runs_scheduled_key on monitoring.digest_runs (kind, period_start)
where scheduled;

create index if not exists digest_runs_built_at_idx on monitoring.digest_runs (built_at);

-- =============================================================================================
-- API: Private
-- =============================================================================================
create or replace function monitoring._digest_snapshot(
  -- now
  p_now timestamptz
)
returns integer
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_from timestamptz;
  v_rows integer;
begin
  -- the hours not copied yet, and the last day again (late changes still reach the hour rollups)
  select greatest(coalesce(max(d.hour) - interval '1 day', '-infinity'), p_now - interval '7 days')
  into v_from
  from monitoring.digest_hours as d;
  insert into monitoring.digest_hours as d (
    hour, total, accepted, failed, errors, latency_count, latency_sum_ms, queue_count, queue_sum_ms,
    latency_hist, queue_hist, taken_at
  )
  select
    h.hour,
    coalesce(n.total, 0),
    coalesce(n.sent + n.delivered + n.read, 0),
    coalesce(n.failed, 0),
    coalesce(e.errors, 0),
    coalesce(n.latency_count, 0),
    coalesce(n.latency_sum_ms, 0),
    coalesce(n.queue_count, 0),
    coalesce(n.queue_sum_ms, 0),
    array(
      select coalesce(sum(l.n), 0)::integer
      from generate_series(1, 23) as b (bin)
      left join monitoring.latency_hours as l on l.bucket = h.hour and l.kind = 'latency' and b.bin = l.bin
      group by b.bin
      order by b.bin
    ),
    array(
      select coalesce(sum(l.n), 0)::integer
      from generate_series(1, 23) as b (bin)
      left join monitoring.latency_hours as l on l.bucket = h.hour and l.kind = 'queue' and b.bin = l.bin
      group by b.bin
      order by b.bin
    ),
    p_now
  from (
    select x.bucket as hour from monitoring.notification_hours as x where x.bucket >= v_from and x.bucket < p_now
    union
    select x.bucket from monitoring.error_hours as x where x.bucket >= v_from and x.bucket < p_now
  ) as h
  left join monitoring.notification_hours as n on h.hour = n.bucket
  left join lateral (
    select sum(x.error_count)::integer as errors from monitoring.error_hours as x where x.bucket = h.hour
  ) as e on true
  on conflict (hour) do update
    set
      total = excluded.total, accepted = excluded.accepted, failed = excluded.failed, errors = excluded.errors,
      latency_count = excluded.latency_count, latency_sum_ms = excluded.latency_sum_ms,
      queue_count = excluded.queue_count, queue_sum_ms = excluded.queue_sum_ms,
      latency_hist = excluded.latency_hist, queue_hist = excluded.queue_hist, taken_at = excluded.taken_at
    where
      (d.total, d.accepted, d.failed, d.errors, d.latency_count, d.queue_count, d.latency_hist, d.queue_hist)
      is distinct from (
        excluded.total, excluded.accepted, excluded.failed, excluded.errors, excluded.latency_count,
        excluded.queue_count, excluded.latency_hist, excluded.queue_hist
      );
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

comment on function monitoring._digest_snapshot(timestamptz) is
'Internal: copy the complete hours of the hour rollups (the last 7 days at most, and the last copied day again) '
'into monitoring.digest_hours; returns the hours written.';

create or replace function monitoring._digest_figures(
  -- first hour of the period
  p_from timestamptz,
  -- end of the period (exclusive)
  p_to timestamptz
)
returns jsonb
language sql
stable
set search_path = ''
set jit = off
as $$
  select jsonb_build_object(
    'hoursCovered', count(*),
    'hoursInPeriod', (extract(epoch from p_to - p_from) / 3600)::integer,
    'messages', coalesce(sum(d.total), 0),
    'accepted', coalesce(sum(d.accepted), 0),
    'failed', coalesce(sum(d.failed), 0),
    'errors', coalesce(sum(d.errors), 0),
    -- null, not 100 %, when there was no message (the views' convention would hide a silent period)
    'deliveryRate', case when sum(d.total) > 0 then monitoring._rate(sum(d.accepted)::bigint, sum(d.total)::bigint) end,
    'avgDeliveryS', round(sum(d.latency_sum_ms) / nullif(sum(d.latency_count), 0) / 1000, 2),
    'avgQueueS', round(sum(d.queue_sum_ms) / nullif(sum(d.queue_count), 0) / 1000, 2),
    'p95DeliveryS', round(monitoring._hist_quantile(array(
      select sum(x.n)::bigint
      from monitoring.digest_hours as h2
      cross join unnest(h2.latency_hist) with ordinality as x (n, i)
      where h2.hour >= p_from and h2.hour < p_to
      group by x.i
      order by x.i
    ), 0.95) / 1000, 2),
    'p95QueueS', round(monitoring._hist_quantile(array(
      select sum(x.n)::bigint
      from monitoring.digest_hours as h2
      cross join unnest(h2.queue_hist) with ordinality as x (n, i)
      where h2.hour >= p_from and h2.hour < p_to
      group by x.i
      order by x.i
    ), 0.95) / 1000, 2),
    'maxErrorsPerHour', coalesce(max(d.errors), 0)
  )
  from monitoring.digest_hours as d
  where d.hour >= p_from and d.hour < p_to
$$;

comment on function monitoring._digest_figures(timestamptz, timestamptz) is
'Internal: messages, delivery rate, errors, average and p95 delivery and queue time (seconds) of a period, from '
'monitoring.digest_hours; hoursCovered says how many of its hours the rollups had.';

create or replace function monitoring._digest_episodes(
  -- start of the period
  p_from timestamptz,
  -- end of the period (exclusive)
  p_to timestamptz
)
returns table (
  rule_name text,
  fingerprint text,
  severity text,
  fired_at timestamptz,
  resolved_at timestamptz,
  seconds_in_period numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    h.rule_name,
    h.fingerprint,
    h.labels ->> 'severity',
    h.occurred_at,
    r.resolved_at,
    round(extract(epoch from least(coalesce(r.resolved_at, p_to), p_to) - greatest(h.occurred_at, p_from))::numeric, 0)
  from monitoring.alert_history as h
  left join lateral (
    select min(x.occurred_at) as resolved_at
    from monitoring.alert_history as x
    where x.fingerprint = h.fingerprint and x.occurred_at > h.occurred_at and x.to_state = 'resolved'
  ) as r on true
  where
    h.to_state = 'firing'
    and (h.from_state is null or h.from_state in ('pending', 'resolved'))
    -- an episode that began up to 31 days before the period and still fired in it counts
    and h.occurred_at >= p_from - interval '31 days'
    and h.occurred_at < p_to
    and (r.resolved_at is null or r.resolved_at > p_from)
$$;

comment on function monitoring._digest_episodes(timestamptz, timestamptz) is
'Internal: the firing episodes (firing until resolved) of every alert that overlap [p_from, p_to), from '
'monitoring.alert_history, with the seconds each fired inside the period (episodes begun more than 31 days '
'before are not seen).';

create or replace function monitoring._digest_duration(
  -- seconds
  p_seconds numeric
)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when coalesce(p_seconds, 0) < 60 then format('%s s', coalesce(round(p_seconds), 0))
    when p_seconds < 3600 then format('%s min', round(p_seconds / 60))
    when p_seconds < 86400 then format('%s h %s min', floor(p_seconds / 3600), round(mod(p_seconds, 3600) / 60))
    else format('%s d %s h', floor(p_seconds / 86400), round(mod(p_seconds, 86400) / 3600))
  end
$$;

comment on function monitoring._digest_duration(numeric) is
'Internal: seconds as text a person reads (42 s, 7 min, 3 h 5 min, 2 d 4 h).';

create or replace function monitoring._digest_change(
  -- this period
  p_now numeric,
  -- the previous period
  p_before numeric
)
returns numeric
language sql
immutable
set search_path = ''
as $$
  select case when coalesce(p_before, 0) = 0 then null else round(100.0 * (p_now - p_before) / p_before, 1) end
$$;

comment on function monitoring._digest_change(numeric, numeric) is
'Internal: change in percent from p_before to p_now, one decimal; null when p_before is 0 or null.';

create or replace function monitoring._digest_section(
  -- key in the JSON
  p_key text,
  -- heading people read
  p_title text,
  -- readable lines
  p_lines text[],
  -- the figures
  p_data jsonb
)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object(
    'key', p_key, 'title', p_title, 'lines', to_jsonb(coalesce(p_lines, '{}'::text [])), 'data', p_data
  )
$$;

comment on function monitoring._digest_section(text, text, text[], jsonb) is
'Internal: one section of a digest: {key, title, lines (what Slack, Discord and pydeploy show), data}.';

-- ---------------------------------------------------------------------------------------------
-- Daily: connection, delivery rates, critical errors, alerts fired and resolved
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._digest_daily(
  -- start of the day
  p_from timestamptz,
  -- end of the day (exclusive)
  p_to timestamptz,
  -- how many error types to list
  p_top integer
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_out jsonb := '[]'::jsonb;
  v_day jsonb := monitoring._digest_figures(p_from, p_to);
  v_before jsonb := monitoring._digest_figures(p_from - interval '1 day', p_from);
  v_down numeric;
  v_disconnects integer;
  v_reconnects integer;
  v_sessions jsonb;
  v_worst jsonb;
  v_critical jsonb;
  v_types jsonb;
  v_alerts jsonb;
  v_fired integer;
  v_resolved integer;
begin
  -- connection: the whatsapp_disconnected episodes (down for more than its threshold, 5 min)
  select coalesce(sum(e.seconds_in_period), 0), count(*) filter (where e.fired_at >= p_from)
  into v_down, v_disconnects
  from monitoring._digest_episodes(p_from, p_to) as e
  where e.rule_name = 'whatsapp_disconnected';
  select count(*) into v_reconnects
  from monitoring.alert_history as h
  where
    h.rule_name = 'whatsapp_disconnected' and h.to_state = 'resolved' and h.from_state = 'firing'
    and h.occurred_at >= p_from and h.occurred_at < p_to;
  select jsonb_build_object(
    'active', count(*) filter (where s.is_active),
    'connected', count(*) filter (where s.is_active and s.connection_state = 'connected')
  )
  into v_sessions
  from public.whatsapp_sessions as s;
  v_out := v_out || monitoring._digest_section(
    'connection', 'Connection status',
    array[
      format('WhatsApp down (whatsapp_disconnected firing): %s; %s disconnection(s), %s reconnect(s).',
        monitoring._digest_duration(v_down), v_disconnects, v_reconnects),
      format('Sessions now: %s active, %s connected.', v_sessions ->> 'active', v_sessions ->> 'connected')
    ],
    jsonb_build_object(
      'downSeconds', v_down, 'disconnections', v_disconnects, 'reconnects', v_reconnects, 'sessionsNow', v_sessions
    )
  );

  -- delivery rates: the day, the day before, the worst hour with more than 10 messages
  select jsonb_build_object(
    'hour', monitoring._iso(d.hour), 'messages', d.total, 'deliveryRate', monitoring._rate(d.accepted, d.total)
  )
  into v_worst
  from monitoring.digest_hours as d
  where d.hour >= p_from and d.hour < p_to and d.total > 10
  order by monitoring._rate(d.accepted, d.total), d.hour
  limit 1;
  v_out := v_out || monitoring._digest_section(
    'delivery', 'Delivery rates',
    array[
      format('%s messages, %s accepted, %s failed: delivery rate %s %% (day before: %s %% of %s).',
        v_day ->> 'messages', v_day ->> 'accepted', v_day ->> 'failed', coalesce(v_day ->> 'deliveryRate', 'n/a'),
        coalesce(v_before ->> 'deliveryRate', 'n/a'), v_before ->> 'messages'),
      coalesce(format('Worst hour: %s at %s %% of %s messages.', v_worst ->> 'hour', v_worst ->> 'deliveryRate',
        v_worst ->> 'messages'), 'No hour had more than 10 messages.'),
      format('Rollups covered %s of %s hours.', v_day ->> 'hoursCovered', v_day ->> 'hoursInPeriod')
    ],
    v_day || jsonb_build_object('previousDay', v_before, 'worstHour', v_worst)
  );

  -- critical errors: critical alerts that fired, and the error log by type
  select coalesce(jsonb_agg(jsonb_build_object(
    'rule', e.rule_name, 'firedAt', monitoring._iso(e.fired_at), 'resolvedAt', monitoring._iso(e.resolved_at)
  ) order by e.fired_at), '[]'::jsonb)
  into v_critical
  from monitoring._digest_episodes(p_from, p_to) as e
  where e.severity = 'critical' and e.fired_at >= p_from;
  select coalesce(jsonb_agg(jsonb_build_object('type', t.error_type, 'count', t.n) order by t.n desc, t.error_type),
    '[]'::jsonb)
  into v_types
  from (
    select d.error_type, sum(d.error_count) as n
    from monitoring.error_days as d
    where d.day = (p_from at time zone 'UTC')::date
    group by d.error_type
    order by n desc, d.error_type
    limit p_top
  ) as t;
  v_out := v_out || monitoring._digest_section(
    'criticalErrors', 'Critical errors',
    array[
      format('%s critical alert(s) fired%s.', jsonb_array_length(v_critical),
        coalesce(': ' || (select string_agg(format('%s at %s', c ->> 'rule', c ->> 'firedAt'), ', ')
          from jsonb_array_elements(v_critical) as c), '')),
      format('%s errors logged; top types: %s.', v_day ->> 'errors',
        coalesce((select string_agg(format('%s %s', t ->> 'type', t ->> 'count'), ', ')
          from jsonb_array_elements(v_types) as t), 'none'))
    ],
    jsonb_build_object('criticalAlerts', v_critical, 'errors', (v_day ->> 'errors')::bigint, 'topErrorTypes', v_types)
  );

  -- alerts fired and resolved, per rule
  select
    coalesce(jsonb_agg(jsonb_build_object(
      'rule', r.rule_name, 'severity', r.severity, 'fired', r.fired, 'resolved', r.resolved
    ) order by r.fired desc, r.rule_name), '[]'::jsonb),
    coalesce(sum(r.fired), 0),
    coalesce(sum(r.resolved), 0)
  into v_alerts, v_fired, v_resolved
  from (
    select
      h.rule_name,
      max(h.labels ->> 'severity') as severity,
      count(*) filter (where h.to_state = 'firing' and (h.from_state is null or h.from_state in ('pending', 'resolved')))
      as fired,
      count(*) filter (where h.to_state = 'resolved' and h.from_state is distinct from 'pending') as resolved
    from monitoring.alert_history as h
    where h.occurred_at >= p_from and h.occurred_at < p_to
    group by h.rule_name
  ) as r
  where r.fired + r.resolved > 0;
  v_out := v_out || monitoring._digest_section(
    'alerts', 'Alerts fired and resolved',
    array[format('%s fired, %s resolved%s.', v_fired, v_resolved,
      coalesce(': ' || (select string_agg(format('%s (%s) fired %s, resolved %s', a ->> 'rule', a ->> 'severity',
        a ->> 'fired', a ->> 'resolved'), '; ') from jsonb_array_elements(v_alerts) as a), ''))],
    jsonb_build_object('fired', v_fired, 'resolved', v_resolved, 'byRule', v_alerts)
  );
  return v_out;
end
$$;

comment on function monitoring._digest_daily(timestamptz, timestamptz, integer) is
'Internal: the daily digest''s sections: connection status (whatsapp_disconnected episodes, reconnects, sessions), '
'delivery rates (day, day before, worst hour), critical errors (critical alerts fired, errors by type) and alerts '
'fired and resolved per rule.';

-- ---------------------------------------------------------------------------------------------
-- Weekly: error patterns, queue performance, session health, performance vs targets, slow queries
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._digest_weekly(
  -- start of the week
  p_from timestamptz,
  -- end of the week (exclusive)
  p_to timestamptz,
  -- how many error types and slow queries to list
  p_top integer
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_out jsonb := '[]'::jsonb;
  v_week jsonb := monitoring._digest_figures(p_from, p_to);
  v_d1 date := (p_from at time zone 'UTC')::date;
  v_d2 date := (p_to at time zone 'UTC')::date;
  v_total bigint;
  v_previous bigint;
  v_types jsonb;
  v_new jsonb;
  v_days jsonb;
  v_sessions jsonb;
  v_down numeric;
  v_stale integer;
  v_targets jsonb;
  v_slow jsonb;
  v_rate_threshold numeric;
  v_error_threshold numeric;
begin
  -- error patterns from the daily error rollup (31 days): top types, new types, week over week
  select
    coalesce(sum(d.error_count) filter (where d.day >= v_d1 and d.day < v_d2), 0),
    coalesce(sum(d.error_count) filter (where d.day >= v_d1 - 7 and d.day < v_d1), 0)
  into v_total, v_previous
  from monitoring.error_days as d
  where d.day >= v_d1 - 7 and d.day < v_d2;
  select coalesce(jsonb_agg(jsonb_build_object(
    'type', t.error_type, 'count', t.n, 'previousWeek', t.before, 'changePct', monitoring._digest_change(t.n, t.before)
  ) order by t.n desc, t.error_type), '[]'::jsonb)
  into v_types
  from (
    select
      d.error_type,
      sum(d.error_count) filter (where d.day >= v_d1) as n,
      coalesce(sum(d.error_count) filter (where d.day < v_d1), 0) as before
    from monitoring.error_days as d
    where d.day >= v_d1 - 7 and d.day < v_d2
    group by d.error_type
    having sum(d.error_count) filter (where d.day >= v_d1) > 0
    order by n desc, d.error_type
    limit p_top
  ) as t;
  -- new: seen this week, not in the three weeks before
  select coalesce(jsonb_agg(jsonb_build_object('type', t.error_type, 'count', t.n, 'firstSeen', t.first_day)
    order by t.n desc, t.error_type), '[]'::jsonb)
  into v_new
  from (
    select d.error_type, sum(d.error_count) as n, min(d.day) as first_day
    from monitoring.error_days as d
    where d.day >= v_d1 and d.day < v_d2
    group by d.error_type
    having not exists (
      select 1 from monitoring.error_days as o
      where o.error_type = d.error_type and o.day >= v_d1 - 21 and o.day < v_d1
    )
  ) as t;
  v_out := v_out || monitoring._digest_section(
    'errorPatterns', 'Error patterns',
    array[
      format('%s errors (previous week %s, %s).', v_total, v_previous,
        coalesce(monitoring._digest_change(v_total, v_previous) || ' %', 'no change to compare')),
      format('Top types: %s.', coalesce((select string_agg(format('%s %s (previous %s)', t ->> 'type', t ->> 'count',
        t ->> 'previousWeek'), ', ') from jsonb_array_elements(v_types) as t), 'none')),
      format('New types: %s.', coalesce((select string_agg(format('%s %s', t ->> 'type', t ->> 'count'), ', ')
        from jsonb_array_elements(v_new) as t), 'none'))
    ],
    jsonb_build_object(
      'errors', v_total, 'previousWeek', v_previous, 'changePct', monitoring._digest_change(v_total, v_previous),
      'topTypes', v_types, 'newTypes', v_new
    )
  );

  -- queue performance: p95 and average queue time per day
  select coalesce(jsonb_agg(x.day_json order by x.day), '[]'::jsonb)
  into v_days
  from (
    select
      g.day,
      jsonb_build_object('day', g.day::date) || (
        select jsonb_build_object('messages', f -> 'messages', 'p95QueueS', f -> 'p95QueueS', 'avgQueueS', f -> 'avgQueueS')
        from monitoring._digest_figures(g.day, g.day + interval '1 day') as f
      ) as day_json
    from generate_series(p_from, p_to - interval '1 day', interval '1 day') as g (day)
  ) as x;
  v_out := v_out || monitoring._digest_section(
    'queue', 'Queue performance (target 30 s, alert 60 s)',
    array[
      format('p95 queue time over the week: %s s, average %s s.', coalesce(v_week ->> 'p95QueueS', 'n/a'),
        coalesce(v_week ->> 'avgQueueS', 'n/a')),
      'p95 per day: ' || (select string_agg(format('%s %s', d ->> 'day', coalesce((d ->> 'p95QueueS') || ' s', 'n/a')), ', ')
        from jsonb_array_elements(v_days) as d)
    ],
    jsonb_build_object('p95QueueS', v_week -> 'p95QueueS', 'avgQueueS', v_week -> 'avgQueueS', 'days', v_days)
  );

  -- session health: sessions now, downtime and stale-session alerts in the week
  select jsonb_build_object(
    'active', count(*) filter (where s.is_active),
    'connected', count(*) filter (where s.is_active and s.connection_state = 'connected'),
    'notUpdated24h', count(*) filter (where s.is_active and s.updated_at < p_to - interval '24 hours')
  )
  into v_sessions
  from public.whatsapp_sessions as s;
  select
    coalesce(sum(e.seconds_in_period) filter (where e.rule_name = 'whatsapp_disconnected'), 0),
    count(*) filter (where e.rule_name = 'stale_session' and e.fired_at >= p_from)
  into v_down, v_stale
  from monitoring._digest_episodes(p_from, p_to) as e;
  v_out := v_out || monitoring._digest_section(
    'sessions', 'Session health',
    array[
      format('Sessions now: %s active, %s connected, %s not updated for 24 h.', v_sessions ->> 'active',
        v_sessions ->> 'connected', v_sessions ->> 'notUpdated24h'),
      format('WhatsApp down during the week: %s; stale_session fired %s time(s).',
        monitoring._digest_duration(v_down), v_stale)
    ],
    v_sessions || jsonb_build_object('downSeconds', v_down, 'staleSessionAlerts', v_stale)
  );

  -- performance metrics against the spec's targets
  select r.threshold into v_rate_threshold from monitoring.alert_rules as r where r.name = 'low_delivery_rate';
  select r.threshold into v_error_threshold from monitoring.alert_rules as r where r.name = 'high_error_rate';
  select jsonb_agg(jsonb_build_object(
    'metric', t.metric, 'value', t.value, 'target', t.target, 'unit', t.unit,
    'met', case when t.value is null then null when t.higher_is_better then t.value >= t.target else t.value <= t.target end
  ) order by t.ord)
  into v_targets
  from (values
    (1, 'average delivery time', (v_week ->> 'avgDeliveryS')::numeric, 2::numeric, 's', false),
    (2, 'p95 delivery time', (v_week ->> 'p95DeliveryS')::numeric, 5::numeric, 's', false),
    (3, 'average queue time', (v_week ->> 'avgQueueS')::numeric, 30::numeric, 's', false),
    (4, 'delivery rate', (v_week ->> 'deliveryRate')::numeric, coalesce(v_rate_threshold, 90), '%', true),
    (5, 'most errors in one hour', (v_week ->> 'maxErrorsPerHour')::numeric, coalesce(v_error_threshold, 20), 'errors',
      false)
  ) as t (ord, metric, value, target, unit, higher_is_better);
  v_out := v_out || monitoring._digest_section(
    'performance', 'Performance against the spec''s targets',
    array(
      select rtrim(format('%s: %s (target %s %s %s) %s', t ->> 'metric',
        coalesce((t ->> 'value') || ' ' || (t ->> 'unit'), 'n/a'),
        case when t ->> 'unit' = '%' then 'at least' else 'at most' end, t ->> 'target', t ->> 'unit',
        case (t ->> 'met')::boolean when true then 'met' when false then 'MISSED' else '' end))
      from jsonb_array_elements(v_targets) as t
    ),
    jsonb_build_object('targets', v_targets, 'week', v_week)
  );

  -- slow queries: the statements above 100 ms on average (pg_stat_statements, last snapshot)
  select coalesce(jsonb_agg(jsonb_build_object(
    'queryid', q.queryid, 'calls', q.calls, 'meanMs', q.mean_ms, 'maxMs', q.max_ms, 'level', q.level,
    'query', left(regexp_replace(q.query, '\s+', ' ', 'g'), 200)
  ) order by q.mean_ms desc), '[]'::jsonb)
  into v_slow
  from (select * from monitoring.get_slow_queries() as s order by s.mean_ms desc limit p_top) as q;
  v_out := v_out || monitoring._digest_section(
    'slowQueries', 'Slow queries (target 100 ms, alert 500 ms)',
    case when jsonb_array_length(v_slow) = 0
      then array['No statement averages 100 ms or more (or pg_stat_statements is not installed).']
      else array(
        select format('%s ms mean, %s calls: %s', s ->> 'meanMs', s ->> 'calls', s ->> 'query')
        from jsonb_array_elements(v_slow) as s
      )
    end,
    jsonb_build_object('statements', v_slow)
  );
  return v_out;
end
$$;

comment on function monitoring._digest_weekly(timestamptz, timestamptz, integer) is
'Internal: the weekly digest''s sections: error patterns (top and new types, week over week, from error_days), '
'queue performance (p95 per day), session health, performance against the spec''s targets and slow queries.';

-- ---------------------------------------------------------------------------------------------
-- Monthly: log cleanup, threshold review, trends
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._digest_threshold_review(
  -- start of the month
  p_from timestamptz,
  -- end of the month (exclusive)
  p_to timestamptz,
  -- percentile of normal hours a suggestion sits at (99: the mirror 1 for "less than" rules)
  p_percentile numeric
)
returns jsonb
language sql
stable
set search_path = ''
set jit = off
as $$
  with episodes as (
    select e.* from monitoring._digest_episodes(p_from, p_to) as e
  ),

  -- the hours in which an alert of the rule fired at some moment
  firing_hours as (
    select distinct
      e.rule_name,
      h.hour
    from episodes as e
    cross join lateral generate_series(
      date_trunc('hour', greatest(e.fired_at, p_from)),
      least(coalesce(e.resolved_at, p_to), p_to) - interval '1 microsecond',
      interval '1 hour'
    ) as h (hour)
  ),

  -- each rule's metric per hour, where the hour rollups can say it
  series as (
    select
      r.name,
      d.hour,
      case r.check_function
        when '_check_low_delivery_rate' then monitoring._rate(d.accepted, d.total)
        when '_check_high_error_rate' then d.errors::numeric
        when '_check_error_rate_webhook' then d.errors::numeric
        when '_check_slow_queue' then round(d.queue_sum_ms / nullif(d.queue_count, 0) / 1000, 2)
        when '_check_slow_delivery' then round(d.latency_sum_ms / nullif(d.latency_count, 0) / 1000, 2)
      end as value,
      case r.check_function
        when '_check_low_delivery_rate' then d.total > coalesce(r.min_volume, 0)
        when '_check_slow_queue' then d.queue_count > 0
        when '_check_slow_delivery' then d.latency_count > 0
        else true
      end as has_data,
      f.hour is not null as firing
    from monitoring.alert_rules as r
    cross join monitoring.digest_hours as d
    left join firing_hours as f on r.name = f.rule_name and d.hour = f.hour
    where
      d.hour >= p_from and d.hour < p_to
      and r.check_function in (
        '_check_low_delivery_rate', '_check_high_error_rate', '_check_error_rate_webhook', '_check_slow_queue',
        '_check_slow_delivery'
      )
  ),

  normal as (
    select
      s.name,
      count(*) as hours,
      percentile_cont(p_percentile / 100) within group (order by s.value) as high,
      percentile_cont(1 - p_percentile / 100) within group (order by s.value) as low,
      min(s.value) as min_value,
      max(s.value) as max_value
    from series as s
    where s.has_data and not s.firing and s.value is not null
    group by s.name
  ),

  breached as (
    select s.name, count(*) as hours
    from series as s
    inner join monitoring.alert_rules as r on s.name = r.name
    where s.has_data and not s.firing and monitoring._breaches(s.value, r.comparator, r.threshold)
    group by s.name
  ),

  fired as (
    select
      e.rule_name,
      count(*) filter (where e.fired_at >= p_from) as fired,
      sum(e.seconds_in_period) as seconds,
      max(e.seconds_in_period) as longest
    from episodes as e
    group by e.rule_name
  ),

  review as (
    select
      r.name,
      r.metric,
      r.comparator,
      r.threshold,
      r.unit,
      r.target,
      r.check_function,
      coalesce(f.fired, 0) as fired,
      coalesce(f.seconds, 0) as seconds,
      coalesce(f.longest, 0) as longest,
      n.hours as normal_hours,
      n.min_value,
      n.max_value,
      coalesce(b.hours, 0) as breached_hours,
      case when r.comparator in ('<', '<=') then n.low else n.high end as pct_value,
      case when r.comparator in ('<', '<=') then 100 - p_percentile else p_percentile end as pct
    from monitoring.alert_rules as r
    left join fired as f on r.name = f.rule_name
    left join normal as n on r.name = n.name
    left join breached as b on r.name = b.name
    where r.enabled
  ),

  rounded as (
    select
      v.*,
      case
        when v.pct_value is null or v.normal_hours < 24 then null
        when v.unit = 'errors' then greatest(ceil(v.pct_value), 1)
        when v.unit = '%' then greatest(floor(v.pct_value * 10) / 10, 0.1)
        else greatest(ceil(v.pct_value * 10) / 10, 0.1)
      end as raw_suggestion
    from review as v
  ),

  -- never tighter than the spec's healthy target: a threshold must not fire on a healthy value
  suggested as (
    select
      v.*,
      case
        when v.raw_suggestion is null or v.target is null then v.raw_suggestion
        when v.comparator in ('<', '<=') then least(v.raw_suggestion, v.target)
        else greatest(v.raw_suggestion, v.target)
      end as suggestion
    from rounded as v
  ),

  verdicts as (
    select
      s.*,
      case
        when s.check_function not in (
          '_check_low_delivery_rate', '_check_high_error_rate', '_check_error_rate_webhook', '_check_slow_queue',
          '_check_slow_delivery'
        ) then 'review by hand'
        when s.suggestion is null then 'not enough data'
        when s.comparator in ('>', '>=') and s.suggestion > s.threshold then 'raise'
        when s.comparator in ('>', '>=') and s.suggestion < s.threshold / 2 then 'lower'
        when s.comparator in ('<', '<=') and s.suggestion < s.threshold then 'lower'
        else 'keep'
      end as verdict
    from suggested as s
  )

  select coalesce(jsonb_agg(jsonb_build_object(
    'rule', v.name,
    'metric', v.metric,
    'comparator', v.comparator,
    'threshold', v.threshold,
    'unit', v.unit,
    'fired', v.fired,
    'firingSeconds', v.seconds,
    'longestFiringSeconds', v.longest,
    'normalHours', v.normal_hours,
    'percentile', v.pct,
    'percentileValue', round(v.pct_value::numeric, 2),
    'breachedNormalHours', v.breached_hours,
    'suggestedThreshold', v.suggestion,
    'verdict', v.verdict,
    'reasoning', case
      when v.verdict = 'review by hand' then format(
        'Fired %s time(s), %s in all. The hour rollups hold no hourly history of %s, so no threshold is suggested: '
        || 'if it fired on days nothing was wrong, raise it; if an incident went unnoticed, lower it.',
        v.fired, monitoring._digest_duration(v.seconds), v.metric)
      when v.verdict = 'not enough data' then format(
        'Fired %s time(s), %s in all. Only %s hour(s) with data and no alert firing this month (24 needed): no '
        || 'suggestion.', v.fired, monitoring._digest_duration(v.seconds), coalesce(v.normal_hours, 0))
      else format(
        'Fired %s time(s), %s in all. In the %s normal hours (data, no %s alert firing) %s ranged %s to %s %s; '
        || 'p%s is %s. At the current threshold (%s %s %s) %s normal hour(s) would breach. Suggested %s %s: a normal '
        || 'hour crosses it about %s %% of the time%s%s',
        v.fired, monitoring._digest_duration(v.seconds), v.normal_hours, v.name, v.metric,
        round(v.min_value, 2), round(v.max_value, 2), v.unit, v.pct, round(v.pct_value::numeric, 2),
        v.comparator, v.threshold, v.unit, v.breached_hours, v.suggestion, v.unit,
        round(case when v.comparator in ('<', '<=') then v.pct else 100 - v.pct end, 1),
        case
          when v.suggestion is distinct from v.raw_suggestion
            then format(' (kept at the spec''s target %s %s rather than %s)', v.target, v.unit, v.raw_suggestion)
          else ''
        end,
        case v.verdict
          when 'raise' then ': normal traffic reaches the current threshold, so raise it to stop false alarms.'
          when 'lower' then case when v.comparator in ('<', '<=')
            then ': normal hours fall below the current threshold, so lower it to stop false alarms.'
            else ': normal hours stay far below the current threshold; lowering it would warn earlier.'
          end
          else ': the current threshold fits; keep it.'
        end)
    end
  ) order by v.name), '[]'::jsonb)
  from verdicts as v
$$;

comment on function monitoring._digest_threshold_review(timestamptz, timestamptz, numeric) is
'Internal: per enabled rule, how often it fired in the month and for how long, and (for rules whose metric the '
'hour rollups hold: delivery rate, errors per hour, queue and delivery time) a suggested threshold at the '
'p_percentile of the month''s normal hours (hours with data and no alert of the rule firing), with the verdict '
'(keep, raise, lower) and its reasoning.';

create or replace function monitoring._digest_monthly(
  -- start of the month
  p_from timestamptz,
  -- end of the month (exclusive)
  p_to timestamptz,
  -- percentile of normal hours for the threshold review
  p_percentile numeric
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_out jsonb := '[]'::jsonb;
  v_month jsonb := monitoring._digest_figures(p_from, p_to);
  v_previous jsonb := monitoring._digest_figures(p_from - interval '1 month', p_from);
  v_runs integer;
  v_ok integer;
  v_last timestamptz;
  v_last_error text;
  v_deleted jsonb;
  v_archived jsonb;
  v_keep interval;
  v_review jsonb;
  v_trends jsonb;
begin
  -- the log cleanup: the retention job's runs this month (job_runs) and what it archived
  select count(*), count(*) filter (where r.ok), max(r.started_at)
  into v_runs, v_ok, v_last
  from monitoring.job_runs as r
  where r.job = 'retention' and r.started_at >= p_from and r.started_at < p_to;
  select r.error into v_last_error
  from monitoring.job_runs as r
  where r.job = 'retention' and not r.ok and r.started_at >= p_from and r.started_at < p_to
  order by r.started_at desc
  limit 1;
  select coalesce(jsonb_object_agg(x.target, x.n), '{}'::jsonb)
  into v_deleted
  from (
    select t.key as target, sum(t.value::bigint) as n
    from monitoring.job_runs as r
    cross join jsonb_each_text(r.detail -> 'deleted') as t
    where r.job = 'retention' and r.ok and r.started_at >= p_from and r.started_at < p_to
    group by t.key
  ) as x;
  select jsonb_build_object('rows', coalesce(sum(a.rows), 0), 'days', count(distinct a.day))
  into v_archived
  from monitoring.error_log_archive as a
  where a.archived_at >= p_from and a.archived_at < p_to;
  select p.keep_for into v_keep from monitoring.retention_policies as p where p.target = 'job_runs' and p.enabled;
  v_out := v_out || monitoring._digest_section(
    'logCleanup', 'Log cleanup (retention)',
    array[
      case
        when v_runs = 0 then 'The retention job did NOT run this month: see select * from monitoring.job_status.'
        else format('The retention job ran %s time(s), %s succeeded; last run %s%s.', v_runs, v_ok, monitoring._iso(v_last),
          coalesce('; last error: ' || v_last_error, ''))
      end,
      format('Deleted: %s.', coalesce((select string_agg(format('%s %s', d.key, d.value), ', ' order by d.key)
        from jsonb_each_text(v_deleted) as d where d.value <> '0'), 'nothing')),
      format('Archived before deletion: %s error log row(s) of %s day(s) (monitoring.error_log_archive).',
        v_archived ->> 'rows', v_archived ->> 'days')
    ] || case when v_keep is not null and v_keep < p_to - p_from
      then array[format('job_runs are kept %s, so runs early in the month may no longer be counted.', v_keep)]
      else '{}'::text []
    end,
    jsonb_build_object(
      'runs', v_runs, 'succeeded', v_ok, 'lastRunAt', monitoring._iso(v_last), 'lastError', v_last_error,
      'deleted', v_deleted, 'archived', v_archived
    )
  );

  v_review := monitoring._digest_threshold_review(p_from, p_to, p_percentile);
  v_out := v_out || monitoring._digest_section(
    'thresholdReview', 'Threshold review',
    array(
      select format('%s (%s %s %s): %s. %s', r ->> 'rule', r ->> 'comparator', r ->> 'threshold', r ->> 'unit',
        case
          when r ->> 'verdict' in ('raise', 'lower') then upper(r ->> 'verdict') || ' to ' || (r ->> 'suggestedThreshold')
          else upper(r ->> 'verdict')
        end, r ->> 'reasoning')
      from jsonb_array_elements(v_review) as r
      where r ->> 'verdict' <> 'review by hand' or (r ->> 'fired')::integer > 0
    ),
    jsonb_build_object('percentile', p_percentile, 'rules', v_review)
  );

  v_trends := jsonb_build_object(
    'month', v_month,
    'previousMonth', v_previous,
    'changePct', jsonb_build_object(
      'messages', monitoring._digest_change((v_month ->> 'messages')::numeric, (v_previous ->> 'messages')::numeric),
      'errors', monitoring._digest_change((v_month ->> 'errors')::numeric, (v_previous ->> 'errors')::numeric),
      'avgDeliveryS', monitoring._digest_change(
        (v_month ->> 'avgDeliveryS')::numeric, (v_previous ->> 'avgDeliveryS')::numeric
      )
    ),
    'deliveryRatePoints', round((v_month ->> 'deliveryRate')::numeric - (v_previous ->> 'deliveryRate')::numeric, 2)
  );
  v_out := v_out || monitoring._digest_section(
    'trends', 'Trends, month over month',
    array[
      format('Volume: %s messages (previous month %s, %s).', v_month ->> 'messages', v_previous ->> 'messages',
        coalesce((v_trends #>> '{changePct,messages}') || ' %', 'no previous data')),
      format('Delivery rate: %s (previous %s).', coalesce((v_month ->> 'deliveryRate') || ' %', 'n/a'),
        coalesce((v_previous ->> 'deliveryRate') || ' %', 'n/a')),
      format('Errors: %s (previous %s, %s).', v_month ->> 'errors', v_previous ->> 'errors',
        coalesce((v_trends #>> '{changePct,errors}') || ' %', 'no previous data')),
      format('Average delivery time: %s (previous %s).', coalesce((v_month ->> 'avgDeliveryS') || ' s', 'n/a'),
        coalesce((v_previous ->> 'avgDeliveryS') || ' s', 'n/a')),
      format('History covered %s of %s hours this month, %s of %s the month before.', v_month ->> 'hoursCovered',
        v_month ->> 'hoursInPeriod', v_previous ->> 'hoursCovered', v_previous ->> 'hoursInPeriod')
    ],
    v_trends
  );
  return v_out;
end
$$;

comment on function monitoring._digest_monthly(timestamptz, timestamptz, numeric) is
'Internal: the monthly digest''s sections: log cleanup (retention runs, rows deleted and archived), threshold review '
'and trends month over month (volume, delivery rate, errors, delivery time).';

create or replace function monitoring._digest_payload(
  -- the channel's kind
  p_kind text,
  -- the digest (from monitoring.digest)
  p_digest jsonb
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_title text := p_digest ->> 'title';
begin
  if p_kind in ('webhook', 'edge_function') then
    -- the webhook shape ({timestamp, service, alerts}) with no alert, plus the digest and its text
    return jsonb_build_object(
      'timestamp', p_digest ->> 'generatedAt',
      'service', p_digest ->> 'service',
      'event', 'digest',
      'alerts', '[]'::jsonb,
      'digest', p_digest
    );
  end if;
  if p_kind = 'slack' then
    return jsonb_build_object(
      'text', v_title,
      'blocks', jsonb_build_array(jsonb_build_object(
        'type', 'header', 'text', jsonb_build_object('type', 'plain_text', 'text', left(v_title, 150))
      )) || coalesce((
        select jsonb_agg(jsonb_build_object('type', 'section', 'text', jsonb_build_object(
          'type', 'mrkdwn',
          'text', left(replace(replace(replace(
            format(E'*%s*\n%s', s ->> 'title', (
              select string_agg('• ' || l, E'\n') from jsonb_array_elements_text(s -> 'lines') as l
            )), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), 3000)
        )) order by o)
        from jsonb_array_elements(p_digest -> 'sections') with ordinality as x (s, o)
      ), '[]'::jsonb)
    );
  end if;
  if p_kind = 'discord' then
    return jsonb_build_object(
      'content', left(v_title, 2000),
      'embeds', jsonb_build_array(jsonb_build_object(
        'title', left(v_title, 256),
        'color', 3447003,
        'fields', coalesce((
          select jsonb_agg(jsonb_build_object(
            'name', left(s ->> 'title', 256),
            'value', left(coalesce((
              select string_agg('• ' || l, E'\n') from jsonb_array_elements_text(s -> 'lines') as l
            ), '-'), 1024),
            'inline', false
          ) order by o)
          from jsonb_array_elements(p_digest -> 'sections') with ordinality as x (s, o)
          where o <= 25
        ), '[]'::jsonb),
        'timestamp', p_digest ->> 'generatedAt',
        'footer', jsonb_build_object('text', format('%s · %s digest', p_digest ->> 'service', p_digest ->> 'kind'))
      ))
    );
  end if;
  raise exception using
    errcode = 'invalid_parameter_value',
    message = format('channels.kind %L cannot take a digest', p_kind),
    hint = 'send digests to a webhook, slack, discord or edge_function channel';
end
$$;

comment on function monitoring._digest_payload(text, jsonb) is
'Internal: a digest in a channel''s format: webhook and edge_function get {timestamp, service, event: digest, '
'alerts: [], digest}; slack a header and one mrkdwn section per digest section; discord one embed with a field per '
'section.';

create or replace function monitoring._digest_period(
  -- daily, weekly or monthly
  p_kind text,
  -- the period is the last complete one before this
  p_now timestamptz,
  out period_start timestamptz,
  out period_end timestamptz
)
language sql
immutable
set search_path = ''
as $$
  select
    e.period_end - case p_kind when 'daily' then interval '1 day' when 'weekly' then interval '7 days'
      else interval '1 month' end,
    e.period_end
  from (
    select date_trunc(
      case p_kind when 'daily' then 'day' when 'weekly' then 'week' else 'month' end, p_now at time zone 'UTC'
    ) at time zone 'UTC' as period_end
  ) as e
$$;

comment on function monitoring._digest_period(text, timestamptz) is
'Internal: the last complete UTC day, ISO week (Monday to Monday) or calendar month before p_now.';

-- =============================================================================================
-- API: Public
-- =============================================================================================
create or replace function monitoring.digest(
  -- daily, weekly or monthly
  p_kind text,
  -- the digest covers the last complete period before this
  p_now timestamptz default now()
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_started timestamptz := clock_timestamp();
  v_settings monitoring.digest_settings;
  v_to timestamptz;
  v_from timestamptz;
  v_sections jsonb;
  v_title text;
  v_service text;
begin
  if p_kind is null or p_kind not in ('daily', 'weekly', 'monthly') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('digest: p_kind must be daily, weekly or monthly (got %L)', left(p_kind, 50)),
      hint = 'use monitoring.digest(''daily''), monitoring.digest(''weekly'') or monitoring.digest(''monthly'')';
  end if;
  if p_now is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('digest: p_now must be a finite time (got %s)', coalesce(p_now::text, 'null')),
      hint = 'leave p_now out: it defaults to now()';
  end if;
  select * into v_settings from monitoring.digest_settings as s where s.kind = p_kind;
  select p.period_start, p.period_end into v_from, v_to from monitoring._digest_period(p_kind, p_now) as p;

  perform monitoring._digest_snapshot(p_now);
  v_sections := case p_kind
    when 'daily' then monitoring._digest_daily(v_from, v_to, coalesce(v_settings.top_n, 5))
    when 'weekly' then monitoring._digest_weekly(v_from, v_to, coalesce(v_settings.top_n, 5))
    else monitoring._digest_monthly(v_from, v_to, coalesce(v_settings.review_percentile, 99))
  end;
  select s.service_name into v_service from monitoring.settings as s where s.id;
  v_title := case p_kind
    when 'daily' then format('Daily digest %s (UTC)', to_char(v_from at time zone 'UTC', 'YYYY-MM-DD'))
    when 'weekly' then format('Weekly digest %s to %s (UTC)', to_char(v_from at time zone 'UTC', 'YYYY-MM-DD'),
      to_char((v_to - interval '1 day') at time zone 'UTC', 'YYYY-MM-DD'))
    else format('Monthly digest %s (UTC)', to_char(v_from at time zone 'UTC', 'YYYY-MM'))
  end;
  return jsonb_build_object(
    'kind', p_kind,
    'title', coalesce(v_service || ': ', '') || v_title,
    'service', v_service,
    'periodStart', monitoring._iso(v_from),
    'periodEnd', monitoring._iso(v_to),
    'generatedAt', monitoring._iso(p_now),
    'sections', v_sections,
    'buildMs', round(extract(epoch from clock_timestamp() - v_started)::numeric * 1000, 1)
  );
end
$$;

comment on function monitoring.digest(text, timestamptz) is
'The spec''s maintenance checklist for the last complete UTC day (daily), ISO week (weekly) or month (monthly) '
'before p_now, as jsonb {kind, title, periodStart, periodEnd, sections: [{key, title, lines, data}], buildMs}. '
'Reads the rollups (through monitoring.digest_hours, which it brings up to date) and the alert history, never the '
'raw app tables.';

create or replace function monitoring.send_digest(
  -- daily, weekly or monthly
  p_kind text,
  -- the digest covers the last complete period before this
  p_now timestamptz default now(),
  -- channels to send to (null: digest_settings.channels)
  p_channels text[] default null,
  -- whether the digest job sends it (a scheduled period is sent once)
  p_scheduled boolean default false
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_digest jsonb;
  v_channels text[];
  v_missing text;
  v_queued integer;
  v_id bigint;
begin
  -- a scheduled period is sent once: look before building (the job may run again in the period)
  if p_scheduled and p_kind in ('daily', 'weekly', 'monthly') and p_now is not null and isfinite(p_now) and exists (
    select 1
    from monitoring.digest_runs as r
    inner join monitoring._digest_period(p_kind, p_now) as p on r.period_start = p.period_start
    where r.scheduled and r.kind = p_kind
  ) then
    return jsonb_build_object('kind', p_kind, 'skipped', 'this period was sent already',
      'periodStart', (select monitoring._iso(p.period_start) from monitoring._digest_period(p_kind, p_now) as p));
  end if;
  v_digest := monitoring.digest(p_kind, p_now);
  v_channels := coalesce(p_channels, (select s.channels from monitoring.digest_settings as s where s.kind = p_kind),
    '{}'::text []);
  select string_agg(c, ', ') into v_missing
  from unnest(v_channels) as c
  where not exists (
    select 1 from monitoring.channels as x where x.name = c and x.kind <> 'alertmanager'
  );
  if v_missing is not null and p_channels is not null then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('send_digest: no such webhook, slack, discord or edge_function channel: %s', v_missing),
      hint = 'see select name, kind from monitoring.channels';
  end if;
  insert into monitoring.deliveries (channel, event, payload, body, status, next_attempt_at, created_at)
  select c.name, 'digest', p.payload, p.payload::text, 'queued', p_now, p_now
  from monitoring.channels as c
  cross join lateral (select monitoring._digest_payload(c.kind, v_digest) as payload) as p
  where c.name = any(v_channels) and c.enabled and c.kind <> 'alertmanager'
  order by c.name;
  get diagnostics v_queued = row_count;
  insert into monitoring.digest_runs (
    kind, period_start, period_end, scheduled, built_at, build_ms, channels, queued, digest
  )
  values (
    p_kind, (v_digest ->> 'periodStart')::timestamptz, (v_digest ->> 'periodEnd')::timestamptz, p_scheduled, p_now,
    (v_digest ->> 'buildMs')::numeric, v_channels, v_queued, v_digest
  )
  on conflict (kind, period_start) where scheduled do nothing
  returning id into v_id;
  return jsonb_build_object(
    'kind', p_kind, 'run', v_id, 'periodStart', v_digest ->> 'periodStart', 'channels', to_jsonb(v_channels),
    'queued', v_queued, 'skippedChannels', v_missing, 'buildMs', v_digest -> 'buildMs'
  );
end
$$;

comment on function monitoring.send_digest(text, timestamptz, text[], boolean) is
'Build a digest (monitoring.digest) and queue it in the outbox (event digest) to p_channels or the configured '
'digest_settings.channels (disabled channels are skipped); record it in monitoring.digest_runs. The next '
'dispatcher run sends it. Returns {run, queued, channels}.';

create or replace function monitoring.set_digest(
  -- daily, weekly or monthly
  p_kind text,
  -- whether it is scheduled (null: keep)
  p_enabled boolean default null,
  -- when it runs, a 5-field cron expression in GMT (null: keep)
  p_schedule text default null,
  -- channels it is sent to (null: keep; '{}': none)
  p_channels text[] default null
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_mode text;
  v_result jsonb;
begin
  if p_kind is null or p_kind not in ('daily', 'weekly', 'monthly') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('set_digest: p_kind must be daily, weekly or monthly (got %L)', left(p_kind, 50)),
      hint = 'use monitoring.set_digest(''daily'', p_channels => array[''ops-slack''])';
  end if;
  if p_channels is not null then
    update monitoring.digest_settings as s set channels = p_channels where s.kind = p_kind;
  end if;
  update monitoring.jobs as j
  set
    enabled = coalesce(p_enabled, j.enabled),
    schedule = coalesce(p_schedule, j.schedule)
  where j.job = 'digest-' || p_kind;
  -- pg_cron follows at once where it exists (and the other jobs are scheduled)
  if to_regclass('cron.job') is not null and exists (select 1 from monitoring.jobs as j where j.scheduled_at is not null)
    then
    select s.job_mode into v_mode from monitoring.settings as s where s.id;
    v_result := monitoring.schedule_jobs(coalesce(v_mode, 'db'));
  end if;
  return (
    select jsonb_build_object(
      'kind', p_kind, 'enabled', j.enabled, 'schedule', j.schedule, 'channels', to_jsonb(s.channels),
      'rescheduled', v_result is not null
    )
    from monitoring.digest_settings as s
    inner join monitoring.jobs as j on j.job = 'digest-' || s.kind
    where s.kind = p_kind
  );
end
$$;

comment on function monitoring.set_digest(text, boolean, text, text[]) is
'Configure a digest: on or off and its schedule (its row of monitoring.jobs) and its channels (digest_settings); '
'then make pg_cron follow (monitoring.schedule_jobs) when the jobs are scheduled. A bad value is refused naming '
'the field.';

create or replace function monitoring._run_digest(
  -- daily, weekly or monthly
  p_kind text,
  -- now
  p_now timestamptz
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
begin
  return monitoring.send_digest(p_kind, p_now, null, true);
end
$$;

comment on function monitoring._run_digest(text, timestamptz) is
'Internal: what job monitoring-digest-<kind> runs (run_job(''digest-<kind>'')): send the digest of the last '
'complete period to the configured channels, once per period.';

create or replace view monitoring.digests
with (security_invoker = true)
as
select
  s.kind,
  j.enabled,
  j.schedule,
  s.channels,
  s.top_n,
  s.review_percentile,
  r.period_start as last_period_start,
  r.built_at as last_built_at,
  r.queued as last_queued,
  r.build_ms as last_build_ms
from monitoring.digest_settings as s
left join monitoring.jobs as j on j.job = 'digest-' || s.kind
left join lateral (
  select
    x.period_start,
    x.built_at,
    x.queued,
    x.build_ms
  from monitoring.digest_runs as x
  where x.kind = s.kind
  order by x.built_at desc
  limit 1
) as r on true
order by array_position(array['daily', 'weekly', 'monthly'], s.kind);

comment on view monitoring.digests is
'Each digest: on or off, schedule, channels, and its last run (period, when, deliveries queued, build time).';

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------
alter table monitoring.digest_settings enable row level security;

alter table monitoring.digest_hours enable row level security;

alter table monitoring.digest_runs enable row level security;
