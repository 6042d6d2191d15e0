"""Runs every pgTAP file under supabase/tests/database with pg_prove against the session engine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "supabase" / "tests" / "database").glob("*.test.sql"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_pgtap_file(path: Path, engine_url: str) -> None:
    if not shutil.which("pg_prove"):
        pytest.fail("pg_prove is missing: apt-get install libtap-parser-sourcehandler-pgtap-perl postgresql-15-pgtap")
    u = urlsplit(engine_url)
    res = subprocess.run(
        ["pg_prove", "--host", str(u.hostname), "--port", str(u.port), "--username", str(u.username),
         "--dbname", u.path.lstrip("/"), "--verbose", str(path)],
        capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": "/usr/bin:/bin", "PGPASSWORD": str(u.password)},
    )
    assert res.returncode == 0, f"{path.name} failed:\n{res.stdout}\n{res.stderr}"
