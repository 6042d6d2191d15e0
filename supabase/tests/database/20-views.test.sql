-- Test: every view's columns and semantics on crafted data at a fixed p_now: window edges
-- (created_at > p_now - length, no upper bound, as the spec's queries), empty tables giving rate
-- 100, masked phone numbers, percentiles from the histogram, and the same answers before and
-- after the rollups are refreshed.
begin;
set local client_min_messages = warning;
create extension if not exists pgtap with schema extensions;
set local search_path = extensions, public;
select plan(52);
-- the crafted data changes statuses up to 2 hours back: the window a regular refresh covers


-- a clean slate inside this transaction
delete from public.whatsapp_notifications;
delete from public.whatsapp_error_logs;
delete from public.whatsapp_sessions;
delete from monitoring.function_invocations;
delete from monitoring.notification_minutes;
delete from monitoring.latency_minutes;
delete from monitoring.error_minutes;
delete from monitoring.error_days;
update monitoring.rollup_state set watermark = '-infinity';

create temporary table t (p_now timestamptz) on commit drop;
insert into t values ('2026-06-15 12:00:30+00');

-- ---------------------------------------------------------------------------------------------
-- empty tables
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$select total, successful, failed, delivery_rate
    from monitoring.get_delivery_stats_24h((select p_now from t))$$,
  $$values (0::bigint, 0::bigint, 0::bigint, 100.00::numeric)$$,
  'empty: delivery_stats_24h is 0 rows, rate 100, no division by zero'
);
select results_eq(
  'select window_name, total, delivery_rate from monitoring.get_delivery_stats((select p_now from t))',
  $$values ('1h', 0::bigint, 100.00::numeric), ('24h', 0::bigint, 100.00::numeric),
    ('7d', 0::bigint, 100.00::numeric)$$,
  'empty: delivery_stats has a row per window, each rate 100'
);
select is_empty('select * from monitoring.get_top_errors_24h((select p_now from t))', 'empty: no top errors');
select results_eq(
  $$select count(*)::integer, sum(total)::integer, min(delivery_rate)
    from monitoring.get_hourly_stats((select p_now from t))$$,
  $$values (168, 0, 100.00::numeric)$$,
  'empty: hourly_stats has 168 zero hours at rate 100'
);
select results_eq(
  $$select window_name, backlog_pending, started, avg_queue_seconds, p95_queue_seconds
    from monitoring.get_queue_stats((select p_now from t))$$,
  $$values ('15m', 0::bigint, 0::bigint, null::numeric, null::numeric),
    ('1h', 0::bigint, 0::bigint, null::numeric, null::numeric)$$,
  'empty: queue_stats has no backlog and no averages'
);
select results_eq(
  $$select window_name, sent_count, avg_seconds, p95_seconds
    from monitoring.get_delivery_latency((select p_now from t))$$,
  $$values ('1h', 0::bigint, null::numeric, null::numeric), ('24h', 0::bigint, null::numeric, null::numeric)$$,
  'empty: delivery_latency has no averages'
);

-- ---------------------------------------------------------------------------------------------
-- crafted rows around the window edges
-- ---------------------------------------------------------------------------------------------
insert into public.whatsapp_notifications (order_id, phone_number, status, created_at, processing_started_at, sent_at)
select
  v.order_id,
  '+5511999999999' as phone_number,
  v.status,
  t.p_now + v.age as created_at,
  t.p_now + v.age + v.queue as processing_started_at,
  t.p_now + v.age + v.latency as sent_at
from t
cross join (
  values
  ('A', 'sent', interval '-24 hours', interval '1 second', interval '2 seconds'),          -- exactly at the edge: out
  ('B', 'sent', interval '-24 hours' + interval '1 millisecond', interval '1 second', interval '2 seconds'),
  ('C', 'failed', interval '-1 hour' - interval '1 millisecond', interval '1 second', null),
  ('D', 'sent', interval '-30 minutes', interval '500 milliseconds', interval '1500 milliseconds'),
  ('E', 'pending', interval '-10 seconds', null, null),
  ('F', 'processing', interval '5 minutes', interval '2 seconds', null),                   -- clock skew: counts
  ('G', 'sent', interval '-7 days' + interval '1 second', interval '1 second', interval '3 seconds')
) as v (order_id, status, age, queue, latency);

create temporary table snap on commit drop as
select
  'delivery' as what,
  to_jsonb(d) as row
from monitoring.get_delivery_stats((select p_now from t)) as d
union all
select
  'latency' as what,
  to_jsonb(d) as row
from monitoring.get_delivery_latency((select p_now from t)) as d
union all
select
  'queue' as what,
  to_jsonb(d) as row
from monitoring.get_queue_stats((select p_now from t)) as d
union all
select
  'hourly' as what,
  to_jsonb(d) as row
