-- Retention that commits per batch.
--
-- monitoring.run_retention() is a function, so everything it does is one transaction: at 10 M rows
-- the nightly job held its row locks on whatsapp_error_logs for ~12 s (the deletes plus the full
-- rollup refresh) and kept back vacuum's horizon for as long. The scheduled job now calls the
-- procedure monitoring.run_retention_job(), which commits after every batch (each holds its locks
-- for tens of milliseconds), then runs refresh_rollups(p_full => true) in a transaction of its own
-- (AccessShareLock only on the app tables: it blocks no insert, update or delete), and logs the run
-- in job_runs like run_job does. run_retention() stays for a one-shot manual run in one transaction.

-- one batch of one retention policy: the shared body of run_retention() and run_retention_job()
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

  -- rollups must forget deleted error logs; this is also the nightly full refresh
  v_refresh := monitoring.refresh_rollups(p_now => p_now, p_full => true);

  return jsonb_build_object('deleted', v_deleted, 'refresh', v_refresh);
end
$$;
comment on function monitoring.run_retention(timestamptz) is
'One-shot retention in ONE transaction: delete rows older than each policy''s keep_for in batches, then '
'refresh_rollups(p_full => true); returns rows deleted per target. The scheduled job uses the procedure '
'run_retention_job(), which commits per batch.';

-- A procedure, not a function, so that it can commit between batches. No SET clause: Postgres
-- forbids transaction control in a procedure that has one; every name in the body is qualified.
create or replace procedure monitoring.run_retention_job(
  -- now (null: the time of the call)
  p_now timestamptz default null
)
language plpgsql
as $$
declare
  v_now timestamptz := coalesce(p_now, now());
  v_started timestamptz := clock_timestamp();
  v_policy record;
  v_rows integer;
  v_total bigint;
  v_batches integer;
  v_batch_started timestamptz;
  v_longest_ms numeric := 0;
  v_deleted jsonb := '{}'::jsonb;
  v_refresh jsonb;
  v_refresh_ms numeric;
  v_message text;
  v_context text;
begin
  -- 'infinity' would make every row older than its cutoff, and each batch commits
  if not isfinite(v_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('run_retention_job: p_now must be a finite time (got %s)', v_now),
      hint = 'leave p_now out: it defaults to now()';
  end if;
  -- the key run_job('retention') takes: a manual run_job and the scheduled procedure never overlap
  if not pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('monitoring.run_job'), pg_catalog.hashtext('retention')) then
    raise notice 'monitoring.run_retention_job: another retention run holds its lock; skipped';
    return;
  end if;
  commit;

  <<policies>>
  for v_policy in
    select p.target, p.keep_for, p.batch_size, p.max_batches
    from monitoring.retention_policies as p where p.enabled order by p.target
  loop
    v_total := 0;
    v_batches := 0;
    loop
      v_batch_started := pg_catalog.clock_timestamp();
      begin
        v_rows := monitoring._retention_batch(v_policy.target, v_now - v_policy.keep_for, v_policy.batch_size);
      exception when others then
        get stacked diagnostics v_message = message_text, v_context = pg_exception_context;
      end;
      exit policies when v_message is not null;
      commit;
      v_longest_ms := greatest(
        v_longest_ms, extract(epoch from pg_catalog.clock_timestamp() - v_batch_started) * 1000
      );
      v_total := v_total + v_rows;
      v_batches := v_batches + 1;
      exit when v_rows < v_policy.batch_size or v_batches >= v_policy.max_batches;
    end loop;
    v_deleted := v_deleted || jsonb_build_object(v_policy.target, v_total);
  end loop;

  -- rollups must forget deleted error logs; this is also the nightly full refresh, in a
  -- transaction of its own that only reads the app tables
  if v_message is null then
    v_batch_started := pg_catalog.clock_timestamp();
    begin
      v_refresh := monitoring.refresh_rollups(p_now => v_now, p_full => true);
    exception when others then
      get stacked diagnostics v_message = message_text, v_context = pg_exception_context;
    end;
    commit;
    v_refresh_ms := round(extract(epoch from pg_catalog.clock_timestamp() - v_batch_started)::numeric * 1000, 1);
  end if;

  insert into monitoring.job_runs (job, started_at, finished_at, ok, error, detail)
  values (
    'retention', v_started, pg_catalog.clock_timestamp(), v_message is null, v_message,
    jsonb_build_object(
      'deleted', v_deleted,
      'refresh', v_refresh,
      'refreshMs', v_refresh_ms,
      'longestBatchMs', round(v_longest_ms, 1),
      'context', v_context
    )
  );
  commit;
  perform pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('monitoring.run_job'), pg_catalog.hashtext('retention'));
  if v_message is not null then
    raise warning 'monitoring.run_retention_job failed: %', v_message;
  end if;
end
$$;
comment on procedure monitoring.run_retention_job(timestamptz) is -- noqa: LT01
'The scheduled retention job (call monitoring.run_retention_job()): batched deletes committed one by one, then '
'refresh_rollups(p_full => true) in its own transaction; logs the run in job_runs (detail: deleted per target, '
'longestBatchMs). Call it outside a transaction block; an overlapping run skips.';

-- the retention job calls the procedure; every other job stays select monitoring.run_job('<job>')
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

update monitoring.jobs
set
  description
  = 'Delete expired rows in batches (monitoring.retention_policies), each batch committed on its own, then '
  || 'refresh_rollups(p_full => true): call monitoring.run_retention_job().'
where name = 'monitoring-retention' and description like 'Delete expired rows in batches%';

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

revoke all on function monitoring._retention_batch(text, timestamptz, integer) from public, anon, authenticated;
revoke all on procedure monitoring.run_retention_job(timestamptz) from public, anon, authenticated;
grant execute on function monitoring._retention_batch(text, timestamptz, integer) to service_role;
grant execute on procedure monitoring.run_retention_job(timestamptz) to service_role;
