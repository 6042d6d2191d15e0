"""The operator's commands, driven through the real `pydeploy` entry point."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pydeploy.receiver import receiver
from tests.alerting import NetWorker, delete_secrets_sql, prepare
from tests.conftest import PYDEPLOY

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def migrated_db(scratch_db: Callable[[], str]) -> Iterator[str]:
    """A fresh database with every migration applied and its own pg_net stand-in worker
    (like pg_net, the worker serves one database). No pg_cron: it lives in `postgres`."""
    url = scratch_db()
    prepare(url, fast=False)
    with NetWorker(url, poll_interval=0.1):
        yield url


@pytest.fixture
def seeded_db(migrated_db: str) -> str:
    with psycopg.connect(migrated_db, autocommit=True) as c:
        c.execute((ROOT / "supabase" / "seed.sql").read_text())
    return migrated_db


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


COMMANDS = [["up"], ["down"], ["url"], ["migrate"], ["status"], ["verify"], ["report"], ["monitor"],
            ["schedule"], ["unschedule"], ["configure"], ["rules"], ["channel", "add"], ["channel", "list"],
            ["channel", "remove"], ["channel", "test"], ["silence", "add"], ["silence", "list"],
            ["silence", "expire"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_help_is_a_manual_with_an_example(run_cli, cmd: list[str]) -> None:
    res = run_cli(*cmd, "--help")
    assert res.returncode == 0
    assert "Example" in res.stdout, res.stdout


# -- channels --------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["--kind", "sms", "--url", "https://x.example.com"], "--kind 'sms' is not a channel kind"),
    (["--kind", "webhook", "--url", "http://hooks.example.com/x"], "--url must use https"),
    (["--kind", "webhook"], "--url is required"),
    (["--kind", "webhook", "--url", "ftp://x.example.com"], "is not an http(s) URL"),
    (["--kind", "webhook", "--url", "https://x.example.com", "--signing-secret", "short"],
     "--signing-secret must be at least 8 characters"),
    (["--kind", "webhook", "--url", "https://x.example.com", "--min-severity", "loud"], "is not a severity"),
    (["--kind", "edge_function"], "--function is required"),
])
def test_bad_channel_is_refused_and_nothing_written(run_cli, migrated_db: str, args: list[str],
                                                     needle: str) -> None:
    res = run_cli("channel", "add", "ops", *args, "--db-url", migrated_db)
    assert res.returncode == 1
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert _count(migrated_db, "select count(*) from monitoring.channels") == 0


def test_bad_channel_name_is_refused_by_the_database(run_cli, migrated_db: str) -> None:
    res = run_cli("channel", "add", "Bad Name'; drop table x;--", "--kind", "webhook", "--url",
                  "https://x.example.com", "--db-url", migrated_db)
    assert res.returncode == 1
    assert "channels.name" in res.stderr
    assert _count(migrated_db, "select count(*) from monitoring.channels") == 0


def test_channel_add_list_test_remove_with_a_real_receiver(run_cli, migrated_db: str) -> None:
    secret = "s3cret-signing-key"
    with receiver([200]) as rec:
        res = run_cli("channel", "add", "ops", "--kind", "webhook", "--url", rec.url + "/alerts",
                      "--signing-secret", secret, "--min-severity", "info", "--db-url", migrated_db)
        assert res.returncode == 0, res.stderr
        listed = run_cli("channel", "list", "--json", "--db-url", migrated_db)
        assert listed.returncode == 0
        data = json.loads(listed.stdout)
        assert [(c["name"], c["kind"], c["signed"], c["has_url"]) for c in data] == [("ops", "webhook", True, True)]
        # secrets are never printed
        assert rec.url not in listed.stdout and secret not in listed.stdout
        tested = run_cli("channel", "test", "ops", "--db-url", migrated_db)
        assert tested.returncode == 0, tested.stderr + tested.stdout
        assert "delivered" in tested.stdout and "HTTP 200" in tested.stdout
        assert len(rec.requests) == 1
        assert json.loads(rec.requests[0].body)["alerts"][0]["metric"] == "test"
    res = run_cli("channel", "remove", "ops", "--db-url", migrated_db)
    assert res.returncode == 0
    res = run_cli("channel", "remove", "ops", "--db-url", migrated_db)
    assert res.returncode == 1 and "does not exist" in res.stderr


def test_channel_test_reports_a_failing_receiver(run_cli, migrated_db: str) -> None:
    with receiver([503]) as rec:
        assert run_cli("channel", "add", "flaky", "--kind", "webhook", "--url", rec.url,
                       "--db-url", migrated_db).returncode == 0
        res = run_cli("channel", "test", "flaky", "--db-url", migrated_db)
    assert res.returncode == 1
    assert "HTTP 503" in res.stdout


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered after 1 attempt(s); receiver answered HTTP 200"),
    (503, "retrying after 1 attempt(s); receiver answered HTTP 503"),
    (410, "dead after 1 attempt(s); receiver answered HTTP 410"),
])
def test_pydeploy_receiver_rehearses_a_failing_endpoint(run_cli, cli_env: dict[str, str], migrated_db: str,
                                                        status: int, outcome: str) -> None:
    """`pydeploy receiver --status N` (the demo's step 5): the channel test shows what the outbox does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(PYDEPLOY), "receiver", "--port", str(port), "--status", str(status),
                             "--secret", "rehearsal-key"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env)
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
        assert run_cli("channel", "add", "rehearse", "--kind", "webhook", "--url", f"http://127.0.0.1:{port}/x",
                       "--signing-secret", "rehearsal-key", "--db-url", migrated_db).returncode == 0
        res = run_cli("channel", "test", "rehearse", "--db-url", migrated_db)
    finally:
        proc.terminate()
        printed = proc.communicate(timeout=10)[0]
    assert res.returncode == (0 if status == 200 else 1), res.stdout + res.stderr
    assert outcome in res.stdout
    assert "signature OK" in printed, "the receiver checked the signature of what it got"
    if status != 200:
        assert f"answered HTTP {status}" in printed


