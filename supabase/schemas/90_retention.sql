-- Retention: how long each kind of row is kept (the spec's "clean up old logs (> 30 days)"), the
-- batched deletes, and the nightly job that runs them, each batch committed on its own so no
-- app table is locked for long, followed by a regular rollup refresh.

-- ---------------------------------------------------------------------------------------------
-- Retention settings
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.retention_policies (
  target text primary key,
  keep_for interval not null,
  batch_size integer not null default 10000,
  max_batches integer not null default 100,
  enabled boolean not null default true,
  description text
);

comment on table monitoring.retention_policies is
'How long monitoring.run_retention() keeps rows of each table, deleted in batches of batch_size (at most '
'max_batches per run).';

comment on column monitoring.retention_policies.target is
'whatsapp_error_logs, alert_history, deliveries (delivered and dead rows only), cron_job_run_details, job_runs, '
'rule_errors, app_logs (per level, see monitoring.log_retention) or ingest_batches.';

comment on column monitoring.retention_policies.keep_for is 'Rows older than this are deleted.';

comment on column monitoring.retention_policies.max_batches is
'Batches per run at most; a larger backlog continues at the next run.';

-- The limits of retention_policies (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, min_value, max_value, hint) values
(
  'retention_policies', 'keep_for', '1 day', '3660 days',
  'use an interval such as ''30 days''; to keep rows forever set enabled = false'
),
('retention_policies', 'batch_size', '100', '100000', 'use 10000'),
('retention_policies', 'max_batches', '1', '10000', 'use 100')
on conflict (table_name, column_name) do nothing;

create or replace function monitoring._validate_retention_policy()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.target is null or new.target not in (
    'whatsapp_error_logs', 'alert_history', 'deliveries', 'cron_job_run_details', 'job_runs', 'rule_errors',
    'app_logs', 'ingest_batches'
  ) then
    raise exception using
      errcode = 'check_violation',
      message = format('retention_policies.target %L is not a table run_retention knows', left(new.target, 200)),
      hint = 'use whatsapp_error_logs, alert_history, deliveries, cron_job_run_details, job_runs, rule_errors, '
      || 'app_logs or ingest_batches';
  end if;
  return new;
end
$$;

comment on function monitoring._validate_retention_policy() is
'Trigger: refuse a retention policy for a table run_retention does not know, naming the field (keep_for, '
'batch_size and max_batches are limits in monitoring._limits).';

create or replace trigger retention_policies_limits
before insert or update on monitoring.retention_policies
for each row execute function monitoring._validate_limits();

create or replace trigger retention_policies_validate
before insert or update on monitoring.retention_policies
for each row execute function monitoring._validate_retention_policy();

insert into monitoring.retention_policies (target, keep_for, description) values
('whatsapp_error_logs', interval '30 days', 'The spec: clean up database logs older than 30 days.'),
('alert_history', interval '90 days', 'Alert state transitions.'),
('deliveries', interval '30 days', 'Delivered and dead-lettered notifications (queued ones are never deleted).'),
('cron_job_run_details', interval '7 days', 'pg_cron never trims cron.job_run_details itself.'),
('job_runs', interval '30 days', 'Our own job run log.'),
('rule_errors', interval '30 days', 'Failed rule evaluations.'),
('app_logs', interval '30 days', 'The app''s log lines: each level as monitoring.log_retention says, at most this.'),
('ingest_batches', interval '2 days', 'Batch ids monitoring.ingest() answers retries from.')
on conflict (target) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring.run_retention(
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
  v_policy monitoring.retention_policies;
  v_rows integer;
  v_total bigint;
  v_batches integer;
  v_deleted jsonb := '{}'::jsonb;
  v_refresh jsonb;
begin
  if p_now is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('run_retention: p_now must be a finite time (got %s)', coalesce(p_now::text, 'null')),
      hint = 'leave p_now out: it defaults to now()';
  end if;
  for v_policy in select * from monitoring.retention_policies as p where p.enabled order by p.target loop
    v_total := 0;
    v_batches := 0;
    loop
      v_rows := monitoring._retention_batch(v_policy.target, p_now - v_policy.keep_for, v_policy.batch_size);
      v_total := v_total + v_rows;
      v_batches := v_batches + 1;
      exit when v_rows < v_policy.batch_size or v_batches >= v_policy.max_batches;
    end loop;
    v_deleted := v_deleted || jsonb_build_object(v_policy.target, v_total);
  end loop;

  -- a regular refresh: the app-table triggers skip rows past the 30-day horizon error_trends reads,
  -- so nothing deleted here was in a view, and no full refresh (a long read of the app tables) is
  -- needed
  v_refresh := monitoring.refresh_rollups(p_now => p_now);

  return jsonb_build_object('deleted', v_deleted, 'refresh', v_refresh);
end
$$;

comment on function monitoring.run_retention(timestamptz) is
'One-shot retention in ONE transaction: delete rows older than each policy''s keep_for in batches, then a '
'regular refresh_rollups(); returns rows deleted per target. The scheduled job (monitoring.expected_jobs) '
'commits per batch: _retention_start(), then _retention_step() until done.';

alter table monitoring.retention_policies enable row level security;

create or replace trigger retention_policies_validate_nulls
before insert or update on monitoring.retention_policies
for each row execute function monitoring._validate_not_null();

-- Retention that commits per batch.
--
-- monitoring.run_retention() is a function, so everything it does is one transaction: at 10 M rows
-- that held row locks on whatsapp_error_logs for ~12 s and kept back vacuum's horizon as long. The
-- scheduled job (below) commits after every batch (each holds its locks for tens of milliseconds),
-- then runs a regular refresh_rollups() in a transaction of its own, and logs the run in job_runs
-- like run_job does. run_retention() stays for a one-shot manual run in one transaction.

-- one batch of one retention policy: the shared body of run_retention() and _retention_step()
create or replace function monitoring._retention_batch(
  -- retention_policies.target
  p_target text,
  -- delete rows older than this
  p_cutoff timestamptz,
  -- at most this many rows
  p_limit integer
)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_rows integer;
  -- cron.* is referenced through this variable: pg_cron may not exist where this is linted
  v_run_details regclass;
begin
  case p_target
    when 'whatsapp_error_logs' then
      delete from public.whatsapp_error_logs as e
      where e.ctid = any(array(
        select x.ctid from public.whatsapp_error_logs as x where x.created_at < p_cutoff limit p_limit
      ));
    when 'alert_history' then
      delete from monitoring.alert_history as h
      where h.id = any(array(
        select x.id from monitoring.alert_history as x where x.occurred_at < p_cutoff limit p_limit
      ));
    when 'deliveries' then
      delete from monitoring.deliveries as d
      where d.id = any(array(
        select x.id from monitoring.deliveries as x
        where x.status in ('delivered', 'dead') and coalesce(x.delivered_at, x.dead_at) < p_cutoff
        limit p_limit
      ));
    when 'job_runs' then
      delete from monitoring.job_runs as r
      where r.id = any(array(
        select x.id from monitoring.job_runs as x where x.started_at < p_cutoff limit p_limit
      ));
    when 'rule_errors' then
      delete from monitoring.rule_errors as r
      where r.id = any(array(
        select x.id from monitoring.rule_errors as x where x.occurred_at < p_cutoff limit p_limit
      ));
    when 'app_logs' then
      return monitoring._app_logs_retention_batch(p_cutoff, p_limit);
    when 'ingest_batches' then
      return monitoring._ingest_batches_retention_batch(p_cutoff, p_limit);
    when 'cron_job_run_details' then
      -- no pg_cron in this database, or a caller (service_role) who may not use schema cron:
      -- pg_cron's own history is left alone instead of failing the whole run (to_regclass
      -- itself raises on a schema without usage, hence the order)
      if not exists (select 1 from pg_catalog.pg_namespace as n where n.nspname = 'cron')
        or not pg_catalog.has_schema_privilege('cron', 'usage') then
        return 0;
      end if;
      v_run_details := pg_catalog.to_regclass('cron.job_run_details');
      if v_run_details is null or not pg_catalog.has_table_privilege(v_run_details, 'delete') then
        return 0;
      end if;
      execute format(
        'delete from %1$s as d where d.runid = any(array('
        || 'select x.runid from %1$s as x where coalesce(x.end_time, x.start_time) < $1 limit $2))',
        v_run_details
      )
      using p_cutoff, p_limit;
    else
      raise exception using
        errcode = 'invalid_parameter_value',
        message = format('_retention_batch: %L is not a table run_retention knows', p_target),
        hint = 'see select target from monitoring.retention_policies';
  end case;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

comment on function monitoring._retention_batch(text, timestamptz, integer) is
'Delete at most p_limit rows of one retention target older than p_cutoff; returns the rows deleted.';

-- The scheduled job is a `do` block (monitoring.expected_jobs.command) that commits between the
-- calls of two functions, each with `set search_path = ''` (a procedure that commits cannot carry a
-- SET clause, which Supabase's Security Advisor reports as function_search_path_mutable):
--   monitoring._retention_start()    validate, take the job's lock, plan the run (no deletes)
--   monitoring._retention_step(s)    one batch of deletes, or the regular rollup refresh, or the
--                                    job_runs entry; returns the next state, null when done
-- Each batch commits on its own (short locks), the refresh runs in its own transaction, and an
-- overlapping run skips.
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
    -- a regular refresh in a transaction of its own (see run_retention: no full refresh is needed)
    begin
      v_refresh := monitoring.refresh_rollups(p_now => (v_state ->> 'now')::timestamptz);
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
'One step of the retention job: one batch of deletes (phase delete), a regular refresh_rollups() (phase refresh) or '
'the run''s job_runs entry and the release of its lock (phase log, returns null). The job commits after each step.';
