"""The Edge Functions (health, check-error-rate) served by Deno on loopback, called as a deployed
project is called: with supabase-py's functions client and with plain HTTP.

- Most tests use a database of their own in the session engine's cluster (`edge_db`, migrations
  applied), so counts and invocation records are exact and nothing leaks into other tests.
- "healthy" needs pg_cron, and the pg_net stand-in worker serves only the engine's `postgres`
  database: those two tests use `engine_url` and undo what they commit.
- `deno check`, `deno lint`, `deno fmt --check` and `deno test` run here too, so `make test`
  covers them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from supabase_functions.errors import FunctionsHttpError

from pydeploy import functions_server as fs
from pydeploy.engines import LocalState
from pydeploy.ports import free_port
from supabase import create_client
from tests.alerting import delete_secrets_sql, read_secret_sql
from tests.databases import migrated_database

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "supabase" / "functions"
KEY = "test-service-role-" + uuid.uuid4().hex
SPEC_KEYS = {"status", "timestamp", "services", "environment"}
ENV_KEYS = {"hasSupabaseUrl", "hasSupabaseKey", "hasWhatsAppKey", "hasWhatsAppSession"}
NO_ALERT = 1_000_000_000  # a threshold no test count reaches: check_error_rate raises no alert

# supabase-py 2.x passes its own default timeout to the functions client, which then warns
pytestmark = pytest.mark.filterwarnings("ignore:The 'timeout' parameter is deprecated:DeprecationWarning")


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_db(engine_state: LocalState) -> Iterator[str]:
    """A database of this module's own, prepared like Supabase, all migrations applied."""
    with migrated_database(engine_state, "edge") as url:
        yield url


def _serve(db_url: str, log: Path) -> Iterator[fs.FunctionsServer]:
    server = fs.start(db_url, service_key=KEY, log_path=log, env={"WHATSAPP_API_KEY": "wa-secret-value"})
    try:
        yield server
    finally:
        fs.stop(server)
        assert not server.alive()


