-- Grants: who may use what in schema monitoring (and on the app tables), written once, here.
-- Applied last. Everything starts revoked (also by the default privileges in 05_schema.sql); then
-- service_role gets exactly what the Edge Functions, pydeploy and pg_cron jobs need. The owner
-- (postgres, which runs the migrations and pg_cron) keeps its implicit rights. anon and
-- authenticated get nothing in monitoring, and no truncate/references/trigger on the app tables
-- (they see no row of them either: RLS is on with no policy, see 00_app_tables.sql).

revoke all on schema monitoring from public, anon, authenticated;
grant usage on schema monitoring to service_role, postgres;

-- postgres_exporter's role (docs/integrations.md): no login until an admin gives it one
-- (alter role monitoring_exporter with login password '...'); it may call the exporter_*
-- functions and nothing else in monitoring, and reads no table.
do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'monitoring_exporter') then
    create role monitoring_exporter nologin noinherit;
  end if;
end
$$;

comment on role monitoring_exporter is
'postgres_exporter (prometheus/postgres_exporter_queries.yaml): may only execute monitoring.exporter_*() functions.';

grant usage on schema monitoring to monitoring_exporter;

revoke all on all tables in schema monitoring from public, anon, authenticated, service_role;
revoke all on all sequences in schema monitoring from public, anon, authenticated, service_role;
revoke all on all functions in schema monitoring from public, anon, authenticated, service_role;
revoke all on all procedures in schema monitoring from public, anon, authenticated, service_role;
revoke all on all tables in schema monitoring from monitoring_exporter;
revoke all on all functions in schema monitoring from monitoring_exporter;

revoke truncate, references, trigger
on public.whatsapp_notifications, public.whatsapp_error_logs, public.whatsapp_sessions
from anon, authenticated;

-- tables (app_logs and ingest_batches: deleted by the retention job; written by monitoring.ingest() only)
grant delete, select
on
monitoring.app_logs,
monitoring.ingest_batches
to service_role;

-- tables
grant delete, insert, select
on
monitoring.alert_history,
monitoring.digest_runs,
monitoring.error_log_archive,
monitoring.job_runs,
monitoring.rule_errors
to service_role;

-- history rows are written once; only what was told with a transition is filled in after the run
grant update (event, silenced_by, inhibited_by) on monitoring.alert_history to service_role;

-- tables
grant delete, insert, select, update
on
monitoring.alert_rules,
monitoring.channels,
monitoring.deliveries,
monitoring.digest_hours,
monitoring.inhibit_rules,
monitoring.notification_groups,
monitoring.silences
to service_role;

-- tables
grant insert, select, update
on
monitoring.alerts,
monitoring.rule_state
to service_role;

-- tables
grant select
on
monitoring.error_days,
monitoring.error_hours,
monitoring.error_minutes,
monitoring.function_invocations,
monitoring._limits,
monitoring.health_thresholds,
monitoring.latency_hours,
monitoring.latency_minutes,
monitoring.notification_hours,
monitoring.notification_minutes,
monitoring.rollup_settings,
monitoring.rollup_state
to service_role;

-- tables
grant select, update
on
monitoring.digest_settings,
monitoring.heartbeat,
monitoring.ingest_settings,
monitoring.jobs,
monitoring.log_retention,
monitoring.retention_policies,
monitoring.settings
to service_role;

-- views: read-only
grant select
on
monitoring.active_alerts,
monitoring.active_sessions,
monitoring.connection_status,
monitoring.dead_letters,
monitoring.delivery_latency,
monitoring.delivery_stats,
monitoring.delivery_stats_24h,
monitoring.delivery_status,
monitoring.digests,
monitoring.error_trends,
monitoring.expected_jobs,
monitoring.function_stats,
monitoring.hourly_stats,
monitoring.job_status,
monitoring.log_volume,
monitoring.queue_stats,
monitoring.recent_app_errors,
monitoring.slow_queries,
monitoring.top_errors_24h
to service_role;

