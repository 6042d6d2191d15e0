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
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
end
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
--   * URLs with a port above 65535 were accepted;
--   * each limit was written twice, as a CHECK and again in a trigger, and the two disagreed
--     (backoff_base: "> 0" in the CHECK, "at most 1 day" in the trigger).
--
-- Where each rule lives, stated once:
--   * a bound or a list of allowed values of a configuration column: a row of monitoring._limits,
--     next to its table in that table's domain file, enforced by monitoring._validate_limits()
--     (trigger <table>_limits); no CHECK constraint repeats it;
--   * one row only (settings, health_thresholds, rollup_settings): trigger <table>_single_row;
--   * a not-null column without a limit: monitoring._validate_not_null() (<table>_validate_nulls);
--   * times the jobs write from p_now: monitoring._validate_finite_times() (<table>_finite_times);
--   * rules that are logic (names, cron expressions, URLs, regexes, secrets, one field against
--     another): the table's own monitoring._validate_<table>() trigger, each rule written once.


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
  v_not_null text[];
begin
  -- tg_argv: the timestamptz columns to check; a trailing ! marks one that, once set, stays set, a
  -- trailing + one that must be set (a trigger's when clause says when)
  foreach v_arg in array tg_argv loop
    v_column := rtrim(v_arg, '!+');
    v_value := v_row ->> v_column;
    if v_value is null and v_not_null is null then
      -- the table's not-null columns, looked up once and only when a value is null
      select coalesce(array_agg(a.attname::text), '{}') into v_not_null
      from pg_catalog.pg_attribute as a
      where a.attrelid = tg_relid and a.attnum > 0 and not a.attisdropped and a.attnotnull;
    end if;
    if v_value in ('infinity', '-infinity')
      or (
        v_value is null and (
          v_column = any(v_not_null) or v_arg like '%+'
          or (v_arg like '%!' and v_old ->> v_column is not null)
        )
      ) then
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
'Trigger: raise when a time column named in the trigger arguments is infinite, or null where it is not nullable, '
'was set before (argument ending in !) or must be set (argument ending in +), so a p_now => null or ''infinity'' '
'never reaches rule_state, rule_errors, rollup_state, jobs or deliveries.';

-- ---------------------------------------------------------------------------------------------
-- Limits of the configuration tables: one row per column, read by one validator
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring._limits (
  table_name text not null,
  column_name text not null,
  min_value text,
  min_exclusive boolean not null default false,
  max_value text,
  allowed text[],
  hint text not null,
  primary key (table_name, column_name),
  constraint _limits_one_kind check (
    allowed is null or (min_value is null and max_value is null and not min_exclusive)
  )
);

comment on table monitoring._limits is
'The limits of the configuration tables, each stated once: a bound (min_value, max_value) or a list of allowed '
'values per column, with the hint shown when a write breaks it. Enforced by monitoring._validate_limits() (trigger '
'<table>_limits); numbers must also be finite (no NaN or Infinity). Add a limit with an insert here plus a '
'migration doing the same insert.';

comment on column monitoring._limits.table_name is
'A table of schema monitoring (its trigger <table>_limits enforces the limit).';

comment on column monitoring._limits.column_name is
'The column limited: numeric, integer or interval for bounds, text for allowed.';

comment on column monitoring._limits.min_value is
'Lowest value allowed, written in the column''s type as the message shows it (''1 minute'', ''0''); null: no '
'lower bound.';

comment on column monitoring._limits.min_exclusive is
'Whether min_value itself is refused (a positive value: min_value 0, exclusive).';

comment on column monitoring._limits.max_value is 'Highest value allowed (inclusive); null: no upper bound.';

comment on column monitoring._limits.allowed is
'The only values allowed, in the order the message lists them; null: any.';

comment on column monitoring._limits.hint is
'The fix, shown as the error''s hint, such as ''use an interval such as ''''4 hours''''''.';

create or replace function monitoring._validate_limit()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_type regtype;
begin
  select a.atttypid::regtype into v_type
  from pg_catalog.pg_attribute as a
  where
    a.attrelid = to_regclass(format('monitoring.%I', new.table_name))
    and a.attname = new.column_name and a.attnum > 0 and not a.attisdropped;
  if v_type is null then
    raise exception using
      errcode = 'check_violation',
      message = format('_limits: monitoring.%s has no column %s', new.table_name, new.column_name),
      hint = 'create the table first, then state its limits';
  end if;
  if new.allowed is not null and v_type <> 'text'::regtype then
    raise exception using
      errcode = 'check_violation',
      message = format('_limits: allowed values are for text columns; %s.%s is %s', new.table_name, new.column_name,
        v_type),
      hint = 'give min_value and max_value instead';
  end if;
  if new.allowed is null and v_type not in ('numeric'::regtype, 'integer'::regtype, 'interval'::regtype) then
    raise exception using
      errcode = 'check_violation',
      message = format('_limits: bounds are for numeric, integer or interval columns; %s.%s is %s', new.table_name,
        new.column_name, v_type),
      hint = 'give allowed values, or check it in the table''s own validator';
  end if;
  -- each bound must read as a value of the column's type (a typo fails here, at migration time)
  execute format('select $1::%1$s, $2::%1$s', v_type) using new.min_value, new.max_value;
  return new;
end
$$;

comment on function monitoring._validate_limit() is
'Trigger: refuse a monitoring._limits row whose column does not exist or whose bounds do not read as the '
'column''s type, so a mistyped limit fails the migration instead of being ignored.';

create or replace trigger _limits_validate
before insert or update on monitoring._limits
for each row execute function monitoring._validate_limit();

create or replace function monitoring._validate_limits()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_row jsonb := to_jsonb(new);
  v_limit record;
  v_value text;
  v_bad boolean;
begin
  for v_limit in
    select
      l.column_name,
      l.hint,
      l.allowed,
      a.attnotnull as not_null,
      a.atttypid = 'interval'::regtype as is_interval,
      l.min_value,
      l.max_value,
      l.min_exclusive,
      -- what the message says the value must be, from the bounds themselves
      case
        when l.allowed is not null and cardinality(l.allowed) = 2 then l.allowed[1] || ' or ' || l.allowed[2]
        when l.allowed is not null then 'one of ' || array_to_string(l.allowed, ', ')
        when l.min_value is null and l.max_value is null then 'a finite number'
        when a.atttypid <> 'interval'::regtype and l.min_value is not null and l.max_value is not null
          and not l.min_exclusive then format('between %s and %s', l.min_value, l.max_value)
        else concat_ws(
          ' ',
          case
            when l.min_value is null then null
            when a.atttypid = 'interval'::regtype and l.min_exclusive and l.min_value::interval = interval '0'
              then 'a positive interval'
            when l.min_exclusive then '> ' || l.min_value
            when a.atttypid = 'interval'::regtype and l.min_value::interval <> interval '0'
              then 'at least ' || l.min_value
            else '>= ' || l.min_value
          end,
          case
            when l.max_value is null then null
            when l.min_value is null then 'at most ' || l.max_value
            when a.atttypid = 'interval'::regtype and l.min_exclusive and l.min_value::interval = interval '0'
              then 'of at most ' || l.max_value
            else 'and at most ' || l.max_value
          end
        )
      end as must_be
    from monitoring._limits as l
    inner join pg_catalog.pg_attribute as a
      on a.attrelid = tg_relid and l.column_name = a.attname and a.attnum > 0 and not a.attisdropped
    where l.table_name = tg_table_name
    order by a.attnum
  loop
    v_value := v_row ->> v_limit.column_name;
    v_bad := case
      when v_value is null then v_limit.not_null
      when v_limit.allowed is not null then v_value <> all(v_limit.allowed)
      when v_limit.is_interval then
        v_value::interval < v_limit.min_value::interval
        or (v_limit.min_exclusive and v_value::interval = v_limit.min_value::interval)
        or v_value::interval > v_limit.max_value::interval
      -- NaN sorts above every number in Postgres, so a bound alone lets it (and Infinity) through
      else
        v_value in ('NaN', 'Infinity', '-Infinity')
        or v_value::numeric < v_limit.min_value::numeric
        or (v_limit.min_exclusive and v_value::numeric = v_limit.min_value::numeric)
        or v_value::numeric > v_limit.max_value::numeric
    end;
    if coalesce(v_bad, false) then
      raise exception using
        errcode = 'check_violation',
        message = format('%s.%s must be %s (got %s)', tg_table_name, v_limit.column_name, v_limit.must_be,
          case when v_limit.allowed is not null then quote_nullable(left(v_value, 200)) else coalesce(v_value, 'null') end),
        hint = v_limit.hint;
    end if;
  end loop;
  return new;
end
$$;

comment on function monitoring._validate_limits() is
'Trigger (<table>_limits, first of a table''s validators): refuse a write that breaks a limit of monitoring._limits '
'with a check_violation naming table.column, what it must be and the value given, and the limit''s hint.';

-- ---------------------------------------------------------------------------------------------
-- Tables of one row (settings, health_thresholds, rollup_settings)
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._validate_single_row()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id is distinct from true then
    raise exception using
      errcode = 'check_violation',
      message = format('%s.id must be true: the table holds exactly one row (trigger %s)', tg_table_name, tg_name),
      hint = format('update the row: update monitoring.%s set ... where id', tg_table_name);
  end if;
  return new;
end
$$;

comment on function monitoring._validate_single_row() is
'Trigger (<table>_single_row): keep a one-row table at one row, whose boolean primary key id is always true.';

alter table monitoring._limits enable row level security;
