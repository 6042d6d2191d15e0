"""Small helpers over psycopg: database errors as messages for humans."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pydeploy.errors import ConfigError, PydeployError


@contextmanager
def friendly_errors(action: str) -> Iterator[None]:
    """Turn a Postgres error raised by our validation into one message with its hint."""
    try:
        yield
    except psycopg.errors.UndefinedFunction as exc:
        raise PydeployError(f"{action}: the monitoring package is not installed in this database "
                            f"({(exc.diag.message_primary or '').strip()})",
                            "apply the migrations: pydeploy migrate (or supabase db push)") from exc
    except psycopg.errors.UndefinedTable as exc:
        raise PydeployError(f"{action}: {(exc.diag.message_primary or '').strip()}",
                            "apply the migrations: pydeploy migrate (or supabase db push)") from exc
    except psycopg.Error as exc:
        diag = exc.diag
        raise ConfigError(f"{action}: {(diag.message_primary or str(exc)).strip()}", diag.message_hint) from exc


Params = tuple[Any, ...] | dict[str, Any] | None


def rows(conn: psycopg.Connection, sql: str, params: Params = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def one(conn: psycopg.Connection, sql: str, params: Params = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        return row[0] if row else None
