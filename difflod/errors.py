"""The errors difflod raises for wrong input from a user.

A `DiffLodError` means "the user gave us something wrong": a file, a config
field, a command-line argument. Its message is one line naming the file, the
line or field, and what was expected. The CLI prints that line and exits 2.
Programming errors stay plain Python exceptions and are never caught.
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "DiffLodError", "InputFileError", "OutputFileError",
           "OutputInUseError"]


class DiffLodError(Exception):
    """Base class: wrong input from a user; the message is one clear line."""


class InputFileError(DiffLodError):
    """A model, texture or other input file is missing, unreadable or invalid.

    Args:
        path: the file concerned.
        message: what is wrong, e.g. "line 12: face index 9 out of range (8 vertices)".
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.detail = message
        super().__init__(f"{self.path}: {message}")


class ConfigError(DiffLodError):
    """A configuration key or value (JSON file or command line) is invalid."""


class BackendError(DiffLodError):
    """A requested compute backend or device cannot be used here."""


class OutputFileError(DiffLodError):
    """An output file cannot be written: a full disk, a read-only folder, no permission.

    Args:
        path: the file that was being written.
        message: the cause, e.g. "no space left on device".
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.detail = message
        super().__init__(f"{self.path}: {message}")


class OutputInUseError(DiffLodError):
    """Another difflod run is writing into the same output folder."""