from monitoring.get_hourly_stats((select p_now from t)) as d;

select results_eq(
  $$select window_name, total, sent, failed, pending, processing, delivery_rate
    from monitoring.get_delivery_stats((select p_now from t))$$,
  $$values
    ('1h', 3::bigint, 1::bigint, 0::bigint, 1::bigint, 1::bigint, 33.33::numeric),
    ('24h', 5::bigint, 2::bigint, 1::bigint, 1::bigint, 1::bigint, 40.00::numeric),
    ('7d', 7::bigint, 4::bigint, 1::bigint, 1::bigint, 1::bigint, 57.14::numeric)$$,
  'delivery_stats: created_at > p_now - length, upper edge open, rate = round(100 * sent / total, 2)'
);
select results_eq(
  'select total, successful, failed, delivery_rate from monitoring.get_delivery_stats_24h((select p_now from t))',
  $$values (5::bigint, 2::bigint, 1::bigint, 40.00::numeric)$$,
  'delivery_stats_24h has the spec''s columns and numbers'
);
select results_eq(
  'select window_name, sent_count, avg_seconds from monitoring.get_delivery_latency((select p_now from t))',
  $$values ('1h', 1::bigint, 1.500::numeric), ('24h', 2::bigint, 1.750::numeric)$$,
  'delivery_latency: count and exact average of sent_at - created_at'
);
select ok(
  (
    select p50_seconds between 1.5 and 2.0 and p99_seconds between 1.5 and 2.0
    from monitoring.get_delivery_latency((select p_now from t))
    where window_name = '1h'
  ),
  'delivery_latency: a 1.5 s delivery gives percentiles inside its bucket [1.5 s, 2 s)'
);
select results_eq(
  $$select window_name, backlog_pending, backlog_processing, oldest_pending_age_seconds, started, avg_queue_seconds
    from monitoring.get_queue_stats((select p_now from t))$$,
  $$values ('15m', 1::bigint, 1::bigint, 10.0::numeric, 1::bigint, 2.000::numeric),
           ('1h', 1::bigint, 1::bigint, 10.0::numeric, 2::bigint, 1.250::numeric)$$,
  'queue_stats: backlog now, oldest pending age, queue time avg per window'
);
select results_eq(
  $$select hour, total, sent, failed, delivery_rate from monitoring.get_hourly_stats((select p_now from t))
    where total > 0 order by hour$$,
  $$values
    ('2026-06-14 12:00:00+00'::timestamptz, 2::bigint, 2::bigint, 0::bigint, 100.00::numeric),
    ('2026-06-15 11:00:00+00', 2, 1, 1, 50.00),
    ('2026-06-15 12:00:00+00', 2, 0, 0, 0.00)$$,
  'hourly_stats: the 168 UTC hours up to p_now''s (G is before them), future rows of the current hour count'
);
select is(
  (select count(*)::integer from monitoring.get_hourly_stats((select p_now from t))),
  168,
  'hourly_stats has 168 hours'
);

-- the same answers once the rollups hold the data (watermark 12:00), and with a half-way watermark
select
  ok(
    (monitoring.refresh_rollups((select p_now from t) - interval '45 minutes')) ->> 'watermark' is not null,
    'refresh_rollups #1 runs'
  );
select set_eq(
  $$select 'delivery', to_jsonb(d) from monitoring.get_delivery_stats((select p_now from t)) as d
    union all select 'latency', to_jsonb(d) from monitoring.get_delivery_latency((select p_now from t)) as d
    union all select 'queue', to_jsonb(d) from monitoring.get_queue_stats((select p_now from t)) as d
    union all select 'hourly', to_jsonb(d) from monitoring.get_hourly_stats((select p_now from t)) as d$$,
  'select what, row from snap',
  'same answers with the watermark 45 minutes back (rollups + live tail)'
);
select ok((monitoring.refresh_rollups((select p_now from t))) ->> 'watermark' is not null, 'refresh_rollups #2 runs');
select is(monitoring._watermark(), '2026-06-15 12:00:00+00'::timestamptz, 'the watermark is p_now''s minute');
select set_eq(
  $$select 'delivery', to_jsonb(d) from monitoring.get_delivery_stats((select p_now from t)) as d
    union all select 'latency', to_jsonb(d) from monitoring.get_delivery_latency((select p_now from t)) as d
    union all select 'queue', to_jsonb(d) from monitoring.get_queue_stats((select p_now from t)) as d
    union all select 'hourly', to_jsonb(d) from monitoring.get_hourly_stats((select p_now from t)) as d$$,
  'select what, row from snap',
  'same answers after refresh_rollups(p_now): edges come from raw rows, the rest from rollups'
);
select is(
  (select sum(total)::integer from monitoring.notification_minutes),
  5,
  'rollups hold the 5 rows created before the watermark and inside the horizon (A, B, C, D, G... minus E, F)'
);

