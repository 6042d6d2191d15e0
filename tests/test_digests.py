"""Digests (issue 15, item 5): the spec's maintenance checklists built in Postgres, sent through the outbox.

Real engine, real receivers on loopback and the pg_net worker (the real one where it is built, else the
stand-in): the data is written to the app tables and the alert history, the rollups are refreshed as
the every-minute job does, and the digest's figures are checked exactly.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import psycopg
import pytest

from pydeploy.receiver import receiver
from tests.alerting import SECRET, prepare, pump, q

# yesterday (UTC) and the previous day: the daily digest of now() covers yesterday
YESTERDAY = "date_trunc('day', now() at time zone 'utc') at time zone 'utc' - interval '1 day'"


def seed_yesterday(url: str) -> None:
    """100 messages yesterday 10:00-10:59 (90 accepted, 10 failed), 10 errors (7 timeout, 3 invalid_number),
    WhatsApp disconnected from 12:00 to 12:30 (whatsapp_disconnected firing, then resolved)."""
    q(url, "insert into public.whatsapp_notifications (phone_number, status, created_at, processing_started_at, "
           "sent_at) select '+5511999990000', case when g <= 90 then 'sent' else 'failed' end, "
           f"{YESTERDAY} + interval '10 hours' + g * interval '30 seconds', "
           f"{YESTERDAY} + interval '10 hours' + g * interval '30 seconds' + interval '4 seconds', "
           f"case when g <= 90 then {YESTERDAY} + interval '10 hours' + g * interval '30 seconds' "
           "+ interval '6 seconds' end from generate_series(1, 100) as g")
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
           "select case when g <= 7 then 'timeout' else 'invalid_number' end, 'digest', "
           f"{YESTERDAY} + interval '11 hours' + g * interval '1 minute' from generate_series(1, 10) as g")
    labels = json.dumps({"alertname": "whatsapp_disconnected", "severity": "critical", "area": "whatsapp"})
    q(url, "insert into monitoring.alert_history (fingerprint, rule_name, labels, from_state, to_state, value, "
           f"message, occurred_at) values ('fp-wa', 'whatsapp_disconnected', %s, 'pending', 'firing', 6, 'down', "
           f"{YESTERDAY} + interval '12 hours'), ('fp-wa', 'whatsapp_disconnected', %s, 'firing', 'resolved', 0, "
           f"'up', {YESTERDAY} + interval '12 hours 30 minutes')", (labels, labels))
    q(url, "select monitoring.refresh_rollups(p_full => true)")


def sections(digest: dict) -> dict[str, dict]:
    return {s["key"]: s for s in digest["sections"]}


def test_daily_digest_reads_the_day_from_the_rollups_and_alert_history(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url)
    seed_yesterday(url)
    digest = q(url, "select monitoring.digest('daily')")[0][0]
    assert digest["kind"] == "daily"
    assert [s["key"] for s in digest["sections"]] == ["connection", "delivery", "criticalErrors", "alerts"]
    s = sections(digest)
    assert s["connection"]["data"]["downSeconds"] == 1800
    assert s["connection"]["data"]["disconnections"] == 1 and s["connection"]["data"]["reconnects"] == 1
    d = s["delivery"]["data"]
    assert (d["messages"], d["accepted"], d["failed"], d["deliveryRate"]) == (100, 90, 10, 90.0)
    assert d["hoursCovered"] == 2, "the hours with rows: 10:00 (messages) and 11:00 (errors)"
    assert d["avgQueueS"] == 4.0 and d["avgDeliveryS"] == 6.0
    assert d["worstHour"]["messages"] == 100 and d["worstHour"]["deliveryRate"] == 90.0
    c = s["criticalErrors"]["data"]
    assert c["errors"] == 10
    assert c["topErrorTypes"] == [{"type": "timeout", "count": 7}, {"type": "invalid_number", "count": 3}]
    assert [a["rule"] for a in c["criticalAlerts"]] == ["whatsapp_disconnected"]
    a = s["alerts"]["data"]
    assert (a["fired"], a["resolved"]) == (1, 1)
    assert a["byRule"] == [{"rule": "whatsapp_disconnected", "severity": "critical", "fired": 1, "resolved": 1}]
    # people read lines
    assert "WhatsApp down (whatsapp_disconnected firing): 30 min; 1 disconnection(s), 1 reconnect(s)." in \
        s["connection"]["lines"]
    assert s["delivery"]["lines"][0].startswith("100 messages, 90 accepted, 10 failed: delivery rate 90.00 %")


def test_a_scheduled_digest_arrives_once_per_period_on_a_webhook_slack_and_discord(alert_db: str) -> None:
    url = alert_db
    seed_yesterday(url)
    with receiver([200] * 10) as rec:
        q(url, "select monitoring.set_channel('audit', 'webhook', %s, %s, 'critical')", (rec.url + "/hook", SECRET))
        q(url, "select monitoring.set_channel('ops-slack', 'slack', %s)", (rec.url + "/slack",))
        q(url, "select monitoring.set_channel('ops-discord', 'discord', %s)", (rec.url + "/discord",))
        result = q(url, "select monitoring.set_digest('daily', p_channels => "
                        "array['audit', 'ops-slack', 'ops-discord'])")[0][0]
        assert result["channels"] == ["audit", "ops-slack", "ops-discord"] and result["enabled"] is True
        first = q(url, "select monitoring.run_job('digest-daily')")[0][0]
        assert first["ok"] is True and first["result"]["queued"] == 3, first
        again = q(url, "select monitoring.run_job('digest-daily')")[0][0]
        assert again["result"]["skipped"] == "this period was sent already"
        pump(url, lambda: q(url, "select count(*) from monitoring.deliveries where event = 'digest' "
                                 "and status = 'delivered'")[0][0] == 3)
        by_path = {r.path: r for r in rec.requests}
        assert len(rec.requests) == 3 and sorted(by_path) == ["/discord", "/hook", "/slack"], (
            "one message per channel, the second run sent nothing")
        hook = by_path["/hook"]
        assert hook.headers["X-Alert-Event"] == "digest"
        assert hook.signed_by(SECRET), "signed like the alerts"
        body = json.loads(hook.body)
        assert body["alerts"] == [] and body["event"] == "digest" and body["service"]
        assert sections(body["digest"])["delivery"]["data"]["messages"] == 100
        slack = json.loads(by_path["/slack"].body)
        assert slack["text"].endswith(body["digest"]["title"].split(": ", 1)[1])
        texts = [b["text"]["text"] for b in slack["blocks"] if b["type"] == "section"]
        assert texts[0].startswith("*Connection status*\n• WhatsApp down (whatsapp_disconnected firing): 30 min")
        assert len(texts) == 4
        discord = json.loads(by_path["/discord"].body)
        embed = discord["embeds"][0]
        assert [f["name"] for f in embed["fields"]] == [
            "Connection status", "Delivery rates", "Critical errors", "Alerts fired and resolved"]
        assert embed["fields"][2]["value"] == ("• 1 critical alert(s) fired: whatsapp_disconnected at "
                                               + sections(body["digest"])["criticalErrors"]["data"]
                                               ["criticalAlerts"][0]["firedAt"]
                                               + ".\n• 10 errors logged; top types: timeout 7, invalid_number 3.")
    runs = q(url, "select kind, scheduled, queued, channels from monitoring.digest_runs")
    assert runs == [("daily", True, 3, ["audit", "ops-slack", "ops-discord"])]


def test_digests_are_jobs_that_can_be_disabled_and_rescheduled(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url)
    jobs = dict(q(url, "select name, schedule from monitoring.expected_jobs where job like 'digest-%'"))
    assert jobs == {"monitoring-digest-daily": "5 8 * * *", "monitoring-digest-weekly": "10 8 * * 1",
                    "monitoring-digest-monthly": "15 8 1 * *"}
    q(url, "select monitoring.set_digest('monthly', false)")
    q(url, "select monitoring.set_digest('daily', p_schedule => '30 6 * * *')")
    jobs = dict(q(url, "select name, schedule from monitoring.expected_jobs where job like 'digest-%'"))
    assert jobs == {"monitoring-digest-daily": "30 6 * * *", "monitoring-digest-weekly": "10 8 * * 1"}
    listing = {r[0]: r[1:] for r in q(url, "select kind, enabled, schedule from monitoring.digests")}
    assert listing["monthly"] == (False, "15 8 1 * *") and listing["daily"] == (True, "30 6 * * *")


@pytest.mark.parametrize(("call", "message", "hint"), [
    ("select monitoring.set_digest('daily', p_channels => array['nope'])",
     "digest_settings.channels: channel 'nope' does not exist", "create it first"),
    ("select monitoring.set_digest('daily', p_channels => array['am'])",
     "digest_settings.channels: am is an alertmanager channel", "send digests to a webhook"),
    ("select monitoring.set_digest('daily', p_channels => array['ops', 'ops'])",
     "digest_settings.channels names a channel twice", "list each channel once"),
    ("select monitoring.set_digest('daily', p_schedule => '0 0 31 2 *')", "jobs.schedule", None),
    ("select monitoring.set_digest('hourly')", "set_digest: p_kind must be daily, weekly or monthly", "use "),
    ("update monitoring.digest_settings set top_n = 0", "digest_settings.top_n must be between 1 and 50 (got 0)",
     "use a count such as 5"),
    ("update monitoring.digest_settings set review_percentile = 'NaN'", "digest_settings.review_percentile must be",
     "use a percentile such as 99"),
    ("select monitoring.digest('yearly')", "digest: p_kind must be daily, weekly or monthly", "use "),
    ("select monitoring.digest('daily', 'infinity')", "digest: p_now must be a finite time", "leave p_now out"),
])
def test_bad_digest_configuration_is_refused_naming_the_field_and_changes_nothing(
        scratch_db: Callable[[], str], call: str, message: str, hint: str | None) -> None:
    url = scratch_db()
    prepare(url)
    q(url, "select monitoring.set_channel('ops', 'webhook', 'http://127.0.0.1:9/hook')")
    q(url, "select monitoring.set_channel('am', 'alertmanager', 'http://127.0.0.1:9093')")
    before = q(url, "select s.*, j.schedule, j.enabled from monitoring.digest_settings as s "
                    "join monitoring.jobs as j on j.job = 'digest-' || s.kind order by s.kind")
    with pytest.raises(psycopg.Error) as info:
        q(url, call)
    assert message in (info.value.diag.message_primary or ""), info.value
    if hint is not None:
        assert hint in (info.value.diag.message_hint or ""), info.value.diag.message_hint
    assert q(url, "select s.*, j.schedule, j.enabled from monitoring.digest_settings as s "
                  "join monitoring.jobs as j on j.job = 'digest-' || s.kind order by s.kind") == before


def test_monthly_threshold_review_suggests_from_the_months_normal_hours(scratch_db: Callable[[], str]) -> None:
    """June 2026: errors per hour cycle 0..9, except two hours of an incident (50 errors) while
    high_error_rate fired for 90 minutes; delivery 95 % except five 85 % hours; a retention run."""
    url = scratch_db()
    prepare(url)
    q(url, """insert into monitoring.digest_hours (hour, total, accepted, failed, errors, latency_count,
              latency_sum_ms, queue_count, queue_sum_ms, latency_hist, queue_hist, taken_at)
              select h, 100, case when i between 200 and 204 then 85 else 95 end, 0,
                     case when i in (100, 101) then 50 else i % 10 end, 100, 100 * 1500, 100, 100 * 3000,
                     array_fill(0, array[23]), array_fill(0, array[23]), now()
              from generate_series(timestamptz '2026-06-01 00:00+00', '2026-06-30 23:00+00', interval '1 hour')
                   with ordinality as g (h, i)""")
    labels = json.dumps({"alertname": "high_error_rate", "severity": "warning"})
    q(url, "insert into monitoring.alert_history (fingerprint, rule_name, labels, from_state, to_state, occurred_at) "
           "values ('fp-e', 'high_error_rate', %s, 'pending', 'firing', '2026-06-05 03:00+00'), "
           "('fp-e', 'high_error_rate', %s, 'firing', 'resolved', '2026-06-05 04:30+00')", (labels, labels))
    q(url, "insert into monitoring.job_runs (job, started_at, finished_at, ok, detail) values ('retention', "
           "'2026-06-10 03:30+00', '2026-06-10 03:31+00', true, "
           "'{\"deleted\": {\"whatsapp_error_logs\": 1234, \"job_runs\": 0}}')")
    digest = q(url, "select monitoring.digest('monthly', '2026-07-01 08:00+00')")[0][0]
    assert (digest["periodStart"], digest["periodEnd"]) == ("2026-06-01T00:00:00.000Z", "2026-07-01T00:00:00.000Z")
    s = sections(digest)
    assert [x["key"] for x in digest["sections"]] == ["logCleanup", "thresholdReview", "trends"]
    cleanup = s["logCleanup"]["data"]
    assert cleanup["runs"] == 1 and cleanup["succeeded"] == 1 and cleanup["deleted"]["whatsapp_error_logs"] == 1234
    assert "Deleted: whatsapp_error_logs 1234." in s["logCleanup"]["lines"]

    review = {r["rule"]: r for r in s["thresholdReview"]["data"]["rules"]}
    e = review["high_error_rate"]
    # hour indexes 100 and 101 (1-based) are 2026-06-05 03:00 and 04:00: the incident, excluded
    assert (e["fired"], e["firingSeconds"], e["normalHours"], e["breachedNormalHours"]) == (1, 5400, 718, 0)
    assert e["percentile"] == 99 and e["percentileValue"] == 9 and e["suggestedThreshold"] == 9
    assert e["verdict"] == "lower", "normal hours stay under half the threshold of 20"
    assert "p99 is 9.00" in e["reasoning"] and "718 normal hours" in e["reasoning"]
    d = review["low_delivery_rate"]
    assert (d["normalHours"], d["breachedNormalHours"], d["percentile"]) == (720, 5, 1)
    # p1 of the normal hours is 95 %: five 85 % hours are under 1 % of 720
    assert d["suggestedThreshold"] == 95 and d["verdict"] == "keep", d
    assert review["slow_queue"]["suggestedThreshold"] == 30, "never tighter than the spec's 30 s target"
    assert review["whatsapp_disconnected"]["verdict"] == "review by hand"

    t = s["trends"]["data"]
    assert t["month"]["messages"] == 72000 and t["month"]["deliveryRate"] == 94.93
    assert t["previousMonth"]["messages"] == 0 and t["changePct"]["messages"] is None


def test_cli_report_digest_json_and_text(run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    res = run_cli("report", "--digest", "weekly", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["kind"] == "weekly"
    assert [x["key"] for x in doc["sections"]] == ["errorPatterns", "queue", "sessions", "performance", "slowQueries"]
    text = run_cli("report", "--digest", "monthly")
    assert text.returncode == 0, text.stderr
    assert "Threshold review" in text.stdout and "Log cleanup" in text.stdout
    listing = run_cli("digest", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [d["kind"] for d in json.loads(listing.stdout)] == ["daily", "weekly", "monthly"]
    sent = run_cli("digest", "send", "daily", "--json")
    assert sent.returncode == 0 and json.loads(sent.stdout)["queued"] == 0, "no channel chosen: built, sent nowhere"
    bad = run_cli("digest", "set", "daily", "--channel", "no-such-channel")
    assert bad.returncode == 1
    assert "digest_settings.channels: channel 'no-such-channel' does not exist" in bad.stderr
