-- Test: the schema contract: what exists, that everything in monitoring is commented, locked down
-- (search_path, jit, no access for anon/authenticated) and that the app tables have RLS on.
begin;
set local client_min_messages = warning;
create extension if not exists pgtap with schema extensions;
set local search_path = extensions, public;
select plan(25);

select has_schema('monitoring');
select has_table('public', 'whatsapp_notifications', 'notifications table exists');
select has_table('public', 'whatsapp_error_logs', 'error log table exists');
select has_table('public', 'whatsapp_sessions', 'sessions table exists');

select is(
  (
    select array_agg(v order by v) from
      unnest(array[
        'active_sessions', 'connection_status', 'delivery_latency', 'delivery_stats', 'delivery_stats_24h',
        'error_trends', 'function_stats', 'hourly_stats', 'queue_stats', 'slow_queries', 'top_errors_24h'
      ]) as v
    where not exists (
      select 1 from pg_views
      where schemaname = 'monitoring' and viewname = v
    )
  ),
  null,
  'every view of issue 3 exists in monitoring'
);

select has_function('monitoring', 'health', array['timestamp with time zone'], 'health(p_now) exists');
select has_function('monitoring', 'refresh_rollups', array['timestamp with time zone', 'boolean']);
select has_function('monitoring', 'record_invocation', array['text', 'integer', 'numeric', 'timestamp with time zone']);
select function_returns('monitoring', 'health', array['timestamp with time zone'], 'jsonb');

-- comments on everything in monitoring
select is(
  (
    select array_agg(c.relkind::text || ' ' || c.relname order by c.relname)
    from pg_class as c
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relkind in ('r', 'v', 'm', 'p', 'f')
      and obj_description(c.oid, 'pg_class') is null
  ),
  null,
  'every table and view in monitoring has a comment'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_proc as p
    where p.pronamespace = 'monitoring'::regnamespace and obj_description(p.oid, 'pg_proc') is null
  ),
  null,
  'every function in monitoring has a comment'
);
select is(
  (
    select array_agg(c.relname || '.' || a.attname order by 1)
    from pg_class as c
    inner join pg_attribute as a on c.oid = a.attrelid and a.attnum > 0 and not a.attisdropped
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relname in (
        'rollup_settings', 'health_thresholds', 'rollup_state', 'notification_minutes', 'latency_minutes'
      )
      and col_description(c.oid, a.attnum) is null
      and a.attname not in ('total', 'pending', 'processing', 'sent', 'delivered', 'read', 'failed', 'updated_at')
  ),
  null,
  'non-obvious columns of our settings and rollup tables have comments'
);

-- function hygiene
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_proc as p
    where
      p.pronamespace = 'monitoring'::regnamespace
      and p.prokind <> 'p'
      and not coalesce(p.proconfig @> array['search_path=""'], false)
  ),
  null,
  'every function in monitoring sets search_path = '''''
);
-- a procedure that commits may not have a SET clause (Postgres refuses transaction control
-- there), so procedures must run with the caller's rights: nothing to hijack
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_proc as p
    where p.pronamespace = 'monitoring'::regnamespace and p.prokind = 'p' and p.prosecdef
  ),
  null,
  'no procedure in monitoring is security definer'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_proc as p
    where
      p.pronamespace = 'monitoring'::regnamespace
      and not coalesce(p.proconfig @> array['jit=off'], false)
      and (
        p.proname like 'get\_%' or p.proname like '\_health%' or p.proname in (
          'health', 'refresh_rollups', 'record_invocation', 'mask_phone', '_rate', '_hist_quantile',
          '_delivery_window', '_notification_hist', '_error_window', '_watermark', '_latency_edges_ms'
        )
      )
  ),
  null,
  'the views'' and health''s functions set jit = off'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text || ' ' || r.rolname order by 1)
    from pg_proc as p
    cross join (values ('anon'), ('authenticated'), ('public')) as r (rolname)
    where
      p.pronamespace = 'monitoring'::regnamespace
      and (
        (r.rolname <> 'public' and has_function_privilege(r.rolname, p.oid, 'execute'))
        or (r.rolname = 'public' and exists (
          select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) as a
          where a.grantee = 0
        ))
      )
  ),
  null,
  'no function in monitoring is executable by public, anon or authenticated'
);
select ok(
  has_function_privilege('service_role', 'monitoring.health(timestamptz)', 'execute')
  and has_function_privilege('service_role', 'monitoring.refresh_rollups(timestamptz, boolean)', 'execute')
  and has_function_privilege(
    'service_role', 'monitoring.record_invocation(text, integer, numeric, timestamptz)', 'execute'
  ),
  'service_role may call health, refresh_rollups and record_invocation'
);

-- tables and views: nothing for anon/authenticated
select schema_privs_are('monitoring', 'anon', array[]::text[], 'anon has no privilege on schema monitoring');
select schema_privs_are(
  'monitoring', 'authenticated', array[]::text[], 'authenticated has no privilege on schema monitoring'
);
select is(
  (
    select array_agg(c.relname || ' ' || r.rolname order by 1)
    from pg_class as c
    cross join (values ('anon'), ('authenticated')) as r (rolname)
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relkind in ('r', 'v', 'm', 'S')
      and has_table_privilege(r.rolname, c.oid, 'select, insert, update, delete, truncate, references, trigger')
  ),
  null,
  'anon and authenticated have no privilege on any table or view in monitoring'
);
select ok(
  has_table_privilege('service_role', 'monitoring.delivery_stats', 'select')
  and not has_table_privilege('service_role', 'monitoring.notification_minutes', 'insert'),
  'service_role reads the views, and writes rollups only through refresh_rollups'
);

-- public holds only the three app tables of ours; RLS on, no policy for the API roles
select is(
  (
    select array_agg(c.relname::text order by c.relname)
    from pg_class as c
    where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' and c.relname like 'whatsapp%'
  ),
  array['whatsapp_error_logs', 'whatsapp_notifications', 'whatsapp_sessions'],
  'public holds the three whatsapp tables'
);
select is(
  (
    select array_agg(c.relname::text order by c.relname)
    from pg_class as c
    where
      c.relnamespace = 'public'::regnamespace and c.relname like 'whatsapp%' and c.relkind = 'r' and c.relrowsecurity
  ),
  array['whatsapp_error_logs', 'whatsapp_notifications', 'whatsapp_sessions'],
  'RLS is enabled on the three whatsapp tables'
);
select is(
  (
    select count(*)::integer from pg_policies
    where
      schemaname = 'public' and tablename like 'whatsapp%'
      and roles && array['anon', 'authenticated', 'public']::name[]
  ),
  0,
  'no policy lets anon or authenticated see the whatsapp tables'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_proc as p
    where
      p.pronamespace = 'monitoring'::regnamespace and p.prosecdef
      and p.proname in (
        'refresh_rollups', 'record_invocation', 'get_slow_queries', '_health_scheduler', 'health',
        'get_delivery_stats', '_delivery_window', '_health_whatsapp', 'mask_phone'
      )
  ),
  array[
    'monitoring._health_scheduler(timestamp with time zone)',
    'monitoring.get_slow_queries()',
    'monitoring.record_invocation(text,integer,numeric,timestamp with time zone)',
    'monitoring.refresh_rollups(timestamp with time zone,boolean)'
  ],
  'security definer only where needed (writers, pg_cron and pg_stat_statements readers)'
);

select * from finish();
rollback;
