-- Ingestion: the app's own functions (Cloudflare Pages Functions, its Supabase Edge Functions)
-- report their invocations and structured log lines over HTTP, through the ingest Edge Function,
-- which makes one call per batch: monitoring.ingest(key hash, batch). Invocations go to
-- monitoring.function_invocations (the table record_invocation writes), so function_stats and the
-- function_errors / function_latency / function_availability rules see them; log lines (the spec's
-- structured format) go to monitoring.app_logs, phone numbers masked, kept per level.
--
-- The ingest key lives in Vault (or the locked-down fallback, see 60_delivery.sql) as
-- monitoring_ingest_key; rotate_ingest_key() moves the old one to monitoring_ingest_key_previous,
-- which stays valid for a grace period, so clients switch keys without a refused batch.

-- =============================================================================================
-- Settings (one row) and per-level retention
-- =============================================================================================
create table if not exists monitoring.ingest_settings (
  id boolean primary key default true,
  max_records integer not null default 1000,
  max_past interval not null default interval '24 hours',
  max_future interval not null default interval '5 minutes',
  error_lines_to_error_logs boolean not null default false,
  previous_key_expires_at timestamptz,
  updated_at timestamptz not null default now()
);

comment on table monitoring.ingest_settings is
'How monitoring.ingest() takes batches (one row): records per batch, how far in the past or future a time may '
'be, whether ERROR lines count for the error-rate rules, and until when the previous ingest key is valid.';

comment on column monitoring.ingest_settings.id is 'Always true: the table holds one row.';

comment on column monitoring.ingest_settings.max_records is
'Invocations plus log lines in one batch at most (more: the batch is refused with 413).';

comment on column monitoring.ingest_settings.max_past is
'A record timed earlier than now - max_past is refused (400 naming the field). Batch ids are kept 2 days '
'(retention target ingest_batches), so keep this shorter for retries to stay idempotent.';

comment on column monitoring.ingest_settings.max_future is
'A record timed later than now + max_future is refused (clock skew allowance).';

comment on column monitoring.ingest_settings.error_lines_to_error_logs is
'When true, each ingested ERROR line is also written to public.whatsapp_error_logs (error_type = its action, '
'error_code = its status), so high_error_rate, error_rate_webhook, check_error_rate() and top_errors_24h count '
'it. Off by default: those rules are about WhatsApp sending errors.';

comment on column monitoring.ingest_settings.previous_key_expires_at is
'Until when the previous ingest key (secret monitoring_ingest_key_previous) is accepted; null or past: refused.';

insert into monitoring.ingest_settings (id) values (true) on conflict (id) do nothing;

-- The limits of ingest_settings (enforced by monitoring._validate_limits, see 05_schema.sql)
insert into monitoring._limits (table_name, column_name, min_value, max_value, hint) values
('ingest_settings', 'max_records', '1', '10000', 'use 1000 (the ingest function also caps the body at 1 MiB)'),
('ingest_settings', 'max_past', '1 minute', '36 hours', 'use ''24 hours'' (batch ids are kept 2 days)'),
('ingest_settings', 'max_future', '0 seconds', '1 hour', 'use ''5 minutes''')
on conflict (table_name, column_name) do nothing;

create or replace trigger ingest_settings_limits
before insert or update on monitoring.ingest_settings
for each row execute function monitoring._validate_limits();

create or replace trigger ingest_settings_single_row
before insert or update on monitoring.ingest_settings
for each row execute function monitoring._validate_single_row();

create or replace trigger ingest_settings_validate_nulls
before insert or update on monitoring.ingest_settings
for each row execute function monitoring._validate_not_null();

alter table monitoring.ingest_settings enable row level security;

create table if not exists monitoring.log_retention (
  level text primary key,
  keep_for interval not null,
  updated_at timestamptz not null default now()
);

comment on table monitoring.log_retention is
'How long monitoring.app_logs keeps lines of each level (the retention job, target app_logs, deletes older ones; '
'the app_logs policy''s keep_for caps them all).';

comment on column monitoring.log_retention.level is 'ERROR, WARN, INFO or DEBUG.';

comment on column monitoring.log_retention.keep_for is 'Lines of this level older than this are deleted.';

insert into monitoring._limits (table_name, column_name, allowed, hint) values
('log_retention', 'level', array['ERROR', 'WARN', 'INFO', 'DEBUG'], 'levels are ERROR, WARN, INFO and DEBUG')
on conflict (table_name, column_name) do nothing;

insert into monitoring._limits (table_name, column_name, min_value, max_value, hint) values
('log_retention', 'keep_for', '1 hour', '3660 days', 'use ''30 days'' (the spec''s database log retention)')
on conflict (table_name, column_name) do nothing;

create or replace trigger log_retention_limits
before insert or update on monitoring.log_retention
for each row execute function monitoring._validate_limits();

create or replace trigger log_retention_validate_nulls
before insert or update on monitoring.log_retention
for each row execute function monitoring._validate_not_null();

alter table monitoring.log_retention enable row level security;

insert into monitoring.log_retention (level, keep_for) values
('ERROR', interval '30 days'),
('WARN', interval '30 days'),
('INFO', interval '7 days'),
('DEBUG', interval '1 day')
on conflict (level) do nothing;

