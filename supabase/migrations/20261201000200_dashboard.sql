-- The monitoring dashboard's data (issue 13): one JSON document built inside Postgres in one call,
-- and silences created and expired through the dashboard with who did it.
--
-- The Edge Function `monitoring-dashboard` calls these functions after it has checked the
-- caller's JWT and admin role; `anon` and `authenticated` still reach nothing in `monitoring`.
-- The document reads the views admins query (to_jsonb of their rows), so a column added to a
-- view shows up in the document, and the component, without a change here.
--
-- Objects (all in schema monitoring):
--   columns  silences.expired_by, silences.expired_at
--   function _mask_phones(text)                          internal: phone numbers in free text masked
--   function _dashboard_hours(text)                      internal: the chart window, validated
--   function dashboard(text, integer)                    the document
--   function create_silence_as(text, jsonb, text, text)  a silence made from the dashboard
--   function expire_silence_as(text, bigint)             a silence expired from the dashboard


-- =============================================================================================
-- Tables
-- =============================================================================================

alter table monitoring.silences
add column if not exists expired_by text,
add column if not exists expired_at timestamptz;

comment on column monitoring.silences.created_by is
'Who created the silence: the database user, or for the dashboard the admin''s e-mail and user id.';
comment on column monitoring.silences.expired_by is
'Who expired the silence early through the dashboard (e-mail and user id); null otherwise.';
comment on column monitoring.silences.expired_at is
'When the silence was expired early through the dashboard; null otherwise.';


-- =============================================================================================
-- API: Private
-- =============================================================================================

create or replace function monitoring._mask_phones(
  -- free text such as an error message
  p_text text
)
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
declare
  v_out text := '';
  v_rest text := p_text;
  v_match text[];
  v_pos integer;
begin
  if p_text is null then
    return null;
  end if;
  -- a run of 7 or more digits, optionally with a leading + and separators (space . - ( ) /)
  loop
    v_match := pg_catalog.regexp_match(v_rest, '\+?[0-9][0-9 .()/-]{5,}[0-9]');
    exit when v_match is null;
    v_pos := pg_catalog.strpos(v_rest, v_match[1]);
    if pg_catalog.length(pg_catalog.regexp_replace(v_match[1], '[^0-9]', '', 'g')) >= 7 then
      v_out := v_out || pg_catalog.left(v_rest, v_pos - 1) || monitoring.mask_phone(v_match[1]);
    else
      v_out := v_out || pg_catalog.left(v_rest, v_pos - 1) || v_match[1];
    end if;
    v_rest := pg_catalog.substr(v_rest, v_pos + pg_catalog.length(v_match[1]));
  end loop;
  return v_out || v_rest;
end
$$;

comment on function monitoring._mask_phones(text) is
'Internal: free text with every phone number in it (7 or more digits, optional + and separators) '
'masked as monitoring.mask_phone does: "invalid number +55 11 99999-9999" -> '
'"invalid number +55*******9999".';

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


-- =============================================================================================
-- API: Public
-- =============================================================================================

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


-- =============================================================================================
-- Privileges: service_role and postgres only (the Edge Function connects as one of them)
-- =============================================================================================

revoke all on function monitoring._mask_phones(text) from public, anon, authenticated;
revoke all on function monitoring._dashboard_hours(text) from public, anon, authenticated;
revoke all on function monitoring.dashboard(text, integer) from public, anon, authenticated;
revoke all on function monitoring.create_silence_as(text, jsonb, text, text) from public, anon, authenticated;
revoke all on function monitoring.expire_silence_as(text, bigint) from public, anon, authenticated;

grant execute on function monitoring._mask_phones(text) to service_role, postgres;
grant execute on function monitoring._dashboard_hours(text) to service_role, postgres;
grant execute on function monitoring.dashboard(text, integer) to service_role, postgres;
grant execute on function monitoring.create_silence_as(text, jsonb, text, text) to service_role, postgres;
grant execute on function monitoring.expire_silence_as(text, bigint) to service_role, postgres;
