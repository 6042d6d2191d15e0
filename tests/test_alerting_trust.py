"""Alerting that on-call people trust (issue 15): inhibition, anti-flap, no-data and error states,
grouped notifications. Real engine, the pg_net worker of tests.alerting.NetWorker, real HTTP
receivers on loopback.

Time is driven through evaluate_rules(p_now) where a test needs minutes to pass; what is queued
for those future times is then sent for real (its next_attempt_at moved to now).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest

from pydeploy.receiver import receiver
from tests.alerting import add_channel, payloads, pump, q

CONSEQUENCES = ["high_error_rate", "low_delivery_rate"]
INCIDENT_RULES = ["whatsapp_disconnected", *CONSEQUENCES, "slow_queue", "error_rate_webhook"]


def now(url: str) -> datetime:
    return q(url, "select now()")[0][0]


def evaluate_at(url: str, at: datetime, rules: list[str]) -> dict:
    return q(url, "select monitoring.evaluate_rules(%s, %s, false)", (at, rules))[0][0]


def events(url: str) -> list[tuple[str, str | None, list[str]]]:
    """(event, rule_name, rules told) of every alert delivery, in order."""
    return [(e, r, sorted(p["alerts"][i]["rule"] for i in range(len(p["alerts"]))))
            for e, r, p in q(url, "select event, rule_name, payload from monitoring.deliveries "
                                  "where event <> 'test' and channel = 'ops' order by id")]


def send_all(url: str, n: int) -> None:
    """Send what is queued (also for future evaluation times) until n deliveries are delivered."""
    q(url, "update monitoring.deliveries set next_attempt_at = now() where status = 'queued'")
    pump(url, lambda: q(url, "select count(*) from monitoring.deliveries where status = 'delivered'")[0][0] == n)


def messages(url: str, accepted: int, failed: int, age: str = "2 minutes") -> None:
    q(url, "insert into public.whatsapp_notifications (phone_number, status, created_at, updated_at) "
           "select '+5511999990000', s, now() - %s::interval, now() - %s::interval "
           "from (select 'sent' as s from generate_series(1, %s) union all "
           "select 'failed' from generate_series(1, %s)) as m", (age, age, accepted, failed))


def set_failed(url: str, failed: int) -> None:
    """Make exactly `failed` of the messages failed, the others sent (the rate flaps)."""
    q(url, "update public.whatsapp_notifications set status = case when n.rn <= %s then 'failed' else 'sent' end "
           "from (select id, row_number() over (order by id) as rn from public.whatsapp_notifications) as n "
           "where n.id = whatsapp_notifications.id", (failed,))
    q(url, "select monitoring.refresh_rollups(p_full => true)")


@pytest.fixture
def db(alert_db: str) -> Iterator[str]:
    yield alert_db


# -- 1. inhibition + 4. grouping: the incident ---------------------------------------------------
def test_disconnection_gives_one_critical_notification_then_the_inhibited_ones_when_it_resolves(db: str) -> None:
    with receiver([200]) as rec, receiver([200]) as slack:
        add_channel(db, rec.url)
        q(db, "select monitoring.set_channel('ops-slack', 'slack', %s, null, 'info')", (slack.url,))
        # WhatsApp down for 20 minutes; its consequences: errors, a delivery rate of 60 %, a slow queue
        q(db, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state, "
              "last_connected_at, updated_at) values ('s1', '+5511988887777', true, 'disconnected', "
              "now() - interval '20 minutes', now())")
        q(db, "insert into public.whatsapp_error_logs (error_type, error_message) "
              "select 'connection', 'not connected' from generate_series(1, 60)")
        messages(db, accepted=12, failed=8)
        t0 = now(db)
        res = evaluate_at(db, t0, INCIDENT_RULES)
        assert res["errors"] == {}, res
        firing = q(db, "select rule_name from monitoring.alerts where state = 'firing' order by 1")
        assert [r[0] for r in firing] == ["error_rate_webhook", "high_error_rate", "low_delivery_rate",
                                          "whatsapp_disconnected"]
        send_all(db, 2)
        assert events(db) == [("firing", "whatsapp_disconnected", ["whatsapp_disconnected"])]
        assert len(rec.requests) == 1 and len(slack.requests) == 1
        body = payloads(rec)[0]
        assert set(body) >= {"timestamp", "service", "alerts"} and body["alerts"][0]["severity"] == "critical"

        # the consequences keep their state and history, and show as inhibited
        view = q(db, "select rule_name, status, inhibited_by_rule from monitoring.active_alerts "
                     "where inhibited_by is not null order by 1")
        assert view == [(r, "firing", "whatsapp_disconnected")
                        for r in ["error_rate_webhook", "high_error_rate", "low_delivery_rate"]]
        health = q(db, "select monitoring.health(%s) -> 'alerts'", (t0,))[0][0]
        assert health["inhibited"] == 3 and health["firing"]["critical"] == 1
        hist = q(db, "select rule_name, to_state, event, inhibited_by is not null from monitoring.alert_history "
                     "order by rule_name")
        assert ("high_error_rate", "firing", None, True) in hist
        assert ("whatsapp_disconnected", "firing", "firing", False) in hist
        # a minute later, still down: nothing more
        evaluate_at(db, t0 + timedelta(minutes=1), INCIDENT_RULES)
        assert len(events(db)) == 1

        # reconnected while the consequences still fire: they are told now, as one group message
        q(db, "update public.whatsapp_sessions set connection_state = 'connected', last_connected_at = now()")
        evaluate_at(db, t0 + timedelta(minutes=2), INCIDENT_RULES)
        send_all(db, 6)
        assert events(db)[1:] == [
            ("resolved", "whatsapp_disconnected", ["whatsapp_disconnected"]),
            ("firing", None, ["error_rate_webhook", "high_error_rate", "low_delivery_rate"]),
        ]
        grouped = [p for p in payloads(rec) if len(p["alerts"]) > 1]
        assert len(grouped) == 1 and grouped[0]["status"] == "firing"
        assert grouped[0]["service"] == "WhatsApp Notifications"
        assert {a["severity"] for a in grouped[0]["alerts"]} == {"warning"}
        assert sorted(p["text"] for p in payloads(slack)) == [
            "[FIRING] 3 alerts: 3 warning",
            "[FIRING] critical: WhatsApp is not connected: session s1 (+55*******7777) is disconnected, "
            "down for 20.0 min",
            "[RESOLVED] critical: WhatsApp session s1 (+55*******7777) is connected",
        ]
        slack_group = next(p for p in payloads(slack) if p["text"].startswith("[FIRING] 3"))
        assert sum("low_delivery_rate" in b["text"]["text"] for b in slack_group["blocks"] if "text" in b) == 1
        # one readable message, each signed like any other
        assert all(r.signed_by("e2e-signing-key-0123456789") for r in rec.requests)


def test_a_critical_alert_mutes_a_warning_of_the_same_labels(db: str) -> None:
    """The seeded critical_mutes_warning: same labels but severity."""
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("insert into monitoring.alerts (fingerprint, rule_name, labels, severity, state, started_at, "
                  "firing_since, last_evaluated_at) values "
                  "('c1', 'slow_queue', '{\"alertname\": \"slow_queue\", \"severity\": \"critical\"}', 'critical', "
                  "'firing', now(), now(), now())")
        same = c.execute("select monitoring._inhibitor_for('{\"alertname\": \"slow_queue\", "
                         "\"severity\": \"warning\"}', 'w1')").fetchone()
        other = c.execute("select monitoring._inhibitor_for('{\"alertname\": \"slow_delivery\", "
                          "\"severity\": \"warning\"}', 'w2')").fetchone()
    assert same == ("c1",) and other == (None,)


# -- 2. anti-flap ---------------------------------------------------------------------------------
def test_a_flapping_rate_gives_one_firing_and_one_resolved_notification(db: str) -> None:
    with receiver([200]) as rec:
        add_channel(db, rec.url)
        messages(db, accepted=17, failed=3)  # 85 %
        t0 = now(db)
        rule = ["low_delivery_rate"]
        # around 90 % every 5 minutes: 85, 95, 85, 95, 85, then 95 for good
        for minute, failed in [(0, 3), (5, 1), (10, 3), (15, 1), (20, 3), (25, 1)]:
            set_failed(db, failed)
            evaluate_at(db, t0 + timedelta(minutes=minute), rule)
        assert q(db, "select state, recovering_since is not null from monitoring.alerts") == [("firing", True)]
        assert q(db, "select status from monitoring.active_alerts") == [("recovering",)]
        evaluate_at(db, t0 + timedelta(minutes=50), rule)  # 25 min clear: still recovering
        assert q(db, "select state from monitoring.alerts") == [("firing",)]
        evaluate_at(db, t0 + timedelta(minutes=56), rule)  # 31 min clear (keep_firing_for 30 min): resolved
        assert q(db, "select state from monitoring.alerts") == [("resolved",)]
        assert [e for e, _, _ in events(db)] == ["firing", "resolved"]
        send_all(db, 2)
        assert sorted(p["status"] for p in payloads(rec)) == ["firing", "resolved"]
        hist = [r[0] for r in q(db, "select to_state from monitoring.alert_history order by id")]
        assert hist == ["firing", "recovering", "firing", "recovering", "firing", "recovering", "resolved"]


# -- 3. no data and error states ----------------------------------------------------------------
def test_silence_from_the_sender_gives_a_no_data_alert(db: str) -> None:
    with receiver([200]) as rec:
        add_channel(db, rec.url)
        messages(db, accepted=20, failed=0)
        t0 = now(db)
        evaluate_at(db, t0, ["low_delivery_rate"])  # 100 %: healthy, and the rule has seen data
        assert q(db, "select count(*) from monitoring.alerts")[0][0] == 0
        # an hour and more without a single message: total > 10 is false, yet this is not healthy
        later = t0 + timedelta(minutes=70)
        evaluate_at(db, later, ["low_delivery_rate"])
        alert = q(db, "select state, labels ->> 'condition', message from monitoring.alerts")
        assert alert[0][:2] == ("firing", "no_data") and alert[0][2].startswith("No data for low_delivery_rate")
        assert q(db, "select status from monitoring.active_alerts") == [("nodata",)]
        health = q(db, "select monitoring.health(%s)", (later,))[0][0]
        assert health["alerts"]["noData"] == ["low_delivery_rate"] and health["status"] != "healthy"
        send_all(db, 1)
        told = payloads(rec)[0]["alerts"][0]
        assert told["labels"]["condition"] == "no_data" and told["rule"] == "low_delivery_rate"
        # data again: the no-data alert resolves at once (no keep_firing_for for it)
        evaluate_at(db, t0 + timedelta(minutes=1), ["low_delivery_rate"])
        assert q(db, "select state from monitoring.alerts") == [("resolved",)]


def test_a_rule_that_raises_fires_an_error_alert_that_resolves_when_it_runs_again(db: str) -> None:
    with receiver([200]) as rec:
        add_channel(db, rec.url)
        q(db, "create table public.t_flag (broken boolean not null)")
        q(db, "insert into public.t_flag values (true)")
        q(db, """create function monitoring._check_t_flaky(p_rule monitoring.alert_rules, p_now timestamptz)
                 returns table (labels jsonb, value numeric, volume numeric, message text)
                 language sql stable set search_path = '' as $$
                   select '{}'::jsonb, 1 / (case when f.broken then 0 else 1 end)::numeric - 1, null::numeric, 'ok'
                   from public.t_flag as f $$""")
        q(db, "insert into monitoring.alert_rules (name, description, severity, metric, check_function, threshold, "
              "runbook) values ('t_flaky', 'test', 'warning', 't', '_check_t_flaky', 1, array['look'])")
        res = evaluate_at(db, now(db), ["t_flaky"])
        assert "division by zero" in res["errors"]["t_flaky"]
        assert q(db, "select state, labels ->> 'condition' from monitoring.alerts") == [("firing", "error")]
        assert q(db, "select count(*) from monitoring.rule_errors")[0][0] == 1
        send_all(db, 1)
        assert "Rule t_flaky failed: division by zero" in payloads(rec)[0]["alerts"][0]["message"]
        q(db, "update public.t_flag set broken = false")
        evaluate_at(db, now(db), ["t_flaky"])
        assert q(db, "select state from monitoring.alerts") == [("resolved",)]
        # keep_last: a failure leaves the alerts as they are
        q(db, "update public.t_flag set broken = true")
        q(db, "update monitoring.alert_rules set error_state = 'keep_last' where name = 't_flaky'")
        evaluate_at(db, now(db), ["t_flaky"])
        assert q(db, "select state from monitoring.alerts") == [("resolved",)]


# -- 4. grouping: group_wait and group_interval --------------------------------------------------
def test_group_wait_collects_a_group_and_group_interval_spaces_its_messages(db: str) -> None:
    q(db, "create table public.t_metric (instance text primary key, value numeric)")
    q(db, """create function monitoring._check_t_group(p_rule monitoring.alert_rules, p_now timestamptz)
             returns table (labels jsonb, value numeric, volume numeric, message text)
             language sql stable set search_path = '' as $$
               select jsonb_build_object('session_id', m.instance), m.value, null::numeric, m.instance
               from public.t_metric as m $$""")
    q(db, "insert into monitoring.alert_rules (name, description, severity, metric, check_function, threshold, "
          "runbook) values ('t_group', 'test', 'warning', 't', '_check_t_group', 10, array['look'])")
    q(db, "update monitoring.settings set group_by = '{alertname}', group_wait = '2 minutes', "
          "group_interval = '5 minutes'")
    q(db, "select monitoring.set_channel('ops', 'webhook', 'http://127.0.0.1:9/never', null, 'info')")
    t0 = now(db)

    def at(minute: int, **values: int) -> None:
        for k, v in values.items():
            q(db, "insert into public.t_metric values (%s, %s) on conflict (instance) do update set value = %s",
              (k, v, v))
        evaluate_at(db, t0 + timedelta(minutes=minute), ["t_group"])

    at(0, a=20)
    at(1, b=20)
    assert events(db) == [], "group_wait: the group's first message waits 2 minutes"
    at(2)
    told = q(db, "select payload from monitoring.deliveries order by id")
    assert [sorted(a["message"] for a in p["alerts"]) for (p,) in told] == [["a", "b"]]
    at(3, c=20, a=1)
    at(6)
    assert len(events(db)) == 1, "group_interval: the next message waits 5 minutes after the last"
    at(7)
    told = q(db, "select payload from monitoring.deliveries order by id")
    assert len(told) == 2
    assert sorted((a["message"], a["status"]) for a in told[1][0]["alerts"]) == [("a", "resolved"), ("c", "firing")]


# -- bad configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(("sql", "message", "hint"), [
    ("insert into monitoring.inhibit_rules (name, source_matchers, target_matchers, comment) "
     "values ('self', '{\"area\": \"whatsapp\"}', '{\"severity\": \"warning\"}', 'x')",
     "inhibit_rules self matches itself", "tell the two sides apart"),
    ("update monitoring.alert_rules set keep_firing_for = '-5 minutes' where name = 'low_delivery_rate'",
     "alert_rules.keep_firing_for must be >= 0 and at most 1 day (got -00:05:00)", "use '0'"),
    ("update monitoring.settings set group_by = '{severity,team_name}'",
     "settings.group_by: unknown label(s) team_name", "group by labels the alerts carry: alertname"),
    ("update monitoring.alert_rules set nodata_state = 'alerting' where name = 'low_delivery_rate'",
     "alert_rules.nodata_state must be one of nodata, ok, keep_last (got 'alerting')", "use nodata"),
    ("insert into monitoring.inhibit_rules (name, source_matchers, target_matchers, equal, comment) "
     "values ('x', '{\"severity\": \"critical\"}', '{\"severity\": \"warning\"}', '{sesion_id}', 'x')",
     "inhibit_rules.equal of x: unknown label(s) sesion_id", "session_id"),
])
def test_bad_alerting_configuration_is_refused_and_changes_nothing(engine_url: str, sql: str, message: str,
                                                                    hint: str) -> None:
    before = q(engine_url, "select (select json_agg(i order by name) from monitoring.inhibit_rules as i)::text, "
                           "(select json_agg(r order by name) from monitoring.alert_rules as r)::text, "
                           "(select row_to_json(s)::text from monitoring.settings as s)")
    with psycopg.connect(engine_url, autocommit=True) as c, pytest.raises(psycopg.errors.CheckViolation) as err:
        c.execute(sql)
    assert err.value.diag.message_primary.startswith(message), err.value.diag.message_primary
    assert hint in (err.value.diag.message_hint or ""), err.value.diag.message_hint
    assert q(engine_url, "select (select json_agg(i order by name) from monitoring.inhibit_rules as i)::text, "
                         "(select json_agg(r order by name) from monitoring.alert_rules as r)::text, "
                         "(select row_to_json(s)::text from monitoring.settings as s)") == before


def test_the_seeded_defaults_are_the_documented_ones(engine_url: str) -> None:
    """docs/alerting.md's rule table states each rule's keep_firing_for and nodata_state as seeded."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "alerting.md").read_text()
    for name, minutes, nodata in q(engine_url, "select name, extract(epoch from keep_firing_for)::int / 60, "
                                               "nodata_state from monitoring.alert_rules order by name"):
        row = next((ln for ln in doc.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/alerting.md has no row for {name}"
        assert row.endswith(f"| {f'{minutes} min' if minutes else '0'} | {nodata} |"), (name, minutes, nodata, row)
    for (name,) in q(engine_url, "select name from monitoring.inhibit_rules"):
        assert f"| `{name}` |" in doc
    assert q(engine_url, "select group_by, group_wait::text, group_interval::text from monitoring.settings") == [
        (["severity"], "00:00:00", "00:05:00")]


def test_a_group_is_one_readable_discord_message(engine_url: str) -> None:
    alert = {"severity": "warning", "message": "High error rate: 25 errors in 1 hour", "metric": "error_count",
             "value": 25, "status": "firing", "rule": "high_error_rate", "unit": "errors",
             "runbook": ["Check error logs"], "fingerprint": "f1"}
    crit = {**alert, "severity": "critical", "rule": "function_availability", "message": "send down",
            "fingerprint": "f2"}
    webhook = {"timestamp": "2030-01-01T00:00:00.000Z", "service": "WhatsApp Notifications", "status": "firing",
               "event": "firing", "alerts": [crit, alert]}
    got = q(engine_url, "select monitoring._channel_payload('discord', %s::jsonb)", (json.dumps(webhook),))[0][0]
    assert got["content"] == "[FIRING] 2 alerts: 1 critical, 1 warning"
    embed = got["embeds"][0]
    assert embed["color"] == 15158332, "red: a critical alert is in the group"
    assert embed["description"].split("\n\n") == [
        "**[FIRING] critical** `function_availability`: send down\nerror_count = 25 errors · runbook: Check error logs",
        "**[FIRING] warning** `high_error_rate`: High error rate: 25 errors in 1 hour\n"
        "error_count = 25 errors · runbook: Check error logs",
    ]
