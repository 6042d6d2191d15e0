"""The root of the `pydeploy` command line: every command's --help is its manual."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import click
import psycopg
from rich.table import Table

from pydeploy import dsn as dsnmod
from pydeploy import engines
from pydeploy import migrations as mig
from pydeploy.cli.common import DB_URL_HELP, Context, err, out
from pydeploy.errors import PydeployError
from pydeploy.paths import migrations_dir, seed_file


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Messages on stderr as plain text or as one JSON object per line.")
@click.version_option(package_name="pydeploy")
@click.pass_context
def cli(ctx: click.Context, log_format: str) -> None:
    """Deploy, schedule, verify and report the WhatsApp monitoring package.

    \b
    Start here:
      pydeploy up --seed        start a local Supabase-like Postgres, apply migrations and demo data
      pydeploy status           which migrations are applied, pending or edited since
      pydeploy url              the local engine's connection URL
      pydeploy down             stop it (add --purge to delete its data)

    Every command that talks to a database takes --db-url (or $SUPABASE_DB_URL) and otherwise
    uses the running local engine.
    """
    ctx.obj = Context(log_format)


@cli.command()
@click.option("--engine", type=click.Choice(["auto", "local", "container"]), default="auto", show_default=True,
              help="local: Debian PostgreSQL 15 + pg_cron in .pydeploy/. container: Supabase's Postgres "
                   "image via Docker. auto: container when a Docker engine answers, else local.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port on 127.0.0.1 for the local engine (default: a free one).")
@click.option("--seed/--no-seed", default=False, help="Load supabase/seed.sql after migrating.")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Apply pending migrations.")
@click.option("--schedule/--no-schedule", "do_schedule", default=True, show_default=True,
              help="Schedule the monitoring jobs with pg_cron after migrating.")
@click.pass_obj
def up(obj: Context, engine: str, port: int | None, seed: bool, migrate: bool, do_schedule: bool) -> None:
    """Start the engine (or reuse the running one), apply migrations, optionally seed.

    Idempotent: a running engine is reused. State (with db_url) is written to
    .pydeploy/engine.json ($PYDEPLOY_HOME to move it). On the local engine pydeploy also starts
    its stand-in for pg_net's background worker.

    \b
    Example:
      pydeploy up --seed && psql "$(pydeploy url)" -c 'select * from monitoring.delivery_stats'
    """
    state = engines.up(engines.UpOptions(engine=engine, port=port), obj.say)
    url = state.db_url
    if migrate:
        _migrate(obj, url)
    if seed:
        path = seed_file()
        if not path.exists():
            raise PydeployError(f"{path} does not exist", "run without --seed, or add the file")
        with dsnmod.connect(url) as conn:
            t0 = time.monotonic()
            conn.execute(path.read_text())
            obj.say(f"loaded {path.name} in {time.monotonic() - t0:.1f} s")
    if migrate and do_schedule:
        with dsnmod.connect(url) as conn:
            if conn.execute("select to_regprocedure('monitoring.schedule_jobs(text)') is not null "
                            "and to_regclass('cron.job') is not null").fetchone() == (True,):
                conn.execute("select monitoring.schedule_jobs('db')")
                obj.say("scheduled the monitoring jobs with pg_cron (pydeploy unschedule to stop them)")
    obj.say(f"engine: {state.engine}, ready at {dsnmod.redact(url)}")
    out.print(url)


@cli.command()
@click.option("--purge", is_flag=True, help="Also delete the engine's data folder and state.")
@click.pass_obj
def down(obj: Context, purge: bool) -> None:
    """Stop the local engine and the pg_net stand-in worker; no process of ours remains.

    \b
    Example:
      pydeploy down --purge
    """
    if not engines.down(purge=purge, say=obj.say):
        obj.say("no engine was running")


@cli.command()
def url() -> None:
    """Print the running local engine's connection URL.

    \b
    Example:
      supabase migration list --db-url "$(pydeploy url)?sslmode=disable"
    """
    state = engines.running()
    if state is None:
        raise PydeployError("no local engine is running", "start one with `pydeploy up`")
    out.print(state.db_url, soft_wrap=True)


def _migrate(obj: Context, url: str) -> list[mig.MigrationFile]:
    folder = migrations_dir()
    with dsnmod.connect(url) as conn:
        done = mig.migrate(
            conn, folder,
            on_applied=lambda f, n, s: obj.say(f"applied {f.path.name} ({n} statements, {s * 1000:.0f} ms)"),
            wait_notice=obj.say,
        )
    if not done:
        obj.say("migrations: nothing pending")
    return done


@cli.command()
@click.option("--db-url", default=None, help=DB_URL_HELP)
@click.pass_obj
def migrate(obj: Context, db_url: str | None) -> None:
    """Apply pending supabase/migrations/*.sql in version order, as `supabase db push` does.

    Each file runs in its own transaction and is recorded in
    supabase_migrations.schema_migrations (version, statements, name), so the Supabase CLI
    sees it as applied. Two concurrent runs: the second waits, then applies nothing twice.
    A failing file is rolled back whole; the message names the file, the statement and
    Postgres' error.

    \b
    Example:
      pydeploy migrate --db-url "postgresql://postgres:…@db.<ref>.supabase.co:5432/postgres"
    """
    _migrate(obj, engines.resolve(db_url))


@cli.command()
@click.option("--db-url", default=None, help=DB_URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything is pending, drifted or unknown.")
def status(db_url: str | None, as_json: bool, exit_code: bool) -> None:
    """List applied, pending and drifted migrations (drifted: edited after being applied).

    \b
    Example:
      pydeploy status --json | jq '.pending'
    """
    url = engines.resolve(db_url)
    with dsnmod.connect(url) as conn:
        st = mig.status(conn, migrations_dir())
    drifted = {f.version for f in st.drifted}
    if as_json:
        out.print_json(json.dumps({
            "applied": st.applied, "pending": [f.version for f in st.pending],
            "drifted": sorted(drifted), "remote_only": st.remote_only, "clean": st.clean,
        }))
    else:
        table = Table(title="migrations")
        table.add_column("version")
        table.add_column("name")
        table.add_column("state")
        for f in mig.discover(migrations_dir()):
            state = ("drifted" if f.version in drifted else
                     "applied" if f.version in st.applied else "pending")
            colour = {"applied": "green", "pending": "yellow", "drifted": "red"}[state]
            table.add_row(f.version, f.name, f"[{colour}]{state}[/]")
        for v in st.remote_only:
            table.add_row(v, "?", "[red]only in database[/]")
        out.print(table)
    if exit_code and not st.clean:
        sys.exit(1)


@cli.group()
def schema() -> None:
    """The schema's two homes: supabase/schemas/ (read) and supabase/migrations/ (deployed).

    \b
    supabase/schemas/NN_domain.sql holds the current definition of every object, once, by
    domain (app tables, rollups, views, rules, alerts, delivery, jobs, checks, health,
    retention, grants). A change is an edit there plus a new migration that moves a deployed
    database to it; `pydeploy schema check` proves the two build the same database.
    """


@schema.command("check")
@click.option("--db-url", default=None,
              help="A server where scratch databases may be created (default: the local engine).")
@click.option("--json", "as_json", is_flag=True, help="Print {same, diff, …} as JSON.")
@click.pass_obj
def schema_check_cmd(obj: Context, db_url: str | None, as_json: bool) -> None:
    """Build supabase/migrations and supabase/schemas into two scratch databases and compare
    their catalogs (pg_dump of monitoring and public, plus the rows the schema seeds).

    Exit 0 when they are the same; otherwise print the difference and exit 1. Run it after
    editing either; make test runs it too.

    \b
    Example:
      pydeploy schema check || echo "add a migration for your schema edit (or the reverse)"
    """
    from pydeploy import schema_check

    result = schema_check.compare(engines.resolve(db_url))
    if as_json:
        out.print_json(result.as_json())
    elif result.same:
        obj.say(f"same catalog: {len(result.migration_files)} migrations = {len(result.schema_files)} schema files")
    else:
        out.print("\n".join(result.diff), markup=False, highlight=False, soft_wrap=True)
        obj.say("[bold red]the migrations and the schema files differ[/] (- migrations, + schemas): "
                "write the migration that brings a deployed database to the schema, or fix the schema file")
    if not result.same:
        sys.exit(1)


@cli.command("net-worker", hidden=True)
@click.option("--db-url", required=True)
def net_worker(db_url: str) -> None:
    """Run the pg_net stand-in worker in the foreground (started by `pydeploy up`)."""
    from pydeploy.net_worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    Worker(dsnmod.validate(db_url)).run()


def _register_commands() -> None:
    """Command groups that live in their own modules."""
    from pydeploy.cli.bench import bench
    from pydeploy.cli.dashboard import dashboard
    from pydeploy.cli.digests import digest, logs
    from pydeploy.cli.functions import functions
    from pydeploy.cli.ingest import ingest_key
    from pydeploy.cli.ops import COMMANDS

    for command in [*COMMANDS, functions, dashboard, bench, ingest_key, digest, logs]:
        cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="pydeploy", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PydeployError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True, markup=True)
        if exc.hint:
            err.print(f"  [bold]fix:[/] {exc.hint}", soft_wrap=True)
        sys.exit(1)
    except psycopg.Error as exc:
        # A database error no command turned into a message of its own: still one clear line.
        diag = exc.diag
        err.print(f"[bold red]database error:[/] {(diag.message_primary or str(exc)).strip()}", soft_wrap=True)
        if diag.message_hint:
            err.print(f"  [bold]fix:[/] {diag.message_hint}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