@pytest.fixture(scope="module")
def edge_server(edge_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[fs.FunctionsServer]:
    yield from _serve(edge_db, tmp_path_factory.mktemp("fn") / "edge.log")


@pytest.fixture(scope="module")
def session_server(engine_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[fs.FunctionsServer]:
    yield from _serve(engine_url, tmp_path_factory.mktemp("fn") / "session.log")


@pytest.fixture(scope="module")
def dead_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fs.FunctionsServer]:
    """SUPABASE_DB_URL names a port where nothing listens (a stopped database)."""
    url = f"postgresql://postgres:not-this-password@127.0.0.1:{free_port()}/postgres"
    yield from _serve(url, tmp_path_factory.mktemp("fn") / "dead.log")


@pytest.fixture(scope="module")
def hanging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fs.FunctionsServer]:
    """SUPABASE_DB_URL names a server that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    url = f"postgresql://postgres:pw@127.0.0.1:{listener.getsockname()[1]}/postgres"
    try:
        yield from _serve(url, tmp_path_factory.mktemp("fn") / "hanging.log")
    finally:
        stop.set()
        t.join(5)
        for s in held:
            s.close()
        listener.close()


def _commit(url: str, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _max_invocation(url: str, settle: float = 1.5) -> int:
    """The newest invocation id once no record has arrived for `settle` s (recording is async and
    batched: a function writes its records at most 1 s after the calls)."""
    last, since = -1, time.monotonic()
    deadline = since + 10
    while time.monotonic() < deadline:
        now = int(_commit(url, "select coalesce(max(id), 0) from monitoring.function_invocations")[0][0])
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            break
        time.sleep(0.05)
    return last


def _invocations(url: str, after: int, expected: int, timeout: float = 10) -> list[tuple[str, int]]:
    """The invocations recorded after id `after`, once there are `expected` (recording is async)."""
    deadline = time.monotonic() + timeout
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = _commit(url, "select function_name, status_code from monitoring.function_invocations "
                            "where id > %s order by id", (after,))
        if len(rows) >= expected:
            return [(str(r[0]), int(r[1])) for r in rows]
        time.sleep(0.05)
    raise AssertionError(f"expected {expected} invocation records, got {rows}")


def _client(server: fs.FunctionsServer, key: str = KEY) -> Any:
    return create_client(server.url, key)


def _get(server: fs.FunctionsServer, name: str, **kw: Any) -> httpx.Response:
    return httpx.get(server.function_url(name), timeout=10, **kw)


def _post(server: fs.FunctionsServer, name: str, **kw: Any) -> httpx.Response:
    return httpx.post(server.function_url(name), timeout=10, **kw)


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _assert_spec_shape(body: dict[str, Any]) -> None:
    assert body.keys() >= SPEC_KEYS, body
    assert body["status"] in ("healthy", "degraded", "unhealthy")
    assert {"status", "connectionState", "lastConnected"} <= body["services"]["whatsapp"].keys()
    assert "status" in body["services"]["functions"]
    assert set(body["environment"]) == ENV_KEYS
    assert all(isinstance(v, bool) for v in body["environment"].values())
    assert "wa-secret-value" not in json.dumps(body) and KEY not in json.dumps(body)


@pytest.fixture
def connected_session(edge_db: str) -> Iterator[str]:
    sid = "edge-test-" + uuid.uuid4().hex[:8]
    _commit(edge_db, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, connection_state, "
                     "last_connected_at, state_changed_at) values (%s, '+5511999999999', true, 'connected', now(), "
                     "now())", (sid,))
    try:
        yield sid
    finally:
        _commit(edge_db, "delete from public.whatsapp_sessions where session_id = %s", (sid,))


# -- health -------------------------------------------------------------------------------------
def test_health_is_200_with_the_spec_keys_while_healthy(session_server: fs.FunctionsServer, engine_url: str) -> None:
    """On the engine's own database (pg_cron there): a connected session, fresh rollups and a
    scheduled job make monitoring.health() healthy; the function answers 200 with the spec's keys."""
    sid = "edge-test-" + uuid.uuid4().hex[:8]
    job = "edge-functions-test-" + uuid.uuid4().hex[:8]
    before = _max_invocation(engine_url)
    _commit(engine_url, "insert into public.whatsapp_sessions (session_id, phone_number, is_active, "
                        "connection_state, last_connected_at, state_changed_at) "
                        "values (%s, '+5511999999999', true, 'connected', now(), now())", (sid,))
    scheduled = int(_commit(engine_url, "select count(*) from cron.job")[0][0]) == 0
    rollups = _commit(engine_url, "select to_jsonb(s) from monitoring.rollup_state as s")[0][0]
    try:
        _commit(engine_url, "select monitoring.refresh_rollups()")
        if scheduled:  # once a year, never due during the test: only "a job is scheduled"
            _commit(engine_url, "select cron.schedule(%s, '0 0 1 1 *', 'select 1')", (job,))
        expected = _commit(engine_url, "select monitoring.health()")[0][0]
        assert expected["status"] == "healthy", f"the database is not healthy: {expected['reasons']}"

        r = _get(session_server, "health", headers=_auth())
        assert r.status_code == 200, r.text
        body = r.json()
        _assert_spec_shape(body)
        assert body["status"] == "healthy"
        assert list(body)[:3] == ["status", "timestamp", "services"]
        assert body["services"]["whatsapp"]["status"] == "connected"
        assert body["services"]["whatsapp"]["connectionState"] == "connected"
        assert body["services"]["functions"]["status"] == "operational"
        assert body["environment"] == {"hasSupabaseUrl": True, "hasSupabaseKey": True, "hasWhatsAppKey": True,
                                       "hasWhatsAppSession": False}
        assert {"database", "scheduler", "alerts", "delivery"} <= body.keys()

        # the same through supabase-py, as a deployed project is called
        data = _client(session_server).functions.invoke("health", {"method": "GET", "responseType": "json"})
        assert data["status"] == "healthy"
        _assert_spec_shape(data)
        assert _invocations(engine_url, before, 2) == [("health", 200), ("health", 200)]
    finally:
        if scheduled:
            _commit(engine_url, "select cron.unschedule(jobid) from cron.job where jobname = %s", (job,))
        _commit(engine_url, "delete from public.whatsapp_sessions where session_id = %s", (sid,))
        _commit(engine_url, "delete from monitoring.function_invocations where id > %s", (before,))
        _restore_rollup_state(engine_url, rollups)


