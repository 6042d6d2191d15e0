-- Input hardening (issue 8, bad input): every bad value written to a configuration table, or passed
-- to a public function, is refused with a message naming the field and a hint with the fix, and
-- nothing is changed. Fixes what tests/test_bad_input.py found:
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
--     (refused in 20261127030500_hourly_rollups.sql, which redefines that function);
--   * null in a not-null column of a configuration table gave a raw "null value in column ...";
--   * health_thresholds and rollup_settings only had CHECK constraints (no hint, NaN accepted);
--   * URLs with a port above 65535 were accepted.
-- Functions are redefined from their latest definition with the checks added; nothing else changes.


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

create or replace function monitoring._validate_delivery_times()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_bad text;
begin
  v_bad := case
    when new.created_at is null or not isfinite(new.created_at) then 'created_at'
    when not isfinite(new.next_attempt_at) then 'next_attempt_at'
    when new.next_attempt_at is null and new.status in ('queued', 'retrying') then 'next_attempt_at'
    when not isfinite(new.last_attempt_at) then 'last_attempt_at'
    when not isfinite(new.delivered_at) then 'delivered_at'
    when not isfinite(new.dead_at) then 'dead_at'
  end;
  if v_bad is not null then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('deliveries.%s must be a finite time: a p_now argument was null or infinite', v_bad),
      hint = 'leave p_now out (it defaults to now()) or pass a real time such as now() - interval ''1 hour''';
  end if;
  return new;
end
$$;
comment on function monitoring._validate_delivery_times() is
'Trigger: raise when a delivery would get a null or infinite time from a p_now argument (a queued or retrying '
'delivery needs next_attempt_at, or it is never sent).';

-- ---------------------------------------------------------------------------------------------
-- health_thresholds and rollup_settings: triggers with messages (their CHECKs stay)
-- ---------------------------------------------------------------------------------------------

create or replace function monitoring._validate_health_thresholds()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id is distinct from true then
    raise exception using
      errcode = 'check_violation',
      message = 'health_thresholds.id must be true: the table holds exactly one row',
      hint = 'update the row: update monitoring.health_thresholds set ... where id';
  end if;
  if new.whatsapp_unhealthy_after is null
    or new.whatsapp_unhealthy_after not between interval '1 second' and interval '7 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.whatsapp_unhealthy_after must be between 1 second and 7 days (got %s)',
        coalesce(new.whatsapp_unhealthy_after::text, 'null')),
      hint = 'use an interval such as ''5 minutes'' (the spec''s value)';
  end if;
  if new.function_max_errors is null or new.function_max_errors < 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.function_max_errors must be >= 0 (got %s)',
        coalesce(new.function_max_errors::text, 'null')),
      hint = 'use a count such as 10 (the spec''s value)';
  end if;
  if new.function_max_error_rate is null or new.function_max_error_rate = 'NaN'
    or new.function_max_error_rate not between 0 and 100 then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.function_max_error_rate must be a percentage between 0 and 100 (got %s)',
        coalesce(new.function_max_error_rate::text, 'null')),
      hint = 'use a percentage such as 5 (the spec''s value)';
  end if;
  if new.function_max_avg_ms is null or new.function_max_avg_ms in ('NaN', 'Infinity')
    or new.function_max_avg_ms <= 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.function_max_avg_ms must be a positive number of ms (got %s)',
        coalesce(new.function_max_avg_ms::text, 'null')),
      hint = 'use milliseconds such as 5000 (the spec''s value)';
  end if;
  if new.rollup_max_lag is null or new.rollup_max_lag not between interval '1 second' and interval '7 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.rollup_max_lag must be between 1 second and 7 days (got %s)',
        coalesce(new.rollup_max_lag::text, 'null')),
      hint = 'use an interval such as ''5 minutes''';
  end if;
  if new.slow_query_target_ms is null or new.slow_query_target_ms in ('NaN', 'Infinity')
    or new.slow_query_target_ms <= 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.slow_query_target_ms must be a positive number of ms (got %s)',
        coalesce(new.slow_query_target_ms::text, 'null')),
      hint = 'use milliseconds such as 100 (the spec''s target)';
  end if;
  if new.slow_query_alert_ms is null or new.slow_query_alert_ms in ('NaN', 'Infinity')
    or new.slow_query_alert_ms < new.slow_query_target_ms then
    raise exception using
      errcode = 'check_violation',
      message = format('health_thresholds.slow_query_alert_ms must be a number of ms >= slow_query_target_ms (%s) '
        || '(got %s)', new.slow_query_target_ms, coalesce(new.slow_query_alert_ms::text, 'null')),
      hint = 'use milliseconds such as 500 (the spec''s alert level)';
  end if;
  return new;
