"""Bad input (issue 8): nulls, negatives, NaN, huge values, wrong types and injection strings.

Every public function and configuration table of schema `monitoring` either refuses a bad value
with a Postgres error whose message names the field (and a hint with the fix), or stores it
verbatim as data where it is legitimate (a label value, a comment); it never executes it, and a
refusal changes nothing. The public API is enumerated from the catalog, so a function added later
is probed too. The CLI's own validation is driven through the real `pydeploy` entry point.

One migrated scratch database serves the module. Probes that need set-up run in a savepoint that
is rolled back; the null probe of every function, the injection refusals and the CLI run committed,
and "nothing changed" is a checksum (md5 of the ordered rows) of every configuration, state and app
table taken before and after.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pydeploy.engines import LocalState
from pydeploy.receiver import receiver
from tests.alerting import FAST, NetWorker, prepare, pump, read_secret_sql, secret_store
from tests.databases import migrated_database, rolled_back

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TABLES = ["settings", "alert_rules", "channels", "silences", "retention_policies", "jobs", "health_thresholds",
                 "rollup_settings"]
STATE_TABLES = ["_secrets", "rule_state", "rule_errors", "rollup_state", "alerts", "alert_history", "deliveries",
                "function_invocations", "job_runs"]
APP_TABLES = ["whatsapp_notifications", "whatsapp_error_logs", "whatsapp_sessions"]
# What a helpful refusal never looks like: Postgres' generic constraint texts, or a crash.
RAW = re.compile(r"null value in column|violates (check|not-null) constraint|out of range for type|"
                 r"invalid input syntax|Traceback|internal error|could not|division by zero", re.IGNORECASE)
INJECTIONS = [
    "x'); drop table monitoring.alert_rules; --",
    "'; select pg_sleep(30); --",
    "$$; drop schema monitoring cascade; $$",
    "\\",
    "%s %I %L %1$s",
    "{{ .Labels }} ${jndi:ldap://x}",
    "🚨 ñandú 中文 עברית",
    "line\nbreak\ttab\r",
    "k" * 10240,
]
# each example runs in a savepoint of the test's transaction and is rolled back, so sharing `conn` is safe
PROBE = settings(max_examples=80, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# psycopg refuses NUL in text parameters (client side), so text strategies leave it out.
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80)


# -- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_db(engine_state: LocalState) -> Iterator[str]:
    """One migrated database for the module, with a channel, a silence, evaluated rules, a dead
    delivery, an invocation and an error log, so the probes meet state they could damage."""
    with migrated_database(engine_state, "badinput") as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(FAST)
            c.execute("select monitoring.set_channel('ops', 'webhook', 'http://127.0.0.1:9/hook', 'signing-key-0123')")
            c.execute("select monitoring.create_silence('{\"alertname\": \"slow_queries\"}', '1 hour', 'probe', 'qa')")
            c.execute("select monitoring.refresh_rollups()")
            c.execute("select monitoring.evaluate_rules(now())")
            c.execute("select monitoring.evaluate_rules(now(), array['high_error_rate'], false)")
            c.execute("select monitoring.record_invocation('health', 200, 12)")
            c.execute("insert into public.whatsapp_error_logs (error_type, error_message) values ('timeout', 'kept')")
            row = c.execute("select monitoring.test_channel('ops')").fetchone()
            assert row is not None
            c.execute("update monitoring.deliveries set status = 'dead', dead_at = now(), next_attempt_at = null "
                      "where id = %s", (row[0],))
        yield url


@pytest.fixture
def conn(bad_db: str) -> Iterator[psycopg.Connection]:
    """A transaction on the module database, rolled back after the test (overrides conftest's)."""
    # a runaway query must fail, not fill the disk
    with rolled_back(bad_db, "set statement_timeout = '10s'", "set temp_file_limit = '100MB'") as c:
        yield c


def checksum(c: psycopg.Connection) -> dict[str, str]:
    """md5 of every row of each configuration and state table (ordered), per table."""
    out: dict[str, str] = {}
    for schema, tables in (("monitoring", CONFIG_TABLES + STATE_TABLES), ("public", APP_TABLES)):
        for t in tables:
            q = sql.SQL("select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {}.{} as t")
            row = c.execute(q.format(sql.Identifier(schema), sql.Identifier(t))).fetchone()
            assert row is not None
            out[f"{schema}.{t}"] = row[0]
    if c.execute("select to_regclass('vault.secrets') is not null").fetchone() == (True,):  # Vault holds them
        row = c.execute("select md5(coalesce(string_agg(name || ':' || secret, '|' order by name), '')) "
                        "from vault.secrets").fetchone()
        out["vault.secrets"] = row[0] if row else ""
    return out


@dataclass
class Outcome:
    ok: bool
    rows: list[tuple[Any, ...]] | None = None
    error: psycopg.Error | None = None
    kept: Any = None

    @property
    def message(self) -> str:
        assert self.error is not None
        return self.error.diag.message_primary or str(self.error)

    @property
    def sqlstate(self) -> str | None:
        return self.error.sqlstate if self.error else None


def attempt(c: psycopg.Connection, query: str | sql.Composable, params: Any = None, *,
            keep: Callable[[psycopg.Connection], Any] | None = None) -> Outcome:
    """Run one statement and report what it did. In a transaction it runs in a savepoint that is
    rolled back (`keep` runs after a success, inside it: a later statement sees what the first one
    stored); on an autocommit connection it commits, which is how a test proves a refusal left
    nothing behind."""
    if c.autocommit:
        try:
            cur = c.execute(query, params)
            return Outcome(True, rows=cur.fetchall() if cur.description else None)
        except psycopg.Error as exc:
            return Outcome(False, error=exc)
    c.execute("savepoint probe")
    try:
        cur = c.execute(query, params)
        rows = cur.fetchall() if cur.description else None
        return Outcome(True, rows=rows, kept=keep(c) if keep else None)
    except psycopg.Error as exc:
        return Outcome(False, error=exc)
    finally:
        c.execute("rollback to savepoint probe")


def refused(c: psycopg.Connection, query: str | sql.Composable, params: Any = None, *, names: str) -> Outcome:
    """The statement must fail with a clear message that names `names` (a regex)."""
    out = attempt(c, query, params)
    assert not out.ok, f"accepted: {query!r} {params!r} -> {out.rows}"
    assert not RAW.search(out.message), f"unhelpful message for {params!r}: {out.message}"
    assert re.search(names, out.message), f"message does not name {names}: {out.message}"
    return out


def clear(out: Outcome) -> None:
    """A refusal a human can act on: a hint with the fix, and none of the raw constraint texts."""
    assert out.error is not None
    assert not RAW.search(out.message), out.message
    assert out.error.diag.message_hint, f"no hint: {out.message}"


# -- the public API, from the catalog, called with nulls ------------------------------------------
def public_functions(c: psycopg.Connection) -> list[tuple[str, str, list[str], str]]:
    return c.execute("""
        select p.proname, p.prokind::text,
               coalesce((select array_agg(n order by o) from unnest(p.proargnames) with ordinality as a (n, o)
                         where coalesce(p.proargmodes[o], 'i') in ('i', 'b')), '{}'),
               pg_get_function_identity_arguments(p.oid)
        from pg_proc as p
        where p.pronamespace = 'monitoring'::regnamespace and p.proname !~ '^_'
        order by p.proname, 4""").fetchall()


def test_the_catalog_lists_the_public_api_we_probe(conn: psycopg.Connection) -> None:
    names = {f[0] for f in public_functions(conn)}
    # the ones whose bad input the tests below probe one by one (new ones are still null-probed)
    assert {"set_channel", "set_secret", "create_silence", "expire_silence", "evaluate_rules", "dispatch_deliveries",
            "reconcile_deliveries", "retry_dead_deliveries", "test_channel", "check_error_rate", "record_invocation",
            "refresh_rollups", "run_job", "schedule_jobs", "run_retention", "get_hourly_stats", "health"} <= names
    tables = {r[0] for r in conn.execute("select relname from pg_class where relnamespace = 'monitoring'::regnamespace "
                                         "and relkind = 'r'").fetchall()}
    assert set(CONFIG_TABLES) <= tables


def test_every_public_function_given_only_nulls_refuses_clearly_or_changes_nothing(bad_db: str) -> None:
    """Each function of the catalog called with every argument null, each call committed on its
    own: it raises a message naming what is wrong, or it is a no-op (a read, or nothing to do)."""
    with psycopg.connect(bad_db, autocommit=True) as c:
        c.execute("set statement_timeout = '10s'")
        before = checksum(c)
        report: dict[str, str] = {}
        for name, kind, args, ident in public_functions(c):
            if kind == "p":
                # procedures commit (there is none left in monitoring; see test_retention.py)
                continue
            named = sql.SQL(", ").join(sql.SQL("{} => null").format(sql.Identifier(a)) for a in args)
            query = sql.SQL("select monitoring.{}({})").format(sql.Identifier(name), named)
            try:
                c.execute(query)
                report[f"{name}({ident})"] = "no-op"
            except psycopg.Error as exc:
                msg = exc.diag.message_primary or str(exc)
                report[f"{name}({ident})"] = msg
                assert not RAW.search(msg), f"{name}: unhelpful message {msg!r}"
                assert re.search(rf"{name}|p_\w+|\w+\.\w+", msg), f"{name}: message names nothing: {msg!r}"
        assert checksum(c) == before, "a call with nulls changed stored state:\n" + json.dumps(report, indent=1)
    refused_calls = {k for k, v in report.items() if v != "no-op"}
    # these must refuse (they write, or an unknown time would make them loop); the readers may answer
    # "nothing" for an unknown time
    for writer in ("set_channel", "set_secret", "create_silence", "evaluate_rules", "test_channel", "check_error_rate",
                   "record_invocation", "refresh_rollups", "run_job", "schedule_jobs", "run_retention",
                   "retry_dead_deliveries", "get_hourly_stats"):
        assert any(k.startswith(writer + "(") for k in refused_calls), f"{writer} accepted all nulls: {report}"


# -- injection strings: data where data is legitimate, refused elsewhere, never executed -----------
def test_a_nul_character_is_refused_by_the_client_before_anything_is_sent(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.DataError, match="NUL"):
        conn.execute("select monitoring.set_secret('probe_secret', %s)", ("a\x00b",))



@pytest.mark.parametrize("text", INJECTIONS, ids=lambda s: s[:20])
def test_injection_strings_are_stored_verbatim_as_data_or_refused(conn: psycopg.Connection, bad_db: str,
                                                                  text: str) -> None:
    rules = conn.execute("select count(*) from monitoring.alert_rules").fetchone()
    # legitimate data: a label value, a description, a silence comment and author, a secret value
    stored = attempt(conn, "update monitoring.alert_rules set labels = labels || jsonb_build_object('team', %s::text), "
                           "description = %s where name = 'high_error_rate' returning labels ->> 'team', description",
                     (text, text))
    assert stored.ok and stored.rows == [(text, text)]
    sid = attempt(conn, "select monitoring.create_silence('{\"alertname\": \"x\"}', '1 hour', %s, %s)", (text, text),
                  keep=lambda c: c.execute("select comment, created_by from monitoring.silences "
                                           "order by id desc limit 1").fetchall())
    assert sid.ok and sid.kept == [(text, text)]
    secret = attempt(conn, "select monitoring.set_secret('probe_secret', %s)", (text,),
                     keep=lambda c: c.execute(read_secret_sql(c), ("probe_secret",)).fetchall())
    assert secret.ok and secret.rows == [(secret_store(conn),)] and secret.kept == [(text,)]
    # identifiers, kinds, schedules, URLs and secret names: refused, naming the field; each call is
    # committed on its own, and the committed state is the same afterwards
    with psycopg.connect(bad_db, autocommit=True) as ac:
        before = checksum(ac)
        refused(ac, "update monitoring.alert_rules set name = %s where name = 'high_error_rate'", (text,),
                names=r"alert_rules\.name")
        refused(ac, "update monitoring.alert_rules set check_function = %s where name = 'high_error_rate'", (text,),
                names=r"alert_rules\.check_function")
        refused(ac, "update monitoring.alert_rules set schedule = %s where name = 'high_error_rate'", (text,),
                names=r"alert_rules\.schedule")
        refused(ac, "update monitoring.alert_rules set severity = %s where name = 'high_error_rate'", (text,),
                names=r"alert_rules\.severity")
        refused(ac, "select monitoring.set_channel(%s, 'webhook', 'https://hooks.example.com/x')", (text,),
                names=r"channels\.name")
        refused(ac, "select monitoring.set_channel('ops', %s, 'https://hooks.example.com/x')", (text,),
                names=r"channels\.kind")
        refused(ac, "select monitoring.set_channel('ops', 'webhook', %s)", (text,), names=r"channels\.url")
        refused(ac, "select monitoring.set_channel('ops', 'edge_function', null, null, 'warning', %s)", (text,),
                names=r"channels\.function_name")
        refused(ac, "select monitoring.set_secret(%s, 'value')", (text,), names=r"set_secret: p_name")
        refused(ac, "update monitoring.jobs set job = %s where name = 'monitoring-evaluate'", (text,),
                names=r"jobs\.job")
        refused(ac, "update monitoring.retention_policies set target = %s where target = 'deliveries'", (text,),
                names=r"retention_policies\.target")
        refused(ac, "select monitoring.run_job(%s)", (text,), names=r"run_job: unknown job")
        refused(ac, "select monitoring.evaluate_rules(now(), array[%s])", (text,),
                names=r"evaluate_rules: unknown rule")
        refused(ac, "select monitoring.test_channel(%s)", (text,), names=r"test_channel: channel")
        assert checksum(ac) == before, "a refused call changed the database"
    # and nothing ran: the tables are all still there, with their rows
    assert conn.execute("select count(*) from monitoring.alert_rules").fetchone() == rules


def test_injected_label_values_arrive_verbatim_at_a_real_receiver(scratch_db: Callable[[], str]) -> None:
    """Through the whole pipeline (evaluate, outbox, pg_net stand-in, HTTP): a label value is data."""
    url = scratch_db()
    prepare(url)
    with psycopg.connect(url, autocommit=True) as c:
        labels = {f"l{i}": s for i, s in enumerate(INJECTIONS)}
        c.execute("update monitoring.alert_rules set labels = labels || %s::jsonb where name = 'high_error_rate'",
                  (json.dumps(labels),))
        rules = c.execute("select count(*) from monitoring.alert_rules").fetchone()
    with NetWorker(url), receiver([200]) as rec, psycopg.connect(url, autocommit=True) as c:
        c.execute("select monitoring.set_channel('ops', 'webhook', %s, 'signing-key-0123')", (rec.url,))
        c.execute("insert into public.whatsapp_error_logs (error_type, error_message) "
                  "select 'timeout', %s from generate_series(1, 25)", (INJECTIONS[0],))
        c.execute("select monitoring.evaluate_rules(now(), array['high_error_rate'], false)")
        pump(url, lambda: bool(rec.requests), timeout=20)
        assert len(rec.requests) == 1, "the alert with injected labels was not delivered"
        got = json.loads(rec.requests[0].body)["alerts"][0]["labels"]
        assert {k: got[k] for k in labels} == labels
        assert c.execute("select count(*) from monitoring.alert_rules").fetchone() == rules


# -- property: arbitrary text ------------------------------------------------------------------
@PROBE
@given(text=TEXT)
def test_any_label_value_is_stored_verbatim(conn: psycopg.Connection, text: str) -> None:
    out = attempt(conn, "update monitoring.alert_rules set labels = jsonb_build_object('team', %s::text) "
                        "where name = 'slow_queue' returning labels ->> 'team'", (text,))
    assert out.ok and out.rows == [(text,)]


@PROBE
@given(text=TEXT)
def test_any_label_name_is_refused_or_kept_apart_from_alertname(conn: psycopg.Connection, text: str) -> None:
    out = attempt(conn, "update monitoring.alert_rules set labels = jsonb_build_object(%s::text, 'v') "
                        "where name = 'slow_queue' returning labels", (text,))
    if out.ok:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", text) and text not in ("alertname", "severity")
        assert out.rows == [({text: "v"},)]
    else:
        assert out.sqlstate == "23514" and out.message.startswith("alert_rules.labels"), out.message


cron_field = st.one_of(st.just("*"), st.integers(0, 99).map(str),
                       st.from_regex(r"\A[0-9*a-z]{1,3}([-/,][0-9a-z]{1,3}){0,2}\Z"),
                       st.integers(0, 10**12).map(lambda n: f"*/{n}"), TEXT)


@PROBE
@given(fields=st.lists(cron_field, min_size=1, max_size=7), sep=st.sampled_from([" ", "  ", "\t"]))
def test_any_cron_expression_is_accepted_only_when_it_runs(conn: psycopg.Connection, fields: list[str],
                                                           sep: str) -> None:
    expr = sep.join(fields)
    out = attempt(conn, "update monitoring.alert_rules set schedule = %s where name = 'slow_queue'", (expr,))
    if out.ok:
        assert len(expr.split()) == 5
        # it runs on some day of a leap year (minute and hour fields always have a value once parsed)
        days = "0 0 " + " ".join(expr.split()[2:])
        runs = conn.execute("select exists (select 1 from monitoring._cron_times(%s, '2028-01-01 00:00+00', "
                            "'2028-12-31 23:59+00'))", (days,)).fetchone()
        assert runs == (True,), f"{expr!r} was accepted but never runs"
    else:
        assert out.sqlstate == "23514", out.message
        assert out.message.startswith("alert_rules.schedule"), out.message
        clear(out)


@PROBE
@given(url=st.one_of(TEXT, st.builds(lambda s, h, p, r: f"{s}://{h}{p}{r}",
                                     st.sampled_from(["https", "http", "HTTPS", "ftp", "javascript", "file"]),
                                     st.sampled_from(["127.0.0.1", "localhost", "[::1]", "hooks.example.com",
                                                      "user:pw@hooks.example.com", "10.0.0.1", ""]),
                                     st.sampled_from(["", ":443", ":0", ":65536", ":99999999", ":x"]),
                                     st.one_of(st.just("/hook"), TEXT))))
def test_any_channel_url_is_refused_or_stored_as_its_secret(conn: psycopg.Connection, url: str) -> None:
    out = attempt(conn, "select monitoring.set_channel('probe', 'webhook', %s)", (url,),
                  keep=lambda c: c.execute(read_secret_sql(c), ("alerting_probe_url",)).fetchall())
    if out.ok:
        assert out.kept == [(url,)]
        m = re.match(r"(?i)^(https?)://([^/?#\s]+)", url)
        assert m and "@" not in m.group(2)
        assert m.group(1).lower() == "https" or re.match(r"(?i)^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$", m.group(2))
        port = re.search(r":(\d+)$", m.group(2))
        assert port is None or 1 <= int(port.group(1)) <= 65535
    else:
        assert out.sqlstate == "23514" and out.message.startswith("channels.url"), out.message
        clear(out)


@PROBE
@given(matchers=st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                             lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
                             max_leaves=8)
       | st.lists(st.fixed_dictionaries({"name": st.sampled_from(["alertname", "severity", "team", ""]),
                                         "value": TEXT}, optional={"isRegex": st.booleans(), "isEqual": st.booleans()}),
                  min_size=1, max_size=3))