def _restore_rollup_state(url: str, saved: dict[str, Any]) -> None:
    """Put the rollup watermark back: other tests read this database as if never refreshed.
    (Rows left in the minute rollups are ignored below the watermark and recomputed above it.)"""
    cols = [c for c in saved if c != "id"]
    assignments = sql.SQL(", ").join(sql.SQL("{0} = r.{0}").format(sql.Identifier(c)) for c in cols)
    query = sql.SQL("update monitoring.rollup_state as s set {} from jsonb_populate_record("
                    "null::monitoring.rollup_state, %s::jsonb) as r where s.id").format(assignments)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(query, (json.dumps(saved),))


def test_health_is_200_while_degraded(edge_server: fs.FunctionsServer, edge_db: str, connected_session: str) -> None:
    # no pg_cron in this database: the scheduler section is degraded, the rest healthy
    _commit(edge_db, "select monitoring.refresh_rollups()")
    r = _get(edge_server, "health", headers=_auth())
    body = r.json()
    assert body["status"] == "degraded", body["reasons"]
    assert r.status_code == 200
    _assert_spec_shape(body)
    assert body["scheduler"]["pgCron"] is False


def test_health_is_503_while_unhealthy(edge_server: fs.FunctionsServer, edge_db: str) -> None:
    assert _commit(edge_db, "select count(*) from public.whatsapp_sessions where is_active")[0][0] == 0
    r = _get(edge_server, "health", headers=_auth())
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    _assert_spec_shape(body)
    assert body["status"] == "unhealthy"
    assert "no active WhatsApp session" in body["reasons"]
    # supabase-py raises on a non-2xx answer, with the status
    with pytest.raises(FunctionsHttpError) as exc:
        _client(edge_server).functions.invoke("health", {"method": "GET"})
    assert exc.value.status == 503


