"""Digests: the spec's daily, weekly and monthly maintenance checklists, built by monitoring.digest()."""

from __future__ import annotations

from typing import Any

import psycopg
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from pydeploy.db import one, rows
from pydeploy.errors import ConfigError

KINDS = ("daily", "weekly", "monthly")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"digest kind must be daily, weekly or monthly (got {kind!r})", "use --digest daily")
    return kind


def build(conn: psycopg.Connection, kind: str, now: str | None = None) -> dict[str, Any]:
    """The digest of the last complete period before `now` (default: the database's now())."""
    digest = one(conn, "select monitoring.digest(%s, coalesce(%s::timestamptz, now()))", (_kind(kind), now))
    if not isinstance(digest, dict):
        raise ConfigError("monitoring.digest() returned nothing", "apply the migrations: pydeploy migrate")
    return digest


def send(conn: psycopg.Connection, kind: str, channels: list[str] | None) -> dict[str, Any]:
    """Queue the digest to `channels` (None: the configured ones); the dispatcher sends it."""
    result = one(conn, "select monitoring.send_digest(%s, now(), %s)", (_kind(kind), channels))
    return dict(result) if isinstance(result, dict) else {}


def configure(conn: psycopg.Connection, kind: str, enabled: bool | None, schedule: str | None,
              channels: list[str] | None) -> dict[str, Any]:
    """Turn a digest on or off, change its schedule or channels (the database validates each field)."""
    result = one(conn, "select monitoring.set_digest(%s, %s, %s, %s)", (_kind(kind), enabled, schedule, channels))
    return dict(result) if isinstance(result, dict) else {}


def listing(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every digest with its schedule, channels and last run (monitoring.digests)."""
    return rows(conn, "select * from monitoring.digests")


def render(digest: dict[str, Any]) -> RenderableType:
    """The digest as people read it: one panel per section, the lines the channels get."""
    head = Text(f"{digest.get('title', '')}\n", style="bold")
    head.append(f"{digest.get('periodStart', '')} to {digest.get('periodEnd', '')}, built in "
                f"{digest.get('buildMs', '?')} ms", style="dim")
    parts: list[RenderableType] = [head]
    for section in digest.get("sections") or []:
        body = "\n".join(f"• {line}" for line in section.get("lines") or []) or "-"
        parts.append(Panel(Text(body), title=str(section.get("title", "")), title_align="left"))
    return Group(*parts)