def test_any_silence_matchers_are_refused_or_never_break_matching(conn: psycopg.Connection, matchers: Any) -> None:
    def matching_works(c: psycopg.Connection) -> None:
        c.execute("select monitoring._silence_for('{\"alertname\": \"high_error_rate\", \"team\": \"\"}', now())")
        c.execute("select count(*) from monitoring.active_alerts")

    out = attempt(conn, "select monitoring.create_silence(%s::jsonb, '1 hour', 'probe')", (json.dumps(matchers),),
                  keep=matching_works)
    if not out.ok:
        assert out.sqlstate == "23514" and out.message.startswith("silences.matchers"), out.message
        clear(out)


@PROBE
@given(regex=TEXT | st.sampled_from(["(?i)high.*", "***=high", "***:high", "x)|(.*", "(", "a{2,1}", ".*", "high_.*",
                                     "(a)\\1", "[[:alpha:]]+"]))
def test_a_regex_silence_is_refused_unless_alerting_keeps_working_with_it(conn: psycopg.Connection,
                                                                         regex: str) -> None:
    """Regression: '(?i)x' is valid alone but not inside the anchors the matcher adds; it was
    accepted, and then every evaluation and the active_alerts view failed."""
    m = json.dumps([{"name": "alertname", "value": regex, "isRegex": True}])

    def still_works(c: psycopg.Connection) -> None:
        c.execute("select count(*) from monitoring.active_alerts").fetchone()
        res = c.execute("select monitoring.evaluate_rules(now(), array['high_error_rate'], false)").fetchone()
        assert res is not None and res[0]["errors"] == {}, res

    out = attempt(conn, "select monitoring.create_silence(%s::jsonb, '1 hour', 'probe')", (m,), keep=still_works)
    if not out.ok:
        assert out.sqlstate == "23514", out.message
        assert "is not a valid regular expression" in out.message
        clear(out)


