-- Secrets, channels and the delivery outbox (pg_net, confirmed and retried).
--
-- Notifications are rows of monitoring.deliveries (a logged table, so nothing queued is lost on a
-- restart). The dispatcher sends due rows with net.http_post, signing the exact body pg_net sends
-- (the text of the jsonb argument) with HMAC-SHA256; the reconciler reads net._http_response by
-- request id: 2xx is delivered; any other status, a timeout, an error or no response after the
-- timeout plus a grace is a failed attempt, retried with exponential backoff until max_attempts,
-- then dead-lettered. A retry reuses the delivery's idempotency key and body.
--
-- pg_net, Vault and pg_cron may be absent: every reference to net.*, vault.* and cron.* is dynamic
-- SQL behind a to_regclass/to_regprocedure check, so this file applies everywhere.
do $$
begin
  -- real pg_net on Supabase; the local engine has pydeploy's stand-in schema net instead
  if to_regnamespace('net') is null
    and exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_net') then
    begin
      create extension if not exists pg_net with schema extensions;
    exception when others then
      raise notice 'pg_net not created (%); delivery waits until it is installed', sqlerrm;
    end;
  end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Secrets: Vault where it exists, else a locked-down table
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring._secrets (
  name text primary key,
  secret text not null,
  description text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table monitoring._secrets is
'Fallback secret store used only where Vault (vault.decrypted_secrets) does not exist; readable by its owner alone '
'(RLS on, no grants).';

alter table monitoring._secrets enable row level security;

create or replace function monitoring.set_secret(
  -- unique secret name, such as alerting_ops_url
  p_name text,
  -- the secret value
  p_value text,
  -- what it is for
  p_description text default null
)
returns text
language plpgsql
volatile
security definer -- writes Vault or the owner-only fallback table for callers that must not read secrets
set search_path = ''
as $$
declare
  v_id uuid;
  -- vault.* is referenced through this variable: the schema may not exist where this is linted
  v_vault constant regnamespace := to_regnamespace('vault');
begin
  if p_name is null or p_name !~ '^[A-Za-z0-9_.:-]{1,200}$' then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('set_secret: p_name %L must be 1-200 letters, digits or _ . : -', p_name),
      hint = 'use a name such as alerting_ops_url';
  end if;
  if p_value is null or p_value = '' then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('set_secret: p_value for %s must not be empty', p_name),
      hint = 'pass the URL or key to store';
  end if;

  if to_regclass('vault.decrypted_secrets') is not null then
    execute format('select s.id from %s.secrets as s where s.name = $1', v_vault) into v_id using p_name;
    if v_id is null then
      execute format('select %s.create_secret($1, $2, $3)', v_vault)
      into v_id
      using p_value, p_name, coalesce(p_description, '');
    else
      execute format('select %s.update_secret($1, $2, $3, $4)', v_vault) using v_id, p_value, p_name, p_description;
    end if;
    return 'vault';
  end if;

  insert into monitoring._secrets as s (name, secret, description)
  values (p_name, p_value, p_description)
  on conflict (name) do update
    set
      secret = excluded.secret,
      description = coalesce(excluded.description, s.description),
      updated_at = now();
  return 'monitoring._secrets';
end
$$;

comment on function monitoring.set_secret(text, text, text) is
'Create or update a secret by name in Vault (vault.create_secret / vault.update_secret) or, without Vault, in '
'monitoring._secrets; returns the store used.';

create or replace function monitoring._get_secret(
  -- secret name
  p_name text
)
returns text
language plpgsql
stable
security definer -- reads Vault or the owner-only fallback table; executable by the owner alone
set search_path = ''
as $$
declare
  v_secret text;
  -- vault.* is referenced through this variable: the view may not exist where this is linted
  v_view constant regclass := to_regclass('vault.decrypted_secrets');
begin
  if p_name is null then
    return null;
  end if;
  if v_view is not null then
    execute format('select s.decrypted_secret from %s as s where s.name = $1 limit 1', v_view)
    into v_secret using p_name;
  else
    select s.secret into v_secret from monitoring._secrets as s where s.name = p_name;
  end if;
  return nullif(v_secret, '');
end
$$;

comment on function monitoring._get_secret(text) is
'Internal: the value of a secret (Vault or fallback), or null when it does not resolve.';

create or replace function monitoring._parse_url(
  -- the URL
  p_url text,
  -- the field named in the error, such as channels.url
  p_field text,
  -- a good URL for this field, shown in the hints
  p_example text,
  -- where credentials belong instead, shown in the hint when the URL carries user:password@
  p_credentials_hint text
)
returns text[]
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_match text[];
  v_port text;
begin
  v_match := regexp_match(coalesce(p_url, ''), '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#\s]+)([/?#]\S*)?$');
  if v_match is null then
    raise exception using
      errcode = 'check_violation',
      -- never the value: a webhook URL can hold a token
      message = format('%s is not a URL', p_field),
      hint = format('use a URL such as %s', p_example);
  end if;
  if position('@' in v_match[2]) > 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('%s must not carry credentials before the host', p_field),
      hint = p_credentials_hint;
  end if;
  v_port := substring(v_match[2] from ':([^:\]]*)$');
  if v_port is not null and (v_port !~ '^[0-9]{1,5}$' or v_port::integer not between 1 and 65535) then
    raise exception using
      errcode = 'check_violation',
      message = format('%s has port %L, which is not a port number (1-65535)', p_field, left(v_port, 20)),
      hint = format('use a URL such as %s, or leave the port out', p_example);
  end if;
  return v_match;
end
$$;

comment on function monitoring._parse_url(text, text, text, text) is
'Internal: split p_url into {scheme, host[:port], rest}, raising a check_violation naming p_field when it is not a '
'URL, carries user:password@ or has an invalid port. The validators of each kind of URL build on it.';

create or replace function monitoring._validate_url(
  -- the URL
  p_url text,
  -- the field named in the error, such as channels.url
  p_field text
)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_match text[] := monitoring._parse_url(
    p_url, p_field, 'https://example.com/hooks/alerts',
    'put credentials in a signing secret or the URL path, not in user:password@host'
  );
begin
  if lower(v_match[1]) = 'https' then
    return;
  end if;
  if lower(v_match[1]) = 'http' and lower(v_match[2]) ~ '^(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?$' then
    return;
  end if;
  raise exception using
    errcode = 'check_violation',
    message = format('%s must use https (http only for 127.0.0.1, localhost or [::1]); got %s://%s',
      p_field, lower(v_match[1]), left(v_match[2], 200)),
    hint = 'use an https URL such as https://hooks.slack.com/services/...';
end
$$;

comment on function monitoring._validate_url(text, text) is
'Internal: raise a check_violation naming p_field unless p_url is https (or http on loopback) with a valid port.';

create or replace function monitoring._check_secret(
  -- secret name
  p_name text,
  -- the field that names the secret, for the message (such as channels.url_secret)
  p_field text,
  -- whether the secret holds a URL to validate
  p_is_url boolean default false
)
returns void
language plpgsql
stable
security definer -- checks that a secret resolves (and is a valid URL) without revealing its value
set search_path = ''
as $$
declare
  v_value text;
begin
  v_value := monitoring._get_secret(p_name);
  if v_value is null then
    raise exception using
      errcode = 'check_violation',
      message = format('%s: secret %L does not resolve (not in %s)', p_field, p_name,
        case when to_regclass('vault.decrypted_secrets') is not null then 'vault.decrypted_secrets'
          else 'monitoring._secrets' end),
      hint = format('store it first: select monitoring.set_secret(%L, ''...'');', p_name);
  end if;
  if p_is_url then
    perform monitoring._validate_url(v_value, p_field);
  end if;
end
$$;

comment on function monitoring._check_secret(text, text, boolean) is
'Internal: raise a check_violation naming p_field when the secret does not resolve or, for URLs, is not https '
'(loopback http allowed).';

-- ---------------------------------------------------------------------------------------------
-- Channels
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.channels (
  name text primary key,
  kind text not null,
  enabled boolean not null default true,
  min_severity text not null default 'warning',
  url_secret text,
  signing_secret text,
  function_name text,
  send_resolved boolean not null default true,
  auth_secret text,
  resend_interval interval not null default interval '1 minute',
  description text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table monitoring.channels is
'Where notifications go: webhook (the spec''s payload), slack, discord or edge_function; URLs and signing keys are '
'named secrets, never stored here.';

comment on column monitoring.channels.kind is
'webhook, slack, discord (incoming-webhook formats), edge_function or alertmanager (POST /api/v2/alerts).';

comment on column monitoring.channels.min_severity is 'Lowest severity sent to this channel.';

comment on column monitoring.channels.url_secret is
'Name of the secret holding the URL; for edge_function optional (default <project_url>/functions/v1/<function_name>).';

comment on column monitoring.channels.signing_secret is
'Name of the secret holding the HMAC key; when set, requests carry X-Signature: sha256=<hex HMAC of the body>.';

comment on column monitoring.channels.function_name is 'Edge Function called by an edge_function channel.';

comment on column monitoring.channels.send_resolved is 'Whether resolved notifications are sent.';

-- The limits of channels (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, allowed, hint) values
('channels', 'kind', '{webhook,slack,discord,edge_function,alertmanager}', 'use webhook for the spec''s JSON payload'),
('channels', 'min_severity', '{critical,warning,info}', 'use warning to receive warning and critical alerts')
on conflict (table_name, column_name) do nothing;

comment on column monitoring.channels.auth_secret is
'Name of the secret holding the Authorization header value (Basic ... or Bearer ...); set with '
'monitoring.set_channel_auth().';

comment on column monitoring.channels.resend_interval is
'alertmanager channels: firing alerts are sent again this often (whole minutes, 1-59), shorter than Alertmanager''s '
'resolve_timeout (5m by default), so Alertmanager does not resolve them while they still fire.';

create or replace function monitoring._validate_channel()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
begin
  if new.name is null or new.name !~ '^[a-z][a-z0-9_-]{0,62}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.name %L must be lower-case letters, digits, _ or - (at most 63)', left(new.name, 200)),
      hint = 'use a name such as ops-slack';
  end if;
  -- kind and min_severity are checked by their limits (channels_limits, which run first)
  if new.url_secret is null and not (new.kind = 'edge_function' and new.function_name is not null) then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.url_secret must name the secret holding the %s URL', new.kind),
      hint = 'use monitoring.set_channel(name, kind, url) which stores the URL as a secret';
  end if;
  if new.function_name is not null and new.function_name !~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.function_name %L is not an Edge Function name (at most 100 letters, digits, _ or -)',
        left(new.function_name, 200)),
      hint = 'use the function''s folder name, such as alert-receiver';
  end if;

  if new.resend_interval is null or new.resend_interval not between interval '1 minute' and interval '59 minutes'
    or extract(second from new.resend_interval) <> 0 then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.resend_interval must be whole minutes from 1 to 59 (got %s): the jobs run once a '
        || 'minute', coalesce(new.resend_interval::text, 'null')),
      hint = 'use interval ''1 minute'', shorter than Alertmanager''s resolve_timeout (5m by default)';
  end if;
  if new.auth_secret is not null and new.kind = 'edge_function' then
    raise exception using
      errcode = 'check_violation',
      message = 'channels.auth_secret cannot be set on an edge_function channel: it sends the service role key',
      hint = 'use a webhook or alertmanager channel for a receiver with its own credentials';
  end if;

  if new.enabled then
    if new.url_secret is not null and new.kind = 'alertmanager' then
      perform monitoring._check_alertmanager_url_secret(new.url_secret, 'channels.url_secret');
    elsif new.url_secret is not null then
      perform monitoring._check_secret(new.url_secret, 'channels.url_secret', true);
    end if;
    if new.auth_secret is not null then
      perform monitoring._check_auth_secret(new.auth_secret, 'channels.auth_secret');
    end if;
    if new.signing_secret is not null then
      perform monitoring._check_secret(new.signing_secret, 'channels.signing_secret', false);
    end if;
    if new.kind = 'edge_function' then
      select * into v_settings from monitoring.settings as s where s.id;
      if new.url_secret is null then
        perform monitoring._check_secret(v_settings.project_url_secret, 'settings.project_url_secret', true);
      end if;
      perform monitoring._check_secret(v_settings.service_key_secret, 'settings.service_key_secret', false);
    end if;
  end if;

  new.updated_at := now();
  return new;
