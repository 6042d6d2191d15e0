"""Validation stated once (issue 14): every limit of a configuration table is one row of
monitoring._limits, enforced by one generic trigger, and no CHECK constraint states it again.

The boundaries are probed from the catalog, so a limit added later is probed too: the bound itself
is accepted (or refused, when exclusive), one step beyond it is refused with a message naming
table.column and the row's hint, and a refusal changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from pydeploy.engines import LocalState
from tests.databases import migrated_database

# a row to write per table (the one-row tables have no key to name)
ROWS = {"alert_rules": "name = 'slow_queue'", "channels": "name = 'ops'", "retention_policies": "target = 'deliveries'",
        "digest_settings": "kind = 'daily'"}


@pytest.fixture(scope="module")
def limits_db(engine_state: LocalState) -> Iterator[str]:
    with migrated_database(engine_state, "limits") as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("select monitoring.set_channel('ops', 'webhook', 'http://127.0.0.1:9/hook')")
        yield url


@pytest.fixture
def conn(limits_db: str) -> Iterator[psycopg.Connection]:
    c = psycopg.connect(limits_db, autocommit=False)
    try:
        yield c
    finally:
        c.rollback()
        c.close()


def limits(c: psycopg.Connection) -> list[tuple[str, str, str | None, bool, str | None, list[str] | None, str, str]]:
    return c.execute("""
        select l.table_name, l.column_name, l.min_value, l.min_exclusive, l.max_value, l.allowed, l.hint,
               format_type(a.atttypid, null)
        from monitoring._limits as l
        join pg_attribute as a on a.attrelid = ('monitoring.' || l.table_name)::regclass and a.attname = l.column_name
        order by 1, 2""").fetchall()


def write(c: psycopg.Connection, table: str, column: str, value: str | None, type_name: str) -> psycopg.Error | None:
    """Set one column of the probe row in a savepoint that is rolled back; the error, if any."""
    where = sql.SQL(" where " + ROWS[table]) if table in ROWS else sql.SQL("")
    q = sql.SQL("update monitoring.{} set {} = %s::{}{}").format(
        sql.Identifier(table), sql.Identifier(column), sql.SQL(type_name), where)
    c.execute("savepoint probe")
    try:
        c.execute(q, (value,))
        return None
    except psycopg.Error as exc:
        return exc
    finally:
        c.execute("rollback to savepoint probe")


def beyond(c: psycopg.Connection, value: str, type_name: str, up: bool) -> str:
    """One step past a bound: a microsecond for intervals, 1 for integers, 0.001 for numerics."""
    if type_name == "interval":
        op = "+" if up else "-"
        row = c.execute(f"select (%s::interval {op} interval '1 microsecond')::text", (value,)).fetchone()
        assert row is not None
        return str(row[0])
    step = Decimal(1) if type_name == "integer" else Decimal("0.001")
    return str(Decimal(value) + (step if up else -step))


def test_every_table_with_limits_runs_the_generic_validator_first(conn: psycopg.Connection) -> None:
    tables = {r[0] for r in conn.execute("select distinct table_name from monitoring._limits").fetchall()}
    assert tables == {"alert_rules", "settings", "channels", "retention_policies", "health_thresholds",
                      "rollup_settings", "ingest_settings", "log_retention", "digest_settings"}
    for table in tables:
        triggers = [r[0] for r in conn.execute(
            "select tgname from pg_trigger where tgrelid = ('monitoring.' || %s)::regclass and not tgisinternal "
            "and tgtype & 2 = 2 order by tgname", (table,)).fetchall()]  # before triggers, in firing order
        calls = conn.execute(
            "select tgfoid::regproc::text from pg_trigger where tgrelid = ('monitoring.' || %s)::regclass "
            "and tgname = %s", (table, f"{table}_limits")).fetchone()
        assert calls == ("monitoring._validate_limits",), f"{table} has no {table}_limits trigger"
        assert triggers[0] == f"{table}_limits", f"{table}: {triggers}"


def test_no_check_constraint_states_a_limit_again(conn: psycopg.Connection) -> None:
    twice = conn.execute("""
        select con.conname, pg_get_constraintdef(con.oid)
        from monitoring._limits as l
        join pg_constraint as con on con.conrelid = ('monitoring.' || l.table_name)::regclass and con.contype = 'c'
        join pg_attribute as a on a.attrelid = con.conrelid and a.attnum = any(con.conkey)
        where a.attname = l.column_name""").fetchall()
    assert twice == []
    # nor any CHECK on the configuration tables: their rules live in _limits or the validators
    left = conn.execute("""
        select conrelid::regclass::text, conname from pg_constraint
        where contype = 'c' and conrelid = any(array['monitoring.settings', 'monitoring.alert_rules',
          'monitoring.channels', 'monitoring.silences', 'monitoring.retention_policies',
          'monitoring.health_thresholds', 'monitoring.rollup_settings']::regclass[])""").fetchall()
    assert left == []


def test_each_bound_is_exact_and_a_step_beyond_is_refused_naming_the_field(conn: psycopg.Connection) -> None:
    probed = 0
    for table, column, lo, lo_excl, hi, allowed, hint, type_name in limits(conn):
        cases: list[tuple[str, bool]] = []  # (value, accepted)
        if allowed:
            cases += [(v, True) for v in allowed] + [("not-" + allowed[0], False)]
        if lo is not None:
            cases += [(lo, not lo_excl), (beyond(conn, lo, type_name, up=False), False)]
        if hi is not None:
            cases += [(hi, True), (beyond(conn, hi, type_name, up=True), False)]
        if type_name == "numeric":
            cases += [("NaN", False), ("Infinity", False), ("-Infinity", False)]
        for value, accepted in cases:
            err = write(conn, table, column, value, type_name)
            own = err is not None and (err.diag.message_primary or "").startswith(f"{table}.{column} must be ")
            if accepted:
                # another field's rule may refuse it (backoff_cap >= backoff_base), never this limit
                assert not own, f"{table}.{column} = {value}: {err}"
            else:
                assert own, f"{table}.{column} = {value} not refused by its limit: {err}"
                assert err is not None and err.sqlstate == "23514" and err.diag.message_hint == hint
                assert re.search(r"\(got .+\)$", err.diag.message_primary or ""), err
            probed += 1
    assert probed > 80


def test_a_limit_is_added_or_changed_with_a_row_and_nothing_else(conn: psycopg.Connection) -> None:
    conn.execute("update monitoring._limits set max_value = '50' where table_name = 'settings' "
                 "and column_name = 'dispatch_batch'")
    conn.execute("insert into monitoring._limits (table_name, column_name, allowed, hint) values "
                 "('alert_rules', 'unit', '{%,count,ms}', 'use %, count or ms')")
    before = conn.execute("select dispatch_batch from monitoring.settings").fetchone()
    err = write(conn, "settings", "dispatch_batch", "60", "integer")
    assert err is not None and err.diag.message_primary == "settings.dispatch_batch must be between 1 and 50 (got 60)"
    assert err.diag.message_hint == "use a count such as 100"
    assert conn.execute("select dispatch_batch from monitoring.settings").fetchone() == before
    err = write(conn, "alert_rules", "unit", "hours", "text")
    assert err is not None and err.diag.message_primary == "alert_rules.unit must be one of %, count, ms (got 'hours')"
    assert write(conn, "alert_rules", "unit", "ms", "text") is None
    assert write(conn, "alert_rules", "unit", None, "text") is None  # unit is nullable


@pytest.mark.parametrize(("row", "needle"), [
    ("('settings', 'max_atempts', '1', null, null, 'x')", "monitoring.settings has no column max_atempts"),
    ("('alerts_rules', 'threshold', '1', null, null, 'x')", "monitoring.alerts_rules has no column threshold"),
    ("('settings', 'backoff_base', '1 dya', null, null, 'x')", 'invalid input syntax for type interval: "1 dya"'),
    ("('settings', 'service_name', '1', null, null, 'x')", "bounds are for numeric, integer or interval columns"),
    ("('settings', 'max_attempts', null, null, '{1,2}', 'x')", "allowed values are for text columns"),
])
def test_a_mistyped_limit_fails_where_it_is_written(conn: psycopg.Connection, row: str, needle: str) -> None:
    conn.execute("savepoint probe")
    with pytest.raises(psycopg.Error, match=re.escape(needle)):
        conn.execute("insert into monitoring._limits (table_name, column_name, min_value, max_value, allowed, hint) "
                     f"values {row} on conflict (table_name, column_name) do update set min_value = excluded.min_value,"
                     " max_value = excluded.max_value, allowed = excluded.allowed")
    conn.execute("rollback to savepoint probe")
