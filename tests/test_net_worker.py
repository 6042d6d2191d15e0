"""pg_net's contract, over real HTTP on loopback, run against both implementations: pydeploy's
stand-in (SQL in pydeploy/sql/pg_net_standin.sql, worker in pydeploy/net_worker.py) and the real
pg_net extension, so that any difference fails a test. The real pg_net is the session engine's when
it loads it ($PYDEPLOY_EXTENSIONS_SRC); otherwise this module starts a second local engine that
builds it from the archives beside the checkout (../shared/third_party, as in CI).
Where they differ by design the test says so (docs/reliability.md, "The stand-in and the real pg_net")."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pydeploy import engines, extensions_build
from pydeploy.net_worker import Worker
from pydeploy.receiver import receiver
from tests.alerting import NetWorker, real_pg_net

SHARED_ARCHIVES = Path(__file__).resolve().parent.parent.parent / "shared" / "third_party"


@pytest.fixture(scope="module")
def real_pg_net_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The `postgres` database of a second local engine that loads the real pg_net, built from
    $PYDEPLOY_EXTENSIONS_SRC or ../shared/third_party; None when neither holds the archives."""
    src = os.environ.get(extensions_build.ENV, "").strip()
    if not src and (SHARED_ARCHIVES / "pg_net-0.20.5.tar.gz").exists():
        src = str(SHARED_ARCHIVES)
    if not src:
        yield None
        return
    home = tmp_path_factory.mktemp("real-pg-net-engine")
    saved = os.environ.get(extensions_build.ENV)
    os.environ[extensions_build.ENV] = src
    try:
        state = engines.up(engines.UpOptions(engine="local", home=home))
    finally:
        if saved is None:
            os.environ.pop(extensions_build.ENV, None)
        else:
            os.environ[extensions_build.ENV] = saved
    try:
        yield state.db_url
    finally:
        engines.down(home, purge=True)


@pytest.fixture(params=["stand-in", "pg_net"])
def engine_url(request: pytest.FixtureRequest, scratch_db: Callable[[], str]) -> Iterator[str]:
    """A database whose `net` schema is the stand-in's or the real extension's, with its worker running.
    (Named engine_url so that each test reads as before: it is the database under test.)"""
    url = scratch_db()
    if request.param == "stand-in":
        engines.prepare(url, standin=True)
        worker = Worker(url, poll_interval=0.05)
        thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        try:
            yield url
        finally:
            worker.stop()
            thread.join(10)
        return
    if not real_pg_net(url):
        other = request.getfixturevalue("real_pg_net_engine")
        if other is None:
            pytest.skip("no real pg_net here: set PYDEPLOY_EXTENSIONS_SRC to the folder of pg_net-0.20.5.tar.gz, "
                        "or check out beside shared/third_party, to compare the stand-in with it")
        assert real_pg_net(other), "the second engine was built with the real pg_net but does not load it"
        url = other
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("create extension if not exists pg_net with schema extensions")
    with NetWorker(url):
        yield url


def _response(url: str, request_id: int, timeout: float = 15) -> tuple:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute("select status_code, content_type, headers, content, timed_out, error_msg "
                            "from net._http_response where id = %s", (request_id,)).fetchone()
            if row:
                return row
            time.sleep(0.05)
    raise AssertionError(f"no response for request {request_id} within {timeout} s")


def _post(url: str, sql: str, *args: object) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(sql, args).fetchone()
        assert row is not None
        return int(row[0])


def test_post_delivers_exact_body_and_headers_and_records_response(engine_url: str) -> None:
    with receiver([201]) as rec:
        rid = _post(engine_url, "select net.http_post(url := %s, body := %s::jsonb, "
                    "headers := '{\"Content-Type\": \"application/json\", \"X-Test\": \"1\"}'::jsonb)",
                    rec.url + "/hook", json.dumps({"b": 2, "a": [1, "é"]}))
        status, ctype, headers, content, timed_out, error = _response(engine_url, rid)
        got = rec.requests[0]
    assert (status, timed_out, error) == (201, False, None)
    assert ctype == "application/json" and headers["X-Receiver"] == "pydeploy"
    assert json.loads(content) == {"received": True}
    assert got.method == "POST" and got.path == "/hook"
    assert got.headers["X-Test"] == "1"
    # pg_net sends convert_to(body::text, 'UTF8'): jsonb's canonical text, byte for byte
    with psycopg.connect(engine_url) as c:
        expected = c.execute("select convert_to(%s::jsonb::text, 'UTF8')",
                             (json.dumps({"b": 2, "a": [1, "é"]}),)).fetchone()
    assert expected is not None and got.body == bytes(expected[0])