end
$$;
comment on function monitoring._validate_health_thresholds() is
'Trigger: validate the health_thresholds row, raising a check_violation whose message names the field and whose '
'hint gives the spec''s value.';

create or replace function monitoring._validate_rollup_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id is distinct from true then
    raise exception using
      errcode = 'check_violation',
      message = 'rollup_settings.id must be true: the table holds exactly one row',
      hint = 'update the row: update monitoring.rollup_settings set ... where id';
  end if;
  if new.mutable_window is null or new.mutable_window not between interval '1 minute' and interval '7 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('rollup_settings.mutable_window must be between 1 minute and 7 days (got %s)',
        coalesce(new.mutable_window::text, 'null')),
      hint = 'use an interval such as ''30 minutes''';
  end if;
  if new.minute_horizon is null or new.minute_horizon not between interval '8 days' and interval '366 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('rollup_settings.minute_horizon must be between 8 days and 366 days (got %s)',
        coalesce(new.minute_horizon::text, 'null')),
      hint = 'use ''8 days'': the views read 7 days of minute rollups';
  end if;
  if new.day_horizon is null or new.day_horizon not between interval '31 days' and interval '3660 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('rollup_settings.day_horizon must be between 31 days and 3660 days (got %s)',
        coalesce(new.day_horizon::text, 'null')),
      hint = 'use ''31 days'': error_trends reads 30 days';
  end if;
  return new;
end
$$;
comment on function monitoring._validate_rollup_settings() is
'Trigger: validate the rollup_settings row, raising a check_violation whose message names the field.';

-- ---------------------------------------------------------------------------------------------
-- Redefined with the new checks (latest definitions: 20261127020000 .. 20261127020200)
-- ---------------------------------------------------------------------------------------------

