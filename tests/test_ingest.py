"""The app's own functions, seen: the ingest Edge Function served by Deno against a migrated database,
the test Pages app running functions/_middleware.ts in workerd (Miniflare), and an app's Edge
Function wrapped in withMonitoring in Deno, both posting to the real ingest function.

Rules are evaluated with monitoring.evaluate_rules(p_now, rules): the 5-minute `for` periods of
function_latency and function_availability are covered by a second burst of real traffic and a
second evaluation 5 minutes (of p_now) after the first, so no test sleeps for minutes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pydeploy import functions_server as fs
from pydeploy import ingest_keys as ik
from pydeploy.engines import LocalState
from pydeploy.ports import free_port
from tests.app_runtimes import ROOT, FlakyIngest, Runtime, Silent, edge_app, pages_app
from tests.databases import migrated_database

SERVICE_KEY = "test-service-role-" + uuid.uuid4().hex
RULES = ["function_errors", "function_latency", "function_availability"]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ingest_db(engine_state: LocalState) -> Iterator[str]:
    with migrated_database(engine_state, "ingest") as url:
        yield url


@pytest.fixture(scope="module")
def ingest_key(ingest_db: str) -> str:
    return ik.rotate(ingest_db, timedelta(hours=1)).key


@pytest.fixture(scope="module")
def functions(ingest_db: str, ingest_key: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[fs.FunctionsServer]:
    server = fs.start(ingest_db, service_key=SERVICE_KEY, log_path=tmp_path_factory.mktemp("fn") / "fn.log",
                      env={"WHATSAPP_API_KEY": "wa-key", "WHATSAPP_SESSION": "wa-session"})
    try:
        yield server
    finally:
        fs.stop(server)


def _pages_env(functions: fs.FunctionsServer, ingest_url: str, key: str, **extra: str) -> dict[str, str]:
    return {"MONITORING_INGEST_URL": ingest_url, "MONITORING_INGEST_KEY": key, "SUPABASE_URL": functions.url,
            "SUPABASE_ANON_KEY": "anon-key", "WHATSAPP_API_KEY": "wa-key", "WHATSAPP_SESSION": "wa-session",
            **extra}


@pytest.fixture(scope="module")
def pages(functions: fs.FunctionsServer, ingest_key: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Runtime]:
    env = _pages_env(functions, functions.function_url("ingest"), ingest_key)
    with pages_app(env, tmp_path_factory.mktemp("pages") / "pages.log") as rt:
        yield rt


@pytest.fixture(scope="module")
def edge(functions: fs.FunctionsServer, ingest_key: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Runtime]:
    env = {"MONITORING_INGEST_URL": functions.function_url("ingest"), "MONITORING_INGEST_KEY": ingest_key}
    with edge_app(env, tmp_path_factory.mktemp("edge") / "edge.log") as rt:
        yield rt


# -- helpers ------------------------------------------------------------------------------------
def _q(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _count(url: str, fn: str) -> int:
    return int(_q(url, "select count(*) from monitoring.function_invocations where function_name = %s", (fn,))[0][0])


def _errors(url: str, fn: str) -> int:
    return int(_q(url, "select count(*) from monitoring.function_invocations where function_name = %s "
                       "and status_code >= 500", (fn,))[0][0])


def _wait(check: Callable[[], Any], expected: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    got = check()
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        got = check()
    assert got == expected
    return got


def _now(url: str) -> datetime:
    return _q(url, "select now()")[0][0]


def _evaluate(url: str, p_now: datetime) -> None:
    _q(url, "select monitoring.evaluate_rules(%s, %s::text[])", (p_now, RULES))


def _state(url: str, rule: str, fn: str) -> str | None:
    rows = _q(url, "select state from monitoring.alerts where rule_name = %s and labels ->> 'function' = %s",
              (rule, fn))
    return rows[0][0] if rows else None


def _get_all(base: str, paths: list[str], workers: int = 8) -> list[httpx.Response]:
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: client.get(base + p), paths))


def _stats(rt: Runtime) -> dict[str, int]:
    return httpx.get(rt.url + "/__monitoring/stats", timeout=10).json()


def _post(functions: fs.FunctionsServer, body: Any, key: str | None, raw: bytes | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(functions.function_url("ingest"), content=content, headers=headers, timeout=30)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _batch(**over: Any) -> dict[str, Any]:
    now = _iso(datetime.now(UTC))
    b: dict[str, Any] = {
        "batchId": str(uuid.uuid4()),
        "invocations": [{"function": "/api/direct", "status": 200, "durationMs": 12.5, "time": now}],
        "logs": [{"timestamp": now, "level": "INFO", "service": "whatsapp", "action": "send_message"}],
    }
    b.update(over)
    return b


def _fire_in_two_bursts(url: str, burst: Callable[[], None], fn: str, rule: str) -> None:
    """Burst, evaluate (pending or firing), burst again, evaluate 5 min + 1 s of p_now later: the
    second window holds only the second burst and the rule has breached for its whole `for`."""
    burst()
    t1 = _now(url)
    _evaluate(url, t1)
    assert _state(url, rule, fn) in ("pending", "firing")
    time.sleep(1.2)
    burst()
    _evaluate(url, t1 + timedelta(minutes=5, seconds=1))
    assert _state(url, rule, fn) == "firing"


# -- the ingest function: bad input ------------------------------------------------------------
FUTURE = _iso(datetime.now(UTC) + timedelta(hours=2))
PAST = _iso(datetime.now(UTC) - timedelta(days=3))
NOW = _iso(datetime.now(UTC))
BAD = [
    ({"invocations": []}, 400, "batchId"),
    (_batch(batchId="short"), 400, "batchId"),
    (_batch(invocations={"function": "x"}), 400, "invocations"),
    (_batch(invocations=[], logs=[]), 400, "invocations"),
    (_batch(extra=1), 400, "extra"),
    (_batch(invocations=[{"function": "", "status": 200, "durationMs": 1, "time": NOW}]), 400,
     "invocations[0].function"),
    (_batch(invocations=[{"function": "f" * 201, "status": 200, "durationMs": 1, "time": NOW}]), 400,
     "invocations[0].function"),
    (_batch(invocations=[{"function": "/a", "status": "500", "durationMs": 1, "time": NOW}]), 400,
     "invocations[0].status"),
    (_batch(invocations=[{"function": "/a", "status": 700, "durationMs": 1, "time": NOW}]), 400,
     "invocations[0].status"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": -1, "time": NOW}]), 400,
     "invocations[0].durationMs"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": 1, "time": FUTURE}]), 400,
     "invocations[0].time"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": 1, "time": PAST}]), 400,
     "invocations[0].time"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": 1, "time": "2026-02-30T10:00:00Z"}]), 400,
     "invocations[0].time"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": 1, "time": "2026-11-30 10:00"}]), 400,
     "invocations[0].time"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": 1, "time": NOW, "colour": "red"}]), 400,
     "invocations[0].colour"),
    (_batch(logs=[{"timestamp": NOW, "level": "FATAL", "service": "s", "action": "a"}]), 400, "logs[0].level"),
    (_batch(logs=[{"timestamp": NOW, "level": "INFO", "action": "a"}]), 400, "logs[0].service"),
    (_batch(logs=[{"timestamp": NOW, "level": "INFO", "service": "s", "action": "a", "ctx": {"a": 1}}]), 400,
     "logs[0].ctx"),
    (_batch(logs=[{"timestamp": NOW, "level": "INFO", "service": "s", "action": "a", "duration": "slow"}]), 400,
     "logs[0].duration"),
    (_batch(invocations=[{"function": "/a", "status": 200, "durationMs": 1, "time": NOW}] * 1001), 413,
     "invocations"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_batches_get_a_4xx_naming_the_field_and_write_nothing(
        functions: fs.FunctionsServer, ingest_db: str, ingest_key: str, body: Any, status: int, field: str) -> None:
    before = _q(ingest_db, "select (select count(*) from monitoring.ingest_batches), "
                           "(select count(*) from monitoring.function_invocations where function_name <> 'ingest'), "
                           "(select count(*) from monitoring.app_logs)")
    res = _post(functions, body, ingest_key)
    assert res.status_code == status, res.text
    doc = res.json()
    assert doc["field"] == field
    assert doc["error"].startswith(field), doc
    after = _q(ingest_db, "select (select count(*) from monitoring.ingest_batches), "
                          "(select count(*) from monitoring.function_invocations where function_name <> 'ingest'), "
                          "(select count(*) from monitoring.app_logs)")
    assert after == before


def test_keys_body_size_and_json_are_checked_before_the_database(functions: fs.FunctionsServer,
                                                                 ingest_key: str) -> None:
    assert _post(functions, _batch(), None).status_code == 401
    wrong = _post(functions, _batch(), "not-the-key")
    assert wrong.status_code == 401 and "ingest key is not valid" in wrong.json()["error"]
    service = _post(functions, _batch(), SERVICE_KEY)
    assert service.status_code == 401  # the service role key is not an ingest key
    big = _post(functions, None, ingest_key, raw=b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}')
    assert big.status_code == 413 and big.json()["field"] == "body"
    nojson = _post(functions, None, ingest_key, raw=b"{not json")
    assert nojson.status_code == 400 and nojson.json()["field"] == "body"
    get = httpx.get(functions.function_url("ingest"), timeout=10)
    assert get.status_code == 405


def test_a_retried_batch_is_counted_once(functions: fs.FunctionsServer, ingest_db: str, ingest_key: str) -> None:
    b = _batch(invocations=[{"function": "/api/retried", "status": 200, "durationMs": 3, "time": NOW}] * 7)
    first = _post(functions, b, ingest_key)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    with ThreadPoolExecutor(4) as pool:  # retries, some concurrent
        again = list(pool.map(lambda _: _post(functions, b, ingest_key), range(4)))
    assert [r.status_code for r in again] == [200] * 4
    assert all(r.json()["duplicate"] is True for r in again)
    assert _count(ingest_db, "/api/retried") == 7


def test_phones_are_masked_and_the_log_views_show_the_lines(functions: fs.FunctionsServer, ingest_db: str,
                                                             ingest_key: str) -> None:
    t = _iso(datetime.now(UTC))
    logs = [{"timestamp": t, "level": "error", "service": "masking", "action": "send_message", "status": "failed",
             "orderId": 123, "phone": "+55 11 99999-9999", "message": "invalid number +55 11 98888-7777",
             "customerPhone": "5511977776666", "note": "retry 2 of 3"},
            {"timestamp": t, "level": "INFO", "service": "masking", "action": "send_message", "duration": 1234}]
    res = _post(functions, _batch(invocations=[], logs=logs), ingest_key)
    assert res.status_code == 200, res.text
    rows = _q(ingest_db, "select level, phone, message, fields, order_id, duration_ms from monitoring.app_logs "
                         "where service = 'masking' order by id")
    assert rows[0][:3] == ("ERROR", "+55*******9999", "invalid number +55*******7777")
    assert rows[0][3] == {"customerPhone": "*********6666", "note": "retry 2 of 3"}
    assert rows[0][4] == "123"
    assert rows[1][0] == "INFO" and rows[1][5] == 1234
    errors = _q(ingest_db, "select level, lines_1h, last_status, last_message from monitoring.recent_app_errors "
                           "where service = 'masking' and action = 'send_message'")
    assert errors == [("ERROR", 1, "failed", "invalid number +55*******7777")]
    volume = dict(_q(ingest_db, "select level, lines_1h from monitoring.log_volume"))
    assert set(volume) == {"ERROR", "WARN", "INFO", "DEBUG"} and volume["ERROR"] >= 1


def test_error_lines_reach_the_error_rate_rules_only_when_the_admin_says_so(
        functions: fs.FunctionsServer, ingest_db: str, ingest_key: str) -> None:
    def line() -> dict[str, Any]:
        return {"timestamp": _iso(datetime.now(UTC)), "level": "ERROR", "service": "optin",
                "action": "optin_failure", "status": "provider_500", "phone": "+5511999999999"}

    def logged() -> int:
        return int(_q(ingest_db, "select count(*) from public.whatsapp_error_logs "
                                 "where error_type = 'optin_failure'")[0][0])

    assert _post(functions, _batch(invocations=[], logs=[line()]), ingest_key).status_code == 200
    assert logged() == 0  # default: off
    _q(ingest_db, "update monitoring.ingest_settings set error_lines_to_error_logs = true where id")
    try:
        res = _post(functions, _batch(invocations=[], logs=[line(), line()]), ingest_key)
        assert res.json()["errorLogs"] == 2
        assert logged() == 2
        ctx = _q(ingest_db, "select error_code, context from public.whatsapp_error_logs "
                            "where error_type = 'optin_failure' limit 1")[0]
        assert ctx[0] == "provider_500" and ctx[1]["phone"] == "+55*******9999" and ctx[1]["source"] == "ingest"
        count = _q(ingest_db, "select monitoring.check_error_rate(1000000)")[0][0]["errorCount"]
        assert count >= 2
    finally:
        _q(ingest_db, "update monitoring.ingest_settings set error_lines_to_error_logs = false where id")


def test_rotating_the_key_keeps_senders_working_until_the_old_key_is_retired(
        functions: fs.FunctionsServer, ingest_db: str, ingest_key: str) -> None:
    old = ik.rotate(ingest_db, timedelta(minutes=30)).key  # the module's key is now the previous one
    try:
        assert _post(functions, _batch(), old).status_code == 200
        assert _post(functions, _batch(), ingest_key).status_code == 200  # still in its grace period
        status = ik.status(ingest_db)
        assert status["keySet"] is True and status["previousValidUntil"] is not None
        ik.retire(ingest_db)
        assert _post(functions, _batch(), ingest_key).status_code == 401
        assert _post(functions, _batch(), old).status_code == 200
    finally:
        # put the module's key back as the current one for the other tests
        _q(ingest_db, "select monitoring.rotate_ingest_key(%s, interval '0')", (ingest_key,))
    assert _post(functions, _batch(), ingest_key).status_code == 200


def test_the_key_hash_never_the_key_reaches_the_database(ingest_db: str, ingest_key: str) -> None:
    digest = hashlib.sha256(ingest_key.encode()).hexdigest()
    res = _q(ingest_db, "select monitoring.ingest(%s, %s::jsonb)", (digest, json.dumps(_batch())))[0][0]
    assert res["status"] == 200
    res = _q(ingest_db, "select monitoring.ingest(%s, %s::jsonb)", (ingest_key, json.dumps(_batch())))[0][0]
    assert res["status"] == 401


# -- Cloudflare Pages (workerd) ----------------------------------------------------------------
def test_pages_5xx_answers_fire_function_errors_and_availability_for_the_route(pages: Runtime,
                                                                              ingest_db: str) -> None:
    def burst() -> None:
        before = _count(ingest_db, "/api/fail")
        answers = _get_all(pages.url, ["/api/fail"] * 11 + ["/api/ok"] * 5)
        assert [r.status_code for r in answers] == [502] * 11 + [200] * 5
        _wait(lambda: _count(ingest_db, "/api/fail"), before + 11)

    _fire_in_two_bursts(ingest_db, burst, "/api/fail", "function_availability")
    assert _state(ingest_db, "function_errors", "/api/fail") == "firing"
    stats = _q(ingest_db, "select invocations, errors, error_rate from monitoring.get_function_stats(%s) "
                          "where function_name = '/api/fail' and window_name = '5m'", (_now(ingest_db),))
    assert stats == [(22, 22, 100)]
    assert _state(ingest_db, "function_errors", "/api/ok") is None
    region = _q(ingest_db, "select distinct region from monitoring.function_invocations "
                           "where function_name = '/api/fail'")
    assert region == [("GRU",)]


def test_pages_thrown_errors_answer_500_and_count_as_errors(pages: Runtime, ingest_db: str) -> None:
    answers = _get_all(pages.url, ["/api/throw"] * 3)
    assert [r.status_code for r in answers] == [500] * 3
    assert answers[0].json() == {"error": "internal error"}  # never the stack
    _wait(lambda: _count(ingest_db, "/api/throw"), 3)
    lines = _wait(lambda: int(_q(ingest_db, "select count(*) from monitoring.app_logs where service = 'pages' "
                                            "and level = 'ERROR' and action = 'request' "
                                            "and fields ->> 'route' = '/api/throw'")[0][0]), 3)
    assert lines == 3


def test_pages_slow_answers_fire_function_latency(pages: Runtime, ingest_db: str) -> None:
    def burst() -> None:
        before = _count(ingest_db, "/api/slow")
        answers = _get_all(pages.url, ["/api/slow?ms=5200"] * 3)
        assert [r.status_code for r in answers] == [200] * 3
        _wait(lambda: _count(ingest_db, "/api/slow"), before + 3)

    _fire_in_two_bursts(ingest_db, burst, "/api/slow", "function_latency")
    avg = _q(ingest_db, "select avg_ms from monitoring.get_function_stats(%s) where function_name = '/api/slow' "
                        "and window_name = '5m'", (_now(ingest_db),))[0][0]
    assert avg >= 5200


def test_pages_log_helper_ships_spec_lines_with_phones_masked(pages: Runtime, ingest_db: str) -> None:
    answers = _get_all(pages.url, ["/api/send?ok=0&order=A1", "/api/send?ok=1&order=A2"])
    assert [r.status_code for r in answers] == [500, 200]
    rows = _wait(lambda: _q(ingest_db, "select level, order_id, phone, message, status, duration_ms "
                                       "from monitoring.app_logs where service = 'whatsapp' "
                                       "and order_id in ('A1', 'A2') order by order_id"),
                 [("ERROR", "A1", "+55*******9999", "invalid number +55*******7777", "failed", 1234),
                  ("INFO", "A2", "+55*******9999", None, "success", 1234)])
    assert len(rows) == 2
    # the console line (Cloudflare's own log) shows the phone masked too
    assert '"phone":"+55*******9999"' in pages.log() and "+5511999999999" not in pages.log()


def test_pages_health_follows_the_anonymous_and_privileged_split(pages: Runtime) -> None:
    anon = httpx.get(pages.url + "/api/health", timeout=30)
    doc = anon.json()
    assert set(doc) == {"status", "timestamp", "services", "environment"}
    assert set(doc["services"]) == {"functions", "whatsapp"}
    assert set(doc["services"]["whatsapp"]) == {"status", "connectionState", "lastConnected"}
    assert doc["environment"] == {"configured": True}
    assert anon.status_code == (503 if doc["status"] == "unhealthy" else 200)
    full = httpx.get(pages.url + "/api/health", headers={"Authorization": f"Bearer {SERVICE_KEY}"}, timeout=30)
    fdoc = full.json()
    assert "database" in fdoc and "scheduler" in fdoc
    assert fdoc["environment"] == {"hasSupabaseUrl": True, "hasSupabaseKey": True, "hasWhatsAppKey": True,
                                   "hasWhatsAppSession": True}
    assert fdoc["services"]["functions"]["pages"] == {"status": "operational"}
    assert fdoc["status"] == doc["status"]


def test_pages_health_without_the_edge_function_is_unhealthy_not_broken(
        functions: fs.FunctionsServer, ingest_key: str, tmp_path: Path) -> None:
    env = _pages_env(functions, functions.function_url("ingest"), ingest_key,
                     SUPABASE_URL=f"http://127.0.0.1:{free_port()}")
    with pages_app(env, tmp_path / "p.log") as rt:
        res = httpx.get(rt.url + "/api/health", timeout=30)
    assert res.status_code == 503
    assert res.json()["status"] == "unhealthy" and res.json()["environment"] == {"configured": False}


def _latencies(base: str, path: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.get(base + path)
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
    return out


@pytest.mark.parametrize("kind", ["refused", "hanging"])
def test_a_down_endpoint_does_not_slow_or_break_responses(functions: fs.FunctionsServer, ingest_key: str,
                                                         tmp_path: Path, kind: str) -> None:
    with Silent() as silent:
        url = silent.url if kind == "hanging" else f"http://127.0.0.1:{free_port()}/functions/v1/ingest"
        env = _pages_env(functions, url, ingest_key, MONITORING_MAX_BUFFER="40")
        with pages_app(env, tmp_path / "p.log") as rt:
            ms = _latencies(rt.url, "/api/ok", 60)
            assert httpx.get(rt.url + "/api/throw", timeout=10).status_code == 500
            # the first batch fails (refused at once, or after the 3 s timeout when it hangs)
            _wait(lambda: _stats(rt)["failures"] >= 1, True, timeout=15)
            stats = _stats(rt)
    # the ingest POST takes up to 3 s to time out when the endpoint hangs: no response waited for it
    assert max(ms) < 1000, sorted(ms)[-5:]
    assert stats["recorded"] == 61 and stats["shipped"] == 0
    assert stats["failures"] >= 1
    # bounded: what does not fit in the buffer is dropped and counted, never held without limit
    assert stats["dropped"] > 0 and stats["dropped"] + stats["buffered"] == 61 + stats["logged"]


def test_an_endpoint_that_comes_back_gets_the_buffer_once_and_the_drop_count(
        functions: fs.FunctionsServer, ingest_db: str, ingest_key: str, tmp_path: Path) -> None:
    route = "/api/load"
    before = _count(ingest_db, route)
    with FlakyIngest(functions.function_url("ingest")) as proxy:
        env = _pages_env(functions, proxy.url, ingest_key, MONITORING_MAX_BUFFER="30")
        with pages_app(env, tmp_path / "p.log") as rt:
            proxy.mode = "lost"  # the first batch is written but its answer is lost: retried
            assert [r.status_code for r in _get_all(rt.url, [route] * 10)] == [200] * 10
            _wait(lambda: proxy.seen["lost"] >= 1, True)
            proxy.mode = "down"
            assert [r.status_code for r in _get_all(rt.url, [route] * 40)] == [200] * 40
            time.sleep(1.5)
            down = _stats(rt)
            proxy.mode = "up"
            time.sleep(2.5)  # past the backoff
            assert httpx.get(rt.url + route, timeout=10).status_code == 200
            _wait(lambda: _stats(rt)["buffered"], 0, timeout=40)
            final = _stats(rt)
    # the buffer was full when the endpoint came back: the request that woke it dropped one more
    assert down["dropped"] > 0 and final["dropped"] in (down["dropped"], down["dropped"] + 1)
    # every record not dropped arrived exactly once, the lost-answer batch included
    assert _count(ingest_db, route) - before == 51 - final["dropped"]
    assert final["shipped"] == 51 - final["dropped"]
    assert len(proxy.batch_ids) > len(set(proxy.batch_ids))  # a batch id was sent again
    warned = _q(ingest_db, "select sum((fields ->> 'dropped')::integer) from monitoring.app_logs "
                           "where service = 'monitoring' and action = 'ship_batch' and status = 'dropped'")[0][0]
    assert warned == final["dropped"]


def test_load_200_requests_per_second_for_30_seconds_counted_exactly(pages: Runtime, ingest_db: str) -> None:
    """Open loop (each request starts on its schedule, cloudflare/test/load.mjs in Node): every one of
    the 6,000 requests is answered 200 and arrives in function_invocations exactly once (no sampling)."""
    route, rate, seconds = "/api/load", 200, 30
    total = rate * seconds
    before = _count(ingest_db, route)
    stats0 = _stats(pages)
    out = subprocess.run([shutil.which("node") or "node", str(ROOT / "cloudflare" / "test" / "load.mjs"),
                          pages.url + route, str(rate), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    load = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"load: {load}")
    assert load["statuses"] == {"200": total}
    # the generator kept its schedule: the last request started at most 1 s late
    assert load["maxLagMs"] < 1000, load
    _wait(lambda: _count(ingest_db, route) - before, total, timeout=60)
    stats = _stats(pages)
    assert stats["recorded"] - stats0["recorded"] == total
    assert stats["shipped"] - stats0["shipped"] == total
    assert stats["dropped"] == stats0["dropped"] and stats["rejected"] == 0


# -- an app's Edge Function (Deno, withMonitoring posting to ingest) --------------------------
def test_edge_5xx_answers_fire_the_function_rules(edge: Runtime, ingest_db: str) -> None:
    fn = "send-notification"

    def errors() -> None:
        before = _errors(ingest_db, fn)
        answers = _get_all(edge.url, ["/fail"] * 10 + ["/throw"] * 2)
        assert [r.status_code for r in answers] == [502] * 10 + [500] * 2
        _wait(lambda: _errors(ingest_db, fn), before + 12)

    _fire_in_two_bursts(ingest_db, errors, fn, "function_availability")
    assert _state(ingest_db, "function_errors", fn) == "firing"


def test_edge_function_with_the_endpoint_down_answers_as_usual(ingest_key: str, tmp_path: Path) -> None:
    env = {"MONITORING_INGEST_URL": f"http://127.0.0.1:{free_port()}/functions/v1/ingest",
           "MONITORING_INGEST_KEY": ingest_key}
    with edge_app(env, tmp_path / "e.log") as rt:
        ms = _latencies(rt.url, "/ok", 20)
        assert httpx.get(rt.url + "/throw", timeout=10).status_code == 500
        _wait(lambda: '"status":"dropped"' in rt.log(), True, timeout=15)
    assert max(ms) < 1000


# -- retention per level ----------------------------------------------------------------------
def test_log_lines_are_kept_per_level(ingest_db: str) -> None:
    _q(ingest_db, """
        insert into monitoring.app_logs (logged_at, level, service, action, batch_id)
        select now() - a.age, a.level, 'retention', 'kept', 'retention-test'
        from (values ('DEBUG', interval '2 days'), ('DEBUG', interval '2 hours'), ('INFO', interval '8 days'),
                     ('INFO', interval '6 days'), ('WARN', interval '29 days'), ('ERROR', interval '31 days'),
                     ('ERROR', interval '29 days')) as a (level, age)""")
    _q(ingest_db, "insert into monitoring.ingest_batches (batch_id, received_at, invocations, logs) "
                  "values ('old-batch-id', now() - interval '3 days', 1, 0)")
    res = _q(ingest_db, "select monitoring.run_retention()")[0][0]
    assert res["deleted"]["ingest_batches"] >= 1
    kept = _q(ingest_db, "select level, count(*) from monitoring.app_logs where service = 'retention' "
                         "group by level order by level")
    assert kept == [("DEBUG", 1), ("ERROR", 1), ("INFO", 1), ("WARN", 1)]
    _q(ingest_db, "update monitoring.log_retention set keep_for = interval '5 days' where level = 'INFO'")
    try:
        _q(ingest_db, "select monitoring.run_retention()")
        assert _q(ingest_db, "select count(*) from monitoring.app_logs where service = 'retention' "
                             "and level = 'INFO'") == [(0,)]
    finally:
        _q(ingest_db, "update monitoring.log_retention set keep_for = interval '7 days' where level = 'INFO'")
    with pytest.raises(psycopg.errors.CheckViolation, match=r"log_retention\.keep_for"):
        _q(ingest_db, "update monitoring.log_retention set keep_for = interval '1 minute' where level = 'INFO'")


# -- pydeploy ingest-key ----------------------------------------------------------------------
def test_ingest_key_cli_rotates_prints_once_and_refuses_a_bad_grace(run_cli: Callable[..., Any],
                                                                     ingest_db: str) -> None:
    bad = run_cli("ingest-key", "rotate", "--grace", "2x", "--db-url", ingest_db)
    assert bad.returncode == 1 and "--grace must be a duration such as 30m, 1h or 2d (got '2x')" in bad.stderr
    before = ik.status(ingest_db)
    res = run_cli("ingest-key", "rotate", "--grace", "10m", "--json", "--db-url", ingest_db)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["key"].startswith("ingest_") and len(doc["key"]) >= 40 and doc["previousValidUntil"]
    status = run_cli("ingest-key", "status", "--json", "--db-url", ingest_db)
    assert doc["key"] not in status.stdout and json.loads(status.stdout)["keySet"] is True
    assert before["keySet"] is True
    # back to the module's key (the other tests use it): the previous one, retired now
    _q(ingest_db, "select monitoring.rotate_ingest_key(%s, interval '0')",
       (_q(ingest_db, "select monitoring._get_secret('monitoring_ingest_key_previous')")[0][0],))
