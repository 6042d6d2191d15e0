"""Timing a query, and what the benchmark records about the machine and the migrations."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pydeploy import migrations
from pydeploy.errors import PydeployError
from pydeploy.paths import migrations_dir


def connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, application_name="pydeploy-bench", connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise PydeployError(f"cannot connect to the benchmark database: {str(exc).strip().splitlines()[0]}",
                            "start the local engine with `pydeploy up`, or pass --db-url") from exc


def timed(conn: psycopg.Connection, query: str | sql.Composable, params: Any = None) -> float:
    """Run a query and fetch every row; return the wall time in ms."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(query, params)
        if cur.description is not None:
            cur.fetchall()
    return (time.perf_counter() - t0) * 1000


def repeat_timed(conn: psycopg.Connection, query: str | sql.Composable, n: int, params: Any = None,
                 before: Callable[[], None] | None = None) -> list[float]:
    """One warm-up run (plans cached, pages in memory), then n timed runs."""
    if before:
        before()
    timed(conn, query, params)
    out = []
    for _ in range(n):
        if before:
            before()
        out.append(timed(conn, query, params))
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        m = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
        model = m.group(1).strip() if m else ""
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(m.group(1)) if m else 0
    return {"cpu_model": model, "nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "os": platform.platform(), "python": platform.python_version()}


def migrations_fingerprint() -> str:
    h = hashlib.sha256()
    for f in migrations.discover(migrations_dir()):
        h.update(f.path.name.encode())
        h.update(f.path.read_bytes())
    return h.hexdigest()[:16]


def peak_memory_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child (pgbench), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, kids
