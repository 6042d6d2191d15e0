-- Test: the alert lifecycle (pending -> firing after for_period, resolve, repeat_interval, one alert
-- per fingerprint), silences suppress delivery but keep state, a failing rule does not stop the
-- others, and the seeded rules fire on crafted data.
begin;
create extension if not exists pgtap with schema extensions;
select plan(56);

-- A metric the test controls, read by a test rule.
create table monitoring._t_metric (labels jsonb not null, value numeric);
create function monitoring._check_t_rule(p_rule monitoring.alert_rules, p_now timestamptz)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
as $$
  select m.labels, m.value, null::numeric, format('test value %s at %s', m.value, p_now)
  from monitoring._t_metric as m
$$;
create function monitoring._check_t_broken(p_rule monitoring.alert_rules, p_now timestamptz)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
as $$
  select '{}'::jsonb, 1 / (extract(year from p_now)::numeric - extract(year from p_now)::numeric), null::numeric, 'x'
$$;

insert into monitoring.alert_rules (
  name, description, severity, metric, check_function, comparator, threshold, for_period, repeat_interval,
  schedule, runbook, labels
) values (
  't_rule', 'test rule', 'warning', 't_metric', '_check_t_rule', '>', 10, interval '5 minutes', interval '1 hour',
  '* * * * *', array['Step one', 'Step two'], '{"team": "ops"}'
);

-- where notifications go (URL and key in the fallback secret store), and nowhere else
delete from monitoring.deliveries;
delete from monitoring.channels;
select monitoring.set_channel('hook', 'webhook', 'http://127.0.0.1:8080/hook', 'k3y', 'info');

create function pg_temp.deliveries(p_event text default null)
returns bigint
language sql
as $$
  select count(*) from monitoring.deliveries where rule_name = 't_rule' and (p_event is null or event = p_event)
$$;

create function pg_temp.state(p_labels jsonb default '{}')
returns text
language sql
as $$
  select a.state from monitoring.alerts as a
  where a.rule_name = 't_rule' and a.labels = '{"team": "ops", "alertname": "t_rule", "severity": "warning"}'::jsonb || p_labels
$$;

-- ---------------------------------------------------------------------------------------------
-- pending -> firing -> repeat -> resolved
-- ---------------------------------------------------------------------------------------------

insert into monitoring._t_metric values ('{}', 5);
select monitoring.evaluate_rules('2030-01-01 00:00+00', array['t_rule']);
select is(pg_temp.state(), null, 'a rule that does not breach creates no alert');

update monitoring._t_metric set value = 20;
select is(
  jsonb_array_length(monitoring.evaluate_rules('2030-01-01 00:00+00', array['t_rule']) -> 'transitions'),
  1,
  'the breach is one transition'
);
select is(pg_temp.state(), 'pending', 'a breach is pending while it holds for less than for_period');
select is(pg_temp.deliveries(), 0::bigint, 'nothing is notified while pending');

select monitoring.evaluate_rules('2030-01-01 00:04+00', array['t_rule']);
select is(pg_temp.state(), 'pending', 'still pending after 4 minutes of a 5-minute for_period');

select monitoring.evaluate_rules('2030-01-01 00:05+00', array['t_rule']);
select is(pg_temp.state(), 'firing', 'firing once the condition has held for for_period');
select is(pg_temp.deliveries('firing'), 1::bigint, 'one firing notification per channel');
select results_eq(
  $$select started_at, firing_since, value from monitoring.alerts where rule_name = 't_rule'$$,
  $$values (timestamptz '2030-01-01 00:00+00', timestamptz '2030-01-01 00:05+00', 20::numeric)$$,
  'the alert keeps when it started, when it fired and its value'
);

select monitoring.evaluate_rules('2030-01-01 00:30+00', array['t_rule']);
select is(pg_temp.deliveries(), 1::bigint, 'no new notification within repeat_interval');

select monitoring.evaluate_rules('2030-01-01 01:05+00', array['t_rule']);
select is(pg_temp.deliveries('repeat'), 1::bigint, 'a repeat notification after repeat_interval');
select is(
  (
    select last_notified_at from monitoring.alerts
    where rule_name = 't_rule'
  ),
  timestamptz '2030-01-01 01:05+00',
  'last_notified_at moves with the repeat'
);