def test_regex_matchers_that_break_the_anchors_are_refused(conn: psycopg.Connection) -> None:
    for regex in ("(?i)high.*", "***=high", "x)|(.*", "("):
        refused(conn, "select monitoring.create_silence(%s::jsonb, '1 hour', 'probe')",
                (json.dumps([{"name": "alertname", "value": regex, "isRegex": True}]),),
                names=r"silences\.matchers: .* is not a valid regular expression")


# -- property: arbitrary numbers and intervals -----------------------------------------------------
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                    st.decimals(allow_nan=True, allow_infinity=True), st.none())


def numeric_text(x: Any) -> str | None:
    """As Postgres numeric input reads it (it knows NaN, not -NaN or sNaN)."""
    if x is None:
        return None
    if isinstance(x, Decimal) and x.is_nan():
        return "NaN"
    return str(x)


def finite_positive(x: Any) -> bool:
    if x is None:
        return False
    if isinstance(x, Decimal):
        return x.is_finite() and x > 0
    return math.isfinite(x) and x > 0


@PROBE
@given(x=numbers)
def test_any_threshold_is_accepted_only_when_finite_and_positive(conn: psycopg.Connection, x: Any) -> None:
    out = attempt(conn, "update monitoring.alert_rules set threshold = %s::numeric where name = 'slow_queue'",
                  (numeric_text(x),))
    if finite_positive(x):
        assert out.ok, out.error
    else:
        assert not out.ok, f"threshold {x!r} accepted"
        assert out.sqlstate == "23514" and out.message.startswith("alert_rules.threshold"), out.message
        clear(out)


