"""`pydeploy verify`: an end-to-end self-test of a deployment, read like a linter reads code.

Each check says what it proved, or what is wrong and the fix. The path from a rule to a queued,
signed notification is proven inside a transaction that is rolled back (nothing is sent and
nothing stays); on a database reached over loopback (the local engine) a real test notification
is also delivered to a receiver pydeploy starts, and its signature is checked.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from pydeploy import advisor, heartbeat, validate
from pydeploy import migrations as mig
from pydeploy.db import one, rows
from pydeploy.receiver import Receiver


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable here
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _extensions(conn: psycopg.Connection) -> list[Check]:
    out = []
    have = {r["extname"] for r in rows(conn, "select extname from pg_extension")}
    out.append(Check("extension pg_cron", "pg_cron" in have,
                     "pg_cron is installed" if "pg_cron" in have else "pg_cron is not installed in this database",
                     "Supabase: Database > Extensions > pg_cron (it lives in the postgres database); "
                     "locally: pydeploy up"))
    standin = one(conn, "select obj_description('net'::regnamespace) like '%stand-in%' "
                        "where to_regnamespace('net') is not null")
    has_post = one(conn, "select to_regprocedure('net.http_post(text,jsonb,jsonb,jsonb,integer)') is not null")
    if "pg_net" in have:
        version = one(conn, "select extversion from pg_extension where extname = 'pg_net'")
        out.append(Check("extension pg_net", True, f"pg_net {version} (the extension) delivers"))
    else:
        out.append(Check("extension pg_net", bool(has_post and standin),
                         "pydeploy's local pg_net stand-in (not the extension) delivers" if has_post and standin
                         else "neither pg_net nor the local stand-in is installed",
                         "Supabase: create extension pg_net with schema extensions; locally: pydeploy up"))
    out.append(Check("extension pgcrypto", "pgcrypto" in have,
                     "pgcrypto is installed" if "pgcrypto" in have else "pgcrypto is missing (HMAC signatures)",
                     "create extension pgcrypto with schema extensions"))
    return out


def _migrations(conn: psycopg.Connection, folder: Path) -> Check:
    st = mig.status(conn, folder)
    if st.clean:
        return Check("migrations", True, f"all {len(st.applied)} applied, none edited since")
    parts = []
    if st.pending:
        parts.append("pending: " + ", ".join(f.path.name for f in st.pending))
    if st.drifted:
        parts.append("edited after apply: " + ", ".join(f.path.name for f in st.drifted))
    if st.remote_only:
        parts.append("only in the database: " + ", ".join(st.remote_only))
    return Check("migrations", False, "; ".join(parts),
                 "pydeploy migrate (pending); a drifted file needs a new migration instead of an edit")


def _jobs(conn: psycopg.Connection) -> list[Check]:
    if not one(conn, "select to_regclass('cron.job') is not null"):
        return [Check("jobs scheduled", False, "pg_cron is not available here, so nothing is scheduled",
                      "run in the database named by cron.database_name (postgres on Supabase)")]
    expected = rows(conn, "select name, schedule, command from monitoring.expected_jobs order by name")
    actual = {r["jobname"]: r for r in rows(conn, "select jobname, schedule, command, active from cron.job")}
    missing = [e["name"] for e in expected if e["name"] not in actual]
    wrong = [e["name"] for e in expected if e["name"] in actual
             and (actual[e["name"]]["schedule"] != e["schedule"] or actual[e["name"]]["command"] != e["command"]
                  or not actual[e["name"]]["active"])]
    checks = []
    if missing or wrong:
        detail = "; ".join(x for x in (
            f"missing: {', '.join(missing)}" if missing else "",
            f"different schedule or command, or inactive: {', '.join(wrong)}" if wrong else "") if x)
        checks.append(Check("jobs scheduled", False, detail, "pydeploy schedule"))
    else:
        checks.append(Check("jobs scheduled", True,
                            f"{len(expected)} jobs with their expected schedules: "
                            + ", ".join(f"{e['name']} ({e['schedule']})" for e in expected)))
    status = rows(conn, "select name, last_run_at, last_ok_at, last_error, last_error_at, stalled "
                        "from monitoring.job_status order by name")
    failed = [s for s in status if s["last_error_at"] and (not s["last_ok_at"] or s["last_error_at"] > s["last_ok_at"])]
    stalled = [s["name"] for s in status if s["stalled"] and s["name"] not in missing]
    never = [s["name"] for s in status if not s["last_run_at"]]
    if failed or stalled:
        detail = "; ".join(x for x in (
            "last run failed: " + ", ".join(f"{s['name']} ({(s['last_error'] or '')[:80]})" for s in failed)
            if failed else "", f"no success for 2 periods: {', '.join(stalled)}" if stalled else "") if x)
        checks.append(Check("jobs last run", False, detail,
                            "see select * from monitoring.job_status; and cron.job_run_details"))
    else:
        checks.append(Check("jobs last run", True,
                            "every job's last run succeeded" + (f" ({', '.join(never)} not run yet)" if never else "")))
    return checks


def _security(conn: psycopg.Connection) -> list[Check]:
    out = []
    leaks = rows(conn, """
        select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'monitoring' and c.relkind in ('r','v','m','p')
          and (has_table_privilege('anon', c.oid, 'select') or has_table_privilege('authenticated', c.oid, 'select'))
        union all
        select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'monitoring'
          and (has_function_privilege('anon', p.oid, 'execute')
               or has_function_privilege('authenticated', p.oid, 'execute'))""")
    usage = one(conn, "select has_schema_privilege('anon', 'monitoring', 'usage') "
                      "or has_schema_privilege('authenticated', 'monitoring', 'usage')")
    ok = not leaks and not usage
    out.append(Check("anon/authenticated locked out", ok,
                     "anon and authenticated can read or run nothing in monitoring" if ok else
                     "reachable by anon/authenticated: " + ", ".join(r["name"] for r in leaks[:10])
                     + (" (and schema usage)" if usage else ""),
                     "revoke all on … from anon, authenticated (see 90-privileges.test.sql)"))
    definer = rows(conn, """
        select p.oid::regprocedure::text as fn,
               coalesce(exists (select 1 from unnest(p.proconfig) c where c like 'search_path=%'), false) as pinned,
               has_function_privilege('public', p.oid, 'execute') as public_exec
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'monitoring' and p.prosecdef""")
    bad = [d["fn"] for d in definer if not d["pinned"] or d["public_exec"]]
    out.append(Check("security definer functions", not bad,
                     f"{len(definer)} definer functions, each with a fixed search_path and no public execute"
                     if not bad else "unsafe: " + ", ".join(bad),
                     "alter function … set search_path = ''; revoke execute … from public"))
    rls = rows(conn, """
        select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relname in
          ('whatsapp_notifications', 'whatsapp_error_logs', 'whatsapp_sessions')""")
    off = [r["relname"] for r in rls if not r["relrowsecurity"]]
    out.append(Check("RLS on the WhatsApp tables", len(rls) == 3 and not off,
                     "row level security is on for all three tables" if len(rls) == 3 and not off
                     else f"RLS off: {', '.join(off) or 'tables missing'}",
                     "alter table public.<table> enable row level security"))
    findings = advisor.defects(advisor.check(conn))
    out.append(Check("Security Advisor rules", not findings,
                     f"no ERROR or WARN finding ({len(advisor.RULES)} rules, as Supabase's Security Advisor)"
                     if not findings else "; ".join(f"{f.level} {f.rule}: {f.object}" for f in findings[:10]),
                     "see docs/reliability.md, Security Advisor"))
    return out


def _rule_to_outbox(conn: psycopg.Connection) -> Check:
    """Force high_error_rate to breach inside a transaction, then roll it all back."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("select monitoring.set_channel('pydeploy-verify-tx', 'webhook', "
                         "'https://verify.invalid/hook', 'pydeploy-verify-key', 'info')")
            conn.execute("delete from monitoring.alerts where rule_name = 'high_error_rate'")
            conn.execute("delete from monitoring.silences")
            # told on its own and at once: no inhibiting alert, no group waiting
            conn.execute("update monitoring.inhibit_rules set enabled = false")
            conn.execute("update monitoring.settings set group_by = '{alertname}', group_wait = '0'")
            conn.execute("delete from monitoring.notification_groups")
            conn.execute("update monitoring.alert_rules set threshold = 0.5, for_period = '0', enabled = true "
                         "where name = 'high_error_rate'")
            conn.execute("insert into public.whatsapp_error_logs (error_type, error_message) "
                         "values ('pydeploy_verify', 'synthetic error from pydeploy verify')")
            conn.execute("select monitoring.evaluate_rules(now(), array['high_error_rate'], false)")
            got = rows(conn, """
                select a.state, d.event, d.payload, d.body, d.idempotency_key
                from monitoring.alerts a
                left join monitoring.deliveries d
                  on a.fingerprint = any(d.fingerprints) and d.channel = 'pydeploy-verify-tx'
                where a.rule_name = 'high_error_rate'""")
    except psycopg.Error as exc:
        return Check("rule → alert → outbox", False, f"the evaluation raised: {str(exc).strip()[:200]}",
                     "see monitoring.rule_errors and the migrations' pgTAP tests")
    if not got or got[0]["state"] != "firing" or got[0]["event"] != "firing":
        return Check("rule → alert → outbox", False, f"a forced breach did not queue a firing notification: {got}",
                     "check monitoring.alert_rules and monitoring.channels")
    payload = got[0]["payload"]
    has_runbook = "runbook" in json.dumps(payload)
    return Check("rule → alert → outbox", has_runbook,
                 "a forced breach of high_error_rate fired and queued a signed notification with its runbook "
                 "(in a rolled-back transaction: nothing sent, nothing kept)" if has_runbook
                 else "the queued notification carries no runbook", "")


