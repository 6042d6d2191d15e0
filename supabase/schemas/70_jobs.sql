-- The pg_cron jobs, their run log, the spec's check_error_rate and the Edge Function mode.
--
-- monitoring.jobs is the desired schedule; monitoring.schedule_jobs() makes cron.job match it
-- (cron.schedule upserts by name) and monitoring.unschedule_jobs() removes our jobs. Every cron
-- command is one line, `select monitoring.run_job('<job>')`, which takes a per-job advisory lock
-- (an overlapping run skips), runs one function and writes monitoring.job_runs. The dead man's
-- switch (rule monitor_stalled) reads job_runs and cron.job_run_details.
--
-- Jobs (GMT, minute granularity, at most 5 running at once):
--   monitoring-evaluate         * * * * *    rules due by their own schedule, then dispatch
--   monitoring-watchdog         * * * * *    monitor_stalled only, then reconcile and dispatch
--   monitoring-dispatch         * * * * *    reconcile responses, send due deliveries and retries
--   monitoring-refresh-rollups  * * * * *    monitoring.refresh_rollups()
--   check-whatsapp-errors       0 * * * *    the spec's hourly check (SQL, or the Edge Function)
--   monitoring-retention        30 3 * * *   batched deletes, each committed, then refresh_rollups()

-- ---------------------------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.jobs (
  name text primary key,
  job text not null,
  edge_job text,
  schedule text not null,
  period interval not null default interval '1 minute',
  description text not null,
  enabled boolean not null default true,
  scheduled_at timestamptz,
  -- derived from schedule by monitoring._validate_job (a safeguard of the derivation, not a user limit)
  constraint jobs_period_check check (period > interval '0')
);

comment on table monitoring.jobs is
'The pg_cron jobs monitoring.schedule_jobs() keeps in cron.job: stable names, schedules (editable) and the run_job '
'key each calls.';

comment on column monitoring.jobs.name is 'cron.job.jobname (stable; check-whatsapp-errors is the spec''s name).';

comment on column monitoring.jobs.job is 'Argument of monitoring.run_job in db mode.';

comment on column monitoring.jobs.edge_job is 'Argument of monitoring.run_job in edge mode, when it differs.';

comment on column monitoring.jobs.period is
'Longest gap between two runs, derived from schedule; monitor_stalled fires after twice this without success.';

comment on column monitoring.jobs.enabled is
'Disabled jobs are removed from cron.job by schedule_jobs() and not watched.';

comment on column monitoring.jobs.scheduled_at is
'When schedule_jobs() last created the cron job; the dead man''s switch counts from here until a first success.';

create or replace function monitoring._validate_job()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.job is null
    or new.job not in (
      'evaluate', 'watchdog', 'dispatch', 'refresh-rollups', 'check-whatsapp-errors', 'check-whatsapp-errors-edge',
      'retention'
    )
    or (new.edge_job is not null and new.edge_job not in ('check-whatsapp-errors-edge')) then
    raise exception using
      errcode = 'check_violation',
      message = format('jobs.job %L (edge_job %L) is not a job monitoring.run_job knows', new.job, new.edge_job),
      hint = 'use evaluate, watchdog, dispatch, refresh-rollups, check-whatsapp-errors or retention';
  end if;
  if new.name is null or new.name !~ '^[a-z][a-z0-9-]{0,62}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('jobs.name %L must be lower-case letters, digits and - (at most 63)', new.name),
      hint = 'use a name such as monitoring-evaluate';
  end if;
  if new.description is null or btrim(new.description) = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('jobs.description of %s must not be empty', new.name),
      hint = 'say in one line what the job does';
  end if;
  perform monitoring._cron_parse(new.schedule, 'jobs.schedule');
  new.period := monitoring._cron_period(new.schedule);
  return new;
end
$$;

comment on function monitoring._validate_job() is
'Trigger: validate a job (name, run_job key, schedule) and derive its period from the schedule.';

create or replace trigger jobs_validate
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_job();

