-- Retention: how long each kind of row is kept (the spec's "clean up old logs (> 30 days)"), the
-- batched deletes, and the nightly job that runs them, each batch committed on its own so no
-- app table is locked for long, followed by a regular rollup refresh.
--
-- The error log archive (the spec's "archive important logs for compliance"): before a batch of
-- public.whatsapp_error_logs is deleted, its rows are written to monitoring.error_log_archive, one
-- compressed jsonb array per UTC day and batch, in the same transaction as the delete: a row is
-- deleted only if its archive write commits with it. The archive has its own retention (target
-- error_log_archive, 365 days) and is read back by monitoring.archived_error_logs() (pydeploy logs
-- export).

-- ---------------------------------------------------------------------------------------------
-- Retention settings
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.retention_policies (
  target text primary key,
  keep_for interval not null,
  batch_size integer not null default 10000,
  max_batches integer not null default 100,
  enabled boolean not null default true,
  description text,
  archive boolean not null default false
);

comment on table monitoring.retention_policies is
'How long monitoring.run_retention() keeps rows of each table, deleted in batches of batch_size (at most '
'max_batches per run).';

comment on column monitoring.retention_policies.target is
'whatsapp_error_logs, alert_history, deliveries (delivered and dead rows only), cron_job_run_details, job_runs, '
'rule_errors, app_logs (per level, see monitoring.log_retention), ingest_batches, error_log_archive, digest_hours or '
'digest_runs.';

comment on column monitoring.retention_policies.keep_for is 'Rows older than this are deleted.';

comment on column monitoring.retention_policies.max_batches is
'Batches per run at most; a larger backlog continues at the next run.';

comment on column monitoring.retention_policies.archive is
'whatsapp_error_logs only: write each batch to monitoring.error_log_archive, in the transaction that deletes it.';

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
    'app_logs', 'ingest_batches', 'error_log_archive', 'digest_hours', 'digest_runs'
  ) then
    raise exception using
      errcode = 'check_violation',
      message = format('retention_policies.target %L is not a table run_retention knows', left(new.target, 200)),
      hint = 'use whatsapp_error_logs, alert_history, deliveries, cron_job_run_details, job_runs, rule_errors, '
      || 'app_logs, ingest_batches, error_log_archive, digest_hours or digest_runs';
  end if;
  if new.archive and new.target <> 'whatsapp_error_logs' then
    raise exception using
      errcode = 'check_violation',
      message = format('retention_policies.archive can only be true for whatsapp_error_logs (got target %s)',
        new.target),
      hint = 'set archive = false';
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

-- error logs are archived before they are deleted: writing a batch to the archive costs more than
-- deleting it (about 80 ms per 1,000 rows at 10 M rows in pydeploy bench), so their batches are
-- smaller to keep each batch transaction short; max_batches keeps the nightly cap at 1 M rows
insert into monitoring.retention_policies (target, keep_for, description, archive, batch_size, max_batches) values
(
  'whatsapp_error_logs', interval '30 days',
  'The spec: clean up database logs older than 30 days (archived first in monitoring.error_log_archive).', true,
  1000, 1000
)
on conflict (target) do nothing;

insert into monitoring.retention_policies (target, keep_for, description) values
('error_log_archive', interval '365 days', 'Archived error logs (the spec: archive important logs for compliance).'),
('digest_hours', interval '400 days', 'The hourly history the digests read (monitoring.digest_hours).'),
('digest_runs', interval '400 days', 'Digests built and sent (monitoring.digest_runs).'),
('alert_history', interval '90 days', 'Alert state transitions.'),
('deliveries', interval '30 days', 'Delivered and dead-lettered notifications (queued ones are never deleted).'),
('cron_job_run_details', interval '7 days', 'pg_cron never trims cron.job_run_details itself.'),
('job_runs', interval '30 days', 'Our own job run log.'),
('rule_errors', interval '30 days', 'Failed rule evaluations.'),
('app_logs', interval '30 days', 'The app''s log lines: each level as monitoring.log_retention says, at most this.'),
('ingest_batches', interval '2 days', 'Batch ids monitoring.ingest() answers retries from.')
on conflict (target) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Error log archive
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.error_log_archive (
  id bigint generated always as identity primary key,
  day date not null,
  rows integer not null,
  first_at timestamptz not null,
  last_at timestamptz not null,
  archived_at timestamptz not null default now(),
  logs jsonb not null
);

comment on table monitoring.error_log_archive is
'Rows of public.whatsapp_error_logs deleted by retention, kept for compliance: one row per UTC day and retention '
'batch, logs a jsonb array of the rows as they were (to_jsonb, ordered by created_at), compressed by TOAST. Written '
'in the transaction that deletes them; kept 365 days (retention_policies.error_log_archive). Read with '
'monitoring.archived_error_logs(from, to) or pydeploy logs export.';

comment on column monitoring.error_log_archive.day is 'UTC day of created_at of every row in logs.';

comment on column monitoring.error_log_archive.rows is 'Rows in logs.';

comment on column monitoring.error_log_archive.logs is
'jsonb array of the deleted rows (id, error_type, error_message, error_code, notification_id, context, created_at).';

create index if not exists error_log_archive_day_idx on monitoring.error_log_archive (day, first_at);

create index if not exists error_log_archive_archived_at_idx on monitoring.error_log_archive (archived_at);

-- lz4 where the server has it: faster than pglz and about as small on JSON
do $$
begin
  if exists (
    select 1 from pg_catalog.pg_settings
    where name = 'default_toast_compression' and 'lz4' = any(enumvals)
  ) then
    alter table monitoring.error_log_archive alter column logs set compression lz4;
  end if;
end
$$;

create or replace function monitoring.archived_error_logs(
  -- first time included
  p_from timestamptz,
  -- end (exclusive)
  p_to timestamptz
)
returns table (
  source text,
  id uuid,
  error_type text,
  error_message text,
  error_code text,
  notification_id uuid,
  context jsonb,
  created_at timestamptz,
  log jsonb
)
language plpgsql
stable
set search_path = ''
set jit = off
as $$
begin
  if p_from is null or p_to is null or not isfinite(p_from) or not isfinite(p_to) or p_to <= p_from then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('archived_error_logs: p_from and p_to must be finite times with p_from < p_to (got %s, %s)',
        coalesce(p_from::text, 'null'), coalesce(p_to::text, 'null')),
      hint = 'use a range such as (''2026-01-01'', ''2026-02-01'')';
  end if;
  -- archived rows (one day chunk at a time, each in created_at order), then the rows still live
  return query
  select
    'archive'::text,
    (e.value ->> 'id')::uuid,
    e.value ->> 'error_type',
    e.value ->> 'error_message',
    e.value ->> 'error_code',
    (e.value ->> 'notification_id')::uuid,
    e.value -> 'context',
    (e.value ->> 'created_at')::timestamptz,
    e.value
  from monitoring.error_log_archive as a
  cross join lateral jsonb_array_elements(a.logs) with ordinality as e (value, ord)
  where
    a.day >= (p_from at time zone 'UTC')::date and a.day <= (p_to at time zone 'UTC')::date
    and a.last_at >= p_from and a.first_at < p_to
    and (e.value ->> 'created_at')::timestamptz >= p_from and (e.value ->> 'created_at')::timestamptz < p_to
  order by a.day, a.first_at, a.id, e.ord;
  return query
  select
    'live'::text, l.id, l.error_type::text, l.error_message::text, l.error_code::text, l.notification_id, l.context,
    l.created_at, to_jsonb(l)
  from public.whatsapp_error_logs as l
  where l.created_at >= p_from and l.created_at < p_to
  order by l.created_at;
end
$$;

comment on function monitoring.archived_error_logs(timestamptz, timestamptz) is
'Error logs created in [p_from, p_to): the archived ones (source archive, from monitoring.error_log_archive, by day) '
'then the ones retention has not deleted yet (source live); log is the whole row as jsonb. Not masked: the '
'archive keeps what the sender wrote, for compliance.';

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

alter table monitoring.error_log_archive enable row level security;

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
  v_ctids tid[];
  -- cron.* is referenced through this variable: pg_cron may not exist where this is linted
  v_run_details regclass;
begin
  case p_target
    when 'whatsapp_error_logs' then
      if coalesce((
        select p.archive from monitoring.retention_policies as p where p.target = 'whatsapp_error_logs'
      ), false) then
        -- archive, then delete, in this one transaction: nothing is deleted unless its archive
        -- row commits with it. The oldest rows first. No row lock (it cost a third of the batch):
        -- a row the app changes in between gets a new ctid, so the delete skips it and the next
        -- run archives its new version.
        v_ctids := array(
          select x.ctid from public.whatsapp_error_logs as x
          where x.created_at < p_cutoff
          order by x.created_at
          limit p_limit
        );
        insert into monitoring.error_log_archive (day, rows, first_at, last_at, logs)
        select
          (x.created_at at time zone 'UTC')::date,
          count(*),
          min(x.created_at),
          max(x.created_at),
          jsonb_agg(to_jsonb(x) order by x.created_at, x.id)
        from public.whatsapp_error_logs as x
        where x.ctid = any(v_ctids)
        group by (x.created_at at time zone 'UTC')::date;
        delete from public.whatsapp_error_logs as e where e.ctid = any(v_ctids);
      else
        delete from public.whatsapp_error_logs as e
        where e.ctid = any(array(
          select x.ctid from public.whatsapp_error_logs as x where x.created_at < p_cutoff limit p_limit
        ));
      end if;
    when 'error_log_archive' then
      delete from monitoring.error_log_archive as a
      where a.id = any(array(
        select x.id from monitoring.error_log_archive as x where x.last_at < p_cutoff limit p_limit
      ));
    when 'digest_hours' then
      delete from monitoring.digest_hours as d
      where d.hour = any(array(
        select x.hour from monitoring.digest_hours as x where x.hour < p_cutoff limit p_limit
      ));
    when 'digest_runs' then
      delete from monitoring.digest_runs as d
      where d.id = any(array(
        select x.id from monitoring.digest_runs as x where x.built_at < p_cutoff limit p_limit
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
'Delete at most p_limit rows of one retention target older than p_cutoff; returns the rows deleted. '
'whatsapp_error_logs with archive on: the oldest rows, written to monitoring.error_log_archive in the same '
'transaction first.';

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
