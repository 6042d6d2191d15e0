"""Load: the app writing from several connections while every monitoring check runs at the same time.

For WRITE_SECONDS, WRITERS threads (one connection each) do what the WhatsApp sender does: insert a
notification (pending), pick it up (processing), then mark it sent, or failed together with a
whatsapp_error_logs row; each heartbeats its session now and then and sometimes reconnects. At the
same time, one thread per cron job runs the job's own command from monitoring.expected_jobs (as
pg_cron would, each in its own connection), one thread forces an evaluation of every rule, one reads
every view of schema monitoring and monitoring.health(), and the pg_net stand-in worker delivers to a
real receiver on loopback.

Nothing in the product retries a deadlock or a serialization failure (run_job logs the failure in
job_runs, evaluate_rules in rule_errors), so any of them is a failure here.

The scheduled evaluation (run_job('evaluate')) evaluates a rule only when its schedule is due, once a
minute at most, so the race pg_cron sets up at the start of every minute (monitoring-evaluate and
monitoring-watchdog, plus check-whatsapp-errors on the hour, reaching the same rule) is rare here;
the last test forces that interleaving with a lock (it deadlocked before evaluate_rules took its locks in one order).

Failures are deterministic: message 0, FAIL_EVERY, 2 * FAIL_EVERY... of each writer fails, so the
share of sent messages is below 90 % from the first message on (low_delivery_rate fires once and
never resolves), and the error count only grows (high_error_rate and error_rate_webhook fire once).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pydeploy.receiver import receiver
from tests.alerting import add_channel, payloads, pump, q, signed_ok

WRITE_SECONDS = 45.0
WRITERS = 4
SESSIONS = 2
FAIL_EVERY = 9  # 1 in 9 fails (11.1 %): the delivery rate stays below low_delivery_rate's 90 %
PACE_PER_WRITER = 120  # messages per second per writer at most (the machine is shared)
HEARTBEAT_EVERY = 25  # messages between two session heartbeats
RECONNECT_EVERY = 400  # messages between two short reconnects of the writer's session
EXPECTED_FIRING = {"high_error_rate", "low_delivery_rate", "error_rate_webhook"}
JOB_PAUSE = {"retention": 1.0}  # seconds between two runs of a job; others JOB_PAUSE_DEFAULT
JOB_PAUSE_DEFAULT = 0.2


class Errors:
    """Exceptions raised in any thread, with the thread's name (the test fails on any)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._lock = threading.Lock()

    def add(self, where: str, what: str) -> None:
        with self._lock:
            if len(self.items) < 50:
                self.items.append(f"{where}: {what}")


def guarded(errors: Errors, name: str, stop: threading.Event, step: Callable[[psycopg.Connection], None],
            url: str, pause: float) -> Callable[[], None]:
    """A thread body: run `step` on its own connection until `stop`, recording every exception."""

    def body() -> None:
        try:
            with psycopg.connect(url, autocommit=True, application_name=f"load {name}") as c:
                while not stop.is_set():
                    try:
                        step(c)
                    except Exception as exc:
                        errors.add(name, f"{type(exc).__name__}: {exc}")
                    stop.wait(pause)
        except Exception:
            errors.add(name, traceback.format_exc())

    return body


def writer(url: str, w: int, deadline: float, inserted: list[int], errors: Errors) -> None:
    """One sender: pending -> processing -> sent | failed (+ error log), heartbeats its session."""
    session = f"load-s{w % SESSIONS}"
    try:
        with psycopg.connect(url, autocommit=True, application_name=f"load writer {w}") as c:
            k = 0
            started = time.monotonic()
            while time.monotonic() < deadline:
                try:
                    nid = c.execute(
                        "insert into public.whatsapp_notifications (order_id, phone_number, template_name, message,"
                        " metadata) values (%s, %s, 'order_update', 'Your order is on its way', %s) returning id",
                        (f"w{w}-{k}", f"+55119{w:02d}{k:06d}", Jsonb({"writer": w, "seq": k})),
                    ).fetchone()[0]
                    inserted[w] += 1
                    c.execute("update public.whatsapp_notifications set status = 'processing', attempts = attempts + 1,"
                              " processing_started_at = now(), updated_at = now() where id = %s", (nid,))
                    if k % FAIL_EVERY == 0:
                        with c.transaction():
                            c.execute("update public.whatsapp_notifications set status = 'failed', failed_at = now(),"
                                      " error_code = '131026', error_message = 'Message undeliverable',"
                                      " updated_at = now() where id = %s", (nid,))
                            c.execute("insert into public.whatsapp_error_logs (error_type, error_message, error_code,"
                                      " notification_id, context) values (%s, 'Message undeliverable', '131026', %s,"
                                      " %s)", ("invalid_number" if k % 2 else "rate_limited", nid,
                                               Jsonb({"writer": w, "seq": k})))
                    else:
                        c.execute("update public.whatsapp_notifications set status = 'sent', sent_at = now(),"
                                  " updated_at = now() where id = %s", (nid,))
                    if k % RECONNECT_EVERY == RECONNECT_EVERY - 1:
                        c.execute("update public.whatsapp_sessions set connection_state = 'connecting',"
                                  " state_changed_at = now(), updated_at = now() where session_id = %s", (session,))
                    elif k % HEARTBEAT_EVERY == 0 or k % RECONNECT_EVERY == 0:
                        c.execute("update public.whatsapp_sessions set connection_state = 'connected',"
                                  " last_connected_at = now(), state_changed_at = case when connection_state ="
                                  " 'connected' then state_changed_at else now() end, updated_at = now()"
                                  " where session_id = %s", (session,))
                except Exception as exc:
                    errors.add(f"writer {w}", f"{type(exc).__name__}: {exc}")
                k += 1
                ahead = started + k / PACE_PER_WRITER - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    except Exception:
        errors.add(f"writer {w}", traceback.format_exc())