create or replace function monitoring._cron_parse(
  -- a 5-field cron expression as pg_cron 1.4 accepts it
  p_schedule text,
  -- the column being validated, named in error messages
  p_column text default 'schedule'
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_fields text[];
  v_dow integer[];
  v_dom integer[];
  v_month integer[];
  v_longest integer;
  v_hint constant text :=
    'use 5 fields (minute hour day-of-month month day-of-week) such as "*/15 * * * *"; '
    || 'pg_cron 1.4 has minute granularity, so "30 seconds" and @macros are not accepted';
begin
  if p_schedule is null or btrim(p_schedule) = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('%s must not be empty', p_column),
      hint = v_hint;
  end if;
  if p_schedule ~* 'sec' then
    raise exception using
      errcode = 'check_violation',
      message = format('%s %L uses seconds, which pg_cron 1.4 does not support', p_column, p_schedule),
      hint = v_hint;
  end if;
  -- no field value or step has more than 2 digits: longer numbers are out of range (and would overflow)
  if p_schedule ~ '[0-9]{5,}' then
    raise exception using
      errcode = 'check_violation',
      message = format('%s %L has a number out of range', p_column, left(p_schedule, 200)),
      hint = v_hint;
  end if;

  v_fields := regexp_split_to_array(btrim(p_schedule), '\s+');
  if cardinality(v_fields) <> 5 then
    raise exception using
      errcode = 'check_violation',
      message = format('%s %L must have 5 fields, not %s', p_column, left(p_schedule, 200), cardinality(v_fields)),
      hint = v_hint;
  end if;

  v_dow := monitoring._cron_field(
    v_fields[5], 0, 7, array['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'], 'day-of-week', p_column
  );
  -- 7 is Sunday too
  v_dow := array(select distinct (u.v % 7) from unnest(v_dow) as u (v) order by 1);
  v_dom := monitoring._cron_field(v_fields[3], 1, 31, null, 'day-of-month', p_column);
  v_month := monitoring._cron_field(
    v_fields[4], 1, 12,
    array['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
    'month', p_column
  );

  -- with a day-of-week of *, the day of month must exist in one of the months (31 2 never runs)
  if left(v_fields[5], 1) = '*' and left(v_fields[3], 1) <> '*' then
    select max((array[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m.v]) into v_longest
    from unnest(v_month) as m (v);
    if v_dom[1] > v_longest then
      raise exception using
        errcode = 'check_violation',
        message = format('%s %L never runs: day %s does not occur in the month(s) given', p_column, p_schedule,
          v_dom[1]),
        hint = 'pick a day that exists in those months, such as "0 0 28 2 *"';
    end if;
  end if;

  return jsonb_build_object(
    'minute', to_jsonb(monitoring._cron_field(v_fields[1], 0, 59, null, 'minute', p_column)),
    'hour', to_jsonb(monitoring._cron_field(v_fields[2], 0, 23, null, 'hour', p_column)),
    'dom', to_jsonb(v_dom),
    'month', to_jsonb(v_month),
    'dow', to_jsonb(v_dow),
    'dom_star', left(v_fields[3], 1) = '*',
    'dow_star', left(v_fields[5], 1) = '*'
  );
end
$$;
comment on function monitoring._cron_parse(text, text) is
'Internal: validate a 5-field pg_cron 1.4 expression and return its expanded fields as jsonb; raises a '
'check_violation naming p_column (also for numbers out of range and for schedules that never run).';

create or replace function monitoring._cron_due(
  -- a valid cron expression
  p_schedule text,
  -- when the schedule was last looked at (null: never, so it is due)
  p_after timestamptz,
  -- now
  p_now timestamptz
)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  -- evaluate_rules(p_now => null or 'infinity') must fail here, before the scheduled evaluator
  -- stores that p_now as rule_state.last_checked_at (infinity: no rule would ever be due again)
  if p_now is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('evaluate_rules: p_now must be a finite time (got %s)', coalesce(p_now::text, 'null')),
      hint = 'leave p_now out (it defaults to now()) or pass a real time such as now() - interval ''1 hour''';
  end if;
  return p_after is null
    or exists (
      select 1
      from monitoring._cron_times(
        p_schedule,
        greatest(date_trunc('minute', p_after) + interval '1 minute', p_now - interval '31 days'),
        p_now
      )
    );
end
$$;
comment on function monitoring._cron_due(text, timestamptz, timestamptz) is
'Internal: true when p_schedule has a run time in the minutes after p_after up to p_now (so a delayed job catches '
'up); raises when p_now is null or infinite.';

create or replace function monitoring._validate_alert_rule()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.name is null or new.name !~ '^[a-z][a-z0-9_]{0,62}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.name %L must be lower-case snake_case (at most 63 characters)', left(new.name, 200)),
      hint = 'use letters, digits and underscores, starting with a letter, such as low_delivery_rate';
  end if;
  if new.description is null or btrim(new.description) = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.description of %s must not be empty', new.name),
      hint = 'say in one line what the rule detects';
  end if;
  if new.severity is null or new.severity not in ('critical', 'warning', 'info') then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.severity must be one of critical, warning, info (got %L)', left(new.severity, 200)),
      hint = 'use critical, warning or info';
  end if;
  if new.metric is null or btrim(new.metric) = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.metric of %s must not be empty', new.name),
      hint = 'name the metric as the webhook payload shows it, such as delivery_rate';
  end if;
  if new.comparator is null or new.comparator not in ('>', '>=', '<', '<=') then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.comparator must be one of >, >=, <, <= (got %L)', left(new.comparator, 200)),
      hint = 'use > for "more than" and < for "less than"';
  end if;
  -- NaN sorts above every number in Postgres, so "> 0" alone lets it (and Infinity) through
  if new.threshold is null or new.threshold in ('NaN', 'Infinity') or new.threshold <= 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.threshold must be > 0 (got %s)', coalesce(new.threshold::text, 'null')),
      hint = 'use a positive number such as 50';
  end if;
  if new.unit = '%' and new.threshold > 100 then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'alert_rules.threshold of %s is a percentage and must be <= 100 (got %s)', new.name, new.threshold
      ),
      hint = 'use a percentage such as 90';
  end if;
  if new.target in ('NaN', 'Infinity', '-Infinity') then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.target must be a finite number or null (got %s)', new.target),
      hint = 'use the healthy value from the spec, such as 95, or null';
  end if;
  if new."window" is not null and (new."window" <= interval '0' or new."window" > interval '31 days') then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.window must be a positive interval of at most 31 days (got %s)', new."window"),
      hint = 'use an interval such as ''1 hour''';
  end if;
  if new.min_volume is not null and (new.min_volume in ('NaN', 'Infinity') or new.min_volume < 0) then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.min_volume must be >= 0 (got %s)', new.min_volume),
      hint = 'use 0 or a positive count such as 10, or null for no minimum';
  end if;
  if new.for_period is null or new.for_period < interval '0' or new.for_period > interval '366 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.for_period must be >= 0 and at most 366 days (got %s)',
        coalesce(new.for_period::text, 'null')),
      hint = 'use ''0'' to fire at once or an interval such as ''5 minutes''';
  end if;
  if new.repeat_interval is null or new.repeat_interval < interval '1 minute'
    or new.repeat_interval > interval '366 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.repeat_interval must be at least 1 minute and at most 366 days (got %s)',
        coalesce(new.repeat_interval::text, 'null')),
      hint = 'use an interval such as ''4 hours''';
  end if;
  perform monitoring._cron_parse(new.schedule, 'alert_rules.schedule');
  if new.runbook is null or cardinality(new.runbook) < 1
    or exists (select 1 from unnest(new.runbook) as s (step) where coalesce(btrim(s.step), '') = '') then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.runbook of %s must have at least one step, and no step may be empty', new.name),
      hint = 'give the incident-response steps, such as array[''Check the health endpoint'']';
  end if;
  if new.labels is null or jsonb_typeof(new.labels) <> 'object'
    or exists (
      select 1 from jsonb_each(new.labels) as l (k, v)
      where jsonb_typeof(l.v) <> 'string' or l.k !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' or l.k in ('alertname', 'severity')
    ) then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'alert_rules.labels must be a JSON object of strings (got %s)', left(coalesce(new.labels::text, 'null'), 200)
      ),
      hint = 'use an object such as ''{"team": "ops"}'': names are letters, digits and _ (Prometheus label names); '
        || 'alertname and severity come from the rule';
  end if;
  if new.check_function is null
    or new.check_function !~ '^_?[a-z][a-z0-9_]*$'
    or to_regprocedure(format('monitoring.%I(monitoring.alert_rules, timestamptz)', new.check_function)) is null then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.check_function monitoring.%s(monitoring.alert_rules, timestamptz) does not exist',
        left(new.check_function, 200)),
      hint = 'create it first; it returns table (labels jsonb, value numeric, volume numeric, message text)';
  end if;

  new.updated_at := now();
  return new;
