"""Atomic private writes and the clean-up of what a crash leaves."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.fsutil import atomic_write, remove_stale_temps


def test_atomic_write_is_private_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "config.toml"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["config.toml"]


def test_stale_temps_go_and_nothing_else(tmp_path: Path) -> None:
    keep = ["config.toml", "notes.tmp", ".hidden", ".other.toml.x"]
    gone = [".config.toml.ab12cd.tmp", ".config.toml.zz.tmp"]
    for name in keep + gone:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".dir.tmp").mkdir()
    removed = remove_stale_temps(tmp_path, prefix=".config.toml.")
    assert sorted(p.name for p in removed) == sorted(gone)
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, ".dir.tmp"])


def test_missing_directory_is_fine(tmp_path: Path) -> None:
    assert remove_stale_temps(tmp_path / "nope") == []
