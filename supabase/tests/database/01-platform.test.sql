-- Test: the database has what a Supabase project has and our migrations rely on.
begin;
create extension if not exists pgtap with schema extensions;
select plan(9);

select has_role('anon', 'Supabase role anon exists');
select has_role('authenticated', 'Supabase role authenticated exists');
select has_role('service_role', 'Supabase role service_role exists');
select ok(
  (
    select rolbypassrls from pg_catalog.pg_roles
    where rolname = 'service_role'
  ),
  'service_role bypasses RLS, as on Supabase'
);
select has_schema('extensions', 'schema extensions exists');
select has_extension('extensions', 'pgcrypto', 'pgcrypto lives in extensions');
select has_table(
  'supabase_migrations', 'schema_migrations', 'the Supabase CLI migration ledger exists'
);
select columns_are(
  'supabase_migrations', 'schema_migrations', array['version', 'statements', 'name'],
  'the ledger has exactly the CLI''s columns'
);
select has_schema('monitoring', 'schema monitoring exists');

select * from finish();
rollback;
