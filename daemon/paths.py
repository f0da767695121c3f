"""Where antigravity keeps its files.

platformdirs with app name ``antigravity``, or everything under
``ANTIGRAVITY_HOME`` when set (DIR/config.toml, DIR/data/, DIR/run/agctl.sock).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

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
    def socket(self) -> Path:
        return self.run_dir / SOCKET_NAME


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
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        run_dir = Path(runtime) / APP
    else:
        try:
            run_dir = Path(platformdirs.user_runtime_dir(APP))
        except Exception:  # pragma: no cover - exotic platforms
            run_dir = Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"
    return Paths(
        config_file=Path(platformdirs.user_config_dir(APP)) / "config.toml",
        data_dir=Path(platformdirs.user_data_dir(APP)),
        run_dir=run_dir,
        log_dir=Path(platformdirs.user_log_dir(APP)),
    )


def socket_path(paths: Paths | None = None) -> Path:
    """The admin socket agctl talks to: --socket / AGCTL_SOCKET win."""
    env = os.environ.get("AGCTL_SOCKET")
    if env:
        return Path(env)
    return (paths or resolve()).socket