# -- configure -------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["--threshold", "-5"], "--threshold must be a positive number"),
    (["--threshold", "abc"], "--threshold 'abc' is not a number"),
    (["--threshold", "nan"], "--threshold must be a positive number"),
    (["--for", "soon"], "--for 'soon' is not a duration"),
    (["--repeat", "0"], "--repeat '0' is not a duration"),
    (["--schedule", "* * * *"], "must have 5 fields"),
    (["--schedule", "61 * * * *"], "outside 0-59"),
    (["--schedule", "*/0 * * * *"], "step '0'"),
    (["--schedule", "30 * * * * *"], "must have 5 fields"),
    ([], "nothing to change"),
    (["--keep-firing-for", "-5m"], "--keep-firing-for '-5m' is not a duration"),
    (["--keep-firing-for", "2d"], "alert_rules.keep_firing_for must be >= 0 and at most 1 day"),
    (["--keep-firing-for", "30m", "--group-by", "severity,team"], "settings.group_by: unknown label(s) team"),
])
def test_bad_configuration_is_refused_and_rule_unchanged(run_cli, migrated_db: str, args: list[str],
                                                         needle: str) -> None:
    before = _count(migrated_db, "select hashtext(r::text) from monitoring.alert_rules r "
                                 "where name = 'low_delivery_rate'")
    res = run_cli("configure", "low_delivery_rate", *args, "--db-url", migrated_db)
    assert res.returncode == 1
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    after = _count(migrated_db, "select hashtext(r::text) from monitoring.alert_rules r "
                                "where name = 'low_delivery_rate'")
    assert before == after


