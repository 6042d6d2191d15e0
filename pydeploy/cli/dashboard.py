"""`pydeploy dashboard`: the monitoring dashboard as a standalone page, for admins without a React app."""

from __future__ import annotations

import ipaddress
import re
import signal
import sys
import webbrowser
from types import FrameType
from typing import Any

import click

from pydeploy import dashboard as dash
from pydeploy import dsn as dsnmod
from pydeploy import engines

DB_URL_HELP = ("Database the dashboard reads (SUPABASE_DB_URL of the functions). Default: $SUPABASE_DB_URL, "
               "else the running local engine.")


def parse_ttl(text: str) -> int:
    """'12h', '30m', '2d' -> seconds (1 minute to 30 days)."""
    m = re.fullmatch(r"\s*([1-9][0-9]{0,5})\s*([mhd])\s*", text or "")
    seconds = int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)] if m else 0
    if not m or seconds > 30 * 86400:
        raise click.BadParameter(f"must be a number and m, h or d, from 1m to 30d, such as 12h (got {text!r})",
                                 param_hint="--key-ttl")
    return seconds


def _say(obj: Any, msg: str) -> None:
    if obj is not None and hasattr(obj, "say"):
        obj.say(msg)
    else:
        click.echo(msg, err=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=54323, show_default=True,
              help="Port for the page (Supabase Studio's local port by default; 0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes the page to the network.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page (with its key) in the default browser.")
@click.option("--db-url", default=None, help=DB_URL_HELP)
@click.option("--jwt-secret", default=None, envvar="SUPABASE_JWT_SECRET", show_envvar=True,
              help="Secret the functions verify tokens with and the key is signed with. Default: a random one "
                   "for this run (the key then works only while it runs).")
@click.option("--key-ttl", default="12h", show_default=True, help="How long the printed key is valid (1m to 30d).")
@click.option("--email", default=None,
              help="Who silences from this page (recorded in monitoring.silences). Default: user@host.")
@click.pass_obj
def dashboard(obj: Any, port: int, host: str, open_browser: bool, db_url: str | None, jwt_secret: str | None,
              key_ttl: str, email: str | None) -> None:
    """Serve the monitoring dashboard (the ProductionMonitoring component) until Ctrl-C.

    Starts the Edge Functions with Deno (monitoring-dashboard reads monitoring.dashboard() from
    the database) and serves the page built by `make web` on http://HOST:PORT, proxying
    /functions/v1/ to Deno, so page and data share one origin. Binds to 127.0.0.1 unless told
    otherwise.

    The page needs a key: an admin access token signed with the JWT secret, valid for
    --key-ttl. It is printed once, in the URL's fragment (#key=...), which the browser keeps to
    itself (never sent to the server, never in logs); the page then keeps it in its tab's
    session storage. Anyone with the URL is an admin of this dashboard until it expires.

    \b
    Example:
      make web && pydeploy up --seed && pydeploy dashboard --open
      pydeploy dashboard --port 8080 --db-url "$SUPABASE_DB_URL" --key-ttl 1h
    """
    ttl_s = parse_ttl(key_ttl)
    url = engines.resolve(db_url)
    if not _is_loopback(host):
        _say(obj, f"warning: listening on {host}: the page is reachable from the network (the key still guards "
                  "the data)")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    _say(obj, f"starting the Edge Functions with Deno (database {dsnmod.redact(url)})")
    running = dash.start(url, host=host, port=port, jwt_secret=jwt_secret, key_ttl_s=ttl_s, email=email,
                         functions_output=sys.stderr.fileno())
    try:
        _say(obj, f"dashboard on {running.url} (key valid {key_ttl}); open this URL, it carries the key:")
        click.echo(running.url_with_key)
        sys.stdout.flush()
        if open_browser:
            webbrowser.open(running.url_with_key)
        _say(obj, "serving; press Ctrl-C to stop")
        code = running.functions.process.wait()
        raise dash.DashboardError(f"the Edge Functions (deno) exited with status {code}", "see their messages above")
    except KeyboardInterrupt:
        _say(obj, "stopping")
    finally:
        dash.stop(running)
        signal.signal(signal.SIGTERM, previous)
