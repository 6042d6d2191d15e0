-- Alert rules: the settings, the cron-expression helpers that decide when a rule is due, and
-- the rules table itself (each row: what to measure, how to compare, when, for how long, how
-- often to repeat, the runbook). The check function behind each rule is in 80_checks.sql; what
-- happens when a rule breaches (pending, firing, resolved) is in 50_alerts.sql.

-- ---------------------------------------------------------------------------------------------
-- Settings (one row)
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.settings (
  id boolean primary key default true,
  service_name text not null default 'WhatsApp Notifications',
  backoff_base interval not null default interval '30 seconds',
  backoff_cap interval not null default interval '30 minutes',
  max_attempts integer not null default 8,
  http_timeout_ms integer not null default 5000,
  response_grace interval not null default interval '1 minute',
  dispatch_batch integer not null default 100,
  job_mode text not null default 'db',
  project_url_secret text not null default 'project_url',
  service_key_secret text not null default 'service_role_key',
  group_by text[] not null default '{severity}'::text[],
  group_wait interval not null default interval '0',
  group_interval interval not null default interval '5 minutes',
  updated_at timestamptz not null default now()
);

comment on table monitoring.settings is
'Alerting settings, one row: delivery retry policy, HTTP timeout, job mode and the names of the secrets used.';

comment on column monitoring.settings.id is 'Always true: the table holds exactly one row.';

comment on column monitoring.settings.service_name is 'The "service" field of every webhook payload.';

comment on column monitoring.settings.backoff_base is
'Delay before the first retry of a failed delivery; doubled for each further attempt.';

comment on column monitoring.settings.backoff_cap is 'Longest delay between two delivery attempts.';

comment on column monitoring.settings.max_attempts is
'Delivery attempts before a delivery is dead-lettered (status dead).';

comment on column monitoring.settings.http_timeout_ms is 'timeout_milliseconds passed to net.http_post.';

comment on column monitoring.settings.response_grace is
'Extra wait after the HTTP timeout before a request without a row in net._http_response counts as failed.';

comment on column monitoring.settings.dispatch_batch is 'Deliveries sent per dispatcher run at most.';

comment on column monitoring.settings.job_mode is
'Mode of the last monitoring.schedule_jobs call: db (checks run in SQL) or edge (check-whatsapp-errors calls the '
'Edge Function).';

comment on column monitoring.settings.project_url_secret is
'Name of the secret holding the project URL (https://<ref>.supabase.co), used for Edge Function calls.';

comment on column monitoring.settings.service_key_secret is
'Name of the secret holding the service role key sent as "Authorization: Bearer" to Edge Functions.';

comment on column monitoring.settings.group_by is
'Labels whose values make a notification group (as Alertmanager''s group_by): alerts due in one evaluation with '
'the same values are sent to a channel as one message. Known labels: alertname, severity, service, condition, the '
'rules'' labels and their instance labels (session_id, function, job).';

comment on column monitoring.settings.group_wait is
'How long a new group waits for more alerts before its first message (Alertmanager group_wait); 0 sends at the '
'evaluation that made it due (evaluations run each minute).';

comment on column monitoring.settings.group_interval is
'After a group''s message, how long before the next message of that group with new or resolved alerts '
'(Alertmanager group_interval).';

insert into monitoring.settings (id) values (true) on conflict (id) do nothing;

-- ---------------------------------------------------------------------------------------------
-- Cron expressions (pg_cron 1.4 syntax: 5 fields, minute granularity, GMT)
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._cron_field(
  -- one field of a cron expression, such as '*/15' or '1-5' or 'mon,wed'
  p_token text,
  -- lowest and highest value of that field
  p_min integer,
  p_max integer,
  -- names accepted for the values p_min.. (months, week days), or null
  p_names text[],
  -- the field's name for messages, such as 'minute'
  p_label text,
  -- the column being validated for messages, such as 'alert_rules.schedule'
  p_column text
)
returns integer[]
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_item text;
  v_parts text[];
  v_match text[];
  v_lo integer;
  v_hi integer;
  v_step integer;
  v_out integer[] := '{}'::integer [];
  v_hint constant text :=
    'use 5 fields (minute hour day-of-month month day-of-week) such as "*/15 * * * *"; '
    || 'each field is *, a number, a range a-b, a list a,b or a step */n or a-b/n';
