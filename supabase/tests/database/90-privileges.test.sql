-- Test: anon and authenticated can neither read nor execute anything in schema monitoring; secrets
-- are readable by the owner alone; every security definer function pins search_path; every
-- alerting table has RLS on and every object a comment.
begin;
create extension if not exists pgtap with schema extensions;
select plan(25);

select schema_privs_are('monitoring', 'anon', '{}'::text[], 'anon has no privilege on schema monitoring');
select schema_privs_are(
  'monitoring', 'authenticated', '{}'::text[], 'authenticated has no privilege on schema monitoring'
);

select is(
  (
    select array_agg(c.oid::regclass::text order by 1)
    from pg_catalog.pg_class as c
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relkind in ('r', 'v', 'm', 'p', 'f')
      and (
        has_table_privilege('anon', c.oid, 'select, insert, update, delete, truncate, references, trigger')
        or has_table_privilege('authenticated', c.oid, 'select, insert, update, delete, truncate, references, trigger')
      )
  ),
  null,
  'no table or view in monitoring is readable or writable by anon or authenticated'
);
select is(
  (
    select array_agg(c.oid::regclass::text order by 1)
    from pg_catalog.pg_class as c
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relkind = 'S'
      and (
        has_sequence_privilege('anon', c.oid, 'usage, select, update')
        or has_sequence_privilege('authenticated', c.oid, 'usage, select, update')
      )
  ),
  null,
  'no sequence in monitoring is usable by anon or authenticated'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_catalog.pg_proc as p
    where
      p.pronamespace = 'monitoring'::regnamespace
      and (
        has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute')
      )
  ),
  null,
  'no function in monitoring is executable by anon or authenticated'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_catalog.pg_proc as p
    where
      p.pronamespace = 'monitoring'::regnamespace
      and p.prosecdef
      and not exists (
        select 1 from unnest(p.proconfig) as c (setting)
        where c.setting like 'search_path=%'
      )
  ),
  null,
  'every security definer function in monitoring sets search_path'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_catalog.pg_proc as p
    where
      p.pronamespace = 'monitoring'::regnamespace
      -- procedures that commit cannot carry a SET clause; 00-schema-contract checks they are not definer
      and p.prokind <> 'p'
      and not exists (
        select 1 from unnest(p.proconfig) as c (setting)
        where c.setting = 'search_path=""'
      )
  ),
  null,
  'every function in monitoring runs with search_path = '''''
);
select ok(
  (
    select count(*) from pg_catalog.pg_proc
    where pronamespace = 'monitoring'::regnamespace and prosecdef
  ) >= 6,
  'the alerting definer functions are among them'
);

-- the same, as the roles themselves
set local role anon;
select throws_ok('select * from monitoring.alert_rules', '42501', null, 'anon cannot read alert_rules');
select throws_ok('select monitoring.evaluate_rules()', '42501', null, 'anon cannot evaluate rules');
select throws_ok($$select monitoring.set_secret('x', 'y')$$, '42501', null, 'anon cannot set secrets');
reset role;
set local role authenticated;
select throws_ok('select * from monitoring.deliveries', '42501', null, 'authenticated cannot read deliveries');
select throws_ok('select * from monitoring.active_alerts', '42501', null, 'authenticated cannot read active_alerts');
select throws_ok($$select monitoring.check_error_rate()$$, '42501', null, 'authenticated cannot run check_error_rate');
select throws_ok($$select monitoring.schedule_jobs()$$, '42501', null, 'authenticated cannot schedule jobs');
reset role;

-- service_role operates the alerting but cannot read secrets back
set local role service_role;
select lives_ok('select * from monitoring.alert_rules', 'service_role reads alert_rules');
select lives_ok('select * from monitoring.delivery_status', 'service_role reads delivery_status');
select lives_ok(
  $$select monitoring.evaluate_rules(now(), array['high_error_rate'])$$, 'service_role evaluates rules'
);
select lives_ok($$select monitoring.set_secret('svc_test', 'value')$$, 'service_role stores a secret');
select throws_ok(
  $$select monitoring._get_secret('svc_test')$$, '42501', null, 'service_role cannot read a secret back'
);
select throws_ok(
  'select * from monitoring._secrets', '42501', null, 'service_role cannot read the fallback secret table'
);
reset role;

select ok(
  (
    select relrowsecurity from pg_catalog.pg_class
    where oid = 'monitoring._secrets'::regclass
  )
  and not exists (
    select 1 from pg_catalog.pg_policy
    where polrelid = 'monitoring._secrets'::regclass
  ),
  'the fallback secret table has RLS on and no policy'
);
select is(
  (
    select array_agg(c.oid::regclass::text order by 1)
    from pg_catalog.pg_class as c
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relkind = 'r'
      and c.relname in (
        'settings', 'alert_rules', 'alerts', 'alert_history', 'silences', 'rule_state', 'rule_errors', 'channels',
        'deliveries', 'jobs', 'job_runs', 'retention_policies', '_secrets'
      )
      and not c.relrowsecurity
  ),
  null,
  'every alerting table has row level security on'
);
select is(
  (
    select array_agg(c.oid::regclass::text order by 1)
    from pg_catalog.pg_class as c
    where
      c.relnamespace = 'monitoring'::regnamespace
      and c.relkind in ('r', 'v', 'm', 'p')
      and obj_description(c.oid, 'pg_class') is null
  ),
  null,
  'every table and view in monitoring has a comment'
);
select is(
  (
    select array_agg(p.oid::regprocedure::text order by 1)
    from pg_catalog.pg_proc as p
    where p.pronamespace = 'monitoring'::regnamespace and obj_description(p.oid, 'pg_proc') is null
  ),
  null,
  'every function in monitoring has a comment'
);

select * from finish();
rollback;
