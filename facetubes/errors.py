"""Exceptions whose message is a one-line, user-facing reason.

Command-line tools print ``str(error)`` for these and never a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn


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


def read_text(path: str | os.PathLike, what: str, expected: str, *, encoding: str = "utf-8") -> str:
    """The text of a user-named file, or ConfigError with a one-line reason: ``PATH: <what> not found``,
    ``PATH: is a folder, expected <expected>``, ``PATH: cannot read <what> (...)``."""
    p = Path(path)
    try:
        return p.read_text(encoding=encoding)
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, expected {expected}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read {what} ({one_line(e)})") from None


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` parser whose usage errors are one line (``error: ... (see PROG --help)``, exit status 2)
    instead of the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")