@PROBE
@given(x=numbers, column=st.sampled_from(["min_volume", "target"]))
def test_nan_and_infinity_are_refused_in_every_rule_number(conn: psycopg.Connection, x: Any, column: str) -> None:
    out = attempt(conn, sql.SQL("update monitoring.alert_rules set {} = %s::numeric where name = 'slow_queue'")
                  .format(sql.Identifier(column)), (numeric_text(x),))
    nonfinite = x is not None and not (x.is_finite() if isinstance(x, Decimal) else math.isfinite(x))
    if nonfinite or (column == "min_volume" and x is not None and x < 0):
        assert not out.ok, f"{column} {x!r} accepted"
        assert out.message.startswith(f"alert_rules.{column}"), out.message
        clear(out)
    else:
        assert out.ok, out.error


@PROBE
@given(x=st.floats(allow_nan=True, allow_infinity=True),
       column=st.sampled_from(["function_max_error_rate", "function_max_avg_ms", "slow_query_target_ms",
                               "slow_query_alert_ms", "function_max_errors"]))
def test_health_thresholds_refuse_nan_negative_and_out_of_range(conn: psycopg.Connection, x: float,
                                                                column: str) -> None:
    value = str(int(x)) if column == "function_max_errors" and math.isfinite(x) and abs(x) < 2**31 else str(x)
    out = attempt(conn, sql.SQL("update monitoring.health_thresholds set {} = %s::numeric").format(
        sql.Identifier(column)), (value,))
    v = float(value)
    valid = math.isfinite(v) and {  # the defaults: target 100 ms, alert 500 ms
        "function_max_errors": v >= 0, "function_max_error_rate": 0 <= v <= 100, "function_max_avg_ms": v > 0,
        "slow_query_target_ms": 0 < v <= 500, "slow_query_alert_ms": v >= 100}[column]
    if column == "function_max_errors" and not (math.isfinite(v) and v.is_integer() and abs(v) < 2**31):
        assert not out.ok  # not an integer: the type itself refuses before any check runs
        return
    assert out.ok == valid, f"{column} = {value}: {out.error}"
    if not out.ok:
        assert out.message.startswith("health_thresholds.slow_query") if column.startswith("slow_query") else \
            out.message.startswith(f"health_thresholds.{column}"), out.message
        clear(out)


