-- The check function of each rule, and the seed rules (the spec's values).
--
-- A check function monitoring._check_<rule>(rule, p_now) returns one row per alert instance:
-- (labels, value, volume, message). The evaluator compares value with the rule's threshold
-- (comparator), requires volume > min_volume when one is set, and keeps the lifecycle. Checks
-- read the monitoring views' functions (monitoring.get_<view>(p_now) and the window helpers
-- behind them, 20_views.sql) so they can be evaluated "as of p_now".
--
-- Seeding is idempotent and never overwrites an edited rule (on conflict do nothing).

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._human_interval(
  -- a window length such as interval '1 hour'
  p_interval interval
)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return case
    when p_interval is null then 'the window'
    when p_interval = interval '1 hour' then 'the last hour'
    when extract(epoch from p_interval)::bigint % 86400 = 0
      then format('the last %s days', extract(epoch from p_interval)::bigint / 86400)
    when extract(epoch from p_interval)::bigint % 3600 = 0
      then format('the last %s hours', extract(epoch from p_interval)::bigint / 3600)
    when extract(epoch from p_interval)::bigint % 60 = 0
      then format('the last %s minutes', extract(epoch from p_interval)::bigint / 60)
    else format('the last %s seconds', extract(epoch from p_interval)::bigint)
  end;
end
$$;

comment on function monitoring._human_interval(interval) is
'Internal: a window length in words for alert messages ("the last hour", "the last 15 minutes").';

create or replace function monitoring._error_count(
  -- end of the window
  p_now timestamptz,
  -- length of the window
  p_window interval
)
returns bigint
language plpgsql
stable
set search_path = ''
set jit = off
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return (
    select coalesce(sum(e.error_count), 0)::bigint
    from monitoring._error_window(p_now, p_window) as e
  );
end
$$;

comment on function monitoring._error_count(timestamptz, interval) is
'Internal: errors logged in (p_now - p_window, p_now], from the error rollups and their live tail.';

create or replace function monitoring._function_window(
  -- the rule's window
  p_window interval,
  -- the rule, for the message
  p_rule text
)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_window = interval '5 minutes' then
    return '5m';
  elsif p_window = interval '1 hour' then
    return '1h';
  end if;
  raise exception using
    errcode = 'invalid_parameter_value',
    message = format(
      'alert_rules.window of %s must be 5 minutes or 1 hour (the windows of monitoring.function_stats), got %s',
      p_rule, coalesce(p_window::text, 'null')),
    hint = format('update monitoring.alert_rules set "window" = interval ''5 minutes'' where name = %L', p_rule);
end
$$;

comment on function monitoring._function_window(interval, text) is
'Internal: the monitoring.function_stats window_name (5m or 1h) for a rule window; raises naming the rule otherwise.';

