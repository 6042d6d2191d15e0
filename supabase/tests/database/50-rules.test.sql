-- Test: alert rules are seeded with the spec's values, and every bad edit of rules, settings, jobs,
-- retention policies and silences is rejected with a message naming the field and a hint.
begin;
create extension if not exists pgtap with schema extensions;
select plan(73);

-- The message and hint of the error a statement raises (null when it succeeds).
create function pg_temp.error_of(p_sql text)
returns text
language plpgsql
as $$
declare
  v_message text;
  v_hint text;
  v_state text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint, v_state = returned_sqlstate;
  return v_state || ': ' || v_message || ' | hint: ' || coalesce(v_hint, '');
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Seeds
-- ---------------------------------------------------------------------------------------------

select set_eq(
  'select name from monitoring.alert_rules',
  array[
    'whatsapp_disconnected', 'low_delivery_rate', 'high_error_rate', 'error_rate_webhook', 'slow_queue',
    'slow_delivery', 'function_errors', 'function_latency', 'function_availability', 'slow_queries',
    'stale_session', 'monitor_stalled'
  ],
  'the twelve rules of the issue are seeded'
);

select results_eq(
  $$
  select name, severity, comparator, threshold, "window", min_volume, schedule
  from monitoring.alert_rules
  where name in ('whatsapp_disconnected', 'low_delivery_rate', 'high_error_rate', 'error_rate_webhook')
  order by name
  $$,
  $$
  values
  ('error_rate_webhook'::text, 'warning'::text, '>'::text, 50::numeric, interval '1 hour', null::numeric, '0 * * * *'::text),
  ('high_error_rate', 'warning', '>', 20, interval '1 hour', null, '*/15 * * * *'),
  ('low_delivery_rate', 'warning', '<', 90, interval '1 hour', 10, '*/15 * * * *'),
  ('whatsapp_disconnected', 'critical', '>', 5, null, null, '* * * * *')
  $$,
  'the spec''s critical metrics: disconnected > 5 min every minute, delivery < 90 % over 1 h with > 10 messages, '
  || '> 20 errors per hour, the check-error-rate > 50 hourly'
);

select results_eq(
  $$
  select name, threshold, target, unit
  from monitoring.alert_rules
  where name in ('slow_queue', 'slow_delivery', 'function_errors', 'function_latency', 'function_availability',
    'slow_queries', 'monitor_stalled')
  order by name
  $$,
  $$
  values
  ('function_availability'::text, 5::numeric, null::numeric, '%'::text),
  ('function_errors', 10, null, 'errors'),
  ('function_latency', 5000, 2000, 'ms'),
  ('monitor_stalled', 2, null, 'periods'),
  ('slow_delivery', 5, 2, 's'),
  ('slow_queries', 500, 100, 'ms'),
  ('slow_queue', 60, 30, 's')
  $$,
  'the spec''s performance thresholds and targets'
);

select is(
  (
    select "window" from monitoring.alert_rules
    where name = 'function_errors'
  ),
  interval '5 minutes',
  'function_errors counts errors over 5 minutes'
);

select is(
  (
    select count(*)::integer from monitoring.alert_rules
    where cardinality(runbook) >= 2
  ),
  12,
  'every seeded rule carries a runbook'
);

select ok(
  (
    select runbook @> array['Re-scan QR code if needed'] from monitoring.alert_rules
    where name = 'whatsapp_disconnected'
  ),
  'whatsapp_disconnected carries the spec''s "WhatsApp Disconnected" response steps'
);

select ok(
  (
    select
      bool_and(
        to_regprocedure(format('monitoring.%I(monitoring.alert_rules, timestamptz)', check_function)) is not null
      )
    from monitoring.alert_rules
  ),
  'every rule''s check function exists'
);

-- ---------------------------------------------------------------------------------------------
-- Rule validation: each bad value is rejected naming the field
-- ---------------------------------------------------------------------------------------------