interval_columns = [
    ("settings", "backoff_base", None), ("settings", "backoff_cap", None), ("settings", "response_grace", None),
    ("alert_rules", "repeat_interval", "name = 'slow_queue'"), ("alert_rules", "for_period", "name = 'slow_queue'"),
    ("alert_rules", "window", "name = 'slow_queue'"), ("retention_policies", "keep_for", "target = 'deliveries'"),
    ("rollup_settings", "minute_horizon", None),
    ("rollup_settings", "day_horizon", None), ("health_thresholds", "whatsapp_unhealthy_after", None),
    ("health_thresholds", "rollup_max_lag", None),
]


@PROBE
@given(col=st.sampled_from(interval_columns),
       secs=st.one_of(st.integers(-10**12, 10**12), st.sampled_from([0, 1, 59, 60, 86400, 366 * 86400, 10**11])))
def test_any_interval_is_refused_naming_the_field_or_works_in_the_jobs(conn: psycopg.Connection,
                                                                       col: tuple[str, str, str | None],
                                                                       secs: int) -> None:
    """An accepted interval must not break the arithmetic the jobs do with it (it used to overflow
    timestamps: a 1000000-year response_grace broke every reconcile run)."""
    table, column, where = col
    q = sql.SQL("update monitoring.{} set {} = make_interval(secs => %s){}").format(
        sql.Identifier(table), sql.Identifier(column), sql.SQL(" where " + where) if where else sql.SQL(""))

    def jobs_still_run(c: psycopg.Connection) -> None:
        # the arithmetic the jobs do: p_now + backoff/grace/repeat, p_now - keep_for/horizon/window
        c.execute(sql.SQL("select now() + x.{0}, now() - x.{0} from monitoring.{1} as x").format(
            sql.Identifier(column), sql.Identifier(table)))

    out = attempt(conn, q, (secs,), keep=jobs_still_run)
    if not out.ok:  # backoff_base may be refused as larger than backoff_cap: the message names both
        assert out.message.startswith(f"{table}.") and column in out.message, out.message
        clear(out)


