-- Schema `monitoring`: everything the monitoring adds lives here, locked away from the API roles.
--
-- anon and authenticated get nothing in this schema (not even usage); service_role and postgres
-- get usage, and 99_grants.sql grants service_role each object it needs. Schema-level default
-- privileges can only add to the global ones, so grants are explicit; a later migration that
-- creates a function revokes it from public and grants it like 99_grants.sql does.
--
-- Also here: helpers every domain uses (ISO times, the generic validators).
create schema if not exists monitoring;

comment on schema monitoring is
'WhatsApp notification monitoring: views admins query, rollups behind them, health(), alerting. '
'Not exposed to anon/authenticated; use service_role or postgres.';

-- pg_cron schedules the rollup refresh and the checks. Created only where the server offers it
-- and can load it (it must be preloaded and this must be cron.database_name); everything in
-- `monitoring` also works without it (health() then reports the scheduler as unavailable).
do $$
begin
  if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron')
     and not exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
    begin
      create extension if not exists pg_cron with schema pg_catalog;
    exception when others then
      raise notice 'pg_cron not created here: %', sqlerrm;
    end;
  end if;
end
$$;

create or replace function monitoring._iso(
  -- a point in time
  p_at timestamptz
)
returns text
language sql
immutable
set search_path = ''
as $$
  select to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

comment on function monitoring._iso(timestamptz) is
'Internal: ISO 8601 UTC text with milliseconds, as JavaScript Date.toISOString() writes it.';

-- Bad input: every bad value written to a configuration table, or passed to a public function, is
-- refused with a message naming the field and a hint with the fix, and nothing is changed
-- (tests/test_bad_input.py). The cases that shaped the validators:
--   * a silence regex that is valid alone but not inside the anchors _silence_matches adds
--     ('(?i)x', '***=x') was accepted and then broke every evaluation and the active_alerts view;
--   * NaN and Infinity passed every "> 0" check (NaN sorts above all numbers in Postgres);
--   * huge intervals (repeat_interval, backoff, grace, retention, horizons, silences) were accepted
--     and then overflowed timestamp arithmetic inside the jobs, breaking them on every run;
--   * the retry delay overflowed the interval type after ~40 attempts (max_attempts allows 100);
--   * cron steps with many digits raised a raw "integer out of range"; schedules that never run
--     ('0 0 31 2 *') were accepted;
--   * p_now => 'infinity' pushed rule_state.last_checked_at to infinity (no rule ever due again),
--     rollup watermarks and delivery times likewise; get_hourly_stats('infinity') filled the disk
--     (refused by get_hourly_stats);
--   * null in a not-null column of a configuration table gave a raw "null value in column ...";
--   * health_thresholds and rollup_settings only had CHECK constraints (no hint, NaN accepted);
--   * URLs with a port above 65535 were accepted.


-- =============================================================================================
-- API: Private
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Not-null columns of the configuration tables: a message naming table.column and the default
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._validate_not_null()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_row jsonb := to_jsonb(new);
  v_column record;
begin
  for v_column in
    select a.attname::text as name, pg_catalog.pg_get_expr(d.adbin, d.adrelid) as default_value
    from pg_catalog.pg_attribute as a
    left join pg_catalog.pg_attrdef as d on a.attrelid = d.adrelid and a.attnum = d.adnum
    where a.attrelid = tg_relid and a.attnum > 0 and not a.attisdropped and a.attnotnull
    order by a.attnum
  loop
    if v_row -> v_column.name is null or v_row -> v_column.name = 'null'::jsonb then
      raise exception using
        errcode = 'check_violation',
        message = format('%s.%s must not be null', tg_table_name, v_column.name),
        hint = case
          when v_column.default_value is not null then format('give a value, such as the default %s', v_column.default_value)
          else 'give a value'
        end;
    end if;
  end loop;
  return new;
end
$$;

comment on function monitoring._validate_not_null() is
'Trigger (after the table''s own validation): raise a check_violation naming table.column when a not-null column of '
'a configuration table is set to null, with its default as the hint.';

-- ---------------------------------------------------------------------------------------------
-- Times written by the jobs: a null or infinite p_now must not reach the state tables
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._validate_finite_times()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_row jsonb := to_jsonb(new);
  v_old jsonb := case when tg_op = 'UPDATE' then to_jsonb(old) end;
  v_arg text;
  v_column text;
  v_value text;
  v_not_null boolean;
begin
  -- tg_argv: the timestamptz columns to check; a trailing ! marks one that, once set, stays set
  foreach v_arg in array tg_argv loop
    v_column := rtrim(v_arg, '!');
    v_value := v_row ->> v_column;
    select a.attnotnull into v_not_null
    from pg_catalog.pg_attribute as a
    where a.attrelid = tg_relid and a.attname = v_column;
    if v_value in ('infinity', '-infinity')
      or (v_value is null and (v_not_null or (v_arg like '%!' and v_old ->> v_column is not null))) then
      raise exception using
        errcode = 'invalid_parameter_value',
        message = format('%s.%s must be a finite time, not %s: a p_now argument was null or infinite',
          tg_table_name, v_column, coalesce(v_value, 'null')),
        hint = 'leave p_now out (it defaults to now()) or pass a real time such as now() - interval ''1 hour''';
    end if;
  end loop;
  return new;
end
$$;

comment on function monitoring._validate_finite_times() is
'Trigger: raise when a time column named in the trigger arguments is infinite, or null where it is not nullable or '
'(argument ending in !) was set before, so a p_now => null or ''infinity'' never reaches rule_state, rule_errors '
'or rollup_state.';
