-- Test: alerting on-call people trust (issue 15), at exact times: keep_firing_for (recovering),
-- no data (nodata, keep_last), error_state ok, inhibition (and its validation), and grouping
-- (one delivery per group and channel, group_wait).
begin;
create extension if not exists pgtap with schema extensions;
select plan(21);

-- A metric the test controls: value and volume per instance; a flag that makes the check raise.
create table monitoring._t_trust (labels jsonb not null, value numeric, volume numeric);
create table monitoring._t_broken (broken boolean not null);
insert into monitoring._t_broken values (false);
create function monitoring._check_t_trust(p_rule monitoring.alert_rules, p_now timestamptz)
returns table (labels jsonb, value numeric, volume numeric, message text)
language sql
stable
set search_path = ''
as $$
  select m.labels, m.value / (case when b.broken then 0 else 1 end), m.volume, format('value %s', m.value)
  from monitoring._t_trust as m
  cross join monitoring._t_broken as b
$$;

insert into monitoring.alert_rules (
  name, description, severity, metric, check_function, comparator, threshold, repeat_interval, runbook,
  keep_firing_for, nodata_state, error_state
) values (
  't_trust', 'test rule', 'warning', 't_metric', '_check_t_trust', '>', 10, interval '1 hour', array['Step one'],
  interval '10 minutes', 'nodata', 'ok'
);

delete from monitoring.deliveries;
delete from monitoring.channels;
delete from monitoring.notification_groups;
update monitoring.settings set group_by = '{alertname}', group_wait = '0', group_interval = '0';
select monitoring.set_channel('hook', 'webhook', 'http://127.0.0.1:8080/hook', 'k3y', 'info');

create function pg_temp.t_state()
returns text
language sql
as $$
  select a.state || case when a.recovering_since is not null then '/recovering' else '' end
  from monitoring.alerts as a
  where a.rule_name = 't_trust' and a.labels ->> 'condition' is null and a.labels ->> 'session_id' = 'a'
$$;

create function pg_temp.t_events()
returns text
language sql
as $$
  select coalesce(string_agg(d.event || ':' || cardinality(d.fingerprints), ',' order by d.id), '')
  from monitoring.deliveries as d where d.channel = 'hook'
$$;

-- ---------------------------------------------------------------------------------------------
-- keep_firing_for: a cleared alert stays firing (recovering) for 10 minutes
-- ---------------------------------------------------------------------------------------------
insert into monitoring._t_trust values ('{"session_id": "a"}', 20, 100);
select monitoring.evaluate_rules('2030-01-01 00:00+00', array['t_trust']);
select is(pg_temp.t_state(), 'firing', 'fires at once');
update monitoring._t_trust set value = 5;
select monitoring.evaluate_rules('2030-01-01 00:05+00', array['t_trust']);
select is(pg_temp.t_state(), 'firing/recovering', 'the condition cleared: still firing, recovering');
update monitoring._t_trust set value = 20;
select monitoring.evaluate_rules('2030-01-01 00:07+00', array['t_trust']);
select is(pg_temp.t_state(), 'firing', 'the breach is back: firing, no longer recovering');
update monitoring._t_trust set value = 5;
select monitoring.evaluate_rules('2030-01-01 00:08+00', array['t_trust']);
select monitoring.evaluate_rules('2030-01-01 00:17+00', array['t_trust']);
select is(pg_temp.t_state(), 'firing/recovering', '9 minutes clear of 10: recovering');
select monitoring.evaluate_rules('2030-01-01 00:18+00', array['t_trust']);
select is(pg_temp.t_state(), 'resolved', '10 minutes clear: resolved');
select is(pg_temp.t_events(), 'firing:1,resolved:1', 'one firing and one resolved notification');
select results_eq(
  $$select coalesce(from_state, '-'), to_state from monitoring.alert_history where rule_name = 't_trust' order by id$$,
  $$values ('-'::text, 'firing'::text), ('firing', 'recovering'), ('recovering', 'firing'), ('firing', 'recovering'),
    ('recovering', 'resolved')$$,
  'history shows each recovery'
);

-- ---------------------------------------------------------------------------------------------
-- no data: nodata fires a no-data alert; keep_last keeps every alert as it is
-- ---------------------------------------------------------------------------------------------
update monitoring._t_trust set volume = 0;
select monitoring.evaluate_rules('2030-01-01 01:00+00', array['t_trust']);
select is(
  (
    select state from monitoring.alerts
    where rule_name = 't_trust' and labels ->> 'condition' = 'no_data'
  ),
  'firing',
  'a rule that saw data and sees none fires its no-data alert'
);
select is(
  (
    select last_data_at from monitoring.rule_state
    where rule_name = 't_trust'
  ),
  timestamptz '2030-01-01 00:18+00',
  'rule_state.last_data_at is when data was last seen'
);
update monitoring._t_trust set volume = 100;
select monitoring.evaluate_rules('2030-01-01 01:01+00', array['t_trust']);
select is(
  (
    select state from monitoring.alerts
    where rule_name = 't_trust' and labels ->> 'condition' = 'no_data'
  ),
  'resolved',
  'data back: the no-data alert resolves at once'
);
update monitoring.alert_rules set nodata_state = 'keep_last'
where name = 't_trust';
update monitoring._t_trust set value = 20;
select monitoring.evaluate_rules('2030-01-01 01:02+00', array['t_trust']);
update monitoring._t_trust set value = 5, volume = 0;
select monitoring.evaluate_rules('2030-01-01 01:30+00', array['t_trust']);
select is(pg_temp.t_state(), 'firing', 'keep_last: without data the firing alert is left as it is');

