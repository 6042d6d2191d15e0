-- The notification system's own tables: what the WhatsApp sender writes and the monitoring reads.
--
-- Safe on a project that already has these tables with fewer columns: tables are created only
-- when missing, every column is added with `add column if not exists`, constraints and indexes
-- are added only when the table has nothing equivalent, and nothing is dropped or rewritten.
-- Check constraints are added `not valid` and then validated; when old rows break a rule the
-- constraint stays `not valid` (it still guards every new or updated row) and a notice says so.
--
-- The monitoring adds only guarded triggers (10_rollups.sql): their WHEN clause is false for rows
-- younger than 5 minutes, so the app's usual inserts and status updates never run them; only late
-- changes (old rows updated, backfilled or deleted) are logged for the rollups.
-- The sender itself keeps `updated_at`, `state_changed_at` and the per-status timestamps current.


-- ---------------------------------------------------------------------------------------------
-- whatsapp_notifications: one row per message the sender must deliver
-- ---------------------------------------------------------------------------------------------
create table if not exists public.whatsapp_notifications (
  id uuid primary key default gen_random_uuid(),
  order_id text,
  phone_number text not null,
  template_name text,
  message text,
  status text not null default 'pending',
  attempts integer not null default 0,
  error_code text,
  error_message text,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  processing_started_at timestamptz,
  sent_at timestamptz,
  delivered_at timestamptz,
  read_at timestamptz,
  failed_at timestamptz,
  updated_at timestamptz not null default now()
);

alter table public.whatsapp_notifications
add column if not exists id uuid default gen_random_uuid(),
add column if not exists order_id text,
add column if not exists phone_number text,
add column if not exists template_name text,
add column if not exists message text,
add column if not exists status text not null default 'pending',
add column if not exists attempts integer not null default 0,
add column if not exists error_code text,
add column if not exists error_message text,
add column if not exists metadata jsonb not null default '{}'::jsonb,
add column if not exists created_at timestamptz not null default now(),
add column if not exists processing_started_at timestamptz,
add column if not exists sent_at timestamptz,
add column if not exists delivered_at timestamptz,
add column if not exists read_at timestamptz,
add column if not exists failed_at timestamptz,
add column if not exists updated_at timestamptz not null default now();

comment on table public.whatsapp_notifications is
'WhatsApp messages to send, one row each. Lifecycle: pending -> processing -> sent | failed '
'(delivered and read follow sent when the provider reports them). Written by the sender; '
'read by the views in schema monitoring.';

comment on column public.whatsapp_notifications.status is
'pending (queued), processing (picked by a sender), sent (accepted by WhatsApp), delivered, read, '
'failed (gave up). The monitoring counts sent, delivered and read as accepted (delivered successfully); the spec''s '
'own query counts only status = ''sent''.';

comment on column public.whatsapp_notifications.attempts is 'Send attempts so far (0 while queued).';

comment on column public.whatsapp_notifications.processing_started_at is
'When a sender picked the row up; queue time = processing_started_at - created_at.';

comment on column public.whatsapp_notifications.sent_at is
'When WhatsApp accepted the message; delivery time = sent_at - created_at.';

comment on column public.whatsapp_notifications.error_code is 'Last error code from the provider, if any.';

comment on column public.whatsapp_notifications.error_message is 'Last error text, if any.';

comment on column public.whatsapp_notifications.updated_at is 'Set by the sender on every change (no trigger).';

-- ---------------------------------------------------------------------------------------------
-- whatsapp_error_logs: one row per error the sender hit
-- ---------------------------------------------------------------------------------------------
create table if not exists public.whatsapp_error_logs (
  id uuid primary key default gen_random_uuid(),
  error_type text not null,
  error_message text,
  error_code text,
  notification_id uuid,
  context jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);

