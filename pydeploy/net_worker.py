"""pydeploy's LOCAL STAND-IN for pg_net's background worker (the local engine has no pg_net).

Honours pg_net's contract: takes committed rows from `net.http_request_queue` (deleting them, as
pg_net does, in one transaction per batch that commits with the batch's responses), performs
each request over real HTTP with `timeout_milliseconds` as the total
time limit, never retries, follows no redirects, and writes one row per request into
`net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg,
created)`: status_code/headers/content on any HTTP answer (2xx or not), timed_out and error_msg
(status_code null) when no answer came. Responses older than the TTL (pg_net.ttl, 6 hours) are
deleted. On a real Supabase project pg_net's own worker does all of this and this module is
not used.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import signal
import socket
import ssl
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger("pydeploy.net_worker")

BATCH_SIZE = 200  # pg_net.batch_size default
TTL = "6 hours"  # pg_net.ttl default


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout_ms: int


@dataclass(frozen=True)
class Response:
    id: int
    status_code: int | None
    content_type: str | None
    headers: dict[str, str] | None
    content: str | None
    timed_out: bool
    error_msg: str | None


def perform(req: Request) -> Response:
    """One HTTP request, no retries, no redirects; failures become error_msg like curl's."""
    start = time.monotonic()
    timeout = max(req.timeout_ms, 1) / 1000.0
    parts = urlsplit(req.url)
    try:
        if parts.scheme not in ("http", "https"):
            return Response(req.id, None, None, None, None, False,
                            f"Unsupported protocol: {parts.scheme or 'none'}")
        host = parts.hostname or ""
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": timeout}
        if parts.scheme == "https":
            kwargs["context"] = ssl.create_default_context()
        conn = conn_cls(host, parts.port, **kwargs)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request(req.method.upper(), path, body=req.body, headers=req.headers)
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            resp = conn.getresponse()
            raw = resp.read()
            if time.monotonic() - start > timeout:
                raise TimeoutError
            headers = {k: v for k, v in resp.getheaders()}
            ctype = resp.getheader("Content-Type")
            return Response(req.id, resp.status, ctype, headers, raw.decode("utf-8", "replace"),
                            False, None)
        finally:
            conn.close()
    except TimeoutError:
        elapsed = (time.monotonic() - start) * 1000
        return Response(req.id, None, None, None, None, True,
                        f"Timeout of {req.timeout_ms} ms reached. Total time: {elapsed:.3f} ms")
    except ConnectionRefusedError:
        return Response(req.id, None, None, None, None, False, "Couldn't connect to server")
    except socket.gaierror:
        return Response(req.id, None, None, None, None, False, "Couldn't resolve host name")
    except (OSError, http.client.HTTPException) as exc:
        return Response(req.id, None, None, None, None, False, f"Failure when receiving data: {exc}")


class Worker:
    """Drains net.http_request_queue into net._http_response until stopped."""

    def __init__(self, dsn: str, *, poll_interval: float = 0.2, concurrency: int = 8,
                 ttl: str = TTL) -> None:
        self.dsn = dsn
        self.poll_interval = poll_interval
        self.ttl = ttl
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="net")
        self.running = True
        self._last_ttl = 0.0

    def stop(self, *_: object) -> None:
        self.running = False

    def take(self, conn: psycopg.Connection) -> list[Request]:
        with conn.cursor() as cur:
            cur.execute(
                """
                delete from net.http_request_queue
                where id in (select id from net.http_request_queue order by id
                             limit %s for update skip locked)
                returning id, method, url, coalesce(headers, '{}'::jsonb), body, timeout_milliseconds
                """,
                (BATCH_SIZE,),
            )
            rows = cur.fetchall()
        out = []
        for rid, method, url, headers, body, tmo in sorted(rows):
            hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
            out.append(Request(rid, method, url, hdrs, bytes(body) if body is not None else None, tmo))
        return out

    def save(self, conn: psycopg.Connection, r: Response) -> None:
        with conn.cursor() as cur:
            cur.execute(
                "insert into net._http_response (id, status_code, content_type, headers, content,"
                " timed_out, error_msg) values (%s, %s, %s, %s, %s, %s, %s)",
                (r.id, r.status_code, r.content_type, Jsonb(r.headers) if r.headers is not None else None,
                 r.content, r.timed_out, r.error_msg),
            )

    def expire(self, conn: psycopg.Connection) -> None:
        if time.monotonic() - self._last_ttl < 60:
            return
        self._last_ttl = time.monotonic()
        with conn.cursor() as cur:
            cur.execute("delete from net._http_response where created < now() - %s::interval", (self.ttl,))

    def run_once(self, conn: psycopg.Connection) -> int:
        # as pg_net's worker: one transaction per batch. Its queue rows stay locked (deleted, not yet
        # committed) while the requests run, and the responses appear together when it commits.
        with conn.transaction():
            return self._batch(conn)

    def _batch(self, conn: psycopg.Connection) -> int:
        reqs = self.take(conn)
        futures: list[tuple[Request, Future[Response]]] = [(r, self.pool.submit(perform, r)) for r in reqs]
        for req, fut in futures:
            try:
                resp = fut.result(timeout=req.timeout_ms / 1000.0 + 5)
            except Exception as exc:
                resp = Response(req.id, None, None, None, None, False, f"worker error: {exc}")
            self.save(conn, resp)
            log.info(json.dumps({"action": "http_request", "id": req.id, "method": req.method,
                                 "status_code": resp.status_code, "timed_out": resp.timed_out,
                                 "error": resp.error_msg}))
        self.expire(conn)
        return len(reqs)

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        while self.running:
            try:
                with psycopg.connect(self.dsn, autocommit=True, application_name="pg_net stand-in") as conn:
                    conn.execute("listen pydeploy_net")
                    while self.running:
                        if self.run_once(conn) == 0:
                            for _ in conn.notifies(timeout=self.poll_interval, stop_after=1):
                                pass
            except psycopg.Error as exc:
                log.warning("database unavailable (%s); retrying in 1 s", str(exc).strip().splitlines()[0]
                            if str(exc).strip() else exc)
                with contextlib.suppress(Exception):
                    time.sleep(1)
        self.pool.shutdown(wait=False, cancel_futures=True)
