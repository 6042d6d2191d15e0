"""`pydeploy receiver`: a webhook receiver for trying channels out, which checks signatures.

Prints one line per notification (and the verdict on its X-Signature) so you can watch what
the monitoring sends; `--status` makes it answer with an error, to rehearse what happens when an
endpoint fails. For local use: it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO


def describe(body: bytes, headers: dict[str, str], secret: str | None) -> str:
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return f"non-JSON body ({len(body)} bytes)"
    sig = headers.get("X-Signature", "")
    if secret:
        good = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
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

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = "" if status == 200 else f"  -> answered HTTP {status}\n"
            out.write(describe(body, dict(self.headers.items()), secret) + "\n" + answer)
            out.flush()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"received": true}' if status < 300 else b'{"error": "rehearsed failure"}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    out.write(f"listening on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)\n")
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
