-- The pg_cron jobs, their run log, the spec's check_error_rate and the Edge Function mode.
--
-- monitoring.jobs is the desired schedule; monitoring.schedule_jobs() makes cron.job match it
-- (cron.schedule upserts by name) and monitoring.unschedule_jobs() removes our jobs. Every cron
-- command is one line, `select monitoring.run_job('<job>')`, which takes a per-job advisory lock
-- (an overlapping run skips), runs one function and writes monitoring.job_runs. The dead man's
-- switch (rule monitor_stalled) reads job_runs and cron.job_run_details.
--
-- Jobs (GMT, minute granularity, at most 4 running at once):
--   monitoring-evaluate         * * * * *    refresh the rollups (once: the rules and the views share
--                                            it), rules due by their own schedule, the slow-query
--                                            snapshot, then dispatch, then the outbound heartbeat
--   monitoring-watchdog         * * * * *    monitor_stalled only, then reconcile and dispatch
--   monitoring-dispatch         * * * * *    reconcile responses, re-send firing alerts to Alertmanager,
--                                            send due deliveries and retries
--   check-whatsapp-errors       0 * * * *    the spec's hourly check (SQL, or the Edge Function)
--   monitoring-retention        30 3 * * *   batched deletes, each committed, then refresh_rollups()
--                                            (a `do` block: _retention_start(), then _retention_step())
--   monitoring-digest-daily     5 8 * * *    the digests (92_digests.sql), also -weekly (10 8 * * 1) and
--                                            -monthly (15 8 1 * *)

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
      'retention', 'digest-daily', 'digest-weekly', 'digest-monthly'
    )
    or (new.edge_job is not null and new.edge_job not in ('check-whatsapp-errors-edge')) then
    raise exception using
      errcode = 'check_violation',
      message = format('jobs.job %L (edge_job %L) is not a job monitoring.run_job knows', new.job, new.edge_job),
      hint = 'use evaluate, watchdog, dispatch, refresh-rollups, check-whatsapp-errors, retention or '
        || 'digest-daily, digest-weekly, digest-monthly';
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
  'Refresh the rollups behind the views (monitoring.refresh_rollups(), once for the rules and the views), evaluate '
  || 'the alert rules due by their own schedule, snapshot the slow statements, then send the notifications queued.'
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
  'check-whatsapp-errors', 'check-whatsapp-errors', 'check-whatsapp-errors-edge', '0 * * * *',
  'The spec''s hourly error-rate check: monitoring.check_error_rate() (db mode) or the check-error-rate Edge '
  'Function (edge mode).'
),
(
  'monitoring-retention', 'retention', null, '30 3 * * *',
  'Delete expired rows in batches (monitoring.retention_policies), each batch committed on its own, then '
  || 'refresh_rollups(): monitoring._retention_start(), then _retention_step() until done.'
)
on conflict (name) do nothing;

