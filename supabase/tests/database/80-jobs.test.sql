-- Test: the expected jobs, schedule_jobs/unschedule_jobs (idempotent, db and edge modes), run_job and
-- its run log, the dead man's switch, the spec's check_error_rate and batched retention.
-- Needs pg_cron in this database (cron.database_name), as on Supabase.
begin;
create extension if not exists pgtap with schema extensions;
select plan(43);

create function pg_temp.error_of(p_sql text)
returns text
language plpgsql
as $$
declare
  v_message text;
  v_hint text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint;
  return v_message || ' | hint: ' || coalesce(v_hint, '');
end
$$;

-- our jobs as pg_cron has them (plpgsql: cron.* binds at run time)
create function pg_temp.cron_jobs()
returns table (jobname text, schedule text, command text)
language plpgsql
as $$
begin
  return query execute
    'select j.jobname::text, j.schedule, j.command from cron.job as j '
    || 'where j.jobname in (select name from monitoring.jobs) order by 1';
end
$$;

-- a clean start: nothing of ours scheduled, no secrets for the edge mode
select monitoring.unschedule_jobs();
delete from monitoring._secrets
where name in ('project_url', 'service_role_key');
update monitoring.jobs set scheduled_at = null;

-- ---------------------------------------------------------------------------------------------
-- expected jobs
-- ---------------------------------------------------------------------------------------------

select results_eq(
  'select name, schedule, command from monitoring.expected_jobs order by name',
  $$ values
    ('check-whatsapp-errors'::text, '0 * * * *'::text, 'select monitoring.run_job(''check-whatsapp-errors'')'::text),
    ('monitoring-digest-daily', '5 8 * * *', 'select monitoring.run_job(''digest-daily'')'),
    ('monitoring-digest-monthly', '15 8 1 * *', 'select monitoring.run_job(''digest-monthly'')'),
    ('monitoring-digest-weekly', '10 8 * * 1', 'select monitoring.run_job(''digest-weekly'')'),
    ('monitoring-dispatch', '* * * * *', 'select monitoring.run_job(''dispatch'')'),
    ('monitoring-evaluate', '* * * * *', 'select monitoring.run_job(''evaluate'')'),
    ('monitoring-retention', '30 3 * * *', 'do $retention$ declare s jsonb; begin commit; '
      's := monitoring._retention_start(); while s is not null loop commit; '
      's := monitoring._retention_step(s); end loop; end $retention$'),
    ('monitoring-watchdog', '* * * * *', 'select monitoring.run_job(''watchdog'')') $$,
  'the expected jobs: stable names, schedules, one-line commands (check-whatsapp-errors hourly, as the spec)'
);
select cmp_ok(
  (
    select max(n) from (
      select count(*) as n
      from monitoring.expected_jobs as e
      cross join monitoring._cron_times(e.schedule, '2030-01-01 00:00+00', '2030-01-01 23:59+00') as t (at)
      group by t.at
    ) as per_minute
  ),
  '<=',
  8::bigint,
  'at most 8 jobs start in the same minute (Supabase''s advice)'
);

-- ---------------------------------------------------------------------------------------------
-- schedule_jobs / unschedule_jobs
-- ---------------------------------------------------------------------------------------------

select is(
  jsonb_array_length(monitoring.schedule_jobs() -> 'scheduled'),
  8,
  'schedule_jobs() creates the eight jobs (five, and the three digests)'
);
select results_eq(
  'select jobname, schedule, command from pg_temp.cron_jobs()',
  'select name, schedule, command from monitoring.expected_jobs order by name',
  'cron.job now equals monitoring.expected_jobs'
);
select is(
  monitoring.schedule_jobs(),
  jsonb_build_object(
    'mode', 'db', 'scheduled', '[]'::jsonb, 'updated', '[]'::jsonb, 'removed', '[]'::jsonb,
    'unchanged', (select jsonb_agg(name order by name) from monitoring.expected_jobs)
  ),
  'schedule_jobs() again changes nothing'
);
select is((select count(*)::integer from pg_temp.cron_jobs()), 8, 'and creates no duplicate');
select is(
  (
    select count(*)::integer from monitoring.jobs
    where scheduled_at is not null
  ),
  8,
  'scheduled_at is set (the dead man''s switch counts from it)'
);

update monitoring.jobs set schedule = '45 2 * * *'
where name = 'monitoring-retention';
select is(
  monitoring.schedule_jobs() -> 'updated',
  '["monitoring-retention"]'::jsonb,
  'an edited schedule is updated in place'
);
select is(
  (
    select schedule from pg_temp.cron_jobs()
    where jobname = 'monitoring-retention'
  ),
  '45 2 * * *',
  'cron.job has the new schedule'
);

