"""Operator commands: channel, configure, schedule, silence, verify, report, monitor, receiver."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from pydeploy import alertmanager as am
from pydeploy import channels as chan
from pydeploy import digests as digmod
from pydeploy import dsn as dsnmod
from pydeploy import engines, validate
from pydeploy import monitor as monmod
from pydeploy import report as repmod
from pydeploy import verify as vermod
from pydeploy.cli.common import db_url_option, json_option, out
from pydeploy.db import friendly_errors, one, rows
from pydeploy.errors import ConfigError
from pydeploy.paths import migrations_dir
from pydeploy.report import _plain


def _print_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), indent=2, default=str))


def _table(title: str, data: list[dict[str, Any]], cols: list[str]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in cols:
        t.add_column(c)
    for r in data:
        t.add_row(*["" if r.get(c) is None else str(r.get(c)) for c in cols])
    return t


# -- channel ---------------------------------------------------------------------------------
@click.group()
def channel() -> None:
    """Where alerts go: webhook, Slack, Discord, an Edge Function or Alertmanager.

    URLs and signing keys are stored as secrets (Vault where the database has it, else the
    locked-down monitoring._secrets table) and are never printed.

    \b
    Example:
      pydeploy channel add ops --kind slack --url https://hooks.slack.com/services/T/B/X
      pydeploy channel add am --kind alertmanager --url http://alertmanager:9093
      pydeploy channel test ops
    """


@channel.command("add")
@click.argument("name")
@click.option("--kind", required=True, help="webhook, slack, discord, edge_function or alertmanager.")
@click.option("--url", default=None, help="Receiver URL (https; http only for loopback; alertmanager: "
              "Alertmanager's base URL, http or https to any host).")
@click.option("--signing-secret", default=None,
              help="HMAC key for X-Signature (or set $PYDEPLOY_SIGNING_SECRET to keep it out of shell history).")
@click.option("--min-severity", default="warning", show_default=True, help="critical, warning or info.")
@click.option("--function", "function_name", default=None, help="Edge Function name (kind edge_function).")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--auth-scheme", type=click.Choice(am.AUTH_SCHEMES), default=None,
              help=f"Send Authorization: Basic/Bearer; credentials from ${am.CREDENTIALS_ENV} "
                   "(user:password or the token), stored as a secret.")
@click.option("--resend-interval", type=int, default=None,
              help="alertmanager: re-send firing alerts every N minutes (1-59, default 1), below resolve_timeout.")
@db_url_option
def channel_add(name: str, kind: str, url: str | None, signing_secret: str | None, min_severity: str,
                function_name: str | None, disabled: bool, auth_scheme: str | None, resend_interval: int | None,
                db_url: str | None) -> None:
    """Add or update a channel (validated before anything is written).

    \b
    Example:
      PYDEPLOY_SIGNING_SECRET=$(openssl rand -hex 32) \\
        pydeploy channel add oncall --kind webhook --url https://alerts.example.com/hook
      PYDEPLOY_CHANNEL_CREDENTIALS=am:secret pydeploy channel add am --kind alertmanager \\
        --url http://alertmanager:9093 --auth-scheme basic --min-severity info
    """
    secret = signing_secret if signing_secret is not None else os.environ.get("PYDEPLOY_SIGNING_SECRET")
    spec = chan.ChannelSpec(name, kind, url, secret, min_severity, function_name, not disabled)
    spec.check()
    auth = am.Auth(auth_scheme, os.environ.get(am.CREDENTIALS_ENV, "")) if auth_scheme else None
    if auth:
        auth.check()
    if resend_interval is not None and kind != "alertmanager":
        raise ConfigError("--resend-interval applies to alertmanager channels only", "leave it out")
    with dsnmod.connect(engines.resolve(db_url)) as conn, conn.transaction():
        chan.add(conn, spec)
        if auth:
            am.set_auth(conn, name, auth)
        if resend_interval is not None:
            am.set_resend(conn, name, resend_interval)
    click.echo(f"channel {name} ({kind}) saved" + (", signed" if secret else ""), err=True)


@channel.command("list")
@db_url_option
@json_option
def channel_list(db_url: str | None, as_json: bool) -> None:
    """List channels (no secrets: only whether a URL and a signing key are set).

    \b
    Example:
      pydeploy channel list --json
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn:
        data = chan.listing(conn)
    if as_json:
        _print_json(data)
    else:
        out.print(_table("channels", data, ["name", "kind", "enabled", "min_severity", "function_name", "has_url",
                                            "signed", "dead_deliveries"]))


