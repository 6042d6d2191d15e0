"""A real HTTP receiver on loopback for webhook tests: records requests, answers as scripted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next scripted status (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    body: bytes = b'{"ok": true}'
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self._lock:
            i = min(len(self.requests) - 1, len(self.statuses) - 1)
            return self.statuses[max(i, 0)]

    def wait_for(self, n: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= n:
                return self.requests
            time.sleep(0.05)
        raise AssertionError(f"expected {n} requests, got {len(self.requests)} within {timeout} s")


@contextmanager
def receiver(statuses: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    rec = Receiver(statuses=statuses or [200], delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with rec._lock:
                rec.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
            if rec.delay:
                time.sleep(rec.delay)
            status = rec.next_status()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Receiver", "test")
            self.send_header("Content-Length", str(len(rec.body)))
            self.end_headers()
            self.wfile.write(rec.body)

        do_POST = do_GET = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        rec.url = url
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