end
$$;
comment on function monitoring._validate_alert_rule() is
'Trigger: validate an alert rule, raising a check_violation whose message names the field and whose hint gives the '
'fix.';

create or replace function monitoring._validate_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id is distinct from true then
    raise exception using
      errcode = 'check_violation',
      message = 'settings.id must be true: the table holds exactly one row (constraint settings_single_row)',
      hint = 'update the row: update monitoring.settings set ... where id';
  end if;
  if new.service_name is null or btrim(new.service_name) = '' or char_length(new.service_name) > 200 then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.service_name must be 1-200 characters (got %s characters)',
        coalesce(char_length(btrim(new.service_name))::text, 'null')),
      hint = 'use a name such as ''WhatsApp Notifications''';
  end if;
  if new.backoff_base is null or new.backoff_base not between interval '1 microsecond' and interval '1 day' then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'settings.backoff_base must be a positive interval of at most 1 day (got %s)',
        coalesce(new.backoff_base::text, 'null')
      ),
      hint = 'use an interval such as ''30 seconds''';
  end if;
  if new.backoff_cap is null or new.backoff_cap < new.backoff_base or new.backoff_cap > interval '7 days' then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'settings.backoff_cap must be >= backoff_base and at most 7 days (got %s)',
        coalesce(new.backoff_cap::text, 'null')
      ),
      hint = 'use an interval such as ''30 minutes''';
  end if;
  if new.max_attempts is null or new.max_attempts not between 1 and 100 then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'settings.max_attempts must be between 1 and 100 (got %s)', coalesce(new.max_attempts::text, 'null')
      ),
      hint = 'use a count such as 8';
  end if;
  if new.http_timeout_ms is null or new.http_timeout_ms not between 100 and 300000 then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.http_timeout_ms must be between 100 and 300000 (got %s)',
        coalesce(new.http_timeout_ms::text, 'null')),
      hint = 'use milliseconds such as 5000';
  end if;
  if new.response_grace is null or new.response_grace not between interval '0' and interval '1 day' then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.response_grace must be between 0 and 1 day (got %s)',
        coalesce(new.response_grace::text, 'null')),
      hint = 'use an interval such as ''1 minute''';
  end if;
  if new.dispatch_batch is null or new.dispatch_batch not between 1 and 10000 then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.dispatch_batch must be between 1 and 10000 (got %s)',
        coalesce(new.dispatch_batch::text, 'null')),
      hint = 'use a count such as 100';
  end if;
  if new.job_mode is null or new.job_mode not in ('db', 'edge') then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.job_mode must be db or edge (got %L)', left(new.job_mode, 200)),
      hint = 'call monitoring.schedule_jobs(''db'') or monitoring.schedule_jobs(''edge'')';
  end if;
  if coalesce(new.project_url_secret, '') !~ '^[A-Za-z0-9_.:-]{1,200}$'
    or coalesce(new.service_key_secret, '') !~ '^[A-Za-z0-9_.:-]{1,200}$' then
    raise exception using
      errcode = 'check_violation',
      message = 'settings.project_url_secret and settings.service_key_secret must name secrets '
        || '(1-200 letters, digits or _ . : -)',
      hint = 'use the defaults project_url and service_role_key';
  end if;
  new.updated_at := now();
  return new;
end
$$;
comment on function monitoring._validate_settings() is
'Trigger: validate the settings row, raising a check_violation whose message names the field.';

