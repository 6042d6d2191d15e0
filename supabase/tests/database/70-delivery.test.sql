-- Test: channels are validated (kinds, URLs, secrets); the dispatcher signs the exact body pg_net
-- sends and reuses the idempotency key; the reconciler confirms 2xx, retries 500s, timeouts and
-- missing responses with exponential backoff, and dead-letters after max_attempts.
-- Responses are simulated by writing net._http_response as pg_net's worker does.
begin;
create extension if not exists pgtap with schema extensions;
select plan(54);

create function pg_temp.error_of(p_sql text)
returns text
language plpgsql
as $$
declare
  v_message text;
  v_hint text;
  v_state text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint, v_state = returned_sqlstate;
  return v_state || ': ' || v_message || ' | hint: ' || coalesce(v_hint, '');
end
$$;

-- The worker's answer to a request, as pg_net writes it.
create function pg_temp.respond(
  p_request bigint, p_status integer, p_at timestamptz, p_timed_out boolean default false, p_error text default null
)
returns void
language sql
as $$
  insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg, created)
  values (p_request, p_status, 'text/plain', '{}', case when p_status is null then null else 'status ' || p_status end,
    p_timed_out, p_error, p_at)
$$;

create function pg_temp.delivery(p_id bigint)
returns monitoring.deliveries
language sql
as $$
  select * from monitoring.deliveries where id = p_id
$$;

-- no other channel or queued delivery gets in the way
delete from monitoring.deliveries;
delete from monitoring.channels;
update monitoring.settings
set
  backoff_base = interval '30 seconds', backoff_cap = interval '30 minutes', max_attempts = 4,
  http_timeout_ms = 5000, response_grace = interval '1 minute';

-- ---------------------------------------------------------------------------------------------
-- channel validation
-- ---------------------------------------------------------------------------------------------

select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'email', 'https://example.com/hook')$$),
  '^23514: channels\.kind must be one of webhook, slack, discord, edge_function, alertmanager \(got ''email''\)',
  'an unknown channel kind is rejected naming channels.kind'
);
select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'webhook', 'http://example.com/hook')$$),
  '^23514: channels\.url must use https \(http only for 127\.0\.0\.1, localhost or \[::1\]\); '
  || 'got http://example\.com \| hint',
  'a plain http URL is rejected naming channels.url'
);
select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'webhook', 'ftp://example.com/hook')$$),
  'channels\.url must use https .* got ftp://example\.com',
  'another scheme is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'slack', 'hooks.slack.com/services/x')$$),
  'channels\.url is not a URL',
  'a URL without scheme is rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'webhook', 'https://user:pass@example.com/hook')$$),
  'channels\.url must not carry credentials',
  'credentials in the URL are rejected'
);
select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'webhook', 'http://127.0.0.2/hook')$$),
  'channels\.url must use https',
  'http to a non-loopback address is rejected'
);
select is(
  pg_temp.error_of($$select monitoring.set_channel('lo1', 'webhook', 'http://localhost:8080/hook')$$)
  || pg_temp.error_of($$select monitoring.set_channel('lo2', 'discord', 'http://[::1]:9/hook')$$)
  || pg_temp.error_of($$select monitoring.set_channel('lo3', 'slack', 'https://hooks.slack.com/services/T/B/x')$$),
  null,
  'https, and http on localhost and [::1], are accepted'
);
select matches(
  pg_temp.error_of($$select monitoring.set_channel('ops', 'webhook', 'https://example.com/hook', null, 'urgent')$$),
  'channels\.min_severity must be one of critical, warning, info',
  'an unknown minimum severity is rejected'
);
select matches(
  pg_temp.error_of($$insert into monitoring.channels (name, kind, url_secret) values ('ops', 'webhook', 'nope')$$),
  '^23514: channels\.url_secret: secret ''nope'' does not resolve .* \| hint: store it first: '
  || 'select monitoring\.set_secret\(''nope'', ''\.\.\.''\);',
  'a URL secret that does not resolve is rejected, with how to store it'
);
select monitoring.set_secret('bad_url', 'http://example.com/x');
select matches(
  pg_temp.error_of($$insert into monitoring.channels (name, kind, url_secret) values ('ops', 'webhook', 'bad_url')$$),
  'channels\.url_secret must use https',
  'a URL secret holding a plain http URL is rejected naming channels.url_secret'
);
select matches(
  pg_temp.error_of($$insert into monitoring.channels (name, kind) values ('ops', 'webhook')$$),
  'channels\.url_secret must name the secret holding the webhook URL',
  'a webhook channel without URL is rejected'
);
select matches(
  pg_temp.error_of(
    $$insert into monitoring.channels (name, kind, function_name) values ('fn', 'edge_function', 'alerts')$$
  ),
  'settings\.project_url_secret: secret ''project_url'' does not resolve',
  'an edge_function channel needs the project URL secret'
);
select matches(
  pg_temp.error_of($$insert into monitoring.channels (name, kind, url_secret, signing_secret)
    values ('ops', 'webhook', 'bad_url', 'missing_key')$$),
  'channels\.url_secret',
  'the first bad field is named'
);
select matches(
  pg_temp.error_of($$select monitoring.set_secret('', 'x')$$),
  'set_secret: p_name',
  'set_secret rejects an empty name'
);
select is(
  monitoring.set_secret('rotated', 'one'),
  case when to_regclass('vault.decrypted_secrets') is null then 'monitoring._secrets' else 'vault' end,
  'secrets go to Vault where the server loads it, else to the locked-down fallback table'
);
select monitoring.set_secret('rotated', 'two');
select is(
  monitoring._get_secret('rotated'), 'two', 'set_secret updates by name (read back from the store it chose)'
);
delete from monitoring.channels;

