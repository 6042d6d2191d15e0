"""`pydeploy report`: the spec's monitoring dashboard, read from the database's own views."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

# Each section is one query against what admins would query in the SQL editor.
SECTIONS: dict[str, str] = {
    "delivery_stats": "select * from monitoring.delivery_stats",
    "delivery_latency": "select * from monitoring.delivery_latency",
    "queue_stats": "select * from monitoring.queue_stats",
    "top_errors_24h": "select * from monitoring.top_errors_24h",
    "sessions": "select * from monitoring.connection_status",
    "function_stats": "select * from monitoring.function_stats",
    "firing_alerts": "select rule_name, severity, state, status, value, message, firing_since, recovering_since, "
                     "silenced_by, inhibited_by, inhibited_by_rule from monitoring.active_alerts",
    "recent_deliveries": "select id, channel, event, rule_name, status, attempts, last_status_code, "
                         "created_at, delivered_at from monitoring.deliveries order by id desc limit 10",
    "job_runs": "select j.jobname, d.status, d.start_time, d.end_time, left(d.return_message, 80) as message "
                "from cron.job_run_details d join cron.job j using (jobid) "
                "order by d.start_time desc nulls last limit 10",
}


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def collect(conn: psycopg.Connection) -> dict[str, Any]:
    """Every section of the dashboard as plain JSON-able data."""
    data: dict[str, Any] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select monitoring.health() as h")
        row = cur.fetchone()
        data["health"] = _plain(row["h"]) if row else None
        for name, sql in SECTIONS.items():
            if name == "job_runs":
                cur.execute("select to_regclass('cron.job_run_details') is not null as ok")
                ok = cur.fetchone()
                if not ok or not ok["ok"]:
                    data[name] = []
                    continue
            cur.execute(sql)
            data[name] = [_plain(dict(r)) for r in cur.fetchall()]
    return data


def _table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    t = Table(title=title, title_justify="left", expand=False, show_lines=False)
    cols = columns or (list(rows[0].keys()) if rows else ["(none)"])
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*["" if r.get(c) is None else _fmt(r.get(c)) for c in cols])
    return t


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, str) and len(v) > 19 and v[4] == "-" and "T" in v:
        return v[:19].replace("T", " ")
    return str(v)


def render(data: dict[str, Any]) -> RenderableType:
    h = data.get("health") or {}
    status = h.get("status", "unknown")
    colour = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}.get(status, "white")
    wa = (h.get("services") or {}).get("whatsapp") or {}
    head = (f"[bold {colour}]{status.upper()}[/]  at {h.get('timestamp', '')}   "
            f"WhatsApp: {wa.get('status', '?')} (last connected {wa.get('lastConnected') or 'never'})")
    parts: list[RenderableType] = [Panel(head, title="health")]
    parts.append(_table("delivery (1h / 24h / 7d)", data["delivery_stats"]))
    parts.append(_table("delivery latency, seconds", data["delivery_latency"]))
    parts.append(_table("queue", data["queue_stats"]))
    parts.append(_table("top errors, 24h", data["top_errors_24h"]))
    parts.append(_table("sessions", data["sessions"]))
    parts.append(_table("edge functions", data["function_stats"]))
    alerts = h.get("alerts") or {}
    muted = (f"{alerts.get('inhibited', 0)} inhibited, {alerts.get('silenced', 0)} silenced, "
             f"{alerts.get('recovering', 0)} recovering, no data: {', '.join(alerts.get('noData') or []) or 'none'}")
    # status: pending, firing, recovering (kept firing by keep_firing_for), nodata or error;
    # inhibited_by_rule: the firing alert's rule that mutes this one's notifications
    parts.append(_table(f"alerts pending or firing ({muted})", data["firing_alerts"],
                        ["rule_name", "severity", "status", "value", "message", "firing_since", "silenced_by",
                         "inhibited_by_rule"]))
    parts.append(_table("recent deliveries", data["recent_deliveries"]))
    parts.append(_table("recent job runs", data["job_runs"]))
    return Group(*parts)
