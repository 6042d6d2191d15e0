"""What `pydeploy up` started, kept in <home>/engine.json: the one place that reads and writes it.

The state is typed: one dataclass per engine kind, all with `engine`, `db_url`, `running` and
`started_at`. The file's JSON keys are the dataclass fields (a field that is None is left out),
so `jq .db_url .pydeploy/engine.json` keeps working.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydeploy.paths import state_dir

FILE_NAME = "engine.json"
# which pg_net delivers on the local engine: pydeploy's stand-in worker, or the real extension
PgNet = Literal["stand-in", "extension"]


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class EngineState:
    """An engine pydeploy knows of: its kind, its connection URL and whether it runs."""

    kind: ClassVar[str] = ""
    db_url: str
    running: bool = True
    started_at: str = ""

    @property
    def engine(self) -> str:
        return self.kind

    def stopped(self) -> EngineState:
        """The state to remember after `down` (without --purge)."""
        return dataclasses.replace(self, running=False)

    def to_json(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"engine": self.kind} | {k: str(v) if isinstance(v, Path) else v
                                        for k, v in body.items() if v is not None}


@dataclass(frozen=True)
class LocalState(EngineState):
    """Debian's Postgres in a folder pydeploy owns, plus the pg_net stand-in worker (or the real pg_net)."""

    kind: ClassVar[str] = "local"
    port: int = 0
    pg_root: Path = Path()
    data_dir: Path = Path()
    bindir: Path = Path()
    postmaster_pid: int | None = None
    net_worker_pid: int = 0
    pg_net: PgNet = "stand-in"

    def stopped(self) -> LocalState:
        return dataclasses.replace(self, running=False, postmaster_pid=None, net_worker_pid=0)


@dataclass(frozen=True)
class ContainerState(EngineState):
    """Supabase's Postgres image, run through a Docker engine."""

    kind: ClassVar[str] = "container"
    container_id: str = ""


@dataclass(frozen=True)
class UrlState(EngineState):
    """A database pydeploy did not start and never stops: given by --db-url or $SUPABASE_DB_URL."""

    kind: ClassVar[str] = "url"
    source: str = "--db-url"


STATE_TYPES: dict[str, type[EngineState]] = {t.kind: t for t in (LocalState, ContainerState, UrlState)}
_PATHS = {"pg_root", "data_dir", "bindir"}


def from_json(doc: object) -> EngineState | None:
    """The state in a parsed engine.json, or None when it is not one pydeploy wrote."""
    if not isinstance(doc, dict) or not isinstance(doc.get("db_url"), str):
        return None
    cls = STATE_TYPES.get(str(doc.get("engine")))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: Path(v) if k in _PATHS else v for k, v in doc.items() if k in names and v is not None}
    try:
        return cls(**kwargs)
    except TypeError:
        return None


@dataclass(frozen=True)
class StateFile:
    """<home>/engine.json; home is $PYDEPLOY_HOME, else .pydeploy/ in the project folder."""

    home: Path

    @classmethod
    def at(cls, home: Path | None = None) -> StateFile:
        return cls((home or state_dir()).resolve())

    @property
    def path(self) -> Path:
        return self.home / FILE_NAME

    def read(self) -> EngineState | None:
        """The remembered state; None when there is none or the file is unreadable."""
        try:
            return from_json(json.loads(self.path.read_text()))
        except (OSError, json.JSONDecodeError):
            return None

    def write(self, state: EngineState) -> None:
        """Replace the file atomically, readable by its owner only (the URL holds a password)."""
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