begin
  if p_token is null or p_token = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('%s: the %s field is empty', p_column, p_label),
      hint = v_hint;
  end if;

  foreach v_item in array string_to_array(lower(p_token), ',') loop
    v_match := regexp_match(v_item, '^(\*|[a-z0-9]+(-[a-z0-9]+)?)(/([0-9]+))?$');
    if v_match is null then
      raise exception using
        errcode = 'check_violation',
        message = format('%s: %L is not a valid %s field', p_column, v_item, p_label),
        hint = v_hint;
    end if;

    v_step := coalesce(v_match[4]::integer, 1);
    if v_match[1] = '*' then
      v_lo := p_min;
      v_hi := p_max;
    else
      v_parts := string_to_array(v_match[1], '-');
      if v_match[4] is not null and cardinality(v_parts) = 1 then
        raise exception using
          errcode = 'check_violation',
          message = format('%s: %L (a single value with a step) is not accepted by pg_cron 1.4', p_column, v_item),
          hint = format('write the step over a range such as %s-%s/%s', v_parts[1], p_max, v_step);
      end if;
      v_lo := monitoring._cron_value(v_parts[1], p_min, p_names);
      v_hi := coalesce(monitoring._cron_value(v_parts[2], p_min, p_names), v_lo);
    end if;

    if v_lo = -1 or v_hi = -1 then
      raise exception using
        errcode = 'check_violation',
        message = format('%s: %L is not a number or name valid in the %s field', p_column, v_item, p_label),
        hint = v_hint;
    end if;
    if v_lo is null or v_hi is null or v_lo < p_min or v_hi > p_max or v_lo > v_hi then
      raise exception using
        errcode = 'check_violation',
        message = format('%s: %L is out of range for the %s field (%s-%s)', p_column, v_item, p_label, p_min, p_max),
        hint = v_hint;
    end if;
    if v_step < 1 or v_step > p_max then
      raise exception using
        errcode = 'check_violation',
        message = format('%s: step %s in %L is out of range for the %s field (1-%s)',
          p_column, v_step, v_item, p_label, p_max),
        hint = v_hint;
    end if;

    v_out := v_out || array(select g.v from generate_series(v_lo, v_hi, v_step) as g (v));
  end loop;

  return array(select distinct u.v from unnest(v_out) as u (v) order by u.v);
end
$$;

comment on function monitoring._cron_field(text, integer, integer, text[], text, text) is
'Internal: expand one cron field into its sorted values, raising a check_violation naming the column on bad syntax.';

create or replace function monitoring._cron_value(
  -- a number or a name (jan..dec, sun..sat)
  p_token text,
  -- the value of the first name
  p_min integer,
  -- accepted names, or null
  p_names text[]
)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case
    when p_token is null then null
    when p_token ~ '^[0-9]{1,4}$' then p_token::integer
    when array_position(p_names, p_token) is not null then p_min + array_position(p_names, p_token) - 1
    else -1
  end
$$;

