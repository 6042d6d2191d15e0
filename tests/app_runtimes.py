"""The app's runtimes for the ingestion tests: the test Pages app in workerd (Miniflare, through
`node cloudflare/test/serve.mjs`), an app's Edge Function in Deno (supabase/functions/_dev/example_app.ts),
and a loopback proxy in front of the ingest function that can play an endpoint that is down."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydeploy import functions_server as fs
from pydeploy.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Runtime:
    """A process serving HTTP on loopback: its base URL, the process, where it logs."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _node() -> str:
    node = shutil.which("node")
    if not node:
        raise RuntimeError("node is not installed: run `make bootstrap` (it installs nodejs and npm ci)")
    if not (ROOT / "node_modules" / "miniflare").is_dir() or not (ROOT / "node_modules" / "esbuild").is_dir():
        raise RuntimeError("miniflare and esbuild are not in node_modules: run `make bootstrap` (npm ci)")
    return node


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited ({proc.returncode}) before serving {url}:\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n" + log.read_text(errors="replace")[-2000:])


def stop(rt: Runtime) -> None:
    """Stop the process group we started (SIGTERM, then SIGKILL)."""
    if rt.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rt.process.pid, signal.SIGTERM)
        try:
            rt.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rt.process.pid, signal.SIGKILL)
            rt.process.wait(timeout=10)


@contextlib.contextmanager
def pages_app(env: dict[str, str], log: Path) -> Iterator[Runtime]:
    """The test Pages app (cloudflare/test/pages_router.ts, functions/_middleware.ts first) in workerd."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MONITORING_", "SUPABASE_", "WHATSAPP_"))}
    full.update(env)
    with open(log, "ab") as out:
        proc = subprocess.Popen([_node(), str(ROOT / "cloudflare" / "test" / "serve.mjs"), str(port)], cwd=ROOT,
                                env=full, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    rt = Runtime(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_http(rt.url + "/__monitoring/stats", proc, log, 60)
        yield rt
    finally:
        stop(rt)


@contextlib.contextmanager
def edge_app(env: dict[str, str], log: Path) -> Iterator[Runtime]:
    """An app's Edge Function wrapped in withMonitoring (supabase/functions/_dev/example_app.ts) in Deno,
    reporting to the ingest endpoint only (no SUPABASE_DB_URL)."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MONITORING_", "SUPABASE_"))}
    full.update(env)
    full.update({"PORT": str(port), "NO_COLOR": "1"})
    cmd = [str(fs.deno_binary(ROOT)), "run", *fs.DENO_FLAGS, "--config", "deno.json", "_dev/example_app.ts"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT / "supabase" / "functions", env=full, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True)
    rt = Runtime(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_http(rt.url + "/ok", proc, log, 120)
        yield rt
    finally:
        stop(rt)


class FlakyIngest:
    """A loopback proxy in front of the ingest function. mode: 'up' forwards; 'down' answers 503 and
    forwards nothing; 'lost' forwards (the batch is written) and then answers 503, as when the
    answer is lost on the way back. Counts the POSTs it saw per mode."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mode = "up"
        self.seen: dict[str, int] = {"up": 0, "down": 0, "lost": 0}
        self.batch_ids: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = proxy.mode
                proxy.seen[mode] += 1
                with contextlib.suppress(ValueError):
                    proxy.batch_ids.append(str(json.loads(body).get("batchId")))
                status, answer = 503, b'{"error": "down"}'
                if mode in ("up", "lost"):
                    req = urllib.request.Request(proxy.target, data=body, method="POST", headers={
                        "Content-Type": "application/json", "Authorization": self.headers.get("Authorization", "")})
                    try:
                        with urllib.request.urlopen(req, timeout=10) as res:
                            status, answer = res.status, res.read()
                    except urllib.error.HTTPError as exc:
                        status, answer = exc.code, exc.read()
                    if mode == "lost":
                        status, answer = 503, b'{"error": "answer lost"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/functions/v1/ingest"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyIngest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A TCP listener that accepts connections and never answers (an endpoint that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/functions/v1/ingest"
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def __enter__(self) -> Silent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.held:
            s.close()
        self.sock.close()
