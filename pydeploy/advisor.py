"""Catalog checks for the rules of Supabase's Security Advisor (its database linter, "splinter").

Each rule is one catalog query returning the objects it flags, at splinter's level for that rule:
ERROR and WARN findings are defects (`make test` fails on any); INFO findings are expected on our
schema and documented in docs/reliability.md ("Security Advisor").

Objects that Supabase (or the local engine's stand-ins) own are left out, as splinter does:
extension members and the schemas of the platform.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# schemas the platform owns (splinter skips them too); `net` holds pg_net or pydeploy's stand-in
PLATFORM_SCHEMAS = (
    "pg_catalog", "information_schema", "pg_toast", "auth", "cron", "extensions", "graphql",
    "graphql_public", "net", "pgbouncer", "pgsodium", "pgsodium_masks", "pgtle", "realtime",
    "storage", "supabase_functions", "supabase_migrations", "vault", "_realtime", "_analytics",
)
# the schemas PostgREST exposes on a default Supabase project (pgrst.db_schemas)
EXPOSED_SCHEMAS = ("public", "graphql_public")
# column names splinter treats as sensitive (lint 0023), matched case-insensitively
SENSITIVE_COLUMNS = (
    "password", "passwd", "secret", "api_key", "apikey", "token", "access_token", "refresh_token",
    "private_key", "ssn", "social_security_number", "credit_card", "card_number", "cvv", "iban",
    "signing_secret", "secret_key",
)

_OWN = """
  n.nspname <> all(%(platform)s) and n.nspname not like 'pg\\_temp%%' and n.nspname not like 'pg\\_toast%%'
"""
_NOT_EXTENSION_MEMBER = """
  not exists (select 1 from pg_catalog.pg_depend as d where d.objid = {oid} and d.deptype = 'e')
"""


@dataclass(frozen=True)
class Rule:
    name: str
    level: str  # ERROR, WARN or INFO, as splinter rates it
    description: str
    sql: str  # returns one text column: the object flagged


RULES: tuple[Rule, ...] = (
    Rule("extension_in_public", "WARN", "an extension installed into schema public",
         "select e.extname::text from pg_catalog.pg_extension as e "
         "where e.extnamespace = 'public'::regnamespace order by 1"),
    Rule("function_search_path_mutable", "WARN",
         "a function or procedure without `set search_path` (its callers' search_path applies)",
         "select p.oid::regprocedure::text from pg_catalog.pg_proc as p "
         "join pg_catalog.pg_namespace as n on n.oid = p.pronamespace "
         "where" + _OWN + "and" + _NOT_EXTENSION_MEMBER.format(oid="p.oid")
         + "and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) as c where c like 'search\\_path=%%') "
         "order by 1"),
    Rule("security_definer_function_executable", "WARN",
         "a security definer function that anon or authenticated may execute",
         "select p.oid::regprocedure::text from pg_catalog.pg_proc as p "
         "join pg_catalog.pg_namespace as n on n.oid = p.pronamespace "
         "where p.prosecdef and" + _OWN + "and" + _NOT_EXTENSION_MEMBER.format(oid="p.oid")
         + "and (pg_catalog.has_function_privilege('anon', p.oid, 'execute') "
         "or pg_catalog.has_function_privilege('authenticated', p.oid, 'execute')) order by 1"),
    Rule("security_definer_view", "ERROR",
         "a view without security_invoker that the API can reach (exposed schema, or granted to anon/authenticated)",
         "select c.oid::regclass::text from pg_catalog.pg_class as c "
         "join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
         "where c.relkind in ('v', 'm') and" + _OWN + "and" + _NOT_EXTENSION_MEMBER.format(oid="c.oid")
         + "and not coalesce('security_invoker=true' = any(c.reloptions) "
         "or 'security_invoker=on' = any(c.reloptions), false) "
         "and (n.nspname = any(%(exposed)s) or pg_catalog.has_table_privilege('anon', c.oid, 'select') "
         "or pg_catalog.has_table_privilege('authenticated', c.oid, 'select')) order by 1"),
    Rule("rls_disabled_in_public", "ERROR",
         "a table in an exposed schema without row level security",
         "select c.oid::regclass::text from pg_catalog.pg_class as c "
         "join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
         "where c.relkind in ('r', 'p') and n.nspname = any(%(exposed)s) and not c.relrowsecurity "
         "and" + _NOT_EXTENSION_MEMBER.format(oid="c.oid") + "order by 1"),
    Rule("sensitive_columns_exposed", "ERROR",
         "a sensitive column (password, secret, token…) that anon or authenticated can read without RLS",
         "select c.oid::regclass::text || '.' || a.attname from pg_catalog.pg_class as c "
         "join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
         "join pg_catalog.pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
         "where c.relkind in ('r', 'p', 'v', 'm', 'f') and" + _OWN
         + "and lower(a.attname) = any(%(sensitive)s) "
         "and (n.nspname = any(%(exposed)s) or pg_catalog.has_schema_privilege('anon', n.oid, 'usage') "
         "or pg_catalog.has_schema_privilege('authenticated', n.oid, 'usage')) "
         "and (pg_catalog.has_column_privilege('anon', c.oid, a.attnum, 'select') "
         "or pg_catalog.has_column_privilege('authenticated', c.oid, a.attnum, 'select')) "
         "and not (c.relkind in ('r', 'p') and c.relrowsecurity) order by 1"),
    Rule("rls_enabled_no_policy", "INFO",
         "a table with row level security on and no policy (nobody but owners and bypassrls roles see rows)",
         "select c.oid::regclass::text from pg_catalog.pg_class as c "
         "join pg_catalog.pg_namespace as n on n.oid = c.relnamespace "
         "where c.relkind in ('r', 'p') and c.relrowsecurity and" + _OWN
         + "and" + _NOT_EXTENSION_MEMBER.format(oid="c.oid")
         + "and not exists (select 1 from pg_catalog.pg_policy as p where p.polrelid = c.oid) order by 1"),
    Rule("unused_index", "INFO", "an index never scanned since statistics were reset",
         "select s.indexrelid::regclass::text from pg_catalog.pg_stat_user_indexes as s "
         "join pg_catalog.pg_index as i on i.indexrelid = s.indexrelid "
         "where s.idx_scan = 0 and not i.indisunique and not i.indisprimary "
         "and s.schemaname <> all(%(platform)s) order by 1"),
)


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str
    object: str


def check(conn: psycopg.Connection, rules: tuple[Rule, ...] = RULES) -> list[Finding]:
    """Every finding of `rules` in the database `conn` is connected to."""
    params = {"platform": list(PLATFORM_SCHEMAS), "exposed": list(EXPOSED_SCHEMAS),
              "sensitive": list(SENSITIVE_COLUMNS)}
    out: list[Finding] = []
    for rule in rules:
        rows = conn.execute(rule.sql, params).fetchall()
        out.extend(Finding(rule.name, rule.level, str(r[0])) for r in rows)
    return out


def defects(findings: list[Finding]) -> list[Finding]:
    """The findings that fail a build: ERROR and WARN."""
    return [f for f in findings if f.level in ("ERROR", "WARN")]