def test_health_headers_and_cors_preflight(edge_server: fs.FunctionsServer) -> None:
    r = _get(edge_server, "health", headers={"Origin": "https://dashboard.example"})
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"
    for name, method in (("health", "GET"), ("check-error-rate", "POST")):
        pre = httpx.options(edge_server.function_url(name), timeout=10, headers={
            "Origin": "https://dashboard.example", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, x-client-info, apikey, content-type"})
        assert pre.status_code == 204, name
        assert pre.headers["access-control-allow-origin"] == "*"
        assert method in pre.headers["access-control-allow-methods"]
        assert "OPTIONS" in pre.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "x-client-info", "apikey", "content-type"} <= allowed
    assert httpx.post(edge_server.function_url("health"), timeout=10).status_code == 405


def test_health_is_503_with_a_json_reason_when_the_database_is_down(dead_server: fs.FunctionsServer) -> None:
    t0 = time.monotonic()
    r = _get(dead_server, "health", headers=_auth())
    elapsed = time.monotonic() - t0
    assert r.status_code == 503
    assert elapsed < 2, elapsed
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["status"] == "unhealthy"
    assert body["services"]["functions"] == {"status": "operational"}
    assert body["database"]["status"] == "unreachable"
    error = body["database"]["error"]
    assert isinstance(error, str) and 0 < len(error) < 300
    assert "\n" not in error and " at " not in error, "no stack trace"
    assert "not-this-password" not in r.text
    assert set(body["environment"]) == ENV_KEYS
    with pytest.raises(FunctionsHttpError) as exc:
        _client(dead_server).functions.invoke("health", {"method": "GET"})
    assert exc.value.status == 503
    # check-error-rate says so too, after authenticating the caller
    r = _post(dead_server, "check-error-rate", headers=_auth(), json={})
    assert r.status_code == 503
    assert "unreachable" in r.json()["error"]


def test_health_answers_within_2_s_when_the_database_hangs(hanging_server: fs.FunctionsServer) -> None:
    t0 = time.monotonic()
    r = _get(hanging_server, "health", headers=_auth())
    elapsed = time.monotonic() - t0
    assert r.status_code == 503
    assert elapsed < 2, elapsed
    assert r.json()["database"]["status"] == "unreachable"


# -- anonymous callers ------------------------------------------------------------------------
LEAKS = ("version", "PostgreSQL", "Debian", "size", "maxConnections", "startedAt", "watermark", "rollups",
         "alerts", "firing", "delivery", "queued", "reasons", "database", "scheduler", "hasSupabase", "hasWhatsApp")


def _assert_public(body: dict[str, Any]) -> None:
    """Only the spec's document: status, timestamp, services.{functions.status, whatsapp}, environment."""
    assert list(body) == ["status", "timestamp", "services", "environment"], body
    assert body["services"] == {"functions": {"status": body["services"]["functions"]["status"]},
                                "whatsapp": body["services"]["whatsapp"]}
    assert list(body["services"]["whatsapp"]) == ["status", "connectionState", "lastConnected"]
    assert list(body["environment"]) == ["configured"] and isinstance(body["environment"]["configured"], bool)
    text = json.dumps(body)
    assert not [w for w in LEAKS if w.lower() in text.lower()], text
    assert not re.search(r"\b1[5-9]\.\d+", text), "no version number"


def test_anonymous_health_is_the_spec_document_and_nothing_more(edge_server: fs.FunctionsServer,
                                                                  dead_server: fs.FunctionsServer) -> None:
    anon = _get(edge_server, "health")
    full = _get(edge_server, "health", headers=_auth())
    assert anon.status_code == full.status_code == 503  # no active session in edge_db
    _assert_public(anon.json())
    assert anon.json()["status"] == full.json()["status"] == "unhealthy"
    assert anon.json()["environment"] == {"configured": False}  # WHATSAPP_SESSION is not set
    assert {"database", "scheduler", "alerts", "delivery", "reasons"} <= full.json().keys()
    assert "version" in full.json()["database"] and "sizeBytes" in full.json()["database"]
    # a key that is not the service key, a malformed token: still the public document
    for headers in ({"Authorization": "Bearer not-the-key"}, {"Authorization": "Bearer a.b.c"}):
        _assert_public(_get(edge_server, "health", headers=headers).json())
    # the database down: 503, and still nothing about it (its error names host and port)
    down = _get(dead_server, "health")
    assert down.status_code == 503
    _assert_public(down.json())
    assert down.json()["status"] == "unhealthy"


def _statements(url: str) -> int:
    """Top-level statements run in this database so far (pg_stat_statements)."""
    return int(_commit(url, "select coalesce(sum(calls), 0) from extensions.pg_stat_statements "
                            "where dbid = (select oid from pg_database where datname = current_database()) "
                            "and toplevel")[0][0])


def test_a_flood_of_anonymous_health_calls_costs_the_database_a_few_statements_per_second(
        edge_server: fs.FunctionsServer, edge_db: str) -> None:
    """1,000 anonymous GETs in 10 s: the answer is cached for 5 s and invocation records are
    written once per second, so the database runs about 1.3 statements per second, not 100+."""
    n, seconds = 1000, 10.0
    _max_invocation(edge_db)  # earlier tests' records are written
    before = _statements(edge_db)
    statuses: list[int] = []
    t0 = time.monotonic()

    def call(i: int, client: httpx.Client) -> None:
        delay = t0 + i * seconds / n - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        statuses.append(client.get(edge_server.function_url("health")).status_code)

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: call(i, client), range(n)))
    elapsed = time.monotonic() - t0
    time.sleep(1.5)  # the last batch of invocation records
    used = _statements(edge_db) - before - 1  # less the first _statements() query itself
    per_second = used / elapsed
    print(f"\n{n} anonymous /health calls in {elapsed:.1f} s: {used} statements in the database "
          f"({per_second:.2f}/s)")
    assert len(statuses) == n and set(statuses) <= {200, 503}
    assert elapsed <= seconds + 2, f"the calls took {elapsed:.1f} s"
    assert per_second <= 3, f"{used} statements for {n} calls in {elapsed:.1f} s"
    recorded = _commit(edge_db, "select count(*) from monitoring.function_invocations "
                                "where function_name = 'health' and created_at > now() - interval '1 minute'")
    assert recorded[0][0] >= n, "every call is still recorded"


# -- check-error-rate ---------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Bearer {KEY[:-1]}"},
    {"Authorization": f"Basic {KEY}"},
    {"Authorization": KEY},
], ids=["none", "wrong", "prefix", "basic", "no-scheme"])
def test_check_error_rate_is_401_without_the_right_key(edge_server: fs.FunctionsServer,
                                                       headers: dict[str, str]) -> None:
    for r in (_post(edge_server, "check-error-rate", headers=headers, json={"threshold": 1}),
              _get(edge_server, "check-error-rate", headers=headers)):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/json"
        assert isinstance(r.json()["error"], str)
        assert "errorCount" not in r.text