@channel.command("remove")
@click.argument("name")
@db_url_option
def channel_remove(name: str, db_url: str | None) -> None:
    """Remove a channel.

    \b
    Example:
      pydeploy channel remove oncall
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn:
        chan.remove(conn, name)
    click.echo(f"channel {name} removed", err=True)


@channel.command("test")
@click.argument("name")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the answer.")
@db_url_option
@json_option
def channel_test(name: str, timeout: float, db_url: str | None, as_json: bool) -> None:
    """Send a real test notification through pg_net and print what the receiver answered.

    Exit 0 when the receiver answered 2xx.

    \b
    Example:
      pydeploy channel test oncall
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn:
        res = chan.test(conn, name, timeout)
    if as_json:
        _print_json(res)
    else:
        out.print(f"delivery {res['id']}: {res['status']} after {res['attempts']} attempt(s); "
                  f"receiver answered HTTP {res['last_status_code'] or '-'}"
                  + (f": {str(res['content'])[:300]}" if res.get("content") else "")
                  + (f" ({res['last_error']})" if res.get("last_error") and not res.get("content") else ""))
    sys.exit(0 if res["status"] == "delivered" else 1)


# -- configure -------------------------------------------------------------------------------
NODATA_STATES = ("nodata", "ok", "keep_last")
ERROR_STATES = ("error", "ok", "keep_last")


@click.command()
@click.argument("rule", required=False)
@click.option("--threshold", default=None, help="New threshold (a positive number, in the rule's unit).")
@click.option("--for", "for_period", default=None, help="How long the condition must hold before firing: 0, 5m, 1h.")
@click.option("--repeat", "repeat_interval", default=None, help="Re-notify a firing alert after: 30m, 4h, 1d.")
@click.option("--schedule", default=None, help="When the rule is evaluated (cron, 5 fields), e.g. '*/15 * * * *'.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the rule on or off.")
@click.option("--keep-firing-for", "keep_firing_for", default=None,
              help="Anti-flap: a firing alert whose condition clears stays firing (recovering) this long: 0, 30m.")
@click.option("--nodata", "nodata_state", type=click.Choice(NODATA_STATES), default=None,
              help="When the rule's data stops: nodata fires a no-data alert, ok evaluates as usual, keep_last "
                   "keeps the alerts as they are.")
@click.option("--on-error", "error_state", type=click.Choice(ERROR_STATES), default=None,
              help="When the rule's check raises: error fires an error alert, ok clears its alerts, keep_last keeps.")
@click.option("--group-by", default=None,
              help="All rules: labels that group notifications into one message, comma-separated, e.g. "
                   "severity,service ('' for one message per evaluation).")
