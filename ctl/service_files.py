"""The systemd user unit and the launchd LaunchAgent, rendered for a given
``antigravityd`` path. ``packaging/`` holds the same files rendered for the
default install location (a test keeps them in sync)."""

from __future__ import annotations

import plistlib
from pathlib import Path

LAUNCHD_LABEL = "dev.antigravity.daemon"
PACKAGED_EXEC = "%h/.local/bin/antigravityd"
# launchd expands neither ``~`` nor ``$HOME``, so the packaged plist is an
# example for an install into /usr/local; `agctl service install` writes the
# real one with this user's program path and platformdirs' log dir.
PACKAGED_LAUNCHD_EXEC = "/usr/local/bin/antigravityd"
PACKAGED_LAUNCHD_LOG_DIR = "/usr/local/var/log/antigravity"
SYSTEMD_UNIT_PATH = "packaging/systemd/antigravity.service"
LAUNCHD_PLIST_PATH = f"packaging/launchd/{LAUNCHD_LABEL}.plist"


def systemd_unit(exec_path: str) -> str:
    return f"""[Unit]
Description=antigravity: local OpenAI/Anthropic/Gemini gateway for Antigravity accounts
Documentation=https://pypi.org/project/antigravity/
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_path}
Restart=on-failure
RestartSec=2
TimeoutStopSec=20
WatchdogSec=60
# Hardening that works in user units (no privileged namespaces needed).
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=default.target
"""


def launchd_plist(exec_path: str, log_dir: str) -> bytes:
    data = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [exec_path],
        "RunAtLoad": True,
        # Restart only after a crash (a non-zero exit), not after `agctl shutdown`.
        "KeepAlive": {"SuccessfulExit": False, "Crashed": True},
        "ProcessType": "Background",
        "StandardOutPath": str(Path(log_dir) / "antigravityd.out.log"),
        "StandardErrorPath": str(Path(log_dir) / "antigravityd.err.log"),
        "Umask": 0o077,
        "ThrottleInterval": 5,
    }
    return plistlib.dumps(data, sort_keys=True)


def packaged() -> dict[str, bytes]:
    """The files under ``packaging/`` (relative path -> content); regenerate with
    ``python -c 'from ctl.service_files import write_packaged; write_packaged()'``."""
    return {
        SYSTEMD_UNIT_PATH: systemd_unit(PACKAGED_EXEC).encode(),
        LAUNCHD_PLIST_PATH: launchd_plist(PACKAGED_LAUNCHD_EXEC, PACKAGED_LAUNCHD_LOG_DIR),
    }


def write_packaged(root: Path = Path(".")) -> None:
    for rel, data in packaged().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