def _alerting_model(conn: psycopg.Connection) -> Check:
    """Inhibition rules that can never apply, and what the anti-flap, no-data and grouping settings are."""
    dead = rows(conn, """
        select i.name,
               not exists (select 1 from monitoring.alert_rules as r where r.enabled
                           and monitoring._silence_matches(i.source_matchers,
                             r.labels || jsonb_build_object('alertname', r.name, 'severity', r.severity))) as no_source,
               not exists (select 1 from monitoring.alert_rules as r where r.enabled
                           and monitoring._silence_matches(i.target_matchers,
                             r.labels || jsonb_build_object('alertname', r.name, 'severity', r.severity))) as no_target
        from monitoring.inhibit_rules as i where i.enabled order by i.name""")
    summary = rows(conn, """
        select (select count(*) from monitoring.inhibit_rules where enabled) as inhibitions,
               (select count(*) from monitoring.alert_rules where enabled and keep_firing_for > interval '0')
                 as anti_flap,
               (select string_agg(name, ', ' order by name) from monitoring.alert_rules
                 where enabled and nodata_state = 'nodata') as nodata,
               (select array_to_string(group_by, ', ') from monitoring.settings where id) as group_by,
               (select group_wait::text || ' / ' || group_interval::text from monitoring.settings where id) as timing
        """)[0]
    unused = [f"{d['name']} (no enabled rule matches its {'source' if d['no_source'] else 'target'})"
              for d in dead if d["no_source"] or d["no_target"]]
    detail = (f"{summary['inhibitions']} inhibition rule(s), {summary['anti_flap']} rule(s) with keep_firing_for, "
              f"no-data alerting on {summary['nodata'] or 'no rule'}, grouped by "
              f"{summary['group_by'] or 'nothing'} (group_wait / group_interval {summary['timing']})")
    if unused:
        return Check("alerting model", False, "inhibition rules that never apply: " + "; ".join(unused),
                     "fix its matchers (update monitoring.inhibit_rules ...) or disable it (enabled = false)")
    return Check("alerting model", True, detail, "")


