"""Which database a command talks to: --db-url, then $SUPABASE_DB_URL, then the running engine."""

from __future__ import annotations

import os

from pydeploy.engines.state import EngineState, StateFile
from pydeploy.engines.url import url_state
from pydeploy.errors import ConfigError

ENV_VAR = "SUPABASE_DB_URL"


def target(db_url: str | None) -> EngineState:
    """The database named by --db-url, else $SUPABASE_DB_URL, else the engine `pydeploy up` started."""
    if db_url:
        return url_state(db_url, "--db-url")
    env = os.environ.get(ENV_VAR)
    if env:
        return url_state(env, ENV_VAR)
    state = StateFile.at().read()
    if state and state.running and state.db_url:
        return state
    raise ConfigError(
        "no database to talk to: no --db-url, no $SUPABASE_DB_URL and no local engine running",
        "start one with `pydeploy up`, or pass --db-url postgresql://…",
    )


def resolve(db_url: str | None) -> str:
    """The connection URL of target(db_url)."""
    return target(db_url).db_url


def running() -> EngineState | None:
    """The engine `pydeploy up` started, when it runs (for `pydeploy url`)."""
    state = StateFile.at().read()
    return state if state and state.running else None