select matches(
  pg_temp.error_of($$update monitoring.alert_rules set threshold = -1 where name = 'high_error_rate'$$),
  '^23514: alert_rules\.threshold must be > 0 \(got -1\) \| hint: use a positive number such as 50$',
  'a negative threshold is rejected: check_violation, message naming alert_rules.threshold, hint with the fix'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set threshold = 0 where name = 'high_error_rate'$$),
  'alert_rules\.threshold must be > 0',
  'a zero threshold is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set threshold = null where name = 'high_error_rate'$$),
  'alert_rules\.threshold must be > 0 \(got null\)',
  'a null threshold is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set threshold = 150 where name = 'low_delivery_rate'$$),
  'alert_rules\.threshold of low_delivery_rate is a percentage and must be <= 100',
  'a percentage threshold above 100 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set "window" = interval '-1 hour' where name = 'high_error_rate'$$),
  'alert_rules\.window must be a positive interval.*hint: use an interval such as',
  'a negative window is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set "window" = interval '0' where name = 'high_error_rate'$$),
  'alert_rules\.window must be a positive interval',
  'a zero window is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set "window" = interval '40 days' where name = 'high_error_rate'$$),
  'alert_rules\.window must be a positive interval of at most 31 days',
  'a window over 31 days is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set severity = 'urgent' where name = 'high_error_rate'$$),
  '^23514: alert_rules\.severity must be one of critical, warning, info \(got ''urgent''\) \| hint: use critical',
  'an unknown severity is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set severity = null where name = 'high_error_rate'$$),
  'alert_rules\.severity must be one of',
  'a null severity is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set comparator = '=' where name = 'high_error_rate'$$),
  'alert_rules\.comparator must be one of >, >=, <, <=',
  'an unknown comparator is rejected'
);
select matches(
  pg_temp.error_of(
    $$update monitoring.alert_rules set for_period = interval '-5 minutes' where name = 'high_error_rate'$$
  ),
  'alert_rules\.for_period must be >= 0',
  'a negative for period is rejected'
);
select matches(
  pg_temp.error_of(
    $$update monitoring.alert_rules set repeat_interval = interval '10 seconds' where name = 'high_error_rate'$$
  ),
  'alert_rules\.repeat_interval must be at least 1 minute',
  'a repeat interval under a minute is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set min_volume = -1 where name = 'low_delivery_rate'$$),
  'alert_rules\.min_volume must be >= 0',
  'a negative minimum volume is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set name = 'High Errors' where name = 'high_error_rate'$$),
  'alert_rules\.name ''High Errors'' must be lower-case snake_case',
  'a name that is not snake_case is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set runbook = '{}' where name = 'high_error_rate'$$),
  'alert_rules\.runbook of high_error_rate must have at least one step',
  'an empty runbook is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set labels = '{"team": 1}' where name = 'high_error_rate'$$),
  'alert_rules\.labels must be a JSON object of strings',
  'labels with a non-string value are rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set labels = '["ops"]' where name = 'high_error_rate'$$),
  'alert_rules\.labels must be a JSON object of strings',
  'labels that are not an object are rejected'
);
select matches(
  pg_temp.error_of(
    $$update monitoring.alert_rules set check_function = '_check_nothing' where name = 'high_error_rate'$$
  ),
  'alert_rules\.check_function monitoring\._check_nothing\(monitoring\.alert_rules, timestamptz\) does not exist',
  'a check function that does not exist is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set description = ' ' where name = 'high_error_rate'$$),
  'alert_rules\.description of high_error_rate must not be empty',
  'an empty description is rejected'
);

