"""Least privilege, checked by acting as Supabase's roles on a migrated database.

Each test switches to `anon`, `authenticated` or `service_role` (`set local role`, as PostgREST
does after logging in as `authenticator`) inside a transaction that is rolled back, and tries what
that role must or must not be able to do. Objects are enumerated from the catalogs, so anything a
later migration adds is covered without touching this file.

The module database holds realistic rows (notifications, error logs, sessions with full phone
numbers, alerts and their deliveries to a signed channel) so that "sees nothing" means something.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pydeploy.engines import LocalState
from pydeploy.net_worker import Worker
from pydeploy.receiver import receiver, signature
from tests.alerting import NetWorker, real_pg_net, secret_names_sql
from tests.databases import migrated_database, rolled_back

ROOT = Path(__file__).resolve().parent.parent
SUPABASE = ROOT / "node_modules" / ".bin" / "supabase"
API_ROLES = ("anon", "authenticated")
PUBLIC_TABLES = ("whatsapp_notifications", "whatsapp_error_logs", "whatsapp_sessions")

# session id -> (phone number as the app stores it, what admins must see instead)
SESSIONS = {
    "priv-down": ("+55 11 98888-7777", "+55*******7777"),
    "priv-stale": ("+5511977776666", "+55*******6666"),
    "priv-local": ("(415) 555-0123", "******0123"),
}
SLOW_PHONE = "+5511966665555"  # written by a slow statement, so it lands in pg_stat_statements
PHONES = [p for p, _ in SESSIONS.values()] + [SLOW_PHONE, "+44 20 7946 0958"]
OPS_KEY = "ops-signing-" + uuid.uuid4().hex


def _fetch(conn: psycopg.Connection, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    cur = conn.execute(query, params)
    return cur.fetchall() if cur.description else []


def _try(conn: psycopg.Connection, statement: str) -> psycopg.Error | None:
    """Run one statement in a savepoint; the error it raised, or None when it succeeded."""
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.Error as exc:
        return exc
    return None


@pytest.fixture(scope="module")
def priv_db(engine_state: LocalState) -> Iterator[str]:
    """A migrated database of this module's own, with rows in every table the roles must not see."""
    with migrated_database(engine_state, "priv") as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("update monitoring.settings set backoff_base = '1 second', backoff_cap = '1 second', "
                      "max_attempts = 4, http_timeout_ms = 1000, response_grace = '1 second'")
            for sid, (phone, _) in SESSIONS.items():
                state, connected, updated = {
                    "priv-down": ("disconnected", "20 minutes", "1 minute"),
                    "priv-stale": ("connected", "30 hours", "30 hours"),
                    "priv-local": ("connecting", "2 minutes", "1 minute"),
                }[sid]
                c.execute("insert into public.whatsapp_sessions (session_id, phone_number, is_active, "
                          "connection_state, last_connected_at, state_changed_at, updated_at) values "
                          "(%s, %s, true, %s, now() - %s::interval, now() - %s::interval, now() - %s::interval)",
                          (sid, phone, state, connected, connected, updated))
            c.execute("insert into public.whatsapp_notifications (phone_number, template_name, message, status, "
                      "created_at, sent_at) select p, 'order_update', 'Your order ' || p || ' shipped', "
                      "case when i %% 3 = 0 then 'failed' else 'sent' end, now() - i * interval '1 minute', "
                      "case when i %% 3 = 0 then null else now() - i * interval '1 minute' + interval '2 seconds' end "
                      "from unnest(%s::text[]) with ordinality as t (p, i)", (PHONES,))
            c.execute("insert into public.whatsapp_error_logs (error_type, error_message, context) "
                      "select 'invalid_number', 'rejected ' || p, jsonb_build_object('phone', p) "
                      "from unnest(%s::text[]) as p", (PHONES,))
            # what an admin types in the SQL editor (literal text, not bind parameters)
            c.execute("select monitoring.set_channel('priv-ops', 'webhook', 'http://127.0.0.1:9/priv-ops', "
                      f"'{OPS_KEY}', 'info')")
            c.execute("select monitoring.refresh_rollups(p_full => true)")
            c.execute("select monitoring.evaluate_rules(now(), array['whatsapp_disconnected', 'stale_session'], false)")
            # a slow statement that names a phone number: pg_stat_statements keeps its text
            c.execute("insert into public.whatsapp_sessions (session_id, phone_number, connection_state) "
                      f"select 'priv-slow', '{SLOW_PHONE}', 'connected' from pg_sleep(0.15)")
        yield url