insert into monitoring.jobs (name, job, edge_job, schedule, description) values
(
  'monitoring-evaluate', 'evaluate', null, '* * * * *',
  'Evaluate the alert rules due by their own schedule, then send the notifications they queued.'
),
(
  'monitoring-watchdog', 'watchdog', null, '* * * * *',
  'Dead man''s switch: evaluate monitor_stalled and send its notifications, independently of monitoring-evaluate.'
),
(
  'monitoring-dispatch', 'dispatch', null, '* * * * *',
  'Confirm sent notifications from net._http_response, then send due deliveries and retries.'
),
(
  'monitoring-refresh-rollups', 'refresh-rollups', null, '* * * * *',
  'Refresh the per-minute rollups behind the monitoring views (monitoring.refresh_rollups()).'
),
(
  'check-whatsapp-errors', 'check-whatsapp-errors', 'check-whatsapp-errors-edge', '0 * * * *',
  'The spec''s hourly error-rate check: monitoring.check_error_rate() (db mode) or the check-error-rate Edge '
  'Function (edge mode).'
),
(
  'monitoring-retention', 'retention', null, '30 3 * * *',
  'Delete expired rows in batches (monitoring.retention_policies), each batch committed on its own, then '
  || 'refresh_rollups(): call monitoring.run_retention_job().'
)
on conflict (name) do nothing;

create or replace view monitoring.expected_jobs
with (security_invoker = true)
as
select
  j.name,
  j.schedule,
  case
    when j.job = 'retention' then 'call monitoring.run_retention_job()'
    else format(
      'select monitoring.run_job(%L)',
      case when s.job_mode = 'edge' and j.edge_job is not null then j.edge_job else j.job end
    )
  end as command,
  case when s.job_mode = 'edge' and j.edge_job is not null then j.edge_job else j.job end as job,
  j.period,
  j.scheduled_at,
  j.description
from monitoring.jobs as j
cross join monitoring.settings as s
where s.id and j.enabled
order by j.name;

comment on view monitoring.expected_jobs is
'The cron jobs that should exist (name, schedule, command) for the current job mode; compare with cron.job.';

-- ---------------------------------------------------------------------------------------------
-- Run log
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.job_runs (
  id bigint generated always as identity primary key,
  job text not null,
  started_at timestamptz not null,
  finished_at timestamptz not null,
  ok boolean not null,
  error text,
  detail jsonb
);

comment on table monitoring.job_runs is
'One row per run of monitoring.run_job: when, whether it succeeded, the error or the job''s summary.';

comment on column monitoring.job_runs.job is 'The run_job key (evaluate, dispatch, ...).';

comment on column monitoring.job_runs.detail is 'What the job returned (counts, transitions, ...).';

create index if not exists job_runs_job_ok_idx on monitoring.job_runs (job, finished_at) where ok;

create index if not exists job_runs_started_at_idx on monitoring.job_runs (started_at);

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

