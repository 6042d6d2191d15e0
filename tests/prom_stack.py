"""The real Prometheus programs from Debian (prometheus-alertmanager, amtool, prometheus, promtool,
prometheus-postgres-exporter), started on free ports of 127.0.0.1 for a test and stopped after."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROGRAMS = {
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
}


def program(name: str) -> str:
    """The program's path; fails loudly, naming the Debian package, when it is missing."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        raise AssertionError(f"{name} is not installed: apt-get install {PROGRAMS[name]} "
                             "(scripts/bootstrap.sh installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    status, body = http(url, headers=headers)
    assert status == 200, f"GET {url}: HTTP {status} {body[:300]!r}"
    return json.loads(body)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30,
              headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if http(url, headers=headers, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@contextmanager
def run(args: list[str], ready_url: str, folder: Path, name: str,
        headers: dict[str, str] | None = None, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env)
    try:
        wait_http(ready_url, proc, log, headers=headers)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def alertmanager_config(receiver_url: str) -> str:
    """Route everything to one loopback webhook receiver, one group per alert name, flushed at once."""
    return json.dumps({
        "global": {"resolve_timeout": "5m"},
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}],
    })


@contextmanager
def alertmanager(folder: Path, receiver_url: str, port: int | None = None,
                 web_config: str | None = None, auth: str | None = None) -> Iterator[str]:
    """A real Alertmanager on 127.0.0.1 (clustering off); yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    (folder / "alertmanager.yml").write_text(alertmanager_config(receiver_url))
    args = [program("prometheus-alertmanager"), f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=debug"]
    if web_config:
        (folder / "web.yml").write_text(web_config)
        args.append(f"--web.config.file={folder / 'web.yml'}")
    headers = {"Authorization": auth} if auth else None
    base = f"http://127.0.0.1:{port}"
    with run(args, base + "/-/ready", folder, "alertmanager", headers=headers):
        yield base
