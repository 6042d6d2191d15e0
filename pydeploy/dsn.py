"""Which database a command talks to, and a check that the DSN can be used at all."""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pydeploy.errors import ConfigError
from pydeploy.paths import state_dir

ENV_VAR = "SUPABASE_DB_URL"


def validate(dsn: str, field: str = "--db-url") -> str:
    """Reject a DSN that cannot work, naming the field and the fix; return it unchanged."""
    dsn = dsn.strip()
    if not dsn:
        raise ConfigError(f"{field} is empty", "give a URL such as postgresql://user:pass@host:5432/postgres")
    if "://" in dsn:
        scheme = urlsplit(dsn).scheme
        if scheme not in ("postgres", "postgresql"):
            raise ConfigError(
                f"{field} has scheme '{scheme}', not a Postgres URL",
                "start it with postgresql:// (for example postgresql://postgres:postgres@127.0.0.1:54322/postgres)",
            )
        parts = urlsplit(dsn)
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ConfigError(f"{field} has an invalid port: {exc}", "use a number from 1 to 65535") from exc
        if not parts.hostname:
            raise ConfigError(f"{field} names no host", "add the host, e.g. postgresql://user@127.0.0.1:5432/postgres")
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"{field} is not a valid connection string: {exc}",
                          "use a URL such as postgresql://user:pass@host:5432/postgres") from exc
    return dsn


def engine_state() -> dict[str, object] | None:
    """The running local engine's state (engine.json), or None when there is none."""
    path = state_dir() / "engine.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def resolve(db_url: str | None) -> str:
    """The DSN from --db-url, then $SUPABASE_DB_URL, then the running local engine."""
    if db_url:
        return validate(db_url, "--db-url")
    env = os.environ.get(ENV_VAR)
    if env:
        return validate(env, ENV_VAR)
    state = engine_state()
    if state and state.get("running") and state.get("db_url"):
        return str(state["db_url"])
    raise ConfigError(
        "no database to talk to: no --db-url, no $SUPABASE_DB_URL and no local engine running",
        "start one with `pydeploy up`, or pass --db-url postgresql://…",
    )


def connect(dsn: str, *, autocommit: bool = True, app: str = "pydeploy") -> psycopg.Connection:
    """Open a connection, turning a failure into one clear message."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit, application_name=app, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ConfigError(
            f"cannot connect to {redact(dsn)}: {first}",
            "check host, port, user and password; for a local engine run `pydeploy up`",
        ) from exc


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***, for messages and logs."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return parts._replace(netloc=netloc).geturl()
        return dsn
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if "password" in d:
        d["password"] = "***"
    return " ".join(f"{k}={v}" for k, v in d.items())