def test_params_are_url_encoded_and_get_works(engine_url: str) -> None:
    with receiver() as rec:
        rid = _post(engine_url, "select net.http_get(%s, params := '{\"q\": \"a b&c\"}'::jsonb)", rec.url + "/x")
        _response(engine_url, rid)
        assert rec.requests[0].method == "GET"
        assert rec.requests[0].path == "/x?q=a%20b%26c"


def test_non_2xx_is_recorded_not_retried(engine_url: str) -> None:
    with receiver([500]) as rec:
        rid = _post(engine_url, "select net.http_post(%s)", rec.url)
        status, *_rest, timed_out, error = _response(engine_url, rid)
        time.sleep(0.5)
        assert len(rec.requests) == 1
    assert (status, timed_out, error) == (500, False, None)


def test_timeout_milliseconds_is_honoured(engine_url: str) -> None:
    with receiver(delay=3) as rec:
        t0 = time.monotonic()
        rid = _post(engine_url, "select net.http_post(%s, timeout_milliseconds := 500)", rec.url)
        status, *_rest, timed_out, error = _response(engine_url, rid)
        elapsed = time.monotonic() - t0
    assert status is None and timed_out is True
    assert "Timeout of 500 ms reached" in error
    assert elapsed < 2.5


def test_a_batch_in_flight_keeps_its_queue_rows_locked_and_its_responses_appear_together(engine_url: str) -> None:
    """One transaction per batch: what the reconciler relies on to tell "sending" from "never taken"."""
    with receiver(script=[(200, 0.0), (200, 2.0)]) as fast, receiver(delay=2) as slow:
        with psycopg.connect(engine_url) as c:
            first = c.execute("select net.http_post(%s)", (fast.url,)).fetchone()
            second = c.execute("select net.http_post(%s)", (slow.url,)).fetchone()
        assert first and second
        slow.wait_for(1, timeout=10)
        fast.wait_for(1, timeout=5)
        with psycopg.connect(engine_url, autocommit=True) as c:
            queued = c.execute("select count(*) from net.http_request_queue").fetchone()
            free = c.execute("select count(*) from (select from net.http_request_queue "
                             "for update skip locked) as k").fetchone()
            answered = c.execute("select count(*) from net._http_response where id = %s", (first[0],)).fetchone()
        assert queued == (2,), "both requests stay in the queue (deleted, uncommitted) while the batch runs"
        assert free == (0,), "and locked by the worker: nobody can withdraw a request being sent"
        assert answered == (0,), "the fast request's response waits for the batch to commit"
        assert _response(engine_url, first[0])[0] == 200 and _response(engine_url, second[0])[0] == 200
        with psycopg.connect(engine_url, autocommit=True) as c:
            assert c.execute("select count(*) from net.http_request_queue").fetchone() == (0,)


def test_refused_connection_is_an_error_msg(engine_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rid = _post(engine_url, "select net.http_post(%s)", f"http://127.0.0.1:{port}/")
    status, *_rest, timed_out, error = _response(engine_url, rid)
    assert status is None and timed_out is False and error == "Couldn't connect to server"


def test_rolled_back_transaction_sends_nothing(engine_url: str) -> None:
    with receiver() as rec:
        with psycopg.connect(engine_url) as c:
            c.execute("select net.http_post(%s)", (rec.url,))
            c.rollback()
        time.sleep(1)
        assert rec.requests == []


def test_content_type_must_be_json(engine_url: str) -> None:
    with psycopg.connect(engine_url) as c, pytest.raises(psycopg.errors.RaiseException, match="application/json"):
        c.execute("select net.http_post('http://127.0.0.1:1', headers := '{\"Content-Type\": \"text/plain\"}')")


def test_tables_are_unlogged_like_pg_net(engine_url: str) -> None:
    with psycopg.connect(engine_url) as c:
        rows = dict(c.execute("select relname, relpersistence from pg_class c join pg_namespace n "
                              "on n.oid = c.relnamespace where nspname = 'net' and relkind = 'r'").fetchall())
    assert rows == {"http_request_queue": "u", "_http_response": "u"}
