-- Test: refresh_rollups(): the watermark, rollups equal to the raw tables, every later change (young
-- rows, rows days old, backfills, deletes) shown by the next regular refresh, the horizon, the
-- histogram bins, and the advisory lock.
begin;
set local client_min_messages = warning;
create extension if not exists pgtap with schema extensions;
set local search_path = extensions, public;
select plan(18);
delete from public.whatsapp_notifications;
delete from public.whatsapp_error_logs;
delete from monitoring._notification_changes;
delete from monitoring._error_changes;
delete from monitoring.notification_minutes;
delete from monitoring.notification_hours;
delete from monitoring.latency_minutes;
delete from monitoring.latency_hours;
delete from monitoring.error_minutes;
delete from monitoring.error_hours;
delete from monitoring.error_days;
update monitoring.rollup_state set watermark = '-infinity', changes_from = '-infinity', last_full_at = null;
-- the app-table triggers log changes by the wall clock, so the data is laid out around now
create temporary table t (p_now timestamptz) on commit drop;
insert into t values (date_bin('1 minute', now(), '2000-01-01 00:00:00+00') + interval '30 seconds');

-- 1 row every 7 minutes for 9 days, statuses cycling, latencies spread over the buckets
insert into public.whatsapp_notifications (phone_number, status, created_at, processing_started_at, sent_at)
select
  '+5511999999999' as phone_number,
  (array['sent', 'sent', 'sent', 'failed', 'pending', 'delivered'])[1 + g % 6] as status,
  p_now - g * interval '7 minutes' as created_at,
  p_now - g * interval '7 minutes' + (g % 40) * interval '1.5 seconds' as processing_started_at,
  case when g % 6 in (0, 1, 2, 5) then p_now - g * interval '7 minutes' + (g % 97) * interval '0.9 seconds' end
    as sent_at
from t, generate_series(1, 1850) as g;
insert into public.whatsapp_error_logs (error_type, created_at)
select
  (array['timeout', 'invalid_number', 'rate_limited'])[1 + g % 3] as error_type,
  p_now - g * interval '11 minutes' as created_at
from t, generate_series(1, 4000) as g;

create temporary view raw_minutes as
select
  date_bin('1 minute', n.created_at, '2000-01-01 00:00:00+00') as bucket,
  count(*)::integer as total,
  (count(*) filter (where n.status = 'sent'))::integer as sent,
  (count(*) filter (where n.status = 'failed'))::integer as failed,
  (count(*) filter (where n.status = 'pending'))::integer as pending,
  count(n.sent_at)::integer as latency_count,
  coalesce(sum(extract(epoch from n.sent_at - n.created_at) * 1000), 0) as latency_sum_ms
from public.whatsapp_notifications as n, t
where
  n.created_at >= date_bin('1 minute', t.p_now, '2000-01-01 00:00:00+00') - interval '8 days'
  and n.created_at < date_bin('1 minute', t.p_now, '2000-01-01 00:00:00+00')
group by 1;

select is(
  (monitoring.refresh_rollups((select p_now from t))) ->> 'full', 'true',
  'the first refresh is a full one (no watermark yet)'
);
select is(
  monitoring._watermark(), (select date_bin('1 minute', p_now, '2000-01-01 00:00:00+00') from t),
  'watermark = p_now truncated to the minute'
);
select set_eq(
  $$select bucket, total, sent, failed, pending, latency_count, latency_sum_ms
    from monitoring.notification_minutes where total > 0$$,
  'select * from raw_minutes',
  'notification_minutes equal the raw rows, minute by minute, inside the 8-day horizon'
);
select is(
  (
    select count(*)::integer from monitoring.notification_minutes as m, t
    where m.bucket < t.p_now - interval '8 days' - interval '1 minute'
  ),
  0,
  'nothing older than the horizon is kept'
);
select is(
  (
    select sum(n)::integer from monitoring.latency_minutes
    where kind = 'latency'
  ),
  (select sum(latency_count)::integer from monitoring.notification_minutes),
  'every delivery time falls in exactly one histogram bin'
);
select is(
  (
    select sum(n)::integer from monitoring.latency_minutes
    where kind = 'latency' and bin = 9
  ),
  (
    select count(*)::integer from raw_minutes as r
    cross join
      lateral (
        select count(*) as n from public.whatsapp_notifications as n
        where
          date_bin('1 minute', n.created_at, '2000-01-01 00:00:00+00') = r.bucket
          and n.sent_at - n.created_at >= interval '4 seconds' and n.sent_at - n.created_at < interval '5 seconds'
      ) as x
    where x.n > 0
  ),
  'bin 9 holds delivery times in [4 s, 5 s)'
);
select set_eq(
  'select bucket, error_type, error_count from monitoring.error_minutes',
  $$select date_bin('1 minute', e.created_at, '2000-01-01 00:00:00+00'), e.error_type, count(*)::integer
    from public.whatsapp_error_logs as e, t
    where e.created_at >= date_bin('1 minute', t.p_now, '2000-01-01 00:00:00+00') - interval '8 days'
      and e.created_at < date_bin('1 minute', t.p_now, '2000-01-01 00:00:00+00')
    group by 1, 2$$,
  'error_minutes equal the raw rows'
);
select set_eq(
  'select bucket, errors from monitoring.notification_minutes where errors > 0',
  'select bucket, sum(error_count)::integer from monitoring.error_minutes group by bucket',
  'notification_minutes.errors holds each minute''s error count (all types)'
);
select set_eq(
  'select day, error_type, error_count, last_at from monitoring.error_days',
  $$select (e.created_at at time zone 'UTC')::date, e.error_type, count(*)::integer, max(e.created_at)
    from public.whatsapp_error_logs as e, t
    where e.created_at >= ((t.p_now - interval '31 days') at time zone 'UTC')::date::timestamp at time zone 'UTC'
      and e.created_at < date_bin('1 minute', t.p_now, '2000-01-01 00:00:00+00')
    group by 1, 2$$,
  'error_days equal the raw rows for 31 days (older days from raw rows, recent from minutes)'
);