-- a new row counts at once, without a refresh
insert into public.whatsapp_notifications (phone_number, status, created_at)
select
  '+5511999999999' as phone_number,
  'failed' as status,
  p_now - interval '5 seconds' as created_at
from t;
select results_eq(
  'select total, failed from monitoring.get_delivery_stats_24h((select p_now from t))',
  $$values (6::bigint, 2::bigint)$$,
  'a row inserted after the refresh counts at once (live tail)'
);

-- ---------------------------------------------------------------------------------------------
-- errors
-- ---------------------------------------------------------------------------------------------
insert into public.whatsapp_error_logs (error_type, created_at)
select
  'type_' || lpad(k::text, 2, '0') as error_type,
  p_now - interval '2 hours' + i * interval '1 second' as created_at
from t, generate_series(1, 12) as k, generate_series(1, 13 - k) as i;
insert into public.whatsapp_error_logs (error_type, created_at)
select
  v.error_type,
  t.p_now + v.age as created_at
from t,
  (values ('type_12', interval '-24 hours'), ('type_11', interval '-24 hours' + interval '1 second'))
    as v (error_type, age);

select is(
  (
    select count(*)::integer from monitoring.get_top_errors_24h((select p_now from t))
    where error_type = 'type_01'
  ),
  0,
  'rows backfilled behind the watermark (created_at 2 h ago, inserted now) wait for the next refresh'
);
-- p_now lies months back, older than the app-table triggers log changes (they go by the wall clock:
-- 40-rollups covers them), so this file brings backfills in with full refreshes
select ok(
  (monitoring.refresh_rollups((select p_now from t), p_full => true)) ->> 'watermark' is not null,
  'refresh_rollups #3 runs'
);
select results_eq(
  'select error_type, count from monitoring.get_top_errors_24h((select p_now from t))',
  $$values ('type_01', 12::bigint), ('type_02', 11::bigint), ('type_03', 10::bigint), ('type_04', 9::bigint),
           ('type_05', 8::bigint), ('type_06', 7::bigint), ('type_07', 6::bigint), ('type_08', 5::bigint),
           ('type_09', 4::bigint), ('type_10', 3::bigint)$$,
  'top_errors_24h: 10 types, most frequent first, edge row excluded'
);
select is(
  (
    select last_occurrence from monitoring.get_top_errors_24h((select p_now from t))
    where error_type = 'type_01'
  ),
  (select p_now - interval '2 hours' + interval '12 seconds' from t),
  'top_errors_24h: last_occurrence is the latest created_at'
);
select is(
  (
    select e.error_count from monitoring._error_window((select p_now from t), interval '24 hours') as e
    where e.error_type = 'type_11'
  ),
  3::bigint,
  'the row 1 s inside the 24 h edge counts, the one at the edge does not'
);
select
  ok(
    (monitoring.refresh_rollups((select p_now from t), p_full => true)) ->> 'watermark' is not null,
    'refresh_rollups #4 runs'
  );
select results_eq(
  $$select day, error_type, error_count from monitoring.get_error_trends((select p_now from t))
    where error_type in ('type_01', 'type_11', 'type_12') order by day, error_type$$,
  $$values ('2026-06-14'::date, 'type_11', 1::bigint), ('2026-06-14', 'type_12', 1::bigint),
           ('2026-06-15', 'type_01', 12::bigint), ('2026-06-15', 'type_11', 2::bigint), ('2026-06-15', 'type_12', 1::bigint)$$,
  'error_trends: per UTC day and type'
);
select is(
  (
    select errors::integer from monitoring.get_hourly_stats((select p_now from t))
    where hour = '2026-06-15 10:00:00+00'
  ),
  78,
  'hourly_stats counts errors per hour'
);
update monitoring.rollup_state set watermark = '-infinity';
create temporary table err_snap on commit drop as
select to_jsonb(e) as row from monitoring.get_top_errors_24h((select p_now from t)) as e
union all
select to_jsonb(e) from monitoring.get_error_trends((select p_now from t)) as e;
select
  ok(
    (monitoring.refresh_rollups((select p_now from t) + interval '1 minute', p_full => true))
    ->> 'watermark' is not null,
    'refresh_rollups #5 runs'
  );
select set_eq(
  $$select to_jsonb(e) from monitoring.get_top_errors_24h((select p_now from t)) as e
    union all select to_jsonb(e) from monitoring.get_error_trends((select p_now from t)) as e$$,
  'select row from err_snap',
  'error views give the same answers from rollups as from raw rows'
);