def _delivery(conn: psycopg.Connection, dsn: str) -> Check:
    from pydeploy import channels

    host = urlsplit(dsn).hostname if "://" in dsn else None
    if not host or not validate.is_loopback(host):
        return Check("delivery over HTTP", None,
                     "not run: the database is remote and cannot reach a receiver on this machine",
                     "pydeploy channel test <name> sends a real test notification to a configured channel")
    rec = Receiver(path="/pydeploy-verify").start()
    key = secrets.token_hex(16)
    name = "pydeploy-verify"
    try:
        channels.add(conn, channels.ChannelSpec(name, "webhook", rec.url, key, "info"))
        result = channels.test(conn, name, timeout=20)
        if result["status"] != "delivered" or not rec.requests:
            return Check("delivery over HTTP", False,
                         f"the test notification was not delivered: status {result['status']}, "
                         f"error {result.get('last_error') or result.get('error_msg')}",
                         "is pg_net's worker running? (pydeploy up restarts the local stand-in)")
        got = rec.requests[0]
        sig = got.headers.get("X-Signature", "")
        ok = got.signed_by(key) and bool(got.key)
        return Check("delivery over HTTP", ok,
                     "a test notification went through pg_net to a local receiver, answered 200, was confirmed "
                     "from net._http_response, and its X-Signature matched the HMAC of the body"
                     if ok else f"delivered, but the signature or idempotency key is wrong: {sig!r}",
                     "" if ok else "check monitoring.channels.signing_secret and the dispatcher")
    finally:
        with conn.transaction():
            conn.execute("delete from monitoring.deliveries where channel = %s", (name,))
            conn.execute("delete from monitoring.channels where name = %s", (name,))
            names = [f"alerting_{name}_url", f"alerting_{name}_signing"]
            table = "vault.secrets" if one(conn, "select to_regclass('vault.secrets') is not null") \
                else "monitoring._secrets"
            conn.execute(f"delete from {table} where name = any(%s)", (names,))
        rec.close()


def run(conn: psycopg.Connection, dsn: str, migrations_folder: Path) -> list[Check]:
    """All checks, in the order an operator would want to read them."""
    version = one(conn, "show server_version")
    checks = [Check("connection", True, f"connected, PostgreSQL {version}")]
    checks += _extensions(conn)
    checks.append(_migrations(conn, migrations_folder))
    if not one(conn, "select to_regnamespace('monitoring') is not null"):
        checks.append(Check("monitoring schema", False, "schema monitoring does not exist", "pydeploy migrate"))
        return checks
    checks += _jobs(conn)
    checks += _security(conn)
    checks.append(_rule_to_outbox(conn))
    checks.append(_alerting_model(conn))
    checks.append(_delivery(conn, dsn))
    checks.append(Check(*heartbeat.check(conn)))
    health = one(conn, "select monitoring.health() ->> 'status'")
    checks.append(Check("health()", True, f"monitoring.health() answers: {health}"))
    return checks