@click.option("--group-wait", default=None, help="All rules: a new group's first message waits: 0, 30s, 2m.")
@click.option("--group-interval", default=None, help="All rules: the next message of a group waits: 5m.")
@db_url_option
def configure(rule: str | None, threshold: str | None, for_period: str | None, repeat_interval: str | None,
              schedule: str | None, enabled: bool | None, keep_firing_for: str | None, nodata_state: str | None,
              error_state: str | None, group_by: str | None, group_wait: str | None, group_interval: str | None,
              db_url: str | None) -> None:
    """Change an alert rule (threshold, for, repeat, schedule, anti-flap, no-data and error
    handling, on/off) or how notifications are grouped.

    Everything is validated before anything is written; the database validates again. The
    --group-* options apply to every rule (monitoring.settings) and need no RULE.

    \b
    Example:
      pydeploy configure low_delivery_rate --threshold 95 --for 10m --repeat 2h
      pydeploy configure low_delivery_rate --keep-firing-for 30m --nodata nodata --on-error error
      pydeploy configure --group-by severity,service --group-wait 30s --group-interval 5m
    """
    sets: dict[str, Any] = {}
    if threshold is not None:
        sets["threshold"] = validate.positive_number(threshold, "--threshold")
    if for_period is not None:
        sets["for_period"] = validate.interval(for_period, "--for")
    if repeat_interval is not None:
        sets["repeat_interval"] = validate.interval(repeat_interval, "--repeat", allow_zero=False)
    if schedule is not None:
        sets["schedule"] = validate.cron(schedule)
    if enabled is not None:
        sets["enabled"] = enabled
    if keep_firing_for is not None:
        sets["keep_firing_for"] = validate.interval(keep_firing_for, "--keep-firing-for")
    if nodata_state is not None:
        sets["nodata_state"] = nodata_state
    if error_state is not None:
        sets["error_state"] = error_state
    grouping: dict[str, Any] = {}
    if group_by is not None:
        grouping["group_by"] = [g.strip() for g in group_by.split(",") if g.strip()]
    if group_wait is not None:
        grouping["group_wait"] = validate.interval(group_wait, "--group-wait")
    if group_interval is not None:
        grouping["group_interval"] = validate.interval(group_interval, "--group-interval")
    if not sets and not grouping:
        raise ConfigError("nothing to change", "give at least one of --threshold, --for, --repeat, --schedule, "
                                               "--enable/--disable, --keep-firing-for, --nodata, --on-error, "
                                               "--group-by, --group-wait, --group-interval")
    if sets and rule is None:
        raise ConfigError("which rule? the rule options need a RULE", "such as: pydeploy configure "
                                                                      "low_delivery_rate --keep-firing-for 30m")
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors(f"configure {rule or 'grouping'}"), \
            conn.transaction():
        if sets:
            assignments = ", ".join(f"{k} = %({k})s" for k in sets)
            n = one(conn, f"with u as (update monitoring.alert_rules set {assignments} where name = %(rule)s "
                          "returning 1) select count(*) from u", {**sets, "rule": rule})
            if not n:
                names = [r["name"] for r in rows(conn, "select name from monitoring.alert_rules order by name")]
                raise ConfigError(f"rule '{rule}' does not exist", "rules: " + ", ".join(names))
        if grouping:
            assignments = ", ".join(f"{k} = %({k})s" for k in grouping)
            conn.execute(f"update monitoring.settings set {assignments} where id", grouping)
    if sets:
        click.echo(f"rule {rule} updated: " + ", ".join(f"{k}={v}" for k, v in sets.items()), err=True)
    if grouping:
        click.echo("grouping updated: " + ", ".join(f"{k}={v}" for k, v in grouping.items()), err=True)