-- ---------------------------------------------------------------------------------------------
-- sessions
-- ---------------------------------------------------------------------------------------------
select is(monitoring.mask_phone('+5511999999999'), '+55*******9999', 'mask: Brazil keeps +55 and the last 4');
select is(monitoring.mask_phone('+1 (202) 555-0123'), '+1******0123', 'mask: NANP keeps +1, drops separators');
select is(monitoring.mask_phone('+447911123456'), '+44******3456', 'mask: UK keeps +44');
select is(monitoring.mask_phone('+351912345678'), '+351*****5678', 'mask: three-digit country code');
select is(monitoring.mask_phone('5511999999999'), '*********9999', 'mask: without + only the last 4 stay');
select is(monitoring.mask_phone('123'), '***', 'mask: short numbers are all masked');
select is(monitoring.mask_phone(null), null, 'mask: null stays null');

insert into public.whatsapp_sessions (
  session_id, phone_number, is_active, connection_state, state_changed_at, last_connected_at, updated_at
)
select
  v.session_id,
  v.phone,
  v.is_active,
  v.state,
  t.p_now + v.changed as state_changed_at,
  t.p_now + v.last_connected as last_connected_at,
  t.p_now + v.updated as updated_at
from t, (
  values
  ('s1', '+5511999999999', true, 'connected', interval '-3 hours', interval '-2 hours', interval '-2 hours'),
  ('s2', '+5521988887777', false, 'logged_out', interval '-3 days', interval '-3 days', interval '-3 days'),
  ('s3', '+5531977776666', true, 'disconnected', interval '-10 minutes', interval '-10 minutes', interval '-9 minutes')
) as v (session_id, phone, is_active, state, changed, last_connected, updated);

select results_eq(
  $$select session_id, phone_number, is_active, hours_since_update
    from monitoring.get_active_sessions((select p_now from t))
    order by session_id$$,
  $$values ('s1', '+55*******9999', true, 2::numeric), ('s3', '+55*******6666', true, 0.15::numeric)$$,
  'active_sessions: only active sessions, phone masked, hours_since_update from updated_at'
);
select results_eq(
  $$select session_id, connection_state, down_since is null, minutes_down
    from monitoring.get_connection_status((select p_now from t))
    order by session_id$$,
  $$values ('s1', 'connected', true, 0::numeric), ('s2', 'logged_out', false, 4320.0::numeric),
    ('s3', 'disconnected', false, 10.0::numeric)$$,
  'connection_status: down since last connected, 0 while connected'
);
select is(
  (
    select state_since from monitoring.get_connection_status((select p_now from t))
    where session_id = 's3'
  ),
  (select p_now - interval '10 minutes' from t),
  'connection_status: state_since is state_changed_at'
);

-- ---------------------------------------------------------------------------------------------
-- function_stats and slow_queries
-- ---------------------------------------------------------------------------------------------
select is(
  (
    select count(distinct r.id)::integer
    from t
    cross join lateral (
      values
      (monitoring.record_invocation('health', 200, 100, t.p_now - interval '1 minute')),
      (monitoring.record_invocation('health', 500, 300, t.p_now - interval '2 minutes')),
      (monitoring.record_invocation('health', 200, 50, t.p_now - interval '30 minutes')),
      (monitoring.record_invocation('health', 200, 50, t.p_now - interval '2 hours'))
    ) as r (id)
  ),
  4,
  'record_invocation logs each call and returns its id'
);
select results_eq(
  $$select function_name, window_name, invocations, errors, error_rate, avg_ms
    from monitoring.get_function_stats((select p_now from t))$$,
  $$values ('health', '5m', 2::bigint, 1::bigint, 50.00::numeric, 200.0::numeric),
           ('health', '1h', 3::bigint, 1::bigint, 33.33::numeric, 150.0::numeric)$$,
  'function_stats: per function and window, errors are status >= 500'
);
select is(
  (
    select p95_ms from monitoring.get_function_stats((select p_now from t))
    where window_name = '5m'
  ),
  290.0,
  'function_stats: p95 is exact (percentile_cont)'
);
select throws_ok(
  $$select monitoring.record_invocation('health', 42, 1)$$, '23514', null, 'record_invocation rejects a bad status code'
);
select lives_ok('select * from monitoring.slow_queries', 'slow_queries runs');
select has_column('monitoring', 'slow_queries', c, 'slow_queries.' || c)
from unnest(array['queryid', 'calls', 'mean_ms', 'level', 'query']) as c;

-- the views are the functions at now()
select set_eq(
  'select * from monitoring.delivery_stats', 'select * from monitoring.get_delivery_stats(now())',
  'delivery_stats is get_delivery_stats(now())'
);
select set_eq(
  'select * from monitoring.connection_status', 'select * from monitoring.get_connection_status(now())',
  'connection_status is get_connection_status(now())'
);

select * from finish();
rollback;
