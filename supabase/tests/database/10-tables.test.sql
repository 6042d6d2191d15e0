-- Test: the three app tables: columns the spec and the sender need, check constraints on the
-- enumerations, defaults, indexes for the monitoring's scans, and RLS hiding rows from the API roles.
begin;
set local client_min_messages = warning;
create extension if not exists pgtap with schema extensions;
set local search_path = extensions, public;
select plan(36);

select has_column('public', 'whatsapp_notifications', c, 'notifications.' || c)
from unnest(array[
  'id', 'order_id', 'phone_number', 'status', 'attempts', 'error_code', 'error_message', 'created_at',
  'processing_started_at', 'sent_at', 'updated_at'
]) as c;
select has_column('public', 'whatsapp_error_logs', c, 'error_logs.' || c)
from unnest(array['error_type', 'error_message', 'notification_id', 'context', 'created_at']) as c;
select has_column('public', 'whatsapp_sessions', c, 'sessions.' || c)
from
  unnest(array['session_id', 'phone_number', 'is_active', 'connection_state', 'last_connected_at', 'updated_at']) as c;

select col_default_is('public', 'whatsapp_notifications', 'status', 'pending'::text, 'new notifications are pending');

select throws_ok(
  $$insert into public.whatsapp_notifications (phone_number, status) values ('+5511999999999', 'queued')$$,
  '23514', null, 'status outside the lifecycle is rejected'
);
select lives_ok(
  $$insert into public.whatsapp_notifications (phone_number, status)
    select '+5511999999999', s from unnest(array['pending', 'processing', 'sent', 'delivered', 'read', 'failed']) as s$$,
  'every lifecycle status is accepted'
);
select throws_ok(
  $$insert into public.whatsapp_notifications (phone_number, attempts) values ('+5511999999999', -1)$$,
  '23514', null, 'negative attempts are rejected'
);
select throws_ok(
  $$insert into public.whatsapp_sessions (session_id, connection_state) values ('t-bad', 'online')$$,
  '23514', null, 'unknown connection_state is rejected'
);
select throws_ok(
  $$insert into public.whatsapp_error_logs (error_type) values ('')$$,
  '23514', null, 'blank error_type is rejected'
);

select has_index('public', 'whatsapp_notifications', 'whatsapp_notifications_created_at_idx', 'created_at index');
select is(
  (
    select count(*)::integer from pg_index as i
    inner join pg_attribute as a on i.indrelid = a.attrelid and a.attnum = any(i.indkey)
    where i.indrelid = 'public.whatsapp_notifications'::regclass and a.attname = 'status'
  ),
  0,
  'no index on whatsapp_notifications.status: the sender''s status updates stay HOT'
);
select has_index('public', 'whatsapp_error_logs', 'whatsapp_error_logs_created_at_idx', 'error created_at index');

-- the only triggers on the app tables are the rollups' change capture, each guarded by a WHEN
-- clause (rows younger than the change lag skip it: the app's usual writes never run it)
select set_eq(
  $$select tgrelid::regclass::text, tgname, tgqual is not null from pg_trigger
    where tgrelid in (
      'public.whatsapp_notifications'::regclass, 'public.whatsapp_error_logs'::regclass,
      'public.whatsapp_sessions'::regclass
    ) and not tgisinternal$$,
  $$values ('whatsapp_notifications', 'monitoring_rollups_insert', true),
           ('whatsapp_notifications', 'monitoring_rollups_update', true),
           ('whatsapp_notifications', 'monitoring_rollups_delete', true),
           ('whatsapp_error_logs', 'monitoring_rollups_insert', true),
           ('whatsapp_error_logs', 'monitoring_rollups_update', true),
           ('whatsapp_error_logs', 'monitoring_rollups_delete', true)$$,
  'the app tables carry only the guarded change-capture triggers'
);

-- RLS: anon and authenticated see nothing, service_role sees everything
insert into public.whatsapp_sessions (session_id, phone_number, connection_state) values (
  't-rls', '+5511988887777', 'connected'
);
set local role anon;
select is((select count(*)::integer from public.whatsapp_notifications), 0, 'anon sees no notifications');
select is((select count(*)::integer from public.whatsapp_sessions), 0, 'anon sees no sessions');
reset role;
set local role authenticated;
select is((select count(*)::integer from public.whatsapp_error_logs), 0, 'authenticated sees no error logs');
reset role;
set local role service_role;
select
  cmp_ok((
    select count(*)::integer from public.whatsapp_sessions
    where session_id = 't-rls'
  ), '=', 1, 'service_role sees sessions');
reset role;

select * from finish();
rollback;
