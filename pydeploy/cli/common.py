"""What every command module of the CLI shares: the consoles, the context and the common options."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich.console import Console

err = Console(stderr=True, highlight=False)
# Wide enough for tables when the output is a pipe or a file, not a terminal.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

DB_URL_HELP = ("Database URL (postgresql://user:pass@host:port/db). Default: $SUPABASE_DB_URL, "
               "else the running local engine.")
db_url_option = click.option("--db-url", default=None, help=DB_URL_HELP)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


class Context:
    """The root group's options, handed to commands as click's obj."""

    def __init__(self, log_format: str) -> None:
        self.log_format = log_format

    def say(self, msg: str) -> None:
        if self.log_format == "json":
            sys.stderr.write(json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                         "level": "info", "service": "pydeploy", "message": msg}) + "\n")
        else:
            err.print(msg)


def say(obj: Any, msg: str) -> None:
    """obj.say(msg) under the root group; plain stderr when a command runs on its own."""
    if isinstance(obj, Context):
        obj.say(msg)
    else:
        click.echo(msg, err=True)
