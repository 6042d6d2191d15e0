#!/usr/bin/env bash
# `make demo`: the main job on the local engine, as a new user would run it.
set -euo pipefail
cd "$(dirname "$0")/.."
PD=.venv/bin/pydeploy
SECRET=demo-signing-key-$$
PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=.pydeploy/demo-receiver.log

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Start the local engine, apply the migrations, load a demo day (supabase/seed.sql), schedule the jobs"
url=$($PD up --seed)

step "2. Migrations, as pydeploy and as the Supabase CLI see them"
$PD status
node_modules/.bin/supabase migration list --db-url "${url}?sslmode=disable" 2>/dev/null | sed -n '/Local/,$p'

step "3. What admins see in the SQL editor"
for q in "select * from monitoring.delivery_stats" \
         "select * from monitoring.top_errors_24h" \
         "select session_id, phone_number, is_active, round(hours_since_update, 2) as hours_since_update from monitoring.active_sessions" \
         "select window_name, sent_count, avg_seconds, p50_seconds, p95_seconds, p99_seconds from monitoring.delivery_latency"; do
  echo "-- $q"
  psql "$url" -P pager=off -c "$q"
done
echo "-- select jsonb_pretty(monitoring.health())"
psql "$url" -P pager=off -Atc "select jsonb_pretty(monitoring.health())"

step "3b. Exact numbers after a late recovery (docs/views.md): an outage's stuck messages go out hours later"
SPEC24="SELECT COUNT(*) as total, SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) as successful, SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) as failed, ROUND(100.0 * SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) / COUNT(*), 2) as delivery_rate FROM whatsapp_notifications WHERE created_at > NOW() - INTERVAL '24 hours'"
psql "$url" -qAt -c "insert into public.whatsapp_notifications (order_id, phone_number, status, created_at)
  select 'outage-' || i, '+5511988887777', 'pending', now() - interval '1 hour' - i * interval '34 seconds'
  from generate_series(1, 2000) as i" >/dev/null
psql "$url" -qAt -c "select monitoring.refresh_rollups()" >/dev/null
echo "-- 2,000 messages created 1 to 20 hours ago are stuck pending:"
psql "$url" -P pager=off -c "select * from monitoring.delivery_stats_24h"
psql "$url" -qAt -c "update public.whatsapp_notifications set status = case when right(order_id, 1) in ('0', '4') then 'failed' else 'sent' end,
  sent_at = case when right(order_id, 1) in ('0', '4') then null else now() end where order_id like 'outage-%'" >/dev/null
echo "-- the connection is back: 1,600 go out, 400 fail. After the every-minute job (select monitoring.refresh_rollups()):"
psql "$url" -qAt -c "select monitoring.refresh_rollups()" >/dev/null
psql "$url" -P pager=off -c "select * from monitoring.delivery_stats_24h"
echo "-- the spec's own query on the same rows (it counts only status 'sent'; read receipts are the one difference):"
psql "$url" -P pager=off -c "$SPEC24"
echo "-- read receipts are their own figures, never failures:"
psql "$url" -P pager=off -c "select window_name, total, accepted, delivery_rate, delivered_pct, read_pct, avg_seconds_to_read from monitoring.delivery_stats"

step "4. A webhook receiver on 127.0.0.1:$PORT receives real alerts (signed, through pg_net)"
mkdir -p .pydeploy
$PD receiver --port "$PORT" --secret "$SECRET" > "$LOG" 2>&1 &
RECEIVERS=$!
trap 'kill $RECEIVERS 2>/dev/null || true' EXIT
sleep 0.5
PYDEPLOY_SIGNING_SECRET=$SECRET $PD channel add demo --kind webhook --url "http://127.0.0.1:$PORT/alerts" --min-severity info
$PD channel test demo
echo "-- pydeploy monitor --notify   (evaluates every rule now and sends what fires)"
$PD monitor --notify || true
for _ in $(seq 1 40); do grep -q "firing from" "$LOG" && grep -c "firing from" "$LOG" | grep -qv '^1$' && break; sleep 0.5; done
echo "-- what the receiver got:"
cat "$LOG"

step "5. When an endpoint fails: nothing is lost, it is retried or dead-lettered (docs/reliability.md)"
FLAKY=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
GONE=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PD receiver --port "$FLAKY" --status 503 > .pydeploy/demo-flaky.log 2>&1 &
RECEIVERS="$RECEIVERS $!"
$PD receiver --port "$GONE" --status 410 > .pydeploy/demo-gone.log 2>&1 &
RECEIVERS="$RECEIVERS $!"
sleep 0.5
$PD channel add flaky --kind webhook --url "http://127.0.0.1:$FLAKY/alerts" --min-severity info
$PD channel add gone --kind webhook --url "http://127.0.0.1:$GONE/alerts" --min-severity info
$PD channel test flaky || true
$PD channel test gone || true
q="select channel, status, attempts, last_status_code, last_error, next_attempt_at from monitoring.deliveries where channel in ('flaky', 'gone') order by channel"
echo "-- $q"
psql "$url" -P pager=off -c "$q"
echo "flaky (503): kept and retried with backoff until max_attempts, then dead-lettered."
echo "gone (410): dead-lettered at once; fix the channel, then: select monitoring.retry_dead_deliveries();"
echo "-- select channel, attempts, last_error from monitoring.dead_letters"
psql "$url" -P pager=off -c "select channel, attempts, last_error from monitoring.dead_letters"
$PD channel remove flaky >/dev/null
$PD channel remove gone >/dev/null

