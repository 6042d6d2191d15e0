"""The digest and logs commands: the spec's maintenance checklists, and the error log archive."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pydeploy import digests as dig
from pydeploy import dsn as dsnmod
from pydeploy import engines
from pydeploy import log_export as lx
from pydeploy.cli.common import db_url_option, err, json_option, out
from pydeploy.db import friendly_errors
from pydeploy.report import _plain


def _echo_json(data: object) -> None:
    click.echo(json.dumps(_plain(data), indent=2, default=str))


# -- digest ------------------------------------------------------------------------------------
@click.group()
def digest() -> None:
    """The spec's maintenance checklists as scheduled digests: daily, weekly, monthly.

    \b
    daily    connection status (time down, reconnects), delivery rates, critical errors,
             alerts fired and resolved (the previous UTC day)
    weekly   error patterns, queue p95 per day, session health, performance against the
             spec's targets, slow queries (the previous ISO week)
    monthly  log cleanup (what retention deleted and archived), threshold review with a
             suggested threshold per rule and its reasoning, trends month over month

    Built inside Postgres by monitoring.digest(kind) from the rollups and the alert history;
    sent by pg_cron (jobs monitoring-digest-<kind>) through the alerts' outbox to the channels
    you choose. Read one now with `pydeploy report --digest daily`.
    """


@digest.command("list")
@db_url_option
@json_option
def digest_list(db_url: str | None, as_json: bool) -> None:
    """Each digest: on or off, schedule, channels and its last run.

    \b
    Example:
      pydeploy digest list
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("digest list"):
        data = [_plain(r) for r in dig.listing(conn)]
    if as_json:
        _echo_json(data)
        return
    from rich.table import Table

    t = Table(title="digests", title_justify="left")
    for col in ("kind", "enabled", "schedule", "channels", "last_period_start", "last_queued", "last_build_ms"):
        t.add_column(col)
    for r in data:
        t.add_row(*["" if r.get(c) is None else str(r.get(c)) for c in
                    ("kind", "enabled", "schedule", "channels", "last_period_start", "last_queued",
                     "last_build_ms")])
    out.print(t)


@digest.command("set")
@click.argument("kind", type=click.Choice(dig.KINDS))
@click.option("--channel", "channels", multiple=True,
              help="A channel to send it to (repeat for several); replaces the current list.")
@click.option("--no-channels", is_flag=True, help="Send it nowhere (it is still built and kept in digest_runs).")
@click.option("--schedule", default=None, help="When it runs: a 5-field cron expression in GMT, e.g. '0 7 * * *'.")
@click.option("--enable/--disable", "enabled", default=None, help="Schedule it or stop it.")
@db_url_option
@json_option
def digest_set(kind: str, channels: tuple[str, ...], no_channels: bool, schedule: str | None,
               enabled: bool | None, db_url: str | None, as_json: bool) -> None:
    """Choose a digest's channels, schedule, or turn it on or off.

    pg_cron follows at once when the jobs are scheduled. A bad value (an unknown or alertmanager
    channel, a cron expression that never runs) is refused, naming the field, and nothing changes.

    \b
    Example:
      pydeploy digest set daily --channel ops-slack --channel audit-webhook --schedule '0 7 * * *'
      pydeploy digest set monthly --disable
    """
    chosen: list[str] | None = [] if no_channels else (list(channels) if channels else None)
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors(f"digest set {kind}"), conn.transaction():
        result = dig.configure(conn, kind, enabled, schedule, chosen)
    if as_json:
        _echo_json(result)
    else:
        err.print(f"digest {kind}: {'enabled' if result.get('enabled') else 'disabled'}, "
                  f"schedule {result.get('schedule')}, channels {', '.join(result.get('channels') or []) or 'none'}")


@digest.command("send")
@click.argument("kind", type=click.Choice(dig.KINDS))
@click.option("--channel", "channels", multiple=True, help="Send to this channel instead of the configured ones.")
@db_url_option
@json_option
def digest_send(kind: str, channels: tuple[str, ...], db_url: str | None, as_json: bool) -> None:
    """Build the digest of the last complete period now and queue it (the dispatcher sends it).

    \b
    Example:
      pydeploy digest send weekly --channel ops-slack
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors(f"digest send {kind}"):
        result = dig.send(conn, kind, list(channels) or None)
    if as_json:
        _echo_json(result)
    else:
        err.print(f"digest {kind} of {result.get('periodStart')}: {result.get('queued')} delivery(ies) queued "
                  f"to {', '.join(result.get('channels') or []) or 'no channel'}")


# -- logs --------------------------------------------------------------------------------------
@click.group()
def logs() -> None:
    """The error logs, including the ones retention archived before deleting them.

    Retention deletes public.whatsapp_error_logs after 30 days; each batch is first written to
    monitoring.error_log_archive (per UTC day, compressed jsonb) in the same transaction, and
    kept 365 days. `logs export` reads both.
    """


@logs.command("export")
@click.option("--from", "start", required=True, help="First time included (ISO date or time; UTC if no zone).")
@click.option("--to", "end", required=True, help="End of the range, excluded (ISO date or time).")
@click.option("--format", "fmt", type=click.Choice(["ndjson"]), default="ndjson", show_default=True,
              help="One JSON object per line: source (archive or live) and the row's columns.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (default: stdout).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal or --output is given).")
@db_url_option
def logs_export(start: str, end: str, fmt: str, output: str | None, progress: bool | None,
                db_url: str | None) -> None:
    """Stream error logs of a time range as NDJSON: archived rows (by day), then live ones.

    Streaming through a server-side cursor, 2,000 rows per round trip: memory stays constant
    whatever the range. Rows are written as the sender wrote them (not masked): the archive is
    the compliance copy.

    \b
    Example:
      pydeploy logs export --from 2026-01-01 --to 2026-02-01 --format ndjson -o january.ndjson
    """
    del fmt  # ndjson is the only format
    t_from, t_to = lx.parse_time(start, "--from"), lx.parse_time(end, "--to")
    show = progress if progress is not None else (output is not None or sys.stderr.isatty())
    started = time.monotonic()
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("logs export"):
        total = lx.count(conn, t_from, t_to) if show else 0
        sink = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        try:
            if show:
                with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                              console=err, transient=False) as bar:
                    task = bar.add_task("export", total=total)
                    n = lx.export(conn, t_from, t_to, sink, lambda done: bar.update(task, completed=done))
            else:
                n = lx.export(conn, t_from, t_to, sink)
        finally:
            if output:
                sink.close()
            else:
                sink.flush()
    err.print(f"exported {n} error log(s) in {time.monotonic() - started:.1f} s"
              + (f" to {output}" if output else ""))
