"""The scheduled retention job: batches committed one by one, run by real pg_cron.

monitoring.run_retention_job() is a procedure so that each batch of deletes is its own
transaction (short locks, vacuum can follow). These tests observe that from the outside: a
statement trigger records the transaction id of every delete. That pg_cron runs the command
schedule_jobs() installs is proven in test_alerting_e2e.py's pg_cron test, which waits for a
cron minute anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.alerting import prepare, q

ROOT = Path(__file__).resolve().parent.parent


def seed_old_errors(url: str, old: int, recent: int) -> None:
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
           "select 'timeout', 'old', now() - interval '40 days' - g * interval '1 second' "
           "from generate_series(1, %s) as g", (old,))
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message, created_at) "
           "select 'timeout', 'recent', now() - interval '1 day' from generate_series(1, %s)", (recent,))


def test_retention_job_commits_each_batch_and_logs_the_run(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=2_350, recent=40)
    q(url, "update monitoring.retention_policies set batch_size = 500 where target = 'whatsapp_error_logs'")
    # every delete statement on the app table leaves the id of its transaction behind
    q(url, "create table public.delete_log (txid bigint, at timestamptz default clock_timestamp())")
    q(url, "create function public.log_delete() returns trigger language plpgsql as $$ begin "
           "insert into public.delete_log (txid) values (txid_current()); return null; end $$")
    q(url, "create trigger log_delete after delete on public.whatsapp_error_logs "
           "for each statement execute function public.log_delete()")

    q(url, "select monitoring.refresh_rollups()")  # as the every-minute job has done before
    q(url, "call monitoring.run_retention_job()")

    assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 40, "only the recent rows are kept"
    txids = q(url, "select count(distinct txid), count(*) from public.delete_log")[0]
    # 2,350 rows in batches of 500: 5 batches (the last one short), each committed on its own
    assert txids == (5, 5), f"expected 5 delete statements in 5 transactions, got {txids}"
    ok, detail = q(url, "select ok, detail from monitoring.job_runs where job = 'retention' "
                        "order by id desc limit 1")[0]
    assert ok is True
    assert detail["deleted"]["whatsapp_error_logs"] == 2_350
    assert detail["refresh"]["full"] is False, "no full refresh: the change capture keeps the rollups exact"
    assert detail["longestBatchMs"] > 0
    # the rollups agree with what is left
    assert q(url, "select coalesce(sum(count), 0) from monitoring.top_errors_24h")[0][0] == 0
    assert q(url, "select coalesce(sum(error_count), 0) from monitoring.error_trends")[0][0] == 40

    # inside a transaction block it cannot commit: a clear error, nothing deleted
    seed_old_errors(url, old=10, recent=0)
    with psycopg.connect(url) as c, pytest.raises(psycopg.errors.InvalidTransactionTermination):
        c.execute("call monitoring.run_retention_job()")
    assert q(url, "select count(*) from public.whatsapp_error_logs where error_message = 'old'")[0][0] == 10


def test_retention_job_overlapping_run_skips(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=300, recent=0)
    with psycopg.connect(url) as holder:
        # a manual run_job('retention') in progress holds the same lock
        holder.execute("select pg_advisory_xact_lock(hashtext('monitoring.run_job'), hashtext('retention'))")
        q(url, "call monitoring.run_retention_job()")
        assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 300, "the overlapping run skipped"
        holder.rollback()
    q(url, "call monitoring.run_retention_job()")
    assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 0


def test_service_role_runs_retention_where_pg_cron_lives(conn: psycopg.Connection) -> None:
    """Supabase grants schema cron to postgres only: retention as service_role skips pg_cron's history."""
    conn.execute("set local role service_role")
    result = conn.execute("select monitoring.run_retention()").fetchone()[0]
    assert result["deleted"]["cron_job_run_details"] == 0
    assert "whatsapp_error_logs" in result["deleted"]


@pytest.mark.parametrize("bad", ["infinity", "-infinity"])
def test_retention_job_refuses_an_infinite_now_and_deletes_nothing(scratch_db: Callable[[], str], bad: str) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=10, recent=10)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_now must be a finite time"):
        q(url, "call monitoring.run_retention_job(%s::timestamptz)", (bad,))
    assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 20
