"""Where things live: the project folder, the state folder and the engine's state file."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SQL_DIR = PACKAGE_DIR / "sql"


def project_dir() -> Path:
    """The project folder: $PYDEPLOY_PROJECT, else the nearest parent holding supabase/."""
    env = os.environ.get("PYDEPLOY_PROJECT")
    if env:
        return Path(env).resolve()
    for candidate in (Path.cwd(), *Path.cwd().parents):
        if (candidate / "supabase" / "migrations").is_dir():
            return candidate
    return PACKAGE_DIR.parent


def state_dir() -> Path:
    """pydeploy's own folder: $PYDEPLOY_HOME, else `.pydeploy/` in the project folder."""
    env = os.environ.get("PYDEPLOY_HOME")
    if env:
        return Path(env).resolve()
    return project_dir() / ".pydeploy"


def migrations_dir() -> Path:
    return project_dir() / "supabase" / "migrations"


def seed_file() -> Path:
    return project_dir() / "supabase" / "seed.sql"