comment on function monitoring._cron_value(text, integer, text[]) is
'Internal: the value of one cron token (a number, or a month or week-day name); -1 when invalid.';

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

  -- each field as a bit mask (bit v set: value v runs): small enough to keep in rule_state, which
  -- the evaluator rewrites every minute
  return jsonb_build_object(
    'minute', (select coalesce(bit_or(1::bigint << u.v), 0) from unnest(
      monitoring._cron_field(v_fields[1], 0, 59, null, 'minute', p_column)
    ) as u (v)),
    'hour', (select coalesce(bit_or(1::bigint << u.v), 0) from unnest(
      monitoring._cron_field(v_fields[2], 0, 23, null, 'hour', p_column)
    ) as u (v)),
    'dom', (select coalesce(bit_or(1::bigint << u.v), 0) from unnest(v_dom) as u (v)),
    'month', (select coalesce(bit_or(1::bigint << u.v), 0) from unnest(v_month) as u (v)),
    'dow', (select coalesce(bit_or(1::bigint << u.v), 0) from unnest(v_dow) as u (v)),
    'dom_star', left(v_fields[3], 1) = '*',
    'dow_star', left(v_fields[5], 1) = '*'
  );
end
$$;

comment on function monitoring._cron_parse(text, text) is
'Internal: validate a 5-field pg_cron 1.4 expression and return its expanded fields as jsonb (minute, hour, dom, '
'month, dow: bit masks, bit v set when value v runs; dom_star, dow_star: the day field is *); raises a '
'check_violation naming p_column (also for numbers out of range and for schedules that never run).';

create or replace function monitoring._cron_times(
  -- a valid cron expression
  p_schedule text,
  -- first and last minute to consider (inclusive, truncated to minutes, read in GMT as pg_cron does)
  p_from timestamptz,
  p_to timestamptz
)
returns setof timestamptz
language sql
stable
set search_path = ''
as $$
  with spec as (
    select
      monitoring._cron_parse(p_schedule) as j
  ),

  arrays as (
    select
      array(select v from generate_series(0, 59) as v where ((spec.j ->> 'minute')::bigint >> v) & 1 = 1) as minutes,
      array(select v from generate_series(0, 23) as v where ((spec.j ->> 'hour')::bigint >> v) & 1 = 1) as hours,
      array(select v from generate_series(1, 31) as v where ((spec.j ->> 'dom')::bigint >> v) & 1 = 1) as doms,
      array(select v from generate_series(1, 12) as v where ((spec.j ->> 'month')::bigint >> v) & 1 = 1) as months,
      array(select v from generate_series(0, 6) as v where ((spec.j ->> 'dow')::bigint >> v) & 1 = 1) as dows,
      (spec.j ->> 'dom_star')::boolean as dom_star,
      (spec.j ->> 'dow_star')::boolean as dow_star
    from spec
  ),

  days as (
    select d.day::date as day
    from arrays as a
    cross join generate_series(
      (date_trunc('day', p_from at time zone 'UTC'))::timestamp,
      (date_trunc('day', p_to at time zone 'UTC'))::timestamp,
      interval '1 day'
    ) as d (day)
    where
      extract(month from d.day)::integer = any(a.months)
      and case
        when a.dom_star or a.dow_star
          then
            extract(day from d.day)::integer = any(a.doms)
            and extract(dow from d.day)::integer = any(a.dows)
        else
          extract(day from d.day)::integer = any(a.doms)
          or extract(dow from d.day)::integer = any(a.dows)
      end
  )

  select t.at
  from days
  cross join arrays as a
  cross join unnest(a.hours) as h (hour)
  cross join unnest(a.minutes) as m (minute)
  cross join lateral (
    select (days.day + make_interval(hours => h.hour, mins => m.minute)) at time zone 'UTC' as at
  ) as t
  where t.at between date_trunc('minute', p_from) and date_trunc('minute', p_to)
  order by t.at
$$;

comment on function monitoring._cron_times(text, timestamptz, timestamptz) is
'Internal: the minutes between p_from and p_to (inclusive) at which pg_cron would run p_schedule (GMT).';

create or replace function monitoring._cron_matches(
  -- a schedule as monitoring._cron_parse() expands it
  p_spec jsonb,
  -- a minute
  p_at timestamptz
)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
declare
  -- pg_cron reads schedules in GMT
  v_at timestamp := p_at at time zone 'UTC';
  v_dom boolean := ((p_spec ->> 'dom')::bigint >> extract(day from v_at)::integer) & 1 = 1;
  v_dow boolean := ((p_spec ->> 'dow')::bigint >> extract(dow from v_at)::integer) & 1 = 1;
