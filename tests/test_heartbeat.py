"""The outbound heartbeat: pg_net pings a loopback receiver after each successful monitoring cycle
(<URL>/fail while health() is unhealthy); real pg_cron shows that stopping the jobs stops the pings;
`pydeploy verify` reports it; bad input is refused and changes nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import psycopg
import pytest

from pydeploy.receiver import receiver
from tests.alerting import q


def _due(url: str) -> None:
    q(url, "update monitoring.heartbeat set last_ping_at = last_ping_at - interval '1 minute' where id")


def test_ping_after_each_cycle_and_fail_when_unhealthy(alert_db: str) -> None:
    url = alert_db
    q(url, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state) "
           "values ('primary', '+5511999990000', true, 'connected')")
    with receiver(path="/ping/abc") as rec:
        q(url, "select monitoring.set_heartbeat(%s, interval '1 minute')", (rec.url,))
        assert q(url, "select monitoring.run_job('evaluate') ->> 'ok'") == [("true",)]
        r = rec.wait_for(1)[0]
        # healthy or degraded (a scratch database has no job history): the success URL
        assert (r.method, r.path) == ("POST", "/ping/abc") and r.json["status"] in ("healthy", "degraded")
        assert r.json["status"] == q(url, "select last_health from monitoring.heartbeat")[0][0]
        # not due again within the interval
        q(url, "select monitoring.run_job('evaluate')")
        time.sleep(1)
        assert len(rec.requests) == 1
        # unhealthy (the only active session down for 10 minutes): the /fail variant
        q(url, "update public.whatsapp_sessions set connection_state = 'disconnected', "
               "last_connected_at = now() - interval '10 minutes', created_at = now() - interval '1 hour'")
        assert q(url, "select monitoring.health() ->> 'status'") == [("unhealthy",)]
        _due(url)
        q(url, "select monitoring.run_job('evaluate')")
        r = rec.wait_for(2)[1]
        assert (r.path, r.json["status"]) == ("/ping/abc/fail", "unhealthy")
        assert q(url, "select last_ping_kind from monitoring.heartbeat") == [("fail",)]
        # off: no more pings
        q(url, "select monitoring.set_heartbeat(null)")
        _due(url)
        q(url, "select monitoring.run_job('evaluate')")
        time.sleep(1)
        assert len(rec.requests) == 2


@pytest.mark.parametrize(("url", "interval", "message"), [
    ("ftp://hc-ping.com/x", "1 minute", "heartbeat.url must use https"),
    ("http://hc-ping.com/x", "1 minute", "heartbeat.url must use https"),
    ("https://hc-ping.com/x/fail", "1 minute", "heartbeat.url must be the success URL"),
    ("https://hc-ping.com/x", "30 seconds", "heartbeat.ping_interval must be whole minutes"),
    ("https://hc-ping.com/x", "90 seconds", "heartbeat.ping_interval must be whole minutes"),
    ("https://hc-ping.com/x", "2 days", "heartbeat.ping_interval must be whole minutes from 1 minute to 24 hours"),
])
def test_bad_heartbeat_input_is_refused_and_changes_nothing(alert_db: str, url: str, interval: str,
                                                            message: str) -> None:
    before = q(alert_db, "select enabled, ping_interval from monitoring.heartbeat")
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        q(alert_db, "select monitoring.set_heartbeat(%s, %s::interval)", (url, interval))
    assert message in str(err.value) and err.value.diag.message_hint
    assert q(alert_db, "select enabled, ping_interval from monitoring.heartbeat") == before
    assert not q(alert_db, "select 1 from monitoring._secrets where name = 'heartbeat_url'")


def test_stopping_the_jobs_stops_the_pings(engine_url: str,
                                           run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Real pg_cron in the engine's postgres database: pings while the jobs run, none after
    unschedule_jobs(); pydeploy verify reports the heartbeat."""
    url = engine_url
    with receiver(path="/hc") as rec:
        q(url, "select monitoring.set_heartbeat(%s)", (rec.url,))
        try:
            q(url, "update monitoring.heartbeat set last_ping_at = null where id")
            q(url, "select monitoring.schedule_jobs()")
            rec.wait_for(1, timeout=75)  # the next minute's monitoring-evaluate
            verify = run_cli("verify", "--json")
            line = next(c for c in json.loads(verify.stdout)["checks"] if c["name"] == "outbound heartbeat")
            assert line["ok"] is True, line
            q(url, "select monitoring.unschedule_jobs()")
            time.sleep(2)  # a run that had already started may still finish
            n = len(rec.requests)
            time.sleep(70)  # past the next minute, when monitoring-evaluate would have run
            assert len(rec.requests) == n, "a ping arrived although the jobs were stopped"
        finally:
            q(url, "select monitoring.unschedule_jobs()")
            q(url, "select monitoring.set_heartbeat(null)")
            q(url, "update monitoring.heartbeat set last_ping_at = null, last_request_id = null where id")