def test_check_error_rate_is_401_through_supabase_py_with_another_key(edge_server: fs.FunctionsServer) -> None:
    with pytest.raises(FunctionsHttpError) as exc:
        _client(edge_server, "anon-or-wrong-key").functions.invoke("check-error-rate", {"body": {}})
    assert exc.value.status == 401


def test_check_error_rate_counts_the_error_rows_of_the_last_hour(edge_server: fs.FunctionsServer,
                                                                 edge_db: str) -> None:
    """errorCount is the number of whatsapp_error_logs rows with created_at in the last hour.

    monitoring.check_error_rate reads the minute rollups up to their watermark plus the raw rows
    after it: rows written as they happen count at once; backdated rows (as inserted here) count
    once refresh_rollups has recomputed their minutes, so the test refreshes after backdating."""
    tag = "edge-test-" + uuid.uuid4().hex[:8]
    last_hour = "select count(*) from public.whatsapp_error_logs where created_at > now() - interval '1 hour'"
    refresh = "select monitoring.refresh_rollups(p_full => true)"
    minutes_ago = [1, 5, 20, 45, 59, 61, 90, 24 * 60]
    _commit(edge_db, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
                     "select %s, 'test', now() - make_interval(mins => m) from unnest(%s::int[]) as m",
            (tag, minutes_ago))
    try:
        _commit(edge_db, refresh)
        expected = int(_commit(edge_db, last_hour)[0][0])
        assert expected >= 5

        # supabase-py, POST with a JSON body (as pg_cron's net.http_post sends it)
        client = _client(edge_server)
        data = client.functions.invoke("check-error-rate",
                                       {"body": {"threshold": NO_ALERT}, "responseType": "json"})
        assert data == {"errorCount": expected, "threshold": NO_ALERT}
        assert list(data) == ["errorCount", "threshold"]

        # plain HTTP, GET with the query
        r = _get(edge_server, "check-error-rate", headers=_auth(), params={"threshold": NO_ALERT - 1})
        assert r.status_code == 200
        assert r.json() == {"errorCount": expected, "threshold": NO_ALERT - 1}
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["access-control-allow-origin"] == "*"

        # supabase-py with the threshold in the query part of the name
        data = client.functions.invoke(f"check-error-rate?threshold={NO_ALERT - 2}",
                                       {"method": "GET", "responseType": "json"})
        assert data == {"errorCount": expected, "threshold": NO_ALERT - 2}

        # errors logged now count at once, without a refresh
        _commit(edge_db, "insert into public.whatsapp_error_logs (error_type, error_message) "
                         "select %s, 'test' from generate_series(1, 3)", (tag,))
        r = _post(edge_server, "check-error-rate", headers=_auth(), json={"threshold": NO_ALERT})
        assert r.json()["errorCount"] == expected + 3 == int(_commit(edge_db, last_hour)[0][0])
    finally:
        _commit(edge_db, "delete from public.whatsapp_error_logs where error_type = %s", (tag,))
        _commit(edge_db, refresh)


def test_check_error_rate_defaults_to_the_spec_threshold(edge_server: fs.FunctionsServer) -> None:
    for r in (_post(edge_server, "check-error-rate", headers=_auth()),
              _post(edge_server, "check-error-rate", headers=_auth(), json={}),
              _get(edge_server, "check-error-rate", headers=_auth())):
        assert r.status_code == 200, r.text
        assert r.json()["threshold"] == 50
        assert set(r.json()) == {"errorCount", "threshold"}


@pytest.mark.parametrize("body", [
    {"threshold": -1}, {"threshold": "abc"}, {"threshold": "10"}, {"threshold": 1.5}, {"threshold": 1e10},
    {"threshold": None}, {"threshold": True}, {"threshold": [1]},
], ids=lambda b: repr(b["threshold"]))
def test_check_error_rate_is_400_on_a_bad_threshold_in_the_body(edge_server: fs.FunctionsServer,
                                                                 body: dict[str, Any]) -> None:
    r = _post(edge_server, "check-error-rate", headers=_auth(), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("threshold must be")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "1e3", "", " ", "+5", "0x10", "1000000001", "99999999999"])
def test_check_error_rate_is_400_on_a_bad_threshold_in_the_query(edge_server: fs.FunctionsServer, value: str) -> None:
    for r in (_get(edge_server, "check-error-rate", headers=_auth(), params={"threshold": value}),
              _post(edge_server, "check-error-rate", headers=_auth(), params={"threshold": value})):
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith("threshold must be")


