"""Alert channels: add, list, remove, and a real test delivery whose answer is shown."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from pydeploy import alertmanager, validate
from pydeploy.db import friendly_errors, one, rows
from pydeploy.errors import ConfigError, PydeployError


@dataclass
class ChannelSpec:
    name: str
    kind: str
    url: str | None = None
    signing_secret: str | None = None
    min_severity: str = "warning"
    function_name: str | None = None
    enabled: bool = True

    def check(self) -> None:
        validate.channel_kind(self.kind)
        validate.severity(self.min_severity)
        if self.kind == "edge_function":
            if not self.function_name:
                raise ConfigError("--function is required for an edge_function channel",
                                  "name the Edge Function, e.g. --function alert-relay")
        elif not self.url:
            raise ConfigError(f"--url is required for a {self.kind} channel",
                              "give the receiver's URL, e.g. --url https://hooks.slack.com/services/…")
        if self.url and self.kind == "alertmanager":
            alertmanager.url(self.url)
        elif self.url:
            validate.url(self.url, "--url")
        if self.signing_secret is not None:
            validate.secret(self.signing_secret, "--signing-secret")


def add(conn: psycopg.Connection, spec: ChannelSpec) -> None:
    spec.check()
    with friendly_errors(f"channel {spec.name}"), conn.transaction():
        conn.execute(
            "select monitoring.set_channel(p_name => %s, p_kind => %s, p_url => %s, p_signing_secret => %s,"
            " p_min_severity => %s, p_function_name => %s, p_enabled => %s)",
            (spec.name, spec.kind, spec.url, spec.signing_secret, spec.min_severity, spec.function_name,
             spec.enabled),
        )


def listing(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Channels without their secrets: only whether each secret resolves."""
    with friendly_errors("channel list"):
        return rows(conn, """
            select c.name, c.kind, c.enabled, c.min_severity, c.function_name,
                   c.url_secret is not null as has_url, c.signing_secret is not null as signed,
                   (select count(*) from monitoring.deliveries d
                     where d.channel = c.name and d.status = 'dead') as dead_deliveries
            from monitoring.channels c order by c.name""")


def remove(conn: psycopg.Connection, name: str) -> None:
    with friendly_errors(f"channel remove {name}"), conn.transaction():
        n = one(conn, "with d as (delete from monitoring.channels where name = %s returning 1) "
                      "select count(*) from d", (name,))
        if not n:
            raise ConfigError(f"channel '{name}' does not exist", "see `pydeploy channel list`")


def test(conn: psycopg.Connection, name: str, timeout: float = 30) -> dict[str, Any]:
    """Queue a test notification, send it now, and wait for the receiver's answer."""
    with friendly_errors(f"channel test {name}"):
        with conn.transaction():
            delivery_id = one(conn, "select monitoring.test_channel(%s)", (name,))
        with conn.transaction():
            conn.execute("select monitoring.dispatch_deliveries()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with conn.transaction():
                conn.execute("select monitoring.reconcile_deliveries()")
            got = rows(conn, """
                select d.id, d.status, d.attempts, d.last_status_code, d.last_error, r.content,
                       r.timed_out, r.error_msg
                from monitoring.deliveries d left join net._http_response r on r.id = d.request_id
                where d.id = %s""", (delivery_id,))
            if got and (got[0]["status"] in ("delivered", "dead", "retrying")):
                return got[0]
            time.sleep(0.3)
    raise PydeployError(f"no answer for the test delivery to '{name}' within {timeout:.0f} s",
                        "is pg_net's worker running? On the local engine run `pydeploy up`.")
