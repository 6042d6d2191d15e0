-- The dead man's switch counts from the later of a job's last success and its (re)scheduling.
--
-- monitoring.job_status and the monitor_stalled rule counted from the last success when there was
-- one, and from scheduled_at only before the first: a job unscheduled for maintenance and
-- scheduled again (schedule_jobs() stamps scheduled_at when it creates the cron job) showed as
-- stalled, and made pydeploy verify fail, until its first run, because its last success was from
-- before the pause. Both now count from greatest(last success, scheduled_at).

create or replace view monitoring.job_status
with (security_invoker = true)
as
select
  e.name,
  e.schedule,
  e.command,
  e.period,
  e.scheduled_at,
  r.last_run_at,
  r.last_ok_at,
  f.last_error,
  f.last_error_at,
  coalesce(r.runs_24h, 0) as runs_24h,
  coalesce(r.failures_24h, 0) as failures_24h,
  -- counted from the later of the last success and the (re)scheduling
  coalesce(now() - greatest(r.last_ok_at, e.scheduled_at) > 2 * e.period, false) as stalled
from monitoring.expected_jobs as e
left join lateral (
  select
    max(jr.started_at) as last_run_at,
    max(jr.finished_at) filter (where jr.ok) as last_ok_at,
    count(*) filter (where jr.started_at > now() - interval '24 hours') as runs_24h,
    count(*) filter (where jr.started_at > now() - interval '24 hours' and not jr.ok) as failures_24h
  from monitoring.job_runs as jr
  where jr.job = e.job
) as r on true
left join lateral (
  select
    jr.error as last_error,
    jr.finished_at as last_error_at
  from monitoring.job_runs as jr
  where jr.job = e.job and not jr.ok
  order by jr.finished_at desc
  limit 1
) as f on true
order by e.name;
comment on view monitoring.job_status is
'Per expected job: last run, last success, last error, runs and failures in 24 h, and whether it is stalled (no '
'success for twice its period, counted from the later of the last success and when schedule_jobs() created the '
'cron job).';

create or replace function monitoring._check_monitor_stalled(
  -- the rule (threshold: how many periods without success)
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language plpgsql
stable
set search_path = ''
set jit = off
as $$
#variable_conflict use_column
declare
  v_job record;
  v_last timestamptz;
  v_cron record;
  v_ratio numeric;
begin
  for v_job in select e.name, e.job, e.command, e.period, e.scheduled_at from monitoring.expected_jobs as e loop
    select max(r.finished_at) into v_last from monitoring.job_runs as r where r.job = v_job.job and r.ok;
    select c.scheduled, c.status, c.return_message, c.last_success_at into v_cron
    from monitoring._cron_last_run(v_job.name) as c;
    if v_job.command not like 'select monitoring.run_job(%' then
      -- a command that does not log to job_runs: pg_cron's own success counts
      v_last := greatest(v_last, v_cron.last_success_at);
    end if;
    -- a job scheduled again after a pause counts from then, not from its last success before it
    v_last := greatest(v_last, v_job.scheduled_at);
    -- never scheduled and never run: not expected to run yet
    continue when v_last is null;

    v_ratio := greatest(round((extract(epoch from p_now - v_last) / extract(epoch from v_job.period))::numeric, 2), 0);
    labels := jsonb_build_object('job', v_job.name);
    value := v_ratio;
    volume := null;
    message := format(
      'Monitoring job %s has not succeeded for %s (runs every %s; alert after %s periods)',
      v_job.name, date_trunc('second', p_now - v_last), v_job.period, p_rule.threshold
    ) || case
      when v_cron.scheduled is false then '; it is not in cron.job: run select monitoring.schedule_jobs()'
      when v_cron.status is not null
        then format('; last pg_cron run %s%s', v_cron.status,
          coalesce(': ' || nullif(left(v_cron.return_message, 200), ''), ''))
      else ''
    end;
    return next;
  end loop;
end
$$;
comment on function monitoring._check_monitor_stalled(monitoring.alert_rules, timestamptz) is
'Check monitor_stalled (dead man''s switch): per expected job, time since its last success (job_runs, or '
'cron.job_run_details for commands that do not log) in multiples of its period; counted from scheduled_at until a '
'first success, and from a re-scheduling that came after the last success.';
