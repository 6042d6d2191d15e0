"""The outbound heartbeat (monitoring.heartbeat): its `pydeploy verify` check."""

from __future__ import annotations

import psycopg

from pydeploy.db import rows

# (name, ok, detail, fix) as pydeploy verify reports it; ok None: not applicable here
Result = tuple[str, bool | None, str, str]

FIX = ("select monitoring.set_heartbeat('https://hc-ping.com/<uuid>');  -- and a check with the same period, "
       "grace >= 1 min, at healthchecks.io (or any dead man's switch)")


def check(conn: psycopg.Connection) -> Result:
    """On and pinged recently with a 2xx answer; not applicable when it is off."""
    got = rows(conn, """
        select h.enabled, h.ping_interval, h.last_ping_at, h.last_ping_kind, h.last_error,
               extract(epoch from now() - h.last_ping_at) as age_s, extract(epoch from h.ping_interval) as period_s
        from monitoring.heartbeat h where h.id""")
    if not got or not got[0]["enabled"]:
        return ("outbound heartbeat", None, "off: nothing outside notices if Postgres, pg_cron or pg_net stops", FIX)
    h = got[0]
    if h["last_error"]:
        return ("outbound heartbeat", False, f"the last ping could not be sent: {h['last_error']}",
                     "fix the cause (is pg_net installed? does secret heartbeat_url resolve?)")
    if h["last_ping_at"] is None:
        return ("outbound heartbeat", False, "on, but never pinged: is job monitoring-evaluate scheduled?",
                     "pydeploy schedule")
    late = float(h["age_s"]) > 2 * float(h["period_s"]) + 60
    if late:
        return ("outbound heartbeat", False,
                     f"last ping {float(h['age_s']):.0f} s ago, more than twice its interval ({h['ping_interval']}): "
                     "the monitoring cycle is not succeeding", "see pydeploy report (job_status); pydeploy schedule")
    answer = None
    if conn.execute("select to_regclass('net._http_response') is not null").fetchone() == (True,):
        answer = rows(conn, """select r.status_code, r.error_msg, r.timed_out from net._http_response r
                               join monitoring.heartbeat h on r.id = h.last_request_id where h.id""")
    if answer and not (200 <= (answer[0]["status_code"] or 0) < 300):
        a = answer[0]
        return ("outbound heartbeat", False,
                     f"the last ping was answered {a['status_code'] or a['error_msg'] or 'with a timeout'}",
                     "check the URL stored as secret heartbeat_url (monitoring.set_heartbeat)")
    return ("outbound heartbeat", True,
            f"last ping ({h['last_ping_kind']}) {float(h['age_s']):.0f} s ago, every {h['ping_interval']}"
            + (f", answered {answer[0]['status_code']}" if answer else ", answer not seen yet"), "")
