"""`pydeploy dashboard`: the real command serving the built page and proxying the real functions."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pydeploy.engines import LocalState
from tests.databases import migrated_database

ROOT = Path(__file__).resolve().parent.parent
PYDEPLOY = Path(sys.executable).parent / "pydeploy"


@pytest.fixture(scope="module")
def dash_db(engine_state: LocalState) -> Iterator[str]:
    with migrated_database(engine_state, "dashcli") as url:
        yield url


def test_dashboard_serves_the_page_on_loopback_and_the_data_only_with_its_key(cli_env: dict[str, str],
                                                                             dash_db: str) -> None:
    env = {k: v for k, v in cli_env.items() if k != "SUPABASE_JWT_SECRET"}
    proc = subprocess.Popen([str(PYDEPLOY), "dashboard", "--port", "0", "--db-url", dash_db, "--key-ttl", "5m"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line, f"dashboard exited early: {proc.stderr.read() if proc.stderr else ''}"
        base, _, key = line.partition("/#key=")
        assert base.startswith("http://127.0.0.1:") and key.count(".") == 2
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and '<div id="root">' in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert httpx.get(base + "/main.js", timeout=10).status_code == 200
        for path in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/nope.js"):
            assert httpx.get(base + path, timeout=10).status_code == 404, path
        fn = base + "/functions/v1/monitoring-dashboard"
        r = httpx.get(fn, timeout=20)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = httpx.get(fn + "?window=7d", headers={"Authorization": f"Bearer {key}"}, timeout=20)
        assert r.status_code == 200 and r.json()["window"] == "7d" and len(r.json()["hourly"]) == 168
        # the key is printed once, on stdout, and the secret it is signed with never
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        rest = (proc.stdout.read() or "") + (proc.stderr.read() if proc.stderr else "")
        assert key not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/", timeout=2)


def test_dashboard_refuses_a_bad_key_lifetime_and_names_it(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                           dash_db: str) -> None:
    for bad in ("0m", "31d", "12 hours", "-1h"):
        r = run_cli("dashboard", "--db-url", dash_db, "--key-ttl", bad)
        assert r.returncode != 0
        assert "--key-ttl" in r.stderr and "such as 12h" in r.stderr, r.stderr


def test_dashboard_without_a_built_page_says_how_to_build_it(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                             dash_db: str, tmp_path: Path) -> None:
    (tmp_path / "supabase" / "migrations").mkdir(parents=True)
    r = run_cli("dashboard", "--db-url", dash_db, "--port", "0", env={"PYDEPLOY_PROJECT": str(tmp_path)})
    assert r.returncode == 1
    assert "not built" in r.stderr and "make web" in r.stderr
