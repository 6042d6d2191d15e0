"""`pydeploy up` / `down`: start an engine (or bring back the one engine.json remembers), stop it.

Which engine runs is decided once, here, by the state's type or by pydeploy.engines.choice;
everything engine-specific is behind the Engine interface (pydeploy.engines.base).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydeploy.engines import choice
from pydeploy.engines.base import Engine, Say, quiet
from pydeploy.engines.container import ContainerEngine
from pydeploy.engines.local import LocalEngine
from pydeploy.engines.state import EngineState, StateFile
from pydeploy.engines.url import UrlEngine


@dataclass
class UpOptions:
    engine: str = "auto"
    port: int | None = None
    home: Path | None = None


ENGINES: dict[str, type[Engine[Any]]] = {e.kind: e for e in (LocalEngine, ContainerEngine, UrlEngine)}


def engine_for(kind: str, home: Path, port: int | None = None) -> Engine[Any]:
    """The engine of `kind` ("local", "container", "url") keeping its files under `home`."""
    if kind not in ENGINES:
        raise ValueError(f"no engine of kind {kind!r}")
    return ENGINES[kind](home, port)


def up(opts: UpOptions, say: Say = quiet) -> EngineState:
    """Start (or reuse) the engine; return its state (with db_url). Idempotent."""
    store = StateFile.at(opts.home)
    previous = store.read()
    if previous is not None:
        # the engine a previous `up` started comes back (a local cluster always does)
        state = engine_for(previous.engine, store.home, opts.port).resume(previous, say)
        if state is not None:
            store.write(state)
            return state
    docker_ok = choice.docker_answers() if opts.engine != "local" else False
    chosen = choice.choose(opts.engine, docker_ok)
    if chosen.notice:
        say(chosen.notice)
    engine = engine_for(chosen.engine, store.home, opts.port)
    state = engine.up(engine.own(previous), say)
    store.write(state)
    return state


def down(home: Path | None = None, purge: bool = False, say: Say = quiet) -> bool:
    """Stop the engine and its worker; with purge, delete its data. False when nothing ran."""
    store = StateFile.at(home)
    state = store.read()
    if state is None:
        if purge:
            LocalEngine(store.home).purge_default()
        return False
    engine_for(state.engine, store.home).down(state, purge=purge, say=say)
    if purge:
        store.remove()
    else:
        store.write(state.stopped())
    return True
