-- Fixes found under load (tests/test_load.py).
--
-- 1. monitoring-evaluate and monitoring-watchdog deadlocked. pg_cron starts both in the same second
--    every minute. The scheduled evaluate_rules(now()) (due-only) updated rule_state.last_checked_at
--    of monitor_stalled, keeping that row locked, and then waited for the rule's advisory lock; the
--    watchdog's evaluate_rules(now(), array['monitor_stalled']) held that advisory lock while it ran
--    the check and then waited for the same rule_state row. Postgres aborted one of them ("deadlock
--    detected" in monitoring.rule_errors, health() degraded, a one-second stall). Same pattern
--    between the evaluate job and check-whatsapp-errors (check_error_rate) on error_rate_webhook, and
--    any forced evaluation. evaluate_rules now takes the rule's advisory lock before it touches the
--    rule's rule_state row, the order _evaluate_rule and check_error_rate already keep; evaluators
--    of several rules take the locks in rule name order, so they queue behind each other instead.
--    The function is otherwise unchanged (its grants and privileges stay: create or replace).

create or replace function monitoring.evaluate_rules(
  -- now (tests pass a fixed time)
  p_now timestamptz default now(),
  -- evaluate only these rules (null: every rule)
  p_rules text[] default null,
  -- evaluate only rules whose schedule is due since the last scheduled check (default: when p_rules is null)
  p_due_only boolean default null
)
returns jsonb
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
declare
  v_rule monitoring.alert_rules;
  v_state monitoring.rule_state;
  v_due_only constant boolean := coalesce(p_due_only, p_rules is null);
  v_unknown text[];
  v_started timestamptz;
  v_changes jsonb;
  v_evaluated text[] := '{}'::text [];
  v_errors jsonb := '{}'::jsonb;
  v_transitions jsonb := '[]'::jsonb;
  v_sqlstate text;
  v_message text;
  v_detail text;
  v_context text;
begin
  v_unknown := array(
    select u.name from unnest(p_rules) as u (name)
    where not exists (select 1 from monitoring.alert_rules as r where r.name = u.name)
  );
  if cardinality(v_unknown) > 0 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('evaluate_rules: unknown rule(s) %s', array_to_string(v_unknown, ', ')),
      hint = 'see select name from monitoring.alert_rules';
  end if;

  for v_rule in
    select * from monitoring.alert_rules as r
    where p_rules is null or r.name = any(p_rules)
    order by r.name
  loop
    -- the rule's lock before its rule_state row, the order every other evaluator of a rule keeps
    -- (_evaluate_rule, check_error_rate): row first then lock deadlocked against the watchdog
    perform pg_advisory_xact_lock(hashtext('monitoring.rule'), hashtext(v_rule.name));
    insert into monitoring.rule_state (rule_name) values (v_rule.name) on conflict (rule_name) do nothing;
    select * into v_state from monitoring.rule_state as s where s.rule_name = v_rule.name;

    if v_rule.enabled and v_due_only then
      update monitoring.rule_state as s set last_checked_at = p_now where s.rule_name = v_rule.name;
      continue when not monitoring._cron_due(v_rule.schedule, v_state.last_checked_at, p_now);
    end if;
    -- a disabled rule is only visited to resolve what it left firing
    continue when not v_rule.enabled and not exists (
      select 1 from monitoring.alerts as a where a.rule_name = v_rule.name and a.state in ('pending', 'firing')
    );

    v_started := clock_timestamp();
    begin
      v_changes := monitoring._evaluate_rule(v_rule, p_now);
      v_transitions := v_transitions || v_changes;
      v_evaluated := v_evaluated || v_rule.name;
      update monitoring.rule_state as s
      set
        last_evaluated_at = p_now,
        last_ok_at = p_now,
        last_error = null,
        consecutive_errors = 0,
        last_duration_ms = round(extract(epoch from clock_timestamp() - v_started)::numeric * 1000, 3)
      where s.rule_name = v_rule.name;
    exception when others then
      get stacked diagnostics
        v_sqlstate = returned_sqlstate,
        v_message = message_text,
        v_detail = pg_exception_detail,
        v_context = pg_exception_context;
      insert into monitoring.rule_errors (rule_name, occurred_at, sqlstate, message, detail, context)
      values (v_rule.name, p_now, v_sqlstate, v_message, nullif(v_detail, ''), nullif(v_context, ''));
      update monitoring.rule_state as s
      set
        last_evaluated_at = p_now,
        last_error = v_message,
        last_error_at = p_now,
        consecutive_errors = s.consecutive_errors + 1,
        last_duration_ms = round(extract(epoch from clock_timestamp() - v_started)::numeric * 1000, 3)
      where s.rule_name = v_rule.name;
      v_errors := v_errors || jsonb_build_object(v_rule.name, v_message);
    end;
  end loop;

  return jsonb_build_object(
    'evaluated', to_jsonb(v_evaluated),
    'errors', v_errors,
    'transitions', v_transitions,
    'notifications', (
      select count(*) from jsonb_array_elements(v_transitions) as t (change) where (t.change ->> 'notified')::boolean
    )
  );
end
$$;
comment on function monitoring.evaluate_rules(timestamptz, text[], boolean) is
'Evaluate enabled rules (those due by their schedule, or the named ones), each in its own subtransaction: a failing '
'rule is recorded in rule_errors and the others still run. Each rule''s advisory lock is taken before its rule_state '
'row, in rule name order, so concurrent evaluators wait instead of deadlocking. Returns evaluated names, errors, '
'transitions and the notification count.';