@pytest.mark.parametrize("content", ["not json", "[1]", "42", '"x"'])
def test_check_error_rate_is_400_on_a_body_that_is_not_a_json_object(edge_server: fs.FunctionsServer,
                                                                     content: str) -> None:
    r = _post(edge_server, "check-error-rate", headers={**_auth(), "Content-Type": "application/json"},
              content=content)
    assert r.status_code == 400
    assert "body must be" in r.json()["error"]


def test_check_error_rate_is_400_when_the_threshold_is_given_twice(edge_server: fs.FunctionsServer) -> None:
    r = _post(edge_server, "check-error-rate", headers=_auth(), params={"threshold": 1}, json={"threshold": 1})
    assert r.status_code == 400
    r = _get(edge_server, "check-error-rate?threshold=1&threshold=2", headers=_auth())
    assert r.status_code == 400


def test_check_error_rate_via_supabase_py_bad_threshold_is_an_error(edge_server: fs.FunctionsServer) -> None:
    with pytest.raises(FunctionsHttpError) as exc:
        _client(edge_server).functions.invoke("check-error-rate", {"body": {"threshold": -5}})
    assert exc.value.status == 400


# -- invocation records -------------------------------------------------------------------------
def test_every_call_is_recorded_in_function_stats(edge_server: fs.FunctionsServer, edge_db: str) -> None:
    before = _max_invocation(edge_db)
    statuses = {
        ("health", _get(edge_server, "health").status_code),
        ("check-error-rate", _post(edge_server, "check-error-rate", headers=_auth(), json={}).status_code),
        ("check-error-rate", _post(edge_server, "check-error-rate").status_code),
        ("check-error-rate", _get(edge_server, "check-error-rate", headers=_auth(),
                                  params={"threshold": "x"}).status_code),
    }
    assert {s for _, s in statuses} >= {200, 401, 400}
    recorded = _invocations(edge_db, before, 4)
    assert sorted(recorded) == sorted(statuses)
    stats = _commit(edge_db, "select function_name, invocations from monitoring.function_stats "
                             "where window_name = '5m' order by function_name")
    names = {r[0] for r in stats}
    assert {"health", "check-error-rate"} <= names
    # preflights are not calls of the function
    before = _max_invocation(edge_db)
    httpx.options(edge_server.function_url("health"), timeout=10)
    time.sleep(1.5)
    assert _max_invocation(edge_db) == before


# -- pg_cron's edge mode ------------------------------------------------------------------------
def test_the_edge_mode_job_delivers_a_real_request_to_the_served_function(session_server: fs.FunctionsServer,
                                                                          engine_url: str) -> None:
    """monitoring.run_job('check-whatsapp-errors-edge') is what the pg_cron job runs in edge mode: it
    POSTs to <project_url>/functions/v1/check-error-rate with the service key from the secret store,
    through net.http_post (here the pg_net stand-in's worker, over real HTTP)."""
    names = ("project_url", "service_role_key")
    with psycopg.connect(engine_url, autocommit=True) as c:  # Vault where the engine loads it
        read, delete = read_secret_sql(c), delete_secrets_sql(c)
        saved = [(n, c.execute(read, (n,)).fetchall()) for n in names]
    before_inv = _max_invocation(engine_url)
    before_run = int(_commit(engine_url, "select coalesce(max(id), 0) from monitoring.job_runs")[0][0])
    # check_error_rate updates the error_rate_webhook rule's state (and would raise its alert above 50)
    assert int(_commit(engine_url, "select count(*) from public.whatsapp_error_logs "
                                   "where created_at > now() - interval '1 hour'")[0][0]) <= 50
    rule_state = _commit(engine_url, "select to_jsonb(r) from monitoring.rule_state as r "
                                     "where r.rule_name = 'error_rate_webhook'")
    try:
        _commit(engine_url, "select monitoring.set_secret('project_url', %s)", (session_server.url,))
        _commit(engine_url, "select monitoring.set_secret('service_role_key', %s)", (KEY,))
        run = _commit(engine_url, "select monitoring.run_job('check-whatsapp-errors-edge')")[0][0]
        assert run["ok"], run
        request_id = run["result"]["request_id"]
        deadline = time.monotonic() + 30
        row = None
        while time.monotonic() < deadline and row is None:
            rows = _commit(engine_url, "select status_code, content, error_msg from net._http_response "
                                       "where id = %s", (request_id,))
            row = rows[0] if rows else None
            time.sleep(0.1)
        assert row is not None, "the pg_net worker wrote no response"
        status, content, error = row
        assert error is None and status == 200, (status, content, error)
        body = json.loads(content)
        assert set(body) == {"errorCount", "threshold"} and body["threshold"] == 50
        assert ("check-error-rate", 200) in _invocations(engine_url, before_inv, 1)
    finally:
        _commit(engine_url, delete, (list(names),))
        for name, value in saved:
            if value:
                _commit(engine_url, "select monitoring.set_secret(%s, %s)", (name, value[0][0]))
        _commit(engine_url, "delete from monitoring.job_runs where id > %s", (before_run,))
        _commit(engine_url, "delete from monitoring.rule_state where rule_name = 'error_rate_webhook'")
        for (row,) in rule_state:
            _commit(engine_url, "insert into monitoring.rule_state select * from "
                                "jsonb_populate_record(null::monitoring.rule_state, %s::jsonb)", (json.dumps(row),))
        _commit(engine_url, "delete from monitoring.function_invocations where id > %s", (before_inv,))