begin
  return ((p_spec ->> 'minute')::bigint >> extract(minute from v_at)::integer) & 1 = 1
    and ((p_spec ->> 'hour')::bigint >> extract(hour from v_at)::integer) & 1 = 1
    and ((p_spec ->> 'month')::bigint >> extract(month from v_at)::integer) & 1 = 1
    -- as in monitoring._cron_times: with a * in either day field both must match, else either
    and case
      when (p_spec ->> 'dom_star')::boolean or (p_spec ->> 'dow_star')::boolean then v_dom and v_dow
      else v_dom or v_dow
    end;
end
$$;

comment on function monitoring._cron_matches(jsonb, timestamptz) is
'Internal: true when a schedule (as monitoring._cron_parse() expands it) runs in the minute of p_at (GMT, as '
'pg_cron); the minute-by-minute test of monitoring._cron_due.';

create or replace function monitoring._cron_due(
  -- a valid cron expression
  p_schedule text,
  -- when the schedule was last looked at (null: never, so it is due)
  p_after timestamptz,
  -- now
  p_now timestamptz,
  -- p_schedule as monitoring._cron_parse() expands it, when the caller kept it (null: parsed here)
  p_spec jsonb default null
)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  v_from timestamptz;
  v_spec jsonb;
begin
  -- evaluate_rules(p_now => null or 'infinity') must fail here, before the scheduled evaluator
  -- stores that p_now as rule_state.last_checked_at (infinity: no rule would ever be due again)
  if p_now is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('evaluate_rules: p_now must be a finite time (got %s)', coalesce(p_now::text, 'null')),
      hint = 'leave p_now out (it defaults to now()) or pass a real time such as now() - interval ''1 hour''';
  end if;
  if p_after is null then
    return true;
  end if;
  -- the minutes after the last look up to now (at most 31 days: a delayed job catches up once)
  v_from := date_trunc('minute', greatest(date_trunc('minute', p_after) + interval '1 minute', p_now - interval '31 days'));
  if v_from > p_now then
    return false;
  end if;
  if p_now - v_from > interval '2 hours' then
    return exists (select 1 from monitoring._cron_times(p_schedule, v_from, p_now));
  end if;
  -- the usual case, a look a minute ago: test those few minutes one by one
  v_spec := coalesce(p_spec, monitoring._cron_parse(p_schedule));
  return exists (
    select 1 from pg_catalog.generate_series(v_from, date_trunc('minute', p_now), interval '1 minute') as t (at)
    where monitoring._cron_matches(v_spec, t.at)
  );
end
$$;

comment on function monitoring._cron_due(text, timestamptz, timestamptz, jsonb) is
'Internal: true when p_schedule has a run time in the minutes after p_after up to p_now (so a delayed job catches '
'up, over at most 31 days); raises when p_now is null or infinite. p_spec: the parsed schedule, if the caller kept '
'it (evaluate_rules keeps it in rule_state).';

create or replace function monitoring._cron_period(
  -- a valid cron expression
  p_schedule text
)
returns interval
language sql
stable
set search_path = ''
as $$
  with spec as (
    select monitoring._cron_parse(p_schedule) as j
  ),

  span as (
    -- many runs a day: two weeks show the longest gap; few runs a day: look at a whole year
    select case
      when length(replace(((spec.j ->> 'minute')::bigint)::bit(64)::text, '0', ''))
        * length(replace(((spec.j ->> 'hour')::bigint)::bit(64)::text, '0', '')) > 24
        then interval '14 days'
      else interval '400 days'
    end as length
    from spec
  ),

  runs as (
    select t.at
    from span
    cross join monitoring._cron_times(
      p_schedule, timestamptz '2024-01-01 00:00+00', timestamptz '2024-01-01 00:00+00' + span.length
    ) as t (at)
  ),

  gaps as (
    select runs.at - lag(runs.at) over (order by runs.at) as gap
    from runs
  )

  select coalesce(max(gaps.gap), interval '366 days')
  from gaps
