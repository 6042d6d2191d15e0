"""Choosing the engine: local Postgres, or Supabase's image through a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from pydeploy.errors import ConfigError

ENGINES = ("auto", "local", "container")


@dataclass(frozen=True)
class Choice:
    engine: str
    notice: str | None = None


def docker_answers(timeout: float = 5.0) -> bool:
    """True when a Docker engine answers (not just a docker client on the PATH)."""
    if not shutil.which("docker"):
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        proc = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def choose(requested: str, docker_ok: bool) -> Choice:
    """The engine to use for `requested`, given whether a Docker engine answers."""
    if requested not in ENGINES:
        raise ConfigError(f"--engine '{requested}' is not an engine",
                          f"use one of: {', '.join(ENGINES)}")
    if requested == "local":
        return Choice("local")
    if requested == "container":
        if not docker_ok:
            raise ConfigError("--engine container needs a Docker engine, and none answers",
                              "start Docker (docker version must show a Server), or use --engine local")
        return Choice("container")
    if docker_ok:
        return Choice("container")
    return Choice("local", "no Docker engine answers: using the local engine (Debian PostgreSQL + pg_cron)")
