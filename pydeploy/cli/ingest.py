"""`pydeploy ingest-key …`: the key the app's functions send to the ingest Edge Function."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import click

from pydeploy import engines
from pydeploy import ingest_keys as ik
from pydeploy.cli.common import db_url_option, json_option, out, say
from pydeploy.errors import ConfigError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '1h', '2d' or '0' as a timedelta; a ConfigError naming the option otherwise."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*([smhd]?)\s*", text)
    if not m or (m.group(2) == "" and m.group(1) != "0"):
        raise ConfigError(f"--grace must be a duration such as 30m, 1h or 2d (got {text!r})", "use --grace 1h")
    return timedelta(**{_UNITS[m.group(2) or "s"]: int(m.group(1))})


@click.group("ingest-key")
def ingest_key() -> None:
    """The ingest key: what the app's Pages and Edge Functions send to the ingest Edge Function.

    Stored in Vault (or the locked-down monitoring._secrets where Vault is absent), never in a
    setting. Rotating keeps the old key valid for a grace period, so there is no downtime:

    \b
      pydeploy ingest-key rotate --grace 1h      # prints the new key once
      # give the new key to every sender (MONITORING_INGEST_KEY), redeploy them
      pydeploy ingest-key retire                 # the old key stops working now
      pydeploy ingest-key status
    """


@ingest_key.command()
@click.option("--grace", default="1h", show_default=True,
              help="How long the key being replaced stays valid (0 to 7d; 0: refused at once).")
@db_url_option
@json_option
@click.pass_obj
def rotate(obj: Any, grace: str, db_url: str | None, as_json: bool) -> None:
    """Make a new random ingest key current and print it (once: it is not shown again).

    The first rotation sets the first key. Senders with the old key keep working during --grace.
    """
    res = ik.rotate(engines.resolve(db_url), parse_duration(grace))
    if as_json:
        click.echo(json.dumps(res.as_dict(), indent=2))
        return
    click.echo(res.key)
    say(obj, f"the new ingest key is stored in {res.store}; give it to the senders as MONITORING_INGEST_KEY")
    if res.previous_valid_until:
        say(obj, f"the previous key is accepted until {res.previous_valid_until} "
                 "(pydeploy ingest-key retire ends that now)")


@ingest_key.command()
@db_url_option
@json_option
def retire(db_url: str | None, as_json: bool) -> None:
    """Stop accepting the previous ingest key now (every sender has the new one)."""
    res = ik.retire(engines.resolve(db_url))
    if as_json:
        click.echo(json.dumps(res, indent=2))
    else:
        out.print("the previous ingest key is no longer accepted")


@ingest_key.command()
@db_url_option
@json_option
def status(db_url: str | None, as_json: bool) -> None:
    """Whether an ingest key is set, where it is stored, until when the previous one works."""
    res = ik.status(engines.resolve(db_url))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    out.print(f"key set: {'yes' if res['keySet'] else 'no (run pydeploy ingest-key rotate)'}")
    out.print(f"stored in: {res['store']}")
    out.print(f"previous key accepted until: {res['previousValidUntil'] or 'not accepted'}")