$$;

comment on function monitoring._cron_period(text) is
'Internal: the longest gap between two runs of p_schedule (a job is stalled after twice this without success).';

-- ---------------------------------------------------------------------------------------------
-- Alert rules
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.alert_rules (
  name text primary key,
  description text not null,
  severity text not null,
  metric text not null,
  check_function text not null,
  comparator text not null default '>',
  threshold numeric not null,
  target numeric,
  unit text,
  "window" interval,
  min_volume numeric,
  for_period interval not null default interval '0',
  repeat_interval interval not null default interval '4 hours',
  schedule text not null default '* * * * *',
  enabled boolean not null default true,
  runbook text[] not null,
  labels jsonb not null default '{}'::jsonb,
  keep_firing_for interval not null default interval '0',
  nodata_state text not null default 'ok',
  error_state text not null default 'error',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table monitoring.alert_rules is
'Alert rules (editable): what is checked, when it breaches, how long it must hold (for_period), how often it '
'repeats and which runbook it carries.';

comment on column monitoring.alert_rules.name is 'Rule name; also the alertname label of its alerts.';

comment on column monitoring.alert_rules.severity is 'critical, warning or info; channels filter on it (min_severity).';

comment on column monitoring.alert_rules.metric is 'The "metric" field of the webhook payload, such as delivery_rate.';

comment on column monitoring.alert_rules.check_function is
'Function monitoring.<check_function>(monitoring.alert_rules, timestamptz) returning (labels, value, volume, '
'message) rows, one per alert instance.';

comment on column monitoring.alert_rules.comparator is 'How value is compared with threshold: >, >=, < or <=.';

comment on column monitoring.alert_rules.threshold is
'The value at which the rule breaches (with comparator), in unit.';

comment on column monitoring.alert_rules.target is 'The healthy target from the spec (documentation only), in unit.';

comment on column monitoring.alert_rules.unit is 'Unit of value, threshold and target.';

comment on column monitoring.alert_rules."window" is
'Window the metric is computed over (must be one the underlying view offers); null when the metric has none.';

comment on column monitoring.alert_rules.min_volume is
'The rule breaches only when the check reports a volume above this (such as more than 10 messages); null: no minimum.';

comment on column monitoring.alert_rules.for_period is
'How long the condition must hold before pending becomes firing (Alertmanager "for"); 0 fires at once.';

comment on column monitoring.alert_rules.repeat_interval is 'A firing alert is notified again after this long.';

comment on column monitoring.alert_rules.schedule is
'When the rule is evaluated, as a 5-field pg_cron expression in GMT (minute granularity).';

comment on column monitoring.alert_rules.runbook is 'Incident-response steps included in every notification.';

comment on column monitoring.alert_rules.labels is
'Extra labels (a JSON object of strings) added to every alert of the rule.';

comment on column monitoring.alert_rules.keep_firing_for is
'Anti-flap (Grafana keep_firing_for): a firing alert whose condition clears stays firing, marked recovering, for '
'this long and resolves only if the condition stays clear; 0 resolves at once.';

comment on column monitoring.alert_rules.nodata_state is
'What a run without data means (the check reports no volume > 0 although the rule has seen data before): nodata '
'fires a no-data alert (label condition=no_data), ok evaluates as usual, keep_last keeps every alert as it is.';

comment on column monitoring.alert_rules.error_state is
'What a failing check means (recorded in rule_errors): error fires an error alert (label condition=error), ok '
'clears the rule''s alerts (resolving after keep_firing_for), keep_last keeps them as they are.';

-- What a check function returns per alert instance (create type has no "if not exists")
do $$
begin
  if to_regtype('monitoring.check_result') is null then
    create type monitoring.check_result as (labels jsonb, value numeric, volume numeric, message text);
  end if;
end
$$;

comment on type monitoring.check_result is
'One alert instance reported by a rule''s check function: labels (JSON object of strings), value compared with the '
'threshold, volume compared with min_volume, message.';

-- The limits of alert_rules and settings (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, min_value, min_exclusive, max_value, allowed, hint) values
('alert_rules', 'severity', null, false, null, '{critical,warning,info}', 'use critical, warning or info'),
('alert_rules', 'comparator', null, false, null, '{>,>=,<,<=}', 'use > for "more than" and < for "less than"'),
('alert_rules', 'threshold', '0', true, null, null, 'use a positive number such as 50'),
('alert_rules', 'target', null, false, null, null, 'use the healthy value from the spec, such as 95, or null'),
('alert_rules', 'window', '0', true, '31 days', null, 'use an interval such as ''1 hour'''),
('alert_rules', 'min_volume', '0', false, null, null, 'use 0 or a positive count such as 10, or null for no minimum'),
(
  'alert_rules', 'for_period', '0', false, '366 days', null,
  'use ''0'' to fire at once or an interval such as ''5 minutes'''
),
('alert_rules', 'repeat_interval', '1 minute', false, '366 days', null, 'use an interval such as ''4 hours'''),
(
  'alert_rules', 'keep_firing_for', '0', false, '1 day', null,
  'use ''0'' to resolve at once or an interval such as ''30 minutes'''
),
(
  'alert_rules', 'nodata_state', null, false, null, '{nodata,ok,keep_last}',
  'use nodata to alert when the data stops, ok to treat it as healthy, keep_last to keep the last state'
),
(
  'alert_rules', 'error_state', null, false, null, '{error,ok,keep_last}',
  'use error to alert when the check fails, ok to resolve, keep_last to keep the last state'
),
('settings', 'group_wait', '0', false, '1 hour', null, 'use ''0'' or an interval such as ''30 seconds'''),
('settings', 'group_interval', '0', false, '1 day', null, 'use an interval such as ''5 minutes'''),
('settings', 'backoff_base', '0', true, '1 day', null, 'use an interval such as ''30 seconds'''),
('settings', 'backoff_cap', null, false, '7 days', null, 'use an interval such as ''30 minutes'''),
('settings', 'max_attempts', '1', false, '100', null, 'use a count such as 8'),
('settings', 'http_timeout_ms', '100', false, '300000', null, 'use milliseconds such as 5000'),
('settings', 'response_grace', '0', false, '1 day', null, 'use an interval such as ''1 minute'''),
('settings', 'dispatch_batch', '1', false, '10000', null, 'use a count such as 100'),
(
  'settings', 'job_mode', null, false, null, '{db,edge}',
  'call monitoring.schedule_jobs(''db'') or monitoring.schedule_jobs(''edge'')'
)
on conflict (table_name, column_name) do nothing;

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
  if new.metric is null or btrim(new.metric) = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('alert_rules.metric of %s must not be empty', new.name),
      hint = 'name the metric as the webhook payload shows it, such as delivery_rate';
  end if;
  -- threshold is > 0 and finite by its limit (alert_rules_limits); a percentage is also <= 100
  if new.unit = '%' and new.threshold > 100 then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'alert_rules.threshold of %s is a percentage and must be <= 100 (got %s)', new.name, new.threshold
      ),
      hint = 'use a percentage such as 90';
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
      where
        jsonb_typeof(l.v) <> 'string' or l.k !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$'
        or l.k in ('alertname', 'severity', 'condition')
    ) then
    raise exception using
      errcode = 'check_violation',
      message = format(
        'alert_rules.labels must be a JSON object of strings (got %s)', left(coalesce(new.labels::text, 'null'), 200)
      ),
      hint = 'use an object such as ''{"team": "ops"}'': names are letters, digits and _ (Prometheus label names); '
        || 'alertname and severity come from the rule, condition from the evaluator';
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
'Trigger: validate what an alert rule''s limits (monitoring._limits) cannot say: name, texts, percentage threshold, '
'schedule, runbook, labels and check function, raising a check_violation naming the field with the fix as hint.';

