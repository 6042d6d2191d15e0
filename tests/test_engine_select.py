"""Engine selection: auto picks the container engine only where a Docker engine answers."""

from __future__ import annotations

import pytest

from pydeploy.engines import choice as engine_select
from pydeploy.errors import ConfigError


def test_auto_with_docker_picks_container() -> None:
    assert engine_select.choose("auto", docker_ok=True) == engine_select.Choice("container")


def test_auto_without_docker_falls_back_to_local_with_notice() -> None:
    choice = engine_select.choose("auto", docker_ok=False)
    assert choice.engine == "local"
    assert choice.notice and "local engine" in choice.notice and "\n" not in choice.notice


def test_local_is_local_even_with_docker() -> None:
    assert engine_select.choose("local", docker_ok=True).engine == "local"


def test_container_without_docker_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs a Docker engine"):
        engine_select.choose("container", docker_ok=False)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ConfigError, match="not an engine"):
        engine_select.choose("vm", docker_ok=True)


def test_docker_probe_answers_false_without_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has a docker client but no engine: the probe must say no, quickly.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert engine_select.docker_answers(timeout=5) is False