def test_configure_changes_a_rule(run_cli, migrated_db: str) -> None:
    res = run_cli("configure", "low_delivery_rate", "--threshold", "95", "--for", "10m", "--repeat", "2h",
                  "--schedule", "*/5 * * * *", "--db-url", migrated_db)
    assert res.returncode == 0, res.stderr
    with psycopg.connect(migrated_db) as c:
        row = c.execute("select threshold, for_period::text, repeat_interval::text, schedule "
                        "from monitoring.alert_rules where name = 'low_delivery_rate'").fetchone()
    assert row == (95, "00:10:00", "02:00:00", "*/5 * * * *")
    res = run_cli("configure", "no_such_rule", "--threshold", "1", "--db-url", migrated_db)
    assert res.returncode == 1 and "rule 'no_such_rule' does not exist" in res.stderr
    rules = json.loads(run_cli("rules", "--json", "--db-url", migrated_db).stdout)
    assert {r["name"] for r in rules} >= {"whatsapp_disconnected", "low_delivery_rate", "high_error_rate",
                                          "monitor_stalled"}


def test_configure_and_rules_cover_anti_flap_no_data_errors_inhibition_and_grouping(run_cli, migrated_db: str) -> None:
    res = run_cli("configure", "slow_queue", "--keep-firing-for", "45m", "--nodata", "keep_last", "--on-error", "ok",
                  "--db-url", migrated_db)
    assert res.returncode == 0, res.stderr
    res = run_cli("configure", "--group-by", "alertname,service", "--group-wait", "30s", "--group-interval", "10m",
                  "--db-url", migrated_db)
    assert res.returncode == 0, res.stderr
    with psycopg.connect(migrated_db) as c:
        assert c.execute("select keep_firing_for::text, nodata_state, error_state from monitoring.alert_rules "
                         "where name = 'slow_queue'").fetchone() == ("00:45:00", "keep_last", "ok")
        assert c.execute("select group_by, group_wait::text, group_interval::text from monitoring.settings"
                         ).fetchone() == (["alertname", "service"], "00:00:30", "00:10:00")
    res = run_cli("configure", "--keep-firing-for", "5m", "--db-url", migrated_db)
    assert res.returncode == 1 and "the rule options need a RULE" in res.stderr
    rules = {r["name"]: r for r in json.loads(run_cli("rules", "--json", "--db-url", migrated_db).stdout)}
    low = rules["low_delivery_rate"]
    assert (low["keep_firing_for"], low["nodata_state"], low["error_state"]) == (1800, "nodata", "error")
    assert rules["high_error_rate"]["inhibited_by"] == ["critical_mutes_warning", "disconnected_mutes_consequences"]
    assert rules["whatsapp_disconnected"]["inhibited_by"] == []
    text = run_cli("rules", "--db-url", migrated_db).stdout
    assert 'alertname="whatsapp_disconnected"' in text and "grouping: by alertname, service" in text


# -- silences --------------------------------------------------------------------------------
def test_silence_add_list_expire(run_cli, migrated_db: str) -> None:
    res = run_cli("silence", "add", "--match", "alertname=low_delivery_rate", "--duration", "2h",
                  "--comment", "carrier maintenance", "--author", "oncall", "--db-url", migrated_db)
    assert res.returncode == 0, res.stderr
    sid = int(res.stdout.strip())
    listed = json.loads(run_cli("silence", "list", "--json", "--db-url", migrated_db).stdout)
    assert [s["id"] for s in listed] == [sid]
    assert listed[0]["created_by"] == "oncall"
    assert run_cli("silence", "expire", str(sid), "--db-url", migrated_db).returncode == 0
    assert json.loads(run_cli("silence", "list", "--json", "--db-url", migrated_db).stdout) == []
    res = run_cli("silence", "expire", str(sid), "--db-url", migrated_db)
    assert res.returncode == 1