create or replace trigger alert_rules_validate
before insert or update on monitoring.alert_rules
for each row execute function monitoring._validate_alert_rule();

create or replace function monitoring._validate_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_unknown text;
begin
  if new.service_name is null or btrim(new.service_name) = '' or char_length(new.service_name) > 200 then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.service_name must be 1-200 characters (got %s characters)',
        coalesce(char_length(btrim(new.service_name))::text, 'null')),
      hint = 'use a name such as ''WhatsApp Notifications''';
  end if;
  -- both are bounded by their limits (settings_limits, which run first); the cap also by the base
  if new.backoff_cap < new.backoff_base then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.backoff_cap must be >= backoff_base (got %s < %s)', new.backoff_cap, new.backoff_base),
      hint = 'use an interval such as ''30 minutes''';
  end if;
  if coalesce(new.project_url_secret, '') !~ '^[A-Za-z0-9_.:-]{1,200}$'
    or coalesce(new.service_key_secret, '') !~ '^[A-Za-z0-9_.:-]{1,200}$' then
    raise exception using
      errcode = 'check_violation',
      message = 'settings.project_url_secret and settings.service_key_secret must name secrets '
        || '(1-200 letters, digits or _ . : -)',
      hint = 'use the defaults project_url and service_role_key';
  end if;
  select string_agg(g.label, ', ' order by g.ord) into v_unknown
  from unnest(new.group_by) with ordinality as g (label, ord)
  where g.label is null or g.label <> all(monitoring._known_labels());
  if v_unknown is not null or cardinality(new.group_by) > 10 then
    raise exception using
      errcode = 'check_violation',
      message = format('settings.group_by: unknown label(s) %s (at most 10 labels)', coalesce(v_unknown, 'none')),
      hint = format('group by labels the alerts carry: %s; ''{}'' sends one message per evaluation',
        array_to_string(monitoring._known_labels(), ', '));
  end if;
  new.updated_at := now();
  return new;
