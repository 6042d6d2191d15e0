#!/usr/bin/env bash
# `make demo`: the main job on the local engine, as a new user would run it.
set -euo pipefail
cd "$(dirname "$0")/.."
PD=.venv/bin/pydeploy

echo "== 1. start the local engine, apply migrations, load the demo day (supabase/seed.sql)"
seed=()
[ -f supabase/seed.sql ] && seed=(--seed)
url=$($PD up "${seed[@]}")

echo
echo "== 2. migrations, as pydeploy and as the Supabase CLI see them"
$PD status
node_modules/.bin/supabase migration list --db-url "${url}?sslmode=disable" 2>/dev/null | sed -n '/Local/,$p'

if psql "$url" -Atqc "select to_regprocedure('monitoring.refresh_rollups(timestamptz,boolean)') is not null" | grep -q t; then
  echo
  echo "== 3. what admins see in the SQL editor"
  psql "$url" -qc "select monitoring.refresh_rollups(p_full => true)" >/dev/null
  for view in delivery_stats top_errors_24h active_sessions connection_status queue_stats delivery_latency function_stats; do
    echo "-- select * from monitoring.$view"
    psql "$url" -P pager=off -c "select * from monitoring.$view limit 10"
  done
  echo "-- select jsonb_pretty(monitoring.health())"
  psql "$url" -P pager=off -Atc "select jsonb_pretty(monitoring.health())"
fi

echo
echo "The engine is running at: $url"
echo "Try:   psql \"\$(.venv/bin/pydeploy url)\"      then   select * from monitoring.delivery_stats;"
echo "Stop:  .venv/bin/pydeploy down   (add --purge to delete its data)"