@pytest.mark.parametrize(("args", "needle"), [
    (["--match", "nonsense", "--duration", "1h", "--comment", "x"], "is not label=value"),
    (["--match", "alertname=x", "--duration", "forever", "--comment", "x"], "--duration 'forever'"),
    (["--match", "alertname=~(", "--duration", "1h", "--comment", "x"], "not a valid regular expression"),
    (["--match", "alertname=x", "--duration", "1h", "--comment", " "], "--comment is empty"),
])
def test_bad_silence_is_refused(run_cli, migrated_db: str, args: list[str], needle: str) -> None:
    res = run_cli("silence", "add", *args, "--db-url", migrated_db)
    assert res.returncode == 1
    assert needle in res.stderr
    assert _count(migrated_db, "select count(*) from monitoring.silences") == 0


# -- monitor / report ------------------------------------------------------------------------
def test_monitor_on_seeded_data_prints_json_and_exits_1(run_cli, seeded_db: str) -> None:
    res = run_cli("monitor", "--json", "--db-url", seeded_db)
    assert res.returncode == 1, res.stderr
    data = json.loads(res.stdout)
    assert data["healthy"] is False
    assert data["service"] == "WhatsApp Notifications"
    rules = {a["rule"] for a in data["alerts"]}
    assert "low_delivery_rate" in rules and "high_error_rate" in rules
    for a in data["alerts"]:
        assert set(a) >= {"severity", "message", "metric", "value"}
    # without --notify nothing changed
    assert _count(seeded_db, "select count(*) from monitoring.alerts") == 0


def test_monitor_on_an_empty_database_is_healthy(run_cli, migrated_db: str) -> None:
    res = run_cli("monitor", "--json", "--db-url", migrated_db)
    data = json.loads(res.stdout)
    # no sessions at all is itself an alert-worthy state; delivery and errors are fine
    assert not {"low_delivery_rate", "high_error_rate"} & {a["rule"] for a in data["alerts"]}


def test_monitor_notify_sends_through_channels(run_cli, seeded_db: str) -> None:
    with receiver([200]) as rec:
        assert run_cli("channel", "add", "ops", "--kind", "webhook", "--url", rec.url, "--db-url",
                       seeded_db).returncode == 0
        res = run_cli("monitor", "--notify", "--json", "--db-url", seeded_db)
        assert res.returncode == 1
        got = rec.wait_for(1, timeout=20)
        payload = json.loads(got[0].body)
    assert payload["service"] == "WhatsApp Notifications"
    assert {"severity", "message", "metric", "value"} <= set(payload["alerts"][0])
    assert _count(seeded_db, "select count(*) from monitoring.alerts where state = 'firing'") >= 2
    # warnings firing: health says degraded, and why
    with psycopg.connect(seeded_db) as c:
        health = c.execute("select monitoring.health()").fetchone()[0]
    assert health["status"] == "degraded"
    assert "warning alert(s) firing" in json.dumps(health)


def test_report_json_has_every_section(run_cli, seeded_db: str) -> None:
    with psycopg.connect(seeded_db, autocommit=True) as c:
        c.execute("select monitoring.evaluate_rules(now(), null, false)")
    res = run_cli("report", "--json", "--db-url", seeded_db)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["firing_alerts"], "the seeded data fires alerts"
    for a in data["firing_alerts"]:
        assert a["status"] in ("pending", "firing", "recovering", "nodata", "error") and "inhibited_by_rule" in a
    assert {"inhibited", "recovering", "noData"} <= set(data["health"]["alerts"])
    for key in ("health", "delivery_stats", "delivery_latency", "queue_stats", "top_errors_24h", "sessions",
                "function_stats", "firing_alerts", "recent_deliveries", "job_runs"):
        assert key in data
    assert {r["window_name"] for r in data["delivery_stats"]} == {"1h", "24h", "7d"}
    assert data["top_errors_24h"]
    text = run_cli("report", "--db-url", seeded_db)
    assert text.returncode == 0 and "delivery (1h / 24h / 7d)" in text.stdout
    # phone numbers are masked in what admins browse
    assert "*******" in text.stdout