-- ---------------------------------------------------------------------------------------------
-- dispatch: exact body, signature, idempotency key
-- ---------------------------------------------------------------------------------------------

select monitoring.set_channel('hook', 'webhook', 'http://127.0.0.1:8080/hook', 'k3y', 'info');
select ok(
  (select url_secret = 'alerting_hook_url' and signing_secret = 'alerting_hook_signing' from monitoring.channels),
  'set_channel stores the URL and the signing key as named secrets'
);

select monitoring.test_channel('hook', '2030-01-01 00:00+00');
select is(
  monitoring.dispatch_deliveries('2030-01-01 00:00+00'),
  '{"sent": 1, "failed": 0}'::jsonb,
  'the dispatcher sends the due delivery'
);
select results_eq(
  $$select status, attempts, request_id is not null from monitoring.deliveries$$,
  $$values ('sending'::text, 1, true)$$,
  'it is now sending, attempt 1, with the pg_net request id'
);
select ok(
  (
    select q.body = convert_to(d.body, 'UTF8') and d.body = d.payload::text
    from monitoring.deliveries as d
    inner join net.http_request_queue as q on d.request_id = q.id
  ),
  'pg_net sends exactly the stored body'
);
select is(
  (
    select q.headers ->> 'X-Signature'
    from monitoring.deliveries as d
    inner join net.http_request_queue as q on d.request_id = q.id
  ),
  (
    select 'sha256=' || encode(extensions.hmac(convert_to(d.body, 'UTF8'), convert_to('k3y', 'UTF8'), 'sha256'), 'hex')
    from monitoring.deliveries as d
  ),
  'X-Signature is sha256=<hex HMAC-SHA256 of the exact body with the signing key>'
);
select ok(
  (
    select
      q.headers ->> 'X-Idempotency-Key' = d.idempotency_key::text
      and q.headers ->> 'Content-Type' = 'application/json'
      and q.url = 'http://127.0.0.1:8080/hook'
      and q.timeout_milliseconds = 5000
    from monitoring.deliveries as d
    inner join net.http_request_queue as q on d.request_id = q.id
  ),
  'the request carries X-Idempotency-Key, JSON content type, the channel URL and the timeout'
);
select is(
  monitoring.dispatch_deliveries('2030-01-01 00:00:10+00') ->> 'sent', '0', 'a sending delivery is not sent again'
);

select pg_temp.respond((select request_id from monitoring.deliveries), 200, '2030-01-01 00:00:01+00');
select is(
  monitoring.reconcile_deliveries('2030-01-01 00:00:20+00'),
  '{"failed": 0, "waiting": 0, "delivered": 1}'::jsonb,
  'a 2xx response confirms the delivery'
);
select results_eq(
  $$select status, delivered_at, last_status_code from monitoring.deliveries$$,
  $$values ('delivered'::text, timestamptz '2030-01-01 00:00:20+00', 200)$$,
  'delivered, with the status code'
);

-- ---------------------------------------------------------------------------------------------
-- 500 three times, then 200: delivered once, after retries, with one idempotency key
-- ---------------------------------------------------------------------------------------------

delete from monitoring.deliveries;
select monitoring.test_channel('hook', '2030-01-02 00:00+00');
select monitoring.dispatch_deliveries('2030-01-02 00:00+00');
select pg_temp.respond((select request_id from monitoring.deliveries), 500, '2030-01-02 00:00:01+00');
select monitoring.reconcile_deliveries('2030-01-02 00:01+00');
select results_eq(
  $$select status, attempts, next_attempt_at, last_status_code from monitoring.deliveries$$,
  $$values ('retrying'::text, 1, timestamptz '2030-01-02 00:01:30+00', 500)$$,
  'a 500 is a failed attempt: retry after the backoff base (30 s)'
);
select matches(
  (select last_error from monitoring.deliveries), '^HTTP 500: status 500', 'the error says what came back'
);
select
  is(
    monitoring.dispatch_deliveries('2030-01-02 00:01:10+00') ->> 'sent', '0', 'nothing is sent before next_attempt_at'
  );