step "5b. The app's own functions: a Cloudflare Pages app (workerd) reports through the ingest Edge Function"
KEY=$($PD ingest-key rotate --grace 0 2>/dev/null)
FPORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PPORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PD functions serve --port "$FPORT" > .pydeploy/demo-functions.log 2>&1 &
RECEIVERS="$RECEIVERS $!"
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$FPORT/functions/v1/" && break; sleep 0.5; done
MONITORING_INGEST_URL="http://127.0.0.1:$FPORT/functions/v1/ingest" MONITORING_INGEST_KEY="$KEY" \
SUPABASE_URL="http://127.0.0.1:$FPORT" SUPABASE_ANON_KEY=demo-anon WHATSAPP_API_KEY=demo WHATSAPP_SESSION=demo \
  node cloudflare/test/serve.mjs "$PPORT" > .pydeploy/demo-pages.log 2>&1 &
RECEIVERS="$RECEIVERS $!"
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$PPORT/__monitoring/stats" && break; sleep 0.5; done
echo "-- the app (functions/_middleware.ts in workerd) answers: 20 x /api/ok, 15 x /api/fail (502), 3 x /api/throw, 2 x /api/send?ok=0"
for _ in $(seq 1 20); do curl -s -o /dev/null "http://127.0.0.1:$PPORT/api/ok"; done
for _ in $(seq 1 15); do curl -s -o /dev/null "http://127.0.0.1:$PPORT/api/fail"; done
for _ in $(seq 1 3); do curl -s -o /dev/null "http://127.0.0.1:$PPORT/api/throw"; done
for i in 1 2; do curl -s -o /dev/null "http://127.0.0.1:$PPORT/api/send?ok=0&order=demo-$i"; done
echo "-- curl http://127.0.0.1:$PPORT/api/health   (the spec's URL on the Pages side, anonymous: the spec's shape only)"
curl -s "http://127.0.0.1:$PPORT/api/health"; echo
sleep 2.5   # the middleware ships its batch within a second, after the responses
q="select function_name, window_name, invocations, errors, error_rate, avg_ms from monitoring.function_stats where function_name like '/api/%' and window_name = '5m' order by function_name"
echo "-- $q"
psql "$url" -P pager=off -c "$q"
q="select service, action, level, lines_1h, last_status, last_message from monitoring.recent_app_errors"
echo "-- $q"
psql "$url" -P pager=off -c "$q"
echo "-- pydeploy monitor --notify   (function_errors fires for /api/fail: more than 10 errors in 5 minutes)"
$PD monitor --notify || true
for _ in $(seq 1 40); do grep -q "/api/fail" "$LOG" && break; sleep 0.5; done
echo "-- what the receiver got for the app's functions:"
grep -A3 "/api/fail" "$LOG" | head -12 || true

step "5c. The spec's daily maintenance checklist as a digest (pydeploy report --digest; scheduled by pg_cron, docs/digests.md)"
echo "-- pydeploy report --digest daily   (select monitoring.digest('daily'): yesterday, UTC)"
$PD report --digest daily || true

step "6. The dashboard (pydeploy report)"
$PD report

step "7. The deployment verifies end to end (pydeploy verify)"
$PD verify || true

$PD channel remove demo >/dev/null 2>&1 || true

step "8. The dashboard in a browser (pydeploy dashboard: ProductionMonitoring.tsx as a page, built by make web)"
if [ -f .pydeploy/dashboard.pid ] && kill -0 "$(cat .pydeploy/dashboard.pid)" 2>/dev/null; then
  kill "$(cat .pydeploy/dashboard.pid)" 2>/dev/null || true   # the one a previous demo started
  sleep 1
fi
DPORT=54323
.venv/bin/python -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $DPORT))" 2>/dev/null || DPORT=0
rm -f .pydeploy/dashboard.url
setsid nohup $PD dashboard --port "$DPORT" > .pydeploy/dashboard.url 2> .pydeploy/dashboard.log < /dev/null &
echo $! > .pydeploy/dashboard.pid
for _ in $(seq 1 120); do [ -s .pydeploy/dashboard.url ] && break; sleep 0.5; done
if [ -s .pydeploy/dashboard.url ]; then
  echo "The dashboard runs in the background (pid $(cat .pydeploy/dashboard.pid)); open this URL (it carries its key):"
  echo
  echo "    $(cat .pydeploy/dashboard.url)"
  echo
  echo "Stop it with: kill \$(cat .pydeploy/dashboard.pid)"
else
  echo "the dashboard did not start; see .pydeploy/dashboard.log" >&2
  tail -5 .pydeploy/dashboard.log >&2 || true
fi

step "Done. The engine keeps running at: $url"
cat <<TXT
Try next:
  psql "\$(.venv/bin/pydeploy url)"        then  select * from monitoring.delivery_stats;
  .venv/bin/pydeploy report --watch        the live dashboard (pg_cron refreshes every minute)
  .venv/bin/pydeploy rules                 the alert rules; change one with pydeploy configure
  .venv/bin/pydeploy silence add --match alertname=low_delivery_rate --duration 1h --comment test
  .venv/bin/pydeploy receiver --status 503  rehearse a failing endpoint (see docs/reliability.md)
  .venv/bin/pydeploy dashboard --open      the dashboard page (make web builds it); see README "Dashboard"
  .venv/bin/pydeploy down                  stop it (add --purge to delete its data)
TXT
