"""Faults, injected with real processes: slow, refusing and erroring receivers, lost pg_net requests and
responses, Postgres restarts and crashes, failing checks, overlapping jobs, a stopped pg_net worker.

Every test runs in a database of its own (or, for restarts, an engine of its own) with the short
retry settings of the e2e tests (backoff 1 s, 4 attempts, 1 s HTTP timeout, 1 s response grace) and
drives the jobs' functions directly, the way `monitoring-dispatch` does each minute.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pydeploy import engines, extensions_build
from pydeploy.engines import LocalState, StateFile
from pydeploy.engines.processes import stop_pid, wait_gone
from pydeploy.receiver import receiver
from tests.alerting import NetWorker, add_channel, breach_errors, evaluate, prepare, pump, q

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FaultDb:
    url: str
    net: NetWorker


@pytest.fixture
def fault_db(scratch_db: Callable[[], str]) -> Iterator[FaultDb]:
    """Migrated scratch database, short retry settings, its own stoppable pg_net stand-in worker."""
    url = scratch_db()
    prepare(url)
    with NetWorker(url) as net:
        yield FaultDb(url, net)


# -- helpers -----------------------------------------------------------------------------------
Row = dict[str, Any]


def deliveries(url: str) -> dict[str, Row]:
    """Non-test deliveries by channel (one alert event per channel in these tests)."""
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute("select channel, event, status, attempts, last_status_code, last_error, request_id, "
                        "idempotency_key::text as key from monitoring.deliveries where event <> 'test' order by id")
        cols = [d.name for d in cur.description or []]
        return {r[0]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}


def done(url: str, want: dict[str, str]) -> Callable[[], bool]:
    def check() -> bool:
        got = deliveries(url)
        return all(got.get(ch, {}).get("status") == st for ch, st in want.items())

    return check


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(url: str, at: str = "now()") -> dict[str, Any]:
    return q(url, f"select monitoring.health({at})")[0][0]


def disconnect_sessions(url: str, n: int) -> None:
    q(url, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state, "
           "last_connected_at, updated_at) select 'fault-' || i, '+55119888' || lpad(i::text, 5, '0'), true, "
           "'disconnected', now() - interval '20 minutes', now() from generate_series(1, %s) as i", (n,))


# -- 1. a receiver slower than the timeout ----------------------------------------------------
def test_slow_receiver_times_out_retries_then_dead_letters_and_a_recovered_one_gets_it_once(fault_db: FaultDb) -> None:
    url = fault_db.url
    with (receiver(script=[(200, 2.0)], path="/hook") as slow,
          receiver(script=[(200, 2.0), (200, 2.0), (200, 0.0)], path="/hook") as recovers):
        add_channel(url, slow.url, "slow")
        add_channel(url, recovers.url, "recovers")
        breach_errors(url)
        evaluate(url)
        seen: list[tuple[str, int, str]] = []

        def watch() -> None:
            for ch, d in deliveries(url).items():
                if d["status"] == "retrying" and (ch, d["attempts"], d["last_error"]) not in seen:
                    seen.append((ch, d["attempts"], d["last_error"]))

        pump(url, done(url, {"slow": "dead", "recovers": "delivered"}), timeout=40, watch=watch)
        got = deliveries(url)

    # the slow one: each attempt timed out, was retried after the backoff, then dead-lettered
    assert got["slow"]["attempts"] == 4 and len(slow.requests) == 4
    assert "Timeout of 1000 ms" in got["slow"]["last_error"]
    assert [a for ch, a, _ in seen if ch == "slow"] == [1, 2, 3]
    assert all("Timeout of 1000 ms" in e for ch, _, e in seen if ch == "slow")
    gaps = [b.at - a.at for a, b in zip(slow.requests, slow.requests[1:], strict=False)]
    assert min(gaps) >= 1.8, f"a retry waits for the timeout (1 s) plus the backoff (1 s): {gaps}"
    dead = q(url, "select channel, attempts, last_error from monitoring.dead_letters")
    assert [(d[0], d[1]) for d in dead] == [("slow", 4)] and "Timeout" in dead[0][2]
    status = {r[0]: r for r in q(url, "select channel, dead, delivered_24h, last_error "
                                      "from monitoring.delivery_status")}
    assert status["slow"][1:3] == (1, 0) and "Timeout" in status["slow"][3]
    assert status["recovers"][1:3] == (0, 1)
    doc = health(url)
    assert doc["delivery"]["dead"] == 1 and doc["delivery"]["dead24h"] == 1
    assert doc["delivery"]["status"] == "degraded" and "dead-lettered" in doc["delivery"]["reason"]
    assert doc["status"] in ("degraded", "unhealthy")

    # the one that became fast again before the last attempt: delivered once, on the third try
    assert got["recovers"]["attempts"] == 3 and len(recovers.requests) == 3
    assert {h.key for h in recovers.requests} == {got["recovers"]["key"]}, "one idempotency key for every attempt"
    answered = q(url, "select count(*) filter (where status_code = 200 and not timed_out), "
                      "count(*) filter (where timed_out) from net._http_response")
    assert answered == [(1, 6)], "pg_net saw exactly one answer in time (and six timeouts)"


# -- 2. connection refused ---------------------------------------------------------------------
def test_connection_refused_is_retried_with_the_error_then_dead_lettered_and_can_be_requeued(fault_db: FaultDb) -> None:
    url = fault_db.url
    add_channel(url, f"http://127.0.0.1:{closed_port()}/hook", "ops")
    breach_errors(url)
    evaluate(url)
    seen: list[tuple[int, str]] = []

    def watch() -> None:
        d = deliveries(url)["ops"]
        if d["status"] == "retrying" and (d["attempts"], d["last_error"]) not in seen:
            seen.append((d["attempts"], d["last_error"]))

    pump(url, done(url, {"ops": "dead"}), watch=watch)
    assert seen == [(n, "Couldn't connect to server") for n in (1, 2, 3)]
    d = deliveries(url)["ops"]
    assert d["attempts"] == 4 and d["last_error"] == "Couldn't connect to server" and d["last_status_code"] is None
    assert q(url, "select count(*) from monitoring.dead_letters where channel = 'ops'") == [(1,)]
    assert health(url)["delivery"]["dead24h"] == 1
    # not lost: once the receiver answers, the dead letter goes out again with the same key and body
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        assert q(url, "select monitoring.retry_dead_deliveries()") == [(1,)]
        pump(url, done(url, {"ops": "delivered"}))
    assert [h.key for h in rec.requests] == [d["key"]]


# -- 3. 4xx and 5xx answers ----------------------------------------------------------------------
def test_http_errors_5xx_408_429_are_retried_other_4xx_dead_letter_at_once(fault_db: FaultDb) -> None:
    url = fault_db.url
    scripts = {
        "bad-request": [(400, 0.0)],
        "gone": [(410, 0.0)],
        "unauthorized": [(401, 0.0)],
        "flaky": [(500, 0.0), (502, 0.0), (200, 0.0)],
        "throttled": [(429, 0.0), (200, 0.0)],
        "req-timeout": [(408, 0.0), (200, 0.0)],
        "down": [(503, 0.0)],
    }
    with ExitStack() as stack:
        recs = {name: stack.enter_context(receiver(script=script, path="/hook")) for name, script in scripts.items()}
        for name, rec in recs.items():
            add_channel(url, rec.url, name)
        breach_errors(url)
        evaluate(url)
        want = {"bad-request": "dead", "gone": "dead", "unauthorized": "dead", "flaky": "delivered",
                "throttled": "delivered", "req-timeout": "delivered", "down": "dead"}
        pump(url, done(url, want), timeout=40)
        got = deliveries(url)
    summary = {ch: (d["status"], d["attempts"], d["last_status_code"]) for ch, d in got.items()}
    assert summary == {
        "bad-request": ("dead", 1, 400),  # a client error: retrying the same request cannot help
        "gone": ("dead", 1, 410),
        "unauthorized": ("dead", 1, 401),
        "flaky": ("delivered", 3, 200),  # server errors are retried
        "throttled": ("delivered", 2, 200),  # 429 Too Many Requests is retried
        "req-timeout": ("delivered", 2, 200),  # 408 Request Timeout is retried
        "down": ("dead", 4, 503),  # ... until max_attempts
    }
    assert {ch: len(r.requests) for ch, r in recs.items()} == {ch: s[1] for ch, s in summary.items()}
    assert got["bad-request"]["last_error"].startswith("HTTP 400")
    dead = {r[0] for r in q(url, "select channel from monitoring.dead_letters")}
    assert dead == {"bad-request", "gone", "unauthorized", "down"}


# -- 4. a response that never appears --------------------------------------------------------------
def test_response_deleted_before_reconcile_is_retried_after_the_grace_not_left_in_flight(fault_db: FaultDb) -> None:
    url = fault_db.url
    q(url, "update monitoring.settings set response_grace = '2 seconds'")  # room for a slow machine
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        breach_errors(url)
        evaluate(url)
        q(url, "select monitoring.dispatch_deliveries(now())")
        deadline = time.monotonic() + 10
        while q(url, "select count(*) from net._http_response") != [(1,)] and time.monotonic() < deadline:
            time.sleep(0.05)
        # pg_net's TTL (or anything else) removes the response before the reconciler reads it
        q(url, "delete from net._http_response")
        q(url, "select monitoring.reconcile_deliveries(now())")
        assert deliveries(url)["ops"]["status"] == "sending", "within timeout plus grace it still waits"
        pump(url, lambda: deliveries(url)["ops"]["status"] != "sending", timeout=10)
        d = deliveries(url)["ops"]
        assert d["status"] == "retrying" and d["attempts"] == 1
        assert d["last_error"].startswith("no response for request")
        pump(url, done(url, {"ops": "delivered"}))
    d = deliveries(url)["ops"]
    assert d["attempts"] == 2
    # at least once: the receiver got it twice, with one idempotency key to deduplicate on
    assert [h.key for h in rec.requests] == [d["key"], d["key"]]


def test_request_lost_from_pg_nets_queue_is_retried_after_the_grace_and_sent_once(fault_db: FaultDb) -> None:
    url = fault_db.url
    fault_db.net.stop()
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        breach_errors(url)
        evaluate(url)
        q(url, "select monitoring.dispatch_deliveries(now())")
        # the request vanishes before pg_net's worker takes it (its queue is unlogged: lost on a crash)
        assert q(url, "delete from net.http_request_queue returning 1") == [(1,)]
        fault_db.net.start()
        pump(url, done(url, {"ops": "delivered"}), timeout=15)
    d = deliveries(url)["ops"]
    assert d["attempts"] == 2
    assert len(rec.requests) == 1, "the lost request never went out; the retry did, once"


# -- 5. Postgres restarted (cleanly, and after a crash) between enqueue and delivery --------------
@pytest.fixture
def own_engine(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    home = tmp_path / "engine"
    try:
        url = engines.up(engines.UpOptions(engine="local", home=home)).db_url
        prepare(url)
        yield home, url
    finally:
        engines.down(home, purge=True)


def stop_engine_worker(home: Path) -> None:
    """Stop the engine's pg_net worker; the next engines.up starts a new one (the real pg_net's is
    parked in an empty database, and engines.up gives it back to `postgres` when it starts the server)."""
    store = StateFile(home)
    state = store.read()
    assert isinstance(state, LocalState)
    if state.pg_net == "extension":
        extensions_build.serve_database(state.db_url, extensions_build.IDLE_DATABASE)
        return
    if state.net_worker_pid:
        stop_pid(state.net_worker_pid)
        store.write(dataclasses.replace(state, net_worker_pid=0))  # so that nobody signals a reused pid


def crash_postgres(home: Path) -> None:
    """Immediate shutdown (SIGQUIT to the postmaster): no checkpoint, crash recovery on the next start."""
    state = StateFile(home).read()
    assert isinstance(state, LocalState) and state.postmaster_pid
    os.kill(state.postmaster_pid, signal.SIGQUIT)
    assert wait_gone(state.postmaster_pid, 30), "postmaster did not exit"


def outbox(url: str) -> list[tuple[str, str, str, int]]:
    rows = q(url, "select event, channel, status, attempts from monitoring.deliveries order by id")
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_outbox_survives_a_crash_and_a_restart_each_notification_delivered_exactly_once(
        own_engine: tuple[Path, str]) -> None:
    home, url = own_engine
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        # crash: the request handed to pg_net dies with its unlogged queue, and pg_net's ids restart at 1
        q(url, "update monitoring.settings set response_grace = '1 minute'")  # the default: no timing luck
        stop_engine_worker(home)
        breach_errors(url)
        evaluate(url)
        q(url, "select monitoring.dispatch_deliveries(now())")
        assert outbox(url) == [("firing", "ops", "sending", 1)]
        crash_postgres(home)
        url = engines.up(engines.UpOptions(engine="local", home=home)).db_url  # recovery, new pg_net worker
        assert q(url, "select count(*) from net.http_request_queue") == [(0,)], "the unlogged queue was reset"
        q(url, "select monitoring.test_channel('ops')")  # the next request reuses the lost one's id
        pump(url, lambda: {s for _, _, s, _ in outbox(url)} == {"delivered"}, timeout=20)
        assert outbox(url) == [("firing", "ops", "delivered", 2), ("test", "ops", "delivered", 1)]
        assert [h.event for h in rec.requests] == ["test", "firing"], "the notification lost in the crash went out"

        # clean restart: one delivery still in the outbox, one handed to pg_net and not sent yet (the unlogged
        # queue survives a clean shutdown; the 1-minute grace is longer than the restart)
        add_channel(url, rec.url, "ops-2")
        stop_engine_worker(home)
        q(url, "select monitoring.test_channel('ops'), monitoring.test_channel('ops-2')")
        q(url, "select monitoring.dispatch_deliveries(now(), 1)")
        assert [s for _, _, s, _ in outbox(url)[2:]] == ["sending", "queued"]
        engines.down(home)
        url = engines.up(engines.UpOptions(engine="local", home=home)).db_url
        pump(url, lambda: {s for _, _, s, _ in outbox(url)} == {"delivered"}, timeout=20)
        assert outbox(url)[2:] == [("test", "ops", "delivered", 1), ("test", "ops-2", "delivered", 1)]
        time.sleep(0.3)
    assert len(rec.requests) == 4 and len({h.key for h in rec.requests}) == 4, "each notification exactly once"


# -- 6. a check that raises mid-run -----------------------------------------------------------------
def test_a_failing_check_is_recorded_and_the_other_rules_still_fire(fault_db: FaultDb) -> None:
    url = fault_db.url
    q(url, "create table public.fault_probe (note text)")
    q(url, """
        create function monitoring._check_flaky_upstream(p_rule monitoring.alert_rules, p_now timestamptz)
        returns table (labels jsonb, value numeric, volume numeric, message text)
        language plpgsql set search_path = '' as $$
        begin
          insert into public.fault_probe values ('half done');
          raise exception 'upstream view is broken';
        end $$""")
    q(url, "insert into monitoring.alert_rules (name, description, severity, metric, check_function, threshold, "
           "runbook) values ('flaky_upstream', 'fails', 'warning', 'x', '_check_flaky_upstream', 1, "
           "array['look at it'])")
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        breach_errors(url)
        res = q(url, "select monitoring.evaluate_rules(now(), array['flaky_upstream', 'high_error_rate'], false)")[0][0]
        assert res["errors"] == {"flaky_upstream": "upstream view is broken"}
        assert res["evaluated"] == ["high_error_rate"]
        pump(url, done(url, {"ops": "delivered"}))
        assert [h.event for h in rec.requests] == ["firing"]
    assert q(url, "select count(*) from public.fault_probe") == [(0,)], "the failing rule's half-work rolled back"
    assert q(url, "select rule_name, message from monitoring.rule_errors") == [
        ("flaky_upstream", "upstream view is broken")]
    doc = health(url)
    assert [e["rule"] for e in doc["alerts"]["ruleErrors"]] == ["flaky_upstream"]
    assert "flaky_upstream" in doc["alerts"]["reason"] and doc["status"] in ("degraded", "unhealthy")
    # the scheduled job keeps succeeding and says which rule failed
    run = q(url, "select monitoring.run_job('evaluate')")[0][0]
    assert run["ok"] is True and run["result"]["rules"]["errors"] == {"flaky_upstream": "upstream view is broken"}
    assert q(url, "select ok from monitoring.job_runs where job = 'evaluate'") == [(True,)]
    assert q(url, "select count(*) from monitoring.rule_errors") == [(2,)]
    # once the check is fixed, the error clears from health()
    q(url, """
        create or replace function monitoring._check_flaky_upstream(p_rule monitoring.alert_rules, p_now timestamptz)
        returns table (labels jsonb, value numeric, volume numeric, message text)
        language sql set search_path = '' as $$ select '{}'::jsonb, 0::numeric, 0::numeric, 'fine' $$""")
    q(url, "select monitoring.evaluate_rules(now(), array['flaky_upstream'], false)")
    assert health(url)["alerts"]["ruleErrors"] == []


# -- 7. the same job overlapping with itself ---------------------------------------------------------
def run_together(url: str, sqls: list[str]) -> list[Any]:
    """Each statement in its own connection, released at the same instant."""
    conns = [psycopg.connect(url, autocommit=True) for _ in sqls]
    barrier = threading.Barrier(len(sqls))
    out: list[Any] = [None] * len(sqls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(5)
            out[i] = conns[i].execute(sqls[i]).fetchone()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sqls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    assert not errors, errors
    return out


def test_overlapping_evaluations_and_dispatches_send_each_notification_once(fault_db: FaultDb) -> None:
    url = fault_db.url
    fault_db.net.stop()  # so that nothing is confirmed before every dispatcher has run
    # one message per session (not one per severity group), so each alert is its own delivery to count
    q(url, "update monitoring.settings set group_by = '{alertname,session_id}'")
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        add_channel(url, rec.url, "ops-2")
        disconnect_sessions(url, 6)
        for _ in range(3):
            run_together(url, ["select monitoring.evaluate_rules(now(), array['whatsapp_disconnected'], false)"] * 2)
        assert q(url, "select count(*), count(distinct fingerprint) from monitoring.alerts") == [(6, 6)]
        assert q(url, "select count(*) from monitoring.alert_history where to_state = 'firing'") == [(6,)]
        assert q(url, "select count(*) from monitoring.deliveries") == [(12,)]
        sent = run_together(url, ["select monitoring.dispatch_deliveries(now())"] * 3)
        assert sum(r[0]["sent"] for r in sent) == 12
        assert q(url, "select count(*) from net.http_request_queue") == [(12,)], "one request per delivery"
        # a scheduled run that overlaps a still-running one skips instead of doing the work twice
        with psycopg.connect(url) as holder:
            holder.execute("select pg_advisory_xact_lock(hashtext('monitoring.run_job'), hashtext('evaluate'))")
            assert "skipped" in q(url, "select monitoring.run_job('evaluate')")[0][0]
        fault_db.net.start()
        pump(url, lambda: q(url, "select count(*) from monitoring.deliveries where status = 'delivered'") == [(12,)])
        time.sleep(0.3)
    per = Counter((h.fingerprint, h.json.get("alerts", [{}])[0].get("labels", {}).get("session_id"), h.key)
                  for h in rec.requests)
    assert len(rec.requests) == 12 and set(per.values()) == {1}
    assert len({h.fingerprint for h in rec.requests}) == 6


# -- 8. the pg_net worker stopped for a while, then resumed --------------------------------------------
def test_stopped_pg_net_worker_then_resumed_delivers_everything_queued_exactly_once(fault_db: FaultDb) -> None:
    url = fault_db.url
    q(url, "update monitoring.settings set max_attempts = 8")
    # one message per alert, and the error rate told although WhatsApp is down (no inhibition)
    q(url, "update monitoring.settings set group_by = '{alertname,session_id}'")
    q(url, "update monitoring.inhibit_rules set enabled = false")
    fault_db.net.stop()
    with receiver(script=[(200, 0.0)], path="/hook") as rec:
        add_channel(url, rec.url, "ops")
        add_channel(url, rec.url, "ops-2")
        disconnect_sessions(url, 4)
        evaluate(url, "whatsapp_disconnected")
        breach_errors(url)
        evaluate(url)
        assert q(url, "select count(*) from monitoring.deliveries") == [(10,)]
        # the jobs keep running while pg_net's worker is down, past timeout plus grace (2 s), until every
        # delivery has been retried once and its second request waits in pg_net's queue
        copies: list[int] = []

        def watch() -> None:
            copies.extend(n for (n,) in q(url, "select count(*) from net.http_request_queue "
                                               "group by headers ->> 'X-Idempotency-Key'"))

        pump(url, lambda: q(url, "select min(attempts), bool_and(status = 'sending') from monitoring.deliveries")
             == [(2, True)], timeout=20, watch=watch)
        assert max(copies) == 1, "a retry never queues a second copy behind the first"
        assert q(url, "select count(*) from net.http_request_queue") == [(10,)]
        errors = [e for (e,) in q(url, "select last_error from monitoring.delivery_status")]
        assert all("never took it from net.http_request_queue (is its worker running?)" in e for e in errors), errors
        fault_db.net.start()
        pump(url, lambda: q(url, "select count(*) from monitoring.deliveries where status = 'delivered'") == [(10,)])
        time.sleep(0.3)
    per = Counter((h.key, h.event) for h in rec.requests)
    assert len(rec.requests) == 10 and set(per.values()) == {1}, "each notification arrived exactly once"
    assert len({h.fingerprint for h in rec.requests}) == 5, "4 sessions and the error rate, each to both channels"
