"""The ingest key: the secret the app's functions send to the ingest Edge Function.

It lives in Vault (or the locked-down fallback) as `monitoring_ingest_key`. A rotation makes a new
key current and keeps the one it replaces valid for a grace period (`monitoring_ingest_key_previous`),
so senders move to the new key without a refused batch; `retire` ends the grace early.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pydeploy.db import friendly_errors, one
from pydeploy.errors import ConfigError

KEY_PREFIX = "ingest_"
MAX_GRACE = timedelta(days=7)


@dataclass
class Rotation:
    """What a rotation did: the new key (shown once), where it is stored, until when the old one works."""

    key: str
    store: str
    previous_valid_until: str | None
    had_key: bool

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "store": self.store, "previousValidUntil": self.previous_valid_until,
                "hadKey": self.had_key}


def new_key() -> str:
    """A fresh key: 'ingest_' and 43 URL-safe random characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def rotate(url: str, grace: timedelta, key: str | None = None) -> Rotation:
    """Make a new ingest key current; the old one stays valid for `grace`."""
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise ConfigError(f"--grace must be from 0 to 7 days (got {grace})", "use --grace 1h")
    key = key or new_key()
    with psycopg.connect(url, autocommit=True) as conn, friendly_errors("ingest-key rotate"):
        res = one(conn, "select monitoring.rotate_ingest_key(%s, %s)", (key, grace))
    return Rotation(key=key, store=str(res["store"]), previous_valid_until=res.get("previousValidUntil"),
                    had_key=bool(res.get("hadKey")))


def retire(url: str) -> dict[str, Any]:
    """End the previous key's grace now."""
    with psycopg.connect(url, autocommit=True) as conn, friendly_errors("ingest-key retire"):
        return dict(one(conn, "select monitoring.retire_previous_ingest_key()"))


def status(url: str) -> dict[str, Any]:
    """Whether a key is set, where, and until when the previous one is accepted (never a key)."""
    with psycopg.connect(url, autocommit=True) as conn, friendly_errors("ingest-key status"):
        return dict(one(conn, "select monitoring.ingest_key_status()"))


def ingest(url: str, key: str, batch: dict[str, Any]) -> dict[str, Any]:
    """Call monitoring.ingest() directly as the ingest Edge Function does (bench, tests)."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    with psycopg.connect(url, autocommit=True) as conn, friendly_errors("ingest"):
        return dict(one(conn, "select monitoring.ingest(%s, %s)", (digest, Jsonb(batch))))
