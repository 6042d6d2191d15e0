"""The URL engine: any database given by --db-url or $SUPABASE_DB_URL (a Supabase project, a CI service).

pydeploy did not start it and never stops or deletes it; `up` only checks that it answers.
Nothing is prepared: a Supabase project already has what supabase_like.sql imitates.
"""

from __future__ import annotations

from pydeploy import dsn as dsnmod
from pydeploy.engines.base import Engine, Say
from pydeploy.engines.prepare import wait_ready
from pydeploy.engines.state import UrlState, now_utc


def url_state(url: str, source: str = "--db-url") -> UrlState:
    """The state of a database named by `source` (validated: a bad URL names the field and the fix)."""
    return UrlState(db_url=dsnmod.validate(url, source), source=source)


class UrlEngine(Engine[UrlState]):
    kind = "url"
    state_type = UrlState
    standin = False

    def up(self, previous: UrlState | None, say: Say) -> UrlState:
        if previous is None:
            raise ValueError("the URL engine needs the database's URL (url_state(...))")
        wait_ready(previous.db_url, timeout=10)
        say(f"using the database at {dsnmod.redact(previous.db_url)}")
        return UrlState(db_url=previous.db_url, running=True, source=previous.source,
                        started_at=previous.started_at or now_utc())

    def down(self, state: UrlState, *, purge: bool, say: Say) -> None:
        say(f"not stopping {dsnmod.redact(state.db_url)}: pydeploy did not start it")

    def prepare(self, url: str) -> None:
        """Nothing: the database is what it is."""