def test_huge_intervals_that_broke_the_jobs_are_refused(conn: psycopg.Connection) -> None:
    for table, column, where in interval_columns:
        if column in ("window",):
            continue
        q = sql.SQL("update monitoring.{} set {} = interval '1000000 years'{}").format(
            sql.Identifier(table), sql.Identifier(column), sql.SQL(" where " + where) if where else sql.SQL(""))
        refused(conn, q, names=rf"{table}\.{column} must be")
    refused(conn, "select monitoring.create_silence('{\"alertname\": \"x\"}', interval '1000000 years', 'probe')",
            names=r"create_silence: p_duration")
    refused(conn, "insert into monitoring.silences (matchers, comment, ends_at) values "
                  "('{\"alertname\": \"x\"}', 'forever', 'infinity')", names=r"silences\.ends_at")


def test_backoff_never_overflows_even_at_the_hundredth_attempt(conn: psycopg.Connection) -> None:
    """max_attempts may be 100, but backoff_base * 2^(attempts-1) overflowed the interval type from
    about the 40th attempt, and the reconciler failed on every run from then on."""
    conn.execute("update monitoring.settings set max_attempts = 100, backoff_base = '30 seconds', "
                 "backoff_cap = '30 minutes'")
    did = conn.execute("update monitoring.deliveries set status = 'sending', attempts = 60, request_id = null, "
                       "last_attempt_at = now() - interval '1 hour', dead_at = null, next_attempt_at = null "
                       "where status = 'dead' returning id").fetchone()
    assert did is not None
    res = conn.execute("select monitoring.reconcile_deliveries(now())").fetchone()
    assert res is not None and res[0]["failed"] == 1
    row = conn.execute("select status, next_attempt_at - now() from monitoring.deliveries where id = %s",
                       (did[0],)).fetchone()
    assert row is not None and row[0] == "retrying" and row[1] <= timedelta(minutes=30, seconds=1)


