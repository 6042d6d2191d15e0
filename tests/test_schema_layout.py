"""One definition per object: supabase/schemas/ (by domain) and supabase/migrations/ build the
same database, every object is defined exactly once in the schema files, and an edit to one
side without the other is caught."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pydeploy import schema_check

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "supabase" / "schemas"

DOMAINS = ["app_tables", "schema", "rollups", "views", "rules", "alerts", "delivery", "jobs", "checks",
           "health", "ingest", "dashboard", "retention", "digests", "grants"]

CREATE = re.compile(
    r"^create\s+(?:or\s+replace\s+)?(?:unlogged\s+)?(?:unique\s+)?"
    r"(function|procedure|view|table|trigger|index|type)\s+(?:if\s+not\s+exists\s+)?([\w.\"]+)"
    r"(?:.*?\son\s+([\w.]+))?",
    re.IGNORECASE | re.MULTILINE,
)


def _definitions() -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for path in SCHEMAS.glob("*.sql"):
        for kind, name, table in CREATE.findall(path.read_text()):
            kind = kind.lower()
            # triggers are named per table; other objects per schema
            key = f"{name.lower()} on {table.lower()}" if kind == "trigger" else name.lower()
            found[(kind, key)] += 1
    return found


def test_one_file_per_domain_in_apply_order():
    names = [p.stem for p in sorted(SCHEMAS.glob("*.sql"))]
    assert [n.split("_", 1)[1] for n in names] == DOMAINS


def test_every_object_is_defined_exactly_once():
    found = _definitions()
    assert len(found) > 150, "the parser found too few definitions to be trusted"
    twice = sorted(k for k, n in found.items() if n > 1)
    assert not twice, f"defined more than once in supabase/schemas: {twice}"


def test_no_patches_in_the_schema_files():
    """The schema states what is, not how it got there: no renames, no added columns on our tables."""
    for path in SCHEMAS.glob("*.sql"):
        text = path.read_text().lower()
        assert not re.search(r"alter\s+function\s+\S+\s+rename", text), path.name
        assert not re.search(r"alter\s+table\s+monitoring\.\w+\s+add\s+column", text), path.name


def test_migrations_and_schemas_build_the_same_catalog(engine_state):
    result = schema_check.compare(engine_state.db_url, ROOT)
    assert result.same, "\n".join(result.diff[:80])
    assert result.schema_files == sorted(p.name for p in SCHEMAS.glob("*.sql"))


def _copy_project(tmp_path: Path) -> Path:
    dst = tmp_path / "project"
    for part in ("schemas", "migrations"):
        shutil.copytree(ROOT / "supabase" / part, dst / "supabase" / part)
    return dst


def test_a_schema_edit_without_a_migration_is_caught(engine_state, tmp_path):
    project = _copy_project(tmp_path)
    views = project / "supabase" / "schemas" / "20_views.sql"
    text = views.read_text()
    assert "create or replace function monitoring.mask_phone(" in text
    # a changed function body, as a developer would make it
    assert "v_cc integer := 0;" in text
    views.write_text(text.replace("v_cc integer := 0;", "v_cc integer := 1;", 1))  # a changed body
    result = schema_check.compare(engine_state.db_url, project)
    assert not result.same
    assert any("v_cc integer := 1;" in line for line in result.diff)


def test_a_migration_without_a_schema_edit_is_caught(engine_state, tmp_path):
    project = _copy_project(tmp_path)
    (project / "supabase" / "migrations" / "20991231000000_stray.sql").write_text(
        "alter table monitoring.alert_rules add column owner_team text;\n"
        "update monitoring.alert_rules set threshold = 95 where name = 'low_delivery_rate';\n"
    )
    result = schema_check.compare(engine_state.db_url, project)
    assert not result.same
    diff = "\n".join(result.diff)
    assert "owner_team" in diff
    assert "low_delivery_rate" in diff  # seeded rows are compared too


def test_cli_schema_check(run_cli):
    res = run_cli("schema", "check", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["same"] is True and doc["diff"] == []
    assert len(doc["schema_files"]) == len(DOMAINS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_domain_file_is_documented(domain):
    path = next(SCHEMAS.glob(f"*_{domain}.sql"))
    assert path.read_text().lstrip().startswith("--"), f"{path.name} should open with what it holds"
