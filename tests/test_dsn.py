"""pydeploy.dsn: one way to say "the same connection, another database", and a password never shown."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from pydeploy import dsn
from pydeploy.errors import ConfigError


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://postgres:postgres@127.0.0.1:5432/postgres",
     "postgresql://postgres:postgres@127.0.0.1:5432/bench_plain"),
    # a query string stays a query string (the old `rsplit("/")` put the name after it)
    ("postgresql://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable",
     "postgresql://postgres:postgres@127.0.0.1:5432/bench_plain?sslmode=disable"),
    ("postgres://u@db.example.com/postgres?sslmode=require&application_name=a%2Fb",
     "postgres://u@db.example.com/bench_plain?sslmode=require&application_name=a%2Fb"),
    # a password with special characters stays percent-encoded exactly as given
    ("postgresql://postgres:p%40ss%2Fw%3Ard%3F%23@127.0.0.1:6543/postgres",
     "postgresql://postgres:p%40ss%2Fw%3Ard%3F%23@127.0.0.1:6543/bench_plain"),
    # no database, no path at all
    ("postgresql://postgres@127.0.0.1:5432", "postgresql://postgres@127.0.0.1:5432/bench_plain"),
    ("postgresql://postgres@127.0.0.1:5432/", "postgresql://postgres@127.0.0.1:5432/bench_plain"),
    # unix-socket hosts: percent-encoded in the host part, or as ?host=
    ("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/postgres",
     "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/bench_plain"),
    ("postgresql:///postgres?host=/var/run/postgresql&port=5433",
     "postgresql:///bench_plain?host=/var/run/postgresql&port=5433"),
    # a dbname in the query would win over the path: it is replaced too
    ("postgresql://u@h/postgres?dbname=postgres&sslmode=disable",
     "postgresql://u@h/bench_plain?dbname=bench_plain&sslmode=disable"),
    # IPv6 literal host
    ("postgresql://u:pw@[::1]:5432/postgres", "postgresql://u:pw@[::1]:5432/bench_plain"),
])
def test_with_database_keeps_everything_but_the_name(given: str, expected: str) -> None:
    got = dsn.with_database(given, "bench_plain")
    assert got == expected
    before, after = conninfo_to_dict(given), conninfo_to_dict(got)
    assert after.pop("dbname") == "bench_plain"
    before.pop("dbname", None)
    assert after == before, "only the database changes"


def test_with_database_quotes_a_name_that_needs_it() -> None:
    got = dsn.with_database("postgresql://u@h:5432/postgres", "odd name/é")
    assert conninfo_to_dict(got)["dbname"] == "odd name/é"


def test_with_database_keyword_dsn_stays_keyword() -> None:
    got = dsn.with_database("host=/var/run/postgresql port=5433 user=postgres password='a b\\'c' dbname=postgres",
                            "scratch_1")
    assert "://" not in got
    assert conninfo_to_dict(got) == {"host": "/var/run/postgresql", "port": "5433", "user": "postgres",
                                     "password": "a b'c", "dbname": "scratch_1"}


def test_with_database_refuses_an_empty_name() -> None:
    with pytest.raises(ConfigError, match="database name is empty"):
        dsn.with_database("postgresql://u@h/postgres", "")


@pytest.mark.parametrize(("given", "shown"), [
    ("postgresql://postgres:s3cr%40t@127.0.0.1:5432/postgres?sslmode=disable",
     "postgresql://postgres:***@127.0.0.1:5432/postgres?sslmode=disable"),
    ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
    ("this is not a dsn", "<unparsable DSN>"),
])
def test_redact_hides_the_password(given: str, shown: str) -> None:
    assert dsn.redact(given) == shown


def test_redact_hides_the_password_of_a_keyword_dsn() -> None:
    shown = dsn.redact("host=h password=s3cret dbname=d")
    assert "s3cret" not in shown
    assert sorted(shown.split()) == ["dbname=d", "host=h", "password=***"]