select monitoring.dispatch_deliveries('2030-01-02 00:02+00');
select pg_temp.respond((select request_id from monitoring.deliveries), 500, '2030-01-02 00:02:01+00');
select monitoring.reconcile_deliveries('2030-01-02 00:03+00');
select is(
  (select next_attempt_at from monitoring.deliveries),
  timestamptz '2030-01-02 00:04+00',
  'the second failure waits twice as long (60 s)'
);

select monitoring.dispatch_deliveries('2030-01-02 00:04+00');
select pg_temp.respond((select request_id from monitoring.deliveries), 500, '2030-01-02 00:04:01+00');
select monitoring.reconcile_deliveries('2030-01-02 00:05+00');
select results_eq(
  $$select status, attempts, next_attempt_at from monitoring.deliveries$$,
  $$values ('retrying'::text, 3, timestamptz '2030-01-02 00:07+00')$$,
  'the third failure waits 120 s'
);

select monitoring.dispatch_deliveries('2030-01-02 00:07+00');
select pg_temp.respond((select request_id from monitoring.deliveries), 200, '2030-01-02 00:07:01+00');
select monitoring.reconcile_deliveries('2030-01-02 00:08+00');
select results_eq(
  $$select status, attempts from monitoring.deliveries$$,
  $$values ('delivered'::text, 4)$$,
  'the fourth attempt (200) delivers it'
);
select is(
  (
    select count(distinct q.headers ->> 'X-Idempotency-Key')::integer
    from net.http_request_queue as q
    where q.timeout_milliseconds = 5000 and q.body = convert_to((select d.body from monitoring.deliveries as d), 'UTF8')
  ),
  1,
  'all four attempts carried the same idempotency key'
);
select is(
  (
    select count(distinct q.headers ->> 'X-Signature')::integer
    from net.http_request_queue as q
    where q.body = convert_to((select d.body from monitoring.deliveries as d), 'UTF8')
  ),
  1,
  'and the same body and signature'
);

-- ---------------------------------------------------------------------------------------------
-- no response, timeouts, dead letters
-- ---------------------------------------------------------------------------------------------

delete from monitoring.deliveries;
select monitoring.test_channel('hook', '2030-01-03 00:00+00');
select monitoring.dispatch_deliveries('2030-01-03 00:00+00');
select is(
  monitoring.reconcile_deliveries('2030-01-03 00:00:30+00') ->> 'waiting',
  '1',
  'no response yet within timeout plus grace: still waiting'
);
select monitoring.reconcile_deliveries('2030-01-03 00:01:06+00');
select results_eq(
  $$select status, attempts, next_attempt_at from monitoring.deliveries$$,
  $$values ('retrying'::text, 1, timestamptz '2030-01-03 00:01:36+00')$$,
  'no response after timeout plus grace is a failed attempt, retried'
);
select matches(
  (select last_error from monitoring.deliveries), '^no response for request', 'the error says no response'
);

select monitoring.dispatch_deliveries('2030-01-03 00:02+00');
select
  pg_temp.respond(
    (select request_id from monitoring.deliveries), null, '2030-01-03 00:02:05+00', true, 'Timeout was reached'
  );
select monitoring.reconcile_deliveries('2030-01-03 00:03+00');
select results_eq(
  $$select status, attempts, last_error from monitoring.deliveries$$,
  $$values ('retrying'::text, 2, 'Timeout was reached'::text)$$,
  'a timed-out request is a failed attempt'
);