create or replace function monitoring._validate_silence()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_matcher jsonb;
begin
  if jsonb_typeof(new.matchers) = 'object' then
    new.matchers := (
      select jsonb_agg(
        jsonb_build_object('name', e.key, 'value', e.value, 'isRegex', false, 'isEqual', true) order by e.key
      )
      from jsonb_each_text(new.matchers) as e (key, value)
    );
  end if;
  if new.matchers is null or jsonb_typeof(new.matchers) <> 'array' or jsonb_array_length(new.matchers) = 0 then
    raise exception using
      errcode = 'check_violation',
      message = 'silences.matchers must be a non-empty array of {"name", "value"} matchers',
      hint = 'match on alertname, severity or a label, such as '
        '''[{"name": "alertname", "value": "low_delivery_rate"}]''';
  end if;
  for v_matcher in select m.value from jsonb_array_elements(new.matchers) as m (value) loop
    if jsonb_typeof(v_matcher) <> 'object'
      or jsonb_typeof(v_matcher -> 'name') is distinct from 'string'
      or coalesce(v_matcher ->> 'name', '') = ''
      or jsonb_typeof(v_matcher -> 'value') is distinct from 'string'
      or coalesce(jsonb_typeof(v_matcher -> 'isRegex'), 'boolean') <> 'boolean'
      or coalesce(jsonb_typeof(v_matcher -> 'isEqual'), 'boolean') <> 'boolean' then
      raise exception using
        errcode = 'check_violation',
        message = format('silences.matchers: %s is not a matcher', left(v_matcher::text, 200)),
        hint = 'a matcher is {"name": "<label>", "value": "<text>"} with optional booleans isRegex and isEqual';
    end if;
    if coalesce((v_matcher ->> 'isRegex')::boolean, false) then
      begin
        -- alone (so ')|(.*' cannot break out of the group) and exactly as monitoring._silence_matches
        -- uses it, anchored inside a group (where '(?i)x' and '***=x' are invalid)
        perform '' ~ (v_matcher ->> 'value');
        perform '' ~ ('^(?:' || (v_matcher ->> 'value') || ')$');
      exception when invalid_regular_expression then
        raise exception using
          errcode = 'check_violation',
          message = format('silences.matchers: %L is not a valid regular expression', left(v_matcher ->> 'value', 200)),
          hint = 'use a POSIX regular expression such as ''low_.*'' (it is anchored; no (?flags) or ***= prefixes)';
      end;
    end if;
  end loop;
  if new.starts_at is null or new.ends_at is null or not isfinite(new.starts_at) or not isfinite(new.ends_at)
    or new.ends_at <= new.starts_at then
    raise exception using
      errcode = 'check_violation',
      message = format('silences.ends_at (%s) must be after starts_at (%s), both finite times',
        coalesce(new.ends_at::text, 'null'), coalesce(new.starts_at::text, 'null')),
      hint = 'give an end time such as now() + interval ''2 hours''';
  end if;
  if new.ends_at - new.starts_at > interval '366 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('silences last at most 366 days (got %s)', new.ends_at - new.starts_at),
      hint = 'disable the rule instead (update monitoring.alert_rules set enabled = false), or silence for less';
  end if;
  if new.comment is null or btrim(new.comment) = '' then
    raise exception using
      errcode = 'check_violation',
      message = 'silences.comment must say why the alerts are silenced',
      hint = 'such as ''planned WhatsApp maintenance, ticket OPS-12''';
  end if;
  if new.created_by is null or btrim(new.created_by) = '' then
    raise exception using
      errcode = 'check_violation',
      message = 'silences.created_by must name who created the silence',
      hint = 'such as an e-mail address';
  end if;
  return new;
end
$$;
comment on function monitoring._validate_silence() is
'Trigger: validate and normalize a silence, raising a check_violation whose message names the field.';

create or replace function monitoring._validate_url(
  -- the URL
  p_url text,
  -- the field named in the error, such as channels.url
  p_field text
)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_match text[];
  v_port text;