select matches(
  pg_temp.error_of($$select monitoring.schedule_jobs('cloud')$$),
  'schedule_jobs: p_mode must be db or edge \(got ''cloud''\)',
  'an unknown mode is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.schedule_jobs('edge')$$),
  '^settings\.project_url_secret: secret ''project_url'' does not resolve .*'
  || 'hint: store it first: select monitoring\.set_secret\(''project_url'', ''\.\.\.''\);',
  'edge mode refuses to schedule while the project URL secret does not resolve, naming it'
);
select monitoring.set_secret('project_url', 'https://abc.supabase.co');
select matches(
  pg_temp.error_of($$select monitoring.schedule_jobs('edge')$$),
  '^settings\.service_key_secret: secret ''service_role_key'' does not resolve',
  'and while the service key secret does not resolve'
);
select monitoring.set_secret('service_role_key', 'service-key-123');
select is(monitoring.schedule_jobs('edge') -> 'updated', '["check-whatsapp-errors"]'::jsonb, 'edge mode schedules');
select is(
  (
    select command from pg_temp.cron_jobs()
    where jobname = 'check-whatsapp-errors'
  ),
  'select monitoring.run_job(''check-whatsapp-errors-edge'')',
  'check-whatsapp-errors now calls the Edge Function'
);
select is(monitoring.run_job('check-whatsapp-errors-edge') ->> 'ok', 'true', 'the edge job runs');
select results_eq(
  $$
  select q.method::text, q.url, q.headers ->> 'Authorization'
  from net.http_request_queue as q
  order by q.id desc
  limit 1
  $$,
  $$values
    ('POST'::text, 'https://abc.supabase.co/functions/v1/check-error-rate'::text, 'Bearer service-key-123'::text)$$,
  'it posts to <project_url>/functions/v1/check-error-rate with the service key'
);
select is(monitoring.schedule_jobs() ->> 'mode', 'db', 'schedule_jobs() goes back to db mode');
select is(
  (
    select command from pg_temp.cron_jobs()
    where jobname = 'check-whatsapp-errors'
  ),
  'select monitoring.run_job(''check-whatsapp-errors'')',
  'and check-whatsapp-errors calls check_error_rate again'
);

update monitoring.jobs set enabled = false
where name = 'monitoring-retention';
select is(monitoring.schedule_jobs() -> 'removed', '["monitoring-retention"]'::jsonb, 'a disabled job is unscheduled');
update monitoring.jobs set enabled = true
where name = 'monitoring-retention';
select monitoring.schedule_jobs();

select is(jsonb_array_length(monitoring.unschedule_jobs() -> 'removed'), 8, 'unschedule_jobs() removes the eight jobs');
select is(monitoring.unschedule_jobs() -> 'removed', '[]'::jsonb, 'and again removes nothing, without error');
select is((select count(*)::integer from pg_temp.cron_jobs()), 0, 'none of ours is left in cron.job');

-- ---------------------------------------------------------------------------------------------
-- the dead man's switch
-- ---------------------------------------------------------------------------------------------

select monitoring.evaluate_rules(now() + interval '5 minutes', array['monitor_stalled']);
select set_eq(
  $$select labels ->> 'job' from monitoring.alerts where rule_name = 'monitor_stalled' and state = 'firing'$$,
  array['monitoring-dispatch', 'monitoring-evaluate', 'monitoring-watchdog'],
  'unscheduled checks trip monitor_stalled: every-minute jobs without success for 5 minutes'
);
select is(
  (
    select severity from monitoring.alerts
    where rule_name = 'monitor_stalled'
    order by fingerprint limit 1
  ),
  'critical',
  'monitor_stalled is critical'
);
insert into monitoring.job_runs (job, started_at, finished_at, ok)
values ('evaluate', now() + interval '6 minutes', now() + interval '6 minutes', true);
select monitoring.evaluate_rules(now() + interval '7 minutes', array['monitor_stalled']);
select is(
  (
    select state from monitoring.alerts
    where rule_name = 'monitor_stalled' and labels ->> 'job' = 'monitoring-evaluate'
  ),
  'resolved',
  'a job that succeeds again resolves its alert'
);

-- ---------------------------------------------------------------------------------------------
-- run_job
-- ---------------------------------------------------------------------------------------------

select throws_like(
  $$select monitoring.run_job('backup')$$, 'run_job: unknown job ''backup''', 'an unknown job is an error'
);
select is(monitoring.run_job('dispatch') ->> 'ok', 'true', 'run_job runs a job');
select ok(
  (
    select ok and detail ? 'reconcile' and detail ? 'dispatch'
    from monitoring.job_runs
    where job = 'dispatch'
    order by id desc limit 1
  ),
  'and logs the run with what it did'
);
delete from monitoring._secrets
where name = 'project_url';
-- Vault where the server loads it (the local engine given the real extensions, Supabase)
do $$
begin
  if to_regclass('vault.secrets') is not null then
    execute $sql$delete from vault.secrets where name = 'project_url'$sql$;
  end if;
end
$$;
set local client_min_messages = error;
select is(
  monitoring.run_job('check-whatsapp-errors-edge') ->> 'ok',
  'false',
  'a failing job does not raise out of run_job'
);
select matches(
  (
    select error from monitoring.job_runs
    where job = 'check-whatsapp-errors-edge' and not ok
    order by id desc limit 1
  ),
  'settings\.project_url_secret',
  'its error is in job_runs'
);

