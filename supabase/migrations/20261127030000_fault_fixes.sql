-- Delivery fixes found by injecting faults (tests/test_faults.py).
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
revoke all on monitoring._unlogged_epoch from public, anon, authenticated, service_role;

alter table monitoring.deliveries add column if not exists request_epoch uuid;
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
    elsif p_now >= v_delivery.last_attempt_at
      + make_interval(secs => v_settings.http_timeout_ms / 1000.0) + v_settings.response_grace then
      -- still in pg_net's queue (its worker is not running)? withdraw it, so the retry is the only copy
      v_withdrawn := 0;
      if v_queue is not null and v_delivery.request_id is not null then
        begin
          execute format(
            'delete from %s as q where q.id = $1 and q.headers ->> ''X-Idempotency-Key'' = $2', v_queue
          )
          using v_delivery.request_id, v_delivery.idempotency_key::text;
          get diagnostics v_withdrawn = row_count;
        exception when insufficient_privilege then
          v_withdrawn := 0;
        end;
      end if;
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
'status, timeout, error, no response after timeout plus grace (a request still queued in pg_net is withdrawn) or a '
'request lost with pg_net''s unlogged tables is a failed attempt (retry or dead).';

revoke all on function monitoring._current_net_epoch() from public, anon, authenticated;
revoke all on function monitoring._stamp_request_epoch() from public, anon, authenticated;
grant execute on function monitoring._current_net_epoch() to service_role;
grant execute on function monitoring._stamp_request_epoch() to service_role;
