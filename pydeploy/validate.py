"""Input checks done before anything is written: each error names the field and the fix."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydeploy.errors import ConfigError

CHANNEL_KINDS = ("webhook", "slack", "discord", "edge_function", "alertmanager")
SEVERITIES = ("critical", "warning", "info")
LOOPBACK_HOSTS = ("localhost",)

_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_INTERVAL = re.compile(r"^\s*([0-9]{1,6})\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\s*$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url(value: str, field: str) -> str:
    """https everywhere; http only to a loopback address (local receivers, the local engine)."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise ConfigError(f"{field} '{value}' is not a valid URL ({exc})",
                          "give a full URL such as https://hooks.example.com/alerts") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{field} '{value}' is not an http(s) URL", "give a full URL such as https://hooks.example.com/alerts")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{field} must use https (http is allowed only for 127.0.0.1, localhost or [::1])",
                          f"use https://{parts.netloc}{parts.path}")
    if any(c.isspace() for c in value.strip()):
        raise ConfigError(f"{field} contains white space", "percent-encode it (%20)")
    return value.strip()


def channel_kind(kind: str) -> str:
    if kind not in CHANNEL_KINDS:
        raise ConfigError(f"--kind '{kind}' is not a channel kind", f"use one of: {', '.join(CHANNEL_KINDS)}")
    return kind


def severity(value: str, field: str = "--min-severity") -> str:
    if value not in SEVERITIES:
        raise ConfigError(f"{field} '{value}' is not a severity", f"use one of: {', '.join(SEVERITIES)}")
    return value


def positive_number(value: str | float, field: str) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field} '{value}' is not a number", "use a positive number such as 50") from exc
    if not n > 0 or n != n or n == float("inf") or n > 1e12:
        raise ConfigError(f"{field} must be a positive number, not {value}", "use a positive number such as 50")
    return n


def interval(value: str, field: str, *, allow_zero: bool = True) -> str:
    """'90s', '5m', '4h', '1d' (or '0') → a Postgres interval literal."""
    v = value.strip()
    if allow_zero and v in ("0", "0s", "0m"):
        return "0 seconds"
    m = _INTERVAL.match(v)
    if not m or (int(m.group(1)) == 0 and not allow_zero):
        raise ConfigError(f"{field} '{value}' is not a duration", "use a number and a unit: 90s, 5m, 4h or 1d")
    return f"{int(m.group(1))} {_UNIT[m.group(2)[0].lower()]}"


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and '٣', which int() then refuses or reads."""
    return text.isascii() and text.isdigit() and len(text) <= 4


def cron(expr: str, field: str = "--schedule") -> str:
    """A five-field cron expression both Debian's pg_cron 1.4 and Supabase's accept."""
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(f"{field} '{expr}' must have 5 fields (minute hour day month weekday)",
                          "for example '*/15 * * * *' (every 15 minutes); seconds are not supported")
    for text, (lo, hi), name in zip(fields, _CRON_RANGES, _CRON_NAMES, strict=True):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and (not _digits(step) or not 1 <= int(step) <= hi):
                raise ConfigError(f"{field}: step '{step}' in the {name} field is not a number 1-{hi}",
                                  "write steps like */5")
            if base == "*":
                continue
            lo_hi = base.split("-")
            if len(lo_hi) > 2 or not all(_digits(x) for x in lo_hi):
                raise ConfigError(f"{field}: '{part}' in the {name} field is not valid",
                                  f"use *, a number {lo}-{hi}, a range a-b, a list a,b or a step */n")
            if not all(lo <= int(x) <= hi for x in lo_hi):
                raise ConfigError(f"{field}: '{part}' is outside {lo}-{hi} in the {name} field",
                                  f"use values from {lo} to {hi}")
    return " ".join(fields)


def secret(value: str, field: str) -> str:
    if not value or len(value) < 8:
        raise ConfigError(f"{field} must be at least 8 characters", "generate one: openssl rand -hex 32")
    if any(ord(c) < 32 for c in value):
        raise ConfigError(f"{field} contains control characters", "use printable characters only")
    return value