@pytest.fixture
def db(priv_db: str) -> Iterator[psycopg.Connection]:
    """A connection to the module database as postgres, in a transaction rolled back after the test."""
    with rolled_back(priv_db) as c:
        yield c


def _relations(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(qualified name, relkind, relname) of every relation in monitoring except indexes and row types."""
    return [(str(r[0]), str(r[1]), str(r[2])) for r in _fetch(conn, """
        select c.oid::regclass::text, c.relkind::text, c.relname::text from pg_catalog.pg_class as c
        where c.relnamespace = 'monitoring'::regnamespace and c.relkind not in ('i', 'I', 'c', 't')
        order by 1""")]


def _routines(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(signature, a call with nulls of the right types, name) of every function and procedure in monitoring."""
    rows = _fetch(conn, """
        select
          p.oid::regprocedure::text,
          format('%s %I.%I(%s)', case when p.prokind = 'p' then 'call' else 'select' end, n.nspname, p.proname,
            coalesce((
              select string_agg(
                case when p.provariadic <> 0 and a.ord = p.pronargs then 'variadic ' else '' end
                || 'null::' || pg_catalog.format_type(a.t, null), ', ' order by a.ord)
              from unnest(p.proargtypes::oid[]) with ordinality as a (t, ord)
            ), '')),
          p.proname::text,
          p.prokind::text
        from pg_catalog.pg_proc as p
        join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
        where n.nspname = 'monitoring'
        order by 1""")
    assert all(r[3] in ("f", "p") for r in rows), f"unexpected routine kinds: {[r for r in rows if r[3] not in 'fp']}"
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def _public_executable(conn: psycopg.Connection) -> list[str]:
    """Functions in monitoring that PUBLIC may execute (a null proacl means the default: PUBLIC may)."""
    return [str(r[0]) for r in _fetch(conn, """
        select p.oid::regprocedure::text from pg_catalog.pg_proc as p
        where p.pronamespace = 'monitoring'::regnamespace
          and exists (
            select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) as a
            where a.grantee = 0 and a.privilege_type = 'EXECUTE')
        order by 1""")]


def _rows_as_text(conn: psycopg.Connection, relation: str) -> list[str]:
    return [str(r[0]) for r in _fetch(conn, f"select to_jsonb(x)::text from {relation} as x")]


# -- 1. anon and authenticated -------------------------------------------------------------------
@pytest.mark.parametrize("exposed", [False, True], ids=["as-shipped", "schema-exposed-in-api"])
@pytest.mark.parametrize("role", API_ROLES)
def test_api_roles_can_neither_read_nor_run_anything_in_monitoring(
        db: psycopg.Connection, role: str, exposed: bool) -> None:
    """Every relation and routine of monitoring refuses anon and authenticated with permission denied.

    `schema-exposed-in-api` grants them usage on the schema first, as adding `monitoring` to the
    API's exposed schemas on Supabase does: the objects themselves must still refuse them.
    """
    relations, routines = _relations(db), _routines(db)
    assert len(relations) >= 40 and len(routines) >= 80, "the enumeration found the package's objects"
    if exposed:
        db.execute(f"grant usage on schema monitoring to {role}")
    db.execute(f"set local role {role}")
    leaks: list[str] = []

    def refused(statement: str, obj: str) -> None:
        err = _try(db, statement)
        want = "permission denied for schema monitoring" if not exposed else f"permission denied for {obj}"
        if err is None:
            leaks.append(f"{statement}: succeeded")
        elif err.sqlstate != "42501" or not re.search(want, str(err)):
            leaks.append(f"{statement}: {err.sqlstate} {err}")

    for qualified, kind, name in relations:
        what = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "S": "sequence",
                "f": "foreign table"}[kind]
        refused(f"select * from {qualified}", rf"{what} {re.escape(name)}\b")
        if kind in ("r", "p"):
            refused(f"insert into {qualified} default values", rf"table {re.escape(name)}\b")
            refused(f"delete from {qualified}", rf"table {re.escape(name)}\b")
            refused(f"truncate {qualified}", rf"table {re.escape(name)}\b")
        if kind == "S":
            refused(f"select nextval('{qualified}')", rf"sequence {re.escape(name)}\b")
    for _, call, name in routines:
        refused(call, rf"(function|procedure) {re.escape(name)}\b")
    assert leaks == [], f"{role} reached {len(leaks)} object(s):\n" + "\n".join(leaks[:30])