-- ---------------------------------------------------------------------------------------------
-- Checks
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._check_whatsapp_disconnected(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    jsonb_build_object('session_id', c.session_id),
    c.minutes_down,
    null::numeric,
    case
      when c.connection_state = 'connected'
        then format('WhatsApp session %s (%s) is connected', c.session_id, c.phone_number)
      else format(
        'WhatsApp is not connected: session %s (%s) is %s, down for %s min',
        c.session_id, c.phone_number, c.connection_state, c.minutes_down
      )
    end
  from monitoring.get_connection_status(p_now) as c
  where c.is_active
$$;

comment on function monitoring._check_whatsapp_disconnected(monitoring.alert_rules, timestamptz) is
'Check whatsapp_disconnected: per active session, minutes since it was last known connected (0 while connected), '
'from monitoring.get_connection_status.';

create or replace function monitoring._check_low_delivery_rate(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    '{}'::jsonb,
    monitoring._rate(d.accepted, d.total),
    d.total::numeric,
    format(
      'Low delivery rate: %s%% over %s (%s of %s accepted by WhatsApp, %s failed, %s pending)',
      round(monitoring._rate(d.accepted, d.total), 1),
      monitoring._human_interval(coalesce(p_rule."window", interval '1 hour')),
      d.accepted, d.total, d.failed, d.pending + d.processing
    )
  from monitoring._delivery_window(p_now, coalesce(p_rule."window", interval '1 hour')) as d
$$;

comment on function monitoring._check_low_delivery_rate(monitoring.alert_rules, timestamptz) is
'Check low_delivery_rate: % of notifications created in the window that WhatsApp accepted (status sent, delivered '
'or read, as monitoring.delivery_stats), volume = messages in the window.';

create or replace function monitoring._check_high_error_rate(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    '{}'::jsonb,
    c.n::numeric,
    c.n::numeric,
    format(
      'High error rate: %s errors in %s', c.n,
      monitoring._human_interval(coalesce(p_rule."window", interval '1 hour'))
    )
  -- in FROM, so the count runs once (a subquery would be pulled up and the call copied per use)
  from monitoring._error_count(p_now, coalesce(p_rule."window", interval '1 hour')) as c (n)
$$;

comment on function monitoring._check_high_error_rate(monitoring.alert_rules, timestamptz) is
'Check high_error_rate: errors logged in the window (the spec''s monitoring script: more than 20 per hour).';

create or replace function monitoring._check_error_rate_webhook(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    '{}'::jsonb,
    c.n::numeric,
    c.n::numeric,
    format('High WhatsApp error rate: %s errors in last hour (threshold %s)', c.n, p_rule.threshold)
  -- in FROM, so the count runs once (a subquery would be pulled up and the call copied per use)
  from monitoring._error_count(p_now, coalesce(p_rule."window", interval '1 hour')) as c (n)
$$;

comment on function monitoring._check_error_rate_webhook(monitoring.alert_rules, timestamptz) is
'Check error_rate_webhook: the spec''s check-error-rate count (errors in the last hour); also applied by '
'monitoring.check_error_rate().';

create or replace function monitoring._check_slow_queue(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  with hist as (
    select
      h.n,
      round(h.sum_ms / nullif(h.n, 0) / 1000, 1) as avg_s
    from monitoring._notification_avg(p_now, coalesce(p_rule."window", interval '15 minutes'), 'queue') as h
  ),

  backlog as (
    select
      q.backlog_pending,
      coalesce(q.oldest_pending_age_seconds, 0) as oldest_s
    from monitoring._queue_backlog(p_now) as q
  )

  select
    '{}'::jsonb,
    greatest(coalesce(hist.avg_s, 0), coalesce(backlog.oldest_s, 0)),
    hist.n::numeric,
    format(
      'Slow queue: average queue time %s s over %s (%s started), oldest pending message waiting %s s (%s pending)',
      coalesce(hist.avg_s::text, 'n/a'),
      monitoring._human_interval(coalesce(p_rule."window", interval '15 minutes')), hist.n,
      coalesce(backlog.oldest_s, 0), coalesce(backlog.backlog_pending, 0)
    )
  from hist
  left join backlog on true
$$;

comment on function monitoring._check_slow_queue(monitoring.alert_rules, timestamptz) is
'Check slow_queue: the larger of the average queue time (processing_started_at - created_at) in the window and the '
'age of the oldest pending message, in seconds (a stuck queue counts).';

create or replace function monitoring._check_slow_delivery(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    '{}'::jsonb,
    round(h.sum_ms / nullif(h.n, 0) / 1000, 2),
    h.n::numeric,
    format(
      'Slow delivery: average delivery time %s s over %s (%s sent)',
      coalesce(round(h.sum_ms / nullif(h.n, 0) / 1000, 2)::text, 'n/a'),
      monitoring._human_interval(coalesce(p_rule."window", interval '1 hour')), h.n
    )
  from monitoring._notification_avg(p_now, coalesce(p_rule."window", interval '1 hour'), 'latency') as h
$$;

comment on function monitoring._check_slow_delivery(monitoring.alert_rules, timestamptz) is
'Check slow_delivery: average delivery time (sent_at - created_at) in seconds of messages created in the window (as '
'monitoring.delivery_latency).';

create or replace function monitoring._check_function_errors(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    jsonb_build_object('function', f.function_name),
    f.errors::numeric,
    f.invocations::numeric,
    format('Edge Function %s: %s errors (status >= 500) in %s of %s invocations', f.function_name, f.errors,
      w.window_name, f.invocations)
  -- _function_window raises for a rule window other than 5 minutes or 1 hour
  from (select monitoring._function_window(p_rule."window", p_rule.name) as window_name) as w
  cross join lateral monitoring._function_window_stats(p_now, p_rule."window", false) as f
$$;

comment on function monitoring._check_function_errors(monitoring.alert_rules, timestamptz) is
'Check function_errors: per Edge Function, errors (status >= 500) in the window (as monitoring.function_stats).';

create or replace function monitoring._check_function_latency(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    jsonb_build_object('function', f.function_name),
    f.avg_ms,
    f.invocations::numeric,
    format('Edge Function %s: average latency %s ms over %s (%s invocations, p95 %s ms)', f.function_name,
      f.avg_ms, w.window_name, f.invocations, f.p95_ms)
  -- _function_window raises for a rule window other than 5 minutes or 1 hour
  from (select monitoring._function_window(p_rule."window", p_rule.name) as window_name) as w
  cross join lateral monitoring._function_window_stats(p_now, p_rule."window", true) as f
$$;

comment on function monitoring._check_function_latency(monitoring.alert_rules, timestamptz) is
'Check function_latency: per Edge Function, average duration in ms over the window (as '
'monitoring.function_stats).';

create or replace function monitoring._check_function_availability(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    jsonb_build_object('function', f.function_name),
    f.error_rate,
    f.invocations::numeric,
    format('Edge Function %s: error rate %s%% over %s (%s of %s invocations failed)', f.function_name,
      f.error_rate, w.window_name, f.errors, f.invocations)
  -- _function_window raises for a rule window other than 5 minutes or 1 hour
  from (select monitoring._function_window(p_rule."window", p_rule.name) as window_name) as w
  cross join lateral monitoring._function_window_stats(p_now, p_rule."window", false) as f
$$;

comment on function monitoring._check_function_availability(monitoring.alert_rules, timestamptz) is
'Check function_availability: per Edge Function, % of invocations answering status >= 500 over the window.';

create or replace function monitoring._check_slow_queries(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    '{}'::jsonb,
    coalesce(max(q.mean_ms), 0),
    count(*) filter (where q.mean_ms > p_rule.threshold)::numeric,
    coalesce(
      format(
        'Slow queries: %s statements with mean time above %s ms; slowest %s ms mean over %s calls: %s',
        count(*) filter (where q.mean_ms > p_rule.threshold),
        p_rule.threshold,
        max(q.mean_ms),
        (array_agg(q.calls order by q.mean_ms desc))[1],
        left(regexp_replace((array_agg(q.query order by q.mean_ms desc))[1], '\s+', ' ', 'g'), 200)
      ),
      'No statement above the slow-query target'
    )
  from monitoring.get_slow_queries() as q
$$;

comment on function monitoring._check_slow_queries(monitoring.alert_rules, timestamptz) is
'Check slow_queries: the highest mean execution time (ms) in pg_stat_statements (monitoring.get_slow_queries); '
'cumulative since the last stats reset.';

create or replace function monitoring._check_stale_session(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    jsonb_build_object('session_id', s.session_id),
    round(s.hours_since_update, 2),
    null::numeric,
    format('WhatsApp session %s (%s) not updated for %s hours', s.session_id, s.phone_number,
      round(s.hours_since_update, 1))
  from monitoring.get_active_sessions(p_now) as s
$$;

comment on function monitoring._check_stale_session(monitoring.alert_rules, timestamptz) is
'Check stale_session: per active session, hours since updated_at (the spec''s hours_since_update), from '
'monitoring.get_active_sessions.';

create or replace function monitoring._check_monitor_stalled(
  -- the rule (threshold: how many periods without success)
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns table (labels jsonb, value numeric, volume numeric, message text)
language plpgsql
stable
set search_path = ''
set jit = off
as $$
#variable_conflict use_column
declare
  v_job record;
  v_last timestamptz;
  v_cron record;
  v_ratio numeric;
begin
  for v_job in select e.name, e.job, e.command, e.period, e.scheduled_at from monitoring.expected_jobs as e loop
    select max(r.finished_at) into v_last from monitoring.job_runs as r where r.job = v_job.job and r.ok;
    select c.scheduled, c.status, c.return_message, c.last_success_at into v_cron
    from monitoring._cron_last_run(v_job.name) as c;
    if v_job.command not like 'select monitoring.run_job(%' then
      -- a command that does not log to job_runs: pg_cron's own success counts
      v_last := greatest(v_last, v_cron.last_success_at);
    end if;
    -- a job scheduled again after a pause counts from then, not from its last success before it
    v_last := greatest(v_last, v_job.scheduled_at);
    -- never scheduled and never run: not expected to run yet
    continue when v_last is null;

    v_ratio := greatest(round((extract(epoch from p_now - v_last) / extract(epoch from v_job.period))::numeric, 2), 0);
    labels := jsonb_build_object('job', v_job.name);
    value := v_ratio;
    volume := null;
    message := format(
      'Monitoring job %s has not succeeded for %s (runs every %s; alert after %s periods)',
      v_job.name, date_trunc('second', p_now - v_last), v_job.period, p_rule.threshold
    ) || case
      when v_cron.scheduled is false then '; it is not in cron.job: run select monitoring.schedule_jobs()'
      when v_cron.status is not null
        then format('; last pg_cron run %s%s', v_cron.status,
          coalesce(': ' || nullif(left(v_cron.return_message, 200), ''), ''))
      else ''
    end;
    return next;
  end loop;
end
$$;

comment on function monitoring._check_monitor_stalled(monitoring.alert_rules, timestamptz) is
'Check monitor_stalled (dead man''s switch): per expected job, time since its last success (job_runs, or '
'cron.job_run_details for commands that do not log) in multiples of its period; counted from scheduled_at until a '
'first success, and from a re-scheduling that came after the last success.';

-- ---------------------------------------------------------------------------------------------
-- Seed rules (the spec's values; edits are kept on re-run)
-- ---------------------------------------------------------------------------------------------
insert into monitoring.alert_rules (
  name, description, severity, metric, check_function, comparator, threshold, target, unit, "window",
  min_volume, for_period, repeat_interval, schedule, runbook, labels, keep_firing_for, nodata_state
) values
(
  'whatsapp_disconnected',
  'WhatsApp connection down for more than 5 minutes (checked every minute).',
  'critical', 'connection_status', '_check_whatsapp_disconnected', '>', 5, 0, 'minutes', null,
  null, interval '0', interval '1 hour', '* * * * *',
  array[
    'Check health endpoint (select monitoring.health())',
    'Review connection logs (select * from monitoring.connection_status)',
    'Attempt manual reconnection',
    'Re-scan QR code if needed'
  ],
  '{"area": "whatsapp"}',
  interval '0', 'ok'
),
(
  'low_delivery_rate',
  'Delivery rate below 90 % over 1 hour with more than 10 messages (checked every 15 minutes).',
  'warning', 'delivery_rate', '_check_low_delivery_rate', '<', 90, null, '%', interval '1 hour',
  10, interval '0', interval '4 hours', '*/15 * * * *',
  array[
    'Check connection status (select * from monitoring.connection_status)',
    'Review failed notifications (select * from monitoring.delivery_stats)',
    'Verify phone number formatting',
    'Check for rate limiting (select * from monitoring.top_errors_24h)'
  ],
  '{"area": "whatsapp"}',
  interval '30 minutes', 'nodata'
),
(
  'high_error_rate',
  'More than 20 errors per hour (checked every 15 minutes).',
  'warning', 'error_rate', '_check_high_error_rate', '>', 20, null, 'errors', interval '1 hour',
  null, interval '0', interval '4 hours', '*/15 * * * *',
  array[
    'Review error logs (select * from monitoring.top_errors_24h)',
    'Identify error patterns (select * from monitoring.error_trends)',
    'Check phone number validity',
    'Verify WhatsApp account status'
  ],
  '{"area": "whatsapp"}',
  interval '0', 'ok'
),
(
  'error_rate_webhook',
  'The spec''s check-error-rate: more than 50 errors in the last hour (hourly, job check-whatsapp-errors).',
  'warning', 'error_count', '_check_error_rate_webhook', '>', 50, null, 'errors', interval '1 hour',
  null, interval '0', interval '4 hours', '0 * * * *',
  array[
    'Review error logs (select * from monitoring.top_errors_24h)',
    'Identify error patterns (select * from monitoring.error_trends)',
    'Check phone number validity',
    'Verify WhatsApp account status'
  ],
  '{"area": "whatsapp"}',
  interval '0', 'ok'
),
(
  'slow_queue',
  'Queue processing time above 60 s (target 30 s): average over 15 minutes, or the oldest pending message.',
  'warning', 'queue_processing_time', '_check_slow_queue', '>', 60, 30, 's', interval '15 minutes',
  null, interval '5 minutes', interval '4 hours', '*/5 * * * *',
  array[
    'Check queue backlog (select * from monitoring.queue_stats)',
    'Optimize processing (check the sender is running and not rate limited)'
  ],
  '{"area": "whatsapp"}',
  interval '10 minutes', 'ok'
),
(
  'slow_delivery',
  'Average delivery time above 5 s over 1 hour (target 2 s).',
  'warning', 'delivery_time', '_check_slow_delivery', '>', 5, 2, 's', interval '1 hour',
  null, interval '5 minutes', interval '4 hours', '*/5 * * * *',
  array[
    'Optimize queries (select * from monitoring.slow_queries)',
    'Check database performance (select * from monitoring.delivery_latency)'
  ],
  '{"area": "whatsapp"}',
  interval '10 minutes', 'ok'
),
(
  'function_errors',
  'More than 10 Edge Function errors in 5 minutes.',
  'warning', 'function_errors', '_check_function_errors', '>', 10, null, 'errors', interval '5 minutes',
  null, interval '0', interval '4 hours', '* * * * *',
  array[
    'Check Cloudflare logs (Edge Function logs)',
    'Verify environment variables',
    'Check database connectivity',
    'Review recent deployments'
  ],
  '{"area": "functions"}',
  interval '0', 'ok'
),
(
  'function_latency',
  'Edge Function average latency above 5 s over 5 minutes.',
  'warning', 'function_latency', '_check_function_latency', '>', 5000, 2000, 'ms', interval '5 minutes',
  null, interval '5 minutes', interval '4 hours', '* * * * *',
  array[
    'Check Cloudflare logs (Edge Function logs)',
    'Optimize queries, check database performance (select * from monitoring.slow_queries)',
    'Check database connectivity',
    'Review recent deployments'
  ],
  '{"area": "functions"}',
  interval '5 minutes', 'ok'
),
(
  'function_availability',
  'Edge Function error rate above 5 % over 5 minutes.',
  'critical', 'function_error_rate', '_check_function_availability', '>', 5, null, '%', interval '5 minutes',
  null, interval '5 minutes', interval '1 hour', '* * * * *',
  array[
    'Check Cloudflare logs (Edge Function logs)',
    'Verify environment variables',
    'Check database connectivity',
    'Review recent deployments'
  ],
  '{"area": "functions"}',
  interval '5 minutes', 'ok'
),
(
  'slow_queries',
  'A statement''s mean execution time above 500 ms (target 100 ms), from pg_stat_statements.',
  'warning', 'query_mean_time', '_check_slow_queries', '>', 500, 100, 'ms', null,
  null, interval '15 minutes', interval '4 hours', '*/15 * * * *',
  array[
    'Find the statement (select * from monitoring.slow_queries)',
    'Add indexes',
    'Optimize queries'
  ],
  '{"area": "database"}',
  interval '0', 'ok'
),
(
  'stale_session',
  'An active WhatsApp session not updated for more than 24 hours (threshold in hours).',
  'warning', 'hours_since_update', '_check_stale_session', '>', 24, null, 'hours', null,
  null, interval '0', interval '4 hours', '*/15 * * * *',
  array[
    'Verify session health (select * from monitoring.active_sessions)',
    'Check health endpoint (select monitoring.health())',
    'Review connection logs',
    'Re-scan QR code if needed'
  ],
  '{"area": "whatsapp"}',
  interval '0', 'ok'
),
(
  'monitor_stalled',
  'Dead man''s switch: a monitoring job has not succeeded for twice its interval.',
  'critical', 'job_periods_without_success', '_check_monitor_stalled', '>', 2, null, 'periods', null,
  null, interval '0', interval '1 hour', '* * * * *',
  array[
    'See which job and why (select * from monitoring.job_status; select * from cron.job_run_details order by runid '
    'desc limit 20)',
    'Re-create missing jobs (select monitoring.schedule_jobs())',
    'Check that pg_cron runs (shared_preload_libraries, cron.database_name) and max_worker_processes'
  ],
  '{"area": "monitoring"}',
  interval '0', 'ok'
)
on conflict (name) do nothing;