@click.command()
@db_url_option
@json_option
def rules(db_url: str | None, as_json: bool) -> None:
    """List the alert rules (thresholds, periods, schedules, anti-flap, no-data and error
    handling, the inhibition rules that mute them) and how notifications are grouped.

    --json prints the rules as a list, each with its keep_firing_for, nodata_state, error_state
    and inhibited_by (the names of the inhibition rules whose targets match it).

    \b
    Example:
      pydeploy rules
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("rules"):
        data = rows(conn, """
            select r.name, r.severity, r.metric, r.comparator, r.threshold, r.unit, r."window", r.for_period,
                   r.repeat_interval, r.schedule, r.enabled, r.keep_firing_for, r.nodata_state, r.error_state,
                   array(select i.name from monitoring.inhibit_rules as i
                         where i.enabled and monitoring._silence_matches(i.target_matchers,
                           r.labels || jsonb_build_object('alertname', r.name, 'severity', r.severity))
                         order by i.name) as inhibited_by
            from monitoring.alert_rules as r order by r.name""")
        inhibit = rows(conn, "select name, source_matchers, target_matchers, equal, enabled, comment "
                             "from monitoring.inhibit_rules order by name")
        grouping = rows(conn, "select group_by, group_wait, group_interval from monitoring.settings where id")
    if as_json:
        _print_json(data)
    else:
        out.print(_table("alert rules", [_plain(r) for r in data],
                         ["name", "severity", "comparator", "threshold", "unit", "window", "for_period",
                          "repeat_interval", "schedule", "enabled", "keep_firing_for", "nodata_state", "error_state",
                          "inhibited_by"]))
        out.print(_table("inhibition rules (while source fires, targets are muted)", [
            {**_plain(i), "source": _matchers(i["source_matchers"]), "target": _matchers(i["target_matchers"])}
            for i in inhibit], ["name", "source", "target", "equal", "enabled", "comment"]))
        g = grouping[0]
        out.print(f"grouping: by {', '.join(g['group_by']) or '(nothing: one message per evaluation)'}; "
                  f"group_wait {g['group_wait']}, group_interval {g['group_interval']}")


def _matchers(matchers: list[dict[str, Any]]) -> str:
    """Matchers as Alertmanager writes them: alertname="x", severity!="info", alertname=~"a|b"."""
    return ", ".join(f"{m['name']}{'' if m.get('isEqual', True) else '!'}{'=~' if m.get('isRegex') else '='}"
                     f"\"{m['value']}\"".replace("!=~", "!~") for m in matchers)


# -- schedule --------------------------------------------------------------------------------
@click.command()
@click.option("--mode", type=click.Choice(["db", "edge"]), default="db", show_default=True,
              help="db: every check runs as SQL inside Postgres. edge: check-whatsapp-errors calls the "
                   "check-error-rate Edge Function through pg_net (the spec's own recipe), with the project URL "
                   "and service key read from secrets.")
@click.option("--project-url", default=None,
              help="edge mode: the project URL (https://<ref>.supabase.co), stored as a secret.")
@click.option("--service-key", default=None,
              help="edge mode: the service role key, stored as a secret (default: $SUPABASE_SERVICE_ROLE_KEY).")
@db_url_option
@json_option
def schedule(mode: str, project_url: str | None, service_key: str | None, db_url: str | None,
             as_json: bool) -> None:
    """Schedule the monitoring jobs with pg_cron (idempotent: run it again any time).

    In edge mode the project URL and service key are stored as secrets (Vault where present)
    first; the schedule is refused, naming the secret, when either does not resolve.

    \b
    Example:
      pydeploy schedule && psql "$(pydeploy url)" -c 'select * from monitoring.job_status'
      pydeploy schedule --mode edge --project-url https://abc.supabase.co   # key from $SUPABASE_SERVICE_ROLE_KEY
    """
    key = service_key if service_key is not None else os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
    if project_url is not None:
        validate.url(project_url, "--project-url")
    if mode == "db" and project_url:
        raise ConfigError("--project-url is only used with --mode edge", "add --mode edge, or drop --project-url")
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("schedule"):
        with conn.transaction():
            if mode == "edge":
                names = rows(conn, "select project_url_secret, service_key_secret from monitoring.settings where id")
                if project_url:
                    conn.execute("select monitoring.set_secret(%s, %s, 'Supabase project URL (edge mode)')",
                                 (names[0]["project_url_secret"], project_url.rstrip("/")))
                if key:
                    validate.secret(key, "--service-key")
                    conn.execute("select monitoring.set_secret(%s, %s, 'service role key (edge mode)')",
                                 (names[0]["service_key_secret"], key))
            res = one(conn, "select monitoring.schedule_jobs(%s)", (mode,))
        jobs = rows(conn, "select jobname, schedule, command from cron.job where jobname in "
                          "(select name from monitoring.expected_jobs) order by jobname")
    if as_json:
        _print_json({"result": res, "jobs": jobs})
    else:
        out.print(_table(f"pg_cron jobs ({mode} mode)", jobs, ["jobname", "schedule", "command"]))


@click.command()
@db_url_option
def unschedule(db_url: str | None) -> None:
    """Remove the monitoring jobs from pg_cron (idempotent). The dead man's switch notices.

    \b
    Example:
      pydeploy unschedule
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("unschedule"):
        res = one(conn, "select monitoring.unschedule_jobs()")
    click.echo(json.dumps(_plain(res)), err=True)


# -- silence ---------------------------------------------------------------------------------
@click.group()
def silence() -> None:
    """Maintenance windows: matching alerts keep their state but send nothing.

    \b
    Example:
      pydeploy silence add --match alertname=low_delivery_rate --duration 2h --comment "carrier maintenance"
    """


