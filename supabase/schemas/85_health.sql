-- health(): the spec's /api/health body built inside Postgres, section by section (functions,
-- WhatsApp, database, scheduler, alerts, delivery), each with a level and, when not healthy, a
-- reason; and the thresholds it uses (one row). The health Edge Function is a thin face over it.

create table if not exists monitoring.health_thresholds (
  id boolean primary key default true,
  whatsapp_unhealthy_after interval not null default interval '5 minutes',
  function_max_errors integer not null default 10,
  function_max_error_rate numeric not null default 5,
  function_max_avg_ms numeric not null default 5000,
  rollup_max_lag interval not null default interval '5 minutes',
  slow_query_target_ms numeric not null default 100,
  slow_query_alert_ms numeric not null default 500,
  updated_at timestamptz not null default now()
);

comment on table monitoring.health_thresholds is
'Thresholds health() and slow_queries use (one row). Defaults are the spec''s numbers.';

comment on column monitoring.health_thresholds.id is 'Always true: the table holds one row.';

comment on column monitoring.health_thresholds.whatsapp_unhealthy_after is
'No active session connected for longer than this: health() is unhealthy (shorter: degraded).';

comment on column monitoring.health_thresholds.function_max_errors is
'More errors (status >= 500) than this for one function in 5 minutes: functions degraded.';

comment on column monitoring.health_thresholds.function_max_error_rate is
'Error rate (%) of one function over 5 minutes above this: functions degraded.';

comment on column monitoring.health_thresholds.function_max_avg_ms is
'Average duration (ms) of one function over 5 minutes above this: functions degraded.';

comment on column monitoring.health_thresholds.rollup_max_lag is
'Rollup watermark older than this: database degraded (the refresh job is not running).';

comment on column monitoring.health_thresholds.slow_query_target_ms is
'monitoring.slow_queries lists statements whose mean time is at least this (spec target 100 ms).';

comment on column monitoring.health_thresholds.slow_query_alert_ms is
'Statements with mean time at least this are level ''alert'' in slow_queries (spec: 500 ms).';

insert into monitoring.health_thresholds (id) values (true) on conflict (id) do nothing;

-- monitoring.health(): the spec's /api/health response, computed in the database.
--
-- Shape: {status, timestamp, services: {functions, whatsapp}, database, scheduler, reasons}.
-- Each section comes from one `_health_<section>(p_now)` helper and carries a `level`
-- (healthy | degraded | unhealthy) and, when not healthy, a `reason`. health() takes the worst
-- level found anywhere in the document and lists every reason, so a new section only has to be
-- added to monitoring._health_compose() (as `alerts` and `delivery` are).
--
-- Rules (thresholds in monitoring.health_thresholds):
--   unhealthy: no active WhatsApp session connected for more than whatsapp_unhealthy_after (5 min),
--              or no active session at all.
--   degraded:  an active session not connected for up to 5 min, or some active sessions down
--              while another is connected;
--              an Edge Function with, over 5 min, more than function_max_errors (10) errors, an
--              error rate above function_max_error_rate (5 %) or an average above
--              function_max_avg_ms (5000 ms);
--              the rollup watermark older than rollup_max_lag (5 min) or never refreshed;
--              pg_cron missing, no cron job scheduled, or the latest run of a job failed.


