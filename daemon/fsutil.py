"""Atomic, private file writes (config, accounts, state)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    try:
        os.chmod(path, PRIVATE_DIR)
    except PermissionError:  # pragma: no cover - a dir we do not own
        pass


def atomic_write(path: Path, data: bytes, *, mode: int = PRIVATE_FILE, private_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new file.

    temp file in the same directory (created 0600, never world-readable even
    for an instant) + fsync + rename + fsync of the directory.
    ``private_dir=False`` leaves the mode of an existing parent alone (a
    client's own folder such as ``~/.claude``, which `agctl setup` edits).
    """
    if private_dir:
        ensure_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove_stale_temps(directory: Path, prefix: str = ".") -> list[Path]:
    """Delete what ``atomic_write`` leaves behind when the process dies
    between creating its temp file and the rename (``.NAME.XXXX.tmp``; the
    file it was replacing is intact). Only for a directory nobody else is
    writing to now: the daemon calls it at start, holding its socket.
    Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return removed
    for p in entries:
        if not (p.name.startswith(prefix) and p.name.endswith(".tmp")):
            continue
        try:
            if not p.is_file():
                continue
            p.unlink()
        except OSError:
            continue
        removed.append(p)
    return removed