-- cron schedules: pg_cron 1.4 syntax, 5 fields, minute granularity
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '30 seconds' where name = 'high_error_rate'$$),
  '^23514: alert_rules\.schedule ''30 seconds'' uses seconds, which pg_cron 1\.4 does not support '
  || '\| hint: use 5 fields',
  'a seconds schedule is rejected (pg_cron 1.4 has minute granularity)'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '* * * *' where name = 'high_error_rate'$$),
  'alert_rules\.schedule ''\* \* \* \*'' must have 5 fields, not 4',
  'a 4-field schedule is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '0 0 * * * *' where name = 'high_error_rate'$$),
  'alert_rules\.schedule .* must have 5 fields, not 6',
  'a 6-field (seconds) schedule is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '@hourly' where name = 'high_error_rate'$$),
  'alert_rules\.schedule ''@hourly'' must have 5 fields',
  'a macro schedule is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '*/0 * * * *' where name = 'high_error_rate'$$),
  'alert_rules\.schedule: step 0 in ''\*/0'' is out of range for the minute field',
  'a zero step is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '60 * * * *' where name = 'high_error_rate'$$),
  'alert_rules\.schedule: ''60'' is out of range for the minute field \(0-59\)',
  'minute 60 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '0 24 * * *' where name = 'high_error_rate'$$),
  'out of range for the hour field \(0-23\)',
  'hour 24 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '0 0 0 * *' where name = 'high_error_rate'$$),
  'out of range for the day-of-month field \(1-31\)',
  'day of month 0 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '0 0 1 13 *' where name = 'high_error_rate'$$),
  'out of range for the month field \(1-12\)',
  'month 13 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '0 0 * * 8' where name = 'high_error_rate'$$),
  'out of range for the day-of-week field \(0-7\)',
  'day of week 8 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '30-10 * * * *' where name = 'high_error_rate'$$),
  '''30-10'' is out of range for the minute field',
  'a reversed range is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '5/15 * * * *' where name = 'high_error_rate'$$),
  '''5/15'' \(a single value with a step\) is not accepted by pg_cron 1\.4 '
  || '\| hint: write the step over a range such as 5-59/15',
  'a single value with a step is rejected with the range form as hint'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = 'x * * * *' where name = 'high_error_rate'$$),
  '''x'' is not a number or name valid in the minute field',
  'a word in the minute field is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '*,,5 * * * *' where name = 'high_error_rate'$$),
  'is not a valid minute field',
  'an empty list item is rejected'
);
select is(
  pg_temp.error_of(
    $$update monitoring.alert_rules set schedule = '0-30/10 9-17 * jan,jul mon-fri' where name = 'high_error_rate'$$
  ),
  null,
  'ranges, steps over ranges, lists and month and day names are accepted'
);
select is(
  pg_temp.error_of($$update monitoring.alert_rules set schedule = '*/5 * * * 7' where name = 'high_error_rate'$$),
  null,
  'day of week 7 (Sunday) is accepted'
);

-- a valid edit passes and is kept
select lives_ok(
  $$update monitoring.alert_rules set threshold = 30, for_period = interval '10 minutes'
    where name = 'high_error_rate'$$,
  'a valid edit passes'
);
select is(
  (
    select threshold from monitoring.alert_rules
    where name = 'high_error_rate'
  ),
  30::numeric,
  'the edit is stored'
);
select lives_ok(
  $$insert into monitoring.alert_rules (name, description, severity, metric, check_function, threshold, runbook)
    values ('high_error_rate', 'seed again', 'info', 'x', '_check_high_error_rate', 1, array['x'])
    on conflict (name) do nothing$$,
  'seeding again (on conflict do nothing) does not fail'
);
select is(
  (
    select threshold from monitoring.alert_rules
    where name = 'high_error_rate'
  ),
  30::numeric,
  'seeding again does not overwrite a user''s edit'
);

-- ---------------------------------------------------------------------------------------------
-- Cron helpers
-- ---------------------------------------------------------------------------------------------

select ok(
  monitoring._cron_due('*/15 * * * *', '2030-01-01 10:14:30+00', '2030-01-01 10:15:02+00'),
  'a */15 rule is due at :15'
);
select ok(
  not monitoring._cron_due('*/15 * * * *', '2030-01-01 10:15:02+00', '2030-01-01 10:16:02+00'),
  'and not again at :16'
);
select ok(
  monitoring._cron_due('0 * * * *', '2030-01-01 08:59:10+00', '2030-01-01 10:16:02+00'),
  'a run missed while the scheduler was late is caught up'
);
select ok(monitoring._cron_due('0 3 * * *', null, '2030-01-01 10:16:02+00'), 'a rule never checked is due');
select ok(
  monitoring._cron_due('0 9 * * mon', '2030-01-06 23:00+00', '2030-01-07 09:00+00'),
  'day names are read in GMT (2030-01-07 is a Monday)'
);
-- _cron_due tests a short gap minute by minute (_cron_matches on the parsed schedule) and a long
-- one through _cron_times: both must say what _cron_times says, for every kind of field
select is(
  (
    select count(*)
    from
      unnest(array[
        '* * * * *', '*/15 * * * *', '0 * * * *', '5,35 8-18 * * 1-5', '0 9 * * mon', '30 3 1 * *', '0 0 13 * 5',
        '*/7 */3 * * *', '0 12 * 2 *', '15 10 1,15 * sun', '0 0 * * 0', '0 0 * * 7', '59 23 31 12 *'
      ]) as c (schedule)
    -- looks just before runs (month and year ends, a Friday the 1st, a Sunday the 15th), and a grid
    cross join (
      select
        unnest(array[
          timestamptz '2030-01-31 23:59:30+00', '2030-02-01 08:59:59+00', '2030-02-15 10:14:10+00',
          '2030-02-03 09:59:30+00', '2030-12-31 23:58:30+00', '2030-02-13 00:00:00+00', '2030-03-01 11:59:00+00'
        ])
      union all
      select g
      from generate_series(timestamptz '2030-01-31 22:00:30+00', '2030-02-01 02:00+00', interval '17 minutes') as g
    ) as a (after)
    cross join
      unnest(array[interval '30 seconds', '1 minute', '2 minutes', '59 minutes', '3 hours', '2 days'])
        as g (gap)
    where monitoring._cron_due(c.schedule, a.after, a.after + g.gap) is distinct from exists (
      select 1 from monitoring._cron_times(
        c.schedule, date_trunc('minute', a.after) + interval '1 minute', a.after + g.gap
      )
    )
  ),
  0::bigint,
  '_cron_due agrees with _cron_times for short and long gaps, day fields, names and month ends'
);
select results_eq(
  $$
  select
    monitoring._cron_period('* * * * *'),
    monitoring._cron_period('*/15 * * * *'),
    monitoring._cron_period('0 * * * *'),
    monitoring._cron_period('30 3 * * *'),
    monitoring._cron_period('0 9 * * 1-5')
  $$,
  $$ values (interval '1 minute', interval '15 minutes', interval '1 hour', interval '1 day', interval '3 days') $$,
  'a schedule''s period is its longest gap between runs'
);

-- ---------------------------------------------------------------------------------------------
-- Settings, jobs, retention policies, silences
-- ---------------------------------------------------------------------------------------------

select matches(
  pg_temp.error_of($$update monitoring.settings set max_attempts = 0$$),
  'settings\.max_attempts must be between 1 and 100 \(got 0\)',
  'settings.max_attempts below 1 is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.settings set backoff_base = interval '0'$$),
  'settings\.backoff_base must be a positive interval',
  'a zero backoff base is rejected'
);
select matches(
  pg_temp.error_of(
    $$update monitoring.settings set backoff_base = interval '1 minute', backoff_cap = interval '1 second'$$
  ),
  'settings\.backoff_cap must be >= backoff_base',
  'a backoff cap below the base is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.settings set http_timeout_ms = 10$$),
  'settings\.http_timeout_ms must be between 100 and 300000',
  'an HTTP timeout under 100 ms is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.settings set job_mode = 'cloud'$$),
  'settings\.job_mode must be db or edge',
  'an unknown job mode is rejected'
);
select matches(
  pg_temp.error_of($$insert into monitoring.settings (id) values (false)$$),
  'settings_single_row',
  'settings hold one row'
);
select matches(
  pg_temp.error_of($$update monitoring.jobs set schedule = '*/30 * * *' where name = 'monitoring-retention'$$),
  'jobs\.schedule ''\*/30 \* \* \*'' must have 5 fields',
  'a bad job schedule is rejected naming jobs.schedule'
);
select matches(
  pg_temp.error_of($$update monitoring.jobs set job = 'backup' where name = 'monitoring-retention'$$),
  'jobs\.job ''backup'' .* is not a job monitoring\.run_job knows',
  'a job key run_job does not know is rejected'
);
update monitoring.jobs set schedule = '15 2 * * *'
where name = 'monitoring-retention';
select is(
  (
    select period from monitoring.jobs
    where name = 'monitoring-retention'
  ),
  interval '1 day',
  'a job''s period follows its schedule'
);
select matches(
  pg_temp.error_of(
    $$update monitoring.retention_policies set keep_for = interval '1 hour' where target = 'alert_history'$$
  ),
  'retention_policies\.keep_for must be at least 1 day',
  'a retention window under a day is rejected'
);
select matches(
  pg_temp.error_of($$update monitoring.retention_policies set batch_size = 5 where target = 'alert_history'$$),
  'retention_policies\.batch_size must be between 100 and 100000',
  'a tiny retention batch is rejected'
);
select matches(
  pg_temp.error_of($$insert into monitoring.retention_policies (target, keep_for) values ('public.orders', '1 day')$$),
  'retention_policies\.target ''public\.orders'' is not a table run_retention knows',
  'an unknown retention target is rejected'
);
select results_eq(
  'select target, keep_for from monitoring.retention_policies order by target',
  $$ values
    ('alert_history'::text, interval '90 days'),
    ('app_logs', interval '30 days'),
    ('cron_job_run_details', interval '7 days'),
    ('deliveries', interval '30 days'),
    ('digest_hours', interval '400 days'),
    ('digest_runs', interval '400 days'),
    ('error_log_archive', interval '365 days'),
    ('ingest_batches', interval '2 days'),
    ('job_runs', interval '30 days'),
    ('rule_errors', interval '30 days'),
    ('whatsapp_error_logs', interval '30 days') $$,
  'retention windows: error and app logs 30 days (the spec), history 90, deliveries 30, cron runs 7, job runs 30, '
  || 'archive 365, batch ids 2'
);

select matches(
  pg_temp.error_of($$select monitoring.create_silence('{"alertname": "x"}', interval '-1 hour', 'why')$$),
  'silences\.ends_at .* must be after starts_at',
  'a silence ending before it starts is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.create_silence('[]', interval '1 hour', 'why')$$),
  'silences\.matchers must be a non-empty array',
  'a silence without matchers is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.create_silence('[{"name": "alertname"}]', interval '1 hour', 'why')$$),
  'silences\.matchers: .* is not a matcher',
  'a matcher without a value is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.create_silence(
    '[{"name": "alertname", "value": "(", "isRegex": true}]', interval '1 hour', 'why')$$),
  'silences\.matchers: ''\('' is not a valid regular expression',
  'a matcher with a bad regular expression is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.create_silence('{"alertname": "x"}', interval '1 hour', '')$$),
  'silences\.comment must say why',
  'a silence without a comment is rejected'
);
select lives_ok(
  $$select monitoring.create_silence(
    '{"alertname": "slow_queue"}', interval '1 hour', 'maintenance', 'ops@example.com')$$,
  'a silence on one rule is created'
);
select is(
  (
    select matchers from monitoring.silences
    where comment = 'maintenance'
  ),
  '[{"name": "alertname", "value": "slow_queue", "isEqual": true, "isRegex": false}]'::jsonb,
  'the object form of matchers is stored as equality matchers'
);

select * from finish();
rollback;
