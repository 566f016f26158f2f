"""Atomic file writes: every file complete, or none of them changed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

__all__ = ["write_files"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_files(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write each ``(path, data)`` to a temporary sibling, then rename them all.

    Each temporary file is flushed to disk (fsync) before any rename, so a target is
    either as it was or complete. A failure (an interrupt included) leaves every target
    as it was and no temporary file behind. An existing target keeps its permissions;
    a new one gets the usual ``0o666`` less the umask.
    """
    temps: list[tuple[str, Path]] = []
    try:
        default_mode = 0o666 & ~_umask()
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                mode = path.stat().st_mode & 0o777
            except FileNotFoundError:
                mode = default_mode
            os.chmod(tmp, mode)
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