begin
  v_match := regexp_match(coalesce(p_url, ''), '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#\s]+)([/?#]\S*)?$');
  if v_match is null then
    raise exception using
      errcode = 'check_violation',
      message = format('%s is not a URL', p_field),
      hint = 'use an https URL such as https://example.com/hooks/alerts';
  end if;
  if position('@' in v_match[2]) > 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('%s must not carry credentials before the host', p_field),
      hint = 'put credentials in a signing secret or the URL path, not in user:password@host';
  end if;
  v_port := substring(v_match[2] from ':([^:\]]*)$');
  if v_port is not null and (v_port !~ '^[0-9]{1,5}$' or v_port::integer not between 1 and 65535) then
    raise exception using
      errcode = 'check_violation',
      message = format('%s has port %L, which is not a port number (1-65535)', p_field, left(v_port, 20)),
      hint = 'use a URL such as https://example.com:8443/hooks/alerts, or leave the port out';
  end if;
  if lower(v_match[1]) = 'https' then
    return;
  end if;
  if lower(v_match[1]) = 'http' and lower(v_match[2]) ~ '^(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?$' then
    return;
  end if;
  raise exception using
    errcode = 'check_violation',
    message = format('%s must use https (http only for 127.0.0.1, localhost or [::1]); got %s://%s',
      p_field, lower(v_match[1]), left(v_match[2], 200)),
    hint = 'use an https URL such as https://hooks.slack.com/services/...';
end
$$;
comment on function monitoring._validate_url(text, text) is
'Internal: raise a check_violation naming p_field unless p_url is https (or http on loopback) with a valid port.';

create or replace function monitoring._validate_channel()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
begin
  if new.name is null or new.name !~ '^[a-z][a-z0-9_-]{0,62}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.name %L must be lower-case letters, digits, _ or - (at most 63)', left(new.name, 200)),
      hint = 'use a name such as ops-slack';
  end if;
  if new.kind is null or new.kind not in ('webhook', 'slack', 'discord', 'edge_function') then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.kind must be one of webhook, slack, discord, edge_function (got %L)', left(new.kind, 200)),
      hint = 'use webhook for the spec''s JSON payload';
  end if;
  if new.min_severity is null or new.min_severity not in ('critical', 'warning', 'info') then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.min_severity must be one of critical, warning, info (got %L)', left(new.min_severity, 200)),
      hint = 'use warning to receive warning and critical alerts';
  end if;
  if new.url_secret is null and not (new.kind = 'edge_function' and new.function_name is not null) then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.url_secret must name the secret holding the %s URL', new.kind),
      hint = 'use monitoring.set_channel(name, kind, url) which stores the URL as a secret';
  end if;
  if new.function_name is not null and new.function_name !~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.function_name %L is not an Edge Function name (at most 100 letters, digits, _ or -)',
        left(new.function_name, 200)),
      hint = 'use the function''s folder name, such as alert-receiver';
  end if;

  if new.enabled then
    if new.url_secret is not null then
      perform monitoring._check_secret(new.url_secret, 'channels.url_secret', true);
    end if;
    if new.signing_secret is not null then
      perform monitoring._check_secret(new.signing_secret, 'channels.signing_secret', false);
    end if;
    if new.kind = 'edge_function' then
      select * into v_settings from monitoring.settings as s where s.id;
      if new.url_secret is null then
        perform monitoring._check_secret(v_settings.project_url_secret, 'settings.project_url_secret', true);
      end if;
      perform monitoring._check_secret(v_settings.service_key_secret, 'settings.service_key_secret', false);
    end if;
  end if;

  new.updated_at := now();
  return new;
end
$$;
comment on function monitoring._validate_channel() is
'Trigger: validate a channel (kind, severity, and that its secrets resolve to valid URLs), raising a '
'check_violation naming the field.';

create or replace function monitoring._validate_retention_policy()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.target is null or new.target not in (
    'whatsapp_error_logs', 'alert_history', 'deliveries', 'cron_job_run_details', 'job_runs', 'rule_errors'
  ) then
    raise exception using
      errcode = 'check_violation',
      message = format('retention_policies.target %L is not a table run_retention knows', left(new.target, 200)),
      hint = 'use whatsapp_error_logs, alert_history, deliveries, cron_job_run_details, job_runs or rule_errors';
  end if;
  if new.keep_for is null or new.keep_for not between interval '1 day' and interval '3660 days' then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'retention_policies.keep_for must be at least 1 day and at most 3660 days (got %s)',
        coalesce(new.keep_for::text, 'null')
      ),
      hint = 'use an interval such as ''30 days''; to keep rows forever set enabled = false';
  end if;
  if new.batch_size is null or new.batch_size not between 100 and 100000 then
    raise exception using
      errcode = 'check_violation',
      message = format('retention_policies.batch_size must be between 100 and 100000 (got %s)',
        coalesce(new.batch_size::text, 'null')),
      hint = 'use 10000';
  end if;
  if new.max_batches is null or new.max_batches not between 1 and 10000 then
    raise exception using
      errcode = 'check_violation',
      message = format('retention_policies.max_batches must be between 1 and 10000 (got %s)',
        coalesce(new.max_batches::text, 'null')),
      hint = 'use 100';
  end if;
  return new;
end
$$;
comment on function monitoring._validate_retention_policy() is
'Trigger: validate a retention policy, raising a check_violation whose message names the field.';