end
$$;

comment on function monitoring._validate_channel() is
'Trigger: validate what a channel''s limits (monitoring._limits) cannot say: name, target, function name, and that '
'its secrets resolve to valid URLs, raising a check_violation naming the field.';

create or replace trigger channels_validate
before insert or update on monitoring.channels
for each row execute function monitoring._validate_channel();

create or replace function monitoring.set_channel(
  -- channel name, such as ops-slack
  p_name text,
  -- webhook, slack, discord, edge_function or alertmanager
  p_kind text,
  -- the URL, stored as secret alerting_<name>_url (null: keep the current one)
  p_url text default null,
  -- HMAC key, stored as secret alerting_<name>_signing (null: keep the current one)
  p_signing_secret text default null,
  -- lowest severity sent
  p_min_severity text default 'warning',
  -- Edge Function name for edge_function channels
  p_function_name text default null,
  -- whether the channel receives notifications
  p_enabled boolean default true
)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_url_secret text;
  v_signing_secret text;
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_-]{0,62}$' then
    raise exception using
      errcode = 'check_violation',
      message = format('channels.name %L must be lower-case letters, digits, _ or - (at most 63)', p_name),
      hint = 'use a name such as ops-slack';
  end if;
  if p_url is not null and p_kind = 'alertmanager' then
    perform monitoring._validate_alertmanager_url(p_url, 'channels.url');
    v_url_secret := format('alerting_%s_url', p_name);
    perform monitoring.set_secret(v_url_secret, p_url, format('URL of alert channel %s', p_name));
  elsif p_url is not null then
    perform monitoring._validate_url(p_url, 'channels.url');
    v_url_secret := format('alerting_%s_url', p_name);
    perform monitoring.set_secret(v_url_secret, p_url, format('URL of alert channel %s', p_name));
  end if;
  if p_signing_secret is not null then
    v_signing_secret := format('alerting_%s_signing', p_name);
    perform monitoring.set_secret(v_signing_secret, p_signing_secret, format('HMAC key of alert channel %s', p_name));
  end if;

  insert into monitoring.channels as c (
    name, kind, enabled, min_severity, url_secret, signing_secret, function_name
  )
  values (p_name, p_kind, p_enabled, p_min_severity, v_url_secret, v_signing_secret, p_function_name)
  on conflict (name) do update
    set
      kind = excluded.kind,
      enabled = excluded.enabled,
      min_severity = excluded.min_severity,
      url_secret = coalesce(excluded.url_secret, c.url_secret),
      signing_secret = coalesce(excluded.signing_secret, c.signing_secret),
      function_name = excluded.function_name;
  return p_name;
end
$$;

comment on function monitoring.set_channel(text, text, text, text, text, text, boolean) is
'Create or update a channel, storing its URL and signing key as secrets alerting_<name>_url and '
'alerting_<name>_signing.';

-- ---------------------------------------------------------------------------------------------
-- Outbox
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.deliveries (
  id bigint generated always as identity primary key,
  fingerprint text,
  rule_name text,
  channel text not null,
  event text not null,
  payload jsonb not null,
  body text not null,
  idempotency_key uuid not null default gen_random_uuid(),
  status text not null default 'queued',
  attempts integer not null default 0,
  next_attempt_at timestamptz default now(),
  last_attempt_at timestamptz,
  request_id bigint,
  last_status_code integer,
  last_error text,
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  dead_at timestamptz,
  request_epoch uuid,
  fingerprints text[],
  constraint deliveries_event_check check (event in ('firing', 'resolved', 'repeat', 'test', 'digest')),
  constraint deliveries_status_check check (status in ('queued', 'sending', 'delivered', 'retrying', 'dead')),
  constraint deliveries_body_check check (body = payload::text),
  constraint deliveries_idempotency_key_key unique (idempotency_key)
);

comment on table monitoring.deliveries is
'Outbox of notifications, one row per alert event and channel; logged, so nothing queued is lost on a restart.';

comment on column monitoring.deliveries.fingerprint is
'Alert fingerprint when the message tells one alert (null for test deliveries and for groups of several).';

comment on column monitoring.deliveries.fingerprints is
'Fingerprints of every alert the message tells (a group: settings.group_by); null for test deliveries.';

comment on column monitoring.deliveries.rule_name is 'The rule of the alerts told, when they all share one; else null.';

comment on column monitoring.deliveries.payload is 'The channel-specific JSON payload.';

comment on column monitoring.deliveries.body is
'The exact body pg_net sends ((payload::jsonb)::text); X-Signature is the HMAC of these bytes.';

comment on column monitoring.deliveries.idempotency_key is
'Sent as X-Idempotency-Key; the same for every attempt of this delivery.';

comment on column monitoring.deliveries.status is
'queued, sending (request handed to pg_net), delivered (2xx seen), retrying (waiting for next_attempt_at) or dead.';

comment on column monitoring.deliveries.next_attempt_at is 'When the dispatcher may send (again).';

comment on column monitoring.deliveries.request_id is
'net.http_post request id of the last attempt, matched to net._http_response.id.';

comment on column monitoring.deliveries.last_status_code is 'HTTP status of the last response.';

comment on column monitoring.deliveries.last_error is 'Why the last attempt failed.';

create index if not exists deliveries_due_idx on monitoring.deliveries (next_attempt_at)
where status in ('queued', 'retrying');

create index if not exists deliveries_sending_idx on monitoring.deliveries (id) where status = 'sending';

create index if not exists deliveries_dead_idx on monitoring.deliveries (dead_at) where status = 'dead';

create index if not exists deliveries_finished_idx on monitoring.deliveries (
  (coalesce(delivered_at, dead_at))
) where status in ('delivered', 'dead');

create index if not exists deliveries_fingerprint_idx on monitoring.deliveries (fingerprint, created_at);

-- ---------------------------------------------------------------------------------------------
-- Payloads
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._webhook_payload(
  -- the alert
  p_alert monitoring.alerts,
  -- its rule
  p_rule monitoring.alert_rules,
  -- firing, repeat or resolved
  p_event text,
  -- now
  p_now timestamptz
)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'timestamp', monitoring._iso(p_now),
    'service', s.service_name,
    'status', case when p_event = 'resolved' then 'resolved' else 'firing' end,
    'event', p_event,
    'alerts', jsonb_build_array(jsonb_build_object(
      'severity', p_alert.severity,
      'message', p_alert.message,
      'metric', p_rule.metric,
      'value', p_alert.value,
      'status', case when p_event = 'resolved' then 'resolved' else 'firing' end,
      'rule', p_rule.name,
      'description', p_rule.description,
      'threshold', p_rule.threshold,
      'unit', p_rule.unit,
      'labels', p_alert.labels,
      'fingerprint', p_alert.fingerprint,
      'startsAt', monitoring._iso(coalesce(p_alert.firing_since, p_alert.started_at)),
      'endsAt', case when p_event = 'resolved' then monitoring._iso(p_alert.resolved_at) end,
      'runbook', to_jsonb(p_rule.runbook)
    ))
  )
  from monitoring.settings as s
  where s.id