-- =============================================================================================
-- Tables the batches fill
-- =============================================================================================
create table if not exists monitoring.ingest_batches (
  batch_id text primary key,
  received_at timestamptz not null default now(),
  invocations integer not null,
  logs integer not null
);

comment on table monitoring.ingest_batches is
'One row per batch monitoring.ingest() wrote: a batch id seen again is answered as a duplicate and written '
'nothing (idempotent retries). Kept 2 days (retention target ingest_batches).';

create index if not exists ingest_batches_received_at_idx on monitoring.ingest_batches (received_at);

alter table monitoring.ingest_batches enable row level security;

create table if not exists monitoring.app_logs (
  id bigint generated always as identity primary key,
  logged_at timestamptz not null,
  level text not null,
  service text not null,
  action text not null,
  status text,
  duration_ms numeric,
  order_id text,
  phone text,
  message text,
  fields jsonb not null default '{}'::jsonb,
  batch_id text not null,
  received_at timestamptz not null default now()
);

comment on table monitoring.app_logs is
'The app''s structured log lines (the spec''s format), written by monitoring.ingest(); phone numbers masked. '
'Kept per level (monitoring.log_retention).';

comment on column monitoring.app_logs.logged_at is 'The line''s own timestamp.';

comment on column monitoring.app_logs.level is 'ERROR, WARN, INFO or DEBUG (sent in any case, stored upper-case).';

comment on column monitoring.app_logs.phone is 'The line''s phone field, masked as monitoring.mask_phone does.';

comment on column monitoring.app_logs.fields is
'The line''s other fields (scalars), phone numbers in their strings masked.';

comment on column monitoring.app_logs.batch_id is 'The batch it came in (monitoring.ingest_batches).';

create index if not exists app_logs_level_logged_at_idx on monitoring.app_logs (level, logged_at);

alter table monitoring.app_logs enable row level security;

-- =============================================================================================
-- API: Private
-- =============================================================================================
create or replace function monitoring._ingest_shown(
  -- a JSON value from a batch
  p_value jsonb
)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_value is null then 'nothing'
    when pg_catalog.length(p_value::text) > 40 then pg_catalog.left(p_value::text, 39) || '…'
    else p_value::text
  end
$$;

comment on function monitoring._ingest_shown(jsonb) is
'Internal: a value of a refused record as its error message shows it (JSON, at most 40 characters).';

