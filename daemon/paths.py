"""Where antigravity keeps its files.

platformdirs with app name ``antigravity``, or everything under
``ANTIGRAVITY_HOME`` when set (DIR/config.toml, DIR/data/, DIR/run/agctl.sock).

The socket's directory is chosen here, not by ``platformdirs.user_runtime_dir``:
that one warns (a ``RuntimeDirWarning`` on every start and every agctl call)
when ``XDG_RUNTIME_DIR`` is unset, which is the normal case over SSH, in
containers, cron and CI. The rule:

1. ``$XDG_RUNTIME_DIR/antigravity`` when XDG_RUNTIME_DIR is set and usable:
   an absolute path to a directory of ours with mode 0700, as the XDG base
   directory spec promises;
2. else ``<user state dir>/run`` (Linux: ``~/.local/state/antigravity/run``):
   inside the user's home nobody else can create or replace it first, and it
   is made 0700 like every directory of ours;
3. when that path is too long for an AF_UNIX socket, ``/tmp/antigravity-<uid>``,
   used only if it is a real directory of ours (checked by ``check_run_dir``
   before the daemon binds: another user could have created it first).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from daemon.errors import ConfigError

APP = "antigravity"
SOCKET_NAME = "agctl.sock"
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS).
MAX_SOCKET_PATH = 104


@dataclass(frozen=True, kw_only=True)
class Paths:
    config_file: Path
    data_dir: Path
    run_dir: Path
    log_dir: Path
    # Why $XDG_RUNTIME_DIR was set but not used ("" when nothing is wrong);
    # the daemon logs it once, agctl stays quiet.
    run_dir_note: str = ""

    @property
    def accounts_dir(self) -> Path:
        return self.data_dir / "accounts"

    @property
    def monitor_db(self) -> Path:
        return self.data_dir / "monitor.sqlite3"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def compaction_key(self) -> Path:
        return self.data_dir / "compaction.key"

    @property
    def socket(self) -> Path:
        return self.run_dir / SOCKET_NAME


def private_dir_problem(path: Path) -> str:
    """Why ``path`` is not a directory private to this user ("" when it is:
    a real directory, ours, no group/other permission bits)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700"
    return ""


def _xdg_runtime_dir() -> tuple[Path | None, str]:
    """($XDG_RUNTIME_DIR when usable, else None; why it is not, when set)."""
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if not value:
        return None, ""
    path = Path(value)
    problem = "is not an absolute path" if not path.is_absolute() else private_dir_problem(path)
    if problem:
        return None, f"XDG_RUNTIME_DIR={value} {problem}"
    return path, ""


def _tmp_run_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def _home_run_dir() -> Path:
    """The socket's directory when XDG_RUNTIME_DIR is not usable (rules 2-3)."""
    if sys.platform == "darwin":
        # No XDG there; platformdirs' macOS runtime dir (under ~/Library/Caches) never warns.
        base = Path(platformdirs.user_runtime_dir(APP))
    else:
        base = Path(platformdirs.user_state_dir(APP)) / "run"
    if len(str(base / SOCKET_NAME)) > MAX_SOCKET_PATH:
        return _tmp_run_dir()
    return base


def resolve(home: str | None = None) -> Paths:
    home = home if home is not None else os.environ.get("ANTIGRAVITY_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        return Paths(
            config_file=root / "config.toml",
            data_dir=root / "data",
            run_dir=root / "run",
            log_dir=root / "log",
        )
    runtime, note = _xdg_runtime_dir()
    run_dir = runtime / APP if runtime is not None else _home_run_dir()
    if note:
        note = f"{note}; the admin socket goes in {run_dir} instead"
    return Paths(
        config_file=Path(platformdirs.user_config_dir(APP)) / "config.toml",
        data_dir=Path(platformdirs.user_data_dir(APP)),
        run_dir=run_dir,
        log_dir=Path(platformdirs.user_log_dir(APP)),
        run_dir_note=note,
    )


def check_run_dir(run_dir: Path) -> None:
    """Refuse a socket directory that exists but is not ours (e.g. a
    ``/tmp/antigravity-<uid>`` another user created first). A directory of
    ours with a wider mode is fine: the daemon chmods it 0700."""
    if not os.path.lexists(run_dir):
        return
    problem = private_dir_problem(run_dir)
    if problem and not problem.startswith("has mode"):
        raise ConfigError(
            f"the admin socket's directory {run_dir} {problem}; remove it, or choose another place "
            "with ANTIGRAVITY_HOME=DIR or AGCTL_SOCKET=PATH"
        )


def socket_path(paths: Paths | None = None) -> Path:
    """The admin socket agctl talks to: --socket / AGCTL_SOCKET win."""
    env = os.environ.get("AGCTL_SOCKET")
    if env:
        return Path(env)
    return (paths or resolve()).socket


def _socket_candidates() -> Iterator[Path]:
    runtime, _ = _xdg_runtime_dir()
    if runtime is not None:
        yield runtime / APP / SOCKET_NAME
    # The systemd user runtime dir: a daemon started by `systemctl --user` has
    # XDG_RUNTIME_DIR set even when this shell (su, some SSH setups) does not.
    yield Path(f"/run/user/{os.getuid()}") / APP / SOCKET_NAME
    yield _home_run_dir() / SOCKET_NAME
    yield _tmp_run_dir() / SOCKET_NAME


def find_socket() -> Path:
    """The socket agctl should use when nobody named one (no --socket,
    AGCTL_SOCKET or ANTIGRAVITY_HOME): the one this environment resolves to
    when it exists, else any other place the rule gives in another
    environment where a socket exists in a private directory of ours."""
    primary = socket_path()
    if os.environ.get("AGCTL_SOCKET") or os.environ.get("ANTIGRAVITY_HOME") or primary.exists():
        return primary
    for candidate in _socket_candidates():
        if candidate.exists() and not private_dir_problem(candidate.parent):
            return candidate
    return primary
