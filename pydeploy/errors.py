"""Errors meant for a human: a message that says what went wrong and a hint that says the fix."""

from __future__ import annotations


class PydeployError(Exception):
    """An error pydeploy reports as one clear message (never a traceback)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(PydeployError):
    """Bad input: a DSN, a flag or a setting that cannot be used as given."""


class EngineError(PydeployError):
    """The database engine could not be started, stopped or reached."""


class MigrationError(PydeployError):
    """A migration failed; nothing of that file was applied."""
