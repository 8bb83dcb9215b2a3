"""Exceptions whose message is a one-line, user-facing reason.

Command-line tools print ``str(error)`` for these and never a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations


class FacetubesError(Exception):
    """Base class: ``str(e)`` is a complete one-line explanation for the user."""


class VideoError(FacetubesError):
    """A video cannot be opened, decoded or written (missing, corrupt, truncated, no video stream...)."""


class ConfigError(FacetubesError):
    """Invalid options or configuration values."""


class OutputError(FacetubesError):
    """The output location cannot be written (permissions, disk full, not a directory)."""


def one_line(exc: BaseException) -> str:
    """Collapse an exception into a single line: ``Type: message`` with newlines removed."""
    text = " ".join(str(exc).split())
    if isinstance(exc, FacetubesError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
