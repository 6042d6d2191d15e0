-- Demo data: a realistic recent week of WhatsApp notification traffic, relative to now().
--
-- The last 24 hours hold 6,000 notifications (the 6 days before, 1,500 a day) and tell a story
-- every view shows:
--   * now - 6 h .. now - 5 h:       a delivery-rate dip (25 % failed, rate_limited errors);
--   * now - 3 h .. now - 2 h 40 m:  a queue spike (queue time 1-4 min);
--   * now - 15 m .. now - 5 m:      the primary session disconnects for 10 minutes: most sends
--                                   fail (connection_lost), the rest wait and go out on reconnect,
--                                   health 503s, so the 1-hour alerts fire now and resolve within
--                                   the hour;
--   * the last 90 s:                a small backlog still pending or processing;
--   * Edge Function invocations:    health every minute, send-whatsapp per message, a few 5xx.
-- Set-based (generate_series), loads in well under a second. Deterministic through setseed.

select setseed(0.42);


-- ---------------------------------------------------------------------------------------------
-- Sessions: the primary reconnected 5 minutes ago after a 10-minute outage; a retired backup
-- ---------------------------------------------------------------------------------------------

insert into public.whatsapp_sessions (
  session_id, phone_number, is_active, connection_state, state_changed_at, last_connected_at,
  created_at, updated_at
)
values
(
  'primary', '+5511999999999', true, 'connected', now() - interval '5 minutes', now() - interval '20 seconds',
  now() - interval '90 days', now() - interval '20 seconds'
),
(
  'backup', '+5521988887777', false, 'logged_out', now() - interval '3 days', now() - interval '3 days 1 minute',
  now() - interval '120 days', now() - interval '3 days'
)
on conflict (session_id) do update set
  phone_number = excluded.phone_number,
  is_active = excluded.is_active,
  connection_state = excluded.connection_state,
  state_changed_at = excluded.state_changed_at,
  last_connected_at = excluded.last_connected_at,
  updated_at = excluded.updated_at;


-- ---------------------------------------------------------------------------------------------
-- Notifications
-- ---------------------------------------------------------------------------------------------

insert into public.whatsapp_notifications (
  order_id, phone_number, template_name, message, status, attempts, error_code, error_message,
  created_at, processing_started_at, sent_at, delivered_at, read_at, failed_at, updated_at
)
with
drawn as (
  select
    g.g,
    case
      when g.g <= 6000 then now() - random() * interval '24 hours'
      else now() - interval '24 hours' - random() * interval '6 days'
    end as created_at,
    random() as r1,
    random() as r2,
    random() as r3,
    random() as r4
  from generate_series(1, 15000) as g (g)
),

scenario as (
  select
    d.*,
    case
      when d.created_at > now() - interval '90 seconds' then 'queued'
      when d.created_at between now() - interval '15 minutes' and now() - interval '5 minutes' then 'outage'
      when d.created_at between now() - interval '3 hours' and now() - interval '2 hours 40 minutes' then 'spike'
      when d.created_at between now() - interval '6 hours' and now() - interval '5 hours' then 'dip'
      else 'normal'
    end as scenario
  from drawn as d
),

outcome as (
  select
    s.*,
    case
      when s.scenario = 'queued' then case when s.r1 < 0.7 then 'pending' else 'processing' end
      when s.scenario = 'outage' then case when s.r1 < 0.8 then 'failed' else 'sent' end
      when s.scenario = 'spike' then case when s.r1 < 0.97 then 'sent' else 'failed' end
      when s.scenario = 'dip' then case when s.r1 < 0.25 then 'failed' else 'sent' end
      when s.r1 < 0.02 then 'failed'
      when s.r1 < 0.025 then 'delivered'
      when s.r1 < 0.028 then 'read'
      else 'sent'
    end as status,
    case
      when s.scenario = 'outage' and s.r1 < 0.8 then 'connection_lost'
      when s.scenario = 'spike' and s.r1 >= 0.97 then 'timeout'
      when s.scenario = 'dip' and s.r1 < 0.25 then 'rate_limited'
      when s.scenario = 'normal' and s.r1 < 0.02 then 'invalid_number'
    end as error_code,
    case
      when s.scenario = 'queued' and s.r1 < 0.7 then null
      when s.scenario = 'queued' then s.created_at + s.r2 * (now() - s.created_at)
      when s.scenario = 'outage' and s.r1 < 0.8 then s.created_at + interval '1 second'
      -- queued during the outage, picked up on reconnect
      when s.scenario = 'outage' then now() - interval '5 minutes' + s.r2 * interval '60 seconds'
      when s.scenario = 'spike' then s.created_at + interval '60 seconds' + s.r2 * interval '180 seconds'
      else s.created_at + interval '200 milliseconds' + s.r2 * s.r2 * s.r2 * interval '3 seconds'
    end as started_at,
    case
      when s.r3 > 0.98 then interval '5 seconds' + s.r3 * interval '7 seconds'
      else interval '300 milliseconds' + s.r3 * interval '1400 milliseconds'
    end as send_time
  from scenario as s
),