# -- nulls in every not-null column of every configuration table -----------------------------------
def test_null_in_any_not_null_column_is_refused_naming_table_and_column(conn: psycopg.Connection) -> None:
    cols = conn.execute("""
        select c.relname, a.attname from pg_attribute as a join pg_class as c on c.oid = a.attrelid
        where c.relnamespace = 'monitoring'::regnamespace and c.relname = any(%s) and a.attnum > 0
          and not a.attisdropped and a.attnotnull order by 1, 2""", (CONFIG_TABLES,)).fetchall()
    assert len(cols) > 40
    for table, column in cols:
        out = attempt(conn, sql.SQL("update monitoring.{} set {} = null returning {}").format(
            sql.Identifier(table), sql.Identifier(column), sql.Identifier(column)))
        if out.ok:  # a trigger derives the value (updated_at, jobs.period): it must not end up null
            assert out.rows and all(r[0] is not None for r in out.rows), f"{table}.{column} stored null"
            continue
        assert not RAW.search(out.message), f"{table}.{column}: {out.message}"
        if out.sqlstate == "428C9":  # an identity column: Postgres' own refusal names it
            assert f'column "{column}" can only be updated to DEFAULT' in out.message
            continue
        assert table in out.message and column in out.message, f"{table}.{column}: {out.message}"


def test_the_singleton_rows_cannot_be_turned_into_a_second_row(conn: psycopg.Connection) -> None:
    for table in ("settings", "health_thresholds", "rollup_settings"):
        refused(conn, sql.SQL("update monitoring.{} set id = false").format(sql.Identifier(table)),
                names=rf"{table}\.id must be true")


# -- cron ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("expr", "needle"), [
    ("*/99999999999 * * * *", "has a number out of range"),
    ("0 0 31 2 *", "never runs"),
    ("0 0 31 2,4,6 *", "never runs"),
    ("30 seconds", "uses seconds"),
    ("@hourly", "must have 5 fields"),
    ("", "must not be empty"),
])
def test_cron_expressions_that_pg_cron_never_runs_or_cannot_parse_are_refused(conn: psycopg.Connection, expr: str,
                                                                                needle: str) -> None:
    refused(conn, "update monitoring.alert_rules set schedule = %s where name = 'slow_queue'", (expr,),
            names=rf"alert_rules\.schedule.*{needle}")
    refused(conn, "update monitoring.jobs set schedule = %s where name = 'monitoring-evaluate'", (expr,),
            names=rf"jobs\.schedule.*{needle}")


# -- p_now: null or infinite must not reach the state the jobs depend on ---------------------------
@pytest.mark.parametrize("when", ["infinity", "-infinity", None], ids=["infinity", "-infinity", "null"])
def test_p_now_null_or_infinite_is_refused_by_every_writer(conn: psycopg.Connection, when: str | None) -> None:
    """p_now => 'infinity' used to set rule_state.last_checked_at to infinity: no rule was ever due
    again, silently. The same for the rollup watermark and the delivery times."""
    names = r"p_now|must be a finite time|must not be null|p_now and p_full"
    for q in ("select monitoring.evaluate_rules(%s)",
              "select monitoring.evaluate_rules(%s, array['high_error_rate'], false)",
              "select monitoring.check_error_rate(50, %s)",
              "select monitoring.refresh_rollups(%s)",
              "select monitoring.test_channel('ops', %s)",
              "select monitoring.retry_dead_deliveries(null, null, %s)",
              "select monitoring.record_invocation('health', 200, 5, %s)",
              "select monitoring.run_retention(%s)",
              "select count(*) from monitoring.get_hourly_stats(%s)"):
        out = refused(conn, q, (when,), names=names)
        assert out.error is not None and out.error.diag.message_hint, q