@pytest.mark.parametrize("role", API_ROLES)
def test_api_roles_see_no_rows_of_the_app_tables_and_cannot_change_them(db: psycopg.Connection, role: str) -> None:
    before = {t: _fetch(db, f"select count(*), md5(string_agg(x::text, ',' order by x::text)) "
                            f"from public.{t} as x")[0] for t in PUBLIC_TABLES}
    assert all(n > 0 for n, _ in before.values()), "the tables hold rows"
    db.execute(f"set local role {role}")
    for t in PUBLIC_TABLES:
        assert _fetch(db, f"select count(*) from public.{t}") == [(0,)], f"{role} reads rows of {t}"
        err = _try(db, {
            "whatsapp_notifications": "insert into public.whatsapp_notifications (phone_number) values ('+1555')",
            "whatsapp_error_logs": "insert into public.whatsapp_error_logs (error_type) values ('forged')",
            "whatsapp_sessions": "insert into public.whatsapp_sessions (session_id) values ('forged')",
        }[t])
        assert err is not None and err.sqlstate == "42501" and "row-level security" in str(err), \
            f"{role} inserted into {t}: {err}"
        for change in (f"update public.{t} set created_at = now()", f"delete from public.{t}"):
            cur = db.execute(change)
            assert cur.rowcount == 0, f"{role}: {change} touched {cur.rowcount} rows"
        err = _try(db, f"truncate public.{t}")
        assert err is not None and err.sqlstate == "42501", f"{role} emptied {t} with truncate (RLS ignores it)"
    db.execute("reset role")
    after = {t: _fetch(db, f"select count(*), md5(string_agg(x::text, ',' order by x::text)) "
                           f"from public.{t} as x")[0] for t in PUBLIC_TABLES}
    assert after == before, "the app's rows are unchanged"


def test_secrets_are_unreachable_for_every_role_but_the_owner(db: psycopg.Connection) -> None:
    stored = {str(r[0]) for r in _fetch(db, secret_names_sql(db))}
    assert {"alerting_priv-ops_signing", "alerting_priv-ops_url"} <= stored, "the channel's secrets exist"
    vault = [str(r[0]) for r in _fetch(db, "select c.oid::regclass::text from pg_catalog.pg_class as c "
                                           "where c.relnamespace = to_regnamespace('vault')")]
    for role in (*API_ROLES, "service_role"):
        db.execute(f"set local role {role}")
        for statement in ["select * from monitoring._secrets",
                          "select monitoring._get_secret('alerting_priv-ops_signing')",
                          *[f"select * from {v}" for v in vault]]:
            err = _try(db, statement)
            assert err is not None and err.sqlstate == "42501", f"{role}: {statement} -> {err}"
        err = _try(db, "select monitoring.set_secret('alerting_priv-ops_url', 'http://127.0.0.1:1/hijack')")
        if role == "service_role":
            assert err is None, "service_role configures channels, so it may write (not read) secrets"
        else:
            assert err is not None and err.sqlstate == "42501", f"{role} overwrote a channel URL: {err}"
        db.execute("reset role")


