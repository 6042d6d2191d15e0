-- Least-privilege fixes found by acting as Supabase's roles (tests/test_privileges.py).
--
-- 1. service_role could not evaluate high_error_rate, low_delivery_rate, slow_queue and
--    slow_delivery: their checks word the window with monitoring._human_interval(), which the
--    privilege sweep of 20261127020500_alerting_health.sql left executable by its owner alone, so
--    evaluate_rules() as service_role recorded "permission denied for function _human_interval" for
--    each of them (pg_cron runs the checks as the owner, which is why the jobs still worked).
-- 2. Supabase's default privileges give anon and authenticated every privilege on new tables in
--    public, including TRUNCATE, REFERENCES and TRIGGER. Row level security guards select, insert,
--    update and delete only: a session acting as anon could empty whatsapp_notifications with
--    TRUNCATE. The API never needs these three, so they are taken back; select, insert, update and
--    delete stay as they are (RLS decides, and projects with their own policies keep working).

grant execute on function monitoring._human_interval(interval) to service_role, postgres;

revoke truncate, references, trigger
on public.whatsapp_notifications, public.whatsapp_error_logs, public.whatsapp_sessions
from anon, authenticated;

-- 3. `supabase db lint` (plpgsql_check) reported "relation cron.job does not exist" in
--    monitoring._health_scheduler on every database without pg_cron (pg_cron runs in one database
--    only, cron.database_name): it was the one function that named cron.* in static SQL behind its
--    to_regclass check. Same result, with cron.* reached through regclass variables
--    like the rest (and scalar targets: plpgsql_check cannot type a record filled by dynamic SQL).
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