-- ---------------------------------------------------------------------------------------------
-- error_state ok: a check that raises resolves the rule's alerts (no error alert)
-- ---------------------------------------------------------------------------------------------
update monitoring._t_broken set broken = true;
select monitoring.evaluate_rules('2030-01-01 01:31+00', array['t_trust']);
select is(
  pg_temp.t_state(), 'firing/recovering',
  'error_state ok: the failing rule''s alerts clear (and resolve after keep_firing_for)'
);
select is(
  (
    select count(*)::integer from monitoring.alerts
    where rule_name = 't_trust' and labels ->> 'condition' = 'error'
  ),
  0,
  'error_state ok: no error alert'
);
update monitoring._t_broken set broken = false;

-- ---------------------------------------------------------------------------------------------
-- inhibition: a firing source mutes the target, which is told once the source resolves
-- ---------------------------------------------------------------------------------------------
insert into monitoring.inhibit_rules (name, source_matchers, target_matchers, equal, comment)
values ('t_mute', '{"session_id": "src"}', '{"session_id": "tgt"}', '{alertname}', 'test');
delete from monitoring.deliveries;
update monitoring.alert_rules set nodata_state = 'ok', keep_firing_for = '0'
where name = 't_trust';
update monitoring._t_trust set value = 20, volume = 100;
insert into monitoring._t_trust values ('{"session_id": "src"}', 20, 100), ('{"session_id": "tgt"}', 20, 100);
select monitoring.evaluate_rules('2030-01-01 02:00+00', array['t_trust']);
select is(pg_temp.t_events(), 'firing:1', 'one message: the source only');
select is(
  (
    select inhibited_by_rule from monitoring.active_alerts
    where labels ->> 'session_id' = 'tgt'
  ),
  't_trust',
  'the target shows as inhibited by the source''s rule'
);
update monitoring._t_trust set value = 5
where labels ->> 'session_id' = 'src';
select monitoring.evaluate_rules('2030-01-01 02:01+00', array['t_trust']);
select is(
  pg_temp.t_events(), 'firing:1,firing:2',
  'the source resolves while the target fires: one group message tells both'
);
select is(
  (
    select string_agg(a.alert ->> 'status', ',' order by a.alert ->> 'status')
    from monitoring.deliveries as d
    cross join lateral jsonb_array_elements(d.payload -> 'alerts') as a (alert)
    where d.id = (select max(d2.id) from monitoring.deliveries as d2)
  ),
  'firing,resolved',
  'the group message carries the target firing and the source resolved'
);
select throws_ok(
  $$insert into monitoring.inhibit_rules (name, source_matchers, target_matchers, comment)
    values ('t_self', '{"alertname": "t_trust"}', '{"session_id": "tgt"}', 'x')$$,
  '23514',
  'inhibit_rules t_self matches itself: an alert can match both source_matchers and target_matchers, and would '
  || 'mute its own kind',
  'an inhibition that could match the same alert on both sides is refused'
);
select throws_ok(
  $$update monitoring.settings set group_by = '{nope}'$$,
  '23514',
  'settings.group_by: unknown label(s) nope (at most 10 labels)',
  'an unknown group label is refused'
);

-- ---------------------------------------------------------------------------------------------
-- group_wait: a new group waits, then one message tells all it collected
-- ---------------------------------------------------------------------------------------------
delete from monitoring.deliveries;
delete from monitoring.notification_groups;
update monitoring.settings set group_wait = '2 minutes';
update monitoring.alert_rules set repeat_interval = '1 day'
where name = 't_trust';
insert into monitoring._t_trust values ('{"session_id": "x"}', 20, 100);
select monitoring.evaluate_rules('2030-01-01 03:00+00', array['t_trust']);
insert into monitoring._t_trust values ('{"session_id": "y"}', 20, 100);
select monitoring.evaluate_rules('2030-01-01 03:01+00', array['t_trust']);
select is(pg_temp.t_events(), '', 'group_wait: nothing before 2 minutes');
select monitoring.evaluate_rules('2030-01-01 03:02+00', array['t_trust']);
select is(pg_temp.t_events(), 'firing:2', 'then one message with both alerts');

select * from finish();
rollback;