def test_a_postgrest_session_through_authenticator_gets_only_what_its_role_allows(priv_db: str) -> None:
    """PostgREST logs in as `authenticator` (noinherit) and switches to the JWT's role per request."""
    with psycopg.connect(priv_db, autocommit=False) as c:
        c.execute("set session authorization authenticator")
        assert _fetch(c, "select session_user, current_user") == [("authenticator", "authenticator")]
        for statement in ["select * from monitoring.delivery_stats", "select monitoring.health()",
                          "select count(*) from public.whatsapp_notifications", "set role postgres"]:
            err = _try(c, statement)
            assert err is not None and err.sqlstate == "42501", f"authenticator itself: {statement} -> {err}"
        for role in API_ROLES:
            c.execute(f"set role {role}")  # what PostgREST does for a request carrying this role's JWT
            assert _fetch(c, "select count(*) from public.whatsapp_sessions") == [(0,)]
            for statement in ["select * from monitoring.active_sessions", "select monitoring.health()",
                              "select * from monitoring._secrets", "set role postgres"]:
                err = _try(c, statement)
                assert err is not None and err.sqlstate == "42501", f"{role}: {statement} -> {err}"
            c.execute("reset role")
        c.execute("set role service_role")
        assert _fetch(c, "select monitoring.health() ->> 'status'")[0][0] in ("healthy", "degraded", "unhealthy")
        assert _fetch(c, "select count(*) from public.whatsapp_sessions")[0][0] >= 3, "service_role bypasses RLS"
        c.rollback()


# -- 2. service_role -----------------------------------------------------------------------------
def test_service_role_reads_every_view_admins_use_and_calls_health(db: psycopg.Connection) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What admins query", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.M))
    documented |= {m for m in re.findall(r"monitoring\.([a-z_0-9]+)\b", readme) if not m.endswith("_")}
    views = {name for _, kind, name in _relations(db) if kind == "v"}
    readme_views = {"delivery_stats", "delivery_stats_24h", "top_errors_24h", "error_trends", "active_sessions",
                    "connection_status", "queue_stats", "delivery_latency", "hourly_stats", "function_stats",
                    "slow_queries", "delivery_status", "dead_letters"}
    assert readme_views <= documented, f"README no longer lists {sorted(readme_views - documented)}"
    assert readme_views <= views, f"views the README lists are missing: {sorted(readme_views - views)}"
    db.execute("set local role service_role")
    counts = {v: _fetch(db, f"select count(*) from monitoring.{v}")[0][0] for v in sorted(views)}
    assert counts["hourly_stats"] == 168 and counts["active_sessions"] >= 3 and counts["active_alerts"] >= 2, counts
    health = _fetch(db, "select monitoring.health()")[0][0]
    assert health["status"] in ("healthy", "degraded", "unhealthy")
    assert {"services", "database", "scheduler", "alerts", "delivery", "timestamp"} <= set(health)


def test_service_role_operates_the_alerting_without_permission_errors(db: psycopg.Connection) -> None:
    db.execute("insert into public.whatsapp_error_logs (error_type) select 'timeout' from generate_series(1, 25)")
    db.execute("set local role service_role")
    result = _fetch(db, "select monitoring.evaluate_rules(now(), null, false)")[0][0]
    assert result["errors"] == {}, f"rules that fail for service_role: {result['errors']}"
    rules = {str(r[0]) for r in _fetch(db, "select name from monitoring.alert_rules where enabled")}
    assert set(result["evaluated"]) == rules
    firing = {str(r[0]) for r in _fetch(db, "select rule_name from monitoring.active_alerts where state = 'firing'")}
    assert {"high_error_rate", "whatsapp_disconnected", "stale_session"} <= firing
    for job in ("evaluate", "watchdog", "dispatch", "refresh-rollups", "check-whatsapp-errors"):
        run = _fetch(db, "select monitoring.run_job(%s)", (job,))[0][0]
        assert run["ok"] is True and "permission denied" not in json.dumps(run), f"run_job({job}): {run}"
    assert _fetch(db, "select monitoring.create_silence('{\"alertname\": \"stale_session\"}', '1 hour', "
                      "'maintenance', 'ops')")[0][0] > 0
    assert _fetch(db, "select monitoring.test_channel('priv-ops')")[0][0] > 0


