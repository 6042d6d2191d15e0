"""`pydeploy logs export`: error logs (archived and live) as NDJSON, streamed through a server-side cursor."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

import psycopg

from pydeploy.errors import ConfigError

# rows fetched per round trip; the client holds at most this many at once
BATCH = 2000


def parse_time(value: str, field: str) -> dt.datetime:
    """An ISO date or time (UTC when no zone is given)."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{field} {value!r} is not a date or time",
                          "use an ISO date such as 2026-01-31 or a time such as 2026-01-31T12:00:00Z") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def count(conn: psycopg.Connection, start: dt.datetime, end: dt.datetime) -> int:
    """How many rows the export will write: archive chunk sizes plus live rows (the progress bar's total).

    Chunks that straddle the range are counted whole, so this is an upper bound by at most two chunks.
    """
    row = conn.execute(
        "select coalesce((select sum(a.rows) from monitoring.error_log_archive as a "
        "where a.last_at >= %(s)s and a.first_at < %(e)s), 0) + "
        "(select count(*) from public.whatsapp_error_logs as l where l.created_at >= %(s)s and l.created_at < %(e)s)",
        {"s": start, "e": end}).fetchone()
    return int(row[0]) if row else 0


def stream(conn: psycopg.Connection, start: dt.datetime, end: dt.datetime) -> Iterator[dict[str, Any]]:
    """Each error log of [start, end) as a dict (source, then the row), read BATCH rows at a time.

    A named (server-side) cursor needs a transaction; the connection's own is used and rolled back.
    """
    if end <= start:
        raise ConfigError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})",
                          "give a range such as --from 2026-01-01 --to 2026-02-01")
    with conn.transaction(force_rollback=True), conn.cursor(name="pydeploy_logs_export") as cur:
        cur.itersize = BATCH
        cur.execute("select source, log from monitoring.archived_error_logs(%s, %s)", (start, end))
        for source, log in cur:
            yield {"source": source, **log}


def export(conn: psycopg.Connection, start: dt.datetime, end: dt.datetime, sink: IO[str],
           progress: Callable[[int], None] | None = None) -> int:
    """Write NDJSON lines to `sink`; `progress(n)` after every BATCH rows and at the end. Returns the rows."""
    written = 0
    for record in stream(conn, start, end):
        sink.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        written += 1
        if progress is not None and written % BATCH == 0:
            progress(written)
    if progress is not None:
        progress(written)
    return written