update monitoring._t_metric set value = 3;
select monitoring.evaluate_rules('2030-01-01 01:10+00', array['t_rule']);
select is(pg_temp.state(), 'resolved', 'resolved when the condition clears');
select is(pg_temp.deliveries('resolved'), 1::bigint, 'one resolved notification');
select is(
  (
    select resolved_at from monitoring.alerts
    where rule_name = 't_rule'
  ),
  timestamptz '2030-01-01 01:10+00',
  'resolved_at is set'
);
select results_eq(
  $$select from_state, to_state, event from monitoring.alert_history where rule_name = 't_rule' order by id$$,
  $$values
    (null::text, 'pending'::text, null::text), ('pending', 'firing', 'firing'), ('firing', 'resolved', 'resolved')$$,
  'alert_history holds every transition and the notification sent with it'
);
select monitoring.evaluate_rules('2030-01-01 01:11+00', array['t_rule']);
select is(pg_temp.deliveries(), 3::bigint, 'nothing more is sent while resolved');

-- ---------------------------------------------------------------------------------------------
-- payload
-- ---------------------------------------------------------------------------------------------

select ok(
  (
    select
      payload ?& array['timestamp', 'service', 'alerts']
      and payload ->> 'service' = 'WhatsApp Notifications'
      and (payload -> 'alerts' -> 0) ?& array['severity', 'message', 'metric', 'value']
    from monitoring.deliveries
    where rule_name = 't_rule' and event = 'firing'
  ),
  'the webhook payload has the spec''s {timestamp, service, alerts: [{severity, message, metric, value}]}'
);
select is(
  (
    select payload -> 'alerts' -> 0 -> 'runbook' from monitoring.deliveries
    where rule_name = 't_rule' and event = 'repeat'
  ),
  '["Step one", "Step two"]'::jsonb,
  'every notification carries the rule''s runbook'
);
select results_eq(
  $$
  select payload ->> 'status', payload -> 'alerts' -> 0 ->> 'status', payload -> 'alerts' -> 0 ->> 'endsAt'
  from monitoring.deliveries where rule_name = 't_rule' and event = 'resolved'
  $$,
  $$values ('resolved'::text, 'resolved'::text, '2030-01-01T01:10:00.000Z'::text)$$,
  'the resolved payload says resolved and carries endsAt'
);
select is(
  (
    select count(distinct idempotency_key)::integer from monitoring.deliveries
    where rule_name = 't_rule'
  ),
  3,
  'each notification has its own idempotency key'
);

-- ---------------------------------------------------------------------------------------------
-- a new episode, fingerprints, pending that clears
-- ---------------------------------------------------------------------------------------------

update monitoring._t_metric set value = 20;
select monitoring.evaluate_rules('2030-01-01 02:00+00', array['t_rule']);
select is(pg_temp.state(), 'pending', 'a new breach opens a new episode (pending again)');
select is(
  (
    select count(*)::integer from monitoring.alerts
    where rule_name = 't_rule'
  ),
  1,
  'one alert row per fingerprint, reused across episodes'
);
select is(
  (
    select last_notified_at from monitoring.alerts
    where rule_name = 't_rule'
  ),
  null,
  'the new episode has not been notified yet'
);

insert into monitoring._t_metric values ('{"session_id": "b"}', 50), ('{"session_id": "c"}', 50);
select monitoring.evaluate_rules('2030-01-01 02:00+00', array['t_rule']);
select is(
  (
    select count(*)::integer from monitoring.alerts
    where rule_name = 't_rule'
  ),
  3,
  'each label set is its own alert'
);
select is(
  (
    select count(distinct fingerprint)::integer from monitoring.alerts
    where rule_name = 't_rule'
  ),
  3,
  'with its own fingerprint'
);
select monitoring.evaluate_rules('2030-01-01 02:01+00', array['t_rule']);
select is(
  (
    select count(*)::integer from monitoring.alerts
    where rule_name = 't_rule'
  ),
  3,
  'evaluating again adds no alert for the same labels'
);

update monitoring._t_metric set value = 1
where labels = '{"session_id": "b"}';
select monitoring.evaluate_rules('2030-01-01 02:02+00', array['t_rule']);
select is(pg_temp.state('{"session_id": "b"}'), 'resolved', 'a pending alert that clears resolves');
select is(
  (
    select count(*)::integer from monitoring.deliveries inner join monitoring.alerts as a using (fingerprint)
    where a.labels ->> 'session_id' = 'b'
  ),
  0,
  '... without any notification (it never fired)'
);

delete from monitoring._t_metric
where labels = '{"session_id": "c"}';
select monitoring.evaluate_rules('2030-01-01 02:03+00', array['t_rule']);
select is(pg_temp.state('{"session_id": "c"}'), 'resolved', 'an instance no longer reported resolves');