-- ---------------------------------------------------------------------------------------------
-- check_error_rate: the spec's {errorCount, threshold}
-- ---------------------------------------------------------------------------------------------

update monitoring.rollup_state set watermark = '-infinity';
insert into public.whatsapp_error_logs (error_type, created_at)
select
  'connection_lost' as error_type,
  now() - interval '10 minutes' as created_at
from generate_series(1, 51);
insert into public.whatsapp_error_logs (error_type, created_at)
select
  'connection_lost' as error_type,
  now() - interval '2 hours' as created_at
from generate_series(1, 5);

select is(
  monitoring.check_error_rate(),
  '{"errorCount": 51, "threshold": 50}'::jsonb,
  'check_error_rate() returns exactly {"errorCount": 51, "threshold": 50} (errors of the last hour)'
);
select is(
  (select array_agg(k order by k) from jsonb_object_keys(monitoring.check_error_rate()) as k),
  array['errorCount', 'threshold'],
  'and no other key'
);
select is(
  (
    select state from monitoring.alerts
    where rule_name = 'error_rate_webhook'
  ),
  'firing',
  'more than the threshold raises error_rate_webhook'
);
select is(
  monitoring.check_error_rate(100),
  '{"errorCount": 51, "threshold": 100}'::jsonb,
  'the threshold is a parameter'
);
select is(
  (
    select state from monitoring.alerts
    where rule_name = 'error_rate_webhook'
  ),
  'resolved',
  'and at or below it the alert resolves'
);
select matches(
  pg_temp.error_of($$select monitoring.check_error_rate(-1)$$),
  'check_error_rate: threshold must be >= 0',
  'a negative threshold is rejected'
);
select is(
  monitoring.run_job('check-whatsapp-errors') -> 'result' ->> 'errorCount',
  '51',
  'job check-whatsapp-errors runs check_error_rate'
);

-- ---------------------------------------------------------------------------------------------
-- retention
-- ---------------------------------------------------------------------------------------------

update monitoring.retention_policies set batch_size = 100
where target = 'whatsapp_error_logs';
insert into public.whatsapp_error_logs (error_type, created_at)
select
  'old' as error_type,
  now() - interval '31 days' as created_at
from generate_series(1, 250);
insert into monitoring.alert_history (fingerprint, rule_name, labels, to_state, occurred_at) values
('f-old', 'x', '{}', 'firing', now() - interval '91 days'),
('f-new', 'x', '{}', 'firing', now() - interval '1 day');
insert into monitoring.deliveries (channel, event, payload, body, status, created_at, delivered_at, dead_at) values
('old-delivered', 'test', '{}', '{}', 'delivered', now() - interval '32 days', now() - interval '31 days', null),
('old-dead', 'test', '{}', '{}', 'dead', now() - interval '32 days', null, now() - interval '31 days'),
('old-queued', 'test', '{}', '{}', 'queued', now() - interval '32 days', null, null);
insert into monitoring.job_runs (job, started_at, finished_at, ok)
values ('old-job', now() - interval '31 days', now() - interval '31 days', true);
insert into monitoring.rule_errors (rule_name, occurred_at, message) values (
  'old-rule', now() - interval '31 days', 'x'
);
insert into cron.job_run_details (jobid, status, start_time, end_time, command)
values (0, 'succeeded', now() - interval '8 days', now() - interval '8 days', 'old-cron-run');

select is(
  monitoring.run_retention() -> 'deleted' -> 'whatsapp_error_logs',
  '250'::jsonb,
  'retention deletes the 250 error logs older than 30 days (in batches of 100)'
);
select results_eq(
  $$select error_type, count(*)::integer from public.whatsapp_error_logs group by 1 order by 1$$,
  $$values ('connection_lost'::text, 56)$$,
  'and keeps the younger ones'
);
select ok(
  not exists (
    select 1 from monitoring.alert_history
    where fingerprint = 'f-old'
  )
  and exists (
    select 1 from monitoring.alert_history
    where fingerprint = 'f-new'
  ),
  'alert history older than 90 days is deleted'
);
select set_eq(
  $$select channel from monitoring.deliveries where channel like 'old-%'$$,
  array['old-queued'],
  'delivered and dead deliveries older than 30 days are deleted; queued ones never'
);
select ok(
  not exists (
    select 1 from monitoring.job_runs
    where job = 'old-job'
  )
  and not exists (
    select 1 from monitoring.rule_errors
    where rule_name = 'old-rule'
  )
  and not exists (
    select 1 from cron.job_run_details
    where command = 'old-cron-run'
  ),
  'old job runs, rule errors and cron.job_run_details (7 days) are deleted'
);
select is(
  (select last_full_at from monitoring.rollup_state),
  now(),
  'retention ends with refresh_rollups(p_full => true)'
);

select * from finish();
rollback;
