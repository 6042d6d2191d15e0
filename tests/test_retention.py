"""The scheduled retention job: batches committed one by one, run by real pg_cron.

The job's command (monitoring.expected_jobs) is an anonymous block that calls
monitoring._retention_start() and then monitoring._retention_step() until it returns null,
committing before each call, so that each batch of deletes is its own transaction (short locks,
vacuum can follow) while no function runs with a mutable search_path. These tests run that very
command and observe it from the outside: a statement trigger records the transaction id of every
delete. That pg_cron runs it is proven in test_alerting_e2e.py's pg_cron test, which waits for a
cron minute anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.alerting import prepare, q

ROOT = Path(__file__).resolve().parent.parent


def retention_command(url: str) -> str:
    """The command pg_cron runs for monitoring-retention."""
    return str(q(url, "select command from monitoring.expected_jobs where job = 'retention'")[0][0])


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
    q(url, retention_command(url))

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
        c.execute(retention_command(url))
    assert q(url, "select count(*) from public.whatsapp_error_logs where error_message = 'old'")[0][0] == 10


def test_retention_job_overlapping_run_skips(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=300, recent=0)
    with psycopg.connect(url) as holder:
        # a manual run_job('retention') in progress holds the same lock
        holder.execute("select pg_advisory_xact_lock(hashtext('monitoring.run_job'), hashtext('retention'))")
        q(url, retention_command(url))
        assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 300, "the overlapping run skipped"
        holder.rollback()
    q(url, retention_command(url))
    assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 0


def test_service_role_runs_retention_where_pg_cron_lives(conn: psycopg.Connection) -> None:
    """Supabase grants schema cron to postgres only: retention as service_role skips pg_cron's history."""
    conn.execute("set local role service_role")
    result = conn.execute("select monitoring.run_retention()").fetchone()[0]
    assert result["deleted"]["cron_job_run_details"] == 0
    assert "whatsapp_error_logs" in result["deleted"]


@pytest.mark.parametrize("bad", ["infinity", "-infinity"])
def test_retention_start_refuses_an_infinite_now_and_deletes_nothing(scratch_db: Callable[[], str], bad: str) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    seed_old_errors(url, old=10, recent=10)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_now must be a finite time"):
        q(url, "select monitoring._retention_start(%s::timestamptz)", (bad,))
    assert q(url, "select count(*) from public.whatsapp_error_logs")[0][0] == 20


def test_retention_step_refuses_a_state_it_did_not_make(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    prepare(url, fast=False)
    for bad in ("null", "'[]'::jsonb", "'{}'::jsonb"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="p_state must be the state"):
            q(url, f"select monitoring._retention_step({bad})")


def test_no_routine_in_monitoring_has_a_mutable_search_path(conn: psycopg.Connection) -> None:
    """Supabase's function_search_path_mutable: the retention job no longer needs a procedure."""
    rows = conn.execute("select p.oid::regprocedure::text from pg_proc as p "
                        "where p.pronamespace = 'monitoring'::regnamespace and not exists ("
                        "select 1 from unnest(coalesce(p.proconfig, '{}')) as c where c like 'search_path=%')"
                        ).fetchall()
    assert rows == []
