"""`pydeploy monitor`: the spec's monitor-production.js, with every number from the database.

Evaluates every alert rule now. Without --notify it runs inside a transaction that is rolled
back, so it changes nothing and only reports what the rules see; with --notify the evaluation
is committed, so alerts go through their lifecycle (firing, repeat, silences) and the
notifications they queue are sent through the configured channels.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pydeploy.db import friendly_errors, one, rows
from pydeploy.report import _plain

ALERTS_SQL = """
    select a.rule_name, a.severity, a.state, a.value, a.message, r.metric, a.labels,
           a.firing_since, a.started_at
    from monitoring.alerts a join monitoring.alert_rules r on r.name = a.rule_name
    where a.state in ('pending', 'firing') and a.last_evaluated_at = now()
    order by monitoring._severity_rank(a.severity) desc, a.rule_name"""


def check(conn: psycopg.Connection, notify: bool = False) -> dict[str, Any]:
    """{timestamp, service, healthy, alerts: [{severity, message, metric, value, state, rule}], …}."""
    with friendly_errors("monitor"):
        with conn.transaction(force_rollback=not notify):
            result = one(conn, "select monitoring.evaluate_rules(now(), null, false)")
            found = rows(conn, ALERTS_SQL)
            ts = one(conn, "select monitoring._iso(now())")
            service = one(conn, "select service_name from monitoring.settings where id")
            health = one(conn, "select monitoring.health() ->> 'status'")
        sent: Any = None
        if notify:
            with conn.transaction():
                sent = one(conn, "select monitoring.dispatch_deliveries()")
    alerts = [{"severity": a["severity"], "message": a["message"], "metric": a["metric"],
               "value": _plain(a["value"]), "state": a["state"], "rule": a["rule_name"]} for a in found]
    out: dict[str, Any] = {
        "timestamp": ts, "service": service, "healthy": not alerts, "health": health, "alerts": alerts,
        "rule_errors": (result or {}).get("errors") if isinstance(result, dict) else None,
    }
    if notify:
        out["dispatched"] = _plain(sent)
    return out