-- ---------------------------------------------------------------------------------------------
-- The spec's error-rate check
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring.check_error_rate(
  -- alert when more errors than this were logged in the last hour (the spec's 50)
  threshold integer default 50,
  -- now
  p_now timestamptz default now()
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_rule monitoring.alert_rules;
  v_count bigint;
  v_labels jsonb;
begin
  if check_error_rate.threshold is null or check_error_rate.threshold < 0 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('check_error_rate: threshold must be >= 0 (got %s)',
        coalesce(check_error_rate.threshold::text, 'null')),
      hint = 'use the spec''s 50';
  end if;

  select * into v_rule from monitoring.alert_rules as r where r.name = 'error_rate_webhook';

  -- the spec's query: errors with created_at >= now - 1 hour
  perform monitoring._refresh_for_evaluation(p_now);
  v_count := monitoring._error_count(p_now, coalesce(v_rule."window", interval '1 hour'));

  if v_rule.name is not null and v_rule.enabled then
    perform pg_advisory_xact_lock(hashtext('monitoring.rule'), hashtext(v_rule.name));
    v_labels := v_rule.labels || jsonb_build_object('alertname', v_rule.name, 'severity', v_rule.severity);
    perform monitoring._transition(
      v_rule,
      monitoring._fingerprint(v_labels),
      v_labels,
      v_count,
      format('High WhatsApp error rate: %s errors in last hour (threshold %s)', v_count, check_error_rate.threshold),
      v_count > check_error_rate.threshold,
      p_now
    );
    insert into monitoring.rule_state as s (rule_name, last_evaluated_at, last_ok_at)
    values (v_rule.name, p_now, p_now)
    on conflict (rule_name) do update
      set last_evaluated_at = p_now, last_ok_at = p_now, last_error = null, consecutive_errors = 0;
  end if;

  return jsonb_build_object('errorCount', v_count, 'threshold', check_error_rate.threshold);
end
$$;

comment on function monitoring.check_error_rate(integer, timestamptz) is
'The spec''s check-error-rate: count errors logged since p_now - 1 hour, raise or resolve alert error_rate_webhook, '
'return exactly {"errorCount": n, "threshold": t}.';

create or replace function monitoring._invoke_edge_function(
  -- Edge Function name, such as check-error-rate
  p_function text,
  -- JSON body
  p_body jsonb default '{}'::jsonb
)
returns bigint
language plpgsql
volatile
security definer -- reads the project URL and service key secrets, which only the owner may read
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_url text;
  v_key text;
  v_request bigint;
  -- net.* is referenced through this variable: pg_net may not exist where this is linted
  v_http_post constant regprocedure := to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)');
begin
  select * into v_settings from monitoring.settings as s where s.id;
  perform monitoring._check_secret(v_settings.project_url_secret, 'settings.project_url_secret', true);
  perform monitoring._check_secret(v_settings.service_key_secret, 'settings.service_key_secret', false);
  if v_http_post is null then
    raise exception using
      errcode = 'undefined_function',
      message = 'pg_net (net.http_post) is not installed, so Edge Functions cannot be called from the database',
      hint = 'enable pg_net (Database -> Extensions) or use monitoring.schedule_jobs(''db'')';
  end if;
  v_url := rtrim(monitoring._get_secret(v_settings.project_url_secret), '/') || '/functions/v1/' || p_function;
  v_key := monitoring._get_secret(v_settings.service_key_secret);
  execute format(
    'select %s(url := $1, body := $2, headers := $3, timeout_milliseconds := $4)', v_http_post::regproc
  )
  into v_request
  using
    v_url,
    coalesce(p_body, '{}'::jsonb),
    jsonb_build_object('Content-Type', 'application/json', 'Authorization', 'Bearer ' || v_key),
    v_settings.http_timeout_ms;
  return v_request;
end
$$;

comment on function monitoring._invoke_edge_function(text, jsonb) is
'Internal: POST to <project_url>/functions/v1/<p_function> with "Authorization: Bearer <service key>" through '
'net.http_post; raises naming any secret that does not resolve. Returns the request id.';

-- ---------------------------------------------------------------------------------------------
-- Running and scheduling jobs
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring.run_job(
  -- evaluate, watchdog, dispatch, refresh-rollups, check-whatsapp-errors, check-whatsapp-errors-edge or retention
  p_job text
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_started timestamptz := clock_timestamp();
  v_result jsonb;
  v_threshold numeric;
  v_message text;
  v_context text;
begin
  if p_job is null or p_job not in (
    'evaluate', 'watchdog', 'dispatch', 'refresh-rollups', 'check-whatsapp-errors', 'check-whatsapp-errors-edge',
    'retention'
  ) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('run_job: unknown job %L', p_job),
      hint = 'see select job, command from monitoring.expected_jobs';
  end if;

  -- an overlapping run of the same job (a slow minute) skips instead of doing the work twice
  if not pg_try_advisory_xact_lock(hashtext('monitoring.run_job'), hashtext(p_job)) then
    return jsonb_build_object('job', p_job, 'skipped', 'another run of this job holds its lock');
  end if;

  begin
    case p_job
      when 'evaluate' then
        v_result := jsonb_build_object('rules', monitoring.evaluate_rules(now()));
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
      when 'watchdog' then
        v_result := jsonb_build_object(
          'rules', monitoring.evaluate_rules(
            now(), array(select r.name from monitoring.alert_rules as r where r.name = 'monitor_stalled')
          )
        );
        v_result := v_result || jsonb_build_object(
          'reconcile', monitoring.reconcile_deliveries(now()),
          'dispatch', monitoring.dispatch_deliveries(now())
        );
      when 'dispatch' then
        v_result := jsonb_build_object('reconcile', monitoring.reconcile_deliveries(now()));
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
      when 'refresh-rollups' then
        v_result := monitoring.refresh_rollups();
        v_result := v_result || jsonb_build_object('statementTexts', monitoring._cache_statement_texts());
      when 'check-whatsapp-errors' then
        select r.threshold into v_threshold from monitoring.alert_rules as r where r.name = 'error_rate_webhook';
        v_result := monitoring.check_error_rate(coalesce(floor(v_threshold)::integer, 50), now());
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
      when 'check-whatsapp-errors-edge' then
        v_result := jsonb_build_object('request_id', monitoring._invoke_edge_function('check-error-rate'));
      else
        v_result := monitoring.run_retention(now());
    end case;
    insert into monitoring.job_runs (job, started_at, finished_at, ok, detail)
    values (p_job, v_started, clock_timestamp(), true, v_result);
    return jsonb_build_object('job', p_job, 'ok', true, 'result', v_result);
  exception when others then
    get stacked diagnostics v_message = message_text, v_context = pg_exception_context;
    insert into monitoring.job_runs (job, started_at, finished_at, ok, error, detail)
    values (p_job, v_started, clock_timestamp(), false, v_message, jsonb_build_object('context', v_context));
    raise warning 'monitoring.run_job(%) failed: %', p_job, v_message;
    return jsonb_build_object('job', p_job, 'ok', false, 'error', v_message);
  end;
end
$$;

comment on function monitoring.run_job(text) is
'Run one monitoring job under a per-job advisory lock (an overlapping run skips) and log it in job_runs; every cron '
'command is select monitoring.run_job(''<job>'').';

create or replace function monitoring._cron_last_run(
  -- cron.job.jobname
  p_jobname text
)
returns table (
  scheduled boolean, status text, return_message text, end_time timestamptz, last_success_at timestamptz
)
language plpgsql
stable
security definer -- reads cron.job and cron.job_run_details, which service_role cannot
set search_path = ''
as $$
declare
  -- cron.* is referenced through these variables: pg_cron may not exist where this is linted
  v_run_details constant regclass := to_regclass('cron.job_run_details');
  v_jobs constant regclass := to_regclass('cron.job');
  v_rows integer;
begin
  if v_run_details is null or v_jobs is null then
    return;
  end if;
  execute format(
    'select true, d.status::text, d.return_message::text, d.end_time, '
    || '(select max(s.end_time) from %1$s as s where s.jobid = j.jobid and s.status = ''succeeded'') '
    || 'from %2$s as j left join lateral ('
    || '  select x.status, x.return_message, x.end_time from %1$s as x where x.jobid = j.jobid '
    || '  order by x.runid desc limit 1'
    || ') as d on true '
    || 'where j.jobname = $1 order by j.jobid desc limit 1',
    v_run_details, v_jobs
  )
  into scheduled, status, return_message, end_time, last_success_at
  using p_jobname;
  get diagnostics v_rows = row_count;
  if v_rows = 0 then
    scheduled := false;
  end if;
  return next;
end
$$;

comment on function monitoring._cron_last_run(text) is
'Internal: whether a job is in cron.job, its last pg_cron run (status, message, end) and last success, from '
'cron.job_run_details; no row without pg_cron.';

create or replace function monitoring.schedule_jobs(
  -- db: every check runs in SQL; edge: check-whatsapp-errors calls the check-error-rate Edge Function
  p_mode text default 'db'
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_job record;
  v_schedule text;
  v_command text;
  v_rows integer;
  v_created text[] := '{}'::text [];
  v_updated text[] := '{}'::text [];
  v_unchanged text[] := '{}'::text [];
  v_removed text[] := '{}'::text [];
  -- cron.* is referenced through these variables: pg_cron may not exist where this is linted
  v_jobs constant regclass := to_regclass('cron.job');
  v_cron constant regnamespace := to_regnamespace('cron');
begin
  if p_mode is null or p_mode not in ('db', 'edge') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('schedule_jobs: p_mode must be db or edge (got %L)', p_mode),
      hint = 'use monitoring.schedule_jobs() or monitoring.schedule_jobs(''edge'')';
  end if;
  if v_jobs is null then
    raise exception using
      errcode = 'undefined_table',
      message = 'schedule_jobs: pg_cron is not installed in this database',
      hint = 'enable pg_cron (Supabase: Database -> Extensions -> pg_cron) in the database named by '
        || 'cron.database_name, '
        || 'then run select monitoring.schedule_jobs();';
  end if;

  select * into v_settings from monitoring.settings as s where s.id;
  if p_mode = 'edge' then
    -- Supabase's own recipe once read a secret it never created and sent an empty key: check first
    perform monitoring._check_secret(v_settings.project_url_secret, 'settings.project_url_secret', true);
    perform monitoring._check_secret(v_settings.service_key_secret, 'settings.service_key_secret', false);
    if to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is null then
      raise exception using
        errcode = 'undefined_function',
        message = 'schedule_jobs(''edge''): pg_net (net.http_post) is not installed',
        hint = 'enable pg_net (Database -> Extensions) or use monitoring.schedule_jobs(''db'')';
    end if;
  end if;

  perform pg_advisory_xact_lock(hashtext('monitoring.schedule_jobs'));
  update monitoring.settings as s set job_mode = p_mode where s.id;

  for v_job in select * from monitoring.expected_jobs as e order by e.name loop
    execute format(
      'select j.schedule::text, j.command::text from %s as j where j.jobname = $1 and j.username = current_user', v_jobs
    )
    into v_schedule, v_command
    using v_job.name;
    get diagnostics v_rows = row_count;
    if v_rows = 0 then
      execute format('select %s.schedule($1, $2, $3)', v_cron) using v_job.name, v_job.schedule, v_job.command;
      update monitoring.jobs as j set scheduled_at = now() where j.name = v_job.name;
      v_created := v_created || v_job.name;
    elsif v_schedule is distinct from v_job.schedule or v_command is distinct from v_job.command then
      execute format('select %s.schedule($1, $2, $3)', v_cron) using v_job.name, v_job.schedule, v_job.command;
      update monitoring.jobs as j set scheduled_at = coalesce(j.scheduled_at, now()) where j.name = v_job.name;
      v_updated := v_updated || v_job.name;
    else
      update monitoring.jobs as j set scheduled_at = coalesce(j.scheduled_at, now()) where j.name = v_job.name;
      v_unchanged := v_unchanged || v_job.name;
    end if;
  end loop;

  -- disabled jobs must not stay scheduled
  for v_job in select j.name from monitoring.jobs as j where not j.enabled order by j.name loop
    execute format('select 1 from %s as j where j.jobname = $1 and j.username = current_user', v_jobs)
    using v_job.name;
    get diagnostics v_rows = row_count;
    if v_rows > 0 then
      execute format('select %s.unschedule($1)', v_cron) using v_job.name;
      v_removed := v_removed || v_job.name;
    end if;
  end loop;

  return jsonb_build_object(
    'mode', p_mode,
    'scheduled', to_jsonb(v_created),
    'updated', to_jsonb(v_updated),
    'unchanged', to_jsonb(v_unchanged),
    'removed', to_jsonb(v_removed)
  );
end
$$;

comment on function monitoring.schedule_jobs(text) is
'Make cron.job match monitoring.expected_jobs (idempotent: cron.schedule upserts by name; disabled jobs are '
'removed). p_mode edge first checks that the project URL and service key secrets resolve.';

create or replace function monitoring.unschedule_jobs()
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_name text;
  v_rows integer;
  v_removed text[] := '{}'::text [];
  -- cron.* is referenced through these variables: pg_cron may not exist where this is linted
  v_jobs constant regclass := to_regclass('cron.job');
  v_cron constant regnamespace := to_regnamespace('cron');
begin
  if v_jobs is null then
    return jsonb_build_object('removed', '[]'::jsonb, 'skipped', 'pg_cron is not installed');
  end if;
  perform pg_advisory_xact_lock(hashtext('monitoring.schedule_jobs'));
  for v_name in select j.name from monitoring.jobs as j order by j.name loop
    -- cron.unschedule raises when the job does not exist: look first
    execute format('select 1 from %s as j where j.jobname = $1 and j.username = current_user', v_jobs)
    using v_name;
    get diagnostics v_rows = row_count;
    if v_rows > 0 then
      execute format('select %s.unschedule($1)', v_cron) using v_name;
      v_removed := v_removed || v_name;
    end if;
  end loop;
  return jsonb_build_object('removed', to_jsonb(v_removed));
end
$$;

comment on function monitoring.unschedule_jobs() is
'Remove our jobs from cron.job (idempotent). The dead man''s switch keeps expecting them, so monitor_stalled fires '
'if checks stay off.';

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------
alter table monitoring.jobs enable row level security;

alter table monitoring.job_runs enable row level security;

create or replace trigger jobs_validate_nulls
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_not_null();

-- scheduled_at may be reset to null (tests and operators do), never set to infinity: the dead man's
-- switch counts from it
create or replace trigger jobs_finite_times
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_finite_times('scheduled_at');
