-- The alert lifecycle (Alertmanager-like), silences and rule evaluation.
--
-- One alert row per fingerprint (rule + labels). A breach opens an episode: pending while it has
-- held for less than the rule's for_period, then firing; resolved when it clears or is no longer
-- reported. Notifications go out on firing, on resolve (only if the firing was notified) and
-- every repeat_interval while firing; an active silence suppresses them but never the state.
-- Every transition is written to monitoring.alert_history. evaluate_rules runs each rule in its
-- own subtransaction, so one failing rule is recorded in monitoring.rule_errors and the others
-- still run.

-- ---------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.alerts (
  fingerprint text primary key,
  rule_name text not null references monitoring.alert_rules (name) on update cascade on delete cascade,
  labels jsonb not null,
  severity text not null,
  state text not null,
  value numeric,
  message text,
  started_at timestamptz not null,
  firing_since timestamptz,
  resolved_at timestamptz,
  last_notified_at timestamptz,
  last_evaluated_at timestamptz not null,
  notifications integer not null default 0,
  recovering_since timestamptz,
  notified_state text,
  updated_at timestamptz not null default now(),
  constraint alerts_state_check check (state in ('pending', 'firing', 'resolved')),
  constraint alerts_severity_check check (severity in ('critical', 'warning', 'info'))
);

comment on table monitoring.alerts is
'One row per alert instance (rule + labels fingerprint) with its current lifecycle state: pending, firing or resolved.';

comment on column monitoring.alerts.fingerprint is
'First 16 hex digits of md5 of the labels (which include alertname).';

comment on column monitoring.alerts.labels is
'alertname, severity, the rule''s labels and the instance labels from the check.';

comment on column monitoring.alerts.value is 'The metric value at the last evaluation.';

comment on column monitoring.alerts.started_at is
'When the condition was first seen in the current episode (start of pending).';

comment on column monitoring.alerts.firing_since is
'When the current episode became firing (startsAt of notifications).';

comment on column monitoring.alerts.resolved_at is 'When the last episode resolved (endsAt of notifications).';

comment on column monitoring.alerts.last_notified_at is
'When a notification for the current episode was last queued; null while none was (new or silenced).';

comment on column monitoring.alerts.notifications is 'Notifications queued for this alert over its whole life.';

comment on column monitoring.alerts.recovering_since is
'While firing: when the condition cleared, if it has not come back (the alert is recovering and resolves once '
'the rule''s keep_firing_for has passed); null otherwise.';

comment on column monitoring.alerts.notified_state is
'What the channels last heard of the current episode: firing, resolved, or null (nothing yet: new, silenced or '
'inhibited). A firing alert not notified as firing is due; a resolved one notified as firing is due.';

create index if not exists alerts_rule_state_idx on monitoring.alerts (rule_name, state);

create index if not exists alerts_active_idx on monitoring.alerts (state) where state in ('pending', 'firing');

create table if not exists monitoring.alert_history (
  id bigint generated always as identity primary key,
  fingerprint text not null,
  rule_name text not null,
  labels jsonb not null,
  from_state text,
  to_state text not null,
  value numeric,
  message text,
  occurred_at timestamptz not null,
  event text,
  silenced_by bigint,
  inhibited_by text
);

comment on table monitoring.alert_history is
'Every alert state transition (kept 90 days by default, see retention_policies).';

comment on column monitoring.alert_history.from_state is 'State before the transition; null for a new alert.';

comment on column monitoring.alert_history.event is
'Notification queued with this transition (firing or resolved); null when none was.';

comment on column monitoring.alert_history.silenced_by is 'Id of the silence that suppressed the notification, if any.';

comment on column monitoring.alert_history.inhibited_by is
'Fingerprint of the firing alert that inhibited the notification, if any (see monitoring.inhibit_rules).';

create index if not exists alert_history_occurred_at_idx on monitoring.alert_history (occurred_at);

create index if not exists alert_history_fingerprint_idx on monitoring.alert_history (fingerprint, occurred_at);

create table if not exists monitoring.silences (
  id bigint generated always as identity primary key,
  starts_at timestamptz not null default now(),
  ends_at timestamptz not null,
  matchers jsonb not null,
  comment text not null,
  created_by text not null default current_user,
  created_at timestamptz not null default now(),
  expired_by text,
  expired_at timestamptz
);

comment on table monitoring.silences is
'Silences: while active (starts_at <= now < ends_at), alerts whose labels match every matcher are not notified; '
'their state is still tracked.';

comment on column monitoring.silences.created_by is
'Who created the silence: the database user, or for the dashboard the admin''s e-mail and user id.';

comment on column monitoring.silences.expired_by is
'Who expired the silence early through the dashboard (e-mail and user id); null otherwise.';

comment on column monitoring.silences.expired_at is
'When the silence was expired early through the dashboard; null otherwise.';

comment on column monitoring.silences.matchers is
'Array of {"name", "value", "isRegex", "isEqual"} label matchers (alertname, severity or any label); an object '
'{"label": "value"} is accepted and stored as equality matchers.';

create index if not exists silences_ends_at_idx on monitoring.silences (ends_at);

create table if not exists monitoring.rule_state (
  rule_name text primary key references monitoring.alert_rules (name) on update cascade on delete cascade,
  last_checked_at timestamptz,
  last_evaluated_at timestamptz,
  last_ok_at timestamptz,
  last_error text,
  last_error_at timestamptz,
  consecutive_errors integer not null default 0,
  last_duration_ms numeric,
  last_data_at timestamptz,
  schedule text,
  schedule_spec jsonb
);

comment on table monitoring.rule_state is
'Evaluation bookkeeping per rule: when it was last due, evaluated, succeeded or failed.';

comment on column monitoring.rule_state.last_checked_at is
'When the scheduled evaluator last looked whether the rule was due.';

comment on column monitoring.rule_state.last_data_at is
'When the check last reported data (an instance with a volume > 0); a rule that has seen data and sees none is '
'in no data (see alert_rules.nodata_state).';