# -- 3. security definer functions and default privileges ----------------------------------------
def test_security_definer_functions_pin_search_path_and_nobody_but_the_owner_grants_them(
        db: psycopg.Connection) -> None:
    definers = _fetch(db, """
        select p.oid::regprocedure::text, coalesce(p.proconfig, '{}'),
          array(select a.grantee::regrole::text from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) as a
                where a.privilege_type = 'EXECUTE' and a.grantee <> 0 order by 1),
          pg_catalog.pg_get_userbyid(p.proowner)
        from pg_catalog.pg_proc as p
        where p.pronamespace = 'monitoring'::regnamespace and p.prosecdef
        order by 1""")
    assert len(definers) >= 6, "the package's security definer functions were found"
    unpinned = [f for f, config, _, _ in definers if 'search_path=""' not in config]
    assert unpinned == [], f"security definer without search_path = '': {unpinned}"
    grantees = {f: set(g) - {owner} for f, _, g, owner in definers}
    # postgres_exporter's role may call the exporter_*() functions (figures only) and no other
    too_wide = {f: g for f, g in grantees.items()
                if not g <= {"service_role", "postgres"}
                | ({"monitoring_exporter"} if f.startswith("monitoring.exporter_") else set())}
    assert too_wide == {}, f"security definer functions executable beyond service_role: {too_wide}"
    assert grantees["monitoring._get_secret(text)"] == set(), "only the owner reads secrets"
    assert _public_executable(db) == [], "every function in monitoring has PUBLIC's execute revoked"


def test_a_function_added_later_by_the_migration_owner_stays_out_of_reach(db: psycopg.Connection) -> None:
    """Postgres gives PUBLIC execute on every new function, and ALTER DEFAULT PRIVILEGES ... IN SCHEMA
    cannot take a global default back. Two things keep such a function from the API roles: they have
    no usage on monitoring, and the PUBLIC-execute check above flags it until its migration revokes."""
    db.execute("create function monitoring.later_probe() returns integer language sql set search_path = '' "
               "as $$ select 1 $$")
    for role in API_ROLES:
        db.execute(f"set local role {role}")
        err = _try(db, "select monitoring.later_probe()")
        assert err is not None and err.sqlstate == "42501", f"{role} ran a later function: {err}"
        db.execute("reset role")
    assert _public_executable(db) == ["monitoring.later_probe()"], "the guard flags a function left open"
    db.execute("revoke all on function monitoring.later_probe() from public")
    assert _public_executable(db) == []


# -- 4. phone numbers -----------------------------------------------------------------------------
def _unmasked(texts: list[str]) -> list[str]:
    digits = [re.sub(r"\D", "", p) for p in PHONES]
    out = []
    for t in texts:
        squeezed = re.sub(r"[\s().+-]", "", t)
        if any(p in t for p in PHONES) or any(d in squeezed for d in digits):
            out.append(t)
    return out


def test_phone_numbers_are_masked_in_everything_admins_browse(db: psycopg.Connection) -> None:
    db.execute("set local role service_role")
    readable = [q for q, kind, _ in _relations(db) if kind in ("v", "m")
                or (kind in ("r", "p") and _fetch(db, "select has_table_privilege(%s, 'select')", (q,))[0][0])]
    assert "monitoring.active_sessions" in readable and "monitoring.deliveries" in readable
    leaks = {q: _unmasked(_rows_as_text(db, q)) for q in readable}
    assert {q: rows[:2] for q, rows in leaks.items() if rows} == {}, "full phone numbers shown to admins"
    shown = dict(_fetch(db, "select session_id, phone_number from monitoring.active_sessions"))
    assert {sid: shown.get(sid) for sid in SESSIONS} == {sid: masked for sid, (_, masked) in SESSIONS.items()}
    status = dict(_fetch(db, "select session_id, phone_number from monitoring.connection_status"))
    assert {sid: status.get(sid) for sid in SESSIONS} == {sid: masked for sid, (_, masked) in SESSIONS.items()}
    messages = " ".join(str(r[0]) for r in _fetch(db, "select message from monitoring.active_alerts"))
    assert "+55*******7777" in messages and "+55*******6666" in messages, messages
    payloads = " ".join(str(r[0]) for r in _fetch(db, "select body from monitoring.deliveries"))
    assert "+55*******7777" in payloads, "the notifications carry the masked number"
    _fetch(db, "select monitoring.run_job('evaluate')")  # the every-minute job takes the snapshot
    slow = [str(r[0]) for r in _fetch(db, "select query from monitoring.slow_queries")]
    assert any("pg_sleep" in q and "whatsapp_sessions" in q for q in slow), "the slow insert is listed"


# -- 5. supabase db lint -----------------------------------------------------------------------------
def _lint(url: str, schemas: str) -> subprocess.CompletedProcess[str]:
    if not SUPABASE.exists():
        pytest.fail(f"the Supabase CLI is not installed at {SUPABASE}: run `make bootstrap` (npm ci)")
    return subprocess.run(
        [str(SUPABASE), "db", "lint", "--db-url", url + "?sslmode=disable", "--schema", schemas,
         "--level", "warning", "--fail-on", "warning", "--output-format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT / ".pydeploy"),
             "SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"})