-- ---------------------------------------------------------------------------------------------
-- silences
-- ---------------------------------------------------------------------------------------------

select lives_ok(
  $$select monitoring.create_silence(
    '[{"name": "alertname", "value": "t_.*", "isRegex": true}, {"name": "team", "value": "ops"}]',
    interval '2 hours', 'planned maintenance', 'ops@example.com', '2030-01-01 02:00+00')$$,
  'a silence on t_rule is created'
);
delete from monitoring.deliveries
where rule_name = 't_rule';
select monitoring.evaluate_rules('2030-01-01 02:10+00', array['t_rule']);
select is(pg_temp.state(), 'firing', 'a silenced alert still goes pending -> firing');
select is(pg_temp.deliveries(), 0::bigint, 'but no notification is queued');
select isnt(
  (
    select silenced_by from monitoring.alert_history
    where rule_name = 't_rule'
    order by id desc limit 1
  ),
  null,
  'the history names the silence that suppressed it'
);
select is(
  (
    select count(*)::integer from monitoring.active_alerts
    where rule_name = 't_rule' and state = 'firing'
  ),
  1,
  'active_alerts lists the silenced firing alert'
);

select monitoring.evaluate_rules('2030-01-01 03:30+00', array['t_rule']);
select is(pg_temp.deliveries('repeat'), 0::bigint, 'repeats are suppressed too');

select monitoring.evaluate_rules('2030-01-01 04:01+00', array['t_rule']);
select is(pg_temp.deliveries('firing'), 1::bigint, 'when the silence ends, the still-firing alert is notified');

select monitoring.create_silence('{"alertname": "t_rule"}', interval '1 hour', 'quiet', 'ops', '2030-01-01 04:30+00');
update monitoring._t_metric set value = 0
where labels = '{}';
select monitoring.evaluate_rules('2030-01-01 04:40+00', array['t_rule']);
select is(pg_temp.state(), 'resolved', 'a silenced alert still resolves');
select is(pg_temp.deliveries('resolved'), 0::bigint, 'without a resolved notification');
select ok(
  monitoring.expire_silence((select max(id) from monitoring.silences), '2030-01-01 04:50+00'),
  'a silence can be expired early'
);

-- ---------------------------------------------------------------------------------------------
-- disabled rules, schedule-driven evaluation
-- ---------------------------------------------------------------------------------------------

update monitoring._t_metric set value = 99;
update monitoring.alert_rules set for_period = interval '0'
where name = 't_rule';
select monitoring.evaluate_rules('2030-01-01 05:00+00', array['t_rule']);
select is(pg_temp.state(), 'firing', 'for_period 0 fires at once');
update monitoring.alert_rules set enabled = false
where name = 't_rule';
select monitoring.evaluate_rules('2030-01-01 05:01+00', array['t_rule']);
select is(
  (
    select count(*)::integer from monitoring.alerts
    where rule_name = 't_rule' and state <> 'resolved'
  ),
  0,
  'disabling a rule resolves its alerts'
);
update monitoring.alert_rules set enabled = true, schedule = '*/15 * * * *'
where name = 't_rule';
update monitoring.rule_state set last_checked_at = '2030-01-01 06:00:05+00'
where rule_name = 't_rule';
select ok(
  not (monitoring.evaluate_rules('2030-01-01 06:01+00') -> 'evaluated') ? 't_rule',
  'the scheduled evaluator skips a */15 rule at :01'
);
select ok(
  (monitoring.evaluate_rules('2030-01-01 06:15+00') -> 'evaluated') ? 't_rule',
  'and evaluates it at :15'
);

-- ---------------------------------------------------------------------------------------------
-- one failing rule never stops the others
-- ---------------------------------------------------------------------------------------------

