-- monitoring.health(): the spec's /api/health response, computed in the database.
--
-- Shape: {status, timestamp, services: {functions, whatsapp}, database, scheduler, reasons}.
-- Each section comes from one `_health_<section>(p_now)` helper and carries a `level`
-- (healthy | degraded | unhealthy) and, when not healthy, a `reason`. health() takes the worst
-- level found anywhere in the document and lists every reason, so a new section only has to be
-- added to monitoring._health_compose() (the alerting migrations replace that one function to add
-- `delivery` and `alerts`).
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
  from monitoring.get_function_stats(p_now) as f
  where f.window_name = '5m';

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
'health_thresholds limit over 5 minutes (from monitoring.get_function_stats).';

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
  v_last record;
  v_failing text[];
  v_reason text;
begin
  select e.extversion into v_version from pg_catalog.pg_extension as e where e.extname = 'pg_cron';
  if v_version is null or pg_catalog.to_regclass('cron.job') is null then
    return jsonb_build_object(
      'status', 'unavailable',
      'level', 'degraded',
      'pgCron', false,
      'reason', 'pg_cron is not installed: rollups and checks are not scheduled'
    );
  end if;

  select count(*), count(*) filter (where j.active) into v_jobs, v_active from cron.job as j;

  -- the latest run of each job among the most recent runs (runid order uses the primary key;
  -- job_run_details is never trimmed by pg_cron, so it is not scanned whole)
  select array_agg(r.jobname::text order by r.jobname) filter (where r.status = 'failed')
  into v_failing
  from (
    select distinct on (d.jobid) j.jobname, d.status
    from (select * from cron.job_run_details as x order by x.runid desc limit 500) as d
    inner join cron.job as j on d.jobid = j.jobid
    order by d.jobid, d.runid desc
  ) as r;

  select j.jobname, d.status, d.start_time, d.end_time into v_last
  from cron.job_run_details as d
  inner join cron.job as j on d.jobid = j.jobid
  order by d.runid desc
  limit 1;

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
    'lastRun', case when v_last.status is not null then jsonb_build_object(
      'jobName', v_last.jobname,
      'status', v_last.status,
      'startTime', monitoring._health_ts(v_last.start_time),
      'endTime', monitoring._health_ts(v_last.end_time),
      'ageSeconds', round(extract(epoch from (p_now - v_last.start_time)), 0)
    ) end
  ) || case when v_reason is null then '{}'::jsonb else jsonb_build_object('reason', v_reason) end;
end
$$;

comment on function monitoring._health_scheduler(timestamptz) is
'health() section scheduler: pg_cron presence, job counts and the latest run; degraded when '
'pg_cron is missing, no job is scheduled, or the latest run of some job failed. Works without '
'pg_cron (checked with to_regclass before cron.* is read).';

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
    'scheduler', monitoring._health_scheduler(p_now)
  );
$$;

comment on function monitoring._health_compose(timestamptz) is
'The sections of health() without status and timestamp. Replace this one function to add '
'sections (e.g. delivery, alerts): each section object should carry level (healthy | degraded | '
'unhealthy) and, when not healthy, reason; health() picks them up wherever they are.';


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
'Function adds the spec''s environment block. Rules: see the migration header.';


-- =============================================================================================
-- Privileges
-- =============================================================================================

revoke all on all functions in schema monitoring from public, anon, authenticated;

grant execute on function monitoring._health_ts(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_functions(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_whatsapp(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_database(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_scheduler(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_compose(timestamptz) to service_role, postgres;
grant execute on function monitoring.health(timestamptz) to service_role, postgres;