timed as (
  select
    o.*,
    case when o.status in ('sent', 'delivered', 'read') then o.started_at + o.send_time end as sent_at
  from outcome as o
)

select
  'ORD-' || lpad(t.g::text, 6, '0') as order_id,
  '+55119' || lpad((floor(t.r4 * 99999999))::integer::text, 8, '0') as phone_number,
  case when t.r4 < 0.7 then 'order_status' else 'payment_reminder' end as template_name,
  'Your order ORD-' || lpad(t.g::text, 6, '0') || ' has an update' as message,
  t.status,
  case when t.status = 'pending' then 0 when t.status = 'failed' then 3 else 1 end as attempts,
  t.error_code,
  case t.error_code
    when 'connection_lost' then 'Connection closed while sending'
    when 'rate_limited' then 'Too many messages: rate limit reached'
    when 'invalid_number' then 'The number is not on WhatsApp'
    when 'timeout' then 'No answer from WhatsApp within 30 s'
  end as error_message,
  t.created_at,
  t.started_at as processing_started_at,
  t.sent_at,
  case when t.status in ('delivered', 'read') then t.sent_at + interval '3 seconds' end as delivered_at,
  case when t.status = 'read' then t.sent_at + interval '5 minutes' end as read_at,
  case
    when t.error_code = 'timeout' then t.started_at + interval '30 seconds'
    when t.status = 'failed' then t.started_at + interval '800 milliseconds'
  end as failed_at,
  coalesce(t.sent_at, t.started_at, t.created_at) as updated_at
from timed as t;


-- ---------------------------------------------------------------------------------------------
-- Error logs: one per failed notification, the session's own errors during the outage, and a
-- trickle of background errors over the week
-- ---------------------------------------------------------------------------------------------

insert into public.whatsapp_error_logs (error_type, error_message, error_code, notification_id, context, created_at)
select
  n.error_code as error_type,
  n.error_message,
  n.error_code,
  n.id as notification_id,
  jsonb_build_object('order_id', n.order_id, 'attempts', n.attempts) as context,
  n.failed_at as created_at
from public.whatsapp_notifications as n
where n.status = 'failed' and n.error_code is not null;

insert into public.whatsapp_error_logs (error_type, error_message, error_code, context, created_at)
select
  case when g.g % 6 = 0 then 'reconnect_failed' else 'connection_lost' end as error_type,
  case when g.g % 6 = 0 then 'Reconnect attempt failed' else 'WebSocket closed: stream errored' end as error_message,
  case when g.g % 6 = 0 then 'reconnect_failed' else 'connection_lost' end as error_code,
  jsonb_build_object('session_id', 'primary') as context,
  now() - interval '15 minutes' + g.g * interval '10 seconds' as created_at
from generate_series(1, 59) as g (g);

insert into public.whatsapp_error_logs (error_type, error_message, error_code, context, created_at)
select
  t.error_type,
  t.message as error_message,
  t.error_type as error_code,
  jsonb_build_object('source', 'background') as context,
  now() - random() * interval '7 days' as created_at
from (
  values
  ('timeout', 'No answer from WhatsApp within 30 s', 400),
  ('media_upload_failed', 'Media upload returned 413', 120),
  ('template_rejected', 'Template not approved for this number', 60)
) as t (error_type, message, how_many)
cross join lateral generate_series(1, t.how_many) as g (g);


-- ---------------------------------------------------------------------------------------------
-- Edge Function invocations: health every minute (503 during the outage), send-whatsapp per
-- message of the last day (5xx when the send failed on our side), check-error-rate hourly
-- ---------------------------------------------------------------------------------------------

insert into monitoring.function_invocations (function_name, status_code, duration_ms, created_at)
select
  'health' as function_name,
  case when g.g between 6 and 15 then 503 else 200 end as status_code,
  round((20 + random() * 60)::numeric, 1) as duration_ms,
  now() - g.g * interval '1 minute' as created_at
from generate_series(0, 1439) as g (g);

insert into monitoring.function_invocations (function_name, status_code, duration_ms, created_at)
select
  'send-whatsapp' as function_name,
  case
    when n.error_code = 'connection_lost' then 502
    when n.error_code = 'timeout' then 504
    when n.status = 'failed' then 422
    else 200
  end as status_code,
  round(
    (extract(epoch from coalesce(n.sent_at, n.failed_at) - n.processing_started_at) * 1000 + 40)::numeric, 1
  ) as duration_ms,
  n.processing_started_at as created_at
from public.whatsapp_notifications as n
where n.created_at > now() - interval '24 hours' and n.processing_started_at is not null;

insert into monitoring.function_invocations (function_name, status_code, duration_ms, created_at)
select
  'check-error-rate' as function_name,
  200 as status_code,
  round((35 + random() * 40)::numeric, 1) as duration_ms,
  date_trunc('hour', now()) - g.g * interval '1 hour' as created_at
from generate_series(0, 23) as g (g);


-- ---------------------------------------------------------------------------------------------
-- Roll up everything so the views read rollups from the start (pg_cron keeps them fresh)
-- ---------------------------------------------------------------------------------------------

select monitoring.refresh_rollups(p_full => true);
