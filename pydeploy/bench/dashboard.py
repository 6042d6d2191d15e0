"""The dashboard's document in `pydeploy bench`: monitoring.dashboard() in one call, target < 20 ms.

Kept apart from pydeploy/bench.py so that it merges easily: Bench.run() calls measure() once, on
the monitored database, right after the views.
"""

from __future__ import annotations

import psycopg

from pydeploy.bench.measure import repeat_timed
from pydeploy.bench.report import Row, summarize

TARGET_MS = 20.0


def measure(conn: psycopg.Connection, repeat: int) -> list[Row]:
    """Wall time of monitoring.dashboard() for each chart window, as the Edge Function calls it
    (one statement, the whole JSON document fetched), after one warm-up call."""
    if conn.execute("select to_regprocedure('monitoring.dashboard(text, integer)') is null").fetchone() == (True,):
        return []
    rows = []
    for window in ("24h", "7d"):
        samples = repeat_timed(conn, "select monitoring.dashboard(%s, 50)", repeat, (window,))
        rows.append(summarize("views", f"dashboard('{window}') document", samples,
                              target=f"< {TARGET_MS:.0f} ms", check=lambda m: m < TARGET_MS))
    return rows
