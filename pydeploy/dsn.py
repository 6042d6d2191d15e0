"""Connection strings: check one, point it at another database, hide its password, connect.

Pure string work plus `connect`; which database a command talks to (flag, environment, running
engine) is pydeploy.engines.target's business.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pydeploy.errors import ConfigError


def validate(dsn: str, field: str = "--db-url") -> str:
    """Reject a DSN that cannot work, naming the field and the fix; return it unchanged."""
    dsn = dsn.strip()
    if not dsn:
        raise ConfigError(f"{field} is empty", "give a URL such as postgresql://user:pass@host:5432/postgres")
    if is_url(dsn):
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


def is_url(dsn: str) -> bool:
    """A URL (postgresql://…) rather than a keyword string (host=… dbname=…)."""
    return "://" in dsn


def with_database(dsn: str, name: str) -> str:
    """The same connection (user, password, host, port, options) to the database `name`.

    Keeps the form it was given in: a URL stays a URL (its query string, a percent-encoded
    password or unix-socket host untouched; a `dbname` in the query is replaced too), a keyword
    string stays a keyword string.
    """
    if not name:
        raise ConfigError("the database name is empty", "give the name of a database of the cluster")
    if not is_url(dsn):
        return make_conninfo(dsn, dbname=name)
    parts = urlsplit(dsn)
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k == "dbname" for k, _ in pairs):
        query = urlencode([(k, name if k == "dbname" else v) for k, v in pairs], quote_via=quote, safe="/")
    # by hand, not urlunsplit: that drops the `//` of an empty host (postgresql:///db?host=/socket)
    return (f"{parts.scheme}://{parts.netloc}/{quote(name, safe='')}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


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
    if is_url(dsn):
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