create or replace function monitoring._ingest_time_pattern()
returns text
language sql
immutable
set search_path = ''
as $$
  -- year 1000-9999, month, day 01-31 (the month's length is checked apart), hour 00-23, minutes and
  -- seconds 00-59, up to 9 decimals, and a zone: Z or an offset up to 14 hours
  select '^([1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):([0-5][0-9])'
    || '(:([0-5][0-9])(\.[0-9]{1,9})?)?(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)$'
$$;

comment on function monitoring._ingest_time_pattern() is
'Internal: the ISO 8601 times monitoring.ingest() takes (a zone is required), as a regular expression.';

create or replace function monitoring._ingest_time_error(
  -- the record's time field
  p_value jsonb,
  -- now
  p_now timestamptz,
  -- the ingest settings
  p_settings monitoring.ingest_settings
)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_parts text[];
  v_time timestamptz;
begin
  if pg_catalog.jsonb_typeof(p_value) is distinct from 'string' then
    return format('must be an ISO 8601 time such as "2026-12-01T12:00:00Z" (got %s)', monitoring._ingest_shown(p_value));
  end if;
  v_parts := pg_catalog.regexp_match(p_value #>> '{}', monitoring._ingest_time_pattern());
  if v_parts is null
    or v_parts[3]::integer > extract(
      day from pg_catalog.make_date(v_parts[1]::integer, v_parts[2]::integer, 1) + interval '1 month - 1 day'
    ) then
    return format(
      'must be an ISO 8601 time with a zone such as "2026-12-01T12:00:00Z" (got %s)', monitoring._ingest_shown(p_value)
    );
  end if;
  v_time := (p_value #>> '{}')::timestamptz;
  if v_time < p_now - p_settings.max_past then
    return format('is more than %s in the past (got %s; ingest_settings.max_past)',
      monitoring._human_interval(p_settings.max_past), p_value #>> '{}');
  end if;
  if v_time > p_now + p_settings.max_future then
    return format(
      'is more than %s in the future (got %s; check the sender''s clock, ingest_settings.max_future)',
      monitoring._human_interval(p_settings.max_future), p_value #>> '{}'
    );
  end if;
  return null;
end
$$;

comment on function monitoring._ingest_time_error(jsonb, timestamptz, monitoring.ingest_settings) is
'Internal: why a record''s time is refused (not an ISO 8601 time with a zone, too far in the past or future), or '
'null when it is good.';

create or replace function monitoring._ingest_text_error(
  -- the field's value
  p_value jsonb,
  -- whether it must be present
  p_required boolean,
  -- its longest length
  p_max integer
)
returns text
language sql
stable
set search_path = ''
as $$
  select case
    when (p_value is null or p_value = 'null'::jsonb) and not p_required then null
    when pg_catalog.jsonb_typeof(p_value) is distinct from 'string'
      or pg_catalog.char_length(p_value #>> '{}') not between (case when p_required then 1 else 0 end) and p_max
      then format(
        'must be a string of %s-%s characters (got %s)',
        case when p_required then 1 else 0 end, p_max, monitoring._ingest_shown(p_value)
      )
  end
$$;

comment on function monitoring._ingest_text_error(jsonb, boolean, integer) is
'Internal: why a string field is refused (absent when required, not a string, too long), or null.';

create or replace function monitoring._ingest_invocation_error(
  -- one invocation record
  p_record jsonb,
  -- now
  p_now timestamptz,
  -- the ingest settings
  p_settings monitoring.ingest_settings
)
returns text[]
language plpgsql
stable
set search_path = ''
as $$
declare
  v_error text;
  v_key text;
begin
  if pg_catalog.jsonb_typeof(p_record) is distinct from 'object' then
    return array['', format('must be an object such as {"function": "/api/send", "status": 200, '
      || '"durationMs": 120, "time": "2026-12-01T12:00:00Z"} (got %s)', monitoring._ingest_shown(p_record))];
  end if;
  select k into v_key from pg_catalog.jsonb_object_keys(p_record) as k
  where k not in ('function', 'status', 'durationMs', 'time', 'requestId', 'region') limit 1;
  if v_key is not null then
    return array['.' || v_key, 'is not a field of an invocation (function, status, durationMs, time, requestId, region)'];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'function', true, 200);
  if v_error is not null then
    return array['.function', v_error];
  end if;
  if pg_catalog.jsonb_typeof(p_record -> 'status') is distinct from 'number'
    or (p_record ->> 'status') !~ '^[1-5][0-9][0-9]$' then
    return array['.status', format('must be an HTTP status, an integer 100-599 (got %s)',
      monitoring._ingest_shown(p_record -> 'status'))];
  end if;
  if pg_catalog.jsonb_typeof(p_record -> 'durationMs') is distinct from 'number'
    or (p_record ->> 'durationMs')::numeric not between 0 and 86400000 then
    return array['.durationMs', format('must be a number of ms from 0 to 86400000 (got %s)',
      monitoring._ingest_shown(p_record -> 'durationMs'))];
  end if;
  v_error := monitoring._ingest_time_error(p_record -> 'time', p_now, p_settings);
  if v_error is not null then
    return array['.time', v_error];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'requestId', false, 200);
  if v_error is not null then
    return array['.requestId', v_error];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'region', false, 50);
  if v_error is not null then
    return array['.region', v_error];
  end if;
  return null;
end
$$;

comment on function monitoring._ingest_invocation_error(jsonb, timestamptz, monitoring.ingest_settings) is
'Internal: {field suffix, message} saying why an invocation record is refused, or null. Fields: function (1-200 '
'characters), status (100-599), durationMs (0-86400000), time (ISO 8601, within max_past/max_future), optional '
'requestId (200) and region (50); nothing else.';

create or replace function monitoring._ingest_log_error(
  -- one log line
  p_record jsonb,
  -- now
  p_now timestamptz,
  -- the ingest settings
  p_settings monitoring.ingest_settings
)
returns text[]
language plpgsql
stable
set search_path = ''
as $$
declare
  v_error text;
  v_free record;
  v_count integer := 0;
begin
  if pg_catalog.jsonb_typeof(p_record) is distinct from 'object' then
    return array['', format('must be an object such as {"timestamp": "2026-12-01T12:00:00Z", "level": "ERROR", '
      || '"service": "whatsapp", "action": "send_message"} (got %s)', monitoring._ingest_shown(p_record))];
  end if;
  v_error := monitoring._ingest_time_error(p_record -> 'timestamp', p_now, p_settings);
  if v_error is not null then
    return array['.timestamp', v_error];
  end if;
  if pg_catalog.jsonb_typeof(p_record -> 'level') is distinct from 'string'
    or pg_catalog.upper(p_record ->> 'level') not in ('ERROR', 'WARN', 'INFO', 'DEBUG') then
    return array['.level', format('must be ERROR, WARN, INFO or DEBUG (got %s)',
      monitoring._ingest_shown(p_record -> 'level'))];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'service', true, 100);
  if v_error is not null then
    return array['.service', v_error];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'action', true, 200);
  if v_error is not null then
    return array['.action', v_error];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'status', false, 100);
  if v_error is not null then
    return array['.status', v_error];
  end if;
  if p_record ? 'duration' and p_record -> 'duration' <> 'null'::jsonb and (
    pg_catalog.jsonb_typeof(p_record -> 'duration') <> 'number'
    or (p_record ->> 'duration')::numeric not between 0 and 86400000
  ) then
    return array['.duration', format('must be a number of ms from 0 to 86400000 (got %s)',
      monitoring._ingest_shown(p_record -> 'duration'))];
  end if;
  -- the spec's orderId (and a phone) may be a JSON number: its digits count as the string
  v_error := monitoring._ingest_text_error(case
    when pg_catalog.jsonb_typeof(p_record -> 'orderId') = 'number' then pg_catalog.to_jsonb(p_record ->> 'orderId')
    else p_record -> 'orderId'
  end, false, 200);
  if v_error is not null then
    return array['.orderId', v_error];
  end if;
  v_error := monitoring._ingest_text_error(case
    when pg_catalog.jsonb_typeof(p_record -> 'phone') = 'number' then pg_catalog.to_jsonb(p_record ->> 'phone')
    else p_record -> 'phone'
  end, false, 50);
  if v_error is not null then
    return array['.phone', v_error];
  end if;
  v_error := monitoring._ingest_text_error(p_record -> 'message', false, 4000);
  if v_error is not null then
    return array['.message', v_error];
  end if;
  for v_free in
    select e.key, e.value from pg_catalog.jsonb_each(p_record) as e
    where e.key not in ('timestamp', 'level', 'service', 'action', 'status', 'duration', 'orderId', 'phone', 'message')
  loop
    v_count := v_count + 1;
    if v_count > 20 then
      return array['', 'has more than 20 free fields besides timestamp, level, service, action, status, duration, '
        || 'orderId, phone and message'];
    end if;
    if v_free.key !~ '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$' then
      return array['.' || pg_catalog.left(v_free.key, 64),
        'is not a field name: use 1-64 letters, digits or _ . - starting with a letter or _'];
    end if;
    if pg_catalog.jsonb_typeof(v_free.value) in ('object', 'array') then
      return array['.' || v_free.key, 'must be a string, number, boolean or null (no objects or arrays)'];
    end if;
    if pg_catalog.jsonb_typeof(v_free.value) = 'string' and pg_catalog.char_length(v_free.value #>> '{}') > 1000 then
      return array['.' || v_free.key, 'must be at most 1000 characters'];
    end if;
  end loop;
  return null;
end
$$;

comment on function monitoring._ingest_log_error(jsonb, timestamptz, monitoring.ingest_settings) is
'Internal: {field suffix, message} saying why a log line is refused, or null. Fields: timestamp (ISO 8601, within '
'max_past/max_future), level (ERROR/WARN/INFO/DEBUG, any case), service (1-100), action (1-200), optional status '
'(100), duration (ms, 0-86400000), orderId (200), phone (50), message (4000), and up to 20 free scalar fields '
'(names of 1-64 characters, strings up to 1000).';

create or replace function monitoring._ingest_key_matches(
  -- hex SHA-256 of the key the caller presented
  p_key_sha256 text,
  -- now
  p_now timestamptz
)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_current text := monitoring._get_secret('monitoring_ingest_key');
  v_previous text;
  v_expires timestamptz;
begin
  if v_current is null then
    return 'unset';
  end if;
  if p_key_sha256 = pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(v_current, 'UTF8')), 'hex') then
    return 'current';
  end if;
  select s.previous_key_expires_at into v_expires from monitoring.ingest_settings as s where s.id;
  if v_expires > p_now then
    v_previous := monitoring._get_secret('monitoring_ingest_key_previous');
    if v_previous is not null
      and p_key_sha256 = pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(v_previous, 'UTF8')), 'hex') then
      return 'previous';
    end if;
  end if;
  return null;