def job_step(command: str) -> Callable[[psycopg.Connection], None]:
    def step(c: psycopg.Connection) -> None:
        cur = c.execute(command)
        out = cur.fetchone()[0] if cur.description else None
        if isinstance(out, dict) and out.get("ok") is False:
            raise AssertionError(f"{command} -> {json.dumps(out)}")

    return step


def evaluate_all(c: psycopg.Connection) -> None:
    out = c.execute("select monitoring.evaluate_rules(now(), array(select r.name from monitoring.alert_rules as r"
                    " order by r.name), false)").fetchone()[0]
    if out["errors"]:
        raise AssertionError(f"evaluate_rules errors: {out['errors']}")


def read_views(views: list[str]) -> Callable[[psycopg.Connection], None]:
    def step(c: psycopg.Connection) -> None:
        for v in views:
            c.execute(f"select * from monitoring.{v}").fetchall()
        health = c.execute("select monitoring.health()").fetchone()[0]
        if health.get("status") not in ("healthy", "degraded", "unhealthy"):
            raise AssertionError(f"health(): {health}")

    return step


def assert_rollups_equal_raw(url: str) -> datetime:
    """Minute rollups before the watermark equal direct counts on the raw tables; returns the watermark."""
    watermark = q(url, "select watermark from monitoring.rollup_state")[0][0]
    raw_minutes = q(url, """
        select date_bin('1 minute', created_at, '2000-01-01 00:00:00+00') as b, count(*),
               count(*) filter (where status = 'sent'), count(*) filter (where status = 'failed')
        from public.whatsapp_notifications where created_at < %s group by b order by b""", (watermark,))
    rolled = q(url, "select bucket, total, sent, failed from monitoring.notification_minutes"
                    " where total > 0 order by bucket")
    assert rolled == raw_minutes, "notification_minutes differ from the raw counts per minute"
    raw_errors = q(url, """
        select date_bin('1 minute', created_at, '2000-01-01 00:00:00+00') as b, error_type, count(*)
        from public.whatsapp_error_logs where created_at < %s group by b, error_type order by b, error_type""",
                   (watermark,))
    assert q(url, "select bucket, error_type, error_count from monitoring.error_minutes"
                  " order by bucket, error_type") == raw_errors, "error_minutes differ from the raw counts"
    raw_err_per_minute = [(b, sum(n for b2, _, n in raw_errors if b2 == b)) for b in sorted({e[0] for e in raw_errors})]
    assert q(url, "select bucket, errors from monitoring.notification_minutes where errors > 0"
                  " order by bucket") == raw_err_per_minute, "notification_minutes.errors differ from the raw"
    return watermark