@silence.command("add")
@click.option("--match", "matchers", multiple=True, required=True,
              help="label=value (or label=~regex); repeat for more. Labels: alertname, severity, …")
@click.option("--duration", required=True, help="How long: 30m, 2h, 1d.")
@click.option("--comment", required=True, help="Why (shown to whoever looks at the alert).")
@click.option("--author", default=None, help="Who (default: $USER).")
@db_url_option
def silence_add(matchers: tuple[str, ...], duration: str, comment: str, author: str | None,
                db_url: str | None) -> None:
    """Add a silence starting now; prints its id.

    \b
    Example:
      pydeploy silence add --match severity=warning --duration 1h --comment "deploy"
    """
    parsed = []
    for m in matchers:
        is_regex = "=~" in m
        name, sep, value = m.partition("=~" if is_regex else "=")
        if not sep or not name.strip() or not value:
            raise ConfigError(f"--match '{m}' is not label=value", "for example --match alertname=high_error_rate")
        parsed.append({"name": name.strip(), "value": value, "isRegex": is_regex, "isEqual": True})
    dur = validate.interval(duration, "--duration", allow_zero=False)
    if not comment.strip():
        raise ConfigError("--comment is empty", "say why, e.g. --comment 'carrier maintenance'")
    who = author or os.environ.get("USER") or "pydeploy"
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("silence add"), conn.transaction():
        sid = one(conn, "select monitoring.create_silence(%s::jsonb, %s::interval, %s, %s)",
                  (json.dumps(parsed), dur, comment, who))
    click.echo(sid)


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@db_url_option
@json_option
def silence_list(show_all: bool, db_url: str | None, as_json: bool) -> None:
    """List active (or all) silences.

    \b
    Example:
      pydeploy silence list
    """
    where = "" if show_all else "where ends_at > now()"
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("silence list"):
        data = rows(conn, f"select id, starts_at, ends_at, matchers, comment, created_by from monitoring.silences "
                          f"{where} order by id")
    if as_json:
        _print_json(data)
    else:
        out.print(_table("silences", [_plain(r) for r in data],
                         ["id", "starts_at", "ends_at", "matchers", "comment", "created_by"]))


