"""monitoring.dashboard() and the silence functions behind the dashboard, in one transaction each
(now() is fixed in a transaction, so the document and the views agree exactly)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

SEED_ERRORS = [
    ("invalid_number", "invalid number +55 11 99999-8888 for order 1234"),
    ("rate_limited", "too many messages to 5511977776666"),
]


def doc(conn: psycopg.Connection, window: str = "24h", limit: int = 50) -> dict[str, Any]:
    return conn.execute("select monitoring.dashboard(%s, %s)", (window, limit)).fetchone()[0]


def view(conn: psycopg.Connection, name: str) -> list[dict[str, Any]]:
    return [r[0] for r in conn.execute(f"select to_jsonb(v) from monitoring.{name} as v").fetchall()]


def test_the_document_carries_the_views_rows_exactly(conn: psycopg.Connection) -> None:
    conn.execute("insert into public.whatsapp_notifications (phone_number, status, created_at) "
                 "select '+5511999990000', s, now() - interval '30 minutes' "
                 "from unnest(array['sent', 'sent', 'failed', 'pending']) as s")
    conn.execute("select monitoring.refresh_rollups(p_full => true)")
    d = doc(conn)
    for key, name in (("delivery", "delivery_stats"), ("queue", "queue_stats"), ("latency", "delivery_latency"),
                      ("functions", "function_stats"), ("sessions", "connection_status"),
                      ("alerts", "active_alerts")):
        assert d[key] == view(conn, name), key
    assert d["health"] == conn.execute("select monitoring.health()").fetchone()[0]
    assert sorted(r["window_name"] for r in d["delivery"]) == ["1h", "24h", "7d"]
    day = next(r for r in d["delivery"] if r["window_name"] == "24h")
    assert day["total"] >= 4 and day["pending"] >= 1
    hours = view(conn, "hourly_stats")
    assert d["hourly"] == sorted(hours, key=lambda r: r["hour"])[-24:]
    assert len(doc(conn, "7d")["hourly"]) == 168
    assert d["window"] == "24h" and d["limit"] == 50 and d["buildMs"] >= 0


def test_a_column_added_to_a_view_flows_into_the_document(conn: psycopg.Connection) -> None:
    conn.execute("create or replace view monitoring.delivery_stats as "
                 "select *, 12.5::numeric as read_rate from monitoring.get_delivery_stats()")
    assert all(r["read_rate"] == 12.5 for r in doc(conn)["delivery"])


def test_recent_errors_are_the_newest_with_phone_numbers_masked(conn: psycopg.Connection) -> None:
    conn.cursor().executemany("insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
                     "values (%s, %s, now() + interval '1 second')", SEED_ERRORS)
    errors = doc(conn, limit=2)["recentErrors"]
    assert len(errors) == 2
    text = json.dumps(errors)
    assert "+55*******8888" in text and "*********6666" in text
    assert "99999" not in text and "77776666" not in text
    assert "order 1234" in text  # short numbers are not phone numbers


@pytest.mark.parametrize(("args", "names"), [
    (("30d", 50), "p_window"), ((None, 50), "p_window"), (("24h", 0), "p_limit"), (("24h", 201), "p_limit"),
    (("24h", None), "p_limit"),
])
def test_bad_parameters_are_refused_naming_them(conn: psycopg.Connection, args: tuple[Any, ...], names: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("select monitoring.dashboard(%s, %s)", args)
    assert names in exc.value.diag.message_primary and exc.value.diag.message_hint


@pytest.mark.parametrize(("matchers", "duration", "comment", "names"), [
    ({}, "2h", "x", "p_matchers"), ([{"name": "a", "value": "b"}], "2h", "x", "p_matchers"),
    ({"bad name": "x"}, "2h", "x", "p_matchers"), ({"alertname": 3}, "2h", "x", "p_matchers"),
    ({"alertname": "x" * 201}, "2h", "x", "p_matchers"), ({"alertname": "x"}, "0h", "x", "p_duration"),
    ({"alertname": "x"}, "31d", "x", "p_duration"), ({"alertname": "x"}, "2 hours", "x", "p_duration"),
    ({"alertname": "x"}, "2h", " ", "p_comment"), ({"alertname": "x"}, "2h", "x" * 501, "p_comment"),
])
def test_bad_silences_are_refused_naming_the_field_and_change_nothing(conn: psycopg.Connection, matchers: Any,
                                                                      duration: str, comment: str, names: str) -> None:
    before = conn.execute("select count(*) from monitoring.silences").fetchone()
    conn.execute("savepoint s")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("select monitoring.create_silence_as('ops@example.com', %s::jsonb, %s, %s)",
                     (json.dumps(matchers), duration, comment))
    conn.execute("rollback to savepoint s")
    assert names in exc.value.diag.message_primary and exc.value.diag.message_hint
    assert conn.execute("select count(*) from monitoring.silences").fetchone() == before


def test_silences_record_who_made_and_who_expired_them(conn: psycopg.Connection) -> None:
    s = conn.execute("select monitoring.create_silence_as('ana@example.com (u1)', "
                     "'{\"alertname\": \"low_delivery_rate\"}', '90m', ' carrier maintenance ')").fetchone()[0]
    assert s["created_by"] == "ana@example.com (u1)" and s["comment"] == "carrier maintenance"
    assert s["matchers"] == [{"name": "alertname", "value": "low_delivery_rate", "isRegex": False, "isEqual": True}]
    listed = next(x for x in doc(conn)["silences"] if x["id"] == s["id"])
    assert listed["state"] == "active"
    # made an hour ago (now() is fixed in this transaction)
    conn.execute("update monitoring.silences set starts_at = starts_at - interval '1 hour', "
                 "ends_at = ends_at - interval '1 hour' where id = %s", (s["id"],))
    e = conn.execute("select monitoring.expire_silence_as('bo@example.com (u2)', %s)", (s["id"],)).fetchone()[0]
    assert e["expired_by"] == "bo@example.com (u2)" and e["expired_at"] is not None
    assert next(x for x in doc(conn)["silences"] if x["id"] == s["id"])["state"] == "expired"
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("select monitoring.expire_silence_as('bo@example.com (u2)', %s)", (s["id"],))


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_anon_and_authenticated_cannot_call_the_dashboard_functions(conn: psycopg.Connection, role: str) -> None:
    for call in ("monitoring.dashboard()", "monitoring.create_silence_as('x', '{\"a\": \"b\"}', '1h', 'c')",
                 "monitoring.expire_silence_as('x', 1)", "monitoring._mask_phones('1')"):
        conn.execute("savepoint s")
        conn.execute(f"set local role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select {call}")
        conn.execute("rollback to savepoint s")