def test_concurrent_writers_and_checks_lose_nothing_and_alert_once(alert_db: str) -> None:
    url = alert_db
    q(url, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state,"
           " state_changed_at, last_connected_at) select 'load-s' || i, '+551199990000' || i, true, 'connected',"
           " now(), now() from generate_series(0, %s) as i", (SESSIONS - 1,))
    jobs = q(url, "select job, command from monitoring.expected_jobs order by name")
    assert {j for j, _ in jobs} >= {"evaluate", "watchdog", "dispatch", "check-whatsapp-errors"}
    views = [v for (v,) in q(url, "select table_name from information_schema.views"
                                  " where table_schema = 'monitoring' order by table_name")]
    assert len(views) >= 15, views

    errors = Errors()
    inserted = [0] * WRITERS
    stop_checks = threading.Event()
    with receiver([200]) as rec:
        add_channel(url, rec.url + "/load")
        checkers = [threading.Thread(target=guarded(errors, f"job {job}", stop_checks, job_step(command), url,
                                                    JOB_PAUSE.get(job, JOB_PAUSE_DEFAULT)), daemon=True)
                    for job, command in jobs]
        checkers.append(threading.Thread(target=guarded(errors, "evaluate all rules", stop_checks, evaluate_all,
                                                        url, 0.1), daemon=True))
        checkers.append(threading.Thread(target=guarded(errors, "views and health", stop_checks,
                                                        read_views(views), url, 0.05), daemon=True))
        deadline = time.monotonic() + WRITE_SECONDS
        writers = [threading.Thread(target=writer, args=(url, w, deadline, inserted, errors), daemon=True)
                   for w in range(WRITERS)]
        for t in writers + checkers:
            t.start()
        for t in writers:
            t.join(WRITE_SECONDS + 30)
        stop_checks.set()
        for t in checkers:
            t.join(30)
        assert not any(t.is_alive() for t in writers + checkers), "a thread did not finish"
        assert errors.items == [], "errors under load:\n" + "\n".join(errors.items)

        # -- no lost rows: every writer's inserts are there, each exactly once, each settled --------
        per_writer = q(url, "select (metadata ->> 'writer')::int, count(*), count(distinct metadata ->> 'seq'),"
                            " max((metadata ->> 'seq')::int), count(*) filter (where status = 'failed'),"
                            " count(*) filter (where status not in ('sent', 'failed'))"
                            " from public.whatsapp_notifications group by 1 order by 1")
        assert [r[0] for r in per_writer] == list(range(WRITERS))
        for w, n, distinct, top, failed, unsettled in per_writer:
            assert n == inserted[w] == distinct == top + 1, (w, n, inserted[w], distinct, top)
            assert failed == (n + FAIL_EVERY - 1) // FAIL_EVERY, (w, failed, n)
            assert unsettled == 0, (w, unsettled)
        total = sum(inserted)
        assert total >= WRITERS * 100, f"too little traffic to mean anything: {total} messages"
        failed_total = q(url, "select count(*) from public.whatsapp_notifications where status = 'failed'")[0][0]
        assert q(url, "select count(*), count(distinct notification_id) from public.whatsapp_error_logs") == [
            (failed_total, failed_total)], "one error log per failed message"

        # -- rollups equal raw counts after a final regular refresh ---------------------------------
        q(url, "select monitoring.refresh_rollups()")
        assert_rollups_equal_raw(url)
        stats = q(url, "select window_name, total, sent, failed, pending, processing, delivery_rate"
                       " from monitoring.delivery_stats order by window_start desc")
        stats_1h = [r[1:] for r in stats if r[0] == "1h"]
        raw_1h = q(url, "select count(*), count(*) filter (where status = 'sent'),"
                        " count(*) filter (where status = 'failed'), count(*) filter (where status = 'pending'),"
                        " count(*) filter (where status = 'processing'),"
                        " round(100.0 * count(*) filter (where status = 'sent') / count(*), 2)"
                        " from public.whatsapp_notifications where created_at > now() - interval '1 hour'")
        assert stats_1h == raw_1h, (stats_1h, raw_1h)
        assert [r[1:] for r in stats] == raw_1h * 3, "every row is in the 24 h and 7 d windows too"
        assert stats_1h[0][0] == total
        top_errors = q(url, "select error_type, count from monitoring.top_errors_24h order by error_type")
        assert top_errors == q(url, "select error_type, count(*) from public.whatsapp_error_logs"
                                    " group by 1 order by 1"), top_errors
        # as of a minute from now every row written sits in a complete minute bucket: all of them compared
        q(url, "select monitoring.refresh_rollups(now() + interval '1 minute')")
        assert_rollups_equal_raw(url)
        assert q(url, "select sum(total), sum(errors) from monitoring.notification_minutes") == [
            (total, failed_total)]

        # -- alert state: what the rates say, each firing notification delivered exactly once -------
        rate = stats_1h[0][5]
        assert rate < Decimal(90), f"the failure pattern should keep the delivery rate below 90 %, got {rate}"
        assert failed_total > 50, "enough errors for high_error_rate (> 20) and error_rate_webhook (> 50)"
        q(url, "select monitoring.evaluate_rules(now(), array(select name from monitoring.alert_rules), false)")
        active = q(url, "select rule_name, state, severity, value from monitoring.active_alerts")
        firing = {r for r, s, _, _ in active if s == "firing"}
        assert firing == EXPECTED_FIRING, active
        assert not [a for a in active if a[2] == "critical"], active
        values = {r: v for r, s, _, v in active if s == "firing"}
        assert values["low_delivery_rate"] == rate
        assert values["high_error_rate"] == failed_total == values["error_rate_webhook"]
        history = q(url, "select rule_name, from_state, to_state from monitoring.alert_history"
                         " where rule_name = any(%s) or to_state = 'firing' order by rule_name, id",
                    (sorted(EXPECTED_FIRING),))
        assert history == [(r, None, "firing") for r in sorted(EXPECTED_FIRING)], (
            "each alert fired once and never flapped under load", history)

        pump(url, lambda: q(url, "select count(*) from monitoring.deliveries"
                                 " where status <> 'delivered'")[0][0] == 0)
        events = sorted((p["alerts"][0]["rule"], p["event"]) for p in payloads(rec))
        assert events == sorted((r, "firing") for r in EXPECTED_FIRING), events
        assert all(signed_ok(r) for r in rec.requests)
        assert len({r.headers["X-Idempotency-Key"] for r in rec.requests}) == len(rec.requests), (
            "no delivery was sent twice by concurrent dispatchers")
        assert q(url, "select count(*), count(*) filter (where attempts = 1) from monitoring.deliveries") == [
            (len(EXPECTED_FIRING), len(EXPECTED_FIRING))]

    # -- the jobs ran, repeatedly, without a failure; no rule failed to evaluate --------------------
    runs = q(url, "select e.job, count(r.id), count(r.id) filter (where not r.ok),"
                  " string_agg(distinct r.error, '; ') from monitoring.expected_jobs as e"
                  " left join monitoring.job_runs as r on r.job = e.job group by e.job order by e.job")
    assert all(n >= 3 and bad == 0 for _, n, bad, _ in runs), runs
    assert q(url, "select rule_name, sqlstate, message from monitoring.rule_errors") == []
    assert q(url, "select count(*) from monitoring.rule_state where last_error is not null") == [(0,)]
    health = q(url, "select monitoring.health()")[0][0]
    assert health["alerts"]["ruleErrors"] == [], health["alerts"]
    assert set(health["alerts"]["firingRules"]) == EXPECTED_FIRING
    assert health["delivery"]["dead"] == 0 and health["delivery"]["queued"] == 0