def _lint_issues(stdout: str) -> list[dict[str, Any]]:
    """The functions with issues in `db lint --output-format json` ({"results": [...], "message": "db lint"})."""
    doc = json.loads(stdout)
    assert isinstance(doc, dict) and doc.get("message") == "db lint" and isinstance(doc.get("results"), list), stdout
    return list(doc["results"])


def test_supabase_db_lint_reports_nothing_for_monitoring_and_public(priv_db: str, engine_url: str) -> None:
    # first prove the linter really runs plpgsql_check here: a broken function must be reported
    with psycopg.connect(priv_db, autocommit=True) as c:
        c.execute("create schema lint_probe")
        c.execute("create function lint_probe.broken() returns bigint language plpgsql as "
                  "$$ begin return (select count(*) from lint_probe.no_such_table); end $$")
    try:
        probe = _lint(priv_db, "lint_probe")
    finally:
        with psycopg.connect(priv_db, autocommit=True) as c:
            c.execute("drop schema lint_probe cascade")
    assert probe.returncode != 0, probe.stdout + probe.stderr
    found = _lint_issues(probe.stdout)
    assert [(f["function"], [i["sqlState"] for i in f["issues"]]) for f in found] == [("lint_probe.broken", ["42P01"])]

    # without pg_cron (any database but cron.database_name) and with it (`postgres`, as on Supabase)
    for url in (priv_db, engine_url):
        res = _lint(url, "monitoring,public")
        assert "Linting schema: monitoring" in res.stderr and "Linting schema: public" in res.stderr, res.stderr
        assert _lint_issues(res.stdout) == [], f"lint issues in {url}:\n{res.stdout}"
        assert res.returncode == 0, res.stdout + res.stderr


