-- The views admins query, each backed by a `monitoring.get_<view>(p_now)` function so tests and
-- the alert rules can ask "as of p_now" without sleeping. A view is `select * from get_<view>()`.
--
-- Windows follow the spec's queries: "the last 24 hours" is created_at > p_now - interval '24
-- hours' with no upper bound. Every windowed number is read as
--   raw rows of the partial first minute (created_at > start and < the next whole minute)
-- + rollup buckets from that whole minute up to the watermark (monitoring.notification_minutes,
--   latency_minutes, error_minutes, error_days: see 10_rollups.sql)
-- + raw rows at or after the watermark (the live tail).
-- New rows count at once; any later change (a status change, a read receipt, a backfilled or
-- deleted row, however old) shows after the next refresh_rollups() run (every minute).
--
-- Successful delivery: a message WhatsApp accepted (status sent, delivered or read) counts as
-- delivered whatever receipt follows; `accepted` counts them and delivery_rate is accepted / total.
-- On data without receipts this is exactly the spec's query (which counts status = 'sent'); with
-- receipts the spec's query would count a read message as not delivered: the one deliberate
-- difference.
--
-- The get_ functions are plpgsql so the watermark is read first and the raw scans are planned
-- with its actual value (plan_cache_mode = force_custom_plan): a generic plan of a one-sided range
-- (created_at >= $1) guesses a third of the table and scans it. The window helpers the alert rules
-- call every minute (_delivery_window, _notification_avg, _notification_hist, _error_window,
-- _queue_backlog) use generic plans instead: planning a raw scan with a value newer than the
-- column's statistics probes the end of the created_at index (0.5-1.5 ms a statement at 10 M
-- rows, more than the scan), so they bound every range on both sides (the live tail up to
-- 'infinity' through a variable), which a generic plan estimates at 0.5 % of the table and reads
-- through the index, split ORs into UNION ALL arms, and forbid parallel plans (a worker's start
-- costs more than these scans). jit = off: JIT costs ~12 ms per query and these plans are tiny.


-- =============================================================================================
-- API: Private
-- =============================================================================================
create or replace function monitoring._rate(
  -- successful rows
  p_ok bigint,
  -- all rows
  p_total bigint
)
returns numeric
language sql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
  select case
    when coalesce(p_total, 0) = 0 then 100.00
    else round(100.0 * coalesce(p_ok, 0) / p_total, 2)
  end;
$$;

comment on function monitoring._rate(bigint, bigint) is
'Percentage p_ok / p_total rounded to 2 decimals as the spec computes it; 100.00 when there are no '
'rows (no division by zero).';

create or replace function monitoring._hist_quantile(
  -- counts per bucket, bucket i = [edges[i], edges[i+1]) of monitoring._latency_edges_ms()
  p_hist bigint[],
  -- the quantile wanted, 0..1
  p_q numeric
)
returns numeric
language plpgsql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
declare
  v_edges integer[] := monitoring._latency_edges_ms();
  v_total numeric := 0::numeric;
  v_rank numeric;
  v_cum numeric := 0::numeric;
begin
  for v_i in 1..coalesce(pg_catalog.array_length(p_hist, 1), 0) loop
    v_total := v_total + coalesce(p_hist[v_i], 0);
  end loop;
  if v_total = 0 then
    return null;
  end if;
  v_rank := p_q * v_total;
  for v_i in 1..pg_catalog.array_length(p_hist, 1) loop
    if coalesce(p_hist[v_i], 0) > 0 and v_cum + p_hist[v_i] >= v_rank then
      if v_i >= pg_catalog.array_length(v_edges, 1) then
        return v_edges[v_i]::numeric;
      end if;
      return v_edges[v_i] + (v_edges[v_i + 1] - v_edges[v_i]) * (v_rank - v_cum) / p_hist[v_i];
    end if;
    v_cum := v_cum + coalesce(p_hist[v_i], 0);
  end loop;
  return null;
end
$$;

comment on function monitoring._hist_quantile(bigint[], numeric) is
'Estimate a quantile (ms) from fixed-bucket counts: find the bucket holding rank q*n and '
'interpolate linearly inside it (as Prometheus histogram_quantile does); the open last bucket '
'(>= 30 min) returns its lower edge. The estimate lies in the same bucket as the true value.';

