"""The Engine interface: what runs the database `pydeploy up` gives you, and how it stops.

An engine brings a database up (or reuses the one a previous `up` left, `resume`), stops it
(`down`), and prepares each new database of its cluster like Supabase (`prepare`). Its state is
a typed dataclass (pydeploy.engines.state) that pydeploy.engines.lifecycle keeps in engine.json.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from pydeploy.engines.prepare import prepare
from pydeploy.engines.state import EngineState

Say = Callable[[str], None]
S = TypeVar("S", bound=EngineState)


def quiet(_: str) -> None:
    """A Say that says nothing."""


class Engine(ABC, Generic[S]):
    """One kind of engine. `home` is pydeploy's state folder (engine.json, logs, local data);
    `port` the one asked for with --port, where the engine lets you choose (the local one)."""

    kind: ClassVar[str]
    state_type: type[S]
    # Whether pydeploy supplies pg_net's contract itself (the stand-in SQL and worker); None:
    # unless the server loads the real pg_net (the local engine given $PYDEPLOY_EXTENSIONS_SRC).
    standin: ClassVar[bool | None] = False

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.port = port

    def own(self, state: EngineState | None) -> S | None:
        """`state` when this engine wrote it, else None."""
        return state if isinstance(state, self.state_type) else None

    @abstractmethod
    def up(self, previous: S | None, say: Say) -> S:
        """Start the database (or reuse the one `previous` describes); return the new state."""

    def resume(self, previous: S, say: Say) -> S | None:
        """The state of a previous `up` brought back, or None to choose an engine afresh."""
        return self.up(previous, say)

    @abstractmethod
    def down(self, state: S, *, purge: bool, say: Say) -> None:
        """Stop what `state` describes; with purge also delete its data."""

    def prepare(self, url: str) -> None:
        """Make a new database of this engine look like Supabase (before the migrations)."""
        prepare(url, standin=self.standin)
