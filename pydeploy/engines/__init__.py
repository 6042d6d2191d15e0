"""Engines: what runs the database pydeploy deploys to.

- base: the Engine interface; state: its typed state and engine.json (read and written only there)
- local (+ local_cluster): Debian's Postgres with pg_cron and the pg_net stand-in worker
- container: Supabase's image through Docker; url: any database given by URL
- choice: which engine `--engine auto` picks; lifecycle: `up` / `down`; target: which database a
  command talks to; prepare: make a new database Supabase-like; processes: the worker process
"""

from pydeploy.engines.lifecycle import UpOptions, down, engine_for, up
from pydeploy.engines.prepare import prepare
from pydeploy.engines.state import ContainerState, EngineState, LocalState, StateFile, UrlState
from pydeploy.engines.target import resolve, running

__all__ = ["ContainerState", "EngineState", "LocalState", "StateFile", "UpOptions", "UrlState", "down",
           "engine_for", "prepare", "resolve", "running", "up"]
