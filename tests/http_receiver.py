"""A real HTTP receiver on loopback for webhook tests: records requests, answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


@dataclass
class Receiver:
    """Answers the n-th request with script[n] = (status, seconds to wait first); the last one repeats."""

    script: list[tuple[int, float]] = field(default_factory=lambda: [(200, 0.0)])
    body: bytes = b'{"ok": true}'
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, r: Received) -> tuple[int, float]:
        with self._lock:
            n = len(self.requests)
            self.requests.append(r)
        return self.script[min(n, len(self.script) - 1)]

    def wait_for(self, n: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= n:
                return self.requests
            time.sleep(0.05)
        raise AssertionError(f"expected {n} requests, got {len(self.requests)} within {timeout} s")


@contextmanager
def receiver(statuses: list[int] | None = None, delay: float = 0.0, *,
             script: list[tuple[int, float]] | None = None, path: str = "") -> Iterator[Receiver]:
    """A receiver answering `statuses` in turn (each after `delay` s), or `script` of (status, delay)."""
    rec = Receiver(script=script or [(s, delay) for s in statuses or [200]])

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, wait = rec.record(Received(self.command, self.path, dict(self.headers.items()), body,
                                               time.monotonic()))
            time.sleep(wait)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Receiver", "test")
                self.send_header("Content-Length", str(len(rec.body)))
                self.end_headers()
                self.wfile.write(rec.body)
            except OSError:
                pass  # the caller gave up (its timeout) and closed the connection

        do_POST = do_GET = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        rec.url = url + path
        yield rec


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 in a thread; yields the base URL; stops after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