comment on column monitoring.rule_state.schedule is
'The alert_rules.schedule that schedule_spec was parsed from (the evaluator parses again when the rule''s schedule '
'differs).';

comment on column monitoring.rule_state.schedule_spec is
'The rule''s schedule as monitoring._cron_parse() expands it, kept so the every-minute "is it due?" test does not '
'parse the cron expression again (about 1 ms a rule).';

comment on column monitoring.rule_state.last_error is
'Message of the last failed evaluation; null once the rule evaluates again.';

create table if not exists monitoring.rule_errors (
  id bigint generated always as identity primary key,
  rule_name text not null,
  occurred_at timestamptz not null,
  sqlstate text,
  message text not null,
  detail text,
  context text
);

comment on table monitoring.rule_errors is 'Every failed rule evaluation (the other rules of the run still evaluate).';

create index if not exists rule_errors_occurred_at_idx on monitoring.rule_errors (occurred_at);

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._fingerprint(
  -- the full label set of an alert
  p_labels jsonb
)
returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  return left(md5(p_labels::text), 16);
end
$$;

comment on function monitoring._fingerprint(jsonb) is
'Internal: the fingerprint of a label set (jsonb text is canonical, so equal labels give equal fingerprints).';

create or replace function monitoring._breaches(
  -- metric value
  p_value numeric,
  -- >, >=, < or <=
  p_comparator text,
  -- rule threshold
  p_threshold numeric
)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return coalesce(case p_comparator
    when '>' then p_value > p_threshold
    when '>=' then p_value >= p_threshold
    when '<' then p_value < p_threshold
    when '<=' then p_value <= p_threshold
  end, false);
end
$$;

comment on function monitoring._breaches(numeric, text, numeric) is
'Internal: value compared with threshold; false when value is null.';

create or replace function monitoring._silence_matches(
  -- normalized matchers of a silence
  p_matchers jsonb,
  -- labels of an alert
  p_labels jsonb
)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- plpgsql: its plan is kept for the session (a sql function with a set clause is planned at each call)
  return (
    select coalesce(bool_and(
      case
        when coalesce((m.matcher ->> 'isRegex')::boolean, false)
          then (coalesce(p_labels ->> (m.matcher ->> 'name'), '') ~ ('^(?:' || (m.matcher ->> 'value') || ')$'))
        else coalesce(p_labels ->> (m.matcher ->> 'name'), '') = (m.matcher ->> 'value')
      end = coalesce((m.matcher ->> 'isEqual')::boolean, true)
    ), false)
    from jsonb_array_elements(p_matchers) as m (matcher)
  );
end
$$;

comment on function monitoring._silence_matches(jsonb, jsonb) is
'Internal: true when every matcher matches the labels (regex matchers are anchored, as in Alertmanager).';

create or replace function monitoring._silence_for(
  -- labels of an alert
  p_labels jsonb,
  -- now
  p_now timestamptz
)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
begin
  -- plpgsql: its plan is kept for the session (a sql function with a set clause is planned at each call)
  return (
    select s.id
    from monitoring.silences as s
    where
      s.starts_at <= p_now
      and s.ends_at > p_now
      and monitoring._silence_matches(s.matchers, p_labels)
    order by s.ends_at desc
    limit 1
  );
end
$$;

comment on function monitoring._silence_for(jsonb, timestamptz) is
'Internal: id of an active silence matching the labels at p_now, or null.';

