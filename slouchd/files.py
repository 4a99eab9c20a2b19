"""Reading user-named files: why one cannot be read, in the words a user needs."""

from __future__ import annotations

from pathlib import Path


def unreadable(path: Path, err: OSError | UnicodeDecodeError) -> str:
    """One line, e.g. ``config/x.toml: no such file``, for a file that could not be read."""
    if isinstance(err, UnicodeDecodeError):
        why = "not UTF-8 text"
    elif isinstance(err, FileNotFoundError):
        why = "no such file"
    elif isinstance(err, IsADirectoryError):
        why = "is a directory"
    elif isinstance(err, PermissionError):
        why = "permission denied"
    else:
        why = err.strerror or type(err).__name__
    return f"{path}: {why}"
