"""Errors that reach the user as one plain sentence, never as a traceback."""
from __future__ import annotations


class StudioError(Exception):
    """A problem the user can act on.

    `message` says what is wrong, `hint` says what to do about it. The CLI prints
    ``error: <message> (<hint>)`` and exits with `exit_code`; the GUI shows both in a dialog.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InputError(StudioError):
    """The video, file or argument the user gave cannot be used."""


class ProjectError(StudioError):
    """The project folder is missing, damaged, or in the wrong state for the request."""


class MissingModelError(StudioError):
    """A feature needs an optional weights file the user has not configured."""


class Cancelled(StudioError):
    """The user cancelled a running stage; nothing is lost, a rerun resumes."""

    exit_code = 130

    def __init__(self, message: str = "cancelled", hint: str = "run the same command again to resume"):
        super().__init__(message, hint)