alter table public.whatsapp_error_logs
add column if not exists id uuid default gen_random_uuid(),
add column if not exists error_type text,
add column if not exists error_message text,
add column if not exists error_code text,
add column if not exists notification_id uuid,
add column if not exists context jsonb not null default '{}'::jsonb,
add column if not exists created_at timestamptz not null default now();

comment on table public.whatsapp_error_logs is
'Errors raised while sending (connection loss, invalid numbers, rate limits...). Kept 30 days '
'(the spec''s log retention); read by monitoring.top_errors_24h, error_trends and hourly_stats.';

comment on column public.whatsapp_error_logs.error_type is
'Short machine-readable class of the error (e.g. connection_lost, invalid_number, rate_limited).';

comment on column public.whatsapp_error_logs.notification_id is
'The notification being sent when the error happened, if any (no foreign key: logs outlive rows).';

comment on column public.whatsapp_error_logs.context is 'Free-form details (order id, attempt, provider reply).';

-- ---------------------------------------------------------------------------------------------
-- whatsapp_sessions: the WhatsApp connections the sender holds
-- ---------------------------------------------------------------------------------------------
create table if not exists public.whatsapp_sessions (
  session_id text primary key,
  phone_number text,
  is_active boolean not null default true,
  connection_state text not null default 'disconnected',
  state_changed_at timestamptz,
  last_connected_at timestamptz,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

alter table public.whatsapp_sessions
add column if not exists session_id text,
add column if not exists phone_number text,
add column if not exists is_active boolean not null default true,
add column if not exists connection_state text not null default 'disconnected',
add column if not exists state_changed_at timestamptz,
add column if not exists last_connected_at timestamptz,
add column if not exists metadata jsonb not null default '{}'::jsonb,
add column if not exists created_at timestamptz not null default now(),
add column if not exists updated_at timestamptz not null default now();

comment on table public.whatsapp_sessions is
'WhatsApp sessions (linked phones). The sender updates connection_state and last_connected_at; '
'monitoring.active_sessions, connection_status and health() read them.';

comment on column public.whatsapp_sessions.connection_state is
'connected, connecting, disconnected, qr_required (needs a new QR scan) or logged_out.';

comment on column public.whatsapp_sessions.state_changed_at is
'When connection_state last changed (set by the sender; monitoring falls back to updated_at).';

comment on column public.whatsapp_sessions.last_connected_at is
'Last moment the session was known connected: set on connect and on each heartbeat while connected. '
'A session that is not connected counts as down since this moment.';

comment on column public.whatsapp_sessions.is_active is 'false for retired sessions; only active ones are monitored.';

-- ---------------------------------------------------------------------------------------------
-- Keys and check constraints, added only when missing
-- ---------------------------------------------------------------------------------------------
do $$
declare
  v_check record;
begin
  -- A primary key only where the table has none (an existing one is left alone).
  if not exists (
    select 1 from pg_catalog.pg_constraint
    where conrelid = 'public.whatsapp_notifications'::regclass and contype = 'p'
  ) then
    begin
      update public.whatsapp_notifications set id = gen_random_uuid() where id is null;
      alter table public.whatsapp_notifications add primary key (id);
    exception when others then
      raise notice 'whatsapp_notifications has no usable id for a primary key (%); none added', sqlerrm;
    end;
  end if;
  if not exists (
    select 1 from pg_catalog.pg_constraint
    where conrelid = 'public.whatsapp_error_logs'::regclass and contype = 'p'
  ) then
    begin
      update public.whatsapp_error_logs set id = gen_random_uuid() where id is null;
      alter table public.whatsapp_error_logs add primary key (id);
    exception when others then
      raise notice 'whatsapp_error_logs has no usable id for a primary key (%); none added', sqlerrm;
    end;
  end if;
  -- session_id identifies a session: unique when the table has another key or none.
  if not exists (
    select 1
    from pg_catalog.pg_index as i
    where
      i.indrelid = 'public.whatsapp_sessions'::regclass
      and i.indisunique
      and i.indkey::text = (
        select a.attnum::text from pg_catalog.pg_attribute as a
        where a.attrelid = 'public.whatsapp_sessions'::regclass and a.attname = 'session_id'
      )
  ) then
    begin
      create unique index whatsapp_sessions_session_id_key on public.whatsapp_sessions (session_id);
    exception when unique_violation then
      raise notice 'whatsapp_sessions.session_id has duplicates; unique index not created';
    end;
  end if;

  for v_check in
    select * from (values
      ('public.whatsapp_notifications', 'whatsapp_notifications_status_check',
       'check (status::text in (''pending'', ''processing'', ''sent'', ''delivered'', ''read'', ''failed''))'),
      ('public.whatsapp_notifications', 'whatsapp_notifications_attempts_check', 'check (attempts >= 0)'),
      ('public.whatsapp_error_logs', 'whatsapp_error_logs_error_type_check',
       'check (char_length(error_type) between 1 and 200)'),
      ('public.whatsapp_sessions', 'whatsapp_sessions_connection_state_check',
       'check (connection_state::text in '
       '(''connected'', ''connecting'', ''disconnected'', ''qr_required'', ''logged_out''))')
    ) as c (tbl, conname, def)
  loop
    if not exists (
      select 1 from pg_catalog.pg_constraint
      where conrelid = v_check.tbl::regclass and conname = v_check.conname
    ) then
      execute format('alter table %s add constraint %I %s not valid', v_check.tbl, v_check.conname, v_check.def);
      begin
        execute format('alter table %s validate constraint %I', v_check.tbl, v_check.conname);
      exception when check_violation then
        raise notice '% has rows that break %; constraint left not valid (new rows are checked)',
          v_check.tbl, v_check.conname;
      end;
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Indexes for every query the monitoring runs (plain create index: see the file header)
-- ---------------------------------------------------------------------------------------------
do $$
declare
  v_ix record;
begin
  for v_ix in
    select * from (values
      -- window heads and live tails of every view, the spec's 24-hour queries, rollup refresh;
      -- nothing indexes status, so the sender's status updates stay HOT (no index writes)
      ('public.whatsapp_notifications', 'created_at', null,
       'whatsapp_notifications_created_at_idx', '(created_at)'),
      ('public.whatsapp_error_logs', 'created_at', null,
       'whatsapp_error_logs_created_at_idx', '(created_at) include (error_type)'),
      ('public.whatsapp_error_logs', 'notification_id', null,
       'whatsapp_error_logs_notification_id_idx', '(notification_id) where notification_id is not null')
    ) as i (tbl, lead_column, predicate_hint, ixname, def)
  loop
    -- Skip when an index of ours exists, or any index leads with the same column (and, for the
    -- partial backlog index, has a predicate mentioning the same status).
    if not exists (
      select 1
      from pg_catalog.pg_index as x
      inner join pg_catalog.pg_class as c on x.indexrelid = c.oid
      inner join pg_catalog.pg_attribute as a on x.indrelid = a.attrelid and a.attnum = x.indkey[0]
      where
        x.indrelid = v_ix.tbl::regclass
        and (
          c.relname = v_ix.ixname
          or (
            a.attname = v_ix.lead_column
            and case
              when v_ix.predicate_hint is null then x.indpred is null
              else coalesce(pg_catalog.pg_get_expr(x.indpred, x.indrelid), '') like '%' || v_ix.predicate_hint || '%'
            end
          )
        )
    ) then
      execute format('create index if not exists %I on %s %s', v_ix.ixname, v_ix.tbl, v_ix.def);
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Row level security: on, with no policy for anon or authenticated (they see nothing).
-- service_role bypasses RLS; the monitoring functions run as service_role or postgres.
-- ---------------------------------------------------------------------------------------------
alter table public.whatsapp_notifications enable row level security;

alter table public.whatsapp_error_logs enable row level security;

alter table public.whatsapp_sessions enable row level security;