create or replace function monitoring._record_failure(
  -- the delivery
  p_id bigint,
  -- now
  p_now timestamptz,
  -- HTTP status of the response, if any
  p_status_code integer,
  -- why the attempt failed
  p_error text,
  -- whether this failure is an attempt not yet counted (nothing was sent)
  p_count_attempt boolean,
  -- whether retrying cannot help (dead at once)
  p_permanent boolean
)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_attempts integer;
  v_status text;
begin
  select * into v_settings from monitoring.settings as s where s.id;
  select d.attempts + case when p_count_attempt then 1 else 0 end into v_attempts
  from monitoring.deliveries as d where d.id = p_id;
  v_status := case when p_permanent or v_attempts >= v_settings.max_attempts then 'dead' else 'retrying' end;
  update monitoring.deliveries as d
  set
    attempts = v_attempts,
    status = v_status,
    last_status_code = p_status_code,
    last_error = left(p_error, 2000),
    last_attempt_at = case when p_count_attempt then p_now else d.last_attempt_at end,
    -- in seconds as numeric: backoff_base * 2^99 overflows the interval type
    next_attempt_at = case
      when v_status = 'retrying'
        then p_now + make_interval(secs => least(
          extract(epoch from v_settings.backoff_cap),
          extract(epoch from v_settings.backoff_base) * power(2::numeric, greatest(v_attempts - 1, 0))
        )::double precision)
    end,
    dead_at = case when v_status = 'dead' then p_now end
  where d.id = p_id;
  return v_status;
end
$$;
comment on function monitoring._record_failure(bigint, timestamptz, integer, text, boolean, boolean) is
'Internal: record a failed attempt: retrying after least(backoff_cap, backoff_base * 2^(attempts-1)), or dead after '
'max_attempts.';


-- =============================================================================================
-- API: Public
-- =============================================================================================

create or replace function monitoring.create_silence(
  -- label matchers: '{"alertname": "low_delivery_rate"}' or an array of {name, value, isRegex, isEqual}
  p_matchers jsonb,
  -- how long the silence lasts
  p_duration interval,
  -- why (required)
  p_comment text,
  -- who
  p_created_by text default current_user,
  -- when it starts
  p_starts_at timestamptz default now()
)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_id bigint;
begin
  -- a negative duration is left to the silences trigger ("ends_at must be after starts_at"); a huge one
  -- would overflow the timestamp before the trigger could name it
  if p_duration is null or p_duration > interval '366 days' then
    raise exception using
      errcode = 'check_violation',
      message = format('create_silence: p_duration must be a positive interval of at most 366 days (got %s)',
        coalesce(p_duration::text, 'null')),
      hint = 'use an interval such as ''2 hours''';
  end if;
  if p_starts_at is null or not isfinite(p_starts_at) then
    raise exception using
      errcode = 'check_violation',
      message = format('create_silence: p_starts_at must be a finite time (got %s)', coalesce(p_starts_at::text, 'null')),
      hint = 'leave it out to start now, or pass a time such as now() + interval ''1 hour''';
  end if;
  insert into monitoring.silences (starts_at, ends_at, matchers, comment, created_by)
  values (p_starts_at, p_starts_at + p_duration, p_matchers, p_comment, p_created_by)
  returning id into v_id;
  return v_id;
end
$$;
comment on function monitoring.create_silence(jsonb, interval, text, text, timestamptz) is
'Create a silence for p_duration (at most 366 days) from p_starts_at; returns its id.';

create or replace function monitoring.record_invocation(
  -- the Edge Function's name, e.g. 'health'
  function_name text,
  -- the HTTP status it answered (>= 500 counts as an error)
  status_code integer,
  -- how long it ran, in ms
  duration_ms numeric,
  -- when it ran (tests and backfills pass it)
  p_now timestamptz default now()
)
returns bigint
language plpgsql
volatile
security definer -- callers get no direct write access to monitoring.function_invocations
set search_path = ''
set jit = off
as $$
declare
  v_id bigint;
