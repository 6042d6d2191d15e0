"""Alerting end to end: real pg_cron, the pg_net stand-in worker, real HTTP receivers on loopback.

One test waits for pg_cron itself (in `postgres`, the database pg_cron serves). The others run
in a database of their own, with its own stand-in worker, and drive the jobs' functions
directly with short retry settings, so they take seconds instead of the minutes pg_cron's
one-minute granularity would need.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from pydeploy.receiver import receiver
from tests.alerting import add_channel, breach_errors, clear_errors, evaluate, payloads, prepare, pump, q, signed_ok


def statuses(url: str) -> list[tuple[str, str, int]]:
    return [(e, s, a) for e, s, a in q(url, "select event, status, attempts from monitoring.deliveries "
                                            "where event <> 'test' order by id")]


# -- with pg_cron firing for real -------------------------------------------------------------
@pytest.mark.slow
def test_pg_cron_fires_the_checks_and_one_signed_firing_notification_arrives(engine_url: str) -> None:
    session = "e2e-cron-session"
    with receiver([200]) as rec:
        try:
            add_channel(engine_url, rec.url + "/cron", "e2e-cron")
            q(engine_url, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, "
                          "connection_state, last_connected_at, updated_at) values "
                          "(%s, '+5511988887777', true, 'disconnected', now() - interval '20 minutes', now())",
              (session,))
            q(engine_url, "select monitoring.schedule_jobs()")
            # the nightly retention command, made to run this minute too: pg_cron must be able to
            # run the anonymous block that commits per batch
            retention_cmd = q(engine_url, "select command from cron.job where jobname = 'monitoring-retention'")[0][0]
            assert retention_cmd == q(engine_url, "select command from monitoring.expected_jobs "
                                                  "where job = 'retention'")[0][0]
            assert retention_cmd.startswith("do $retention$")
            q(engine_url, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
                          "select 'e2e-retention', 'old', now() - interval '40 days' from generate_series(1, 250)")
            runs_before = q(engine_url, "select coalesce(max(id), 0) from monitoring.job_runs "
                                        "where job = 'retention'")[0][0]
            q(engine_url, "select cron.schedule('e2e-retention', '* * * * *', %s)", (retention_cmd,))
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and not any(
                    p.get("alerts", [{}])[0].get("rule") == "whatsapp_disconnected" for p in payloads(rec)):
                time.sleep(1)
            firing = [r for r in rec.requests
                      if json.loads(r.body)["alerts"][0].get("rule") == "whatsapp_disconnected"]
            assert len(firing) == 1, f"expected one firing notification, got {len(firing)}"
            body = json.loads(firing[0].body)
            assert body["status"] == "firing" and body["alerts"][0]["severity"] == "critical"
            assert body["alerts"][0]["runbook"], "every notification carries its runbook"
            assert signed_ok(firing[0])
            ran = q(engine_url, "select count(*) from cron.job_run_details d join cron.job j using (jobid) "
                                "where j.jobname = 'monitoring-evaluate' and d.status = 'succeeded'")
            assert ran[0][0] >= 1, "pg_cron really ran monitoring-evaluate"
            assert q(engine_url, "select monitoring.health() ->> 'status'")[0][0] == "unhealthy"
            while time.monotonic() < deadline and not q(
                    engine_url, "select count(*) from monitoring.job_runs where job = 'retention' and id > %s",
                    (runs_before,))[0][0]:
                time.sleep(0.5)
            retention = q(engine_url, "select ok, error, (detail -> 'deleted' ->> 'whatsapp_error_logs')::int "
                                      "from monitoring.job_runs where job = 'retention' and id > %s "
                                      "order by id limit 1", (runs_before,))
            cron_failures = q(engine_url, "select status, return_message from cron.job_run_details "
                                          "where command = %s and status <> 'succeeded'", (retention_cmd,))
            assert retention, f"pg_cron never completed the retention procedure: {cron_failures}"
            assert retention[0][0] is True and retention[0][2] >= 250, retention
            assert q(engine_url, "select count(*) from public.whatsapp_error_logs "
                                 "where error_type = 'e2e-retention'")[0][0] == 0
        finally:
            q(engine_url, "select cron.unschedule(jobid) from cron.job where jobname = 'e2e-retention'")
            q(engine_url, "select monitoring.unschedule_jobs()")
            q(engine_url, "delete from public.whatsapp_sessions where session_id = %s", (session,))
            q(engine_url, "delete from monitoring.deliveries where channel = 'e2e-cron'")
            q(engine_url, "delete from monitoring.channels where name = 'e2e-cron'")
            q(engine_url, "delete from monitoring.alerts")
            q(engine_url, "delete from monitoring.rule_state")
            q(engine_url, "update monitoring.jobs set scheduled_at = null")


# -- driven directly ----------------------------------------------------------------------------
def test_breach_gives_exactly_one_signed_firing_then_one_resolved(alert_db: str) -> None:
    with receiver([200]) as rec:
        add_channel(alert_db, rec.url)
        breach_errors(alert_db)
        evaluate(alert_db)
        evaluate(alert_db)  # still breached: no second notification
        pump(alert_db, lambda: statuses(alert_db) == [("firing", "delivered", 1)])
        assert len(rec.requests) == 1
        assert signed_ok(rec.requests[0])
        assert rec.requests[0].headers["X-Idempotency-Key"]
        fired = payloads(rec)[0]
        assert fired["service"] == "WhatsApp Notifications"
        assert {"severity", "message", "metric", "value"} <= set(fired["alerts"][0])
        clear_errors(alert_db)
        evaluate(alert_db)
        evaluate(alert_db)
        pump(alert_db, lambda: [s for s in statuses(alert_db) if s[0] == "resolved"] == [("resolved", "delivered", 1)])
        assert [p["status"] for p in payloads(rec)] == ["firing", "resolved"]
        assert all(signed_ok(r) for r in rec.requests)


def test_receiver_failing_three_times_gets_it_once_after_retries(alert_db: str) -> None:
    with receiver([500, 500, 500, 200]) as rec:
        add_channel(alert_db, rec.url)
        breach_errors(alert_db)
        evaluate(alert_db)
        pump(alert_db, lambda: statuses(alert_db) == [("firing", "delivered", 4)], timeout=60)
        assert len(rec.requests) == 4
        keys = {r.headers["X-Idempotency-Key"] for r in rec.requests}
        assert len(keys) == 1, "every attempt of one delivery carries the same idempotency key"
        assert len({r.body for r in rec.requests}) == 1


def test_receiver_down_dead_letters_after_the_limit_and_health_degrades(alert_db: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    add_channel(alert_db, f"http://127.0.0.1:{port}/down")
    breach_errors(alert_db)
    evaluate(alert_db)
    pump(alert_db, lambda: statuses(alert_db) == [("firing", "dead", 4)], timeout=60)
    dead = q(alert_db, "select channel, last_error from monitoring.dead_letters")
    assert dead and dead[0][0] == "ops" and "connect" in (dead[0][1] or "").lower()
    health = q(alert_db, "select monitoring.health()")[0][0]
    assert health["status"] in ("degraded", "unhealthy")
    assert health["delivery"]["dead"] >= 1
    # nothing lost: the dead delivery can be retried once the receiver is back
    with receiver([200]) as rec:
        add_channel(alert_db, rec.url)
        assert q(alert_db, "select monitoring.retry_dead_deliveries()")[0][0] == 1
        pump(alert_db, lambda: statuses(alert_db) == [("firing", "delivered", 1)])
        assert len(rec.requests) == 1


def test_silence_suppresses_delivery_but_tracks_state_then_repeat_interval_repeats(alert_db: str) -> None:
    with receiver([200]) as rec:
        add_channel(alert_db, rec.url)
        sid = q(alert_db, "select monitoring.create_silence('{\"alertname\": \"high_error_rate\"}', '1 hour', "
                          "'maintenance', 'e2e')")[0][0]
        breach_errors(alert_db)
        evaluate(alert_db)
        assert q(alert_db, "select state from monitoring.alerts where rule_name = 'high_error_rate'") == [("firing",)]
        assert statuses(alert_db) == []
        hist = q(alert_db, "select to_state, silenced_by from monitoring.alert_history "
                           "where rule_name = 'high_error_rate' order by id")
        assert hist[-1] == ("firing", sid)
        q(alert_db, "select monitoring.expire_silence(%s)", (sid,))
        q(alert_db, "update monitoring.alert_rules set repeat_interval = '1 minute' where name = 'high_error_rate'")
        evaluate(alert_db)
        pump(alert_db, lambda: statuses(alert_db) == [("firing", "delivered", 1)])
        evaluate(alert_db)  # within the repeat interval: nothing new
        assert len(statuses(alert_db)) == 1
        # a minute and more later (instead of sleeping, the last notification is moved back)
        q(alert_db, "update monitoring.alerts set last_notified_at = last_notified_at - interval '61 seconds'")
        evaluate(alert_db)
        pump(alert_db, lambda: [s[0] for s in statuses(alert_db)] == ["firing", "repeat"]
             and statuses(alert_db)[-1][1] == "delivered")
        assert len(rec.requests) == 2


def test_the_watchdog_leaves_the_telling_to_a_running_evaluate_job_and_tells_once_it_stops(alert_db: str) -> None:
    """The watchdog runs every minute beside the evaluate job, which decides the notifications every
    minute: the watchdog decides them only once that job has not succeeded for two minutes, and then
    every minute (not only when its own alert changes)."""
    def told() -> list[str]:
        return [p["status"] for p in payloads(rec) if p["alerts"][0].get("rule") == "high_error_rate"]

    def silence() -> int:
        return q(alert_db, "select monitoring.create_silence('{\"alertname\": \"high_error_rate\"}', '1 hour', "
                           "'maintenance', 'e2e')")[0][0]

    def watchdog() -> None:
        q(alert_db, "select monitoring.run_job('watchdog')")
        for _ in range(5):  # what the dispatch job would send meanwhile
            q(alert_db, "select monitoring.reconcile_deliveries(now()), monitoring.dispatch_deliveries(now())")
            time.sleep(0.2)

    with receiver([200]) as rec:
        add_channel(alert_db, rec.url)
        sid = silence()
        breach_errors(alert_db)
        evaluate(alert_db)
        # the evaluate job succeeded 30 s ago: an alert no longer muted waits for its next run
        q(alert_db, "select monitoring.expire_silence(%s)", (sid,))
        q(alert_db, "insert into monitoring.job_runs (job, started_at, finished_at, ok) "
                    "values ('evaluate', now() - interval '31 seconds', now() - interval '30 seconds', true)")
        watchdog()
        assert told() == []
        # the evaluate job stopped three minutes ago: monitor_stalled fires (high_error_rate muted again)
        sid = silence()
        q(alert_db, "update monitoring.job_runs set started_at = started_at - interval '3 minutes', "
                    "finished_at = finished_at - interval '3 minutes' where job = 'evaluate'")
        watchdog()
        assert q(alert_db, "select state from monitoring.alerts where rule_name = 'monitor_stalled'") == [("firing",)]
        assert told() == []
        # a minute later nothing changed state, but the watchdog still decides: the unmuted alert is told
        q(alert_db, "select monitoring.expire_silence(%s)", (sid,))
        watchdog()
        pump(alert_db, lambda: told() == ["firing"])
        assert told() == ["firing"]


def test_unscheduling_the_checks_trips_the_dead_mans_switch(engine_url: str) -> None:
    with psycopg.connect(engine_url) as c:  # rolled back: cron.job is left as it was
        c.execute("select monitoring.schedule_jobs()")
        c.execute("select monitoring.unschedule_jobs()")
        c.execute("select monitoring.evaluate_rules(now() + interval '5 minutes', array['monitor_stalled'], false)")
        row = c.execute("select state, message from monitoring.alerts where rule_name = 'monitor_stalled'").fetchone()
        c.rollback()
    assert row is not None and row[0] == "firing", row
    assert "monitoring-" in row[1]


def test_a_job_scheduled_again_counts_from_then_not_from_its_last_success(scratch_db) -> None:
    """Unscheduled for maintenance, scheduled again: not stalled before its first new run is due."""
    url = scratch_db()
    prepare(url, fast=False)
    q(url, "insert into monitoring.job_runs (job, started_at, finished_at, ok) "
           "values ('evaluate', now() - interval '1 hour', now() - interval '1 hour', true)")
    q(url, "update monitoring.jobs set scheduled_at = now() - interval '2 hours'")

    def stalled() -> tuple[bool, float]:
        flag = q(url, "select stalled from monitoring.job_status where name = 'monitoring-evaluate'")[0][0]
        ratio = q(url, "select c.value from monitoring.alert_rules as r, "
                       "monitoring._check_monitor_stalled(r, now()) as c "
                       "where r.name = 'monitor_stalled' and c.labels ->> 'job' = 'monitoring-evaluate'")[0][0]
        return flag, float(ratio)

    flag, ratio = stalled()
    assert flag is True and ratio >= 59, "an hour without success is stalled"
    # schedule_jobs() creates the cron job again and stamps scheduled_at
    q(url, "update monitoring.jobs set scheduled_at = now() where name = 'monitoring-evaluate'")
    flag, ratio = stalled()
    assert flag is False and ratio < 1, "counted from the re-scheduling"