# -- verify / schedule (the session engine's postgres database has pg_cron) -------------------
def test_schedule_verify_and_a_missing_job(run_cli, engine_url: str) -> None:
    try:
        for _ in range(2):  # idempotent
            res = run_cli("schedule")
            assert res.returncode == 0, res.stderr
        jobs = _count(engine_url, "select count(*) from cron.job where jobname in "
                                  "(select name from monitoring.expected_jobs)")
        assert jobs == _count(engine_url, "select count(*) from monitoring.expected_jobs")
        res = run_cli("verify", "--json")
        data = json.loads(res.stdout)
        assert res.returncode == 0, json.dumps(data, indent=1)
        assert data["ok"] is True
        names = {c["name"]: c["ok"] for c in data["checks"]}
        assert names["delivery over HTTP"] is True and names["rule → alert → outbox"] is True
        assert names["alerting model"] is True
        with psycopg.connect(engine_url, autocommit=True) as c:
            c.execute("select cron.unschedule('monitoring-watchdog')")
        res = run_cli("verify")
        assert res.returncode == 1
        assert "monitoring-watchdog" in res.stdout and "pydeploy schedule" in res.stdout
    finally:
        assert run_cli("unschedule").returncode == 0
        assert run_cli("unschedule").returncode == 0
        with psycopg.connect(engine_url, autocommit=True) as c:  # forget the expectation: no stalled alarm later
            c.execute("update monitoring.jobs set scheduled_at = null")
    assert _count(engine_url, "select count(*) from cron.job where jobname like 'monitoring-%'") == 0


def test_verify_names_a_missing_extension(run_cli, migrated_db: str) -> None:
    res = run_cli("verify", "--json", "--db-url", migrated_db)
    assert res.returncode == 1
    failed = {c["name"]: c["fix"] for c in json.loads(res.stdout)["checks"] if c["ok"] is False}
    assert "extension pg_cron" in failed
    assert "pg_cron" in failed["extension pg_cron"]


def test_no_database_is_one_clear_message(run_cli, tmp_path: Path) -> None:
    res = run_cli("report", env={"PYDEPLOY_HOME": str(tmp_path / "none")})
    assert res.returncode == 1
    assert "no database to talk to" in res.stderr and "pydeploy up" in res.stderr


def test_schedule_edge_mode_stores_secrets_and_refuses_without_them(run_cli, engine_url: str) -> None:
    key = "edge-mode-service-key-0123456789"
    try:
        with psycopg.connect(engine_url, autocommit=True) as c:
            c.execute(delete_secrets_sql(c), (["project_url", "service_role_key"],))
        res = run_cli("schedule", "--mode", "edge", env={"SUPABASE_SERVICE_ROLE_KEY": ""})
        assert res.returncode == 1
        assert "project_url" in res.stderr and "Traceback" not in res.stderr
        res = run_cli("schedule", "--mode", "edge", "--project-url", "http://example.com")
        assert res.returncode == 1 and "--project-url must use https" in res.stderr
        res = run_cli("schedule", "--mode", "edge", "--project-url", "http://127.0.0.1:54321", "--json",
                      env={"SUPABASE_SERVICE_ROLE_KEY": key})
        assert res.returncode == 0, res.stderr
        jobs = {j["jobname"]: j["command"] for j in json.loads(res.stdout)["jobs"]}
        assert jobs["check-whatsapp-errors"] == "select monitoring.run_job('check-whatsapp-errors-edge')"
        assert key not in res.stdout + res.stderr, "the key is never printed"
        res = run_cli("schedule", "--json")
        jobs = {j["jobname"]: j["command"] for j in json.loads(res.stdout)["jobs"]}
        assert jobs["check-whatsapp-errors"] == "select monitoring.run_job('check-whatsapp-errors')"
    finally:
        run_cli("unschedule")
        with psycopg.connect(engine_url, autocommit=True) as c:
            c.execute(delete_secrets_sql(c), (["project_url", "service_role_key"],))
            c.execute("update monitoring.jobs set scheduled_at = null")
