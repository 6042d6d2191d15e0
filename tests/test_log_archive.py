"""The error log archive (issue 15, item 6): retention archives error logs before it deletes them.

The scheduled retention job's own command runs here (the `do` block pg_cron runs, committing per
batch). Each batch writes its rows to monitoring.error_log_archive and deletes them in one
transaction, so nothing is deleted unless its archive write committed: one test kills the job's
backend after the archive write and before the delete, another makes the archive write fail.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pydeploy import log_export
from tests.alerting import prepare, q
from tests.test_retention import retention_command, seed_old_errors


def live_ids(url: str) -> set[str]:
    return {str(r[0]) for r in q(url, "select id from public.whatsapp_error_logs where error_message = 'old'")}


def archived_ids(url: str) -> list[str]:
    return [str(r[0]) for r in q(url, "select e ->> 'id' from monitoring.error_log_archive as a "
                                      "cross join jsonb_array_elements(a.logs) as e")]


def test_retention_archives_each_batch_before_deleting_it(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=2_350, recent=40)
    q(url, "update public.whatsapp_error_logs set context = jsonb_build_object('order', id::text, 'attempt', 3) "
           "where error_message = 'old'")
    q(url, "update monitoring.retention_policies set batch_size = 500 where target = 'whatsapp_error_logs'")
    originals = {str(r[0]): r[1] for r in q(url, "select id, to_jsonb(l) from public.whatsapp_error_logs as l "
                                                 "where error_message = 'old'")}
    q(url, retention_command(url))

    assert live_ids(url) == set(), "the old rows are deleted"
    assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 40
    ids = archived_ids(url)
    assert len(ids) == 2_350 and set(ids) == set(originals), "every deleted row archived, exactly once"
    # each chunk: one UTC day, its row count, its first and last time
    bad = q(url, "select a.id from monitoring.error_log_archive as a where a.rows <> jsonb_array_length(a.logs) "
                 "or exists (select 1 from jsonb_array_elements(a.logs) as e where "
                 "((e ->> 'created_at')::timestamptz at time zone 'utc')::date <> a.day "
                 "or (e ->> 'created_at')::timestamptz not between a.first_at and a.last_at)")
    assert bad == []
    # the archive holds the rows as they were
    back = {str(r[1]): r[8] for r in q(url, "select * from monitoring.archived_error_logs("
                                            "now() - interval '60 days', now() - interval '2 days')")}
    assert back == originals
    assert q(url, "select detail -> 'deleted' ->> 'whatsapp_error_logs' from monitoring.job_runs "
                  "where job = 'retention'") == [("2350",)]


def test_killing_the_job_between_archive_write_and_delete_loses_nothing(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=300, recent=0)
    before = live_ids(url)
    # the delete waits here: the batch's archive insert has run, its transaction is open
    q(url, "create function public.hold_delete() returns trigger language plpgsql as $$ begin "
           "perform pg_sleep(60); return null; end $$")
    q(url, "create trigger hold_delete before delete on public.whatsapp_error_logs "
           "for each statement execute function public.hold_delete()")
    failure: list[BaseException] = []

    def job() -> None:
        try:
            with psycopg.connect(url, autocommit=True, application_name="retention-under-test") as c:
                c.execute(retention_command(url))
        except psycopg.Error as exc:  # terminated: expected
            failure.append(exc)

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    pid = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and pid is None:
        rows = q(url, "select a.pid from pg_stat_activity as a join pg_locks as l on l.pid = a.pid "
                      "where a.application_name = 'retention-under-test' and a.wait_event = 'PgSleep' "
                      "and l.relation = 'monitoring.error_log_archive'::regclass and l.mode = 'RowExclusiveLock'")
        pid = rows[0][0] if rows else None
        time.sleep(0.1)
    assert pid is not None, "the job never reached the delete after writing the archive"
    assert q(url, "select pg_terminate_backend(%s)", (pid,)) == [(True,)]
    worker.join(30)
    assert failure, "the job's connection was terminated"

    assert live_ids(url) == before, "nothing deleted"
    assert q(url, "select count(*) from monitoring.error_log_archive") == [(0,)], "the uncommitted archive is gone"

    q(url, "drop trigger hold_delete on public.whatsapp_error_logs")
    q(url, retention_command(url))
    assert live_ids(url) == set()
    ids = archived_ids(url)
    assert sorted(ids) == sorted(before), "the next run archived every row once"


def test_a_failing_archive_write_deletes_nothing_and_the_run_says_why(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=120, recent=0)
    q(url, "create function public.refuse_archive() returns trigger language plpgsql as $$ begin "
           "raise exception 'archive disk full'; end $$")
    q(url, "create trigger refuse_archive before insert on monitoring.error_log_archive "
           "for each row execute function public.refuse_archive()")
    q(url, retention_command(url))
    assert len(live_ids(url)) == 120, "nothing deleted"
    ok, error = q(url, "select ok, error from monitoring.job_runs where job = 'retention'")[0]
    assert ok is False and error == "archive disk full"


def test_the_archive_has_its_own_retention_and_archiving_can_be_turned_off(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    assert q(url, "select keep_for::text, archive from monitoring.retention_policies "
                  "where target in ('error_log_archive', 'whatsapp_error_logs') order by target") == [
        ("365 days", False), ("30 days", True)]
    q(url, "insert into monitoring.error_log_archive (day, rows, first_at, last_at, logs) values "
           "(current_date - 400, 1, now() - interval '400 days', now() - interval '400 days', '[{}]'), "
           "(current_date - 200, 1, now() - interval '200 days', now() - interval '200 days', '[{}]')")
    q(url, "update monitoring.retention_policies set archive = false where target = 'whatsapp_error_logs'")
    seed_old_errors(url, old=50, recent=0)
    result = q(url, "select monitoring.run_retention()")[0][0]
    assert result["deleted"]["error_log_archive"] == 1 and result["deleted"]["whatsapp_error_logs"] == 50
    assert q(url, "select count(*) from monitoring.error_log_archive") == [(1,)], "only the 200-day-old chunk is kept"
    with pytest.raises(psycopg.errors.CheckViolation, match=r"retention_policies\.archive can only be true"):
        q(url, "update monitoring.retention_policies set archive = true where target = 'deliveries'")


def test_logs_export_streams_archived_then_live_rows_as_ndjson(scratch_db: Callable[[], str], tmp_path: Path,
                                                              run_cli: Callable[..., subprocess.CompletedProcess[str]]
                                                              ) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=5_000, recent=25)
    q(url, retention_command(url))
    out = tmp_path / "logs.ndjson"
    start, end = "2000-01-01", "2100-01-01"
    res = run_cli("logs", "export", "--from", start, "--to", end, "--format", "ndjson", "-o", str(out),
                  "--db-url", url)
    assert res.returncode == 0, res.stderr
    assert "exported 5025 error log(s)" in res.stderr
    assert "5025/5025" in res.stderr, "the progress bar reached its total"
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["source"] for x in lines] == ["archive"] * 5_000 + ["live"] * 25
    assert {x["error_message"] for x in lines[:5_000]} == {"old"}
    times = [x["created_at"] for x in lines[:5_000]]
    assert times == sorted(times), "archived rows in time order (oldest batch first)"
    # a range inside: only what was created in it
    narrow = run_cli("logs", "export", "--from", "2000-01-01", "--to",
                     q(url, "select to_char(now() - interval '3 days', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")[0][0],
                     "--db-url", url, "--no-progress")
    assert narrow.returncode == 0 and len(narrow.stdout.splitlines()) == 5_000

    # streamed: a server-side cursor, the client holding one batch at a time
    with psycopg.connect(url, autocommit=True) as c:
        rows = log_export.stream(c, log_export.parse_time(start, "--from"), log_export.parse_time(end, "--to"))
        next(rows)
        assert c.execute("select name from pg_cursors").fetchall() == [("pydeploy_logs_export",)]
        assert sum(1 for _ in rows) == 5_024

    bad = run_cli("logs", "export", "--from", "2026-02-01", "--to", "2026-01-01", "--db-url", url)
    assert bad.returncode == 1 and "--to (2026-01-01T00:00:00+00:00) must be after --from" in bad.stderr
    bad = run_cli("logs", "export", "--from", "last tuesday", "--to", "2026-01-01", "--db-url", url)
    assert bad.returncode == 1 and "--from 'last tuesday' is not a date or time" in bad.stderr
