"""The alertmanager channel against the real Alertmanager (Debian's prometheus-alertmanager, amtool).

Our outbox posts to Alertmanager's POST /api/v2/alerts on 127.0.0.1 (behind its own basic auth);
Alertmanager routes to a loopback webhook receiver. We check what Alertmanager holds, what it
delivers, that our resolve ends the alert, that an amtool silence suppresses its notification, that
a refused request is dead-lettered and that a firing retried late never reopens a resolved alert.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pydeploy.receiver import Receiver, receiver
from tests.alerting import breach_errors, clear_errors, evaluate, pump, q
from tests.prom_stack import alertmanager, free_port, get_json, program

USER, PASSWORD = "ourdb", "am-pass-0123456789"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _web_config(url: str) -> str:
    """Alertmanager's own basic auth (exporter-toolkit web config; bcrypt hash made by pgcrypto)."""
    hashed = q(url, "select extensions.crypt(%s, extensions.gen_salt('bf', 4))", (PASSWORD,))[0][0]
    return json.dumps({"basic_auth_users": {USER: hashed}})


def am_alerts(base: str) -> list[dict[str, Any]]:
    return get_json(base + "/api/v2/alerts", {"Authorization": BASIC})


def by_name(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("alertname") == name]


def hook_alerts(rec: Receiver, name: str, status: str) -> list[dict[str, Any]]:
    """Alerts of `name` with `status` in the notifications Alertmanager delivered to our receiver."""
    return [a for r in rec.requests for a in r.json.get("alerts", [])
            if a["labels"].get("alertname") == name and a["status"] == status]


def wait(cond: Any, timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout} s: {what}")


def delivered(url: str) -> bool:
    return not q(url, "select 1 from monitoring.deliveries where status <> 'delivered'")


@pytest.fixture
def stack(alert_db: str, tmp_path: Path) -> Iterator[tuple[str, str, Receiver]]:
    with receiver(path="/am-hook") as rec, \
            alertmanager(tmp_path / "am", rec.url, web_config=_web_config(alert_db), auth=BASIC) as base:
        q(alert_db, "select monitoring.set_channel('am', 'alertmanager', %s, null, 'info')", (base,))
        q(alert_db, "select monitoring.set_channel_auth('am', 'basic', %s)", (f"{USER}:{PASSWORD}",))
        yield alert_db, base, rec


def test_firing_resolve_and_amtool_silence(stack: tuple[str, str, Receiver], tmp_path: Path) -> None:
    url, base, rec = stack
    q(url, "update monitoring.alert_rules set labels = '{\"team\": \"ops\"}' where name = 'high_error_rate'")
    # silence error_rate_webhook in Alertmanager with amtool, before it fires
    http_cfg = tmp_path / "amtool-http.yml"
    http_cfg.write_text(json.dumps({"basic_auth": {"username": USER, "password": PASSWORD}}))
    silence = subprocess.run(
        [program("amtool"), f"--alertmanager.url={base}", f"--http.config.file={http_cfg}", "silence", "add",
         "alertname=error_rate_webhook", "--comment=carrier maintenance", "--duration=1h", "--author=test"],
        capture_output=True, text=True, timeout=30, check=False)
    assert silence.returncode == 0, silence.stderr
    silence_id = silence.stdout.strip()

    breach_errors(url, 60)  # > 20 (high_error_rate) and > 50 (error_rate_webhook)
    evaluate(url, "high_error_rate")
    evaluate(url, "error_rate_webhook")
    pump(url, lambda: delivered(url))
    ours = {r[0]: r for r in q(url, "select rule_name, fingerprint, monitoring._iso(firing_since), message "
                                    "from monitoring.alerts where state = 'firing'")}
    assert set(ours) == {"high_error_rate", "error_rate_webhook"}

    # Alertmanager holds both, with our labels and annotations
    wait(lambda: len(by_name(am_alerts(base), "high_error_rate")) == 1, what="high_error_rate in Alertmanager")
    am = by_name(am_alerts(base), "high_error_rate")[0]
    service = q(url, "select service_name from monitoring.settings")[0][0]
    assert am["labels"] == {"alertname": "high_error_rate", "severity": "warning", "service": service,
                            "team": "ops"}
    assert am["annotations"]["summary"] == ours["high_error_rate"][3]
    assert am["annotations"]["fingerprint"] == ours["high_error_rate"][1]
    assert am["annotations"]["runbook"].startswith("1. ")
    assert am["annotations"]["description"]
    # Alertmanager answers in its own format (RFC 3339): the same instant as ours
    assert am["startsAt"].replace("Z", "")[:23] == ours["high_error_rate"][2].replace("Z", "")[:23]
    assert am["generatorURL"].startswith("https://supabase.com/dashboard/project/_/sql/new?content=")
    assert am["status"]["state"] == "active"
    silenced = by_name(am_alerts(base), "error_rate_webhook")[0]
    assert silenced["status"]["state"] == "suppressed"
    assert silenced["status"]["silencedBy"] == [silence_id]

    # Alertmanager delivers the firing alert to its receiver, and not the silenced one
    wait(lambda: hook_alerts(rec, "high_error_rate", "firing"), what="Alertmanager's notification")
    got = hook_alerts(rec, "high_error_rate", "firing")[0]
    assert got["labels"]["team"] == "ops"
    time.sleep(3)  # three more group intervals: the silenced group would have been flushed by now
    assert not hook_alerts(rec, "error_rate_webhook", "firing")

    # the re-send keeps it alive: one delivery with every firing alert, then none until the interval passed
    assert q(url, "select monitoring.resend_alertmanager(now())")[0][0] == 1
    body = json.loads(q(url, "select body from monitoring.deliveries where event = 'repeat' and fingerprint "
                             "is null")[0][0])
    assert sorted(a["labels"]["alertname"] for a in body) == ["error_rate_webhook", "high_error_rate"]
    assert all("endsAt" not in a for a in body)
    pump(url, lambda: delivered(url))
    assert q(url, "select monitoring.resend_alertmanager(now())")[0][0] == 0
    with psycopg.connect(url) as c:  # a minute later it is due again (rolled back)
        assert c.execute("select monitoring.resend_alertmanager(now() + interval '1 minute')").fetchone() == (1,)
        c.rollback()

    # our resolve ends it in Alertmanager, which tells its receiver
    clear_errors(url)
    evaluate(url, "high_error_rate")
    pump(url, lambda: delivered(url))
    resolve = json.loads(q(url, "select body from monitoring.deliveries where event = 'resolved'")[0][0])
    assert resolve[0]["endsAt"]
    wait(lambda: not by_name(am_alerts(base), "high_error_rate"), what="resolved in Alertmanager")
    wait(lambda: hook_alerts(rec, "high_error_rate", "resolved"), what="Alertmanager's resolved notification")
    assert hook_alerts(rec, "high_error_rate", "resolved")[0]["endsAt"] != "0001-01-01T00:00:00Z"


