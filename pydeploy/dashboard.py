"""The standalone monitoring dashboard: the built page (web/dist) and the Edge Functions on one origin.

`pydeploy dashboard` starts the Edge Functions with Deno (functions_server) on a private loopback
port, with SUPABASE_JWT_SECRET set, and serves on HOST:PORT:
- `/` and the page's files from web/dist (built by `make web`: esbuild, React, uPlot, Tailwind);
- `/functions/v1/...` proxied to Deno, so the page's supabase-js client uses location.origin.

The page needs a key: an admin access token (HS256 JWT, app_metadata.role = admin by default)
signed with the JWT secret the functions verify, minted here for the run and handed over in the
URL fragment (#key=...), which browsers never send to a server.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import hmac
import http.client
import json
import mimetypes
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydeploy import functions_server as fs
from pydeploy.errors import ConfigError, PydeployError
from pydeploy.paths import project_dir

FUNCTIONS_PREFIX = "/functions/v1/"
DEFAULT_ADMIN_CLAIM = "app_metadata.role"
DEFAULT_ADMIN_VALUE = "admin"
# Largest request body passed to the functions (they refuse more than 16 KiB themselves).
MAX_PROXY_BODY = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
SECURITY_HEADERS = {
    # the page loads only its own files and talks only to its own origin
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class DashboardError(PydeployError):
    """The dashboard could not be served."""


def dist_dir(project: Path | None = None) -> Path:
    return (project or project_dir()) / "web" / "dist"


def require_dist(project: Path | None = None) -> Path:
    """The built page, or a clear error saying how to build it."""
    folder = dist_dir(project)
    if not (folder / "index.html").is_file() or not (folder / "main.js").is_file():
        raise ConfigError(f"the dashboard page is not built ({folder} has no index.html and main.js)",
                          "run `make web` (npm ci and the esbuild/Tailwind build in web/)")
    return folder


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claim_with(path: str, value: str) -> dict[str, Any]:
    """{"a": {"b": value}} for path "a.b"."""
    node: Any = value
    for part in reversed(path.split(".")):
        node = {part: node}
    return dict(node)


def admin_rule() -> tuple[str, str]:
    """MONITORING_ADMIN_CLAIM / MONITORING_ADMIN_VALUE as the function reads them."""
    claim = os.environ.get("MONITORING_ADMIN_CLAIM", "").strip() or DEFAULT_ADMIN_CLAIM
    value = os.environ.get("MONITORING_ADMIN_VALUE", "").strip() or DEFAULT_ADMIN_VALUE
    return claim, value


def mint_token(secret: str, *, sub: str, email: str | None = None, admin: bool = True, ttl_s: int = 12 * 3600,
               extra: dict[str, Any] | None = None, now: float | None = None) -> str:
    """An HS256 access token like Supabase Auth's (role authenticated), signed with `secret`.

    With `admin`, the admin claim (MONITORING_ADMIN_CLAIM, default app_metadata.role) carries
    the admin value, so the monitoring-dashboard function lets its holder in.
    """
    if not secret:
        raise ConfigError("no JWT secret to sign the dashboard key with", "set $SUPABASE_JWT_SECRET")
    if ttl_s <= 0:
        raise ConfigError(f"the key's lifetime must be positive (got {ttl_s} s)", "pass --key-ttl 12h")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": sub, "role": "authenticated", "aud": "authenticated",
                              "iat": issued, "exp": issued + ttl_s, "app_metadata": {}}
    if email:
        claims["email"] = email
    if admin:
        path, value = admin_rule()
        merged = _claim_with(path, value)
        top = path.split(".")[0]
        if isinstance(claims.get(top), dict) and isinstance(merged[top], dict):
            claims[top] = {**claims[top], **merged[top]}
        else:
            claims.update(merged)
    claims.update(extra or {})
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def default_actor_email() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "admin"
    return f"{user}@{socket.gethostname()}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "pydeploy-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # set per server class (see _make_server)
    dist: Path
    upstream: tuple[str, int]

    def log_message(self, format: str, *args: Any) -> None:
        # quiet: the URL fragment (the key) never reaches the server anyway
        return

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", {"Cache-Control": "no-store"})

    def _static(self) -> None:
        path = urlsplit(self.path).path
        rel = "index.html" if path in ("", "/") else path.lstrip("/")
        target = (self.dist / rel).resolve()
        if self.dist.resolve() not in target.parents or not target.is_file():
            self._json(404, {"error": "not_found", "reason": f"no such file: {path}"})
            return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        cache = "no-store" if rel == "index.html" else "no-cache"
        self._send(200, target.read_bytes(), ctype, {"Cache-Control": cache})

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PROXY_BODY:
            self._json(413, {"error": "too_large", "reason": f"body larger than {MAX_PROXY_BODY} bytes"})
            return
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        host, port = self.upstream
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            res = conn.getresponse()
            data = res.read()
        except OSError as exc:
            self._json(502, {"error": "functions_unreachable",
                             "reason": f"the Edge Functions (Deno) do not answer: {exc}"})
            return
        finally:
            conn.close()
        self.send_response(res.status)
        for k, v in res.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _route(self) -> None:
        try:
            if urlsplit(self.path).path.startswith(FUNCTIONS_PREFIX):
                self._proxy()
            elif self.command in ("GET", "HEAD"):
                self._static()
            else:
                self._json(405, {"error": "method_not_allowed", "reason": f"{self.command} is not allowed here"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the browser went away (page closed or reloaded)

    do_GET = do_HEAD = do_POST = do_OPTIONS = _route


def _make_server(host: str, port: int, dist: Path, upstream: tuple[str, int]) -> ThreadingHTTPServer:
    handler = type("DashboardHandler", (_Handler,), {"dist": dist, "upstream": upstream})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                             "pass --port with a free port (or 0 for any)") from exc
    server.daemon_threads = True
    return server


@dataclass
class Dashboard:
    """A running dashboard: its URL, the key for the page, the servers behind it."""

    url: str
    key: str
    jwt_secret: str
    functions: fs.FunctionsServer
    http: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url_with_key(self) -> str:
        return f"{self.url}/#key={self.key}"


def start(db_url: str, *, host: str = "127.0.0.1", port: int = 0, jwt_secret: str | None = None,
          key_ttl_s: int = 12 * 3600, email: str | None = None, project: Path | None = None,
          functions_log: Path | None = None, functions_output: int | None = None,
          env: dict[str, str] | None = None) -> Dashboard:
    """Start the functions (Deno) and the page server; return once both answer."""
    dist = require_dist(project)
    secret = jwt_secret or secrets.token_urlsafe(48)
    key = mint_token(secret, sub="pydeploy-dashboard", email=email or default_actor_email(), ttl_s=key_ttl_s)
    functions = fs.start(db_url, project=project, log_path=functions_log, output=functions_output,
                         env={"SUPABASE_JWT_SECRET": secret, **(env or {})})
    try:
        upstream = urlsplit(functions.url)
        http_server = _make_server(host, port, dist, (upstream.hostname or "127.0.0.1", upstream.port or 80))
    except BaseException:
        fs.stop(functions)
        raise
    thread = threading.Thread(target=http_server.serve_forever, name="dashboard-http", daemon=True)
    thread.start()
    bound_host, bound_port = http_server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    return Dashboard(url=f"http://{shown}:{bound_port}", key=key, jwt_secret=secret, functions=functions,
                     http=http_server, thread=thread)


def stop(dashboard: Dashboard) -> None:
    """Stop the page server and the functions, nothing else."""
    with contextlib.suppress(Exception):
        dashboard.http.shutdown()
        dashboard.http.server_close()
    fs.stop(dashboard.functions)


@contextlib.contextmanager
def serving(db_url: str, **kwargs: Any) -> Iterator[Dashboard]:
    """`with serving(url) as d:` a running dashboard, stopped on exit."""
    dashboard = start(db_url, **kwargs)
    try:
        yield dashboard
    finally:
        stop(dashboard)
