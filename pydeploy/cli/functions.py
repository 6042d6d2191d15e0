"""`pydeploy functions …`: the Edge Functions (health, check-error-rate) served locally with Deno."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

import click

from pydeploy import dsn as dsnmod
from pydeploy import engines
from pydeploy import functions_server as fs
from pydeploy.cli.common import say
from pydeploy.errors import ConfigError
from pydeploy.ports import port_is_free

DB_URL_HELP = ("Database the functions use (SUPABASE_DB_URL). Default: $SUPABASE_DB_URL, else the running "
               "local engine.")


@click.group()
def functions() -> None:
    """The Edge Functions (supabase/functions: health, check-error-rate, monitoring-dashboard, ingest): serve them
    locally with Deno.

    \b
    Example:
      pydeploy up && pydeploy functions serve
      curl -s http://127.0.0.1:54321/functions/v1/health
    """


@functions.command()
@click.option("--port", type=click.IntRange(1, 65535), default=54321, show_default=True,
              help="Port on --host for /functions/v1/<name> (Supabase's local API port by default).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--db-url", default=None, help=DB_URL_HELP)
@click.option("--service-key", default=None, envvar="SUPABASE_SERVICE_ROLE_KEY", show_envvar=True,
              help="Key check-error-rate accepts as 'Authorization: Bearer <key>'. Default: a random dev key, "
                   "printed once.")
@click.pass_obj
def serve(obj: Any, port: int, host: str, db_url: str | None, service_key: str | None) -> None:
    """Serve every Edge Function at http://HOST:PORT/functions/v1/<name> until Ctrl-C.

    Runs supabase/functions/_dev/serve.ts with the pinned Deno (node_modules/deno), with
    SUPABASE_DB_URL set to the database, SUPABASE_URL to http://HOST:PORT and
    SUPABASE_SERVICE_ROLE_KEY to the key. The functions' JSON log lines go to stderr; the URLs
    go to stdout.

    \b
    Example:
      pydeploy functions serve --port 54321 --service-key "$SUPABASE_SERVICE_ROLE_KEY"
      curl -s http://127.0.0.1:54321/functions/v1/health | jq .status
      curl -s -X POST http://127.0.0.1:54321/functions/v1/check-error-rate \\
           -H "Authorization: Bearer $SUPABASE_SERVICE_ROLE_KEY" -d '{"threshold": 50}'
    """
    url = engines.resolve(db_url)
    if not port_is_free(port, host):
        raise ConfigError(f"port {port} on {host} is in use", "pass --port with a free port")
    generated = not service_key
    key = service_key or fs.dev_service_key()

    # a SIGTERM must stop Deno too, like Ctrl-C does
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    say(obj, f"starting Deno for {', '.join(fs.FUNCTIONS)} on {host}:{port} "
              f"(database {dsnmod.redact(url)})")
    server = fs.start(url, port=port, host=host, service_key=key, output=sys.stderr.fileno())
    try:
        for name in fs.FUNCTIONS:
            click.echo(f"{name}: {server.function_url(name)}")
        click.echo(f"SUPABASE_URL={server.url}")
        if generated:
            click.echo(f"SUPABASE_SERVICE_ROLE_KEY={key}")
            say(obj, "that key was generated for this run; pass --service-key to choose one")
        sys.stdout.flush()
        say(obj, "serving; press Ctrl-C to stop")
        code = server.process.wait()
        raise fs.FunctionsServerError(f"deno exited with status {code}", "see its messages above")
    except KeyboardInterrupt:
        say(obj, "stopping")
    finally:
        fs.stop(server)
        signal.signal(signal.SIGTERM, previous)
