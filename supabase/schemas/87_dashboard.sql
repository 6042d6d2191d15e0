-- The monitoring dashboard's data: one JSON document built inside Postgres in one call, for the
-- ProductionMonitoring.tsx component (web/) through the monitoring-dashboard Edge Function, which
-- checks the caller's JWT and admin role first; anon and authenticated reach nothing here.
-- The document reads the views admins query (to_jsonb of their rows), so a column added to a view
-- shows up in the document, and in the component, without a change here. Silences made and expired
-- from the dashboard (create_silence_as, expire_silence_as in 50_alerts.sql) record who did it.

create or replace function monitoring._dashboard_hours(
  -- the chart window: '24h' or '7d'
  p_window text
)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_window is null or p_window not in ('24h', '7d') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('dashboard: p_window must be ''24h'' or ''7d'' (got %s)',
        coalesce(pg_catalog.quote_literal(pg_catalog.left(p_window, 40)), 'null')),
      hint = 'pass window=24h for the last 24 hours or window=7d for the last 7 days';
  end if;
  return case p_window when '24h' then 24 else 168 end;
end
$$;

comment on function monitoring._dashboard_hours(text) is
'Internal: hours of the dashboard''s chart for window ''24h'' (24) or ''7d'' (168); anything else raises '
'invalid_parameter_value naming the field.';

create or replace function monitoring.dashboard(
  -- the chart's window: '24h' (24 hourly points) or '7d' (168)
  p_window text default '24h',
  -- how many recent error logs, dead letters and silences to list, 1 to 200
  p_limit integer default 50
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_hours integer := monitoring._dashboard_hours(p_window);
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_doc jsonb;
begin
  if p_limit is null or p_limit not between 1 and 200 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('dashboard: p_limit must be an integer from 1 to 200 (got %s)', coalesce(p_limit::text, 'null')),
      hint = 'pass limit=50 (the default) or another number from 1 to 200';
  end if;

  v_doc := pg_catalog.jsonb_build_object(
    'version', 1,
    'generatedAt', pg_catalog.now(),
    'window', p_window,
    'limit', p_limit,
    'health', monitoring.health(),
    'delivery', (select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') from monitoring.delivery_stats as v),
    'hourly', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(h) order by h.hour), '[]')
      from (select v.* from monitoring.hourly_stats as v order by v.hour desc limit v_hours) as h
    ),
    'queue', (select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') from monitoring.queue_stats as v),
    'latency', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') from monitoring.delivery_latency as v
    ),
    'functions', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') from monitoring.function_stats as v
    ),
    'sessions', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') from monitoring.connection_status as v
    ),
    'recentErrors', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(e) order by e.created_at desc, e.id), '[]')
      from (
        select
          l.id,
          monitoring._mask_phones(l.error_type) as error_type,
          monitoring._mask_phones(l.error_code) as error_code,
          monitoring._mask_phones(l.error_message) as error_message,
          l.notification_id,
          l.created_at
        from public.whatsapp_error_logs as l
        order by l.created_at desc
        limit p_limit
      ) as e
    ),
    'alerts', (select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') from monitoring.active_alerts as v),
    'rules', (
      select coalesce(pg_catalog.jsonb_object_agg(r.name, pg_catalog.jsonb_build_object(
        'severity', r.severity, 'comparator', r.comparator, 'threshold', r.threshold, 'target', r.target,
        'unit', r.unit, 'enabled', r.enabled
      )), '{}')
      from monitoring.alert_rules as r
    ),
    'silences', (
      select coalesce(pg_catalog.jsonb_agg(
        pg_catalog.to_jsonb(s) || pg_catalog.jsonb_build_object('state', case
          when s.ends_at <= pg_catalog.now() then 'expired'
          when s.starts_at > pg_catalog.now() then 'pending'
          else 'active'
        end)
        order by s.ends_at desc
      ), '[]')
      from (
        select x.*
        from monitoring.silences as x
        where x.ends_at > pg_catalog.now() - interval '24 hours'
        order by x.ends_at desc
        limit p_limit
      ) as s
    ),
    'deadLetters', pg_catalog.jsonb_build_object(
      'count', (select pg_catalog.count(*) from monitoring.dead_letters),
      'rows', (
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(d) - 'payload' order by d.dead_at desc), '[]')
        from (select v.* from monitoring.dead_letters as v order by v.dead_at desc limit p_limit) as d
      )
    )
  );
  return v_doc || pg_catalog.jsonb_build_object(
    'buildMs', round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000, 2)
  );
end
$$;

comment on function monitoring.dashboard(text, integer) is
'The monitoring dashboard''s document in one call: health() with its reasons; the rows of delivery_stats, '
'queue_stats, delivery_latency, function_stats, connection_status, active_alerts (with '
'runbooks) and dead_letters (without payload) as JSON objects (new view columns flow through); '
'hourly_stats for the chart window (''24h'' or ''7d''), oldest first; the p_limit most recent error '
'logs with phone numbers masked; the alert rules'' thresholds; silences active, pending or ended in '
'the last 24 h. Bad arguments raise invalid_parameter_value naming the field.';