$$;

comment on function monitoring._webhook_payload(monitoring.alerts, monitoring.alert_rules, text, timestamptz) is
'Internal: the spec''s webhook payload {timestamp, service, alerts: [{severity, message, metric, value}]} plus '
'status, event, rule, labels, fingerprint, startsAt, endsAt and runbook.';

create or replace function monitoring._channel_payload(
  -- webhook, slack, discord or edge_function
  p_kind text,
  -- the webhook payload (from monitoring._webhook_payload)
  p_webhook jsonb
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_alert jsonb := p_webhook -> 'alerts' -> 0;
  v_label text;
  v_title text;
  v_value text;
  v_runbook text;
  v_escaped text;
begin
  if p_kind in ('webhook', 'edge_function') then
    return p_webhook;
  end if;
  if p_kind = 'alertmanager' then
    return monitoring._alertmanager_payload(p_webhook);
  end if;
  if jsonb_array_length(p_webhook -> 'alerts') > 1 then
    return monitoring._channel_group_payload(p_kind, p_webhook);
  end if;

  v_label := case p_webhook ->> 'event'
    when 'firing' then 'FIRING'
    when 'repeat' then 'STILL FIRING'
    when 'resolved' then 'RESOLVED'
    else 'TEST'
  end;
  v_title := format('[%s] %s: %s', v_label, v_alert ->> 'severity', v_alert ->> 'message');
  v_value := format('%s = %s%s', v_alert ->> 'metric', coalesce(v_alert ->> 'value', 'n/a'),
    coalesce(' ' || (v_alert ->> 'unit'), ''));
  v_runbook := coalesce((
    select string_agg(format('%s. %s', r.ord, r.step), E'\n' order by r.ord)
    from jsonb_array_elements_text(v_alert -> 'runbook') with ordinality as r (step, ord)
  ), 'none');

  if p_kind = 'slack' then
    v_escaped := replace(replace(replace(v_title, '&', '&amp;'), '<', '&lt;'), '>', '&gt;');
    return jsonb_build_object(
      'text', v_title,
      'blocks', jsonb_build_array(
        jsonb_build_object('type', 'section', 'text', jsonb_build_object(
          'type', 'mrkdwn',
          'text', format(E'*%s*\nRule `%s` · severity *%s* · %s', v_escaped, v_alert ->> 'rule',
            v_alert ->> 'severity', v_value)
        )),
        jsonb_build_object('type', 'section', 'text', jsonb_build_object(
          'type', 'mrkdwn',
          'text', E'*Runbook*\n' || replace(replace(replace(v_runbook, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
        )),
        jsonb_build_object('type', 'context', 'elements', jsonb_build_array(jsonb_build_object(
          'type', 'mrkdwn',
          'text', format('%s · since %s · fingerprint %s', p_webhook ->> 'service',
            coalesce(v_alert ->> 'startsAt', p_webhook ->> 'timestamp'), coalesce(v_alert ->> 'fingerprint', 'none'))
        )))
      )
    );
  end if;

  if p_kind = 'discord' then
    return jsonb_build_object(
      'content', left(v_title, 2000),
      'embeds', jsonb_build_array(jsonb_build_object(
        'title', left(format('[%s] %s', v_label, v_alert ->> 'rule'), 256),
        'description', left(coalesce(v_alert ->> 'message', ''), 4096),
        'color', case
          when p_webhook ->> 'event' = 'resolved' then 3066993
          when v_alert ->> 'severity' = 'critical' then 15158332
          when v_alert ->> 'severity' = 'warning' then 15105570
          else 3447003
        end,
        'fields', jsonb_build_array(
          jsonb_build_object('name', 'Severity', 'value', v_alert ->> 'severity', 'inline', true),
          jsonb_build_object('name', 'Metric', 'value', left(v_value, 1024), 'inline', true),
          jsonb_build_object('name', 'Runbook', 'value', left(v_runbook, 1024), 'inline', false)
        ),
        'timestamp', p_webhook ->> 'timestamp',
        'footer', jsonb_build_object(
          'text', format('%s · fingerprint %s', p_webhook ->> 'service', coalesce(v_alert ->> 'fingerprint', 'none'))
        )
      ))
    );
  end if;

  raise exception using
    errcode = 'invalid_parameter_value',
    message = format('channels.kind %L has no payload format', p_kind),
    hint = 'use webhook, slack, discord, edge_function or alertmanager';
end
$$;

comment on function monitoring._channel_payload(text, jsonb) is
'Internal: turn the webhook payload into the channel''s format: as is for webhook and edge_function, {text, blocks} '
'for slack, {content, embeds} for discord, an Alertmanager alert list for alertmanager; all carry the runbook. A '
'group of several alerts becomes one readable message (monitoring._channel_group_payload).';

create or replace function monitoring._channel_group_payload(
  -- slack or discord
  p_kind text,
  -- the webhook payload of a group of alerts (from monitoring._webhook_group_payload)
  p_webhook jsonb
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_n integer := jsonb_array_length(p_webhook -> 'alerts');
  v_label text;
  v_title text;
  v_lines jsonb;
begin
  v_label := case p_webhook ->> 'event' when 'firing' then 'FIRING' when 'repeat' then 'STILL FIRING' else 'RESOLVED' end;
  v_title := format('[%s] %s alerts: %s', v_label, v_n, (
    select string_agg(format('%s %s', c.n, c.severity), ', ' order by monitoring._severity_rank(c.severity) desc)
    from (
      select a.alert ->> 'severity' as severity, count(*) as n
      from jsonb_array_elements(p_webhook -> 'alerts') as a (alert)
      group by 1
    ) as c
  ));
  -- one line per alert (the first 20): status, severity, rule, message (500 characters at most, so a
  -- Slack section stays under its 3000 and a Discord description under its 4096), value, first runbook step
  select jsonb_agg(jsonb_build_object(
    'status', upper(l.alert ->> 'status'),
    'severity', l.alert ->> 'severity',
    'rule', l.alert ->> 'rule',
    'message', left(coalesce(l.alert ->> 'message', ''), 500),
    'value', format('%s = %s%s', l.alert ->> 'metric', coalesce(l.alert ->> 'value', 'n/a'),
      coalesce(' ' || (l.alert ->> 'unit'), '')),
    'runbook', left(coalesce(l.alert -> 'runbook' ->> 0, 'none'), 300),
    'fingerprint', coalesce(l.alert ->> 'fingerprint', 'none')
  ) order by l.ord)
  into v_lines
  from jsonb_array_elements(p_webhook -> 'alerts') with ordinality as l (alert, ord)
  where l.ord <= 20;

  if p_kind = 'slack' then
    return jsonb_build_object(
      'text', v_title,
      'blocks', jsonb_build_array(jsonb_build_object('type', 'section', 'text', jsonb_build_object(
        'type', 'mrkdwn', 'text', format('*%s*', replace(replace(replace(v_title, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'))
      )))
      || (
        select jsonb_agg(jsonb_build_object('type', 'section', 'text', jsonb_build_object(
          'type', 'mrkdwn',
          'text', replace(replace(replace(format(E'*[%s] %s* `%s`: %s\n%s · runbook: %s', x.line ->> 'status',
            x.line ->> 'severity', x.line ->> 'rule', x.line ->> 'message', x.line ->> 'value', x.line ->> 'runbook'),
            '&', '&amp;'), '<', '&lt;'), '>', '&gt;')
        )) order by x.ord)
        from jsonb_array_elements(v_lines) with ordinality as x (line, ord)
      )
      || jsonb_build_array(jsonb_build_object('type', 'context', 'elements', jsonb_build_array(jsonb_build_object(
        'type', 'mrkdwn',
        'text', format('%s · %s · %s alert(s)%s', p_webhook ->> 'service', p_webhook ->> 'timestamp', v_n,
          case when v_n > 20 then format(', the first 20 shown') else '' end)
      ))))
    );
  end if;

  if p_kind = 'discord' then
    return jsonb_build_object(
      'content', left(v_title, 2000),
      'embeds', jsonb_build_array(jsonb_build_object(
        'title', left(v_title, 256),
        'description', left((
          select string_agg(format(E'**[%s] %s** `%s`: %s\n%s · runbook: %s', x.line ->> 'status',
            x.line ->> 'severity', x.line ->> 'rule', x.line ->> 'message', x.line ->> 'value',
            x.line ->> 'runbook'), E'\n\n' order by x.ord)
          from jsonb_array_elements(v_lines) with ordinality as x (line, ord)
        ), 4096),
        'color', case
          when p_webhook ->> 'event' = 'resolved' then 3066993
          when exists (
            select 1 from jsonb_array_elements(p_webhook -> 'alerts') as a (alert)
            where a.alert ->> 'severity' = 'critical'
          ) then 15158332
          else 15105570
        end,
        'timestamp', p_webhook ->> 'timestamp',
        'footer', jsonb_build_object('text', format('%s · %s alert(s)', p_webhook ->> 'service', v_n))
      ))
    );
  end if;

  raise exception using
    errcode = 'invalid_parameter_value',
    message = format('channels.kind %L has no group payload format', p_kind),
    hint = 'use webhook, slack, discord, edge_function or alertmanager';
end
$$;

comment on function monitoring._channel_group_payload(text, jsonb) is
'Internal: one readable Slack ({text, blocks}) or Discord ({content, embeds}) message for a group of alerts: a '
'title counting them by severity, then one line each (status, severity, rule, message, value, first runbook '
'step; the first 20).';

-- ---------------------------------------------------------------------------------------------
-- Alertmanager (channel kind alertmanager: POST /api/v2/alerts as Prometheus does)
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._prometheus_label_name(
  -- a label name as our rules and checks write it
  p_name text
)
returns text
language sql
immutable
set search_path = ''
as $$
  -- Prometheus label names are [a-zA-Z_][a-zA-Z0-9_]*: any other character becomes _, and a name
  -- starting with a digit gets a leading _ (team-name -> team_name, 2fa -> _2fa)
  select case
    when m.mapped ~ '^[0-9]' then '_' || m.mapped
    else m.mapped
  end
  from (select regexp_replace(coalesce(p_name, ''), '[^A-Za-z0-9_]', '_', 'g') as mapped) as m
$$;

comment on function monitoring._prometheus_label_name(text) is
'Internal: map a label name to a valid Prometheus label name: characters outside [A-Za-z0-9_] become _, a leading '
'digit gets a _ prefix.';

create or replace function monitoring._validate_alertmanager_url(
  -- the Alertmanager URL
  p_url text,
  -- the field named in the error, such as channels.url
  p_field text
)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_match text[] := monitoring._parse_url(
    p_url, p_field, 'http://alertmanager:9093',
    'store them with monitoring.set_channel_auth(channel, ''basic'', ''user:password'')'
  );
begin
  if lower(v_match[1]) not in ('http', 'https') then
    raise exception using
      errcode = 'check_violation',
      message = format('%s must be an http or https URL for an alertmanager channel (got %s://)', p_field,
        left(v_match[1], 50)),
      hint = 'give Alertmanager''s base URL, such as http://alertmanager:9093 or https://alertmanager.example.com';
  end if;
  if v_match[3] ~ '[?#]' then
    raise exception using
      errcode = 'check_violation',
      message = format('%s must not have a query or fragment: /api/v2/alerts is appended to it', p_field),
      hint = 'give Alertmanager''s base URL (with its --web.route-prefix path, if any), such as http://alertmanager:9093';
  end if;
end
$$;

comment on function monitoring._validate_alertmanager_url(text, text) is
'Internal: raise a check_violation naming p_field unless p_url is an http(s) base URL of Alertmanager (no '
'credentials, query or fragment; valid port). Plain http is allowed to any host: Alertmanager usually listens on '
'an internal network.';

create or replace function monitoring._alertmanager_endpoint(
  -- Alertmanager's base URL (or its full /api/v2/alerts URL)
  p_url text
)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when rtrim(p_url, '/') ~ '/api/v2/alerts$' then rtrim(p_url, '/')
    else rtrim(p_url, '/') || '/api/v2/alerts'
  end
$$;

comment on function monitoring._alertmanager_endpoint(text) is
'Internal: the POST URL of Alertmanager''s alerts API: the base URL plus /api/v2/alerts (kept when already there).';

create or replace function monitoring._check_alertmanager_url_secret(
  -- secret name
  p_name text,
  -- the field that names the secret, for the message
  p_field text
)
returns void
language plpgsql
stable
security definer -- checks that a secret resolves to an Alertmanager URL without revealing its value
set search_path = ''
as $$
begin
  perform monitoring._check_secret(p_name, p_field, false);
  perform monitoring._validate_alertmanager_url(monitoring._get_secret(p_name), p_field);
end
$$;

comment on function monitoring._check_alertmanager_url_secret(text, text) is
'Internal: raise a check_violation naming p_field when the secret does not resolve to an http(s) Alertmanager URL.';

create or replace function monitoring._check_auth_secret(
  -- secret name
  p_name text,
  -- the field that names the secret, for the message
  p_field text
)
returns void
language plpgsql
stable
security definer -- checks that a secret holds an Authorization value without revealing it
set search_path = ''
as $$
begin
  perform monitoring._check_secret(p_name, p_field, false);
  if monitoring._get_secret(p_name) !~ '^(Basic|Bearer) [^\s]+$' then
    raise exception using
      errcode = 'check_violation',
      message = format('%s: secret %L must hold an Authorization value, "Basic <base64>" or "Bearer <token>"',
        p_field, p_name),
      hint = 'set it with monitoring.set_channel_auth(channel, ''basic'', ''user:password'') or '
        || '(channel, ''bearer'', ''<token>'')';
  end if;
end
$$;

comment on function monitoring._check_auth_secret(text, text) is
'Internal: raise a check_violation naming p_field unless the secret holds "Basic <base64>" or "Bearer <token>".';

create or replace function monitoring.set_channel_auth(
  -- the channel
  p_name text,
  -- basic, bearer, or null to send no Authorization header
  p_scheme text,
  -- basic: user:password; bearer: the token; stored as secret alerting_<name>_auth
  p_credentials text default null
)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_value text;
  v_secret text := format('alerting_%s_auth', p_name);
begin
  if not exists (select 1 from monitoring.channels as c where c.name = p_name) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('set_channel_auth: channel %L does not exist', p_name),
      hint = 'create it first with monitoring.set_channel(name, ''alertmanager'', url)';
  end if;
  if p_scheme is null then
    update monitoring.channels as c set auth_secret = null where c.name = p_name;
    return p_name;
  end if;
  if p_scheme not in ('basic', 'bearer') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('set_channel_auth: p_scheme must be basic, bearer or null (got %L)', left(p_scheme, 50)),
      hint = 'use basic with ''user:password'' or bearer with a token';
  end if;
  if p_credentials is null or p_credentials ~ '[\s]' or p_credentials = ''
    or (p_scheme = 'basic' and p_credentials !~ '^[^:]+:.+$') then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('set_channel_auth: p_credentials must be %s without white space',
        case when p_scheme = 'basic' then 'user:password' else 'a token' end),
      hint = 'the value is stored as secret ' || v_secret || ', never in a table or a log';
  end if;
  v_value := case
    when p_scheme = 'basic' then 'Basic ' || translate(encode(convert_to(p_credentials, 'UTF8'), 'base64'), E'\n', '')
    else 'Bearer ' || p_credentials
  end;
  perform monitoring.set_secret(v_secret, v_value, format('Authorization header of alert channel %s', p_name));
  update monitoring.channels as c set auth_secret = v_secret where c.name = p_name;
  return p_name;
end
$$;

comment on function monitoring.set_channel_auth(text, text, text) is
'Send "Authorization: Basic|Bearer ..." with every request of a channel (Alertmanager behind a proxy): stores the '
'header value as secret alerting_<name>_auth (Vault where it exists); p_scheme null removes it.';

create or replace function monitoring._alertmanager_payload(
  -- the webhook payload (from monitoring._webhook_payload or test_channel)
  p_webhook jsonb
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_alert jsonb := p_webhook -> 'alerts' -> 0;
  v_labels jsonb;
  v_annotations jsonb;
  v_event text := p_webhook ->> 'event';
  v_out jsonb;
begin
  -- labels: the alert's (alertname, severity, the rule's and the instance's) plus service, as
  -- strings under valid Prometheus names
  select coalesce(jsonb_object_agg(monitoring._prometheus_label_name(l.key), l.value), '{}'::jsonb)
  into v_labels
  from (
    select l0.key, case when jsonb_typeof(l0.value) = 'string' then l0.value #>> '{}' else l0.value::text end as value
    from jsonb_each(coalesce(v_alert -> 'labels', '{}'::jsonb)) as l0
    where l0.value is not null and jsonb_typeof(l0.value) <> 'null'
    order by l0.key
  ) as l;
  v_labels := v_labels || jsonb_build_object(
    'alertname', coalesce(v_alert ->> 'rule', v_labels ->> 'alertname'),
    'severity', v_alert ->> 'severity',
    'service', p_webhook ->> 'service'
  );
  v_annotations := jsonb_strip_nulls(jsonb_build_object(
    'summary', v_alert ->> 'message',
    'description', v_alert ->> 'description',
    'runbook', (
      select string_agg(format('%s. %s', r.ord, r.step), E'\n' order by r.ord)
      from jsonb_array_elements_text(coalesce(v_alert -> 'runbook', '[]'::jsonb)) with ordinality as r (step, ord)
    ),
    'value', v_alert ->> 'value',
    'threshold', v_alert ->> 'threshold',
    'unit', v_alert ->> 'unit',
    'fingerprint', v_alert ->> 'fingerprint'
  ));
  v_out := jsonb_build_object(
    'labels', v_labels,
    'annotations', v_annotations,
    'startsAt', coalesce(v_alert ->> 'startsAt', p_webhook ->> 'timestamp'),
    'generatorURL', 'https://supabase.com/dashboard/project/_/sql/new?content='
    || 'select%20*%20from%20monitoring.active_alerts%20where%20rule_name%20%3D%20%27'
    || coalesce(v_alert ->> 'rule', '') || '%27'
  );
  if v_event = 'resolved' then
    v_out := v_out || jsonb_build_object('endsAt', coalesce(v_alert ->> 'endsAt', p_webhook ->> 'timestamp'));
  elsif v_event = 'test' then
    -- a test alert ends on its own after 5 minutes
    v_out := v_out || jsonb_build_object(
      'endsAt', monitoring._iso((p_webhook ->> 'timestamp')::timestamptz + interval '5 minutes')
    );
  end if;
  return jsonb_build_array(v_out);
end
$$;

comment on function monitoring._alertmanager_payload(jsonb) is
'Internal: the webhook payload as Alertmanager''s POST /api/v2/alerts body: [{labels (alertname, severity, service, '
'the rule''s and instance''s, names mapped to valid Prometheus label names), annotations (summary, description, '
'runbook, value, threshold, unit, fingerprint), startsAt, endsAt (resolved; test alerts end after 5 min), '
'generatorURL}].';

create or replace function monitoring.resend_alertmanager(
  -- now
  p_now timestamptz default now()
)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_channel monitoring.channels;
  v_payload jsonb;
  v_count integer := 0;
begin
  for v_channel in
    select c.* from monitoring.channels as c
    where c.kind = 'alertmanager' and c.enabled
    order by c.name
  loop
    -- one resend at a time: none while an earlier delivery of this channel waits (Alertmanager down)
    continue when exists (
      select 1 from monitoring.deliveries as d
      where d.channel = v_channel.name and d.status in ('queued', 'sending', 'retrying')
    );
    continue when exists (
      select 1 from monitoring.deliveries as d
      where
        d.fingerprint is null and d.channel = v_channel.name and d.event = 'repeat'
        and d.created_at > p_now - v_channel.resend_interval + interval '10 seconds'
    );
    select jsonb_agg(e.alert order by a.fingerprint)
    into v_payload
    from monitoring.alerts as a
    inner join monitoring.alert_rules as r on a.rule_name = r.name
    cross join lateral jsonb_array_elements(
      monitoring._channel_payload('alertmanager', monitoring._webhook_payload(a, r, 'repeat', p_now))
    ) as e (alert)
    where
      a.state = 'firing'
      and a.last_notified_at is not null
      and monitoring._severity_rank(a.severity) >= monitoring._severity_rank(v_channel.min_severity);
    continue when v_payload is null;
    insert into monitoring.deliveries (channel, event, payload, body, status, next_attempt_at, created_at)
    values (v_channel.name, 'repeat', v_payload, v_payload::text, 'queued', p_now, p_now);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

comment on function monitoring.resend_alertmanager(timestamptz) is
'Queue, per alertmanager channel whose resend_interval has passed, one delivery re-sending every firing notified '
'alert (as Prometheus re-sends), so Alertmanager does not resolve them after its resolve_timeout; none while an '
'earlier delivery of the channel is still waiting. Run by job monitoring-dispatch; returns how many were queued.';

create or replace function monitoring._notify(
  -- the alert
  p_alert monitoring.alerts,
  -- its rule
  p_rule monitoring.alert_rules,
  -- firing, repeat or resolved
  p_event text,
  -- now
  p_now timestamptz
)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_webhook jsonb;
  v_count integer;
begin
  v_webhook := monitoring._webhook_payload(p_alert, p_rule, p_event, p_now);
  insert into monitoring.deliveries (
    fingerprint, rule_name, channel, event, payload, body, status, next_attempt_at, created_at
  )
  select
    p_alert.fingerprint,
    p_rule.name,
    c.name,
    p_event,
    p.payload,
    p.payload::text,
    'queued',
    p_now,
    p_now
  from monitoring.channels as c
  cross join lateral (select monitoring._channel_payload(c.kind, v_webhook) as payload) as p
  where
    c.enabled
    and monitoring._severity_rank(p_alert.severity) >= monitoring._severity_rank(c.min_severity)
    and (p_event <> 'resolved' or c.send_resolved)
  order by c.name;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

comment on function monitoring._notify(monitoring.alerts, monitoring.alert_rules, text, timestamptz) is
'Internal: queue one delivery of an alert event per enabled channel whose min_severity it reaches; returns how many. '
'The evaluator groups through monitoring._notify_due instead; this stays for callers that tell one alert.';

-- ---------------------------------------------------------------------------------------------
-- Grouped notifications (Alertmanager group_by / group_wait / group_interval)
-- ---------------------------------------------------------------------------------------------
create table if not exists monitoring.notification_groups (
  group_key jsonb primary key,
  first_due_at timestamptz not null,
  last_sent_at timestamptz
);

comment on table monitoring.notification_groups is
'One row per notification group with alerts to tell (its labels of settings.group_by): when its first message '
'is due (created + group_wait) and when it last sent one (the next waits group_interval). A group with nothing '
'firing is forgotten after group_interval, so the next incident waits group_wait again.';

create or replace function monitoring._group_key(
  -- labels of an alert
  p_labels jsonb,
  -- settings.group_by
  p_group_by text[],
  -- settings.service_name (the service label)
  p_service text
)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- plpgsql: its plan is kept for the session (a sql function with a set clause is planned at each call)
  return (
    select coalesce(
      jsonb_object_agg(g.label, case when g.label = 'service' then p_service else p_labels ->> g.label end), '{}'::jsonb
    )
    from unnest(p_group_by) as g (label)
  );
end
$$;

comment on function monitoring._group_key(jsonb, text[], text) is
'Internal: the notification group of an alert: its values of the group_by labels (service is the service name).';

create or replace function monitoring._webhook_group_payload(
  -- alert objects as monitoring._webhook_payload builds them, each with its own status
  p_alerts jsonb,
  -- firing, repeat or resolved: the message's event
  p_event text,
  -- now
  p_now timestamptz
)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'timestamp', monitoring._iso(p_now),
    'service', s.service_name,
    'status', case when p_event = 'resolved' then 'resolved' else 'firing' end,
    'event', p_event,
    'alerts', p_alerts
  )
  from monitoring.settings as s
  where s.id
$$;

comment on function monitoring._webhook_group_payload(jsonb, text, timestamptz) is
'Internal: the spec''s webhook payload {timestamp, service, alerts: [...]} for a group of alerts (status firing '
'while any alert of the message fires).';

create or replace function monitoring._due_rows(
  -- the alerts due, as monitoring._notify_due collects them
  p_due jsonb
)
returns table (
  fingerprint text, rule_name text, state text, severity text, event text, silenced_by bigint, inhibited_by text,
  group_key jsonb, alert jsonb, muted boolean
)
language plpgsql
immutable
set search_path = ''
as $$
begin
  -- plpgsql, not sql: a sql function with a set clause is planned again at every call
  return query
  select d.fingerprint, d.rule_name, d.state, d.severity, d.event, d.silenced_by, d.inhibited_by, d.group_key, d.alert,
    d.silenced_by is not null or d.inhibited_by is not null
  from jsonb_to_recordset(p_due) as d (
    fingerprint text, rule_name text, state text, severity text, event text, silenced_by bigint, inhibited_by text,
    group_key jsonb, alert jsonb
  );
end
$$;

comment on function monitoring._due_rows(jsonb) is
'Internal: the alerts due for a notification (collected by monitoring._notify_due) as rows; muted when a silence '
'or an inhibiting alert covers them.';

create or replace function monitoring._notify_due(
  -- now
  p_now timestamptz
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_channel monitoring.channels;
  v_group record;
  v_alerts jsonb;
  v_payload jsonb;
  v_webhook jsonb;
  v_out jsonb := '{}'::jsonb;
  v_sent text[];
  v_due jsonb;
  v_event text;
  v_counts jsonb := '{}'::jsonb;
begin
  -- one decider at a time (the evaluate job, the watchdog, a direct call): each sees what the
  -- other marked as notified
  perform pg_advisory_xact_lock(hashtext('monitoring.notify'), 0);
  select * into v_settings from monitoring.settings as s where s.id;

  select coalesce(jsonb_agg(jsonb_build_object(
    'fingerprint', a.fingerprint,
    'rule_name', a.rule_name,
    'state', a.state,
    'severity', a.severity,
    'event', e.event,
    'silenced_by', m.silenced_by,
    'inhibited_by', m.inhibited_by,
    'group_key', monitoring._group_key(a.labels, v_settings.group_by, v_settings.service_name),
    -- the alert as the channels get it, built only for what will be told
    'alert', case
      when m.silenced_by is null and m.inhibited_by is null
        then monitoring._webhook_payload(a, r, e.event, p_now) -> 'alerts' -> 0
    end
  ) order by a.fingerprint), '[]'::jsonb)
  into v_due
  from monitoring.alerts as a
  inner join monitoring.alert_rules as r on a.rule_name = r.name
  cross join lateral (
    select case
      when a.state = 'firing' and a.notified_state is distinct from 'firing' then 'firing'
      when a.state = 'firing' and p_now >= a.last_notified_at + r.repeat_interval then 'repeat'
      when a.state = 'resolved' and a.notified_state = 'firing' then 'resolved'
    end as event
  ) as e
  cross join lateral (
    select
      monitoring._silence_for(a.labels, p_now) as silenced_by,
      monitoring._inhibitor_for(a.labels, a.fingerprint) as inhibited_by
    offset 0 -- evaluated once per alert, not once per use above
  ) as m
  where e.event is not null;

  -- muted: a silence or an inhibiting alert. A muted firing stays due (told once unmuted); a muted
  -- resolve is not told
  update monitoring.alerts as a
  set notified_state = 'resolved'
  from monitoring._due_rows(v_due) as d
  where a.fingerprint = d.fingerprint and d.event = 'resolved' and d.muted;

  -- forget groups with nothing firing once group_interval has passed since their last message
  delete from monitoring.notification_groups as g
  where
    coalesce(g.last_sent_at, g.first_due_at) + v_settings.group_interval <= p_now
    and not exists (select 1 from monitoring._due_rows(v_due) as d where d.group_key = g.group_key and not d.muted)
    and not exists (
      select 1 from monitoring.alerts as a
      where
        a.state = 'firing' and a.notified_state = 'firing'
        and monitoring._group_key(a.labels, v_settings.group_by, v_settings.service_name) = g.group_key
    );

  insert into monitoring.notification_groups (group_key, first_due_at)
  select distinct d.group_key, p_now + v_settings.group_wait
  from monitoring._due_rows(v_due) as d
  where not d.muted
  on conflict (group_key) do nothing;

  for v_group in
    select g.group_key
    from monitoring.notification_groups as g
    where
      exists (select 1 from monitoring._due_rows(v_due) as d where d.group_key = g.group_key and not d.muted)
      and case
        when g.last_sent_at is null then p_now >= g.first_due_at
        else p_now >= g.last_sent_at + v_settings.group_interval
      end
    order by g.group_key
  loop
    for v_channel in
      select c.* from monitoring.channels as c where c.enabled order by c.name
    loop
      if v_channel.kind = 'alertmanager' then
        -- Alertmanager groups on its own: one alert per request, as Prometheus sends them
        with sent as (
          insert into monitoring.deliveries (
            fingerprint, rule_name, fingerprints, channel, event, payload, body, status, next_attempt_at, created_at
          )
          select
            d.fingerprint, d.rule_name, array[d.fingerprint], v_channel.name, d.event, p.payload, p.payload::text,
            'queued', p_now, p_now
          from monitoring._due_rows(v_due) as d
          cross join lateral (
            select monitoring._channel_payload(
              'alertmanager', monitoring._webhook_group_payload(jsonb_build_array(d.alert), d.event, p_now)
            ) as payload
          ) as p
          where
            d.group_key = v_group.group_key and not d.muted
            and monitoring._severity_rank(d.severity) >= monitoring._severity_rank(v_channel.min_severity)
            and (d.event <> 'resolved' or v_channel.send_resolved)
          order by d.fingerprint
          returning fingerprint
        )
        select v_counts || coalesce(jsonb_object_agg(
          sent.fingerprint, coalesce((v_counts ->> sent.fingerprint)::integer, 0) + 1
        ), '{}'::jsonb)
        into v_counts
        from sent;
        continue;
      end if;

      select
        jsonb_agg(d.alert order by monitoring._severity_rank(d.severity) desc, d.rule_name, d.fingerprint),
        array_agg(d.fingerprint order by monitoring._severity_rank(d.severity) desc, d.rule_name, d.fingerprint),
        case
          when bool_or(d.event = 'firing') then 'firing'
          when bool_or(d.event = 'repeat') then 'repeat'
          else 'resolved'
        end
      into v_alerts, v_sent, v_event
      from monitoring._due_rows(v_due) as d
      where
        d.group_key = v_group.group_key and not d.muted
        and monitoring._severity_rank(d.severity) >= monitoring._severity_rank(v_channel.min_severity)
        and (d.event <> 'resolved' or v_channel.send_resolved);
      continue when v_alerts is null;

      v_webhook := monitoring._webhook_group_payload(v_alerts, v_event, p_now);
      v_payload := monitoring._channel_payload(v_channel.kind, v_webhook);
      insert into monitoring.deliveries (
        fingerprint, rule_name, fingerprints, channel, event, payload, body, status, next_attempt_at, created_at
      )
      values (
        case when cardinality(v_sent) = 1 then v_sent[1] end,
        (select case when count(distinct d.rule_name) = 1 then min(d.rule_name) end
          from monitoring._due_rows(v_due) as d where d.fingerprint = any(v_sent)),
        v_sent, v_channel.name, v_webhook ->> 'event', v_payload, v_payload::text, 'queued', p_now, p_now
      );
      v_counts := v_counts || (
        select jsonb_object_agg(f.fp, coalesce((v_counts ->> f.fp)::integer, 0) + 1) from unnest(v_sent) as f (fp)
      );
    end loop;

    update monitoring.notification_groups as g set last_sent_at = p_now where g.group_key = v_group.group_key;

    -- told (to every channel that takes it, possibly none)
    update monitoring.alerts as a
    set
      last_notified_at = p_now,
      notifications = a.notifications + 1,
      notified_state = case when d.event = 'resolved' then 'resolved' else 'firing' end
    from monitoring._due_rows(v_due) as d
    where
      a.fingerprint = d.fingerprint and d.group_key = v_group.group_key
      and not d.muted;

    select coalesce(v_out, '{}'::jsonb) || coalesce(jsonb_object_agg(d.fingerprint, jsonb_build_object(
      'rule', d.rule_name, 'fingerprint', d.fingerprint, 'from', d.state, 'to', d.state, 'event', d.event,
      'notified', true, 'silenced_by', null, 'inhibited_by', null,
      'deliveries', coalesce((v_counts ->> d.fingerprint)::integer, 0)
    )), '{}'::jsonb)
    into v_out
    from monitoring._due_rows(v_due) as d
    where d.group_key = v_group.group_key and not d.muted;
  end loop;

  -- muted ones, for the caller and the history
  select v_out || coalesce(jsonb_object_agg(d.fingerprint, jsonb_build_object(
    'rule', d.rule_name, 'fingerprint', d.fingerprint, 'from', d.state, 'to', d.state, 'event', d.event,
    'notified', false, 'silenced_by', d.silenced_by, 'inhibited_by', d.inhibited_by, 'deliveries', 0
  )), '{}'::jsonb)
  into v_out
  from monitoring._due_rows(v_due) as d
  where d.muted;

  -- the history row of a transition made at p_now records what was told with it
  update monitoring.alert_history as h
  set
    event = case when (v_out -> h.fingerprint ->> 'notified')::boolean then v_out -> h.fingerprint ->> 'event' end,
    silenced_by = (v_out -> h.fingerprint ->> 'silenced_by')::bigint,
    inhibited_by = v_out -> h.fingerprint ->> 'inhibited_by'
  where
    h.occurred_at = p_now and v_out ? h.fingerprint
    and h.id = (select max(h2.id) from monitoring.alert_history as h2 where h2.fingerprint = h.fingerprint);

  return v_out;
end
$$;

comment on function monitoring._notify_due(timestamptz) is
'Internal: queue what the channels must hear after an evaluation: firing alerts not yet told (new, or no longer '
'silenced or inhibited), repeats after repeat_interval, resolves of told alerts. Silenced and inhibited alerts are '
'muted; the rest is grouped by settings.group_by, one message per group and channel (alertmanager channels: one '
'alert per request), a new group after group_wait, then at most every group_interval. Returns per fingerprint '
'what was done.';

create or replace function monitoring.test_channel(
  -- the channel
  p_channel text,
  -- now
  p_now timestamptz default now()
)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_channel monitoring.channels;
  v_payload jsonb;
  v_id bigint;
begin
  select * into v_channel from monitoring.channels as c where c.name = p_channel;
  if not found then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('test_channel: channel %L does not exist', p_channel),
      hint = 'see select name from monitoring.channels';
  end if;
  v_payload := monitoring._channel_payload(v_channel.kind, (
    select jsonb_build_object(
      'timestamp', monitoring._iso(p_now),
      'service', s.service_name,
      'status', 'firing',
      'event', 'test',
      'alerts', jsonb_build_array(jsonb_build_object(
        'severity', 'info',
        'message', format('Test notification for channel %s', p_channel),
        'metric', 'test',
        'value', 1,
        'status', 'firing',
        'rule', 'test',
        'labels', jsonb_build_object('alertname', 'test', 'severity', 'info'),
        'fingerprint', null,
        'startsAt', monitoring._iso(p_now),
        'endsAt', null,
        'runbook', jsonb_build_array('This is a test notification; no action is needed.')
      ))
    )
    from monitoring.settings as s
    where s.id
  ));
  insert into monitoring.deliveries (channel, event, payload, body, status, next_attempt_at, created_at)
  values (p_channel, 'test', v_payload, v_payload::text, 'queued', p_now, p_now)
  returning id into v_id;
  return v_id;
end
$$;

comment on function monitoring.test_channel(text, timestamptz) is
'Queue a test notification to one channel (sent by the next dispatcher run); returns the delivery id.';

-- ---------------------------------------------------------------------------------------------
-- Dispatcher and reconciler
-- ---------------------------------------------------------------------------------------------
create or replace function monitoring._record_failure(
  -- the delivery
  p_id bigint,
  -- now
  p_now timestamptz,
  -- HTTP status of the response, if any
  p_status_code integer,
  -- why the attempt failed
  p_error text,
  -- whether this failure is an attempt not yet counted (nothing was sent)
  p_count_attempt boolean,
  -- whether retrying cannot help (dead at once)
  p_permanent boolean
)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_attempts integer;
  v_status text;
begin
  select * into v_settings from monitoring.settings as s where s.id;
  select d.attempts + case when p_count_attempt then 1 else 0 end into v_attempts
  from monitoring.deliveries as d where d.id = p_id;
  v_status := case when p_permanent or v_attempts >= v_settings.max_attempts then 'dead' else 'retrying' end;
  update monitoring.deliveries as d
  set
    attempts = v_attempts,
    status = v_status,
    last_status_code = p_status_code,
    last_error = left(p_error, 2000),
    last_attempt_at = case when p_count_attempt then p_now else d.last_attempt_at end,
    -- in seconds as numeric: backoff_base * 2^99 overflows the interval type
    next_attempt_at = case
      when v_status = 'retrying'
        then p_now + make_interval(secs => least(
          extract(epoch from v_settings.backoff_cap),
          extract(epoch from v_settings.backoff_base) * power(2::numeric, greatest(v_attempts - 1, 0))
        )::double precision)
    end,
    dead_at = case when v_status = 'dead' then p_now end
  where d.id = p_id;
  return v_status;
end
$$;

comment on function monitoring._record_failure(bigint, timestamptz, integer, text, boolean, boolean) is
'Internal: record a failed attempt: retrying after least(backoff_cap, backoff_base * 2^(attempts-1)), or dead after '
'max_attempts.';

create or replace function monitoring.dispatch_deliveries(
  -- now
  p_now timestamptz default now(),
  -- most deliveries to send (null: settings.dispatch_batch)
  p_limit integer default null
)
returns jsonb
language plpgsql
volatile
security definer -- reads channel URLs and keys through monitoring._get_secret, which only the owner may call
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_delivery monitoring.deliveries;
  v_channel monitoring.channels;
  v_url text;
  v_key text;
  v_headers jsonb;
  v_request bigint;
  v_sent integer := 0;
  v_failed integer := 0;
  -- net.* is referenced through this variable: pg_net may not exist where this is linted
  v_http_post constant regprocedure := to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)');
begin
  if v_http_post is null then
    return jsonb_build_object('sent', 0, 'failed', 0, 'skipped', 'pg_net (net.http_post) is not installed');
  end if;
  select * into v_settings from monitoring.settings as s where s.id;

  for v_delivery in
    select d.* from monitoring.deliveries as d
    where
      d.status in ('queued', 'retrying') and d.next_attempt_at <= p_now
      -- Alertmanager keeps the last state it was told: its deliveries go out in order, so a firing
      -- retried late can never reopen an alert resolved after it
      and not exists (
        select 1
        from monitoring.channels as c
        inner join monitoring.deliveries as e on e.channel = c.name
        where
          c.name = d.channel and c.kind = 'alertmanager'
          and e.id < d.id and e.status in ('sending', 'retrying')
      )
    order by d.next_attempt_at, d.id
    limit coalesce(p_limit, v_settings.dispatch_batch)
    for update of d skip locked
  loop
    select * into v_channel from monitoring.channels as c where c.name = v_delivery.channel;
    if not found or not v_channel.enabled then
      perform monitoring._record_failure(
        v_delivery.id, p_now, null,
        format('channel %s %s', v_delivery.channel, case when found then 'is disabled' else 'no longer exists' end),
        true, true
      );
      v_failed := v_failed + 1;
      continue;
    end if;

    begin
      v_url := monitoring._get_secret(v_channel.url_secret);
      if v_url is null and v_channel.kind = 'edge_function' and v_channel.url_secret is null then
        v_url := rtrim(monitoring._get_secret(v_settings.project_url_secret), '/')
          || '/functions/v1/' || v_channel.function_name;
        if v_url is null then
          raise exception 'settings.project_url_secret: secret % does not resolve', v_settings.project_url_secret;
        end if;
      elsif v_url is null then
        raise exception 'channels.url_secret: secret % does not resolve', v_channel.url_secret;
      end if;
      if v_channel.kind = 'alertmanager' then
        perform monitoring._validate_alertmanager_url(v_url, 'channels.url_secret');
        v_url := monitoring._alertmanager_endpoint(v_url);
      else
        perform monitoring._validate_url(v_url, 'channels.url_secret');
      end if;

      v_headers := jsonb_build_object(
        'Content-Type', 'application/json',
        'X-Idempotency-Key', v_delivery.idempotency_key::text,
        'X-Alert-Event', v_delivery.event
      );
      if v_channel.signing_secret is not null then
        v_key := monitoring._get_secret(v_channel.signing_secret);
        if v_key is null then
          raise exception 'channels.signing_secret: secret % does not resolve', v_channel.signing_secret;
        end if;
        v_headers := v_headers || jsonb_build_object(
          'X-Signature',
          'sha256=' || encode(
            extensions.hmac(convert_to(v_delivery.body, 'UTF8'), convert_to(v_key, 'UTF8'), 'sha256'), 'hex'
          )
        );
      end if;
      if v_channel.kind = 'edge_function' then
        v_key := monitoring._get_secret(v_settings.service_key_secret);
        if v_key is null then
          raise exception 'settings.service_key_secret: secret % does not resolve', v_settings.service_key_secret;
        end if;
        v_headers := v_headers || jsonb_build_object('Authorization', 'Bearer ' || v_key);
      end if;
      if v_channel.auth_secret is not null then
        v_key := monitoring._get_secret(v_channel.auth_secret);
        if v_key is null then
          raise exception 'channels.auth_secret: secret % does not resolve', v_channel.auth_secret;
        end if;
        v_headers := v_headers || jsonb_build_object('Authorization', v_key);
      end if;

      execute format(
        'select %s(url := $1, body := $2, headers := $3, timeout_milliseconds := $4)', v_http_post::regproc
      )
      into v_request
      using v_url, v_delivery.body::jsonb, v_headers, v_settings.http_timeout_ms;

      update monitoring.deliveries as d
      set
        status = 'sending',
        attempts = d.attempts + 1,
        request_id = v_request,
        last_attempt_at = p_now,
        next_attempt_at = null
      where d.id = v_delivery.id;
      v_sent := v_sent + 1;
    exception when others then
      perform monitoring._record_failure(v_delivery.id, p_now, null, sqlerrm, true, false);
      v_failed := v_failed + 1;
    end;
  end loop;

  return jsonb_build_object('sent', v_sent, 'failed', v_failed);
end
$$;

comment on function monitoring.dispatch_deliveries(timestamptz, integer) is
'Send due deliveries (for update skip locked, so concurrent runs never send one twice) with net.http_post, '
'X-Idempotency-Key and X-Signature over the exact body (Authorization from auth_secret; alertmanager channels in '
'order); returns counts.';

create or replace function monitoring.reconcile_deliveries(
  -- now
  p_now timestamptz default now()
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_settings monitoring.settings;
  v_delivery record;
  v_rows integer;
  v_status_code integer;
  v_timed_out boolean;
  v_error text;
  v_content text;
  v_epoch uuid;
  v_withdrawn integer;
  v_overdue boolean;
  v_in_flight boolean;
  v_delivered integer := 0;
  v_failed integer := 0;
  v_waiting integer := 0;
  -- net.* is referenced through these variables: pg_net may not exist where this is linted
  v_responses constant regclass := to_regclass('net._http_response');
  v_queue constant regclass := to_regclass('net.http_request_queue');
begin
  if v_responses is null then
    return jsonb_build_object(
      'delivered', 0, 'failed', 0, 'waiting', 0, 'skipped', 'pg_net (net._http_response) is not installed'
    );
  end if;
  select * into v_settings from monitoring.settings as s where s.id;
  v_epoch := monitoring._current_net_epoch();

  for v_delivery in
    select d.id, d.request_id, d.request_epoch, d.idempotency_key, d.last_attempt_at
    from monitoring.deliveries as d
    where d.status = 'sending'
    order by d.id
    for update skip locked
  loop
    if v_delivery.request_epoch is not null and v_delivery.request_epoch <> v_epoch then
      -- pg_net's unlogged queue and responses were reset since: the request is gone, its id reused
      perform monitoring._record_failure(
        v_delivery.id, p_now, null,
        format('request %s was lost: pg_net''s unlogged queue and responses were reset (crash or restore) after '
          || 'it was handed over', v_delivery.request_id),
        false, false
      );
      v_failed := v_failed + 1;
      continue;
    end if;

    v_rows := 0;
    v_withdrawn := 0;
    v_in_flight := false;
    v_overdue := p_now >= v_delivery.last_attempt_at
      + make_interval(secs => v_settings.http_timeout_ms / 1000.0) + v_settings.response_grace;
    -- at most twice: once, and once more when the request left pg_net's queue while we looked
    for v_look in 1..2 loop
      if v_delivery.request_id is not null then
        -- the created bound guards against a request id reused after a crash reset pg_net's sequence
        execute format(
          'select r.status_code, r.timed_out, r.error_msg, left(r.content, 500) from %s as r '
          || 'where r.id = $1 and r.created >= $2 order by r.created desc limit 1',
          v_responses
        )
        into v_status_code, v_timed_out, v_error, v_content
        using v_delivery.request_id, v_delivery.last_attempt_at - interval '1 minute';
        get diagnostics v_rows = row_count;
      end if;
      exit when v_rows > 0 or not v_overdue or v_look = 2 or v_queue is null or v_delivery.request_id is null;
      -- no response past timeout plus grace. Still in pg_net's queue and not taken by its worker (its
      -- worker is not running)? Withdraw it, so that the retry is the only copy. The real worker
      -- deletes a batch from the queue and inserts the responses in one transaction that stays open
      -- while the requests run: a row it holds is locked (in flight, not withdrawn, its response
      -- comes at commit); a row that left the queue since our first look may have its response now.
      begin
        execute format(
          'delete from %1$s as q where q.ctid in (select k.ctid from %1$s as k where k.id = $1 '
          || 'and k.headers ->> ''X-Idempotency-Key'' = $2 for update skip locked)', v_queue
        )
        using v_delivery.request_id, v_delivery.idempotency_key::text;
        get diagnostics v_withdrawn = row_count;
        exit when v_withdrawn > 0;
        execute format(
          'select exists (select from %s as k where k.id = $1 and k.headers ->> ''X-Idempotency-Key'' = $2)',
          v_queue
        )
        into v_in_flight
        using v_delivery.request_id, v_delivery.idempotency_key::text;
      exception when insufficient_privilege then
        v_in_flight := false;
      end;
      exit when v_in_flight;
    end loop;

    if v_rows > 0 and v_status_code between 200 and 299 and not coalesce(v_timed_out, false) and v_error is null then
      update monitoring.deliveries as d
      set status = 'delivered', delivered_at = p_now, last_status_code = v_status_code, last_error = null
      where d.id = v_delivery.id;
      v_delivered := v_delivered + 1;
    elsif v_rows > 0 then
      perform monitoring._record_failure(
        v_delivery.id, p_now, v_status_code,
        coalesce(
          v_error,
          case when v_timed_out then 'timed out' end,
          format('HTTP %s: %s', coalesce(v_status_code::text, 'no status'), coalesce(v_content, ''))
        ),
        false,
        -- a client error will not go away by sending the same request again (408 and 429 will)
        coalesce(v_status_code between 400 and 499 and v_status_code not in (408, 429), false)
      );
      v_failed := v_failed + 1;
    elsif v_overdue and not v_in_flight then
      perform monitoring._record_failure(
        v_delivery.id, p_now, null,
        case
          when v_withdrawn > 0 then format(
            'no response for request %s within %s ms plus %s: pg_net never took it from net.http_request_queue '
            || '(is its worker running?); withdrawn, so that only the retry goes out',
            v_delivery.request_id, v_settings.http_timeout_ms, v_settings.response_grace
          )
          else format('no response for request %s within %s ms plus %s', v_delivery.request_id,
            v_settings.http_timeout_ms, v_settings.response_grace)
        end,
        false, false
      );
      v_failed := v_failed + 1;
    else
      v_waiting := v_waiting + 1;
    end if;
  end loop;

  return jsonb_build_object('delivered', v_delivered, 'failed', v_failed, 'waiting', v_waiting);
end
$$;

comment on function monitoring.reconcile_deliveries(timestamptz) is
'Confirm sent deliveries from net._http_response: 2xx delivered; 4xx other than 408 and 429 dead at once; other '
'status, timeout, error, no response after timeout plus grace (a request still queued and not taken by pg_net''s '
'worker is withdrawn; one the worker holds is in flight and waited for) or a request lost with pg_net''s unlogged '
'tables is a failed attempt (retry or dead).';

create or replace function monitoring.retry_dead_deliveries(
  -- only these deliveries (null: all dead ones)
  p_ids bigint[] default null,
  -- only this channel (null: all)
  p_channel text default null,
  -- now
  p_now timestamptz default now()
)
returns integer
language sql
volatile
set search_path = ''
as $$
  with requeued as (
    update monitoring.deliveries as d
    set status = 'retrying', attempts = 0, next_attempt_at = p_now, dead_at = null
    where
      d.status = 'dead'
      and (p_ids is null or d.id = any(p_ids))
      and (p_channel is null or d.channel = p_channel)
    returning 1
  )

  select count(*)::integer from requeued
$$;

comment on function monitoring.retry_dead_deliveries(bigint[], text, timestamptz) is
'Put dead-lettered deliveries back in the queue (same body and idempotency key, attempts reset); returns how many.';

-- ---------------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------------
create or replace view monitoring.delivery_status
with (security_invoker = true)
as
with per_channel as (
  select
    d.channel,
    count(*) filter (where d.status = 'queued') as queued,
    count(*) filter (where d.status = 'sending') as sending,
    count(*) filter (where d.status = 'retrying') as retrying,
    count(*) filter (where d.status = 'dead') as dead,
    count(*) filter (where d.status = 'delivered' and d.delivered_at > now() - interval '24 hours') as delivered_24h,
    max(d.delivered_at) as last_delivered_at,
    min(d.created_at) filter (where d.status in ('queued', 'sending', 'retrying')) as oldest_pending_at
  from monitoring.deliveries as d
  group by d.channel
)

select
  coalesce(c.name, p.channel) as channel,
  c.kind,
  coalesce(c.enabled, false) as enabled,
  coalesce(p.queued, 0) as queued,
  coalesce(p.sending, 0) as sending,
  coalesce(p.retrying, 0) as retrying,
  coalesce(p.dead, 0) as dead,
  coalesce(p.delivered_24h, 0) as delivered_24h,
  p.last_delivered_at,
  p.oldest_pending_at,
  (
    select d.last_error
    from monitoring.deliveries as d
    where d.channel = coalesce(c.name, p.channel) and d.last_error is not null
    order by d.id desc
    limit 1
  ) as last_error
from monitoring.channels as c
full join per_channel as p on c.name = p.channel
order by channel;

comment on view monitoring.delivery_status is
'Per channel: how many deliveries are queued, in flight, retrying or dead, how many were delivered in 24 h, the '
'last delivery and the last error.';

create or replace view monitoring.dead_letters
with (security_invoker = true)
as
select
  d.id,
  d.channel,
  d.event,
  d.rule_name,
  d.fingerprint,
  d.attempts,
  d.last_status_code,
  d.last_error,
  d.created_at,
  d.dead_at,
  d.idempotency_key,
  d.payload
from monitoring.deliveries as d
where d.status = 'dead'
order by d.dead_at desc;

comment on view monitoring.dead_letters is
'Notifications that could not be delivered after max_attempts (or whose channel is gone); requeue with '
'monitoring.retry_dead_deliveries().';

-- ---------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------
alter table monitoring.channels enable row level security;

alter table monitoring.deliveries enable row level security;

alter table monitoring.notification_groups enable row level security;

-- Three guarantees of the outbox under faults, each proven by tests/test_faults.py:
--
-- 1. A crash could mark a lost notification delivered. pg_net's queue, its responses and the
--    sequence of its request ids are UNLOGGED: after a crash they are reset and ids start again at
--    1. A delivery whose request was in flight at the crash kept waiting for that id, and the next
--    request sent after the restart (another notification) got the same id: the reconciler took
--    that other request's 2xx as its own answer (the created-time guard only helps when the reuse
--    comes long after the attempt, not right after a crash, when it always happens). The alert was
--    never sent, and nothing said so. Now every request handed to pg_net is stamped with the epoch
--    of pg_net's unlogged tables (monitoring._unlogged_epoch, itself unlogged, so a crash or a
--    restore empties it along with them); a delivery whose request belongs to an older epoch is a
--    failed attempt at once (retried: its request is gone).
-- 2. pg_net's worker stopped for a few minutes (it happens on Supabase) multiplied notifications.
--    A request still waiting in net.http_request_queue after the timeout plus the grace counted as
--    a failed attempt and the retry queued a second copy behind it, then a third...; when the
--    worker came back every copy went out (Slack and Discord do not deduplicate), and deliveries
--    already dead-lettered were sent anyway. Now such a request is withdrawn from the queue when it
--    is counted as failed, so at most one copy of a notification ever waits in pg_net.
-- 3. 4xx answers were retried until max_attempts (an hour by default) although resending the same
--    request cannot fix a bad URL, a rejected signature or a gone endpoint. Like Alertmanager, a 4xx
--    other than 408 (Request Timeout) and 429 (Too Many Requests) is now dead-lettered at once
--    (monitoring.dead_letters, health() degraded); fix the channel and requeue it with
--    monitoring.retry_dead_deliveries(). 5xx, 408, 429, timeouts and connection errors are retried.
create unlogged table if not exists monitoring._unlogged_epoch (
  id boolean primary key default true,
  epoch uuid not null default gen_random_uuid(),
  started_at timestamptz not null default now(),
  constraint _unlogged_epoch_id_check check (id)
);

comment on table monitoring._unlogged_epoch is
'One row naming the current life of the unlogged tables (pg_net''s queue and responses): UNLOGGED itself, so a crash '
'or a restore empties it and monitoring._current_net_epoch() starts a new epoch.';

alter table monitoring._unlogged_epoch enable row level security;

comment on column monitoring.deliveries.request_epoch is
'Epoch of pg_net''s unlogged tables when request_id was handed over; another epoch means the request was lost.';

create or replace function monitoring._current_net_epoch()
returns uuid
language plpgsql
volatile
security definer -- keeps the owner-only epoch row; callers (the reconciler) may run as service_role
set search_path = ''
as $$
declare
  v_epoch uuid;
begin
  select e.epoch into v_epoch from monitoring._unlogged_epoch as e where e.id;
  if v_epoch is null then
    insert into monitoring._unlogged_epoch as e (id) values (true) on conflict (id) do nothing;
    select e.epoch into v_epoch from monitoring._unlogged_epoch as e where e.id;
  end if;
  return v_epoch;
end
$$;

comment on function monitoring._current_net_epoch() is
'Internal: the epoch of the unlogged tables (a new one after a crash or a restore emptied them).';

create or replace function monitoring._stamp_request_epoch()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.request_epoch := monitoring._current_net_epoch();
  return new;
end
$$;

comment on function monitoring._stamp_request_epoch() is
'Trigger: stamp a delivery handed to pg_net (status sending, new request id) with the current unlogged epoch.';

create or replace trigger deliveries_request_epoch
before update of status, request_id on monitoring.deliveries
for each row
when (new.status = 'sending' and (old.status <> 'sending' or new.request_id is distinct from old.request_id))
execute function monitoring._stamp_request_epoch();

create or replace trigger channels_limits
before insert or update on monitoring.channels
for each row execute function monitoring._validate_limits();

create or replace trigger channels_validate_nulls
before insert or update on monitoring.channels
for each row execute function monitoring._validate_not_null();

-- A delivery never gets a null or infinite time from a p_now argument. The when clause keeps the
-- function (which names the column) off the dispatcher's path: it runs only for a bad row.
create or replace trigger deliveries_finite_times
before insert or update on monitoring.deliveries
for each row when (
  new.created_at is null
  or not isfinite(greatest(new.created_at, new.next_attempt_at, new.last_attempt_at, new.delivered_at, new.dead_at))
  or not isfinite(least(new.created_at, new.next_attempt_at, new.last_attempt_at, new.delivered_at, new.dead_at))
)
execute function monitoring._validate_finite_times(
  'created_at', 'next_attempt_at', 'last_attempt_at', 'delivered_at', 'dead_at'
);

-- a queued or retrying delivery is sent at next_attempt_at, so it needs one
create or replace trigger deliveries_due_time
before insert or update on monitoring.deliveries
for each row when (new.status in ('queued', 'retrying') and new.next_attempt_at is null)
execute function monitoring._validate_finite_times('next_attempt_at+');