@pytest.mark.parametrize(("job", "hold"), [
    # monitor_stalled's check reads job_runs (as a slow read of a long cron.job_run_details would hold it up)
    ("watchdog", "lock table monitoring.job_runs in access exclusive mode"),
    # check_error_rate waits for the firing alert's row, holding error_rate_webhook
    ("check-whatsapp-errors", "select 1 from monitoring.alerts where rule_name = 'error_rate_webhook' for update"),
])
def test_a_job_holding_a_rule_and_the_evaluate_job_starting_together_do_not_deadlock(
        alert_db: str, job: str, hold: str) -> None:
    """pg_cron starts monitoring-evaluate with monitoring-watchdog every minute, with check-whatsapp-errors every hour.

    The other job is held up while it holds its rule (monitor_stalled, error_rate_webhook) and the
    evaluate job reaches the same rule meanwhile: both must finish, with no rule error.
    """
    url = alert_db
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        with psycopg.connect(url, autocommit=True, application_name=f"load {name}") as c:
            results[name] = c.execute("select monitoring.run_job(%s)", (name,)).fetchone()[0]

    def waiting(name: str, locktype: str | None = None) -> bool:
        return bool(q(url, "select 1 from pg_locks as l join pg_stat_activity as a using (pid)"
                           " where a.application_name = %s and not l.granted and l.locktype = coalesce(%s, l.locktype)",
                      (f"load {name}", locktype)))

    def wait_until(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline, q(url, "select application_name, wait_event_type, wait_event"
                                                       " from pg_stat_activity where application_name like 'load %%'")
            time.sleep(0.02)

    # the jobs have run before (rule_state rows exist, error_rate_webhook fires); an hour later every rule is due
    q(url, "insert into public.whatsapp_error_logs (error_type) select 'timeout' from generate_series(1, 60)")
    run("evaluate")
    run(job)
    q(url, "update monitoring.rule_state set last_checked_at = last_checked_at - interval '1 hour'")
    with psycopg.connect(url) as holder:
        holder.execute(hold)
        other = threading.Thread(target=run, args=(job,))
        other.start()
        wait_until(lambda: waiting(job))
        evaluate = threading.Thread(target=run, args=("evaluate",))
        evaluate.start()
        wait_until(lambda: waiting("evaluate", "advisory"))
        holder.rollback()
    other.join(30)
    evaluate.join(30)
    assert q(url, "select rule_name, message from monitoring.rule_errors") == []
    assert [results[j].get("ok") for j in (job, "evaluate")] == [True, True], results
