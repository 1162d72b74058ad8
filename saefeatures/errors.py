"""The one exception type for user errors: the CLI prints it on one line and exits 2."""

from __future__ import annotations

from pathlib import Path


class SaefeaturesError(Exception):
    """Bad input or an environment the user can fix; the message says what and how."""


def writable_folder(path: Path, what: str) -> Path:
    """`path` as a folder, created with its parents; a path that cannot be one (under a
    file, a read-only or virtual file system) is the user's to fix, so it gets one line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = "a file is in the way" if isinstance(error, FileExistsError) else error.strerror
        raise SaefeaturesError(
            f"cannot write {what} in {path}: {reason or error}; give a folder you can write to"
        ) from None
    return path