def test_p_now_infinity_in_the_dispatcher_leaves_no_delivery_stuck(conn: psycopg.Connection) -> None:
    conn.execute("select monitoring.retry_dead_deliveries()")
    out = refused(conn, "select monitoring.dispatch_deliveries('infinity')", names=r"deliveries\.\w+ must be a finite")
    clear(out)
    conn.execute("update monitoring.deliveries set status = 'sending', last_attempt_at = now(), request_id = -1, "
                 "next_attempt_at = null where status = 'retrying'")
    refused(conn, "select monitoring.reconcile_deliveries('infinity')", names=r"deliveries\.\w+ must be a finite")


def test_bad_arguments_of_the_other_functions_are_refused_naming_the_argument(conn: psycopg.Connection) -> None:
    refused(conn, "select monitoring.record_invocation('health', 200, 'NaN')", names=r"record_invocation: duration_ms")
    refused(conn, "select monitoring.record_invocation('health', 99, 1)", names=r"record_invocation: status_code")
    refused(conn, "select monitoring.record_invocation(repeat('x', 300), 200, 1)",
            names=r"record_invocation: function_name")
    refused(conn, "select monitoring.check_error_rate(-1)", names=r"check_error_rate: threshold")
    refused(conn, "select monitoring.set_channel('ops', 'webhook', 'https://hooks.example.com/x', null, 'warning', "
                  "null, null)", names=r"channels\.enabled")
    refused(conn, "select monitoring.set_channel('ops', 'webhook', 'https://hooks.example.com:99999/x')",
            names=r"channels\.url has port")
    refused(conn, "select monitoring.set_channel('ops', 'webhook', 'https://hooks.example.com/x', '')",
            names=r"p_value for alerting_ops_signing")
    refused(conn, "select monitoring.evaluate_rules(now(), array[null])", names=r"evaluate_rules: unknown rule")
    refused(conn, "update monitoring.alert_rules set runbook = array['Check it', null] where name = 'slow_queue'",
            names=r"alert_rules\.runbook")
    refused(conn, "update monitoring.alert_rules set labels = '{\"alertname\": \"other\"}' where name = 'slow_queue'",
            names=r"alert_rules\.labels")
    refused(conn, "update monitoring.settings set service_name = ''", names=r"settings\.service_name")
    refused(conn, "update monitoring.jobs set scheduled_at = 'infinity'", names=r"jobs\.scheduled_at must be a finite")
    refused(conn, "update monitoring.settings set project_url_secret = 'x''; drop'",
            names=r"settings\.project_url_secret")
    # a value the type itself cannot hold is refused by Postgres before any check runs
    out = attempt(conn, "update monitoring.settings set max_attempts = 99999999999")
    assert not out.ok and out.sqlstate == "22003"


# -- the CLI ---------------------------------------------------------------------------------------
CLI_CASES = [
    (["configure", "slow_queue", "--threshold", "nan"], "--threshold must be a positive number"),
    (["configure", "slow_queue", "--threshold", "1e400"], "--threshold must be a positive number"),
    (["configure", "slow_queue", "--schedule", "*/\u00b2 * * * *"], "--schedule: step"),
    (["configure", "slow_queue", "--schedule", "0 0 31 2 *"], "alert_rules.schedule '0 0 31 2 *' never runs"),
    (["configure", "slow_queue", "--repeat", "999999d"], "alert_rules.repeat_interval must be"),
    (["configure", "x'); drop table monitoring.alert_rules; --", "--threshold", "5"], "does not exist"),
    (["channel", "add", "ops", "--kind", "webhook", "--url", "http://[::1"], "--url 'http://[::1' is not a valid URL"),
    (["channel", "add", "Ops!", "--kind", "webhook", "--url", "https://hooks.example.com/x"], "channels.name"),
    (["silence", "add", "--match", "alertname=~(?i)high.*", "--duration", "1h", "--comment", "x"],
     "is not a valid regular expression"),
    (["silence", "add", "--match", "alertname=x", "--duration", "forever", "--comment", "x"],
     "--duration 'forever' is not a duration"),
    (["schedule", "--mode", "edge", "--project-url", "http://evil.example.com"], "--project-url must use https"),
]


def test_cli_refuses_bad_values_with_one_line_naming_the_field(run_cli: Callable[..., subprocess.CompletedProcess[str]],
                                                               bad_db: str) -> None:
    with psycopg.connect(bad_db, autocommit=True) as c:
        before = checksum(c)
    for args, needle in CLI_CASES:
        res = run_cli(*args, "--db-url", bad_db)
        err = res.stderr.strip()
        assert res.returncode != 0, f"{args} exited 0: {res.stdout} {err}"
        assert "Traceback" not in err and "Traceback" not in res.stdout, f"{args}: {err}"
        first = err.splitlines()[0] if err else ""
        assert needle in first, f"{args}: expected {needle!r} in the first line, got {err!r}"
    with psycopg.connect(bad_db, autocommit=True) as c:
        assert checksum(c) == before, "a refused CLI command changed the database"