-- Owner only: monitoring._secrets (the fallback secret store), monitoring._unlogged_epoch,
-- monitoring._statement_texts, _slow_statements and _slow_snapshot (read through get_slow_queries), and the rollups'
-- change logs (_notification_changes, _error_changes, _refresh_marks: written by the app-table triggers and
-- refresh_rollups(), both security definer).

-- functions service_role may call (views, health(), the alerting API, the jobs' entry points)
grant execute on function
monitoring._alertmanager_endpoint(text),
monitoring._app_logs_retention_batch(timestamptz, integer),
monitoring._ingest_batches_retention_batch(timestamptz, integer),
monitoring._alertmanager_payload(jsonb),
monitoring._breaches(numeric, text, numeric),
monitoring._dashboard_hours(text),
monitoring._mask_phones(text),
monitoring._snapshot_slow_queries(interval),
monitoring._check_alertmanager_url_secret(text, text),
monitoring._check_auth_secret(text, text),
monitoring._channel_payload(text, jsonb),
monitoring._channel_group_payload(text, jsonb),
monitoring._due_rows(jsonb),
monitoring._group_key(jsonb, text[], text),
monitoring._inhibitor_for(jsonb, text),
monitoring._known_labels(),
monitoring._normalize_matchers(jsonb, text),
monitoring._notify_due(timestamptz),
monitoring._validate_inhibit_rule(),
monitoring._webhook_group_payload(jsonb, text, timestamptz),
monitoring._check_error_rate_webhook(monitoring.alert_rules, timestamptz),
monitoring._check_function_availability(monitoring.alert_rules, timestamptz),
monitoring._check_function_errors(monitoring.alert_rules, timestamptz),
monitoring._check_function_latency(monitoring.alert_rules, timestamptz),
monitoring._check_high_error_rate(monitoring.alert_rules, timestamptz),
monitoring._check_low_delivery_rate(monitoring.alert_rules, timestamptz),
monitoring._check_monitor_stalled(monitoring.alert_rules, timestamptz),
monitoring._check_secret(text, text, boolean),
monitoring._check_slow_delivery(monitoring.alert_rules, timestamptz),
monitoring._check_slow_queries(monitoring.alert_rules, timestamptz),
monitoring._check_slow_queue(monitoring.alert_rules, timestamptz),
monitoring._check_stale_session(monitoring.alert_rules, timestamptz),
monitoring._check_whatsapp_disconnected(monitoring.alert_rules, timestamptz),
monitoring._cron_due(text, timestamptz, timestamptz, jsonb),
monitoring._cron_field(text, integer, integer, text[], text, text),
monitoring._cron_last_run(text),
monitoring._cron_matches(jsonb, timestamptz),
monitoring._cron_parse(text, text),
monitoring._cron_period(text),
monitoring._cron_times(text, timestamptz, timestamptz),
monitoring._cron_value(text, integer, text[]),
monitoring._current_net_epoch(),
monitoring._delivery_window(timestamptz, interval),
monitoring._digest_change(numeric, numeric),
monitoring._digest_daily(timestamptz, timestamptz, integer),
monitoring._digest_duration(numeric),
monitoring._digest_episodes(timestamptz, timestamptz),
monitoring._digest_figures(timestamptz, timestamptz),
monitoring._digest_monthly(timestamptz, timestamptz, numeric),
monitoring._digest_payload(text, jsonb),
monitoring._digest_period(text, timestamptz),
monitoring._digest_section(text, text, text[], jsonb),
monitoring._digest_snapshot(timestamptz),
monitoring._digest_threshold_review(timestamptz, timestamptz, numeric),
monitoring._digest_weekly(timestamptz, timestamptz, integer),
monitoring._run_digest(text, timestamptz),
monitoring._validate_digest_settings(),
monitoring._error_count(timestamptz, interval),
monitoring._error_window(timestamptz, interval),
monitoring._evaluate_rule(monitoring.alert_rules, timestamptz, timestamptz),
monitoring._fingerprint(jsonb),
monitoring._function_window(interval, text),
monitoring._function_window_stats(timestamptz, interval, boolean),
monitoring._health_alerts(timestamptz),
monitoring._health_compose(timestamptz),
monitoring._health_database(timestamptz),
monitoring._health_delivery(timestamptz),
monitoring._health_functions(timestamptz),
monitoring._health_scheduler(timestamptz),
monitoring._health_ts(timestamptz),
monitoring._health_whatsapp(timestamptz),
monitoring._heartbeat_ping(timestamptz),
monitoring._hist_quantile(bigint[], numeric),
monitoring._hour_ceil(timestamptz),
monitoring._hour_span(timestamptz, timestamptz),
monitoring._human_interval(interval),
monitoring._invoke_edge_function(text, jsonb),
monitoring._iso(timestamptz),
monitoring._latency_edges_ms(),
monitoring._notification_avg(timestamptz, interval, text),
monitoring._notification_hist(timestamptz, interval, text),
monitoring._notify(monitoring.alerts, monitoring.alert_rules, text, timestamptz),
monitoring._pg_net_implementation(),
monitoring._prometheus_label_name(text),
monitoring._rate(bigint, bigint),
monitoring._record_failure(bigint, timestamptz, integer, text, boolean, boolean),
monitoring._retention_batch(text, timestamptz, integer),
monitoring._retention_start(timestamptz),
monitoring._retention_step(jsonb),
monitoring._run_check(monitoring.alert_rules, timestamptz),
monitoring._severity_rank(text),
monitoring._silence_for(jsonb, timestamptz),
monitoring._silence_matches(jsonb, jsonb),
monitoring._stamp_request_epoch(),
monitoring._transition(monitoring.alert_rules, text, jsonb, numeric, text, boolean, timestamptz),
monitoring._validate_alert_rule(),
monitoring._validate_channel(),
monitoring._validate_finite_times(),
monitoring._validate_heartbeat(),
monitoring._validate_health_thresholds(),
monitoring._validate_job(),
monitoring._validate_limits(),
monitoring._validate_not_null(),
monitoring._validate_retention_policy(),
monitoring._validate_settings(),
monitoring._validate_single_row(),
monitoring._validate_silence(),
monitoring._validate_alertmanager_url(text, text),
monitoring._validate_url(text, text),
monitoring._parse_url(text, text, text, text),
monitoring._watermark(),
monitoring._refresh_for_evaluation(timestamptz, boolean),
monitoring._refresh_error_rollups(timestamptz),
monitoring._webhook_payload(monitoring.alerts, monitoring.alert_rules, text, timestamptz),
monitoring.archived_error_logs(timestamptz, timestamptz),
monitoring.check_error_rate(integer, timestamptz),
monitoring.digest(text, timestamptz),
monitoring.create_silence_as(text, jsonb, text, text),
monitoring.dashboard(text, integer),
monitoring.expire_silence_as(text, bigint),
monitoring.create_silence(jsonb, interval, text, text, timestamptz),
monitoring.dispatch_deliveries(timestamptz, integer),
monitoring.evaluate_rules(timestamptz, text[], boolean, boolean),
monitoring.expire_silence(bigint, timestamptz),
monitoring.exporter_alerts(),
monitoring.exporter_delivery_latency(),
monitoring.exporter_delivery_stats(),
monitoring.exporter_error_counts(),
monitoring.exporter_function_stats(),
monitoring.exporter_jobs(),
monitoring.exporter_outbox(),
monitoring.exporter_queue_stats(),
monitoring.exporter_sessions(),
monitoring.exporter_slow_queries(),
monitoring.exporter_top_errors(),
monitoring.get_active_sessions(timestamptz),
monitoring.get_connection_status(timestamptz),
monitoring.get_delivery_latency(timestamptz),
monitoring.get_delivery_stats(timestamptz),
monitoring.get_delivery_stats_24h(timestamptz),
monitoring.get_error_trends(timestamptz),
monitoring.get_function_stats(timestamptz),
monitoring.get_hourly_stats(timestamptz),
monitoring.get_log_volume(timestamptz),
monitoring.get_recent_app_errors(timestamptz),
monitoring.get_queue_stats(timestamptz),
monitoring._queue_backlog(timestamptz),
monitoring.get_slow_queries(),
monitoring.get_top_errors_24h(timestamptz),
monitoring.health(timestamptz),
monitoring.ingest(text, jsonb, timestamptz),
monitoring.ingest_key_status(timestamptz),
monitoring.mask_phone(text),
monitoring.reconcile_deliveries(timestamptz),
monitoring.record_invocation(text, integer, numeric, timestamptz),
monitoring.refresh_rollups(timestamptz, boolean),
monitoring.resend_alertmanager(timestamptz),
monitoring.retire_previous_ingest_key(),
monitoring.retry_dead_deliveries(bigint[], text, timestamptz),
monitoring.rotate_ingest_key(text, interval),
monitoring.run_job(text),
monitoring.run_retention(timestamptz),
monitoring.schedule_jobs(text),
monitoring.send_digest(text, timestamptz, text[], boolean),
monitoring.set_channel(text, text, text, text, text, text, boolean),
monitoring.set_channel_auth(text, text, text),
monitoring.set_digest(text, boolean, text, text[]),
monitoring.set_heartbeat(text, interval),
monitoring.set_secret(text, text, text),
monitoring.test_channel(text, timestamptz),
monitoring.unschedule_jobs()
to service_role;

-- Owner only: monitoring._validate_limit() (checks rows of monitoring._limits, which only migrations write).

-- Owner only: the ingest validators and helpers behind monitoring.ingest() (security definer:
-- _ingest_shown, _ingest_time_error, _ingest_text_error, _ingest_invocation_error, _ingest_log_error,
-- _ingest_time_pattern, _ingest_key_matches, _ingest_refusal).

-- Owner only: monitoring._get_secret(text) (secrets), the refresh stages behind refresh_rollups()
-- (_recompute_from, _refresh_range, _refresh_notifications, _refresh_errors, _refresh_hours, _refresh_days, and
-- the change detection _notification_minute_sigs, _error_minute_sigs, _changed_minutes) and the app-table trigger
-- functions
-- (_log_notification_change, _log_error_change, _install_rollup_triggers), and the constants behind them
-- (_change_lag, _change_horizon, _error_change_horizon).

-- postgres_exporter: the figures of the views, nothing else
grant execute on function
monitoring.exporter_alerts(),
monitoring.exporter_delivery_latency(),
monitoring.exporter_delivery_stats(),
monitoring.exporter_error_counts(),
monitoring.exporter_function_stats(),
monitoring.exporter_jobs(),
monitoring.exporter_outbox(),
monitoring.exporter_queue_stats(),
monitoring.exporter_sessions(),
monitoring.exporter_slow_queries(),
monitoring.exporter_top_errors()
to monitoring_exporter;

-- Not a grant, but the last thing the schema does: the configuration tables are tiny and never
-- reach autovacuum's thresholds; without statistics the planner guesses thousands of rows, which
-- pushed views such as job_status over the JIT threshold (185 ms instead of 0.3 ms at 10 M
-- notifications, docs/benchmarks.md).
analyze monitoring.settings, monitoring.jobs, monitoring.alert_rules, monitoring.retention_policies,
monitoring.rollup_settings, monitoring.rollup_state, monitoring.health_thresholds, monitoring.channels,
monitoring._limits, monitoring.heartbeat, monitoring.ingest_settings, monitoring.log_retention,
monitoring.digest_settings;