end
$$;

comment on function monitoring._ingest_key_matches(text, timestamptz) is
'Internal: which ingest key the hash matches (current, or previous while its grace lasts), ''unset'' when no key '
'was ever set, null when it matches none.';

create or replace function monitoring._ingest_refusal(
  -- HTTP status the ingest function answers
  p_status integer,
  -- the field at fault (empty: the whole request)
  p_field text,
  -- what is wrong and how to fix it
  p_message text
)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'status', p_status,
    'field', nullif(p_field, ''),
    'error', case when coalesce(p_field, '') = '' then p_message else p_field || ' ' || p_message end
  )
$$;

comment on function monitoring._ingest_refusal(integer, text, text) is
'Internal: the document monitoring.ingest() returns for a refused batch: status, field, error.';

-- =============================================================================================
-- API: Public
-- =============================================================================================
create or replace function monitoring.ingest(
  -- hex SHA-256 of the ingest key the caller presented (the key itself never reaches the database)
  p_key_sha256 text,
  -- the batch: {"batchId": "...", "invocations": [...], "logs": [...]}
  p_batch jsonb,
  -- now (tests pass a fixed time)
  p_now timestamptz default now()
)
returns jsonb
language plpgsql
volatile
security definer -- reads the ingest keys (Vault) and writes tables callers get no direct write access to
set search_path = ''
set jit = off
as $$
declare
  v_settings monitoring.ingest_settings;
  v_key text;
  v_batch_id text;
  v_invocations jsonb;
  v_logs jsonb;
  v_n_invocations integer;
  v_n_logs integer;
  v_bad record;
  v_seen monitoring.ingest_batches;
  v_errors integer := 0;
  v_bad_count bigint;
  v_lo timestamptz;
  v_hi timestamptz;
  v_pattern text;
  -- the fields of a log line that have columns; the others are its free fields
  v_known constant text[] := array[
    'timestamp', 'level', 'service', 'action', 'status', 'duration', 'orderId', 'phone', 'message'
  ];