@silence.command("expire")
@click.argument("silence_id", type=int)
@db_url_option
def silence_expire(silence_id: int, db_url: str | None) -> None:
    """End a silence now.

    \b
    Example:
      pydeploy silence expire 3
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn, friendly_errors("silence expire"), conn.transaction():
        ok = one(conn, "select monitoring.expire_silence(%s)", (silence_id,))
    if not ok:
        raise ConfigError(f"silence {silence_id} does not exist or has already ended", "see pydeploy silence list")
    click.echo(f"silence {silence_id} expired", err=True)


# -- verify / report / monitor ----------------------------------------------------------------
@click.command()
@db_url_option
@json_option
def verify(db_url: str | None, as_json: bool) -> None:
    """End-to-end self-test of a deployment; exit 0 only when every check passes.

    Checks extensions (pg_cron, pg_net or the local stand-in, pgcrypto), migrations (all
    applied, none edited), jobs (scheduled as expected, last runs succeeded), security (anon
    and authenticated locked out, definer functions pinned, RLS on), the rule → alert → outbox
    path (in a rolled-back transaction), and on a loopback database a real signed delivery.

    \b
    Example:
      pydeploy verify --db-url "$SUPABASE_DB_URL"
    """
    url = engines.resolve(db_url)
    with dsnmod.connect(url) as conn:
        checks = vermod.run(conn, url, migrations_dir())
    failed = [c for c in checks if c.ok is False]
    if as_json:
        _print_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
    else:
        t = Table(title="pydeploy verify", title_justify="left")
        for col in ("check", "result", "detail", "fix"):
            t.add_column(col, overflow="fold")
        for c in checks:
            mark = "[green]PASS[/]" if c.ok else ("[red]FAIL[/]" if c.ok is False else "[dim]N/A[/]")
            t.add_row(c.name, mark, c.detail, c.fix if c.ok is not True else "")
        out.print(t)
        out.print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


@click.command()
@db_url_option
@json_option
@click.option("--watch", is_flag=True, help="Refresh in place (Ctrl-C to stop).")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--digest", "digest_kind", type=click.Choice(digmod.KINDS), default=None,
              help="Instead of the dashboard: the spec's daily, weekly or monthly maintenance digest of the "
                   "last complete period (monitoring.digest).")
def report(db_url: str | None, as_json: bool, watch: bool, interval: float, digest_kind: str | None) -> None:
    """The monitoring dashboard: health, 24 h statistics, latency, queue, errors, sessions,
    alerts, deliveries and job runs, all from the database's views.

    With --digest daily|weekly|monthly: the spec's maintenance checklist for the last complete
    UTC day, ISO week or month instead (what the scheduled digests send; see pydeploy digest).

    \b
    Example:
      pydeploy report --watch
      pydeploy report --digest weekly --json | jq '.sections[] | select(.key == "queue")'
    """
    url = engines.resolve(db_url)
    if digest_kind is not None:
        with dsnmod.connect(url) as conn, friendly_errors(f"report --digest {digest_kind}"):
            built = digmod.build(conn, digest_kind)
        if as_json:
            _print_json(built)
        else:
            out.print(digmod.render(built))
        return
    with dsnmod.connect(url) as conn, friendly_errors("report"):
        if as_json:
            _print_json(repmod.collect(conn))
            return
        if not watch:
            out.print(repmod.render(repmod.collect(conn)))
            return
        with Live(repmod.render(repmod.collect(conn)), console=out, screen=False, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(repmod.render(repmod.collect(conn)), refresh=True)
            except KeyboardInterrupt:
                pass


@click.command()
@db_url_option
@json_option
@click.option("--notify", is_flag=True, help="Commit the evaluation and send the notifications it queues.")
def monitor(db_url: str | None, as_json: bool, notify: bool) -> None:
    """The spec's monitor script: which alerts fire now; exit 0 when healthy, 1 otherwise.

    Fit for system cron. Without --notify nothing in the database changes.

    \b
    Example (crontab):
      */15 * * * * cd /srv/monitoring && .venv/bin/pydeploy monitor --notify --json >> monitor.log
    """
    with dsnmod.connect(engines.resolve(db_url)) as conn:
        res = monmod.check(conn, notify)
    if as_json:
        _print_json(res)
    else:
        if res["healthy"]:
            out.print(f"[green]healthy[/] at {res['timestamp']}: no alert")
        for a in res["alerts"]:
            colour = "red" if a["severity"] == "critical" else "yellow"
            out.print(f"[{colour}]{a['severity']}[/] {a['state']:8} {a['rule']}: {a['message']}")
    sys.exit(0 if res["healthy"] else 1)


@click.command()
@click.option("--port", default=9099, show_default=True, help="Port on 127.0.0.1.")
@click.option("--secret", default=None, help="Signing key of the channel, to check X-Signature "
              "(or $PYDEPLOY_SIGNING_SECRET).")
@click.option("--status", default=200, show_default=True, type=click.IntRange(200, 599),
              help="HTTP status to answer with: 5xx, 408 or 429 are retried with backoff, any other 4xx is "
                   "dead-lettered at once (rehearse a failing endpoint).")
def receiver(port: int, secret: str | None, status: int) -> None:
    """A local webhook receiver that prints each notification and checks its signature.

    \b
    Example:
      pydeploy receiver --port 9099 --secret demo-signing-key &
      pydeploy channel add demo --kind webhook --url http://127.0.0.1:9099/ --signing-secret demo-signing-key
      pydeploy channel test demo
    \b
    Rehearse a failing endpoint (the notification is retried, then dead-lettered):
      pydeploy receiver --port 9098 --status 503 &
      pydeploy channel add flaky --kind webhook --url http://127.0.0.1:9098/
      pydeploy channel test flaky; pydeploy report   # see delivery_status and dead_letters
    """
    from pydeploy.receiver import serve

    serve(port, secret or os.environ.get("PYDEPLOY_SIGNING_SECRET"), status=status)


COMMANDS = [receiver, channel, configure, rules, schedule, unschedule, silence, verify, report, monitor]