insert into monitoring.alert_rules (name, description, severity, metric, check_function, threshold, runbook)
values ('t_broken', 'a rule whose check raises', 'warning', 'x', '_check_t_broken', 1, array['Fix it']);
select is(
  monitoring.evaluate_rules('2030-01-01 07:00+00', array['t_broken', 't_rule']) -> 'evaluated',
  '["t_rule"]'::jsonb,
  'a failing rule does not stop the others'
);
select is(
  monitoring.evaluate_rules('2030-01-01 07:01+00', array['t_broken']) -> 'errors' ->> 't_broken',
  'division by zero',
  'its error is returned'
);
select results_eq(
  $$select sqlstate, message from monitoring.rule_errors where rule_name = 't_broken' order by id$$,
  $$values ('22012'::text, 'division by zero'::text), ('22012', 'division by zero')$$,
  'and recorded in rule_errors'
);
select results_eq(
  $$select last_error, consecutive_errors from monitoring.rule_state where rule_name = 't_broken'$$,
  $$values ('division by zero'::text, 2)$$,
  'rule_state keeps the last error'
);
select is(
  monitoring.health('2030-01-01 07:02+00') -> 'alerts' -> 'ruleErrors' -> 0 ->> 'rule',
  't_broken',
  'the failing rule surfaces in health()'
);
select ok(
  monitoring.health('2030-01-01 07:02+00') ->> 'status' in ('degraded', 'unhealthy')
  and monitoring.health('2030-01-01 07:02+00') -> 'alerts' ->> 'level' in ('degraded', 'unhealthy')
  and monitoring.health('2030-01-01 07:02+00') -> 'alerts' ->> 'reason'
  like '%alert rule evaluation failing: t_broken%',
  'and degrades it'
);
delete from monitoring.alert_rules
where name = 't_broken';
select throws_like(
  $$select monitoring.evaluate_rules(now(), array['no_such_rule'])$$,
  'evaluate_rules: unknown rule(s) no_such_rule',
  'asking for an unknown rule is an error'
);

-- ---------------------------------------------------------------------------------------------
-- the seeded rules on crafted data ("as of now", raw rows: no rollup yet)
-- ---------------------------------------------------------------------------------------------

update monitoring.rollup_state set watermark = '-infinity';
delete from monitoring._t_metric;

insert into public.whatsapp_sessions (session_id, phone_number, connection_state, last_connected_at, updated_at)
values ('t-session', '+5511999990000', 'disconnected', now() - interval '7 minutes', now() - interval '7 minutes');
select monitoring.evaluate_rules(now(), array['whatsapp_disconnected']);
select results_eq(
  $$select state, severity, labels ->> 'session_id' from monitoring.alerts
    where rule_name = 'whatsapp_disconnected' and labels ->> 'session_id' = 't-session'$$,
  $$values ('firing'::text, 'critical'::text, 't-session'::text)$$,
  'whatsapp_disconnected fires for a session down more than 5 minutes'
);
select is(
  monitoring.health() -> 'alerts' ->> 'level',
  'unhealthy',
  'a firing critical alert makes health() unhealthy'
);
update public.whatsapp_sessions set connection_state = 'connected', last_connected_at = now()
where session_id = 't-session';
select monitoring.evaluate_rules(now(), array['whatsapp_disconnected']);
select is(
  (
    select state from monitoring.alerts
    where rule_name = 'whatsapp_disconnected' and labels ->> 'session_id' = 't-session'
  ),
  'resolved',
  'and resolves once it is connected'
);

insert into public.whatsapp_notifications (phone_number, status, created_at)
select
  '+5511999990000' as phone_number,
  case when g <= 5 then 'sent' else 'failed' end as status,
  now() - interval '10 minutes' as created_at
from generate_series(1, 8) as g;
select monitoring.evaluate_rules(now(), array['low_delivery_rate']);
select is(
  (
    select count(*)::integer from monitoring.alerts
    where rule_name = 'low_delivery_rate'
  ),
  0,
  'low_delivery_rate stays quiet with 8 messages (not more than 10)'
);
insert into public.whatsapp_notifications (phone_number, status, created_at)
select
  '+5511999990000' as phone_number,
  'failed' as status,
  now() - interval '10 minutes' as created_at
from generate_series(1, 4) as g;
select monitoring.evaluate_rules(now(), array['low_delivery_rate']);
select results_eq(
  $$select state, value from monitoring.alerts where rule_name = 'low_delivery_rate'$$,
  $$values ('firing'::text, 41.67::numeric)$$,
  'low_delivery_rate fires at 41.67 % over 12 messages'
);

insert into public.whatsapp_error_logs (error_type, created_at)
select
  'rate_limited' as error_type,
  now() - interval '5 minutes' as created_at
from generate_series(1, 21);
select monitoring.evaluate_rules(now(), array['high_error_rate', 'error_rate_webhook']);
select results_eq(
  $$select rule_name, state, value from monitoring.alerts
    where rule_name in ('high_error_rate', 'error_rate_webhook') order by rule_name$$,
  $$values ('high_error_rate'::text, 'firing'::text, 21::numeric)$$,
  'high_error_rate fires at 21 errors in an hour; error_rate_webhook (> 50) does not'
);

select * from finish();
rollback;