-- a status change to rows under an hour old shows after the next regular refresh
update public.whatsapp_notifications as n set status = 'failed'
from t
where n.status = 'sent' and n.created_at > t.p_now - interval '1 hour';
select is(
  (monitoring.refresh_rollups((select p_now from t) + interval '1 minute')) ->> 'full', 'false',
  'the next refresh is a regular one'
);
select set_eq(
  $$select m.bucket, m.total, m.sent, m.failed, m.pending, m.latency_count, m.latency_sum_ms
    from monitoring.notification_minutes as m, t where m.bucket >= t.p_now - interval '1 hour' and m.total > 0$$,
  'select r.* from raw_minutes as r, t where r.bucket >= t.p_now - interval ''1 hour''',
  'status changes of the last hour are in the rollups after one refresh'
);

-- a change 2 to 3 days back (a late send, a receipt) is logged and shown by the next regular refresh
update public.whatsapp_notifications as n set status = 'failed'
from t
where n.status = 'sent' and n.created_at between t.p_now - interval '3 days' and t.p_now - interval '2 days';
select is(
  (monitoring.refresh_rollups((select p_now from t) + interval '2 minutes')) ->> 'full', 'false', 'regular refresh'
);
select is(
  (
    select sum(m.failed) from monitoring.notification_minutes as m, t
    where m.bucket < date_bin('1 minute', t.p_now, '2000-01-01 00:00:00+00')
  ),
  (select sum(failed) from raw_minutes),
  'a status change 2 days back is in the rollups after a regular refresh'
);

-- a backfill of old rows and a delete of others, then a regular refresh
insert into public.whatsapp_notifications (phone_number, status, created_at, sent_at)
select
  '+5511999999999' as phone_number,
  'sent' as status,
  t.p_now - interval '5 days' + g * interval '1 second' as created_at,
  t.p_now - interval '5 days' + g * interval '1 second' + interval '3 seconds' as sent_at
from t, generate_series(1, 300) as g;
insert into public.whatsapp_error_logs (error_type, created_at)
select
  'backfilled' as error_type,
  t.p_now - interval '6 days' + g * interval '1 second' as created_at
from t, generate_series(1, 50) as g;
delete from public.whatsapp_notifications as n using t
where n.created_at < t.p_now - interval '7 days';
select ok(
  monitoring.refresh_rollups((select p_now from t) + interval '3 minutes') ->> 'full' = 'false',
  'regular refresh after a backfill and a delete'
);
select set_eq(
  $$select bucket, total, sent, failed, pending, latency_count, latency_sum_ms
    from monitoring.notification_minutes where total > 0$$,
  'select * from raw_minutes',
  'after a backfill and a delete the rollups equal the raw rows again'
);
select set_eq(
  'select day, error_type, error_count, last_at from monitoring.error_days where error_type = ''backfilled''',
  $$select (created_at at time zone 'UTC')::date, error_type, count(*)::integer, max(created_at)
    from public.whatsapp_error_logs where error_type = 'backfilled' group by 1, 2$$,
  'backfilled error logs are in error_days after a regular refresh'
);
select is(
  (select count(*)::integer from monitoring._notification_changes),
  0,
  'the refresh consumed the change log'
);

select ok(
  exists (
    select 1 from pg_locks
    where locktype = 'advisory' and pid = pg_backend_pid() and objid = hashtext('monitoring.refresh_rollups')::oid
  ),
  'refresh_rollups holds its advisory transaction lock until commit (refreshes never overlap)'
);

select * from finish();
rollback;
