-- Schema `monitoring`: everything the monitoring adds lives here, locked away from the API roles.
--
-- anon and authenticated get nothing in this schema (not even usage); service_role and postgres
-- get usage, and each later migration grants them its objects one by one. Schema-level default
-- privileges can only add to the global ones, so every migration also revokes explicitly on
-- what it creates.

create schema if not exists monitoring;

comment on schema monitoring is
'WhatsApp notification monitoring: views admins query, rollups behind them, health(), alerting. '
'Not exposed to anon/authenticated; use service_role or postgres.';

revoke all on schema monitoring from public, anon, authenticated;
grant usage on schema monitoring to service_role, postgres;

alter default privileges in schema monitoring revoke execute on functions from public;
alter default privileges in schema monitoring revoke all on functions from anon, authenticated;
alter default privileges in schema monitoring revoke all on tables from anon, authenticated;
alter default privileges in schema monitoring revoke all on sequences from anon, authenticated;

-- pg_cron schedules the rollup refresh and the checks. Created only where the server offers it
-- and can load it (it must be preloaded and this must be cron.database_name); everything in
-- `monitoring` also works without it (health() then reports the scheduler as unavailable).
do $$
begin
  if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron')
     and not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    begin
      create extension if not exists pg_cron;
    exception when others then
      raise notice 'pg_cron not created here: %', sqlerrm;
    end;
  end if;
end
$$;
