"""The postgres_exporter queries file shipped in prometheus/: read it, and time one scrape.

The file is YAML in one fixed shape (top-level query keys, each with a folded `query: >-` block and
its metrics); this reads exactly that shape, so pydeploy needs no YAML library.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from pydeploy.errors import ConfigError

QUERIES_FILE = Path("prometheus") / "postgres_exporter_queries.yaml"
ROLE = "monitoring_exporter"


def load(path: Path) -> dict[str, str]:
    """{query key: SQL} in file order."""
    out: dict[str, str] = {}
    key: str | None = None
    lines: list[str] | None = None
    for raw in path.read_text().splitlines():
        if raw.startswith("#") or not raw.strip():
            continue
        if not raw.startswith(" ") and raw.rstrip().endswith(":"):
            key, lines = raw.rstrip()[:-1], None
        elif raw.strip() == "query: >-" and key:
            lines = []
            out[key] = ""
        elif lines is not None and raw.startswith("    ") and key:
            lines.append(raw.strip())
            out[key] = " ".join(lines)
        else:
            lines = None
    if not out:
        raise ConfigError(f"{path}: no queries found", "keep the file's shape: key, then 'query: >-' and the SQL")
    return out


def scrape_ms(conn: psycopg.Connection, queries: dict[str, str], role: str | None = ROLE) -> float:
    """Run every query once as the exporter would (as its role) and fetch the rows; total wall ms."""
    if role:
        conn.execute(f"set role {role}")
    try:
        t0 = time.perf_counter()
        for q in queries.values():
            conn.execute(q).fetchall()
        return (time.perf_counter() - t0) * 1000
    finally:
        if role:
            conn.execute("reset role")