-- =============================================================================================
-- API: Private
-- =============================================================================================
create or replace function monitoring._health_ts(
  -- the moment to format
  p_ts timestamptz
)
returns text
language sql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
  select pg_catalog.to_char(p_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
$$;

comment on function monitoring._health_ts(timestamptz) is
'Format a timestamp as the spec''s health response does: ISO 8601 in UTC, e.g. 2024-11-07T12:00:00Z.';

create or replace function monitoring._health_functions(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_t monitoring.health_thresholds;
  v_invocations bigint;
  v_errors bigint;
  v_avg numeric;
  v_bad text[];
begin
  select * into strict v_t from monitoring.health_thresholds where id;

  select
    coalesce(sum(f.invocations), 0)::bigint,
    coalesce(sum(f.errors), 0)::bigint,
    round(sum(f.avg_ms * f.invocations) / nullif(sum(f.invocations), 0), 1),
    array_agg(f.function_name order by f.function_name) filter (
      where
        f.errors > v_t.function_max_errors
        or f.error_rate > v_t.function_max_error_rate
        or f.avg_ms > v_t.function_max_avg_ms
    )
  into v_invocations, v_errors, v_avg, v_bad
  from monitoring._function_window_stats(p_now, interval '5 minutes', false) as f;

  return jsonb_build_object(
    'status', case when v_bad is null then 'operational' else 'degraded' end,
    'level', case when v_bad is null then 'healthy' else 'degraded' end,
    'invocations5m', v_invocations,
    'errors5m', v_errors,
    'errorRate5m', case when v_invocations > 0 then round(100.0 * v_errors / v_invocations, 2) else 0 end,
    'avgMs5m', v_avg,
    'degradedFunctions', to_jsonb(coalesce(v_bad, '{}'::text []))
  ) || case
    when v_bad is null then '{}'::jsonb
    else jsonb_build_object(
      'reason', format(
        'Edge Functions over threshold in the last 5 min (errors > %s, error rate > %s %%, avg > %s ms): %s',
        v_t.function_max_errors, v_t.function_max_error_rate, v_t.function_max_avg_ms,
        pg_catalog.array_to_string(v_bad, ', ')
      )
    )
  end;
end
$$;

comment on function monitoring._health_functions(timestamptz) is
'health() section services.functions: operational, or degraded when an Edge Function breaks a '
'health_thresholds limit over 5 minutes (as monitoring.function_stats).';

create or replace function monitoring._health_whatsapp(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_limit interval;
  v_active bigint;
  v_connected bigint;
  v_last_connected timestamptz;
  v_down_since timestamptz;
  v_state text;
  v_level text;
  v_reason text;
  v_down_minutes numeric;
begin
  select t.whatsapp_unhealthy_after into strict v_limit from monitoring.health_thresholds as t where t.id;

  select
    count(*),
    count(*) filter (where s.connection_state = 'connected'),
    max(s.last_connected_at),
    max(coalesce(s.last_connected_at, s.created_at))
  into v_active, v_connected, v_last_connected, v_down_since
  from public.whatsapp_sessions as s
  where s.is_active = true;

  -- the state shown: connected if any active session is, else the most recently updated one's
  select s.connection_state::text into v_state
  from public.whatsapp_sessions as s
  where s.is_active = true
  order by (s.connection_state = 'connected') desc, s.updated_at desc
  limit 1;

  if v_active = 0 then
    v_level := 'unhealthy';
    v_reason := 'no active WhatsApp session';
  elsif v_connected = 0 then
    v_down_minutes := round(extract(epoch from (p_now - v_down_since)) / 60, 1);
    v_level := case when p_now - v_down_since > v_limit then 'unhealthy' else 'degraded' end;
    v_reason := format('WhatsApp not connected (%s) for %s min', v_state, v_down_minutes);
  elsif v_connected < v_active then
    v_level := 'degraded';
    v_reason := format('%s of %s active WhatsApp sessions not connected', v_active - v_connected, v_active);
  else
    v_level := 'healthy';
  end if;

  return jsonb_build_object(
    'status', case when v_connected > 0 then 'connected' else 'disconnected' end,
    'connectionState', v_state,
    'lastConnected', monitoring._health_ts(v_last_connected),
    'level', v_level,
    'activeSessions', v_active,
    'connectedSessions', v_connected,
    'downMinutes', coalesce(v_down_minutes, 0)
  ) || case when v_reason is null then '{}'::jsonb else jsonb_build_object('reason', v_reason) end;
end
$$;

comment on function monitoring._health_whatsapp(timestamptz) is
'health() section services.whatsapp {status connected|disconnected, connectionState, '
'lastConnected}: unhealthy when no active session is connected for more than '
'health_thresholds.whatsapp_unhealthy_after (down since the latest last_connected_at) or none is '
'active; degraded when down for less, or when only some active sessions are connected.';

create or replace function monitoring._health_database(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_max_lag interval;
  v_state monitoring.rollup_state;
  v_lag numeric;
  v_reason text;
begin
  select t.rollup_max_lag into strict v_max_lag from monitoring.health_thresholds as t where t.id;
  select * into v_state from monitoring.rollup_state as s where s.id;

  if v_state.watermark is null or v_state.watermark = '-infinity' then
    v_reason := 'rollups never refreshed: run monitoring.refresh_rollups() (pg_cron, every minute)';
  else
    v_lag := round(extract(epoch from (pg_catalog.date_bin('1 minute', p_now, '2000-01-01 00:00:00+00') - v_state.watermark)), 0);
    if pg_catalog.date_bin('1 minute', p_now, '2000-01-01 00:00:00+00') - v_state.watermark > v_max_lag then
      v_reason := format('rollups last refreshed %s s ago: is the refresh job running?', v_lag);
    end if;
  end if;

  return jsonb_build_object(
    'status', 'ok',
    'level', case when v_reason is null then 'healthy' else 'degraded' end,
    'version', pg_catalog.current_setting('server_version'),
    'versionNum', pg_catalog.current_setting('server_version_num')::integer,
    'sizeBytes', pg_catalog.pg_database_size(pg_catalog.current_database()),
    'startedAt', monitoring._health_ts(pg_catalog.pg_postmaster_start_time()),
    'maxConnections', pg_catalog.current_setting('max_connections')::integer,
    'rollups', jsonb_build_object(
      'watermark', case when v_state.watermark > '-infinity' then monitoring._health_ts(v_state.watermark) end,
      'lagSeconds', v_lag,
      'lastFull', monitoring._health_ts(v_state.last_full_at),
      'lastDurationMs', v_state.last_duration_ms
    )
  ) || case when v_reason is null then '{}'::jsonb else jsonb_build_object('reason', v_reason) end;
end
$$;

comment on function monitoring._health_database(timestamptz) is
'health() section database: version, size, start time and rollup freshness; degraded when the '
'rollup watermark is older than health_thresholds.rollup_max_lag or was never set.';

create or replace function monitoring._health_scheduler(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
security definer -- reads cron.job and cron.job_run_details, which service_role cannot
set search_path = ''
set jit = off
as $$
declare
  v_version text;
  v_jobs bigint;
  v_active bigint;
  v_last_job text;
  v_last_status text;
  v_last_start timestamptz;
  v_last_end timestamptz;
  v_failing text[];
  v_reason text;
  -- cron.* is referenced through these variables: pg_cron may not exist where this is linted
  v_job_table constant regclass := pg_catalog.to_regclass('cron.job');
  v_run_table constant regclass := pg_catalog.to_regclass('cron.job_run_details');
begin
  select e.extversion into v_version from pg_catalog.pg_extension as e where e.extname = 'pg_cron';
  if v_version is null or v_job_table is null or v_run_table is null then
    return jsonb_build_object(
      'status', 'unavailable',
      'level', 'degraded',
      'pgCron', false,
      'reason', 'pg_cron is not installed: rollups and checks are not scheduled'
    );
  end if;

  execute format('select count(*), count(*) filter (where j.active) from %s as j', v_job_table)
  into v_jobs, v_active;

  -- the latest run of each job among the most recent runs (runid order uses the primary key;
  -- job_run_details is never trimmed by pg_cron, so it is not scanned whole)
  execute format(
    'select array_agg(r.jobname::text order by r.jobname) filter (where r.status = ''failed'') '
    || 'from ('
    || '  select distinct on (d.jobid) j.jobname, d.status '
    || '  from (select * from %2$s as x order by x.runid desc limit 500) as d '
    || '  inner join %1$s as j on d.jobid = j.jobid '
    || '  order by d.jobid, d.runid desc'
    || ') as r',
    v_job_table, v_run_table
  )
  into v_failing;

  execute format(
    'select j.jobname::text, d.status::text, d.start_time, d.end_time '
    || 'from %2$s as d inner join %1$s as j on d.jobid = j.jobid '
    || 'order by d.runid desc limit 1',
    v_job_table, v_run_table
  )
  into v_last_job, v_last_status, v_last_start, v_last_end;

  if v_jobs = 0 then
    v_reason := 'no pg_cron job scheduled: run monitoring.schedule_jobs()';
  elsif v_failing is not null then
    v_reason := format('latest run failed for: %s', pg_catalog.array_to_string(v_failing, ', '));
  end if;

  return jsonb_build_object(
    'status', case when v_reason is null then 'operational' else 'degraded' end,
    'level', case when v_reason is null then 'healthy' else 'degraded' end,
    'pgCron', true,
    'version', v_version,
    'jobs', v_jobs,
    'activeJobs', v_active,
    'failingJobs', to_jsonb(coalesce(v_failing, '{}'::text [])),
    'lastRun', case when v_last_status is not null then jsonb_build_object(
      'jobName', v_last_job,
      'status', v_last_status,
      'startTime', monitoring._health_ts(v_last_start),
      'endTime', monitoring._health_ts(v_last_end),
      'ageSeconds', round(extract(epoch from (p_now - v_last_start)), 0)
    ) end
  ) || case when v_reason is null then '{}'::jsonb else jsonb_build_object('reason', v_reason) end;
end
$$;

comment on function monitoring._health_scheduler(timestamptz) is
'health() section scheduler: pg_cron presence, job counts and the latest run; degraded when '
'pg_cron is missing, no job is scheduled, or the latest run of some job failed. Works without '
'pg_cron (cron.* is reached through to_regclass and dynamic SQL).';

create or replace function monitoring._health_alerts(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_critical integer;
  v_warning integer;
  v_info integer;
  v_pending integer;
  v_silenced integer;
  v_inhibited integer;
  v_recovering integer;
  v_nodata jsonb;
  v_nodata_names text;
  v_error_alerts integer;
  v_names jsonb;
  v_critical_names text;
  v_errors jsonb;
  v_error_names text;
  v_reasons text[] := '{}'::text [];
  v_level text := 'healthy';
begin
  select
    count(*) filter (where a.state = 'firing' and a.severity = 'critical'),
    count(*) filter (where a.state = 'firing' and a.severity = 'warning'),
    count(*) filter (where a.state = 'firing' and a.severity = 'info'),
    count(*) filter (where a.state = 'pending'),
    count(*) filter (where a.state = 'firing' and monitoring._silence_for(a.labels, p_now) is not null),
    count(*) filter (where a.state = 'firing' and monitoring._inhibitor_for(a.labels, a.fingerprint) is not null),
    count(*) filter (where a.state = 'firing' and a.recovering_since is not null),
    coalesce(jsonb_agg(distinct a.rule_name order by a.rule_name) filter (
      where a.state = 'firing' and a.labels ->> 'condition' = 'no_data'
    ), '[]'::jsonb),
    string_agg(distinct a.rule_name, ', ' order by a.rule_name) filter (
      where a.state = 'firing' and a.labels ->> 'condition' = 'no_data'
    ),
    count(*) filter (where a.state = 'firing' and a.labels ->> 'condition' = 'error'),
    coalesce(jsonb_agg(distinct a.rule_name order by a.rule_name) filter (where a.state = 'firing'), '[]'::jsonb),
    string_agg(distinct a.rule_name, ', ' order by a.rule_name) filter (
      where a.state = 'firing' and a.severity = 'critical'
    )
  into
    v_critical, v_warning, v_info, v_pending, v_silenced, v_inhibited, v_recovering, v_nodata, v_nodata_names,
    v_error_alerts, v_names, v_critical_names
  from monitoring.alerts as a
  where a.state in ('pending', 'firing');

  select
    coalesce(jsonb_agg(jsonb_build_object(
      'rule', s.rule_name, 'error', s.last_error, 'at', monitoring._iso(s.last_error_at)
    ) order by s.rule_name), '[]'::jsonb),
    string_agg(s.rule_name, ', ' order by s.rule_name)
  into v_errors, v_error_names
  from monitoring.rule_state as s
  inner join monitoring.alert_rules as r on s.rule_name = r.name
  where r.enabled and s.last_error is not null;

  if v_critical > 0 then
    v_level := 'unhealthy';
    v_reasons := v_reasons || format('critical alert firing: %s', v_critical_names);
  end if;
  if v_warning > 0 then
    v_level := case when v_level = 'unhealthy' then v_level else 'degraded' end;
    v_reasons := v_reasons || format('%s warning alert(s) firing', v_warning);
  end if;
  if v_nodata_names is not null then
    v_level := case when v_level = 'unhealthy' then v_level else 'degraded' end;
    v_reasons := v_reasons || format('no data: %s (the data these rules read stopped)', v_nodata_names);
  end if;
  if v_error_names is not null then
    v_level := case when v_level = 'unhealthy' then v_level else 'degraded' end;
    v_reasons := v_reasons || format('alert rule evaluation failing: %s (see monitoring.rule_errors)', v_error_names);
  end if;

  return jsonb_build_object(
    'status', case when v_critical + v_warning + v_info > 0 then 'firing' else 'ok' end,
    'level', v_level,
    'firing', jsonb_build_object('critical', v_critical, 'warning', v_warning, 'info', v_info),
    'firingRules', v_names,
    'pending', v_pending,
    'silenced', v_silenced,
    'inhibited', v_inhibited,
    'recovering', v_recovering,
    'noData', v_nodata,
    'errorAlerts', v_error_alerts,
    'ruleErrors', v_errors
  ) || case
    when cardinality(v_reasons) = 0 then '{}'::jsonb
    else jsonb_build_object('reason', array_to_string(v_reasons, '; '))
  end;
end
$$;

comment on function monitoring._health_alerts(timestamptz) is
'health() section alerts: firing counts by severity, firing rule names, pending, silenced, inhibited, recovering, '
'no-data rules, error alerts and failing rules; '
'unhealthy while a critical alert fires, degraded while a warning fires or a rule fails to evaluate.';

create or replace function monitoring._health_delivery(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_queued integer;
  v_sending integer;
  v_retrying integer;
  v_dead integer;
  v_dead_24h integer;
  v_last_delivered timestamptz;
  v_overdue integer;
  v_channels integer;
  v_pg_net boolean := to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null;
  v_reasons text[] := '{}'::text [];
begin
  select
    count(*) filter (where d.status = 'queued'),
    count(*) filter (where d.status = 'sending'),
    count(*) filter (where d.status = 'retrying'),
    count(*) filter (where d.status = 'dead'),
    count(*) filter (where d.status = 'dead' and d.dead_at > p_now - interval '24 hours'),
    max(d.delivered_at),
    count(*) filter (
      where d.status in ('queued', 'retrying') and d.next_attempt_at < p_now - interval '10 minutes'
    )
  into v_queued, v_sending, v_retrying, v_dead, v_dead_24h, v_last_delivered, v_overdue
  from monitoring.deliveries as d;

  select count(*) into v_channels from monitoring.channels as c where c.enabled;

  if v_dead_24h > 0 then
    v_reasons := v_reasons || format(
      '%s notification(s) dead-lettered in the last 24 hours (see monitoring.dead_letters)', v_dead_24h
    );
  end if;
  if not v_pg_net and v_queued + v_retrying > 0 then
    v_reasons := v_reasons || format('pg_net is not installed: %s notification(s) wait', v_queued + v_retrying);
  elsif v_overdue > 0 then
    v_reasons := v_reasons || format(
      '%s notification(s) due for more than 10 minutes: is job monitoring-dispatch running?', v_overdue
    );
  end if;

  return jsonb_build_object(
    'status', case when cardinality(v_reasons) = 0 then 'operational' else 'degraded' end,
    'level', case when cardinality(v_reasons) = 0 then 'healthy' else 'degraded' end,
    'pgNet', v_pg_net,
    'channels', v_channels,
    'queued', v_queued,
    'sending', v_sending,
    'retrying', v_retrying,
    'dead', v_dead,
    'dead24h', v_dead_24h,
    'lastDelivered', monitoring._iso(v_last_delivered)
  ) || case
    when cardinality(v_reasons) = 0 then '{}'::jsonb
    else jsonb_build_object('reason', array_to_string(v_reasons, '; '))
  end;
end
$$;

comment on function monitoring._health_delivery(timestamptz) is
'health() section delivery: outbox counts, last delivery, pg_net presence; degraded after a dead letter in 24 h, '
'when pg_net is missing with work waiting, or when due work waits over 10 minutes.';

-- ---------------------------------------------------------------------------------------------
-- health_thresholds and rollup_settings: triggers with messages (their CHECKs stay)
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._pg_net_implementation()
returns text
language sql
stable
set search_path = ''
as $$
  select case
    when e.extversion is not null then 'pg_net ' || e.extversion
    when pg_catalog.to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null
      then 'pydeploy stand-in'
  end
  from (select 1) as one
  left join pg_catalog.pg_extension as e on e.extname = 'pg_net';
$$;

comment on function monitoring._pg_net_implementation() is
'The pg_net that delivers: ''pg_net <version>'' (the extension), ''pydeploy stand-in'' (the local engine without '
'the real extension) or null (none: deliveries wait).';

create or replace function monitoring._health_compose(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language sql
stable
set search_path = ''
set jit = off
as $$
  select jsonb_build_object(
    'services', jsonb_build_object(
      'functions', monitoring._health_functions(p_now),
      'whatsapp', monitoring._health_whatsapp(p_now)
    ),
    'database', monitoring._health_database(p_now),
    'scheduler', monitoring._health_scheduler(p_now),
    'alerts', monitoring._health_alerts(p_now),
    'delivery', monitoring._health_delivery(p_now)
    || jsonb_build_object('pgNetImplementation', monitoring._pg_net_implementation())
  );
$$;

comment on function monitoring._health_compose(timestamptz) is
'The sections of health() without status and timestamp: services (functions, whatsapp), database, scheduler, alerts '
'and delivery (with pgNetImplementation: the pg_net in use); each carries level and, when not healthy, reason.';

-- =============================================================================================
-- API: Public
-- =============================================================================================
create or replace function monitoring.health(
  -- the moment "now" (tests pass a fixed one)
  p_now timestamptz default now()
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_doc jsonb := monitoring._health_compose(p_now);
  v_levels jsonb;
begin
  v_levels := jsonb_path_query_array(v_doc, 'strict $.**.level');
  return jsonb_build_object(
    'status', case
      when v_levels @> '["unhealthy"]' then 'unhealthy'
      when v_levels @> '["degraded"]' then 'degraded'
      else 'healthy'
    end,
    'timestamp', monitoring._health_ts(p_now)
  ) || v_doc || jsonb_build_object('reasons', jsonb_path_query_array(v_doc, 'strict $.**.reason'));
end
$$;

comment on function monitoring.health(timestamptz) is
'The spec''s health response as jsonb: status (healthy | degraded | unhealthy: the worst section '
'level), timestamp, services.functions {status operational|degraded}, services.whatsapp {status, '
'connectionState, lastConnected}, database, scheduler, and reasons (why not healthy). The Edge '
'Function adds the spec''s environment block. Levels and thresholds: docs/views.md.';

-- Thresholds of health() (one row), validated on write. The alerts and delivery sections (above)
-- read the alerting tables:
--   alerts:   firing counts by severity, firing rule names, pending, silenced, rule errors.
--             unhealthy while a critical alert fires; degraded while a warning fires or a rule's last
--             evaluation failed.
--   delivery: outbox counts (queued, sending, retrying, dead), last delivery, pg_net presence.
--             degraded when a notification was dead-lettered in the last 24 hours, when pg_net is
--             missing while notifications wait, or when a due notification waited over 10 minutes.
-- The limits of health_thresholds (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, min_value, min_exclusive, max_value, hint) values
(
  'health_thresholds', 'whatsapp_unhealthy_after', '1 second', false, '7 days',
  'use an interval such as ''5 minutes'' (the spec''s value)'
),
('health_thresholds', 'function_max_errors', '0', false, null, 'use a count such as 10 (the spec''s value)'),
('health_thresholds', 'function_max_error_rate', '0', false, '100', 'use a percentage such as 5 (the spec''s value)'),
('health_thresholds', 'function_max_avg_ms', '0', true, null, 'use milliseconds such as 5000 (the spec''s value)'),
('health_thresholds', 'rollup_max_lag', '1 second', false, '7 days', 'use an interval such as ''5 minutes'''),
('health_thresholds', 'slow_query_target_ms', '0', true, null, 'use milliseconds such as 100 (the spec''s target)'),
('health_thresholds', 'slow_query_alert_ms', '0', true, null, 'use milliseconds such as 500 (the spec''s alert level)')
on conflict (table_name, column_name) do nothing;

create or replace function monitoring._validate_health_thresholds()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- each is bounded by its limit (health_thresholds_limits, which run first); the alert level is
  -- also at least the target
  if new.slow_query_alert_ms < new.slow_query_target_ms then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.slow_query_alert_ms must be a number of ms >= slow_query_target_ms (%s) '
        || '(got %s)', new.slow_query_target_ms, new.slow_query_alert_ms),
      hint = 'use milliseconds such as 500 (the spec''s alert level)';
  end if;
  return new;
end
$$;

comment on function monitoring._validate_health_thresholds() is
'Trigger: refuse a slow_query_alert_ms below slow_query_target_ms, naming the field (the other bounds of '
'health_thresholds are limits in monitoring._limits).';

create or replace trigger health_thresholds_limits
before insert or update on monitoring.health_thresholds
for each row execute function monitoring._validate_limits();

create or replace trigger health_thresholds_single_row
before insert or update on monitoring.health_thresholds
for each row execute function monitoring._validate_single_row();

create or replace trigger health_thresholds_validate_nulls
before insert or update on monitoring.health_thresholds
for each row execute function monitoring._validate_not_null();

create or replace trigger health_thresholds_validate
before insert or update on monitoring.health_thresholds
for each row execute function monitoring._validate_health_thresholds();

-- =============================================================================================
-- Prometheus: what postgres_exporter reads (prometheus/postgres_exporter_queries.yaml)
-- =============================================================================================
-- The exporter connects as role monitoring_exporter (99_grants.sql), which may only call these
-- functions: each reads one of the views (or the error rollups through _error_count), never an app
-- table directly, and returns only figures (no message, payload, runbook or phone number).
-- Security definer, because the views read rollups and app tables with the caller's rights.
create or replace function monitoring.exporter_delivery_stats()
returns setof monitoring.delivery_stats
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select * from monitoring.delivery_stats
$$;

comment on function monitoring.exporter_delivery_stats() is
'For postgres_exporter (role monitoring_exporter): the rows of monitoring.delivery_stats.';

create or replace function monitoring.exporter_error_counts()
returns table (window_name text, errors bigint)
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select w.window_name, monitoring._error_count(now(), w.window_length)
  from (values ('1h', interval '1 hour'), ('24h', interval '24 hours')) as w (window_name, window_length)
$$;

comment on function monitoring.exporter_error_counts() is
'For postgres_exporter: errors logged in the last 1h and 24h (window_name), from the error rollups.';

create or replace function monitoring.exporter_top_errors()
returns setof monitoring.top_errors_24h
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select * from monitoring.top_errors_24h
$$;

comment on function monitoring.exporter_top_errors() is
'For postgres_exporter: the rows of monitoring.top_errors_24h (the 10 most frequent error types of 24 h).';

create or replace function monitoring.exporter_queue_stats()
returns setof monitoring.queue_stats
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select * from monitoring.queue_stats
$$;

comment on function monitoring.exporter_queue_stats() is 'For postgres_exporter: the rows of monitoring.queue_stats.';

create or replace function monitoring.exporter_delivery_latency()
returns setof monitoring.delivery_latency
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select * from monitoring.delivery_latency
$$;

comment on function monitoring.exporter_delivery_latency() is
'For postgres_exporter: the rows of monitoring.delivery_latency.';

create or replace function monitoring.exporter_function_stats()
returns setof monitoring.function_stats
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select * from monitoring.function_stats
$$;

comment on function monitoring.exporter_function_stats() is
'For postgres_exporter: the rows of monitoring.function_stats.';

create or replace function monitoring.exporter_sessions()
returns table (
  session_id text, is_active boolean, connection_state text, minutes_down numeric, seconds_since_update numeric
)
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select
    c.session_id::text,
    c.is_active,
    c.connection_state::text,
    c.minutes_down::numeric,
    round(extract(epoch from now() - c.updated_at)::numeric, 3)
  from monitoring.connection_status as c
$$;

comment on function monitoring.exporter_sessions() is
'For postgres_exporter: per session of monitoring.connection_status its state, minutes down and seconds since its '
'last update (no phone number).';

create or replace function monitoring.exporter_alerts()
returns table (rule_name text, severity text, state text, alerts bigint)
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select r.name, r.severity, s.state, count(a.rule_name)
  from monitoring.alert_rules as r
  cross join (values ('pending'), ('firing')) as s (state)
  left join monitoring.active_alerts as a on a.rule_name = r.name and a.state = s.state
  group by r.name, r.severity, s.state
$$;

comment on function monitoring.exporter_alerts() is
'For postgres_exporter: per rule (with its severity) how many alerts of monitoring.active_alerts are pending and '
'firing (0 rows included, so a resolved alert drops to 0 instead of vanishing).';

create or replace function monitoring.exporter_outbox()
returns table (channel text, status text, deliveries bigint)
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select d.channel, s.status, s.n
  from monitoring.delivery_status as d
  cross join lateral (
    values ('queued', d.queued), ('sending', d.sending), ('retrying', d.retrying), ('dead', d.dead)
  ) as s (status, n)
$$;

comment on function monitoring.exporter_outbox() is
'For postgres_exporter: per channel of monitoring.delivery_status the deliveries queued, sending, retrying and dead '
'(dead letters, as in monitoring.dead_letters).';

create or replace function monitoring.exporter_jobs()
returns table (
  job text, period interval, last_success_at timestamptz, stalled boolean, runs_24h bigint, failures_24h bigint
)
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select j.name, j.period, j.last_ok_at, j.stalled, j.runs_24h, j.failures_24h
  from monitoring.job_status as j
$$;

comment on function monitoring.exporter_jobs() is
'For postgres_exporter: per expected job of monitoring.job_status its period, last success, whether it is stalled, '
'runs and failures in 24 h.';

create or replace function monitoring.exporter_slow_queries()
returns table (statements bigint, max_mean_ms numeric)
language sql
stable
security definer -- the exporter role may read these figures, not the tables behind them
set search_path = ''
as $$
  select count(*), coalesce(max(q.mean_ms), 0)::numeric from monitoring.slow_queries as q
$$;

comment on function monitoring.exporter_slow_queries() is
'For postgres_exporter: how many statements monitoring.slow_queries lists and the highest mean time in ms.';