create or replace function monitoring._delivery_window(
  -- the moment the window ends (its start is p_now - p_length)
  p_now timestamptz,
  -- the window's length
  p_length interval
)
returns table (
  window_start timestamptz,
  total bigint,
  accepted bigint,
  sent bigint,
  failed bigint,
  pending bigint,
  processing bigint,
  delivered bigint,
  read bigint,
  read_count bigint,
  read_sum_ms numeric
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_w timestamptz := monitoring._watermark();
  v_s timestamptz := p_now - p_length;
  v_c timestamptz := pg_catalog.date_bin('1 minute', p_now - p_length, '2000-01-01 00:00:00+00') + interval '1 minute';
  v_t timestamptz;
  v_h1 timestamptz;
  v_h2 timestamptz;
  v_end constant timestamptz := 'infinity'::timestamptz;
begin
  v_t := greatest(v_c, v_w);
  -- whole hours [v_h1, v_h2) from notification_hours, minutes for [v_c, v_h1) and [v_h2, v_w)
  select h.hours_from, h.hours_to into v_h1, v_h2 from monitoring._hour_span(v_c, v_w) as h;
  return query
  select
    v_s,
    coalesce(sum(p.total), 0)::bigint,
    coalesce(sum(p.sent) + sum(p.delivered) + sum(p.read), 0)::bigint,
    coalesce(sum(p.sent), 0)::bigint,
    coalesce(sum(p.failed), 0)::bigint,
    coalesce(sum(p.pending), 0)::bigint,
    coalesce(sum(p.processing), 0)::bigint,
    coalesce(sum(p.delivered), 0)::bigint,
    coalesce(sum(p.read), 0)::bigint,
    coalesce(sum(p.read_count), 0)::bigint,
    coalesce(sum(p.read_sum_ms), 0)::numeric
  from (
    select
      sum(h.total) as total,
      sum(h.sent) as sent,
      sum(h.failed) as failed,
      sum(h.pending) as pending,
      sum(h.processing) as processing,
      sum(h.delivered) as delivered,
      sum(h.read) as read,
      sum(h.read_count) as read_count,
      sum(h.read_sum_ms) as read_sum_ms
    from monitoring.notification_hours as h
    where h.bucket >= v_h1 and h.bucket < v_h2
    union all
    select
      sum(m.total),
      sum(m.sent),
      sum(m.failed),
      sum(m.pending),
      sum(m.processing),
      sum(m.delivered),
      sum(m.read),
      sum(m.read_count),
      sum(m.read_sum_ms)
    from monitoring.notification_minutes as m
    where (m.bucket >= v_c and m.bucket < v_h1) or (m.bucket >= v_h2 and m.bucket < v_w)
    union all
    select
      count(*),
      count(*) filter (where n.status = 'sent'),
      count(*) filter (where n.status = 'failed'),
      count(*) filter (where n.status = 'pending'),
      count(*) filter (where n.status = 'processing'),
      count(*) filter (where n.status = 'delivered'),
      count(*) filter (where n.status = 'read'),
      count(n.read_at - n.sent_at),
      sum(extract(epoch from n.read_at - n.sent_at) * 1000)
    from (
      select r.status, r.sent_at, r.read_at from public.whatsapp_notifications as r
      where r.created_at > v_s and r.created_at < v_c
      union all
      select r.status, r.sent_at, r.read_at from public.whatsapp_notifications as r
      where r.created_at >= v_t and r.created_at <= v_end
    ) as n
  ) as p;
end
$$;

comment on function monitoring._delivery_window(timestamptz, interval) is
'Notification counts by status (accepted = sent + delivered + read) and time-to-read sums for rows created in '
'(p_now - p_length, +inf): raw first partial minute + minute rollups to the first whole hour + hour rollups + '
'minute rollups up to the watermark + raw live tail.';

create or replace function monitoring._notification_hist(
  -- the moment the window ends (its start is p_now - p_length)
  p_now timestamptz,
  -- the window's length
  p_length interval,
  -- 'latency' (sent_at - created_at) or 'queue' (processing_started_at - created_at)
  p_kind text
)
returns table (
  window_start timestamptz,
  n bigint,
  sum_ms numeric,
  hist bigint[]
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_w timestamptz := monitoring._watermark();
  v_s timestamptz := p_now - p_length;
  v_c timestamptz := pg_catalog.date_bin('1 minute', p_now - p_length, '2000-01-01 00:00:00+00') + interval '1 minute';
  v_t timestamptz;
  v_h1 timestamptz;
  v_h2 timestamptz;
  v_n bigint;
  v_sum numeric;
  v_hist bigint [] := array_fill(0::bigint, array[23]);
  v_row record;
  v_end constant timestamptz := 'infinity'::timestamptz;
begin
  if p_kind is null or p_kind not in ('latency', 'queue') then
    raise exception using
      message = format('monitoring._notification_hist: unknown p_kind %L', p_kind),
      hint = 'use ''latency'' or ''queue''';
  end if;
  v_t := greatest(v_c, v_w);
  select h.hours_from, h.hours_to into v_h1, v_h2 from monitoring._hour_span(v_c, v_w) as h;

  select
    coalesce(sum(case when p_kind = 'latency' then r.latency_count else r.queue_count end), 0),
    coalesce(sum(case when p_kind = 'latency' then r.latency_sum_ms else r.queue_sum_ms end), 0)
  into v_n, v_sum
  from (
    select h.latency_count, h.latency_sum_ms, h.queue_count, h.queue_sum_ms
    from monitoring.notification_hours as h
    where h.bucket >= v_h1 and h.bucket < v_h2
    union all
    select m.latency_count, m.latency_sum_ms, m.queue_count, m.queue_sum_ms
    from monitoring.notification_minutes as m
    where (m.bucket >= v_c and m.bucket < v_h1) or (m.bucket >= v_h2 and m.bucket < v_w)
  ) as r;

  for v_row in
    select b.bin, sum(b.n) as cnt, null::numeric as total_ms
    from (
      select h.bin, h.n from monitoring.latency_hours as h
      where h.kind = p_kind and h.bucket >= v_h1 and h.bucket < v_h2
      union all
      select m.bin, m.n from monitoring.latency_minutes as m
      where m.kind = p_kind and ((m.bucket >= v_c and m.bucket < v_h1) or (m.bucket >= v_h2 and m.bucket < v_w))
    ) as b
    group by b.bin
    union all
    select greatest(1, pg_catalog.width_bucket(r.ms, monitoring._latency_edges_ms())), count(*), sum(r.ms)
    from (
      select
        extract(
          epoch from case when p_kind = 'latency' then x.sent_at else x.processing_started_at end - x.created_at
        ) * 1000 as ms
      from public.whatsapp_notifications as x
      where x.created_at > v_s and x.created_at < v_c
      union all
      select
        extract(
          epoch from case when p_kind = 'latency' then x.sent_at else x.processing_started_at end - x.created_at
        ) * 1000
      from public.whatsapp_notifications as x
      where x.created_at >= v_t and x.created_at <= v_end
    ) as r
    where r.ms is not null
    group by 1
  loop
    v_hist[v_row.bin] := v_hist[v_row.bin] + v_row.cnt;
    if v_row.total_ms is not null then
      v_n := v_n + v_row.cnt;
      v_sum := v_sum + v_row.total_ms;
    end if;
  end loop;

  return query select v_s, v_n, v_sum, v_hist;
end
$$;

comment on function monitoring._notification_hist(timestamptz, interval, text) is
'Histogram (monitoring._latency_edges_ms() bins), count and sum in ms of delivery time '
'(p_kind latency: sent_at - created_at) or queue time (p_kind queue: processing_started_at - '
'created_at) for rows created in (p_now - p_length, +inf) that have that timestamp set: hour and minute rollups '
'up to the watermark, raw rows for the partial first minute and the live tail.';

create or replace function monitoring._notification_avg(
  -- the moment the window ends (its start is p_now - p_length)
  p_now timestamptz,
  -- the window's length
  p_length interval,
  -- 'latency' (sent_at - created_at) or 'queue' (processing_started_at - created_at)
  p_kind text
)
returns table (
  window_start timestamptz,
  n bigint,
  sum_ms numeric
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_w timestamptz := monitoring._watermark();
  v_s timestamptz := p_now - p_length;
  v_c timestamptz := pg_catalog.date_bin('1 minute', p_now - p_length, '2000-01-01 00:00:00+00') + interval '1 minute';
  v_t timestamptz;
  v_h1 timestamptz;
  v_h2 timestamptz;
  v_end constant timestamptz := 'infinity'::timestamptz;
begin
  if p_kind is null or p_kind not in ('latency', 'queue') then
    raise exception using
      message = format('monitoring._notification_avg: unknown p_kind %L', p_kind),
      hint = 'use ''latency'' or ''queue''';
  end if;
  v_t := greatest(v_c, v_w);
  select h.hours_from, h.hours_to into v_h1, v_h2 from monitoring._hour_span(v_c, v_w) as h;
  -- the count and sum columns of the rollups, without their histograms: one statement
  return query
  select v_s, coalesce(sum(r.n), 0)::bigint, coalesce(sum(r.sum_ms), 0)::numeric
  from (
    select
      case when p_kind = 'latency' then h.latency_count else h.queue_count end as n,
      case when p_kind = 'latency' then h.latency_sum_ms else h.queue_sum_ms end as sum_ms
    from monitoring.notification_hours as h
    where h.bucket >= v_h1 and h.bucket < v_h2
    union all
    select
      case when p_kind = 'latency' then m.latency_count else m.queue_count end,
      case when p_kind = 'latency' then m.latency_sum_ms else m.queue_sum_ms end
    from monitoring.notification_minutes as m
    where (m.bucket >= v_c and m.bucket < v_h1) or (m.bucket >= v_h2 and m.bucket < v_w)
    union all
    select count(x.ms), sum(x.ms)
    from (
      select
        extract(
          epoch from case when p_kind = 'latency' then r.sent_at else r.processing_started_at end - r.created_at
        ) * 1000 as ms
      from public.whatsapp_notifications as r
      where r.created_at > v_s and r.created_at < v_c
      union all
      select
        extract(
          epoch from case when p_kind = 'latency' then r.sent_at else r.processing_started_at end - r.created_at
        ) * 1000
      from public.whatsapp_notifications as r
      where r.created_at >= v_t and r.created_at <= v_end
    ) as x
  ) as r;
end
$$;

comment on function monitoring._notification_avg(timestamptz, interval, text) is
'Count and sum in ms of delivery time (p_kind latency) or queue time (p_kind queue) for rows created in '
'(p_now - p_length, +inf) that have that timestamp set: monitoring._notification_hist''s n and sum_ms in one '
'statement, without the histogram, for the rules that compare an average.';

create or replace function monitoring._function_window_stats(
  -- the moment the window ends
  p_now timestamptz,
  -- the window's length: invocations created in (p_now - p_length, +inf)
  p_length interval,
  -- compute the 95th percentile of the durations (a sort; null when false)
  p_p95 boolean
)
returns table (
  function_name text,
  invocations bigint,
  errors bigint,
  error_rate numeric,
  avg_ms numeric,
  p95_ms numeric
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_s timestamptz := p_now - p_length;
  v_end constant timestamptz := 'infinity'::timestamptz;
begin
  return query
  select
    f.function_name,
    count(*),
    count(*) filter (where f.status_code >= 500),
    round(100.0 * count(*) filter (where f.status_code >= 500) / count(*), 2),
    round(avg(f.duration_ms), 1),
    round((percentile_cont(0.95) within group (order by f.duration_ms) filter (where p_p95))::numeric, 1)
  from monitoring.function_invocations as f
  where f.created_at > v_s and f.created_at <= v_end
  group by f.function_name;
end
$$;

comment on function monitoring._function_window_stats(timestamptz, interval, boolean) is
'Internal: per Edge Function, invocations, errors (status >= 500), error rate, average and (p_p95) 95th percentile '
'duration of the invocations in (p_now - p_length, +inf), for monitoring.get_function_stats and the function rules '
'(each reads its own window; only function_latency sorts for the percentile).';

create or replace function monitoring._error_window(
  -- the moment the window ends (its start is p_now - p_length)
  p_now timestamptz,
  -- the window's length
  p_length interval
)
returns table (
  error_type text,
  error_count bigint,
  last_occurrence timestamptz
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_w timestamptz := monitoring._watermark();
  v_s timestamptz := p_now - p_length;
  v_c timestamptz := pg_catalog.date_bin('1 minute', p_now - p_length, '2000-01-01 00:00:00+00') + interval '1 minute';
  v_t timestamptz;
  v_h1 timestamptz;
  v_h2 timestamptz;
  v_end constant timestamptz := 'infinity'::timestamptz;
begin
  v_t := greatest(v_c, v_w);
  select h.hours_from, h.hours_to into v_h1, v_h2 from monitoring._hour_span(v_c, v_w) as h;
  return query
  select p.error_type, sum(p.n)::bigint, max(p.last_at)
  from (
    select h.error_type, h.error_count::bigint as n, h.last_at
    from monitoring.error_hours as h
    where h.bucket >= v_h1 and h.bucket < v_h2
    union all
    select m.error_type, m.error_count::bigint, m.last_at
    from monitoring.error_minutes as m
    where (m.bucket >= v_c and m.bucket < v_h1) or (m.bucket >= v_h2 and m.bucket < v_w)
    union all
    select coalesce(e.error_type::text, '(unknown)'), 1::bigint, e.created_at
    from public.whatsapp_error_logs as e
    where e.created_at > v_s and e.created_at < v_c
    union all
    select coalesce(e.error_type::text, '(unknown)'), 1::bigint, e.created_at
    from public.whatsapp_error_logs as e
    where e.created_at >= v_t and e.created_at <= v_end
  ) as p
  group by p.error_type;
end
$$;

comment on function monitoring._error_window(timestamptz, interval) is
'Errors per type (count, last occurrence) for rows created in (p_now - p_length, +inf): raw first partial minute '
'+ error_minutes to the first whole hour + error_hours + error_minutes up to the watermark + raw live tail.';

-- =============================================================================================
-- API: Public
-- =============================================================================================
create or replace function monitoring.mask_phone(
  -- a phone number in any format; E.164 (+CC...) keeps its country code
  p_phone text
)
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
set jit = off
as $$
declare
  v_digits text := pg_catalog.regexp_replace(coalesce(p_phone, ''), '[^0-9]', '', 'g');
  v_len integer;
  v_cc integer := 0;
begin
  if p_phone is null then
    return null;
  end if;
  v_len := pg_catalog.length(v_digits);
  if v_len <= 4 then
    return pg_catalog.repeat('*', v_len);
  end if;
  if pg_catalog.ltrim(p_phone) like '+%' then
    -- ITU-T E.164 country codes: 1 and 7 are one digit; these two-digit ones; all others three
    v_cc := case
      when pg_catalog.left(v_digits, 1) in ('1', '7') then 1
      when pg_catalog.left(v_digits, 2) in (
        '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47',
        '48', '49', '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65',
        '66', '81', '82', '84', '86', '90', '91', '92', '93', '94', '95', '98'
      ) then 2
      else 3
    end;
    if v_len <= v_cc + 4 then
      v_cc := 0;
    end if;
    return '+' || pg_catalog.left(v_digits, v_cc) || pg_catalog.repeat('*', v_len - v_cc - 4)
      || pg_catalog.right(v_digits, 4);
  end if;
  return pg_catalog.repeat('*', v_len - 4) || pg_catalog.right(v_digits, 4);
end
$$;

comment on function monitoring.mask_phone(text) is
'Mask a phone number for display: keeps a leading +, the E.164 country code (1-3 digits) and the '
'last 4 digits, every other digit becomes *, separators are dropped: +55 11 99999-9999 -> '
'+55*******9999. Without a leading + only the last 4 digits stay; 4 digits or fewer: all *.';

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

create or replace function monitoring.get_delivery_stats(
  -- the moment "now" for the windows
  p_now timestamptz default now()
)
returns table (
  window_name text,
  window_start timestamptz,
  total bigint,
  sent bigint,
  failed bigint,
  pending bigint,
  processing bigint,
  delivered bigint,
  read bigint,
  delivery_rate numeric,
  accepted bigint,
  delivered_pct numeric,
  read_pct numeric,
  avg_seconds_to_read numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    w.window_name,
    d.window_start,
    d.total,
    d.sent,
    d.failed,
    d.pending,
    d.processing,
    d.delivered,
    d.read,
    monitoring._rate(d.accepted, d.total),
    d.accepted,
    case when d.accepted > 0 then round(100.0 * (d.delivered + d.read) / d.accepted, 2) end,
    case when d.accepted > 0 then round(100.0 * d.read / d.accepted, 2) end,
    round(d.read_sum_ms / nullif(d.read_count, 0) / 1000, 3)
  from (
    values ('1h', interval '1 hour', 1), ('24h', interval '24 hours', 2), ('7d', interval '7 days', 3)
  ) as w (window_name, window_length, ord)
  cross join lateral monitoring._delivery_window(p_now, w.window_length) as d
  order by w.ord;
$$;

comment on function monitoring.get_delivery_stats(timestamptz) is
'monitoring.delivery_stats as of p_now: one row per window (1h, 24h, 7d).';

create or replace function monitoring.get_delivery_stats_24h(
  -- the moment "now" for the window
  p_now timestamptz default now()
)
returns table (
  total bigint,
  successful bigint,
  failed bigint,
  delivery_rate numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select d.total, d.accepted, d.failed, monitoring._rate(d.accepted, d.total)
  from monitoring._delivery_window(p_now, interval '24 hours') as d;
$$;

comment on function monitoring.get_delivery_stats_24h(timestamptz) is
'monitoring.delivery_stats_24h as of p_now: the spec''s 24-hour delivery-rate query, with a message that '
'WhatsApp accepted counted successful whatever receipt followed (sent, delivered or read).';

create or replace function monitoring.get_top_errors_24h(
  -- the moment "now" for the window
  p_now timestamptz default now()
)
returns table (
  error_type text,
  count bigint,
  last_occurrence timestamptz
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select e.error_type, e.error_count, e.last_occurrence
  from monitoring._error_window(p_now, interval '24 hours') as e
  order by e.error_count desc, e.error_type
  limit 10;
$$;

comment on function monitoring.get_top_errors_24h(timestamptz) is
'monitoring.top_errors_24h as of p_now: the spec''s top-10 error types of the last 24 hours.';

create or replace function monitoring.get_error_trends(
  -- the moment "now": the 30 UTC days up to and including p_now's day
  p_now timestamptz default now()
)
returns table (
  day date,
  error_type text,
  error_count bigint,
  last_occurrence timestamptz
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_custom_plan
as $$
declare
  v_w timestamptz := monitoring._watermark();
  v_first date := (p_now at time zone 'UTC')::date - 29;
  v_t timestamptz;
begin
  v_t := greatest(v_w, v_first::timestamp at time zone 'UTC');
  return query
  select p.day, p.error_type, sum(p.n)::bigint, max(p.last_at)
  from (
    select d.day, d.error_type, d.error_count::bigint as n, d.last_at
    from monitoring.error_days as d
    where d.day >= v_first and (d.day::timestamp at time zone 'UTC') < v_w
    union all
    select (e.created_at at time zone 'UTC')::date, coalesce(e.error_type::text, '(unknown)'), 1::bigint, e.created_at
    from public.whatsapp_error_logs as e
    where e.created_at >= v_t
  ) as p
  group by p.day, p.error_type
  order by p.day desc, 3 desc, p.error_type;
end
$$;

comment on function monitoring.get_error_trends(timestamptz) is
'monitoring.error_trends as of p_now: errors per type per UTC day for the 30 days up to p_now''s day.';

create or replace function monitoring.get_active_sessions(
  -- the moment "now" for hours_since_update
  p_now timestamptz default now()
)
returns table (
  session_id text,
  phone_number text,
  is_active boolean,
  updated_at timestamptz,
  hours_since_update numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    s.session_id::text,
    monitoring.mask_phone(s.phone_number::text),
    s.is_active,
    s.updated_at,
    extract(epoch from (p_now - s.updated_at)) / 3600
  from public.whatsapp_sessions as s
  where s.is_active = true
  order by s.updated_at desc;
$$;

comment on function monitoring.get_active_sessions(timestamptz) is
'monitoring.active_sessions as of p_now: the spec''s active-sessions query, phone numbers masked.';

create or replace function monitoring.get_connection_status(
  -- the moment "now" for minutes_down
  p_now timestamptz default now()
)
returns table (
  session_id text,
  phone_number text,
  is_active boolean,
  connection_state text,
  state_since timestamptz,
  down_since timestamptz,
  minutes_down numeric,
  last_connected_at timestamptz,
  updated_at timestamptz
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    s.session_id::text,
    monitoring.mask_phone(s.phone_number::text),
    s.is_active,
    s.connection_state::text,
    coalesce(s.state_changed_at, s.updated_at),
    d.down_since,
    coalesce(round(extract(epoch from (p_now - d.down_since)) / 60, 1), 0),
    s.last_connected_at,
    s.updated_at
  from public.whatsapp_sessions as s
  cross join lateral (
    select
      case
        when s.connection_state = 'connected' then null
        else coalesce(s.last_connected_at, s.created_at)
      end as down_since
  ) as d
  order by s.is_active desc, s.updated_at desc;
$$;

comment on function monitoring.get_connection_status(timestamptz) is
'monitoring.connection_status as of p_now: every session''s state, since when, and for how long '
'it has been down.';

create or replace function monitoring._queue_backlog(
  -- the moment "now" for the oldest pending age
  p_now timestamptz
)
returns table (
  backlog_pending bigint,
  backlog_processing bigint,
  oldest_pending_at timestamptz,
  oldest_pending_age_seconds numeric
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
set max_parallel_workers_per_gather = 0
as $$
declare
  v_horizon constant interval := interval '8 days';
  v_w timestamptz;
  v_start timestamptz;
  v_c timestamptz;
  v_end constant timestamptz := 'infinity'::timestamptz;
begin
  -- The backlog of the minute horizon (rows created in the last 8 days) from the rollups, which
  -- are exact: the app's status column carries no index, so its status updates stay HOT.
  select d.pending, d.processing into backlog_pending, backlog_processing
  from monitoring._delivery_window(p_now, v_horizon) as d;

  -- the oldest pending row: in the first rollup minute holding one, else in the raw minutes
  -- the rollups do not hold (the window's partial first minute, the live tail)
  v_w := monitoring._watermark();
  v_start := p_now - v_horizon;
  v_c := pg_catalog.date_bin('1 minute', v_start, '2000-01-01 00:00:00+00') + interval '1 minute';
  select least(
    (
      select min(n.created_at)
      from (
        select m.bucket from monitoring.notification_minutes as m
        where m.pending > 0 and m.bucket >= v_c and m.bucket < v_w
        order by m.bucket
        limit 1
      ) as b
      inner join public.whatsapp_notifications as n
        on n.created_at >= b.bucket and n.created_at < b.bucket + interval '1 minute' and n.status = 'pending'
    ),
    (
      select min(n.created_at) from public.whatsapp_notifications as n
      where n.status = 'pending' and n.created_at > v_start and n.created_at < v_c
    ),
    (
      select min(n.created_at) from public.whatsapp_notifications as n
      where n.status = 'pending' and n.created_at >= greatest(v_c, v_w) and n.created_at <= v_end
    )
  ) into oldest_pending_at;
  oldest_pending_age_seconds := round(extract(epoch from (p_now - oldest_pending_at)), 1);
  return next;
end
$$;

comment on function monitoring._queue_backlog(timestamptz) is
'Internal: the backlog now (messages of the last 8 days still pending or processing) and the oldest pending '
'message, for monitoring.get_queue_stats and the slow_queue rule.';

create or replace function monitoring.get_queue_stats(
  -- the moment "now" for the windows and the oldest pending age
  p_now timestamptz default now()
)
returns table (
  window_name text,
  window_start timestamptz,
  backlog_pending bigint,
  backlog_processing bigint,
  oldest_pending_at timestamptz,
  oldest_pending_age_seconds numeric,
  started bigint,
  avg_queue_seconds numeric,
  p95_queue_seconds numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    w.window_name,
    h.window_start,
    b.backlog_pending,
    b.backlog_processing,
    b.oldest_pending_at,
    b.oldest_pending_age_seconds,
    h.n,
    round(h.sum_ms / nullif(h.n, 0) / 1000, 3),
    round(monitoring._hist_quantile(h.hist, 0.95) / 1000, 3)
  from monitoring._queue_backlog(p_now) as b
  cross join (values ('15m', interval '15 minutes', 1), ('1h', interval '1 hour', 2)) as w (window_name, window_length, ord)
  cross join lateral monitoring._notification_hist(p_now, w.window_length, 'queue') as h
  order by w.ord;
$$;

comment on function monitoring.get_queue_stats(timestamptz) is
'monitoring.queue_stats as of p_now: backlog now (messages of the last 8 days still pending or processing), and '
'queue time of rows created in the last 15 min and 1 h.';

create or replace function monitoring.get_delivery_latency(
  -- the moment "now" for the windows
  p_now timestamptz default now()
)
returns table (
  window_name text,
  window_start timestamptz,
  sent_count bigint,
  avg_seconds numeric,
  p50_seconds numeric,
  p95_seconds numeric,
  p99_seconds numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    w.window_name,
    h.window_start,
    h.n,
    round(h.sum_ms / nullif(h.n, 0) / 1000, 3),
    round(monitoring._hist_quantile(h.hist, 0.50) / 1000, 3),
    round(monitoring._hist_quantile(h.hist, 0.95) / 1000, 3),
    round(monitoring._hist_quantile(h.hist, 0.99) / 1000, 3)
  from (values ('1h', interval '1 hour', 1), ('24h', interval '24 hours', 2)) as w (window_name, window_length, ord)
  cross join lateral monitoring._notification_hist(p_now, w.window_length, 'latency') as h
  order by w.ord;
$$;

comment on function monitoring.get_delivery_latency(timestamptz) is
'monitoring.delivery_latency as of p_now: delivery time (sent_at - created_at) of rows created in '
'the last 1 h and 24 h.';

create or replace function monitoring.get_hourly_stats(
  -- the moment "now": the 168 UTC hours up to and including p_now's hour
  p_now timestamptz default now()
)
returns table (
  hour timestamptz,
  total bigint,
  sent bigint,
  failed bigint,
  delivery_rate numeric,
  errors bigint,
  accepted bigint
)
language plpgsql
stable
set search_path = ''
set jit = off
set plan_cache_mode = force_custom_plan
as $$
declare
  v_w timestamptz := monitoring._watermark();
  -- whole hours before the watermark's hour come from notification_hours
  v_hw timestamptz;
  v_last timestamptz;
  v_first timestamptz;
  v_end timestamptz;
  v_t timestamptz;
begin
  -- an infinite p_now made generate_series below endless (it filled the disk with a temp file)
  if p_now is null or not isfinite(p_now) then
    raise exception using
      errcode = 'invalid_parameter_value',
      message = format('get_hourly_stats: p_now must be a finite time (got %s)', coalesce(p_now::text, 'null')),
      hint = 'leave p_now out (it defaults to now())';
  end if;
  v_last := pg_catalog.date_bin('1 hour', p_now, '2000-01-01 00:00:00+00');
  v_first := v_last - interval '167 hours';
  v_end := v_last + interval '1 hour';
  v_t := greatest(v_first, v_w);
  v_hw := case when isfinite(v_w) then pg_catalog.date_bin('1 hour', v_w, '2000-01-01 00:00:00+00') else v_w end;
  return query
  with
  by_minute as (
    select h.bucket as hour, h.total, h.sent, h.sent + h.delivered + h.read as accepted, h.failed, h.errors
    from monitoring.notification_hours as h
    where h.bucket >= v_first and h.bucket < least(v_hw, v_end)
    union all
    select
      pg_catalog.date_bin('1 hour', m.bucket, '2000-01-01 00:00:00+00'), m.total, m.sent, m.sent + m.delivered + m.read,
      m.failed, m.errors
    from monitoring.notification_minutes as m
    where m.bucket >= greatest(v_first, v_hw) and m.bucket < least(v_w, v_end)
    union all
    select
      pg_catalog.date_bin('1 hour', n.created_at, '2000-01-01 00:00:00+00'),
      1,
      (n.status = 'sent')::integer,
      (n.status in ('sent', 'delivered', 'read'))::integer,
      (n.status = 'failed')::integer,
      0
    from public.whatsapp_notifications as n
    where n.created_at >= v_t and n.created_at < v_end
    union all
    select pg_catalog.date_bin('1 hour', e.created_at, '2000-01-01 00:00:00+00'), 0, 0, 0, 0, 1
    from public.whatsapp_error_logs as e
    where e.created_at >= v_t and e.created_at < v_end
  ),
  by_hour as (
    select
      b.hour,
      sum(b.total) as total,
      sum(b.sent) as sent,
      sum(b.accepted) as accepted,
      sum(b.failed) as failed,
      sum(b.errors) as errors
    from by_minute as b
    group by b.hour
  )
  select
    h.hour,
    coalesce(bh.total, 0)::bigint,
    coalesce(bh.sent, 0)::bigint,
    coalesce(bh.failed, 0)::bigint,
    -- inline monitoring._rate(): 168 calls of a function with SET clauses would cost ~3 ms
    case when coalesce(bh.total, 0) = 0 then 100.00 else round(100.0 * bh.accepted / bh.total, 2) end,
    coalesce(bh.errors, 0)::bigint,
    coalesce(bh.accepted, 0)::bigint
  from pg_catalog.generate_series(v_first, v_last, interval '1 hour') as h (hour)
  left join by_hour as bh on h.hour = bh.hour
  order by h.hour desc;
end
$$;

comment on function monitoring.get_hourly_stats(timestamptz) is
'monitoring.hourly_stats as of p_now: per UTC hour for the 168 hours up to p_now''s hour (whole hours from '
'notification_hours, the watermark''s hour from minute rollups, the live tail from raw rows); delivery_rate is '
'accepted (sent, delivered or read) over total.';

create or replace function monitoring.get_function_stats(
  -- the moment "now" for the windows
  p_now timestamptz default now()
)
returns table (
  function_name text,
  window_name text,
  window_start timestamptz,
  invocations bigint,
  errors bigint,
  error_rate numeric,
  avg_ms numeric,
  p95_ms numeric
)
language sql
stable
set search_path = ''
set jit = off
as $$
  select
    f.function_name,
    w.window_name,
    p_now - w.window_length,
    f.invocations,
    f.errors,
    f.error_rate,
    f.avg_ms,
    f.p95_ms
  from (values ('5m', interval '5 minutes', 1), ('1h', interval '1 hour', 2)) as w (window_name, window_length, ord)
  cross join lateral monitoring._function_window_stats(p_now, w.window_length, true) as f
  order by f.function_name, w.ord;
$$;

comment on function monitoring.get_function_stats(timestamptz) is
'monitoring.function_stats as of p_now: per Edge Function, invocations in the last 5 min and 1 h.';

create table if not exists monitoring._statement_texts (
  userid oid not null,
  dbid oid not null,
  queryid bigint not null,
  query text not null,
  primary key (userid, dbid, queryid)
);

comment on table monitoring._statement_texts is
'Internal cache of pg_stat_statements query texts of slow statements: reading texts means reading the whole text '
'file (20 ms at 5,000 statements), so each text is read once. Written by _snapshot_slow_queries().';

create table if not exists monitoring._slow_statements (
  userid oid not null,
  dbid oid not null,
  queryid bigint not null,
  calls bigint not null,
  mean_ms numeric not null,
  max_ms numeric not null,
  total_ms numeric not null,
  rows bigint not null,
  query text,
  taken_at timestamptz not null default now(),
  primary key (userid, dbid, queryid)
);

comment on table monitoring._slow_statements is
'Internal: the statements of pg_stat_statements whose mean time was at least slow_query_target_ms at the last '
'snapshot (the evaluate job takes one every 5 minutes), with their texts: what monitoring.slow_queries shows. '
'Reading pg_stat_statements costs 5-10 ms at 5,000 statements, so it is not read per query.';

create table if not exists monitoring._slow_snapshot (
  id boolean primary key default true check (id),
  taken_at timestamptz not null
);

comment on table monitoring._slow_snapshot is
'Internal: when _snapshot_slow_queries() last read pg_stat_statements (one row).';

create or replace function monitoring._snapshot_slow_queries(
  -- keep the snapshot while it is younger than this (null: take one now)
  p_max_age interval default null
)
returns integer
language plpgsql
volatile
security definer -- pg_stat_statements shows other roles' query text only to pg_read_all_stats
set search_path = ''
set jit = off
as $$
declare
  v_target numeric;
  v_n integer := 0;
begin
  if pg_catalog.to_regprocedure('extensions.pg_stat_statements(boolean)') is null then
    return 0;
  end if;
  -- reading pg_stat_statements is most of the evaluate job's time at a few thousand statements;
  -- its figures are cumulative, so a snapshot a few minutes old shows nearly the same means
  if p_max_age is not null and exists (
    select 1 from monitoring._slow_snapshot as k where k.id and k.taken_at > pg_catalog.now() - p_max_age
  ) then
    return null;
  end if;
  insert into monitoring._slow_snapshot as k (id, taken_at) values (true, pg_catalog.now())
  on conflict (id) do update set taken_at = excluded.taken_at;
  select t.slow_query_target_ms into v_target from monitoring.health_thresholds as t where t.id;
  begin
    delete from monitoring._slow_statements;
    -- one read without texts; a text not cached yet is read from the file (coalesce runs the
    -- subquery only then)
    insert into monitoring._slow_statements (userid, dbid, queryid, calls, mean_ms, max_ms, total_ms, rows, query)
    select
      s.userid, s.dbid, s.queryid, s.calls,
      round(s.mean_exec_time::numeric, 1), round(s.max_exec_time::numeric, 1), round(s.total_exec_time::numeric, 1),
      s.rows,
      coalesce(
        c.query,
        (
          select t.query from extensions.pg_stat_statements(true) as t
          where t.userid = s.userid and t.dbid = s.dbid and t.queryid = s.queryid
        )
      )
    from extensions.pg_stat_statements(false) as s
    left join monitoring._statement_texts as c
      on c.userid = s.userid and c.dbid = s.dbid and c.queryid = s.queryid
    where s.mean_exec_time >= v_target and s.queryid is not null;
    get diagnostics v_n = row_count;
    insert into monitoring._statement_texts (userid, dbid, queryid, query)
    select x.userid, x.dbid, x.queryid, x.query from monitoring._slow_statements as x where x.query is not null
    on conflict (userid, dbid, queryid) do nothing;
    delete from monitoring._statement_texts as c
    where not exists (
      select 1 from monitoring._slow_statements as x
      where x.userid = c.userid and x.dbid = c.dbid and x.queryid = c.queryid
    );
  exception when object_not_in_prerequisite_state or insufficient_privilege then
    return 0;
  end;
  return v_n;
end
$$;

comment on function monitoring._snapshot_slow_queries(interval) is
'Internal: take the slow statements of pg_stat_statements (mean time at least slow_query_target_ms) into '
'_slow_statements, with their texts (cached in _statement_texts, read from the file once). Run by the '
'evaluate job with p_max_age 4.5 minutes (a snapshot every fifth minute) and by the refresh-rollups job. Returns '
'the statements taken, null when the snapshot was younger than p_max_age and kept.';

create or replace function monitoring.get_slow_queries()
returns table (
  queryid bigint,
  role_name text,
  calls bigint,
  mean_ms numeric,
  max_ms numeric,
  total_ms numeric,
  rows bigint,
  level text,
  query text
)
language plpgsql
stable
security definer -- the snapshot is locked away; it holds other roles' statements
set search_path = ''
set jit = off
as $$
begin
  return query
  select
    s.queryid,
    r.rolname::text,
    s.calls,
    s.mean_ms,
    s.max_ms,
    s.total_ms,
    s.rows,
    case when s.mean_ms >= t.slow_query_alert_ms then 'alert' else 'slow' end,
    s.query
  from monitoring._slow_statements as s
  cross join monitoring.health_thresholds as t
  left join pg_catalog.pg_roles as r on s.userid = r.oid
  where
    t.id
    and s.dbid = (select d.oid from pg_catalog.pg_database as d where d.datname = pg_catalog.current_database())
    and s.mean_ms >= t.slow_query_target_ms
  order by s.mean_ms desc
  limit 100;
end
$$;

comment on function monitoring.get_slow_queries() is
'monitoring.slow_queries: statements of this database whose mean execution time is at least '
'health_thresholds.slow_query_target_ms (100 ms), level ''alert'' from slow_query_alert_ms (500 ms), as '
'pg_stat_statements had them at the last snapshot (at most 5 minutes old). Empty where '
'extensions.pg_stat_statements is not installed or not preloaded.';

-- =============================================================================================
-- Views
-- =============================================================================================
create or replace view monitoring.delivery_stats as
select * from monitoring.get_delivery_stats();

comment on view monitoring.delivery_stats is
'How many notifications were created and how they ended, per window: one row each for 1h, 24h and '
'7d (window_name) with total, counts by status (sent, failed, pending, processing, delivered, read), '
'delivery_rate (% accepted by WhatsApp: sent, delivered or read; 100 when no rows), accepted, and the receipts: '
'delivered_pct and read_pct (% of accepted), avg_seconds_to_read (read_at - sent_at). Live: new rows count at '
'once, later changes after the next rollup refresh (<= 1 min).';

create or replace view monitoring.delivery_stats_24h as
select * from monitoring.get_delivery_stats_24h();

comment on view monitoring.delivery_stats_24h is
'The spec''s "delivery rate for last 24 hours" query: total, successful, failed, delivery_rate. Equal to it '
'on data without receipts; successful also counts delivered and read messages (the spec''s query counts only '
'status sent), and an empty window gives 0, 0, 0, 100 where the spec query gives NULLs.';

create or replace view monitoring.top_errors_24h as
select * from monitoring.get_top_errors_24h();

comment on view monitoring.top_errors_24h is
'The spec''s "top errors in last 24 hours": the 10 most frequent error types with count and '
'last_occurrence (ties broken by error_type).';

create or replace view monitoring.error_trends as
select * from monitoring.get_error_trends();

comment on view monitoring.error_trends is
'Errors per type per UTC day for the last 30 days (the weekly "review error patterns" task): '
'day, error_type, error_count, last_occurrence; newest day first.';

create or replace view monitoring.active_sessions as
select * from monitoring.get_active_sessions();

comment on view monitoring.active_sessions is
'The spec''s "check active sessions" query (session_id, phone_number, is_active, updated_at, '
'hours_since_update) with phone numbers masked (+55*******9999).';

create or replace view monitoring.connection_status as
select * from monitoring.get_connection_status();

comment on view monitoring.connection_status is
'Every WhatsApp session: connection_state, state_since, down_since (last moment known connected, '
'null while connected), minutes_down, last_connected_at. Active sessions first.';

create or replace view monitoring.queue_stats as
select * from monitoring.get_queue_stats();

comment on view monitoring.queue_stats is
'Queue health: backlog (pending, processing) and age of the oldest pending row now, and queue '
'time (processing_started_at - created_at) avg and p95 in seconds for rows created in the last '
'15m and 1h (window_name). Target < 30 s, alert > 60 s. p95 from histogram buckets.';

create or replace view monitoring.delivery_latency as
select * from monitoring.get_delivery_latency();

comment on view monitoring.delivery_latency is
'Delivery time (sent_at - created_at) in seconds for rows created in the last 1h and 24h '
'(window_name): sent_count, avg (exact), p50, p95, p99 (from histogram buckets, see '
'monitoring._latency_edges_ms). Target < 2 s, alert > 5 s.';

create or replace view monitoring.hourly_stats as
select * from monitoring.get_hourly_stats();

comment on view monitoring.hourly_stats is
'Per UTC hour for the last 7 days (168 rows, newest first): total, sent, failed, delivery_rate '
'(% accepted: sent, delivered or read), errors, accepted (the monthly "analyze trends" task).';

create or replace view monitoring.function_stats as
select * from monitoring.get_function_stats();

comment on view monitoring.function_stats is
'Per Edge Function and window (5m, 1h): invocations, errors (status >= 500), error_rate %, avg_ms '
'and p95_ms (exact), from monitoring.record_invocation(). Alerts: > 10 errors in 5 min, > 5 % '
'errors, > 5 s average.';

create or replace view monitoring.slow_queries as
select * from monitoring.get_slow_queries();

comment on view monitoring.slow_queries is
'Statements with mean execution time >= 100 ms (target) from pg_stat_statements, level ''alert'' '
'from 500 ms; empty where pg_stat_statements is missing. Thresholds in monitoring.health_thresholds.';
