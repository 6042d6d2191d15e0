"""Prometheus metrics: the real postgres_exporter with prometheus/postgres_exporter_queries.yaml
against the local engine, as role monitoring_exporter; values checked against the views; one scrape
by a short-lived real Prometheus; the alerting rules checked and unit-tested with promtool."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pydeploy import exporter_queries
from pydeploy.engines import LocalState
from tests.alerting import q
from tests.databases import migrated_database
from tests.prom_stack import free_port, get_json, http, program, run

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "prometheus"
PASSWORD = "exporter-test-pass-42"
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Metrics:
    out: Metrics = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = frozenset((k, v) for k, v in _LABEL.findall(m.group(2) or "") if k != "server")
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(ms: Metrics, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in ms, f"{name}{labels} not exported; have: {sorted(k for k in ms if k[0] == name)}"
    return ms[key]


def _data(url: str) -> None:
    """Static figures: every row 30 min old (inside 1h, 24h, 7d; outside 15m), so no window edge
    moves between the scrape and the check."""
    q(url, """
        insert into public.whatsapp_notifications (phone_number, status, created_at, processing_started_at,
                                                   sent_at, failed_at)
        select '+5511999990000', s, now() - interval '30 minutes', now() - interval '30 minutes' + interval '2 s',
               case when s = 'sent' then now() - interval '30 minutes' + make_interval(secs => 1 + i % 7) end,
               case when s = 'failed' then now() - interval '29 minutes' end
        from generate_series(1, 40) as i,
             lateral (select case when i <= 30 then 'sent' when i <= 36 then 'failed' else 'pending' end as s) as x""")
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
           "select t, 'x', now() - interval '30 minutes' from (values ('timeout'), ('timeout'), ('timeout'), "
           "('invalid_number')) as v (t)")
    q(url, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state, "
           "updated_at) values ('primary', '+5511999990000', true, 'disconnected', now() - interval '20 minutes')")
    for status, ms in ((200, 120), (200, 80), (503, 300)):
        q(url, "select monitoring.record_invocation('health', %s, %s, now() - interval '30 minutes')", (status, ms))
    q(url, "select monitoring.refresh_rollups(p_full => true)")
    # an alert firing, a dead letter, a job success
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
           "select 'timeout', 'burst', now() - interval '30 minutes' from generate_series(1, 21)")
    q(url, "select monitoring.refresh_rollups(p_full => true)")
    q(url, "select monitoring.set_channel('ops', 'webhook', 'http://127.0.0.1:9/', null, 'info')")
    q(url, "select monitoring.evaluate_rules(now(), array['high_error_rate'], false)")
    q(url, "update monitoring.deliveries set status = 'dead', dead_at = now(), next_attempt_at = null")
    q(url, "insert into monitoring.job_runs (job, started_at, finished_at, ok) "
           "values ('evaluate', '2030-01-01 00:00:00+00', '2030-01-01 00:00:01+00', true)")


@pytest.fixture(scope="module")
def db(engine_state: LocalState) -> Iterator[str]:
    with migrated_database(engine_state, "prom") as url:
        _data(url)
        q(url, f"alter role {exporter_queries.ROLE} with login password '{PASSWORD}'")
        try:
            yield url
        finally:
            q(url, f"alter role {exporter_queries.ROLE} with nologin password null")


@pytest.fixture(scope="module")
def exporter(db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    parts = urllib.parse.urlsplit(db)
    dsn = f"postgresql://{exporter_queries.ROLE}:{PASSWORD}@{parts.hostname}:{parts.port}{parts.path}?sslmode=disable"
    port = free_port()
    folder = tmp_path_factory.mktemp("exporter")
    args = [program("prometheus-postgres-exporter"), f"--extend.query-path={PROM / 'postgres_exporter_queries.yaml'}",
            "--disable-default-metrics", "--disable-settings-metrics", "--no-collector.database",
            "--no-collector.bgwriter", f"--web.listen-address=127.0.0.1:{port}"]
    with run(args, f"http://127.0.0.1:{port}/", folder, "exporter", env={"DATA_SOURCE_NAME": dsn}):
        yield f"http://127.0.0.1:{port}/metrics"


@pytest.fixture(scope="module")
def scraped(exporter: str) -> Metrics:
    status, body = http(exporter)
    assert status == 200
    return parse(body.decode())


def test_every_query_runs_as_the_exporter_role(scraped: Metrics) -> None:
    assert metric(scraped, "pg_up") == 1
    assert metric(scraped, "pg_exporter_last_scrape_error") == 0
    names = {k[0] for k in scraped}
    keys = exporter_queries.load(PROM / "postgres_exporter_queries.yaml")
    assert len(keys) == 14
    missing = [k for k in keys if not any(n.startswith(k + "_") for n in names)]
    assert not missing, f"queries that exported nothing: {missing}"


def test_values_equal_the_views(db: str, scraped: Metrics) -> None:
    for row in q(db, "select window_name, total, sent, failed, pending, processing, delivered, read, delivery_rate "
                     "from monitoring.delivery_stats"):
        w = row[0]
        for status, value in zip(("total", "sent", "failed", "pending", "processing", "delivered", "read"),
                                 row[1:8], strict=True):
            assert metric(scraped, "whatsapp_delivery_messages", window=w, status=status) == value
        assert metric(scraped, "whatsapp_delivery_rate_ratio", window=w) == pytest.approx(float(row[8]) / 100)
    assert metric(scraped, "whatsapp_delivery_messages", window="1h", status="total") == 40
    assert metric(scraped, "whatsapp_delivery_messages", window="1h", status="sent") == 30
    assert metric(scraped, "whatsapp_delivery_rate_ratio", window="1h") == 0.75

    assert metric(scraped, "whatsapp_errors_logged", window="1h") == 25
    for error_type, count, _ in q(db, "select * from monitoring.top_errors_24h"):
        assert metric(scraped, "whatsapp_errors_by_type_last_24h", error_type=error_type) == count
    assert metric(scraped, "whatsapp_errors_by_type_last_24h", error_type="timeout") == 24

    backlog, age, avg15 = q(db, "select backlog_pending, oldest_pending_age_seconds, avg_queue_seconds "
                               "from monitoring.queue_stats where window_name = '15m'")[0]
    assert metric(scraped, "whatsapp_queue_pending_messages") == backlog == 4
    assert float(age) - 60 <= metric(scraped, "whatsapp_queue_oldest_pending_age_seconds") <= float(age)
    for w, avg, p95 in q(db, "select window_name, avg_queue_seconds, p95_queue_seconds from monitoring.queue_stats"):
        if avg is not None:
            assert metric(scraped, "whatsapp_queue_wait_avg_seconds", window=w) == pytest.approx(float(avg))
            assert metric(scraped, "whatsapp_queue_wait_p95_seconds", window=w) == pytest.approx(float(p95))
    assert avg15 is None or metric(scraped, "whatsapp_queue_wait_avg_seconds", window="15m") is not None

    for w, n, avg, p50, p95, p99 in q(db, "select window_name, sent_count, avg_seconds, p50_seconds, p95_seconds, "
                                          "p99_seconds from monitoring.delivery_latency"):
        assert metric(scraped, "whatsapp_delivery_time_avg_sent_messages", window=w) == n == 30
        assert metric(scraped, "whatsapp_delivery_time_avg_seconds", window=w) == pytest.approx(float(avg))
        for quantile, v in (("0.5", p50), ("0.95", p95), ("0.99", p99)):
            assert metric(scraped, "whatsapp_delivery_time_seconds", window=w, quantile=quantile) \
                == pytest.approx(float(v))

    state, minutes = q(db, "select connection_state, minutes_down from monitoring.connection_status")[0]
    labels = {"session_id": "primary", "state": state}
    assert metric(scraped, "whatsapp_session_connected", **labels) == 0
    assert metric(scraped, "whatsapp_session_active", **labels) == 1
    down = metric(scraped, "whatsapp_session_down_seconds", **labels)
    assert float(minutes) * 60 - 60 <= down <= float(minutes) * 60 + 6  # minutes_down has one decimal

    fstats = q(db, "select window_name, invocations, errors, error_rate, avg_ms, p95_ms "
                   "from monitoring.function_stats where function_name = 'health'")
    for w, inv, err, rate, avg_ms, p95_ms in fstats:
        assert metric(scraped, "supabase_function_invocations", function="health", window=w) == inv
        assert metric(scraped, "supabase_function_errors", function="health", window=w) == err
        assert metric(scraped, "supabase_function_error_ratio", function="health", window=w) \
            == pytest.approx(float(rate) / 100)
        assert metric(scraped, "supabase_function_avg_latency_seconds", function="health", window=w) \
            == pytest.approx(float(avg_ms) / 1000)
        assert metric(scraped, "supabase_function_p95_latency_seconds", function="health", window=w) \
            == pytest.approx(float(p95_ms) / 1000)
    assert metric(scraped, "supabase_function_invocations", function="health", window="1h") == 3

    assert metric(scraped, "monitoring_rule_alerts", alertname="high_error_rate", severity="warning",
                  state="firing") == 1
    assert metric(scraped, "monitoring_rule_alerts", alertname="low_delivery_rate", severity="warning",
                  state="firing") == 0
    assert metric(scraped, "monitoring_outbox_dead_letters", channel="ops") == \
        q(db, "select count(*) from monitoring.dead_letters where channel = 'ops'")[0][0] == 1
    assert metric(scraped, "monitoring_job_last_success_timestamp_seconds", job="monitoring-evaluate") \
        == 1893456001.0
    assert metric(scraped, "monitoring_job_period_seconds", job="monitoring-evaluate") == 60


def test_exporter_role_reads_nothing_else(db: str) -> None:
    """Least privilege: the role may call the exporter functions, not read any table or view."""
    denied = ["select * from monitoring.delivery_stats", "select * from public.whatsapp_notifications",
              "select * from public.whatsapp_sessions", "select * from monitoring.channels",
              "select * from monitoring.deliveries", "select * from monitoring._secrets",
              "select monitoring._get_secret('alerting_ops_url')", "select monitoring.health()",
              "select monitoring.run_job('evaluate')", "update monitoring.settings set max_attempts = 1"]
    with psycopg.connect(db, autocommit=True) as c:
        c.execute(f"set role {exporter_queries.ROLE}")
        for stmt in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(stmt)
        assert c.execute("select count(*) from monitoring.exporter_delivery_stats()").fetchone() == (3,)
    granted = q(db, "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                    "where n.nspname = 'monitoring' and has_function_privilege(%s, p.oid, 'execute') order by 1",
                (exporter_queries.ROLE,))
    assert [g[0] for g in granted] == sorted(
        f"monitoring.{name}()" for name in ("exporter_alerts", "exporter_delivery_latency", "exporter_delivery_stats",
                                            "exporter_error_counts", "exporter_function_stats", "exporter_jobs",
                                            "exporter_outbox", "exporter_queue_stats", "exporter_sessions",
                                            "exporter_slow_queries", "exporter_top_errors"))


def test_real_prometheus_scrapes_and_answers_a_query(db: str, exporter: str, tmp_path: Path) -> None:
    port = free_port()
    target = urllib.parse.urlsplit(exporter).netloc
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "1s"},
        "rule_files": [str(PROM / "alerting_rules.yml")],
        "scrape_configs": [{"job_name": "whatsapp-postgres", "static_configs": [{"targets": [target]}]}],
    }))
    args = [program("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
    base = f"http://127.0.0.1:{port}"
    with run(args, base + "/-/ready", tmp_path, "prometheus"):
        query = 'whatsapp_delivery_messages{window="1h",status="sent"}'
        deadline = time.monotonic() + 60
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and not result:
            result = get_json(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")["data"]["result"]
            time.sleep(0.5)
        assert result, f"Prometheus never got the metric: {get_json(base + '/api/v1/targets')}"
        assert float(result[0]["value"][1]) == q(db, "select sent from monitoring.delivery_stats "
                                                      "where window_name = '1h'")[0][0] == 30
        # Prometheus evaluates our rules over the scraped metrics: 25 errors in 1 h fires high_error_rate
        deadline = time.monotonic() + 30
        firing: list[str] = []
        while time.monotonic() < deadline and "high_error_rate" not in firing:
            alerts = get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
            firing = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
            time.sleep(0.5)
        assert "high_error_rate" in firing and "error_rate_webhook" not in firing


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    check = subprocess.run([program("promtool"), "check", "rules", "alerting_rules.yml"], cwd=PROM,
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0 and "12 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run([program("promtool"), "test", "rules", "alerting_rules_test.yml"], cwd=PROM,
                          capture_output=True, text=True, timeout=60, check=False)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr
    # the same names as monitoring.alert_rules' seeded rules
    names = re.findall(r"^\s+- alert: (\w+)$", (PROM / "alerting_rules.yml").read_text(), re.M)
    seeded = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "alerting.md").read_text(), re.M)
    assert sorted(names) == sorted(seeded[:12]) and len(names) == 12
