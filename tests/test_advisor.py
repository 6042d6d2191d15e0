"""What Supabase's Security Advisor checks, as catalog queries (pydeploy.advisor): a new ERROR or
WARN fails the build; the INFO findings are the documented, expected ones
(docs/reliability.md, "Security Advisor")."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pydeploy import advisor
from pydeploy.engines import LocalState
from tests.databases import migrated_database

# RLS on and no policy, on purpose: only their owner and service_role (bypassrls) read them; the
# app's three tables are written by the sender with the service key (docs/reliability.md)
EXPECTED_NO_POLICY = {
    "whatsapp_error_logs", "whatsapp_notifications", "whatsapp_sessions",
    "monitoring._limits", "monitoring._secrets", "monitoring._unlogged_epoch", "monitoring.alert_history",
    "monitoring.alert_rules", "monitoring.alerts", "monitoring.channels", "monitoring.deliveries",
    "monitoring.heartbeat", "monitoring.inhibit_rules", "monitoring.job_runs", "monitoring.jobs",
    "monitoring.notification_groups",
    "monitoring.retention_policies", "monitoring.rule_errors", "monitoring.rule_state", "monitoring.settings",
    "monitoring.silences", "monitoring.digest_settings", "monitoring.digest_hours", "monitoring.digest_runs",
    "monitoring.error_log_archive",
    "monitoring.app_logs", "monitoring.ingest_batches", "monitoring.ingest_settings", "monitoring.log_retention",
}


@pytest.fixture(scope="module")
def fresh_db(engine_state: LocalState) -> Iterator[str]:
    """A database as `supabase db push` leaves it: prepared like Supabase, every migration applied."""
    with migrated_database(engine_state, "advisor") as url:
        yield url


def _findings(url: str) -> list[advisor.Finding]:
    with psycopg.connect(url, autocommit=True) as c:
        return advisor.check(c)


def test_no_error_or_warning_on_a_freshly_migrated_database(fresh_db: str) -> None:
    bad = advisor.defects(_findings(fresh_db))
    assert bad == [], "Security Advisor findings:\n" + "\n".join(f"{f.level} {f.rule}: {f.object}" for f in bad)


def test_no_extension_in_public_where_pg_cron_lives(engine_url: str) -> None:
    """pg_cron exists only in cron.database_name (the engine's `postgres` database)."""
    rule = next(r for r in advisor.RULES if r.name == "extension_in_public")
    with psycopg.connect(engine_url, autocommit=True) as c:
        assert c.execute("select count(*) from pg_extension where extname = 'pg_cron'").fetchone() == (1,)
        assert advisor.check(c, (rule,)) == []


def test_the_info_findings_are_the_documented_ones(fresh_db: str) -> None:
    found = _findings(fresh_db)
    assert {f.level for f in found} <= {"INFO"}
    assert {f.object for f in found if f.rule == "rls_enabled_no_policy"} == EXPECTED_NO_POLICY
    # unused_index depends on the traffic seen so far: expected on a fresh database, never a defect
    assert {f.level for f in found if f.rule == "unused_index"} <= {"INFO"}


@pytest.mark.parametrize("rule, ddl, flagged", [
    ("extension_in_public", "create extension pg_trgm with schema public", "pg_trgm"),
    ("function_search_path_mutable",
     "create function monitoring.advisor_probe() returns int language sql as 'select 1'",
     "monitoring.advisor_probe()"),
    ("security_definer_function_executable",
     "create function public.advisor_probe() returns int language sql security definer set search_path = '' "
     "as 'select 1'; grant execute on function public.advisor_probe() to anon", "advisor_probe()"),
    ("security_definer_view", "create view public.advisor_probe as select 1 as x", "advisor_probe"),
    ("rls_disabled_in_public", "create table public.advisor_probe (x int)", "advisor_probe"),
    ("sensitive_columns_exposed", "create table public.advisor_probe (api_key text)", "advisor_probe.api_key"),
    ("rls_enabled_no_policy",
     "create table public.advisor_probe (x int); alter table public.advisor_probe enable row level security",
     "advisor_probe"),
])
def test_each_rule_flags_what_it_is_for(fresh_db: str, rule: str, ddl: str, flagged: str) -> None:
    """Each query can fail: the defect it describes, made in a transaction that is rolled back."""
    with psycopg.connect(fresh_db) as c:
        try:
            c.execute(ddl)
            got = [f for f in advisor.check(c) if f.rule == rule]
        finally:
            c.rollback()
    assert flagged in [f.object for f in got], got
