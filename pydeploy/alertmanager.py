"""The alertmanager channel kind: checks done before anything is written, and its options.

Alertmanager usually listens on an internal network without TLS, so its URL may be plain http to
any host (other channel kinds need https outside loopback). Credentials for an Alertmanager behind
a proxy go to a secret (`monitoring.set_channel_auth`), never into the URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from pydeploy.db import friendly_errors
from pydeploy.errors import ConfigError

AUTH_SCHEMES = ("basic", "bearer")
CREDENTIALS_ENV = "PYDEPLOY_CHANNEL_CREDENTIALS"
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def url(value: str, field: str = "--url") -> str:
    """An http(s) base URL of Alertmanager: no credentials, query or fragment."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise ConfigError(f"{field} '{value}' is not a valid URL ({exc})",
                          "give Alertmanager's base URL, such as http://alertmanager:9093") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{field} '{value}' is not an http(s) URL (an alertmanager channel posts to "
                          "<url>/api/v2/alerts)", "give Alertmanager's base URL, such as http://alertmanager:9093")
    if parts.username or parts.password:
        raise ConfigError(f"{field} must not carry credentials before the host",
                          f"use --auth-scheme basic with ${CREDENTIALS_ENV}=user:password")
    if parts.query or parts.fragment:
        raise ConfigError(f"{field} must not have a query or fragment: /api/v2/alerts is appended to it",
                          "give Alertmanager's base URL, such as http://alertmanager:9093")
    return value.strip()


def label_name(name: str) -> str:
    """The Prometheus label name a label is sent under (as monitoring._prometheus_label_name maps it)."""
    mapped = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + mapped if mapped[:1].isdigit() else mapped


def is_label_name(name: str) -> bool:
    return bool(_LABEL.match(name))


@dataclass
class Auth:
    scheme: str
    credentials: str

    def check(self) -> None:
        if self.scheme not in AUTH_SCHEMES:
            raise ConfigError(f"--auth-scheme '{self.scheme}' is not basic or bearer",
                              "use --auth-scheme basic or --auth-scheme bearer")
        if not self.credentials or any(c.isspace() for c in self.credentials):
            raise ConfigError(f"${CREDENTIALS_ENV} must hold the credentials for --auth-scheme {self.scheme} "
                              "(no white space)",
                              f"export {CREDENTIALS_ENV}=" + ("user:password" if self.scheme == "basic" else "<token>"))
        if self.scheme == "basic" and ":" not in self.credentials[1:]:
            raise ConfigError(f"${CREDENTIALS_ENV} must be user:password for --auth-scheme basic",
                              f"export {CREDENTIALS_ENV}=alertmanager:secret")


def set_auth(conn: psycopg.Connection, channel: str, auth: Auth | None) -> None:
    """Store (or with None remove) the channel's Authorization header as a secret."""
    with friendly_errors(f"channel {channel}"), conn.transaction():
        conn.execute("select monitoring.set_channel_auth(%s, %s, %s)",
                     (channel, auth.scheme if auth else None, auth.credentials if auth else None))


def set_resend(conn: psycopg.Connection, channel: str, minutes: int) -> None:
    if not 1 <= minutes <= 59:
        raise ConfigError(f"--resend-interval must be 1-59 minutes (got {minutes})",
                          "use 1 (the default), shorter than Alertmanager's resolve_timeout (5m by default)")
    with friendly_errors(f"channel {channel}"), conn.transaction():
        conn.execute("update monitoring.channels set resend_interval = make_interval(mins => %s) where name = %s",
                     (minutes, channel))