create or replace function monitoring._normalize_matchers(
  -- an object {"label": "value"} or an array of {"name", "value", "isRegex", "isEqual"} matchers
  p_matchers jsonb,
  -- the field named in messages, such as silences.matchers
  p_field text
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_matchers jsonb := p_matchers;
  v_matcher jsonb;
begin
  if jsonb_typeof(v_matchers) = 'object' then
    v_matchers := (
      select jsonb_agg(
        jsonb_build_object('name', e.key, 'value', e.value, 'isRegex', false, 'isEqual', true) order by e.key
      )
      from jsonb_each_text(v_matchers) as e (key, value)
    );
  end if;
  if v_matchers is null or jsonb_typeof(v_matchers) <> 'array' or jsonb_array_length(v_matchers) = 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('%s must be a non-empty array of {"name", "value"} matchers', p_field),
      hint = 'match on alertname, severity or a label, such as '
        '''[{"name": "alertname", "value": "low_delivery_rate"}]''';
  end if;
  for v_matcher in select m.value from jsonb_array_elements(v_matchers) as m (value) loop
    if jsonb_typeof(v_matcher) <> 'object'
      or jsonb_typeof(v_matcher -> 'name') is distinct from 'string'
      or coalesce(v_matcher ->> 'name', '') = ''
      or jsonb_typeof(v_matcher -> 'value') is distinct from 'string'
      or coalesce(jsonb_typeof(v_matcher -> 'isRegex'), 'boolean') <> 'boolean'
      or coalesce(jsonb_typeof(v_matcher -> 'isEqual'), 'boolean') <> 'boolean' then
      raise exception using
        errcode = 'check_violation',
        message = format('%s: %s is not a matcher', p_field, left(v_matcher::text, 200)),
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
          message = format('%s: %L is not a valid regular expression', p_field, left(v_matcher ->> 'value', 200)),
          hint = 'use a POSIX regular expression such as ''low_.*'' (it is anchored; no (?flags) or ***= prefixes)';
      end;
    end if;
  end loop;
  return v_matchers;
end
$$;

comment on function monitoring._normalize_matchers(jsonb, text) is
'Internal: validate label matchers (of a silence or an inhibition rule) and return them as an array of '
'{name, value, isRegex, isEqual}; raises a check_violation naming p_field.';

create or replace function monitoring._validate_silence()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.matchers := monitoring._normalize_matchers(new.matchers, 'silences.matchers');
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

create or replace trigger silences_validate
before insert or update on monitoring.silences
for each row execute function monitoring._validate_silence();

create or replace function monitoring._known_labels()
returns text[]
language sql
stable
set search_path = ''
as $$
  select array(
    select k.label
    from (
      -- set by the evaluator, the service name and the instance labels of the seeded checks
      select unnest(array['alertname', 'severity', 'service', 'condition', 'session_id', 'function', 'job']) as label
      union
      select jsonb_object_keys(r.labels) from monitoring.alert_rules as r
      union
      -- instance labels of custom checks, once their alerts exist
      select jsonb_object_keys(a.labels) from monitoring.alerts as a
    ) as k
    order by k.label
  )
$$;

comment on function monitoring._known_labels() is
'Internal: the label names alerts carry (alertname, severity, service, condition, the seeded checks'' instance '
'labels, every rule''s labels and those of existing alerts): what settings.group_by and inhibit_rules.equal accept.';

-- ---------------------------------------------------------------------------------------------
-- Inhibition (Alertmanager inhibit_rules): while a source alert fires, matching targets are muted
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.inhibit_rules (
  name text primary key,
  source_matchers jsonb not null,
  target_matchers jsonb not null,
  equal text[] not null default '{}'::text[],
  enabled boolean not null default true,
  comment text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table monitoring.inhibit_rules is
'Inhibition rules (as Alertmanager''s): while an alert matching source_matchers fires, notifications of alerts '
'matching target_matchers that have the same values of the labels in equal are muted. Muted alerts keep their '
'state and history; a target still firing when its source resolves is notified then.';

comment on column monitoring.inhibit_rules.source_matchers is
'Label matchers of the inhibiting alert, as in silences ({"alertname": "whatsapp_disconnected"} or an array of '
'{name, value, isRegex, isEqual}).';

comment on column monitoring.inhibit_rules.target_matchers is 'Label matchers of the alerts muted.';

comment on column monitoring.inhibit_rules.equal is
'Labels whose values must be the same in source and target (a label absent from both counts as equal); * '
'means every label but severity (the same rule and instance).';

create or replace function monitoring._validate_inhibit_rule()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_unknown text;
begin
  if new.name is null or new.name !~ '^[a-z][a-z0-9_]{0,62}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('inhibit_rules.name %L must be lower-case snake_case (at most 63 characters)',
        left(new.name, 200)),
      hint = 'use letters, digits and underscores, such as disconnected_mutes_consequences';
  end if;
  if new.comment is null or btrim(new.comment) = '' then
    raise exception using
      errcode = 'check_violation',
      message = format('inhibit_rules.comment of %s must say why the targets are muted', new.name),
      hint = 'such as ''consequences of a disconnection''';
  end if;
  new.source_matchers := monitoring._normalize_matchers(new.source_matchers, 'inhibit_rules.source_matchers');
  new.target_matchers := monitoring._normalize_matchers(new.target_matchers, 'inhibit_rules.target_matchers');
  select string_agg(e.label, ', ' order by e.ord) into v_unknown
  from unnest(new.equal) with ordinality as e (label, ord)
  where e.label is null or (e.label <> '*' and e.label <> all(monitoring._known_labels()));
  if v_unknown is not null then
    raise exception using
      errcode = 'check_violation',
      message = format('inhibit_rules.equal of %s: unknown label(s) %s', new.name, v_unknown),
      hint = format('use labels the alerts carry: %s, or * for every label but severity',
        array_to_string(monitoring._known_labels(), ', '));
  end if;
  -- an alert that matches both sides would mute its own kind: some equality matcher of one side
  -- must fail the other side's matchers on that label
  if not exists (
    select 1
    from jsonb_array_elements(new.source_matchers) as m (matcher)
    where
      not coalesce((m.matcher ->> 'isRegex')::boolean, false)
      and coalesce((m.matcher ->> 'isEqual')::boolean, true)
      and exists (
        select 1 from jsonb_array_elements(new.target_matchers) as t (matcher)
        where
          t.matcher ->> 'name' = m.matcher ->> 'name'
          and not monitoring._silence_matches(
            jsonb_build_array(t.matcher), jsonb_build_object(m.matcher ->> 'name', m.matcher ->> 'value')
          )
      )
    union all
    select 1
    from jsonb_array_elements(new.target_matchers) as m (matcher)
    where
      not coalesce((m.matcher ->> 'isRegex')::boolean, false)
      and coalesce((m.matcher ->> 'isEqual')::boolean, true)
      and exists (
        select 1 from jsonb_array_elements(new.source_matchers) as t (matcher)
        where
          t.matcher ->> 'name' = m.matcher ->> 'name'
          and not monitoring._silence_matches(
            jsonb_build_array(t.matcher), jsonb_build_object(m.matcher ->> 'name', m.matcher ->> 'value')
          )
      )
  ) then
    raise exception using
      errcode = 'check_violation',
      message = format('inhibit_rules %s matches itself: an alert can match both source_matchers and '
        'target_matchers, and would mute its own kind', new.name),
      hint = 'tell the two sides apart by one label with an exact value on one side that the other side refuses, '
        'such as source {"severity": "critical"} and target {"severity": "warning"}';
  end if;
  new.updated_at := now();
  return new;
end
$$;

comment on function monitoring._validate_inhibit_rule() is
'Trigger: validate an inhibition rule (name, comment, matchers, equal labels) and refuse one whose source and '
'target could match the same alert, raising a check_violation naming the field with the fix as hint.';

create or replace trigger inhibit_rules_validate
before insert or update on monitoring.inhibit_rules
for each row execute function monitoring._validate_inhibit_rule();

create or replace trigger inhibit_rules_validate_nulls
before insert or update on monitoring.inhibit_rules
for each row execute function monitoring._validate_not_null();

create or replace function monitoring._inhibitor_for(
  -- labels of an alert
  p_labels jsonb,
  -- its fingerprint (an alert never inhibits itself)
  p_fingerprint text
)
returns text
language plpgsql
stable
set search_path = ''
as $$
begin
  -- plpgsql: its plan is kept for the session (a sql function with a set clause is planned at each call)
  return (
    select src.fingerprint
    from monitoring.inhibit_rules as i
    inner join monitoring.alerts as src
      on
        src.state = 'firing'
        and src.fingerprint <> p_fingerprint
        and monitoring._silence_matches(i.source_matchers, src.labels)
    where
      i.enabled
      and monitoring._silence_matches(i.target_matchers, p_labels)
      and case
        when '*' = any(i.equal) then (src.labels - 'severity') = (p_labels - 'severity')
        else not exists (
          select 1 from unnest(i.equal) as e (label)
          where (src.labels ->> e.label) is distinct from (p_labels ->> e.label)
        )
      end
    order by src.firing_since, src.fingerprint
    limit 1
  );
end
$$;

comment on function monitoring._inhibitor_for(jsonb, text) is
'Internal: fingerprint of a firing alert that inhibits an alert with these labels (by an enabled inhibit rule), '
'or null.';

insert into monitoring.inhibit_rules (name, source_matchers, target_matchers, equal, comment) values
(
  'disconnected_mutes_consequences',
  '{"alertname": "whatsapp_disconnected"}',
  (
    '[{"name": "alertname", "value": "low_delivery_rate|high_error_rate|error_rate_webhook|slow_queue", '
    || '"isRegex": true}]'
  )::jsonb,
  '{}',
  'While WhatsApp is disconnected, delivery rate, errors and the queue suffer as a consequence: the one critical '
  || 'notification says it all'
),
(
  'critical_mutes_warning',
  '{"severity": "critical"}',
  '{"severity": "warning"}',
  '{*}',
  'A critical alert mutes a warning of the same rule and labels'
)
on conflict (name) do nothing;

-- ---------------------------------------------------------------------------------------------
-- API: silences
-- ---------------------------------------------------------------------------------------------
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

create or replace function monitoring.expire_silence(
  -- the silence
  p_id bigint,
  -- now
  p_now timestamptz default now()
)
returns boolean
language sql
volatile
set search_path = ''
as $$
  with expired as (
    update monitoring.silences
    set ends_at = greatest(p_now, starts_at + interval '1 microsecond')
    where id = p_id and ends_at > p_now
    returning 1
  )

  select exists (select 1 from expired)
$$;

comment on function monitoring.expire_silence(bigint, timestamptz) is
'End a silence now; true when it was active or pending.';

create or replace function monitoring.create_silence_as(
  -- who silences: the admin's e-mail and user id from their JWT, 1 to 200 characters
  p_actor text,
  -- equality matchers as an object of labels, e.g. {"alertname": "low_delivery_rate"}
  p_matchers jsonb,
  -- how long: a number and a unit, m (minutes), h (hours) or d (days), from 1m to 30d, e.g. '2h'
  p_duration text,
  -- why, 1 to 500 characters
  p_comment text
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_match text[];
  v_duration interval;
  v_key text;
  v_value jsonb;
  v_id bigint;
begin
  if p_actor is null or pg_catalog.btrim(p_actor) = '' or pg_catalog.char_length(p_actor) > 200 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'create_silence_as: p_actor must be 1 to 200 characters naming who silences',
      hint = 'the Edge Function passes the admin''s e-mail and user id from their JWT';
  end if;
  v_match := pg_catalog.regexp_match(coalesce(p_duration, ''), '^([1-9][0-9]{0,5})(m|h|d)$');
  if v_match is not null then
    v_duration := pg_catalog.make_interval(
      mins => case v_match[2] when 'm' then v_match[1]::integer else 0 end,
      hours => case v_match[2] when 'h' then v_match[1]::integer else 0 end,
      days => case v_match[2] when 'd' then v_match[1]::integer else 0 end
    );
  end if;
  if v_duration is null or v_duration > interval '30 days' then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('create_silence_as: p_duration must be a number and a unit m, h or d, from 1m to 30d (got %s)',
        coalesce(pg_catalog.quote_literal(pg_catalog.left(p_duration, 40)), 'null')),
      hint = 'such as ''30m'', ''2h'' or ''1d''; for longer use pydeploy silence add or monitoring.create_silence';
  end if;
  if p_matchers is null or pg_catalog.jsonb_typeof(p_matchers) <> 'object'
    or (select pg_catalog.count(*) from pg_catalog.jsonb_object_keys(p_matchers)) not between 1 and 20 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'create_silence_as: p_matchers must be an object of 1 to 20 labels, such as {"alertname": "low_delivery_rate"}',
      hint = 'silence one alert by its labels (alertname, severity, session_id...)';
  end if;
  for v_key, v_value in select e.key, e.value from pg_catalog.jsonb_each(p_matchers) as e loop
    if v_key !~ '^[A-Za-z_][A-Za-z0-9_]{0,99}$' then
      raise exception using
        errcode = 'invalid_parameter_value',
        message = format('create_silence_as: p_matchers: %s is not a label name', pg_catalog.quote_literal(pg_catalog.left(v_key, 40))),
        hint = 'label names are letters, digits and _, starting with a letter or _, such as alertname';
    end if;
    if pg_catalog.jsonb_typeof(v_value) <> 'string' or pg_catalog.char_length(v_value #>> '{}') not between 1 and 200 then
      raise exception using
        errcode = 'invalid_parameter_value',
        message = format('create_silence_as: p_matchers: %s must be a text of 1 to 200 characters (got %s)',
          v_key, pg_catalog.left(v_value::text, 40)),
        hint = 'such as {"alertname": "low_delivery_rate"}';
    end if;
  end loop;
  if p_comment is null or pg_catalog.btrim(p_comment) = '' or pg_catalog.char_length(p_comment) > 500 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'create_silence_as: p_comment must say why, in 1 to 500 characters',
      hint = 'such as ''carrier maintenance until 14:00, ticket OPS-12''';
  end if;
  v_id := monitoring.create_silence(p_matchers, v_duration, pg_catalog.btrim(p_comment), pg_catalog.btrim(p_actor));
  return (select pg_catalog.to_jsonb(s) from monitoring.silences as s where s.id = v_id);
end
$$;

comment on function monitoring.create_silence_as(text, jsonb, text, text) is
'A silence made from the dashboard: equality matchers (an object of 1 to 20 labels), a duration such as '
'''2h'' (1m to 30d) and a comment, recorded with created_by = p_actor; returns the silence. Bad '
'arguments raise invalid_parameter_value naming the field and change nothing.';

create or replace function monitoring.expire_silence_as(
  -- who expires it: the admin's e-mail and user id from their JWT, 1 to 200 characters
  p_actor text,
  -- the silence's id
  p_id bigint
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_row monitoring.silences;
begin
  if p_actor is null or pg_catalog.btrim(p_actor) = '' or pg_catalog.char_length(p_actor) > 200 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'expire_silence_as: p_actor must be 1 to 200 characters naming who expires it',
      hint = 'the Edge Function passes the admin''s e-mail and user id from their JWT';
  end if;
  if p_id is null or p_id < 1 then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('expire_silence_as: p_id must be a positive integer (got %s)', coalesce(p_id::text, 'null')),
      hint = 'pass the id of a silence listed by the dashboard';
  end if;
  update monitoring.silences as s
  set
    ends_at = greatest(pg_catalog.now(), s.starts_at + interval '1 microsecond'),
    expired_by = pg_catalog.btrim(p_actor),
    expired_at = pg_catalog.now()
  where s.id = p_id and s.ends_at > pg_catalog.now()
  returning s.* into v_row;
  if v_row.id is null then
    raise exception using
      errcode = 'no_data_found',
      message = format('expire_silence_as: no active or pending silence has id %s', p_id),
      hint = 'it may have ended already; reload the dashboard for the current list';
  end if;
  return pg_catalog.to_jsonb(v_row);
end
$$;

comment on function monitoring.expire_silence_as(text, bigint) is
'Expire an active or pending silence now from the dashboard, recording expired_by = p_actor and '
'expired_at; returns the silence. Raises no_data_found when no such silence is running.';

-- ---------------------------------------------------------------------------------------------
-- Lifecycle
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._transition(
  -- the rule being evaluated
  p_rule monitoring.alert_rules,
  -- the alert instance
  p_fingerprint text,
  -- its labels (null: keep the stored ones)
  p_labels jsonb,
  -- the metric value (null when no longer reported)
  p_value numeric,
  -- the check's message (null: keep the stored one)
  p_message text,
  -- whether the condition holds now
  p_breached boolean,
  -- now
  p_now timestamptz
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_alert monitoring.alerts;
  v_found boolean;
  v_prev text;
  v_new text;
  v_from text;
  v_to text;
begin
  select * into v_alert from monitoring.alerts as a where a.fingerprint = p_fingerprint for update;
  v_found := found;
  v_prev := case when v_found then v_alert.state end;
  -- what history shows: a firing alert whose condition cleared is recovering
  v_from := case when v_prev = 'firing' and v_alert.recovering_since is not null then 'recovering' else v_prev end;

  if not v_found and not p_breached then
    return null;
  end if;

  if p_breached and (v_prev is null or v_prev = 'resolved') then
    -- a new episode
    v_new := case when p_rule.for_period <= interval '0' then 'firing' else 'pending' end;
    insert into monitoring.alerts as a (
      fingerprint, rule_name, labels, severity, state, value, message, started_at, firing_since,
      resolved_at, last_notified_at, last_evaluated_at, recovering_since, notified_state, updated_at
    )
    values (
      p_fingerprint, p_rule.name, coalesce(p_labels, v_alert.labels), p_rule.severity, v_new, p_value,
      p_message, p_now, case when v_new = 'firing' then p_now end, null, null, p_now, null, null, now()
    )
    on conflict (fingerprint) do update
      set
        rule_name = excluded.rule_name,
        labels = excluded.labels,
        severity = excluded.severity,
        state = excluded.state,
        value = excluded.value,
        message = excluded.message,
        started_at = excluded.started_at,
        firing_since = excluded.firing_since,
        resolved_at = null,
        last_notified_at = null,
        last_evaluated_at = excluded.last_evaluated_at,
        recovering_since = null,
        notified_state = null,
        updated_at = excluded.updated_at
    returning a.* into v_alert;
    v_to := v_new;
  elsif p_breached then
    v_new := case
      when v_prev = 'pending' and p_now - v_alert.started_at < p_rule.for_period then 'pending'
      else 'firing'
    end;
    update monitoring.alerts as a
    set
      state = v_new,
      value = p_value,
      message = coalesce(p_message, a.message),
      firing_since = case when v_new = 'firing' then coalesce(a.firing_since, p_now) end,
      recovering_since = null,
      last_evaluated_at = p_now,
      updated_at = now()
    where a.fingerprint = p_fingerprint
    returning a.* into v_alert;
    v_to := v_new;
  elsif v_prev = 'firing' and p_rule.enabled and v_alert.labels ->> 'condition' is null
    and p_now - coalesce(v_alert.recovering_since, p_now) < p_rule.keep_firing_for then
    -- anti-flap: the condition cleared, the alert keeps firing (recovering) for keep_firing_for
    v_new := 'firing';
    update monitoring.alerts as a
    set
      value = coalesce(p_value, a.value),
      message = coalesce(p_message, a.message),
      recovering_since = coalesce(a.recovering_since, p_now),
      last_evaluated_at = p_now,
      updated_at = now()
    where a.fingerprint = p_fingerprint
    returning a.* into v_alert;
    v_to := 'recovering';
  elsif v_prev in ('pending', 'firing') then
    v_new := 'resolved';
    update monitoring.alerts as a
    set
      state = 'resolved',
      value = coalesce(p_value, a.value),
      message = coalesce(p_message, a.message),
      resolved_at = p_now,
      recovering_since = null,
      last_evaluated_at = p_now,
      updated_at = now()
    where a.fingerprint = p_fingerprint
    returning a.* into v_alert;
    v_to := v_new;
  else
    -- still resolved: remember the latest value, nothing to notify
    update monitoring.alerts as a
    set
      value = coalesce(p_value, a.value),
      message = coalesce(p_message, a.message),
      last_evaluated_at = p_now,
      updated_at = now()
    where a.fingerprint = p_fingerprint;
    return null;
  end if;

  if v_to is not distinct from v_from then
    return null;
  end if;

  -- the notification, if any, is decided once every rule of the run is evaluated
  -- (monitoring._notify_due), which fills in this row's event, silenced_by and inhibited_by
  insert into monitoring.alert_history (
    fingerprint, rule_name, labels, from_state, to_state, value, message, occurred_at
  )
  values (
    p_fingerprint, p_rule.name, v_alert.labels, v_from, v_to, v_alert.value, v_alert.message, p_now
  );

  return jsonb_build_object(
    'rule', p_rule.name,
    'fingerprint', p_fingerprint,
    'from', v_from,
    'to', v_to,
    'event', null,
    'notified', false,
    'silenced_by', null,
    'inhibited_by', null,
    'deliveries', 0
  );
end
$$;

comment on function monitoring._transition(monitoring.alert_rules, text, jsonb, numeric, text, boolean, timestamptz) is
'Internal: apply one evaluation result to an alert (pending, firing, recovering while keep_firing_for runs, '
'resolved) and write history; returns the change or null. Notifications are decided after the whole run by '
'monitoring._notify_due.';

create or replace function monitoring._run_check(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz
)
returns setof monitoring.check_result
language plpgsql
volatile
set search_path = ''
set jit = off
as $$
begin
  -- the function was checked to exist with this signature when the rule was written
  return query execute format(
    'select c.labels, c.value, c.volume, c.message from monitoring.%I($1, $2) as c', p_rule.check_function
  ) using p_rule, p_now;
end
$$;

comment on function monitoring._run_check(monitoring.alert_rules, timestamptz) is
'Internal: call the rule''s check function monitoring.<check_function>(rule, p_now) and return its rows.';

create or replace function monitoring._evaluate_rule(
  -- the rule
  p_rule monitoring.alert_rules,
  -- now
  p_now timestamptz,
  -- rule_state.last_data_at as the caller read it (under the rule's lock)
  p_last_data_at timestamptz
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_results monitoring.check_result[];
  v_result monitoring.check_result;
  v_labels jsonb;
  v_fingerprint text;
  v_seen text[] := '{}'::text [];
  v_change jsonb;
  v_changes jsonb := '[]'::jsonb;
  v_last_data timestamptz := p_last_data_at;
  v_data boolean := false;
  v_all_labels jsonb[] := '{}'::jsonb [];
  v_fingerprints text[] := '{}'::text [];
  v_known text[];
  v_breached boolean;
begin
  if p_rule.enabled then
    v_results := array(select c from monitoring._run_check(p_rule, p_now) as c);

    -- no data: no instance reports a volume, although the rule has seen data before
    v_data := exists (select 1 from unnest(v_results) as r where coalesce(r.volume, 0) > 0);
    if not v_data and p_rule.nodata_state = 'keep_last' and v_last_data is not null then
      return jsonb_build_object('changes', v_changes, 'data', false);
    elsif not v_data and p_rule.nodata_state = 'nodata' and v_last_data is not null then
      v_labels := coalesce(p_rule.labels, '{}'::jsonb)
        || jsonb_build_object('alertname', p_rule.name, 'severity', p_rule.severity, 'condition', 'no_data');
      v_fingerprint := monitoring._fingerprint(v_labels);
      v_seen := v_seen || v_fingerprint;
      v_change := monitoring._transition(
        p_rule, v_fingerprint, v_labels, null,
        format('No data for %s: the check saw no %s over %s (data last seen %s)', p_rule.name, p_rule.metric,
          monitoring._human_interval(coalesce(p_rule."window", interval '1 hour')), monitoring._iso(v_last_data)),
        true, p_now
      );
      if v_change is not null then
        v_changes := v_changes || v_change;
      end if;
    end if;

    -- the instances' labels and fingerprints, and which of them have an alert (any state): an
    -- instance that does not breach and has none is left alone without a visit to each alert (a
    -- rule per session reports every session)
    for i in 1 .. coalesce(array_length(v_results, 1), 0) loop
      v_all_labels[i] := coalesce(p_rule.labels, '{}'::jsonb)
        || coalesce(v_results[i].labels, '{}'::jsonb)
        || jsonb_build_object('alertname', p_rule.name, 'severity', p_rule.severity);
      v_fingerprints[i] := monitoring._fingerprint(v_all_labels[i]);
    end loop;
    v_known := array(select a.fingerprint from monitoring.alerts as a where a.fingerprint = any(v_fingerprints));
    for i in 1 .. coalesce(array_length(v_results, 1), 0) loop
      v_result := v_results[i];
      v_labels := v_all_labels[i];
      v_fingerprint := v_fingerprints[i];
      continue when v_fingerprint = any(v_seen);
      v_seen := v_seen || v_fingerprint;
      v_breached := monitoring._breaches(v_result.value, p_rule.comparator, p_rule.threshold)
        and (p_rule.min_volume is null or coalesce(v_result.volume, 0) > p_rule.min_volume);
      -- what monitoring._transition would return for it: nothing
      continue when not v_breached and not v_fingerprint = any(v_known);
      v_change := monitoring._transition(
        p_rule, v_fingerprint, v_labels, v_result.value, v_result.message, v_breached, p_now
      );
      if v_change is not null then
        v_changes := v_changes || v_change;
      end if;
    end loop;
  end if;

  -- instances the check no longer reports (or every instance of a disabled rule) resolve, as do a
  -- no-data alert once data is back and an error alert once the check runs again
  for v_fingerprint in
    select a.fingerprint
    from monitoring.alerts as a
    where a.rule_name = p_rule.name and a.state in ('pending', 'firing') and a.fingerprint <> all(v_seen)
    order by a.fingerprint
  loop
    v_change := monitoring._transition(p_rule, v_fingerprint, null, null, null, false, p_now);
    if v_change is not null then
      v_changes := v_changes || v_change;
    end if;
  end loop;

  return jsonb_build_object('changes', v_changes, 'data', v_data);
end
$$;

comment on function monitoring._evaluate_rule(monitoring.alert_rules, timestamptz, timestamptz) is
'Internal: run a rule''s check function and apply each reported instance to its alert; instances no longer reported '
'resolve. Without data (no instance reports a volume while the rule has seen data before) nodata_state decides: '
'a no-data alert (nodata), the usual evaluation (ok) or no change (keep_last). The caller holds the rule''s lock '
'and records the run in rule_state. Returns {changes: [...], data: whether an instance reported a volume}.';

-- ---------------------------------------------------------------------------------------------
-- API: evaluation
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring.evaluate_rules(
  -- now (tests pass a fixed time)
  p_now timestamptz default now(),
  -- evaluate only these rules (null: every rule)
  p_rules text[] default null,
  -- evaluate only rules whose schedule is due since the last scheduled check (default: when p_rules is null)
  p_due_only boolean default null,
  -- decide notifications (monitoring._notify_due) after the run; false: only when a rule of this run
  -- changed state or the evaluate job has not succeeded for two minutes (the watchdog)
  p_decide boolean default true
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
  v_run jsonb;
  v_checked timestamptz;
  v_evaluated text[] := '{}'::text [];
  v_errors jsonb := '{}'::jsonb;
  v_transitions jsonb := '[]'::jsonb;
  v_sqlstate text;
  v_message text;
  v_detail text;
  v_context text;
  v_labels jsonb;
  v_fingerprint text;
  v_notified jsonb;
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

  -- Rules over a window read the rollups: bring them up to date first, so each value equals the
  -- raw tables. Before any rule's lock: refresh lock, then rule locks, in every caller.
  if exists (
    select 1 from monitoring.alert_rules as r
    where r."window" is not null and r.enabled and (p_rules is null or r.name = any(p_rules))
  ) then
    perform monitoring._refresh_for_evaluation(p_now);
  end if;

  for v_rule in
    select * from monitoring.alert_rules as r
    where p_rules is null or r.name = any(p_rules)
    order by r.name
  loop
    -- the rule's lock before its rule_state row, the order every other evaluator of a rule keeps
    -- (_evaluate_rule, check_error_rate): row first then lock deadlocked against the watchdog
    perform pg_advisory_xact_lock(hashtext('monitoring.rule'), hashtext(v_rule.name));
    select * into v_state from monitoring.rule_state as s where s.rule_name = v_rule.name;
    if not found then
      insert into monitoring.rule_state (rule_name) values (v_rule.name) on conflict (rule_name) do nothing;
      select * into strict v_state from monitoring.rule_state as s where s.rule_name = v_rule.name;
    end if;

    -- last_checked_at: when the scheduled evaluator last looked (an evaluated rule's final update
    -- below writes it with the rest, one statement a rule)
    v_checked := case when v_rule.enabled and v_due_only then p_now else v_state.last_checked_at end;
    if v_rule.enabled and v_due_only then
      -- the parsed schedule is kept in rule_state: parsing every rule's cron expression every
      -- minute cost more than evaluating the rules that are due
      if v_state.schedule_spec is null or v_state.schedule is distinct from v_rule.schedule
        or jsonb_typeof(v_state.schedule_spec -> 'minute') is distinct from 'number' then
        -- (parsed before the fields were bit masks: parsed again)
        v_state.schedule_spec := monitoring._cron_parse(v_rule.schedule);
        update monitoring.rule_state as s set schedule = v_rule.schedule, schedule_spec = v_state.schedule_spec
        where s.rule_name = v_rule.name;
      end if;
      if not monitoring._cron_due(v_rule.schedule, v_state.last_checked_at, p_now, v_state.schedule_spec) then
        update monitoring.rule_state as s set last_checked_at = p_now where s.rule_name = v_rule.name;
        continue;
      end if;
    end if;
    -- a disabled rule is only visited to resolve what it left firing
    continue when not v_rule.enabled and not exists (
      select 1 from monitoring.alerts as a where a.rule_name = v_rule.name and a.state in ('pending', 'firing')
    );

    v_started := clock_timestamp();
    begin
      v_run := monitoring._evaluate_rule(v_rule, p_now, v_state.last_data_at);
      v_transitions := v_transitions || (v_run -> 'changes');
      v_evaluated := v_evaluated || v_rule.name;
      update monitoring.rule_state as s
      set
        last_checked_at = v_checked,
        last_evaluated_at = p_now,
        last_ok_at = p_now,
        last_data_at = case when (v_run ->> 'data')::boolean then p_now else s.last_data_at end,
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
        last_checked_at = v_checked,
        last_evaluated_at = p_now,
        last_error = v_message,
        last_error_at = p_now,
        consecutive_errors = s.consecutive_errors + 1,
        last_duration_ms = round(extract(epoch from clock_timestamp() - v_started)::numeric * 1000, 3)
      where s.rule_name = v_rule.name;
      v_errors := v_errors || jsonb_build_object(v_rule.name, v_message);
      -- error_state: an error alert, the rule's alerts resolved, or left as they are
      if v_rule.enabled and v_rule.error_state = 'error' then
        v_labels := coalesce(v_rule.labels, '{}'::jsonb)
          || jsonb_build_object('alertname', v_rule.name, 'severity', v_rule.severity, 'condition', 'error');
        v_changes := monitoring._transition(
          v_rule, monitoring._fingerprint(v_labels), v_labels, null,
          format('Rule %s failed: %s', v_rule.name, left(v_message, 500)), true, p_now
        );
        if v_changes is not null then
          v_transitions := v_transitions || v_changes;
        end if;
      elsif v_rule.enabled and v_rule.error_state = 'ok' then
        for v_fingerprint in
          select a.fingerprint from monitoring.alerts as a
          where a.rule_name = v_rule.name and a.state in ('pending', 'firing')
          order by a.fingerprint
        loop
          v_changes := monitoring._transition(v_rule, v_fingerprint, null, null, null, false, p_now);
          if v_changes is not null then
            v_transitions := v_transitions || v_changes;
          end if;
        end loop;
      end if;
    end;
  end loop;

  -- every rule of the run is evaluated: now decide the notifications (silences, inhibition,
  -- grouping), so an inhibiting alert raised in this run already mutes its consequences
  v_notified := case
    when coalesce(p_decide, true) or jsonb_array_length(v_transitions) > 0 or not exists (
        select 1 from monitoring.job_runs as r
        where r.job = 'evaluate' and r.ok and r.finished_at > now() - interval '2 minutes'
      ) then monitoring._notify_due(p_now)
    else '{}'::jsonb
  end;
  v_transitions := (
    select coalesce(jsonb_agg(
      case when n.note is null then t.change else t.change || n.note end order by t.ord
    ), '[]'::jsonb)
    from jsonb_array_elements(v_transitions) with ordinality as t (change, ord)
    left join lateral (select v_notified -> (t.change ->> 'fingerprint') as note) as n on true
  ) || coalesce((
    -- notifications without a state change in this run (repeats, an alert no longer muted)
    select jsonb_agg(n.note order by n.fingerprint)
    from jsonb_each(v_notified) as n (fingerprint, note)
    where not exists (
      select 1 from jsonb_array_elements(v_transitions) as t (change) where t.change ->> 'fingerprint' = n.fingerprint
    )
  ), '[]'::jsonb);

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

comment on function monitoring.evaluate_rules(timestamptz, text[], boolean, boolean) is
'Evaluate enabled rules (those due by their schedule, or the named ones), each in its own subtransaction: a failing '
'rule is recorded in rule_errors and the others still run. Each rule''s advisory lock is taken before its rule_state '
'row, in rule name order, so concurrent evaluators wait instead of deadlocking. Returns evaluated names, errors, '
'transitions (with the notification each got) and the notification count. A failing rule''s error_state decides '
'its alerts; notifications are decided after every rule of the run (monitoring._notify_due), or with p_decide => '
'false only when a rule of the run changed state or the evaluate job has not succeeded for two minutes.';

-- ---------------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------------
create or replace view monitoring.active_alerts
with (security_invoker = true)
as
with active as (
  select
    a.*,
    monitoring._inhibitor_for(a.labels, a.fingerprint) as inhibitor
  from monitoring.alerts as a
  where a.state in ('pending', 'firing')
)

select
  a.rule_name,
  a.severity,
  a.state,
  a.value,
  a.message,
  a.labels,
  a.fingerprint,
  a.started_at,
  a.firing_since,
  a.last_notified_at,
  a.last_evaluated_at,
  monitoring._silence_for(a.labels, now()) as silenced_by,
  r.runbook,
  case
    when a.state = 'pending' then 'pending'
    when a.labels ->> 'condition' = 'no_data' then 'nodata'
    when a.labels ->> 'condition' = 'error' then 'error'
    when a.recovering_since is not null then 'recovering'
    else 'firing'
  end as status,
  a.recovering_since,
  a.inhibitor as inhibited_by,
  src.rule_name as inhibited_by_rule
from active as a
inner join monitoring.alert_rules as r on a.rule_name = r.name
left join monitoring.alerts as src on a.inhibitor = src.fingerprint
order by monitoring._severity_rank(a.severity) desc, a.started_at;

comment on view monitoring.active_alerts is
'Which alerts are pending or firing now, since when, whether a silence covers them, and the runbook to follow; '
'status tells pending, firing, recovering (condition cleared, kept firing for keep_firing_for), nodata or error; '
'inhibited_by names the firing alert (and inhibited_by_rule its rule) that mutes its notifications.';

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------
alter table monitoring.alerts enable row level security;

alter table monitoring.alert_history enable row level security;

alter table monitoring.silences enable row level security;

alter table monitoring.inhibit_rules enable row level security;

alter table monitoring.rule_state enable row level security;

alter table monitoring.rule_errors enable row level security;

create or replace trigger silences_validate_nulls
before insert or update on monitoring.silences
for each row execute function monitoring._validate_not_null();

create or replace trigger rule_state_finite_times
before insert on monitoring.rule_state
for each row execute function monitoring._validate_finite_times(
  'last_checked_at', 'last_evaluated_at!', 'last_ok_at!', 'last_error_at!', 'last_data_at!'
);

-- the evaluator updates every rule's row every minute: the when clause keeps the check's function
-- (about 0.08 ms a row) for the updates it would refuse
create or replace trigger rule_state_finite_times_update
before update on monitoring.rule_state
for each row
when (
  not isfinite(new.last_checked_at) or not isfinite(new.last_evaluated_at) or not isfinite(new.last_ok_at)
  or not isfinite(new.last_error_at) or not isfinite(new.last_data_at)
  or (new.last_evaluated_at is null and old.last_evaluated_at is not null)
  or (new.last_ok_at is null and old.last_ok_at is not null)
  or (new.last_error_at is null and old.last_error_at is not null)
  or (new.last_data_at is null and old.last_data_at is not null)
)
execute function monitoring._validate_finite_times(
  'last_checked_at', 'last_evaluated_at!', 'last_ok_at!', 'last_error_at!', 'last_data_at!'
);

create or replace trigger rule_errors_finite_times
before insert on monitoring.rule_errors
for each row execute function monitoring._validate_finite_times('occurred_at');