begin
  if record_invocation.function_name is null or char_length(record_invocation.function_name) not between 1 and 200 then
    raise exception using
      errcode = 'check_violation',
      message = 'record_invocation: function_name must be 1-200 characters',
      hint = 'pass the Edge Function''s name, such as ''health''';
  end if;
  if record_invocation.status_code is null or record_invocation.status_code not between 100 and 599 then
    raise exception using
      errcode = 'check_violation',
      message = format('record_invocation: status_code must be an HTTP status 100-599 (got %s)',
        coalesce(record_invocation.status_code::text, 'null')),
      hint = 'pass the status the function answered, such as 200';
  end if;
  if record_invocation.duration_ms is null or record_invocation.duration_ms in ('NaN', 'Infinity')
    or record_invocation.duration_ms < 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('record_invocation: duration_ms must be a number >= 0 (got %s)',
        coalesce(record_invocation.duration_ms::text, 'null')),
      hint = 'pass the wall time in ms, such as 120';
  end if;
  if record_invocation.p_now is null or not isfinite(record_invocation.p_now) then
    raise exception using
      errcode = 'check_violation',
      message = format('record_invocation: p_now must be a finite time (got %s)',
        coalesce(record_invocation.p_now::text, 'null')),
      hint = 'leave p_now out (it defaults to now())';
  end if;
  insert into monitoring.function_invocations (function_name, status_code, duration_ms, created_at)
  values (
    record_invocation.function_name,
    record_invocation.status_code,
    record_invocation.duration_ms,
    record_invocation.p_now
  )
  returning id into v_id;
  return v_id;
end
$$;
comment on function monitoring.record_invocation(text, integer, numeric, timestamptz) is
'Log one Edge Function invocation (name, HTTP status, duration ms) for monitoring.function_stats. '
'Returns the new row id; bad arguments raise naming the argument.';

-- get_hourly_stats('infinity') is refused in 20261127030500_hourly_rollups.sql, which redefines it anyway


-- =============================================================================================
-- Triggers
-- =============================================================================================

-- named <table>_validate_nulls so they fire after <table>_validate (triggers fire in name order)
create or replace trigger settings_validate_nulls
before insert or update on monitoring.settings
for each row execute function monitoring._validate_not_null();
create or replace trigger alert_rules_validate_nulls
before insert or update on monitoring.alert_rules
for each row execute function monitoring._validate_not_null();
create or replace trigger channels_validate_nulls
before insert or update on monitoring.channels
for each row execute function monitoring._validate_not_null();
create or replace trigger silences_validate_nulls
before insert or update on monitoring.silences
for each row execute function monitoring._validate_not_null();
create or replace trigger retention_policies_validate_nulls
before insert or update on monitoring.retention_policies
for each row execute function monitoring._validate_not_null();
create or replace trigger jobs_validate_nulls
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_not_null();
create or replace trigger health_thresholds_validate_nulls
before insert or update on monitoring.health_thresholds
for each row execute function monitoring._validate_not_null();
create or replace trigger rollup_settings_validate_nulls
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_not_null();

create or replace trigger health_thresholds_validate
before insert or update on monitoring.health_thresholds
for each row execute function monitoring._validate_health_thresholds();
create or replace trigger rollup_settings_validate
before insert or update on monitoring.rollup_settings
for each row execute function monitoring._validate_rollup_settings();

create or replace trigger rule_state_finite_times
before insert or update on monitoring.rule_state
for each row execute function monitoring._validate_finite_times(
  'last_checked_at', 'last_evaluated_at!', 'last_ok_at!', 'last_error_at!'
);
create or replace trigger rule_errors_finite_times
before insert on monitoring.rule_errors
for each row execute function monitoring._validate_finite_times('occurred_at');
-- scheduled_at may be reset to null (tests and operators do), never set to infinity: the dead man's
-- switch counts from it
create or replace trigger jobs_finite_times
before insert or update on monitoring.jobs
for each row execute function monitoring._validate_finite_times('scheduled_at');
create or replace trigger rollup_state_finite_times
before update on monitoring.rollup_state
for each row execute function monitoring._validate_finite_times('refreshed_for');
create or replace trigger deliveries_finite_times
before insert or update on monitoring.deliveries
for each row execute function monitoring._validate_delivery_times();


-- =============================================================================================
-- Privileges (as for the other trigger functions: not for anon/authenticated)
-- =============================================================================================

revoke all on function monitoring._validate_not_null() from public, anon, authenticated;
revoke all on function monitoring._validate_finite_times() from public, anon, authenticated;
revoke all on function monitoring._validate_delivery_times() from public, anon, authenticated;
revoke all on function monitoring._validate_health_thresholds() from public, anon, authenticated;
revoke all on function monitoring._validate_rollup_settings() from public, anon, authenticated;
revoke all on function monitoring.create_silence(jsonb, interval, text, text, timestamptz)
from public, anon, authenticated;
revoke all on function monitoring.record_invocation(text, integer, numeric, timestamptz)
from public, anon, authenticated;
revoke all on function monitoring.get_hourly_stats(timestamptz) from public, anon, authenticated;
grant execute on function monitoring._validate_not_null() to service_role;
grant execute on function monitoring._validate_finite_times() to service_role;
grant execute on function monitoring._validate_delivery_times() to service_role;
grant execute on function monitoring._validate_health_thresholds() to service_role;
grant execute on function monitoring._validate_rollup_settings() to service_role;
