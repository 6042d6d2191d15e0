"""The one loopback HTTP receiver: `pydeploy receiver`, `pydeploy verify`'s delivery check and the tests.

A real HTTP server on 127.0.0.1 that records every request and answers as scripted: the n-th
request gets script[n] = (status, seconds to wait first), the last entry repeats. It runs in a
thread (`Receiver(...).start()`, or `with receiver(...) as rec:`) or in the foreground
(`serve`, the `pydeploy receiver` command: one line per notification and the verdict on its
X-Signature, so you can watch what the monitoring sends; `--status` rehearses a failing endpoint).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from pydeploy.ports import LOOPBACK

Script = list[tuple[int, float]]


def signature(secret: str, body: bytes) -> str:
    """The X-Signature the dispatcher sends: sha256=HMAC(secret, body)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    @property
    def key(self) -> str:
        """The notification's X-Idempotency-Key (the same on every retry)."""
        return self.headers.get("X-Idempotency-Key", "")

    @property
    def event(self) -> str:
        return self.headers.get("X-Alert-Event", "")

    @property
    def fingerprint(self) -> str | None:
        return (self.json.get("alerts") or [{}])[0].get("fingerprint")

    def signed_by(self, secret: str) -> bool:
        return hmac.compare_digest(self.headers.get("X-Signature", ""), signature(secret, self.body))


def default_body(status: int) -> bytes:
    return b'{"received": true}' if status < 300 else b'{"error": "rehearsed failure"}'


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a burst of concurrent deliveries (pg_net sends a whole
    # batch at once) would see connections dropped and retried after 1 s, like no real endpoint
    request_queue_size = 128


class Receiver:
    """Records requests and answers them as `script` says; `url` is http://127.0.0.1:PORT + path."""

    def __init__(self, script: Script | None = None, *, port: int = 0, path: str = "",
                 body: bytes | None = None, on_request: Callable[[Received, int], None] | None = None) -> None:
        self.script: Script = script or [(200, 0.0)]
        self.body = body  # None: {"received": true}, or {"error": …} for a status of 300 or more
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._on_request = on_request
        self.server = _Server((LOOPBACK, port), self._handler())
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://{LOOPBACK}:{self.port}{path}"
        self._thread: threading.Thread | None = None

    def _record(self, r: Received) -> tuple[int, float]:
        with self._lock:
            n = len(self.requests)
            self.requests.append(r)
        return self.script[min(n, len(self.script) - 1)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(self.command, self.path, dict(self.headers.items()),
                               self.rfile.read(length) if length else b"", time.monotonic())
                status, wait = rec._record(got)
                if rec._on_request is not None:
                    rec._on_request(got, status)
                time.sleep(wait)
                body = default_body(status) if rec.body is None else rec.body
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Receiver", "pydeploy")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller gave up (its timeout) and closed the connection

            do_POST = do_GET = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> Receiver:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()

    def wait_for(self, n: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= n:
                return self.requests
            time.sleep(0.05)
        raise AssertionError(f"expected {n} requests, got {len(self.requests)} within {timeout} s")


@contextmanager
def receiver(statuses: list[int] | None = None, delay: float = 0.0, *, script: Script | None = None,
             path: str = "", body: bytes | None = None) -> Iterator[Receiver]:
    """A receiver in a thread answering `statuses` in turn (each after `delay` s), or `script` of (status, delay)."""
    rec = Receiver(script or [(s, delay) for s in statuses or [200]], path=path, body=body).start()
    try:
        yield rec
    finally:
        rec.close()


def describe(body: bytes, headers: dict[str, str], secret: str | None) -> str:
    """What `pydeploy receiver` prints for one notification."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return f"non-JSON body ({len(body)} bytes)"
    sig = headers.get("X-Signature", "")
    if secret:
        good = signature(secret, body)
        verdict = "signature OK" if hmac.compare_digest(sig, good) else f"BAD signature {sig!r}"
    else:
        verdict = "unsigned check (no --secret)"
    alerts = payload.get("alerts") or []
    lines = [f"{time.strftime('%H:%M:%S')} {payload.get('status', '?')} from {payload.get('service', '?')} "
             f"[{verdict}, key {headers.get('X-Idempotency-Key', '-')}]"]
    for a in alerts:
        lines.append(f"    {a.get('severity', '?'):8} {a.get('metric', '?')}={a.get('value')}: {a.get('message')}")
        runbook = a.get("runbook") or []
        if runbook:
            lines.append(f"      runbook: {' / '.join(runbook)}")
    return "\n".join(lines)


def serve(port: int, secret: str | None, out: TextIO = sys.stdout, status: int = 200) -> None:
    """Serve until Ctrl-C; answer every notification with HTTP `status` (not 200: rehearse a failing endpoint)."""

    def show(r: Received, answered: int) -> None:
        if r.method == "POST":
            answer = "" if answered == 200 else f"  -> answered HTTP {answered}\n"
            out.write(describe(r.body, r.headers, secret) + "\n" + answer)
            out.flush()

    rec = Receiver([(status, 0.0)], port=port, on_request=show)
    out.write(f"listening on {rec.url}/ (Ctrl-C to stop)\n")
    out.flush()
    try:
        rec.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        rec.close()