create or replace view monitoring.expected_jobs
with (security_invoker = true)
as
select
  j.name,
  j.schedule,
  case
    -- each step committed on its own by the anonymous block (a DO block may commit when run
    -- outside a transaction block, as pg_cron runs it); see 90_retention.sql
    when j.job = 'retention'
      then
        'do $retention$ declare s jsonb; begin commit; s := monitoring._retention_start(); '
        || 'while s is not null loop commit; s := monitoring._retention_step(s); end loop; end $retention$'
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
  perform monitoring._refresh_for_evaluation(p_now, p_errors_only => true);
  v_count := monitoring._error_count(p_now, coalesce(v_rule."window", interval '1 hour'));

  if v_rule.name is not null and v_rule.enabled then
    perform pg_advisory_xact_lock(hashtext('monitoring.rule'), hashtext(v_rule.name));
    v_labels := v_rule.labels || jsonb_build_object('alertname', v_rule.name, 'severity', v_rule.severity);
    -- what a transition makes due is told now (silences, inhibition, grouping); without one, the
    -- evaluate job's decision every minute covers repeats and alerts no longer muted
    if monitoring._transition(
      v_rule,
      monitoring._fingerprint(v_labels),
      v_labels,
      v_count,
      format('High WhatsApp error rate: %s errors in last hour (threshold %s)', v_count, check_error_rate.threshold),
      v_count > check_error_rate.threshold,
      p_now
    ) is not null then
      perform monitoring._notify_due(p_now);
    end if;
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
-- Outbound heartbeat (a dead man's switch outside the database, healthchecks.io convention)
-- ---------------------------------------------------------------------------------------------
-- When Postgres, pg_cron or pg_net stops, nothing inside the database can say so. After each
-- successful monitoring cycle (run_job('evaluate')) pg_net pings a URL outside: the URL itself
-- while health() is healthy or degraded, <URL>/fail while it is unhealthy. The outside service
-- (healthchecks.io, Cronitor, Alertmanager's Watchdog pattern...) alerts when the pings stop.
create table if not exists monitoring.heartbeat (
  id boolean primary key default true,
  enabled boolean not null default false,
  url_secret text not null default 'heartbeat_url',
  ping_interval interval not null default interval '1 minute',
  last_ping_at timestamptz,
  last_ping_kind text,
  last_health text,
  last_request_id bigint,
  last_error text,
  updated_at timestamptz not null default now(),
  constraint heartbeat_single_row check (id),
  constraint heartbeat_last_ping_kind_check check (last_ping_kind in ('success', 'fail'))
);

comment on table monitoring.heartbeat is
'The outbound heartbeat, one row: whether it is on, the name of the secret holding its URL, how often it pings, '
'and its last ping (set it with monitoring.set_heartbeat()).';

comment on column monitoring.heartbeat.url_secret is
'Name of the secret holding the ping URL, such as https://hc-ping.com/<uuid>; <URL>/fail is pinged when unhealthy.';

comment on column monitoring.heartbeat.ping_interval is
'Least time between two pings: whole minutes, 1 minute to 24 hours (the monitoring cycle runs once a minute). Set '
'the outside check''s period to it and a grace of at least 1 minute.';

comment on column monitoring.heartbeat.last_ping_kind is 'success (the URL) or fail (<URL>/fail, health() unhealthy).';

comment on column monitoring.heartbeat.last_request_id is 'net.http_post request id of the last ping.';

comment on column monitoring.heartbeat.last_error is 'Why the last ping could not be sent, if it could not.';

insert into monitoring.heartbeat (id) values (true) on conflict (id) do nothing;

create or replace function monitoring._validate_heartbeat()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id is distinct from true then
    raise exception using
      errcode = 'check_violation',
      message = 'heartbeat.id must be true: the table holds exactly one row',
      hint = 'use monitoring.set_heartbeat(url, interval)';
  end if;
  if new.ping_interval is null
    or new.ping_interval not between interval '1 minute' and interval '24 hours'
    or extract(epoch from new.ping_interval)::numeric % 60 <> 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('heartbeat.ping_interval must be whole minutes from 1 minute to 24 hours (got %s): the '
        || 'monitoring cycle that pings runs once a minute, so a shorter or fractional interval cannot run',
        coalesce(new.ping_interval::text, 'null')),
      hint = 'use interval ''1 minute'' (or ''5 minutes''), and the same period in the outside check';
  end if;
  if new.url_secret is null or new.url_secret !~ '^[A-Za-z0-9_.:-]{1,200}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('heartbeat.url_secret %L must name a secret (1-200 letters, digits or _ . : -)',
        left(new.url_secret, 200)),
      hint = 'use monitoring.set_heartbeat(url), which stores the URL as secret heartbeat_url';
  end if;
  if new.enabled then
    perform monitoring._check_secret(new.url_secret, 'heartbeat.url_secret', true);
  end if;
  new.updated_at := now();
  return new;
end
$$;

comment on function monitoring._validate_heartbeat() is
'Trigger: validate the heartbeat row (interval whole minutes, 1 minute to 24 hours; URL secret resolves to an https '
'URL), raising a check_violation naming the field.';

create or replace trigger heartbeat_validate
before insert or update on monitoring.heartbeat
for each row execute function monitoring._validate_heartbeat();

create or replace function monitoring.set_heartbeat(
  -- the ping URL, such as https://hc-ping.com/<uuid> (stored as secret heartbeat_url); null turns it off
  p_url text,
  -- least time between two pings (whole minutes, 1 minute to 24 hours)
  p_interval interval default interval '1 minute'
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
begin
  if p_url is null then
    update monitoring.heartbeat as h set enabled = false where h.id;
    return jsonb_build_object('enabled', false);
  end if;
  perform monitoring._validate_url(p_url, 'heartbeat.url');
  if p_url ~ '/fail/?$' then
    raise exception using
      errcode = 'check_violation',
      message = 'heartbeat.url must be the success URL, not its /fail variant',
      hint = 'give https://hc-ping.com/<uuid>; /fail is appended while health() is unhealthy';
  end if;
  -- validate the interval before the secret is written, so a bad call changes nothing
  update monitoring.heartbeat as h set ping_interval = p_interval where h.id;
  perform monitoring.set_secret('heartbeat_url', p_url, 'Outbound heartbeat URL (healthchecks.io convention)');
  update monitoring.heartbeat as h
  set enabled = true, url_secret = 'heartbeat_url', last_error = null
  where h.id;
  return jsonb_build_object('enabled', true, 'interval', p_interval::text);
end
$$;

comment on function monitoring.set_heartbeat(text, interval) is
'Turn the outbound heartbeat on: after each successful monitoring cycle, at most once per p_interval, pg_net pings '
'p_url (stored as secret heartbeat_url), or p_url/fail while health() is unhealthy. p_url null turns it off.';

create or replace function monitoring._heartbeat_ping(
  -- now
  p_now timestamptz default now()
)
returns jsonb
language plpgsql
volatile
security definer -- reads the heartbeat URL secret, which only the owner may read
set search_path = ''
as $$
declare
  v_beat monitoring.heartbeat;
  v_health text;
  v_url text;
  v_kind text;
  v_request bigint;
  -- net.* is referenced through this variable: pg_net may not exist where this is linted
  v_http_post constant regprocedure := to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)');
begin
  select * into v_beat from monitoring.heartbeat as h where h.id for update;
  if not found or not v_beat.enabled then
    return jsonb_build_object('skipped', 'heartbeat is off');
  end if;
  -- 10 s of slack: the cycle starts each minute, a few hundred milliseconds late or early
  if v_beat.last_ping_at is not null and p_now < v_beat.last_ping_at + v_beat.ping_interval - interval '10 seconds' then
    return jsonb_build_object('skipped', 'not due');
  end if;
  begin
    if v_http_post is null then
      raise exception 'pg_net (net.http_post) is not installed';
    end if;
    v_url := monitoring._get_secret(v_beat.url_secret);
    if v_url is null then
      raise exception 'heartbeat.url_secret: secret % does not resolve', v_beat.url_secret;
    end if;
    v_health := monitoring.health(p_now) ->> 'status';
    v_kind := case when v_health = 'unhealthy' then 'fail' else 'success' end;
    if v_kind = 'fail' then
      v_url := rtrim(v_url, '/') || '/fail';
    end if;
    execute format(
      'select %s(url := $1, body := $2, headers := $3, timeout_milliseconds := $4)', v_http_post::regproc
    )
    into v_request
    using
      v_url,
      jsonb_build_object('status', v_health, 'at', monitoring._iso(p_now)),
      jsonb_build_object('Content-Type', 'application/json'),
      (select s.http_timeout_ms from monitoring.settings as s where s.id);
    update monitoring.heartbeat as h
    set
      last_ping_at = p_now, last_ping_kind = v_kind, last_health = v_health, last_request_id = v_request,
      last_error = null
    where h.id;
    return jsonb_build_object('ping', v_kind, 'health', v_health, 'request_id', v_request);
  exception when others then
    update monitoring.heartbeat as h set last_error = left(sqlerrm, 500) where h.id;
    return jsonb_build_object('error', sqlerrm);
  end;
end
$$;

comment on function monitoring._heartbeat_ping(timestamptz) is
'Internal: ping the heartbeat URL with net.http_post when it is on and due (the URL, or URL/fail while health() is '
'unhealthy); run by job monitoring-evaluate after a successful cycle. A failure is kept in heartbeat.last_error.';

-- ---------------------------------------------------------------------------------------------
-- Running and scheduling jobs
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring.run_job(
  -- evaluate, watchdog, dispatch, refresh-rollups, check-whatsapp-errors, check-whatsapp-errors-edge, retention
  -- or digest-daily, digest-weekly, digest-monthly
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
    'retention', 'digest-daily', 'digest-weekly', 'digest-monthly'
  ) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('run_job: unknown job %L', p_job),
      hint = 'see select job, command from monitoring.expected_jobs';
  end if;

  -- The job's commit does not wait for its WAL to reach the disk (set local: this transaction
  -- only). A crash may lose the job commits of its last 3 x wal_writer_delay (0.6 s by default),
  -- never part of one: every job recomputes from the tables on its next run, and a lost delivery
  -- record means a webhook sent twice, not lost. It saves a disk flush per job (seven at the top of
  -- an hour), and those flushes no longer queue with the app's own commits (docs/reliability.md).
  set local synchronous_commit = off;

  -- an overlapping run of the same job (a slow minute) skips instead of doing the work twice
  if not pg_try_advisory_xact_lock(hashtext('monitoring.run_job'), hashtext(p_job)) then
    return jsonb_build_object('job', p_job, 'skipped', 'another run of this job holds its lock');
  end if;

  begin
    case p_job
      when 'evaluate' then
        -- evaluate_rules refreshes the rollups before its rules read them; the views share that
        -- refresh (one a minute), and get their own when no enabled rule reads a window
        v_result := jsonb_build_object('rules', monitoring.evaluate_rules(now()));
        if not exists (select from monitoring.rollup_state as s where s.id and s.refreshed_for = now()) then
          v_result := v_result || jsonb_build_object('refresh', monitoring.refresh_rollups(now()));
        end if;
        -- every fifth minute (null: the snapshot was kept)
        v_result := v_result || jsonb_build_object(
          'slowStatements', monitoring._snapshot_slow_queries(interval '4 minutes 30 seconds')
        );
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
        -- the cycle succeeded: tell the outside world (monitoring.heartbeat)
        v_result := v_result || jsonb_build_object('heartbeat', monitoring._heartbeat_ping(now()));
      when 'watchdog' then
        -- the evaluate job decides the notifications every minute; while it has not succeeded for
        -- two minutes the watchdog decides them too (repeats, group waits, its own alert)
        v_result := jsonb_build_object(
          'rules', monitoring.evaluate_rules(
            now(), array(select r.name from monitoring.alert_rules as r where r.name = 'monitor_stalled'),
            p_decide => false
          )
        );
        v_result := v_result || jsonb_build_object(
          'reconcile', monitoring.reconcile_deliveries(now()),
          'dispatch', monitoring.dispatch_deliveries(now())
        );
      when 'dispatch' then
        v_result := jsonb_build_object('reconcile', monitoring.reconcile_deliveries(now()));
        v_result := v_result || jsonb_build_object('resend', monitoring.resend_alertmanager(now()));
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
      when 'refresh-rollups' then
        v_result := monitoring.refresh_rollups();
        v_result := v_result || jsonb_build_object('slowStatements', monitoring._snapshot_slow_queries());
      when 'check-whatsapp-errors' then
        select r.threshold into v_threshold from monitoring.alert_rules as r where r.name = 'error_rate_webhook';
        v_result := monitoring.check_error_rate(coalesce(floor(v_threshold)::integer, 50), now());
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
      when 'check-whatsapp-errors-edge' then
        v_result := jsonb_build_object('request_id', monitoring._invoke_edge_function('check-error-rate'));
      -- the digests (92_digests.sql): each period once, then sent like the alerts
      when 'digest-daily', 'digest-weekly', 'digest-monthly' then
        v_result := monitoring._run_digest(substr(p_job, 8), now());
        v_result := v_result || jsonb_build_object('dispatch', monitoring.dispatch_deliveries(now()));
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

alter table monitoring.heartbeat enable row level security;

create or replace trigger jobs_validate_nulls
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_not_null();

-- scheduled_at may be reset to null (tests and operators do), never set to infinity: the dead man's
-- switch counts from it
create or replace trigger jobs_finite_times
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_finite_times('scheduled_at');