select monitoring.dispatch_deliveries('2030-01-03 00:04+00');
select pg_temp.respond((select request_id from monitoring.deliveries), 200, '2030-01-02 00:00+00');
select is(
  monitoring.reconcile_deliveries('2030-01-03 00:04:30+00') ->> 'delivered',
  '0',
  'a response written long before the request (a reused request id) is not taken as its answer'
);
select pg_temp.respond((select request_id from monitoring.deliveries), 502, '2030-01-03 00:04:01+00');
select monitoring.reconcile_deliveries('2030-01-03 00:05+00');
select monitoring.dispatch_deliveries('2030-01-03 00:10+00');
select pg_temp.respond((select request_id from monitoring.deliveries), 503, '2030-01-03 00:10:01+00');
select monitoring.reconcile_deliveries('2030-01-03 00:11+00');
select results_eq(
  $$select status, attempts, dead_at, next_attempt_at from monitoring.deliveries$$,
  $$values ('dead'::text, 4, timestamptz '2030-01-03 00:11+00', null::timestamptz)$$,
  'after max_attempts (4) the delivery is dead'
);
select is((select count(*)::integer from monitoring.dead_letters), 1, 'it shows in dead_letters');
select results_eq(
  $$select channel, dead, queued, retrying from monitoring.delivery_status where channel = 'hook'$$,
  $$values ('hook'::text, 1::bigint, 0::bigint, 0::bigint)$$,
  'and in delivery_status'
);
select is(
  monitoring.health('2030-01-03 00:12+00') -> 'delivery' ->> 'level',
  'degraded',
  'a dead letter degrades health()'
);
select is(monitoring.dispatch_deliveries('2030-01-03 01:00+00') ->> 'sent', '0', 'a dead delivery is never sent again');
create temp table dead_key as select idempotency_key from monitoring.dead_letters;
select is(monitoring.retry_dead_deliveries(p_now => '2030-01-03 02:00+00'), 1, 'dead letters can be requeued');
select results_eq(
  $$select d.status, d.attempts, d.idempotency_key = k.idempotency_key from monitoring.deliveries as d, dead_key as k$$,
  $$values ('retrying'::text, 0, true)$$,
  'a requeued delivery starts again, keeping its idempotency key'
);

-- ---------------------------------------------------------------------------------------------
-- configuration failures
-- ---------------------------------------------------------------------------------------------

delete from monitoring.deliveries;
select monitoring.test_channel('hook', '2030-01-04 00:00+00');
delete from monitoring._secrets
where name = 'alerting_hook_signing';
do $$
begin
  if to_regclass('vault.secrets') is not null then
    execute $sql$delete from vault.secrets where name = 'alerting_hook_signing'$sql$;
  end if;
end
$$;
select is(
  monitoring.dispatch_deliveries('2030-01-04 00:00+00'),
  '{"sent": 0, "failed": 1}'::jsonb,
  'a signing secret that no longer resolves fails the attempt'
);
select matches(
  (select last_error from monitoring.deliveries),
  'channels\.signing_secret: secret alerting_hook_signing does not resolve',
  'naming the secret'
);
select is((select status from monitoring.deliveries), 'retrying', 'and is retried (the secret may come back)');
update monitoring.channels set enabled = false
where name = 'hook';
select monitoring.dispatch_deliveries('2030-01-04 01:00+00');
select results_eq(
  $$select status, last_error from monitoring.deliveries$$,
  $$values ('dead'::text, 'channel hook is disabled'::text)$$,
  'a delivery to a disabled channel is dead-lettered'
);

-- ---------------------------------------------------------------------------------------------
-- formats: slack, discord, edge_function
-- ---------------------------------------------------------------------------------------------

delete from monitoring.deliveries;
select monitoring.set_channel('chat', 'slack', 'https://hooks.slack.com/services/T/B/x', null, 'info');
select monitoring.set_channel('disc', 'discord', 'https://discord.com/api/webhooks/1/x', null, 'info');
select monitoring.test_channel('chat');
select monitoring.test_channel('disc');
select ok(
  (
    select payload ? 'text' and jsonb_typeof(payload -> 'blocks') = 'array' and payload::text like '%Runbook%'
    from monitoring.deliveries
    where channel = 'chat'
  ),
  'a slack payload is {text, blocks} and carries the runbook'
);
select ok(
  (
    select payload ? 'content' and payload -> 'embeds' -> 0 -> 'fields' @> '[{"name": "Runbook"}]'
    from monitoring.deliveries
    where channel = 'disc'
  ),
  'a discord payload is {content, embeds} with a Runbook field'
);

select monitoring.set_secret('project_url', 'https://abc.supabase.co/');
select monitoring.set_secret('service_role_key', 'service-key-123');
select monitoring.set_channel('fn', 'edge_function', null, null, 'info', 'alert-receiver');
select monitoring.test_channel('fn', '2030-01-05 00:00+00');
select monitoring.dispatch_deliveries('2030-01-05 00:00+00');
select results_eq(
  $$
  select q.url, q.headers ->> 'Authorization'
  from monitoring.deliveries as d
  inner join net.http_request_queue as q on d.request_id = q.id
  where d.channel = 'fn'
  $$,
  $$values ('https://abc.supabase.co/functions/v1/alert-receiver'::text, 'Bearer service-key-123'::text)$$,
  'an edge_function channel posts to <project_url>/functions/v1/<name> with the service key'
);
select ok(
  (
    select payload ?& array['timestamp', 'service', 'alerts'] from monitoring.deliveries
    where channel = 'fn'
  ),
  'with the webhook payload'
);
select is(
  (
    select count(*)::integer from monitoring.deliveries
    where channel in ('chat', 'disc') and status = 'sending'
  ),
  2,
  'slack and discord deliveries were sent in the same run'
);

select * from finish();
rollback;
