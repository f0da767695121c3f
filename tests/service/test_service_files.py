"""`agctl service install | uninstall`, the packaged unit and plist (issue 2).

AGCTL_SERVICE_HOME points agctl at a temp home. The written unit is checked
by `systemd-analyze --user verify` (which also checks that ExecStart's
program exists); the plist is parsed with plistlib (no launchd here).
"""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import platformdirs
import pytest

from ctl import service_files
from tests.conftest import ROOT, _bin

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def installed_daemon() -> str:
    exe = shutil.which("antigravityd", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("antigravityd is not installed beside this Python (pip install -e .)")
    return str(Path(exe).absolute())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path, tmp_path: Path) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "AGCTL_SERVICE_HOME": str(home),
        # keep platformdirs' log dir (the plist's) inside the temp dir too
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
    }


def agctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_bin("agctl"), *args], env=env, capture_output=True, text=True, timeout=60)


def parse_unit(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(text)
    return unit


def analyze_verify(unit: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify`: a bad setting is only a warning on
    stderr (exit 0), so callers check both. The user manager wants a runtime
    dir; %h in the packaged unit expands to $HOME. The runtime dir is short:
    the user units' socket paths (gpg-agent's) go under it, and AF_UNIX
    paths are limited to ~104 bytes (pytest's tmp_path under xdist is longer)."""
    runtime = Path(tempfile.mkdtemp(prefix="ag-rt-", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    if home is not None:
        env["HOME"] = str(home)
    assert ANALYZE is not None
    try:
        return subprocess.run(
            [ANALYZE, "--user", "verify", str(unit)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


# ---------------------------------------------------------------- systemd


def test_install_writes_the_unit_with_the_installed_daemon(home: Path, env: dict[str, str]) -> None:
    exe = installed_daemon()
    res = agctl(env, "service", "install")
    assert res.returncode == 0, res.stderr
    target = home / ".config" / "systemd" / "user" / "antigravity.service"
    assert target.read_text() == service_files.systemd_unit(exe)
    assert f"wrote {target}" in res.stdout
    assert "systemctl --user enable --now antigravity" in res.stdout.splitlines()[-1]

    svc = parse_unit(target.read_text())["Service"]
    assert svc["ExecStart"] == exe and Path(exe).is_absolute() and os.access(exe, os.X_OK)
    assert svc["Type"] == "notify"
    assert svc["Restart"] == "on-failure"
    assert svc["NotifyAccess"] == "main"
    assert int(svc["WatchdogSec"]) > 0
    assert int(svc["TimeoutStopSec"]) > 10  # longer than the daemon's grace period
    assert parse_unit(target.read_text())["Install"]["WantedBy"] == "default.target"

    res = agctl(env, "service", "install", "--json")  # again: overwrites, machine output
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {
        "installed": str(target),
        "commands": ["systemctl --user daemon-reload", "systemctl --user enable --now antigravity"],
        "ran": False,
    }

    res = agctl(env, "service", "uninstall")
    assert res.returncode == 0, res.stderr
    assert not target.exists()
    assert f"removed {target}" in res.stdout
    assert "systemctl --user disable --now antigravity" in res.stdout
    res = agctl(env, "service", "uninstall", "--json")  # nothing left: still fine, says so
    assert res.returncode == 0 and json.loads(res.stdout)["existed"] is False


@needs_analyze
def test_systemd_analyze_verifies_the_installed_unit(home: Path, env: dict[str, str]) -> None:
    installed_daemon()
    assert agctl(env, "service", "install").returncode == 0
    target = home / ".config" / "systemd" / "user" / "antigravity.service"
    res = analyze_verify(target)
    assert (res.returncode, res.stderr.strip()) == (0, ""), res.stderr


@needs_analyze
def test_systemd_analyze_catches_a_bad_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing program are reported."""
    bad = tmp_path / "antigravity.service"
    text = service_files.systemd_unit(str(tmp_path / "no-such-antigravityd"))
    bad.write_text(text.replace("Restart=on-failure", "Restart=on-failure\nRestrat=always"))
    res = analyze_verify(bad)
    assert res.returncode != 0 or res.stderr.strip()
    assert "Restrat" in res.stderr and "no-such-antigravityd" in res.stderr


def test_install_now_without_the_service_manager_fails_cleanly(env: dict[str, str]) -> None:
    """--now runs launchctl / systemctl; where they are missing or cannot run,
    agctl says so (exit 1), not a traceback."""
    res = agctl(
        {**env, "PATH": str(Path(sys.executable).parent)},
        "service",
        "install",
        "--launchd",
        "--now",
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "cannot run `launchctl bootstrap" in res.stderr


# ---------------------------------------------------------------- launchd


def test_launchd_plist(
    home: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = installed_daemon()
    res = agctl(env, "service", "install", "--launchd")
    assert res.returncode == 0, res.stderr
    target = home / "Library" / "LaunchAgents" / "dev.antigravity.daemon.plist"
    plist = plistlib.loads(target.read_bytes())

    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    log_dir = Path(platformdirs.user_log_dir("antigravity"))
    assert plist["Label"] == "dev.antigravity.daemon"
    assert plist["ProgramArguments"] == [exe] and Path(exe).is_absolute()
    assert plist["RunAtLoad"] is True
    # restarted after a crash / non-zero exit only, not after `agctl shutdown`
    assert plist["KeepAlive"]["SuccessfulExit"] is False
    assert set(plist["KeepAlive"]) <= {"SuccessfulExit", "Crashed"}
    assert plist["StandardOutPath"] == str(log_dir / "antigravityd.out.log")
    assert plist["StandardErrorPath"] == str(log_dir / "antigravityd.err.log")
    assert log_dir.is_dir()  # launchd does not create it
    assert plist["Umask"] == 0o077
    assert f"launchctl bootstrap gui/{os.getuid()} {target}" in res.stdout

    res = agctl(env, "service", "uninstall", "--launchd")
    assert res.returncode == 0, res.stderr
    assert not target.exists()
    assert f"launchctl bootout gui/{os.getuid()} {target}" in res.stdout


# ---------------------------------------------------------------- packaging/


@pytest.mark.parametrize("rel", list(service_files.packaged()))
def test_packaged_files_are_what_service_files_renders(rel: str) -> None:
    path = ROOT / rel
    assert path.exists(), f"{rel} is missing"
    assert path.read_bytes() == service_files.packaged()[rel], (
        f"{rel} is out of date: regenerate it with "
        "python -c 'from ctl.service_files import write_packaged; write_packaged()'"
    )


def test_packaged_unit_and_plist_contents() -> None:
    unit = parse_unit((ROOT / service_files.SYSTEMD_UNIT_PATH).read_text())
    assert unit["Service"]["ExecStart"] == "%h/.local/bin/antigravityd"
    assert (unit["Service"]["Type"], unit["Service"]["Restart"]) == ("notify", "on-failure")
    plist = plistlib.loads((ROOT / service_files.LAUNCHD_PLIST_PATH).read_bytes())
    assert plist["Label"] == service_files.LAUNCHD_LABEL
    assert Path(plist["ProgramArguments"][0]).is_absolute()
    assert plist["KeepAlive"]["SuccessfulExit"] is False


@needs_analyze
def test_systemd_analyze_verifies_the_packaged_unit(tmp_path: Path) -> None:
    """%h/.local/bin/antigravityd: give it a home where that program exists."""
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "antigravityd").symlink_to(installed_daemon())
    unit = tmp_path / "antigravity.service"
    shutil.copy(ROOT / service_files.SYSTEMD_UNIT_PATH, unit)
    res = analyze_verify(unit, home=home)
    assert (res.returncode, res.stderr.strip()) == (0, ""), res.stderr