begin
  if p_now is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('ingest: p_now must be a finite time (got %s)', coalesce(p_now::text, 'null')),
      hint = 'leave p_now out: it defaults to now()';
  end if;
  select * into strict v_settings from monitoring.ingest_settings as s where s.id;

  v_key := monitoring._ingest_key_matches(coalesce(p_key_sha256, ''), p_now);
  if v_key = 'unset' then
    return monitoring._ingest_refusal(503, '',
      'no ingest key is set on the server: run `pydeploy ingest-key rotate` and give the key to the senders');
  elsif v_key is null then
    return monitoring._ingest_refusal(401, '',
      'the ingest key is not valid: send Authorization: Bearer <ingest key> (see `pydeploy ingest-key rotate`)');
  end if;

  if p_batch is null or pg_catalog.jsonb_typeof(p_batch) <> 'object' then
    return monitoring._ingest_refusal(400, '',
      'the body must be a JSON object such as {"batchId": "...", "invocations": [...], "logs": [...]}');
  end if;
  select k into v_batch_id from pg_catalog.jsonb_object_keys(p_batch) as k
  where k not in ('batchId', 'invocations', 'logs', 'source', 'dropped') limit 1;
  if v_batch_id is not null then
    return monitoring._ingest_refusal(400, v_batch_id,
      'is not a field of a batch (batchId, invocations, logs, source, dropped)');
  end if;
  if pg_catalog.jsonb_typeof(p_batch -> 'batchId') is distinct from 'string'
    or (p_batch ->> 'batchId') !~ '^[A-Za-z0-9_.:-]{8,100}$' then
    return monitoring._ingest_refusal(400, 'batchId', format(
      'must be 8-100 letters, digits or _ . : - such as a UUID, the same on every retry (got %s)',
      monitoring._ingest_shown(p_batch -> 'batchId')));
  end if;
  v_batch_id := p_batch ->> 'batchId';
  v_invocations := coalesce(nullif(p_batch -> 'invocations', 'null'::jsonb), '[]'::jsonb);
  v_logs := coalesce(nullif(p_batch -> 'logs', 'null'::jsonb), '[]'::jsonb);
  if pg_catalog.jsonb_typeof(v_invocations) <> 'array' then
    return monitoring._ingest_refusal(400, 'invocations', format('must be an array of invocation records (got %s)',
      monitoring._ingest_shown(v_invocations)));
  end if;
  if pg_catalog.jsonb_typeof(v_logs) <> 'array' then
    return monitoring._ingest_refusal(400, 'logs', format('must be an array of log lines (got %s)',
      monitoring._ingest_shown(v_logs)));
  end if;
  v_n_invocations := pg_catalog.jsonb_array_length(v_invocations);
  v_n_logs := pg_catalog.jsonb_array_length(v_logs);
  if v_n_invocations + v_n_logs = 0 then
    return monitoring._ingest_refusal(400, 'invocations', 'and logs are both empty: send at least one record');
  end if;
  if v_n_invocations + v_n_logs > v_settings.max_records then
    return monitoring._ingest_refusal(413, case when v_n_logs > v_n_invocations then 'logs' else 'invocations' end,
      format('hold %s records in all (%s invocations, %s log lines); at most %s per batch '
        || '(ingest_settings.max_records): split the batch', v_n_invocations + v_n_logs, v_n_invocations, v_n_logs,
        v_settings.max_records));
  end if;

  -- a retry of a batch already written: answered as a duplicate, nothing written again
  select * into v_seen from monitoring.ingest_batches as b where b.batch_id = v_batch_id;
  if found then
    return pg_catalog.jsonb_build_object('status', 200, 'batchId', v_batch_id, 'duplicate', true,
      'invocations', v_seen.invocations, 'logs', v_seen.logs, 'key', v_key);
  end if;

  -- The fast check: every record in one pass of plain expressions (a cast that fails lands in the
  -- handler). Only when it finds a bad record do the per-record validators run, to name the field.
  v_lo := p_now - v_settings.max_past;
  v_hi := p_now + v_settings.max_future;
  v_pattern := monitoring._ingest_time_pattern();
  begin
    select count(*) filter (where not coalesce(x.ok, false)) into v_bad_count
    from pg_catalog.jsonb_array_elements(v_invocations) as e (r)
    cross join lateral (select
      pg_catalog.jsonb_typeof(e.r) = 'object'
      and (e.r - array['function', 'status', 'durationMs', 'time', 'requestId', 'region']) = '{}'::jsonb
      and pg_catalog.jsonb_typeof(e.r -> 'function') = 'string'
      and pg_catalog.char_length(e.r ->> 'function') between 1 and 200
      and pg_catalog.jsonb_typeof(e.r -> 'status') = 'number' and (e.r ->> 'status') ~ '^[1-5][0-9][0-9]$'
      and pg_catalog.jsonb_typeof(e.r -> 'durationMs') = 'number'
      and (e.r ->> 'durationMs')::numeric between 0 and 86400000
      and pg_catalog.jsonb_typeof(e.r -> 'time') = 'string' and (e.r ->> 'time') ~ v_pattern
      and (e.r ->> 'time')::timestamptz between v_lo and v_hi
      and coalesce(pg_catalog.jsonb_typeof(e.r -> 'requestId'), 'null') in ('string', 'null')
      and coalesce(pg_catalog.char_length(e.r ->> 'requestId'), 0) <= 200
      and coalesce(pg_catalog.jsonb_typeof(e.r -> 'region'), 'null') in ('string', 'null')
      and coalesce(pg_catalog.char_length(e.r ->> 'region'), 0) <= 50 as ok
    ) as x;
    if v_bad_count = 0 then
      select count(*) filter (where not coalesce(x.ok, false)) into v_bad_count
      from pg_catalog.jsonb_array_elements(v_logs) as e (r)
      cross join lateral (select
        pg_catalog.jsonb_typeof(e.r) = 'object'
        and pg_catalog.jsonb_typeof(e.r -> 'timestamp') = 'string' and (e.r ->> 'timestamp') ~ v_pattern
        and (e.r ->> 'timestamp')::timestamptz between v_lo and v_hi
        and pg_catalog.jsonb_typeof(e.r -> 'level') = 'string'
        and pg_catalog.upper(e.r ->> 'level') in ('ERROR', 'WARN', 'INFO', 'DEBUG')
        and pg_catalog.jsonb_typeof(e.r -> 'service') = 'string'
        and pg_catalog.char_length(e.r ->> 'service') between 1 and 100
        and pg_catalog.jsonb_typeof(e.r -> 'action') = 'string'
        and pg_catalog.char_length(e.r ->> 'action') between 1 and 200
        and coalesce(pg_catalog.jsonb_typeof(e.r -> 'status'), 'null') in ('string', 'null')
        and coalesce(pg_catalog.char_length(e.r ->> 'status'), 0) <= 100
        and coalesce(pg_catalog.jsonb_typeof(e.r -> 'duration'), 'null') in ('number', 'null')
        and coalesce((e.r ->> 'duration')::numeric, 0) between 0 and 86400000
        and coalesce(pg_catalog.jsonb_typeof(e.r -> 'orderId'), 'null') in ('string', 'number', 'null')
        and coalesce(pg_catalog.char_length(e.r ->> 'orderId'), 0) <= 200
        and coalesce(pg_catalog.jsonb_typeof(e.r -> 'phone'), 'null') in ('string', 'number', 'null')
        and coalesce(pg_catalog.char_length(e.r ->> 'phone'), 0) <= 50
        and coalesce(pg_catalog.jsonb_typeof(e.r -> 'message'), 'null') in ('string', 'null')
        and coalesce(pg_catalog.char_length(e.r ->> 'message'), 0) <= 4000 as ok
      ) as x;
    end if;
    if v_bad_count = 0 then
      -- free fields: all of the batch's in one join (a subquery per line costs 10 times more)
      select count(*) filter (where not f.ok) + count(distinct f.i) filter (where f.n > 20) into v_bad_count
      from (
        select
          e.i,
          pg_catalog.count(*) over (partition by e.i) as n,
          kv.key ~ '^[A-Za-z_][A-Za-z0-9_.-]*$' and pg_catalog.char_length(kv.key) <= 64
          and pg_catalog.jsonb_typeof(kv.value) not in ('object', 'array')
          and (pg_catalog.jsonb_typeof(kv.value) <> 'string' or pg_catalog.char_length(kv.value #>> '{}') <= 1000) as ok
        from pg_catalog.jsonb_array_elements(v_logs) with ordinality as e (r, i)
        cross join lateral pg_catalog.jsonb_each(e.r - v_known) as kv
      ) as f;
    end if;
  exception when others then
    v_bad_count := -1;
  end;

  if v_bad_count <> 0 then
    select e.i, x.problem into v_bad
    from pg_catalog.jsonb_array_elements(v_invocations) with ordinality as e (r, i)
    cross join lateral (select monitoring._ingest_invocation_error(e.r, p_now, v_settings) as problem) as x
    where x.problem is not null
    order by e.i limit 1;
    if found then
      return monitoring._ingest_refusal(400, format('invocations[%s]%s', v_bad.i - 1, v_bad.problem[1]), v_bad.problem[2]);
    end if;
    select e.i, x.problem into v_bad
    from pg_catalog.jsonb_array_elements(v_logs) with ordinality as e (r, i)
    cross join lateral (select monitoring._ingest_log_error(e.r, p_now, v_settings) as problem) as x
    where x.problem is not null
    order by e.i limit 1;
    if found then
      return monitoring._ingest_refusal(400, format('logs[%s]%s', v_bad.i - 1, v_bad.problem[1]), v_bad.problem[2]);
    end if;
    -- the fast check and the validators disagree: a bug, never a silent write
    raise exception using
      errcode = 'internal_error',
      message = 'ingest: the fast check refused the batch but no validator names a field',
      hint = 'report this with the batch; monitoring._ingest_invocation_error and _ingest_log_error state the rules';
  end if;

  insert into monitoring.ingest_batches (batch_id, received_at, invocations, logs)
  values (v_batch_id, p_now, v_n_invocations, v_n_logs)
  on conflict (batch_id) do nothing;
  if not found then
    -- the same batch written concurrently by another call, which committed first
    return pg_catalog.jsonb_build_object('status', 200, 'batchId', v_batch_id, 'duplicate', true,
      'invocations', v_n_invocations, 'logs', v_n_logs, 'key', v_key);
  end if;

  insert into monitoring.function_invocations (function_name, status_code, duration_ms, created_at, request_id, region)
  select
    r ->> 'function',
    (r ->> 'status')::integer,
    round((r ->> 'durationMs')::numeric, 1),
    (r ->> 'time')::timestamptz,
    nullif(r ->> 'requestId', ''),
    nullif(r ->> 'region', '')
  from pg_catalog.jsonb_array_elements(v_invocations) as e (r);

  if v_n_logs > 0 then
    insert into monitoring.app_logs (
      logged_at, level, service, action, status, duration_ms, order_id, phone, message, fields, batch_id, received_at
    )
    select
      (r ->> 'timestamp')::timestamptz,
      pg_catalog.upper(r ->> 'level'),
      r ->> 'service',
      r ->> 'action',
      r ->> 'status',
      round((r ->> 'duration')::numeric, 1),
      r ->> 'orderId',
      case when r ? 'phone' then monitoring.mask_phone(r ->> 'phone') end,
      case when r ? 'message' then monitoring._mask_phones(r ->> 'message') end,
      coalesce(m.fields, '{}'::jsonb),
      v_batch_id,
      p_now
    from pg_catalog.jsonb_array_elements(v_logs) as e (r)
    -- free fields, phone numbers masked: a field named like phone (or msisdn) whole, numbers inside
    -- other strings as monitoring._mask_phones finds them (inline: a function call per line costs
    -- more than the rest of the insert)
    left join lateral (
      select pg_catalog.jsonb_object_agg(
        f.key,
        case
          when f.value = 'null'::jsonb then f.value
          when f.key ~* 'phone|msisdn|whatsapp_?(number|to|from)' then pg_catalog.to_jsonb(monitoring.mask_phone(f.value #>> '{}'))
          when pg_catalog.jsonb_typeof(f.value) = 'string' then pg_catalog.to_jsonb(monitoring._mask_phones(f.value #>> '{}'))
          else f.value
        end
      ) as fields
      from pg_catalog.jsonb_each(e.r - v_known) as f
    ) as m on true;

    if v_settings.error_lines_to_error_logs then
      insert into public.whatsapp_error_logs (error_type, error_message, error_code, context, created_at)
      select
        pg_catalog.left(r ->> 'action', 200),
        monitoring._mask_phones(coalesce(r ->> 'message', r ->> 'status')),
        r ->> 'status',
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
          'source', 'ingest',
          'service', r ->> 'service',
          'orderId', r ->> 'orderId',
          'phone', monitoring.mask_phone(r ->> 'phone'),
          'batchId', v_batch_id
        )),
        (r ->> 'timestamp')::timestamptz
      from pg_catalog.jsonb_array_elements(v_logs) as e (r)
      where pg_catalog.upper(r ->> 'level') = 'ERROR';
      get diagnostics v_errors = row_count;
    end if;
  end if;

  return pg_catalog.jsonb_build_object('status', 200, 'batchId', v_batch_id, 'duplicate', false,
    'invocations', v_n_invocations, 'logs', v_n_logs, 'errorLogs', v_errors, 'key', v_key);
end
$$;

comment on function monitoring.ingest(text, jsonb, timestamptz) is
'Write one batch of the app''s invocation records and log lines in one call (the ingest Edge Function''s only '
'statement). Checks the key hash (current or previous ingest key), the batch (batchId, at most '
'ingest_settings.max_records records, every field) and answers a document: status 200 with counts (duplicate true '
'for a batch id already written: nothing is written twice), or status 400/401/413/503 with the field at fault and '
'an error saying how to fix it (nothing written).';

create or replace function monitoring.rotate_ingest_key(
  -- the new key (pydeploy ingest-key rotate generates one): 32-200 letters, digits, _ or -
  p_new_key text,
  -- how long the key it replaces stays valid (0: refused at once)
  p_grace interval default interval '1 hour'
)
returns jsonb
language plpgsql
volatile
security definer -- writes Vault or the owner-only fallback table
set search_path = ''
as $$
declare
  v_old text := monitoring._get_secret('monitoring_ingest_key');
  v_store text;
  v_expires timestamptz;
begin
  if p_new_key is null or p_new_key !~ '^[A-Za-z0-9_-]{32,200}$' then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'rotate_ingest_key: p_new_key must be 32-200 letters, digits, _ or -',
      hint = 'let pydeploy generate it: pydeploy ingest-key rotate';
  end if;
  if p_grace is null or p_grace < interval '0' or p_grace > interval '7 days' then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('rotate_ingest_key: p_grace must be from 0 to 7 days (got %s)', coalesce(p_grace::text, 'null')),
      hint = 'use ''1 hour'': long enough to give every sender the new key';
  end if;
  if v_old = p_new_key then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = 'rotate_ingest_key: p_new_key is the current key',
      hint = 'pass a new key';
  end if;
  -- one rotation at a time: two concurrent ones would both move the same old key
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('monitoring.rotate_ingest_key'));
  if v_old is not null and p_grace > interval '0' then
    perform monitoring.set_secret('monitoring_ingest_key_previous', v_old, 'Previous ingest key (grace period)');
    v_expires := pg_catalog.now() + p_grace;
  end if;
  update monitoring.ingest_settings as s set previous_key_expires_at = v_expires, updated_at = pg_catalog.now()
  where s.id;
  v_store := monitoring.set_secret('monitoring_ingest_key', p_new_key, 'Key the ingest Edge Function accepts');
  return pg_catalog.jsonb_build_object('store', v_store, 'previousValidUntil', v_expires, 'hadKey', v_old is not null);
end
$$;

comment on function monitoring.rotate_ingest_key(text, interval) is
'Make p_new_key the ingest key (Vault secret monitoring_ingest_key, or the fallback); the key it replaces stays '
'valid for p_grace (default 1 hour) so senders switch without a refused batch. Returns the store and until when '
'the previous key is accepted.';

create or replace function monitoring.retire_previous_ingest_key()
returns jsonb
language sql
volatile
set search_path = ''
as $$
  update monitoring.ingest_settings as s set previous_key_expires_at = null, updated_at = pg_catalog.now()
  where s.id
  returning pg_catalog.jsonb_build_object('previousValidUntil', null)
$$;

comment on function monitoring.retire_previous_ingest_key() is
'End the previous ingest key''s grace now (every sender has the new key).';

create or replace function monitoring.ingest_key_status(
  -- now
  p_now timestamptz default now()
)
returns jsonb
language sql
stable
security definer -- tells whether the secrets resolve without showing them
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'keySet', monitoring._get_secret('monitoring_ingest_key') is not null,
    'store', case when pg_catalog.to_regclass('vault.decrypted_secrets') is null then 'monitoring._secrets' else 'vault' end,
    'previousValidUntil', case when s.previous_key_expires_at > p_now then s.previous_key_expires_at end
  )
  from monitoring.ingest_settings as s
  where s.id
$$;

comment on function monitoring.ingest_key_status(timestamptz) is
'Whether an ingest key is set, where it is stored and until when the previous one is accepted (never a key).';

-- =============================================================================================
-- Views
-- =============================================================================================
create or replace function monitoring.get_recent_app_errors(
  -- now
  p_now timestamptz default now()
)
returns table (
  service text,
  action text,
  level text,
  lines_1h bigint,
  lines_24h bigint,
  first_seen timestamptz,
  last_seen timestamptz,
  last_status text,
  last_message text
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    l.service,
    l.action,
    l.level,
    count(*) filter (where l.logged_at > p_now - interval '1 hour'),
    count(*),
    min(l.logged_at),
    max(l.logged_at),
    (pg_catalog.array_agg(l.status order by l.logged_at desc, l.id desc))[1],
    (pg_catalog.array_agg(l.message order by l.logged_at desc, l.id desc))[1]
  from monitoring.app_logs as l
  where l.level in ('ERROR', 'WARN') and l.logged_at > p_now - interval '24 hours' and l.logged_at <= p_now
  group by l.service, l.action, l.level
  order by l.level, count(*) desc, l.service, l.action
$$;

comment on function monitoring.get_recent_app_errors(timestamptz) is
'monitoring.recent_app_errors as of p_now.';

create or replace view monitoring.recent_app_errors as
select * from monitoring.get_recent_app_errors();

comment on view monitoring.recent_app_errors is
'The app''s ERROR and WARN log lines of the last 24 hours by service and action (ERROR first, most frequent first): '
'lines in the last hour and day, first and last seen, the latest status and message (phones masked).';

create or replace function monitoring.get_log_volume(
  -- now
  p_now timestamptz default now()
)
returns table (
  level text,
  lines_1h bigint,
  lines_24h bigint,
  lines_7d bigint,
  lines_kept bigint,
  oldest timestamptz,
  keep_for interval
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    r.level,
    count(l.id) filter (where l.logged_at > p_now - interval '1 hour'),
    count(l.id) filter (where l.logged_at > p_now - interval '24 hours'),
    count(l.id) filter (where l.logged_at > p_now - interval '7 days'),
    count(l.id),
    min(l.logged_at),
    r.keep_for
  from monitoring.log_retention as r
  left join monitoring.app_logs as l on r.level = l.level
  group by r.level, r.keep_for
  order by pg_catalog.array_position(array['ERROR', 'WARN', 'INFO', 'DEBUG'], r.level)
$$;

comment on function monitoring.get_log_volume(timestamptz) is
'monitoring.log_volume as of p_now.';

create or replace view monitoring.log_volume as
select * from monitoring.get_log_volume();

comment on view monitoring.log_volume is
'The app''s log lines per level: in the last hour, day and 7 days, all kept, the oldest kept, and how long the level '
'is kept (monitoring.log_retention).';

-- =============================================================================================
-- Retention (called by monitoring._retention_batch, targets app_logs and ingest_batches)
-- =============================================================================================
create or replace function monitoring._app_logs_retention_batch(
  -- the app_logs policy's cutoff (now - its keep_for, the longest any line is kept)
  p_cutoff timestamptz,
  -- at most this many rows
  p_limit integer
)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_cap interval;
  v_rows integer;
begin
  select p.keep_for into v_cap from monitoring.retention_policies as p where p.target = 'app_logs';
  v_cap := coalesce(v_cap, interval '0');
  -- each level's cutoff is now - least(its keep_for, the policy's): now is p_cutoff + the policy's
  delete from monitoring.app_logs as a
  where a.id = any(array(
    select l.id
    from monitoring.log_retention as r
    cross join lateral (
      select x.id from monitoring.app_logs as x
      where x.level = r.level and x.logged_at < p_cutoff + v_cap - least(r.keep_for, v_cap)
      limit p_limit
    ) as l
    limit p_limit
  ));
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

comment on function monitoring._app_logs_retention_batch(timestamptz, integer) is
'Internal: delete at most p_limit app_logs lines older than their level''s keep_for (monitoring.log_retention, capped '
'by the app_logs retention policy); returns the rows deleted.';

create or replace function monitoring._ingest_batches_retention_batch(
  -- delete batch ids received before this
  p_cutoff timestamptz,
  -- at most this many rows
  p_limit integer
)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_rows integer;
begin
  delete from monitoring.ingest_batches as b
  where b.batch_id = any(array(
    select x.batch_id from monitoring.ingest_batches as x where x.received_at < p_cutoff limit p_limit
  ));
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

comment on function monitoring._ingest_batches_retention_batch(timestamptz, integer) is
'Internal: forget at most p_limit batch ids received before p_cutoff; returns the rows deleted.';