# -- 6. secrets stay secret -----------------------------------------------------------------------------
def test_channel_secrets_stay_out_of_settings_views_statements_queue_and_logs(
        priv_db: str, engine_state: LocalState, caplog: pytest.LogCaptureFixture) -> None:
    key = "leak-signing-" + uuid.uuid4().hex
    token = "leak-path-" + uuid.uuid4().hex
    with receiver([200]) as rec, psycopg.connect(priv_db, autocommit=True) as c:
        url = f"{rec.url}/{token}"
        # typed as literals, as in the README's SQL editor example
        c.execute(f"select monitoring.set_channel('priv-leak', 'webhook', '{url}', '{key}', 'info')")
        delivery = _fetch(c, "select monitoring.test_channel('priv-leak')")[0][0]
        settings = _fetch(c, "select name from pg_settings where concat_ws(' ', setting, reset_val, boot_val) "
                             "like '%%' || %s || '%%'", (key,))
        saved = _fetch(c, "select setrole, setdatabase from pg_db_role_setting where setconfig::text like '%%' || "
                          "%s || '%%' or setconfig::text like '%%' || %s || '%%'", (key, token))
        # custom placeholders (app.settings.*) are not listed in pg_settings: only set_config could
        # fill one from a function, so no function of the package may call it
        setters = _fetch(c, r"select p.oid::regprocedure::text from pg_catalog.pg_proc as p "
                            r"where p.pronamespace = 'monitoring'::regnamespace and (p.prosrc ~* '\mset_config\M' "
                            r"or coalesce(p.proconfig::text, '') like '%%' || %s || '%%')", (key,))
        assert (settings, saved, setters) == ([], [], []), "the secret is in a setting"
        statements = _fetch(c, "select query from extensions.pg_stat_statements "
                               "where query like '%%' || %s || '%%' or query like '%%' || %s || '%%'", (key, token))
        assert statements == [], "pg_stat_statements (behind monitoring.slow_queries) keeps the secret"

        with c.transaction():
            c.execute("set local role service_role")
            channel = _fetch(c, "select to_jsonb(c)::text from monitoring.channels as c where name = 'priv-leak'")
            assert len(channel) == 1 and key not in channel[0][0] and token not in channel[0][0]
            assert json.loads(channel[0][0])["signing_secret"] == "alerting_priv-leak_signing", "a name, not the key"
            readable = [q for q, kind, _ in _relations(c) if kind in ("v", "m") or (
                kind in ("r", "p") and _fetch(c, "select has_table_privilege(%s, 'select')", (q,))[0][0])]
            shown = {q: [t for t in _rows_as_text(c, q) if key in t or token in t] for q in readable}
            assert {q: t for q, t in shown.items() if t} == {}, "a view or table shows the secret"
            c.execute("reset role")

        assert _fetch(c, "select (monitoring.dispatch_deliveries(now())) ->> 'failed'") == [("0",)]
        body = _fetch(c, "select body from monitoring.deliveries where id = %s", (delivery,))[0][0]
        queued = _fetch(c, "select url, headers, convert_from(body, 'UTF8') from net.http_request_queue "
                           "where url = %s", (url,))
        assert len(queued) == 1
        _, headers, sent = queued[0]
        good = signature(key, body.encode())
        assert sent == body and headers["X-Signature"] == good
        assert key not in json.dumps(headers) and key not in sent, "the key travels only as its HMAC"

        if real_pg_net(priv_db):  # the real pg_net's worker sends it (and logs to the server log)
            with NetWorker(priv_db):
                got = rec.wait_for(1, timeout=20)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not _fetch(
                        c, "select 1 from net._http_response where id = (select request_id from "
                           "monitoring.deliveries where id = %s)", (delivery,)):
                    time.sleep(0.1)
        else:
            worker = Worker(priv_db)
            try:
                with caplog.at_level(logging.DEBUG), psycopg.connect(priv_db, autocommit=True) as wc:
                    while worker.run_once(wc):
                        pass
            finally:
                worker.pool.shutdown(wait=True)
            got = rec.wait_for(1, timeout=10)
        assert [r.path for r in got] == [f"/{token}"]
        assert hmac.compare_digest(got[0].headers["X-Signature"], good)
        assert all(key not in v for v in got[0].headers.values()) and key.encode() not in got[0].body
        c.execute("select monitoring.reconcile_deliveries(now())")
        assert _fetch(c, "select status from monitoring.deliveries where id = %s", (delivery,)) == [("delivered",)]
    assert key not in caplog.text and token not in caplog.text, "the pg_net worker logged the secret"
    server_log = engine_state.pg_root / "postgres.log"
    assert server_log.exists(), f"no server log at {server_log}"
    log_text = server_log.read_text(errors="replace")
    assert key not in log_text and token not in log_text, "the Postgres log holds the secret"


def test_edge_mode_cron_jobs_read_the_service_key_at_run_time_instead_of_embedding_it(engine_url: str) -> None:
    """pg_cron runs only in `postgres`; everything here is rolled back."""
    service_key = "svc-key-" + uuid.uuid4().hex
    project = "http://127.0.0.1:9/project-" + uuid.uuid4().hex
    with psycopg.connect(engine_url, autocommit=False) as c:
        try:
            c.execute("select monitoring.set_secret('project_url', %s), monitoring.set_secret('service_role_key', %s)",
                      (project, service_key))
            c.execute("select monitoring.schedule_jobs('edge')")
            jobs = dict(_fetch(c, "select jobname, command from cron.job"))
            assert jobs.get("check-whatsapp-errors") == "select monitoring.run_job('check-whatsapp-errors-edge')"
            assert not [j for j, cmd in jobs.items() if service_key in cmd or project in cmd], jobs
            run = _fetch(c, "select monitoring.run_job('check-whatsapp-errors-edge')")[0][0]
            assert run["ok"] is True, run
            queued = _fetch(c, "select url, headers::text, convert_from(body, 'UTF8') from net.http_request_queue "
                               "where url = %s", (project + "/functions/v1/check-error-rate",))
            assert len(queued) == 1 and f'"Bearer {service_key}"' in queued[0][1], "the call authenticates"
            assert service_key not in queued[0][2]
            logged = _fetch(c, "select count(*) from monitoring.job_runs where detail::text like '%%' || %s || '%%' "
                               "or coalesce(error, '') like '%%' || %s || '%%'", (service_key, service_key))
            assert logged == [(0,)], "job_runs keeps the service key"
        finally:
            c.rollback()