end
$$;

comment on function monitoring._validate_settings() is
'Trigger: validate what the settings'' limits (monitoring._limits) cannot say: service name, backoff_cap against '
'backoff_base, secret names, raising a check_violation whose message names the field.';

create or replace trigger settings_validate
before insert or update on monitoring.settings
for each row execute function monitoring._validate_settings();

create or replace function monitoring._severity_rank(
  -- critical, warning or info
  p_severity text
)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_severity when 'critical' then 3 when 'warning' then 2 when 'info' then 1 end
$$;

comment on function monitoring._severity_rank(text) is 'Internal: 3 for critical, 2 for warning, 1 for info.';

alter table monitoring.settings enable row level security;

alter table monitoring.alert_rules enable row level security;

-- get_hourly_stats('infinity') is refused by get_hourly_stats itself (20_views.sql)


-- =============================================================================================
-- Triggers
-- =============================================================================================

-- triggers fire in name order: <table>_limits, <table>_single_row, <table>_validate, then
-- <table>_validate_nulls (a not-null column neither of the others names)
create or replace trigger settings_limits
before insert or update on monitoring.settings
for each row execute function monitoring._validate_limits();

create or replace trigger settings_single_row
before insert or update on monitoring.settings
for each row execute function monitoring._validate_single_row();

create or replace trigger alert_rules_limits
before insert or update on monitoring.alert_rules
for each row execute function monitoring._validate_limits();

create or replace trigger settings_validate_nulls
before insert or update on monitoring.settings
for each row execute function monitoring._validate_not_null();

create or replace trigger alert_rules_validate_nulls
before insert or update on monitoring.alert_rules
for each row execute function monitoring._validate_not_null();
