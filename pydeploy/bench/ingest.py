"""Stage 5, ingestion: one batch of 1,000 records (500 invocations, 500 log lines with phone numbers)
written by monitoring.ingest(), the ingest Edge Function's one statement per batch."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pydeploy.bench.cluster import MONITORED
from pydeploy.bench.context import Run
from pydeploy.bench.measure import connect, timed
from pydeploy.bench.report import summarize
from pydeploy.errors import PydeployError

RECORDS = 1000
TARGET_MS = 50.0


def batch(n: int = RECORDS, now: datetime | None = None) -> dict[str, Any]:
    """A realistic batch: half invocation records over 10 routes, half spec-format log lines."""
    t = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    half = n // 2
    invocations = [{"function": f"/api/route{i % 10}", "status": 500 if i % 50 == 0 else 200,
                    "durationMs": 20 + i % 300, "time": t, "requestId": f"8f{i:014x}-GRU", "region": "GRU"}
                   for i in range(half)]
    levels = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
    logs = [{"timestamp": t, "level": levels[i % len(levels)], "service": "whatsapp", "action": "send_message",
             "status": "success" if i % 6 != 4 else "failed", "duration": 100 + i, "orderId": str(10_000 + i),
             "phone": f"+55119{i:08d}", "attempt": 1 + i % 3}
            for i in range(n - half)]
    return {"batchId": str(uuid.uuid4()), "invocations": invocations, "logs": logs}


def bench_ingest(run: Run) -> None:
    url = run.cluster.url(MONITORED)
    key = "bench_" + uuid.uuid4().hex + uuid.uuid4().hex
    digest = hashlib.sha256(key.encode()).hexdigest()
    samples: list[float] = []
    with connect(url) as c:
        c.execute("select monitoring.rotate_ingest_key(%s, interval '0')", (key,))
        query = "select monitoring.ingest(%s, %s)"
        runs = run.opts.repeat
        for i in range(runs + 1):  # the first is a warm-up
            run.bar("ingest (1,000-record batch)", i, runs + 1)
            b = batch()
            ms = timed(c, query, (digest, Jsonb(b)))
            if i > 0:
                samples.append(ms)
        _check_last(c, digest)
        run.bar("ingest (1,000-record batch)", runs + 1, runs + 1)
    run.report.add(summarize("ingest", "monitoring.ingest(): one batch of 1,000 records (500 invocations, "
                             "500 log lines)", samples, target=f"< {TARGET_MS:.0f} ms",
                             check=lambda v: v < TARGET_MS,
                             note="client round trip incl. the ~250 KB JSON; one statement, one transaction"))


def _check_last(c: psycopg.Connection, digest: str) -> None:
    """The batches were written, not refused: a refusal would make the figure meaningless."""
    res = c.execute("select monitoring.ingest(%s, %s)", (digest, Jsonb(batch(2)))).fetchone()
    if not res or res[0].get("status") != 200:
        raise PydeployError(f"monitoring.ingest() refused the benchmark's batch: {res[0] if res else None}",
                            "see monitoring.ingest_settings and the batch format in supabase/schemas/86_ingest.sql")