# -- pydeploy functions serve -------------------------------------------------------------------
def test_pydeploy_functions_serve_prints_urls_serves_and_stops_on_ctrl_c(cli_env: dict[str, str],
                                                                          edge_db: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "pydeploy"), "functions", "serve", "--port", str(port),
         "--db-url", edge_db, "--service-key", KEY],
        cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while len(lines) < 5:
            line = proc.stdout.readline()
            assert line, f"serve exited early: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line.strip())
        base = f"http://127.0.0.1:{port}"
        assert lines == [f"health: {base}/functions/v1/health",
                         f"check-error-rate: {base}/functions/v1/check-error-rate",
                         f"monitoring-dashboard: {base}/functions/v1/monitoring-dashboard",
                         f"ingest: {base}/functions/v1/ingest",
                         f"SUPABASE_URL={base}"]
        assert httpx.get(f"{base}/functions/v1/health", timeout=10).status_code in (200, 503)
        r = httpx.post(f"{base}/functions/v1/check-error-rate", headers=_auth(), json={"threshold": 3}, timeout=10)
        assert r.status_code == 200 and r.json()["threshold"] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/functions/v1/health", timeout=2)


def test_pydeploy_functions_serve_prints_a_generated_key_once(cli_env: dict[str, str], edge_db: str) -> None:
    port = free_port()
    env = {k: v for k, v in cli_env.items() if k != "SUPABASE_SERVICE_ROLE_KEY"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "pydeploy"), "functions", "serve", "--port", str(port),
         "--db-url", edge_db],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        key = lines[5].removeprefix("SUPABASE_SERVICE_ROLE_KEY=")
        assert lines[5].startswith("SUPABASE_SERVICE_ROLE_KEY=") and len(key) > 20
        url = f"http://127.0.0.1:{port}/functions/v1/check-error-rate"
        assert httpx.post(url, headers=_auth(key), timeout=10).status_code == 200
        assert httpx.post(url, headers=_auth(KEY), timeout=10).status_code == 401
        proc.terminate()  # SIGTERM stops Deno as Ctrl-C does
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_pydeploy_functions_serve_refuses_a_busy_port(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                      edge_db: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = run_cli("functions", "serve", "--port", str(s.getsockname()[1]), "--db-url", edge_db)
    assert r.returncode == 1
    assert "in use" in r.stderr and "Traceback" not in r.stderr


# -- deno check / lint / fmt / test -------------------------------------------------------------
@pytest.mark.parametrize("task", ["check", "lint", "fmt", "test"])
def test_deno(task: str, edge_db: str) -> None:
    """`deno task <task>` in supabase/functions (deno.json: check, lint, fmt --check, test)."""
    env = {**os.environ, "SUPABASE_DB_URL": edge_db, "NO_COLOR": "1"}
    env.pop("SUPABASE_SERVICE_ROLE_KEY", None)
    r = subprocess.run([str(fs.deno_binary(ROOT)), "task", task], cwd=FUNCTIONS_DIR, env=env,
                       capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, f"deno task {task} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
