-- Alerting, part 6 of 6: the alerts and delivery sections of monitoring.health(), and a last
-- privilege sweep over everything alerting created.
--
-- monitoring.health() (20261127010400_monitoring_health.sql) takes the worst `level` found in the
-- document built by monitoring._health_compose(); this file replaces that one function to add:
--   alerts:   firing counts by severity, firing rule names, pending, silenced, rule errors.
--             unhealthy while a critical alert fires; degraded while a warning fires or a rule's last
--             evaluation failed.
--   delivery: outbox counts (queued, sending, retrying, dead), last delivery, pg_net presence.
--             degraded when a notification was dead-lettered in the last 24 hours, when pg_net is
--             missing while notifications wait, or when a due notification waited over 10 minutes.

create or replace function monitoring._health_alerts(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_critical integer;
  v_warning integer;
  v_info integer;
  v_pending integer;
  v_silenced integer;
  v_names jsonb;
  v_critical_names text;
  v_errors jsonb;
  v_error_names text;
  v_reasons text[] := '{}'::text [];
  v_level text := 'healthy';
begin
  select
    count(*) filter (where a.state = 'firing' and a.severity = 'critical'),
    count(*) filter (where a.state = 'firing' and a.severity = 'warning'),
    count(*) filter (where a.state = 'firing' and a.severity = 'info'),
    count(*) filter (where a.state = 'pending'),
    count(*) filter (where a.state = 'firing' and monitoring._silence_for(a.labels, p_now) is not null),
    coalesce(jsonb_agg(distinct a.rule_name order by a.rule_name) filter (where a.state = 'firing'), '[]'::jsonb),
    string_agg(distinct a.rule_name, ', ' order by a.rule_name) filter (
      where a.state = 'firing' and a.severity = 'critical'
    )
  into v_critical, v_warning, v_info, v_pending, v_silenced, v_names, v_critical_names
  from monitoring.alerts as a
  where a.state in ('pending', 'firing');

  select
    coalesce(jsonb_agg(jsonb_build_object(
      'rule', s.rule_name, 'error', s.last_error, 'at', monitoring._iso(s.last_error_at)
    ) order by s.rule_name), '[]'::jsonb),
    string_agg(s.rule_name, ', ' order by s.rule_name)
  into v_errors, v_error_names
  from monitoring.rule_state as s
  inner join monitoring.alert_rules as r on s.rule_name = r.name
  where r.enabled and s.last_error is not null;

  if v_critical > 0 then
    v_level := 'unhealthy';
    v_reasons := v_reasons || format('critical alert firing: %s', v_critical_names);
  end if;
  if v_warning > 0 then
    v_level := case when v_level = 'unhealthy' then v_level else 'degraded' end;
    v_reasons := v_reasons || format('%s warning alert(s) firing', v_warning);
  end if;
  if v_error_names is not null then
    v_level := case when v_level = 'unhealthy' then v_level else 'degraded' end;
    v_reasons := v_reasons || format('alert rule evaluation failing: %s (see monitoring.rule_errors)', v_error_names);
  end if;

  return jsonb_build_object(
    'status', case when v_critical + v_warning + v_info > 0 then 'firing' else 'ok' end,
    'level', v_level,
    'firing', jsonb_build_object('critical', v_critical, 'warning', v_warning, 'info', v_info),
    'firingRules', v_names,
    'pending', v_pending,
    'silenced', v_silenced,
    'ruleErrors', v_errors
  ) || case
    when cardinality(v_reasons) = 0 then '{}'::jsonb
    else jsonb_build_object('reason', array_to_string(v_reasons, '; '))
  end;
end
$$;
comment on function monitoring._health_alerts(timestamptz) is
'health() section alerts: firing counts by severity, firing rule names, pending, silenced and failing rules; '
'unhealthy while a critical alert fires, degraded while a warning fires or a rule fails to evaluate.';

create or replace function monitoring._health_delivery(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language plpgsql
stable
set search_path = ''
set jit = off
as $$
declare
  v_queued integer;
  v_sending integer;
  v_retrying integer;
  v_dead integer;
  v_dead_24h integer;
  v_last_delivered timestamptz;
  v_overdue integer;
  v_channels integer;
  v_pg_net boolean := to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null;
  v_reasons text[] := '{}'::text [];
begin
  select
    count(*) filter (where d.status = 'queued'),
    count(*) filter (where d.status = 'sending'),
    count(*) filter (where d.status = 'retrying'),
    count(*) filter (where d.status = 'dead'),
    count(*) filter (where d.status = 'dead' and d.dead_at > p_now - interval '24 hours'),
    max(d.delivered_at),
    count(*) filter (
      where d.status in ('queued', 'retrying') and d.next_attempt_at < p_now - interval '10 minutes'
    )
  into v_queued, v_sending, v_retrying, v_dead, v_dead_24h, v_last_delivered, v_overdue
  from monitoring.deliveries as d;

  select count(*) into v_channels from monitoring.channels as c where c.enabled;

  if v_dead_24h > 0 then
    v_reasons := v_reasons || format(
      '%s notification(s) dead-lettered in the last 24 hours (see monitoring.dead_letters)', v_dead_24h
    );
  end if;
  if not v_pg_net and v_queued + v_retrying > 0 then
    v_reasons := v_reasons || format('pg_net is not installed: %s notification(s) wait', v_queued + v_retrying);
  elsif v_overdue > 0 then
    v_reasons := v_reasons || format(
      '%s notification(s) due for more than 10 minutes: is job monitoring-dispatch running?', v_overdue
    );
  end if;

  return jsonb_build_object(
    'status', case when cardinality(v_reasons) = 0 then 'operational' else 'degraded' end,
    'level', case when cardinality(v_reasons) = 0 then 'healthy' else 'degraded' end,
    'pgNet', v_pg_net,
    'channels', v_channels,
    'queued', v_queued,
    'sending', v_sending,
    'retrying', v_retrying,
    'dead', v_dead,
    'dead24h', v_dead_24h,
    'lastDelivered', monitoring._iso(v_last_delivered)
  ) || case
    when cardinality(v_reasons) = 0 then '{}'::jsonb
    else jsonb_build_object('reason', array_to_string(v_reasons, '; '))
  end;
end
$$;
comment on function monitoring._health_delivery(timestamptz) is
'health() section delivery: outbox counts, last delivery, pg_net presence; degraded after a dead letter in 24 h, '
'when pg_net is missing with work waiting, or when due work waits over 10 minutes.';

create or replace function monitoring._health_compose(
  -- the moment "now"
  p_now timestamptz
)
returns jsonb
language sql
stable
set search_path = ''
set jit = off
as $$
  select jsonb_build_object(
    'services', jsonb_build_object(
      'functions', monitoring._health_functions(p_now),
      'whatsapp', monitoring._health_whatsapp(p_now)
    ),
    'database', monitoring._health_database(p_now),
    'scheduler', monitoring._health_scheduler(p_now),
    'alerts', monitoring._health_alerts(p_now),
    'delivery', monitoring._health_delivery(p_now)
  );
$$;
comment on function monitoring._health_compose(timestamptz) is
'The sections of health() without status and timestamp: services (functions, whatsapp), database, scheduler, alerts '
'and delivery; each carries level and, when not healthy, reason.';

-- ---------------------------------------------------------------------------------------------
-- Privileges: nothing in monitoring for anon and authenticated, whatever was created above
-- ---------------------------------------------------------------------------------------------

revoke all on all tables in schema monitoring from public, anon, authenticated;
revoke all on all sequences in schema monitoring from public, anon, authenticated;
revoke all on all functions in schema monitoring from public, anon, authenticated;
revoke all on function monitoring._get_secret(text) from service_role;
revoke all on monitoring._secrets from service_role;

grant execute on function monitoring._health_alerts(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_delivery(timestamptz) to service_role, postgres;
grant execute on function monitoring._health_compose(timestamptz) to service_role, postgres;

-- The configuration tables are tiny and never reach autovacuum's thresholds; without statistics
-- the planner guesses thousands of rows, which pushed views such as job_status over the JIT
-- threshold (185 ms instead of 0.3 ms at 10 M notifications, docs/benchmarks.md).
analyze monitoring.settings, monitoring.jobs, monitoring.alert_rules, monitoring.retention_policies,
monitoring.rollup_settings, monitoring.rollup_state, monitoring.health_thresholds, monitoring.channels;