def test_refused_credentials_are_dead_lettered_then_requeued(stack: tuple[str, str, Receiver]) -> None:
    url, base, _ = stack
    q(url, "select monitoring.set_channel_auth('am', 'basic', 'ourdb:wrong-password')")
    q(url, "select monitoring.test_channel('am')")
    pump(url, lambda: bool(q(url, "select 1 from monitoring.dead_letters where channel = 'am'")))
    assert q(url, "select attempts, last_status_code from monitoring.dead_letters")[0] == (1, 401)
    q(url, "select monitoring.set_channel_auth('am', 'basic', %s)", (f"{USER}:{PASSWORD}",))
    assert q(url, "select monitoring.retry_dead_deliveries()")[0][0] == 1
    pump(url, lambda: delivered(url))
    wait(lambda: len(by_name(am_alerts(base), "test")) == 1, what="test alert in Alertmanager")


def test_alertmanager_down_retries_in_order(alert_db: str, tmp_path: Path) -> None:
    """A firing that fails while Alertmanager is down is retried before the resolve queued after it,
    so the resolve is the last word: Alertmanager ends with no active alert."""
    url, port = alert_db, free_port()
    q(url, "select monitoring.set_channel('am', 'alertmanager', %s, null, 'info')", (f"http://127.0.0.1:{port}",))
    breach_errors(url, 25)
    evaluate(url, "high_error_rate")
    pump(url, lambda: bool(q(url, "select 1 from monitoring.deliveries where status = 'retrying'")))
    clear_errors(url)
    evaluate(url, "high_error_rate")
    for _ in range(3):  # the resolve waits behind the retrying firing
        q(url, "select monitoring.dispatch_deliveries(now())")
    assert q(url, "select status from monitoring.deliveries where event = 'resolved'") == [("queued",)]
    with receiver(path="/am-hook") as rec, alertmanager(tmp_path / "am", rec.url, port=port) as base:
        pump(url, lambda: delivered(url), timeout=40)
        order = q(url, "select event from monitoring.deliveries order by delivered_at, id")
        assert order == [("firing",), ("resolved",)]
        assert not by_name(get_json(base + "/api/v2/alerts"), "high_error_rate")


def test_label_names_refused_on_rules_mapped_from_checks(alert_db: str) -> None:
    """Rule labels must be Prometheus label names (refused otherwise); labels a custom check
    function reports are mapped (team-name -> team_name, 2fa -> _2fa) and values sent as strings."""
    url = alert_db
    with pytest.raises(psycopg.errors.CheckViolation, match=r"alert_rules\.labels"):
        q(url, "update monitoring.alert_rules set labels = '{\"team-name\": \"ops\"}' "
               "where name = 'high_error_rate'")
    webhook = {"timestamp": "2030-01-01T00:00:00.000Z", "service": "S", "event": "firing",
               "alerts": [{"rule": "custom", "severity": "info", "message": "m",
                           "labels": {"alertname": "custom", "severity": "info", "team-name": "ops", "2fa": 3},
                           "runbook": [], "startsAt": "2030-01-01T00:00:00.000Z"}]}
    got = q(url, "select monitoring._channel_payload('alertmanager', %s::jsonb)", (json.dumps(webhook),))[0][0]
    assert got[0]["labels"] == {"alertname": "custom", "severity": "info", "service": "S", "team_name": "ops",
                                "_2fa": "3"}
    assert "endsAt" not in got[0]
