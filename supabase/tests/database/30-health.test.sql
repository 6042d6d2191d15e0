-- Test: monitoring.health(p_now): the spec's shape, the whatsapp rules (unhealthy when down more
-- than 5 minutes, degraded before), functions degraded on errors, rollup lag and the scheduler
-- (with and without pg_cron), and the overall status as the worst section.
begin;
set local client_min_messages = warning;
create extension if not exists pgtap with schema extensions;
set local search_path = extensions, public;
select plan(30);

delete from public.whatsapp_sessions;
delete from monitoring.function_invocations;
create temporary table t (p_now timestamptz) on commit drop;
insert into t values ('2026-06-15 12:00:30+00');

-- a healthy baseline: one connected session, fresh rollups, a cron job that last succeeded
insert into public.whatsapp_sessions (
  session_id, phone_number, is_active, connection_state, last_connected_at, updated_at
)
select
  'h1' as session_id,
  '+5511999999999' as phone_number,
  true as is_active,
  'connected' as connection_state,
  p_now - interval '20 seconds' as last_connected_at,
  p_now - interval '20 seconds' as updated_at
from t;
select ok(monitoring.refresh_rollups((select p_now from t)) ->> 'watermark' is not null, 'rollups refreshed at p_now');
delete from cron.job_run_details;
delete from cron.job;
select ok(cron.schedule('t-health-job', '* * * * *', 'select 1') > 0, 'a cron job is scheduled');
insert into cron.job_run_details (
  jobid, runid, job_pid, database, username, command, status, return_message, start_time, end_time
)
select
  j.jobid,
  1 as runid,
  1 as job_pid,
  'postgres' as database,
  'postgres' as username,
  'select 1' as command,
  'succeeded' as status,
  '1 row' as return_message,
  t.p_now - interval '30 seconds' as start_time,
  t.p_now - interval '29 seconds' as end_time
from cron.job as j, t
where j.jobname = 't-health-job';

create temporary table h on commit drop as select monitoring.health((select p_now from t)) as doc;

select is((select doc ->> 'status' from h), 'healthy', 'healthy when every section is');
select is((select doc ->> 'timestamp' from h), '2026-06-15T12:00:30Z', 'timestamp is ISO 8601 UTC like the spec');
select is((select doc #>> '{services,functions,status}' from h), 'operational', 'functions operational');
select is((select doc #>> '{services,whatsapp,status}' from h), 'connected', 'services.whatsapp.status connected');
select is((select doc #>> '{services,whatsapp,connectionState}' from h), 'connected', 'connectionState');
select is(
  (select doc #>> '{services,whatsapp,lastConnected}' from h),
  '2026-06-15T12:00:10Z',
  'services.whatsapp.lastConnected'
);
select is((select doc #>> '{database,status}' from h), 'ok', 'database section present');
select ok((select (doc #>> '{database,sizeBytes}')::bigint > 0 from h), 'database size reported');
select is((select doc #>> '{scheduler,status}' from h), 'operational', 'scheduler operational');
select is((select (doc #>> '{scheduler,jobs}')::integer from h), 1, 'scheduler counts jobs');
select is((select doc #>> '{scheduler,lastRun,status}' from h), 'succeeded', 'scheduler reports the last run');
select is((select doc -> 'reasons' from h), '[]'::jsonb, 'no reasons when healthy');

-- whatsapp: down 3 minutes is degraded, more than 5 minutes unhealthy, no session unhealthy
update public.whatsapp_sessions set
  connection_state = 'disconnected', last_connected_at = (select p_now from t) - interval '3 minutes';
select is(monitoring.health((select p_now from t)) ->> 'status', 'degraded', 'whatsapp down 3 min: degraded');
select is(
  monitoring.health((select p_now from t)) #>> '{services,whatsapp,status}',
  'disconnected',
  'whatsapp status disconnected'
);
select is(
  monitoring.health((select p_now from t)) #>> '{services,whatsapp,connectionState}',
  'disconnected',
  'connectionState is the session''s'
);
update public.whatsapp_sessions set last_connected_at = (select p_now from t) - interval '5 minutes';
select is(monitoring.health((select p_now from t)) ->> 'status', 'degraded', 'down exactly 5 min: degraded');
update public.whatsapp_sessions set last_connected_at = (select p_now from t) - interval '5 minutes 1 second';
select is(monitoring.health((select p_now from t)) ->> 'status', 'unhealthy', 'whatsapp down > 5 min: unhealthy');
select ok(
  monitoring.health((select p_now from t)) -> 'reasons' @> '["WhatsApp not connected (disconnected) for 5.0 min"]',
  'the reason says what and for how long'
);
update monitoring.health_thresholds set whatsapp_unhealthy_after = interval '10 minutes';
select is(monitoring.health((select p_now from t)) ->> 'status', 'degraded', 'threshold from the table');
update public.whatsapp_sessions set is_active = false;
select is(monitoring.health((select p_now from t)) ->> 'status', 'unhealthy', 'no active session: unhealthy');
update public.whatsapp_sessions set is_active = true, connection_state = 'connected';

-- functions: more than 10 errors in 5 minutes, or > 5 % errors, degrade
select ok(count(monitoring.record_invocation('send-whatsapp', 200, 100, p_now - interval '1 minute')) = 100, 'calls')
from t, generate_series(1, 100);
select is(
  monitoring.health((select p_now from t)) #>> '{services,functions,status}',
  'operational',
  '100 good calls: operational'
);
select ok(count(monitoring.record_invocation('send-whatsapp', 502, 100, p_now - interval '1 minute')) = 6, 'errors')
from t, generate_series(1, 6);
select is(
  monitoring.health((select p_now from t)) #>> '{services,functions,status}',
  'degraded',
  '6 of 106 calls failed (5.7 %): degraded'
);
select is(monitoring.health((select p_now from t)) ->> 'status', 'degraded', 'functions degraded: overall degraded');
delete from monitoring.function_invocations;

-- rollups that stopped refreshing degrade the database section
select is(
  monitoring.health((select p_now from t) + interval '10 minutes') #>> '{database,level}', 'degraded',
  'rollups 10 minutes old: database degraded'
);

-- a failed last run degrades the scheduler
update cron.job_run_details set status = 'failed';
select is(
  monitoring.health((select p_now from t)) #>> '{scheduler,status}', 'degraded', 'failed last run: scheduler degraded'
);

-- without pg_cron (dropped inside this transaction) health still answers
drop extension pg_cron;
select is(
  monitoring.health((select p_now from t)) #>> '{scheduler,status}',
  'unavailable',
  'without pg_cron: scheduler unavailable'
);

select * from finish();
rollback;
