-- Exposure (issue 17): no function or procedure with a mutable search_path, and health() says
-- which pg_net delivers.
--
-- 1. The nightly retention job was the procedure monitoring.run_retention_job(): it committed
--    per batch, and Postgres forbids transaction control in a routine that has a SET clause, so it
--    ran with the caller's search_path (Supabase's Security Advisor: function_search_path_mutable).
--    The job's pg_cron command is now an anonymous block that calls two functions, each with
--    `set search_path = ''`, and commits between the calls:
--      monitoring._retention_start()    validate, take the job's lock, plan the run (no deletes)
--      monitoring._retention_step(s)    one batch of deletes, or the full rollup refresh, or the
--                                       job_runs entry; returns the next state, null when done
--    Each batch still commits on its own (short locks), the refresh runs in its own transaction,
--    and an overlapping run still skips. The procedure is dropped.
-- 2. health()'s delivery section names the pg_net in use: the extension and its version, or
--    pydeploy's stand-in (local engine only), or null when there is none.

-- ---------------------------------------------------------------------------------------------
-- Retention: a function per step, the commits in the job's command
-- ---------------------------------------------------------------------------------------------

create or replace function monitoring._retention_start(
  -- now (null: the time of the call)
  p_now timestamptz default null
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_policies jsonb;
begin
  -- 'infinity' would make every row older than its cutoff, and each batch commits
  if not isfinite(v_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('_retention_start: p_now must be a finite time (got %s)', v_now),
      hint = 'leave p_now out: it defaults to now()';
  end if;
  -- the key run_job('retention') takes: a manual run_job and the scheduled job never overlap.
  -- A session lock: it spans the commits between the steps; _retention_step releases it.
  if not pg_catalog.pg_try_advisory_lock(
    pg_catalog.hashtext('monitoring.run_job'), pg_catalog.hashtext('retention')
  ) then
    raise notice 'monitoring-retention: another retention run holds its lock; skipped';
    return null;
  end if;
  select coalesce(jsonb_agg(jsonb_build_object(
    'target', p.target,
    'cutoff', v_now - p.keep_for,
    'batchSize', p.batch_size,
    'maxBatches', p.max_batches
  ) order by p.target), '[]'::jsonb)
  into v_policies
  from monitoring.retention_policies as p
  where p.enabled;
  return jsonb_build_object(
    'now', v_now,
    'started', pg_catalog.clock_timestamp(),
    'phase', 'delete',
    'policies', v_policies,
    'policy', 0,
    'batches', 0,
    'rows', 0,
    'deleted', '{}'::jsonb,
    'longestBatchMs', 0
  );
end
$$;
comment on function monitoring._retention_start(timestamptz) is
'First step of the retention job (see monitoring.expected_jobs): refuse an infinite p_now, take the job''s session '
'lock (null when another run holds it: skip) and return the plan, the state _retention_step() takes.';

create or replace function monitoring._retention_step(
  -- the state returned by _retention_start() or by the previous step
  p_state jsonb
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_state jsonb := p_state;
  v_policy jsonb;
  v_rows integer;
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_ms numeric;
  v_refresh jsonb;
  v_message text;
  v_context text;
begin
  if p_state is null or jsonb_typeof(p_state) <> 'object' or p_state ->> 'phase' is null then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = '_retention_step: p_state must be the state returned by _retention_start() or the previous step',
      hint = 'run the job''s command: select command from monitoring.expected_jobs where job = ''retention''';
  end if;

  if v_state ->> 'phase' = 'delete' then
    v_policy := v_state -> 'policies' -> (v_state ->> 'policy')::integer;
    if v_policy is null then
      return jsonb_set(v_state, '{phase}', '"refresh"');
    end if;
    begin
      v_rows := monitoring._retention_batch(
        v_policy ->> 'target', (v_policy ->> 'cutoff')::timestamptz, (v_policy ->> 'batchSize')::integer
      );
    exception when others then
      get stacked diagnostics v_message = message_text, v_context = pg_exception_context;
      return v_state || jsonb_build_object('phase', 'log', 'error', v_message, 'context', v_context);
    end;
    v_ms := extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000;
    v_state := v_state || jsonb_build_object(
      'batches', (v_state ->> 'batches')::integer + 1,
      'rows', (v_state ->> 'rows')::bigint + v_rows,
      'longestBatchMs', greatest((v_state ->> 'longestBatchMs')::numeric, round(v_ms, 1))
    );
    if v_rows < (v_policy ->> 'batchSize')::integer
      or (v_state ->> 'batches')::integer >= (v_policy ->> 'maxBatches')::integer then
      v_state := v_state || jsonb_build_object(
        'deleted', (v_state -> 'deleted') || jsonb_build_object(v_policy ->> 'target', (v_state ->> 'rows')::bigint),
        'policy', (v_state ->> 'policy')::integer + 1,
        'batches', 0,
        'rows', 0
      );
    end if;
    return v_state;
  end if;

  if v_state ->> 'phase' = 'refresh' then
    -- rollups must forget deleted error logs; this is also the nightly full refresh, in a
    -- transaction of its own that only reads the app tables
    begin
      v_refresh := monitoring.refresh_rollups(p_now => (v_state ->> 'now')::timestamptz, p_full => true);
    exception when others then
      get stacked diagnostics v_message = message_text, v_context = pg_exception_context;
    end;
    return v_state || jsonb_build_object(
      'phase', 'log',
      'refresh', v_refresh,
      'refreshMs', round(extract(epoch from pg_catalog.clock_timestamp() - v_started)::numeric * 1000, 1),
      'error', v_message,
      'context', v_context
    );
  end if;

  -- phase log: the run's entry in job_runs, then the lock is released
  insert into monitoring.job_runs (job, started_at, finished_at, ok, error, detail)
  values (
    'retention', (v_state ->> 'started')::timestamptz, pg_catalog.clock_timestamp(), v_state ->> 'error' is null,
    v_state ->> 'error',
    jsonb_build_object(
      'deleted', v_state -> 'deleted',
      'refresh', v_state -> 'refresh',
      'refreshMs', v_state -> 'refreshMs',
      'longestBatchMs', v_state -> 'longestBatchMs',
      'context', v_state -> 'context'
    )
  );
  perform pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('monitoring.run_job'), pg_catalog.hashtext('retention'));
  if v_state ->> 'error' is not null then
    raise warning 'monitoring-retention failed: %', v_state ->> 'error';
  end if;
  return null;
end
$$;
comment on function monitoring._retention_step(jsonb) is
'One step of the retention job: one batch of deletes (phase delete), the full rollup refresh (phase refresh) or '
'the run''s job_runs entry and the release of its lock (phase log, returns null). The job commits after each step.';

-- the retention job's command: each step is committed on its own by the anonymous block (a DO
-- block may commit when run outside a transaction block, as pg_cron runs it)
create or replace function monitoring._retention_command()
returns text
language sql
immutable
set search_path = ''
as $$
  select 'do $retention$ declare s jsonb; begin commit; s := monitoring._retention_start(); '
    || 'while s is not null loop commit; s := monitoring._retention_step(s); end loop; end $retention$';
$$;
comment on function monitoring._retention_command() is
'The pg_cron command of monitoring-retention: _retention_start(), then _retention_step() until it returns null, '
'committing before each step (one transaction per batch).';

create or replace view monitoring.expected_jobs
with (security_invoker = true)
as
select
  j.name,
  j.schedule,
  case
    when j.job = 'retention' then monitoring._retention_command()
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

update monitoring.jobs
set
  description
  = 'Delete expired rows in batches (monitoring.retention_policies), each batch committed on its own, then '
  || 'refresh_rollups(p_full => true): _retention_start(), then _retention_step() until done.'
where name = 'monitoring-retention' and description like 'Delete expired rows in batches%';

drop procedure if exists monitoring.run_retention_job(timestamptz);

-- a project that already scheduled the jobs gets the new retention command now, not at the next
-- schedule_jobs(); without pg_cron (or with edge secrets gone) it is left for the next call
do $$
begin
  if to_regclass('cron.job') is not null
    and exists (select 1 from monitoring.jobs as j where j.scheduled_at is not null) then
    perform monitoring.schedule_jobs((select s.job_mode from monitoring.settings as s where s.id));
  end if;
exception when others then
  raise notice 'retention job not rescheduled (%); run select monitoring.schedule_jobs()', sqlerrm;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- health(): which pg_net delivers
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

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------

revoke all on function monitoring._retention_start(timestamptz) from public, anon, authenticated;
revoke all on function monitoring._retention_step(jsonb) from public, anon, authenticated;
revoke all on function monitoring._retention_command() from public, anon, authenticated;
revoke all on function monitoring._pg_net_implementation() from public, anon, authenticated;
revoke all on function monitoring._health_compose(timestamptz) from public, anon, authenticated;
revoke all on monitoring.expected_jobs from public, anon, authenticated;
grant execute on function monitoring._retention_start(timestamptz) to service_role, postgres;
grant execute on function monitoring._retention_step(jsonb) to service_role, postgres;
grant execute on function monitoring._retention_command() to service_role, postgres;
grant execute on function monitoring._pg_net_implementation() to service_role, postgres;
grant execute on function monitoring._health_compose(timestamptz) to service_role, postgres;
grant select on monitoring.expected_jobs to service_role;
