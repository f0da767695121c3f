"""Issue 23: the first minute of a newcomer, before any account exists.

The real ``antigravityd`` in a clean temp HOME, with ``XDG_RUNTIME_DIR`` and
``ANTIGRAVITY_HOME`` unset, so the real platformdirs-based path rules run
(the other daemon tests use ANTIGRAVITY_HOME). One daemon for the module.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctl import cli
from daemon import paths as paths_mod
from tests.conftest import _bin, free_port

NO_ACCOUNT = "No account available: add one with `agctl accounts add` first"


def clean_env(home: Path) -> dict[str, str]:
    """A newcomer's environment: HOME only; nothing of ours, no XDG dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ANTIGRAVITY_", "AGCTL_"))}
    # A journald stream inherited from a test runner must not take the logs.
    env.pop("JOURNAL_STREAM", None)
    env.pop("NOTIFY_SOCKET", None)
    env["HOME"] = str(home)
    return env


class FirstRun:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = clean_env(home)
        self.stderr_path = home.parent / "daemon.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_bin("agctl"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def first() -> Iterator[FirstRun]:
    root = Path(tempfile.mkdtemp(prefix="ag-fm-", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    run = FirstRun(home)
    # The default port would collide with anything else on 8045: a config
    # naming a free one is the only thing set up by hand. It has no key, so the
    # daemon still generates one and writes the file back, as on a first start.
    cfg_dir = home / ".config" / "antigravity"
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "config.toml").write_text(f"[proxy]\nport = {free_port()}\n")
    with open(run.stderr_path, "wb") as err:
        run.proc = subprocess.Popen(
            [*_bin("antigravityd")], env=run.env, stdout=subprocess.DEVNULL, stderr=err, cwd=home
        )
    try:
        deadline = time.monotonic() + 30
        while "Next steps" not in run.stderr():
            if run.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {run.proc.returncode}:\n{run.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no next steps printed:\n{run.stderr()}")
            time.sleep(0.05)
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.terminate()
            try:
                run.proc.wait(15)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def status_json(first: FirstRun) -> dict[str, Any]:
    res = first.ctl("status", "--json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_first_start_prints_the_next_steps_once_and_no_warning(first: FirstRun) -> None:
    err = first.stderr()
    assert "warning" not in err.lower(), err
    assert "Traceback" not in err
    assert err.count("Next steps") == 1
    assert "the proxy" in err and "is not started" in err
    for step in ("agctl accounts add", "agctl accounts import", "agctl start", "agctl status"):
        assert step in err
    # no client secret configured: the sign-in would fail without it, so it is the first step
    assert "agctl config set oauth.client_secret" in err


def test_status_says_why_the_proxy_is_stopped(first: FirstRun) -> None:
    res = first.ctl("status")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr  # no warning from agctl either
    assert f"proxy    stopped ({NO_ACCOUNT})" in res.stdout
    assert "auth     off (auto: any key accepted while only 127.0.0.1 listens)" in res.stdout
    st = status_json(first)
    assert st["proxy"]["state"] == "stopped"
    assert st["proxy"]["reason"] == NO_ACCOUNT


def test_the_socket_is_in_a_private_directory_in_the_home(first: FirstRun) -> None:
    sock = Path(status_json(first)["paths"]["socket"])
    # XDG_RUNTIME_DIR unset: the state dir under HOME (README "Files it creates").
    assert sock == first.home / ".local" / "state" / "antigravity" / "run" / "agctl.sock"


def test_agctl_finds_the_daemon_from_a_shell_with_xdg_runtime_dir(first: FirstRun) -> None:
    # The daemon chose the state dir (no XDG_RUNTIME_DIR); a login shell that has one looks
    # there first, finds nothing, then in the other places the rule gives.
    runtime = first.home.parent / "rt"
    runtime.mkdir(mode=0o700, exist_ok=True)
    res = subprocess.run(
        [*_bin("agctl"), "status", "--json"],
        env={**first.env, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["daemon"]["pid"] == first.proc.pid  # type: ignore[union-attr]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_status_json_paths_exist_with_their_modes(first: FirstRun) -> None:
    paths = {k: Path(v) for k, v in status_json(first)["paths"].items()}
    assert set(paths) == {"config_file", "data_dir", "accounts_dir", "monitor_db", "socket"}
    for p in paths.values():
        assert p.is_relative_to(first.home), p
    expected = {
        "config_file": 0o600,
        "data_dir": 0o700,
        "accounts_dir": 0o700,
        "monitor_db": 0o600,
        "socket": 0o600,
    }
    deadline = time.monotonic() + 10  # the monitor creates its database on its own thread
    while not paths["monitor_db"].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, want in expected.items():
        assert paths[name].exists(), name
        assert mode(paths[name]) == want, f"{name} {paths[name]} is {mode(paths[name]):o}"
    assert stat.S_ISSOCK(paths["socket"].lstat().st_mode)
    assert mode(paths["socket"].parent) == 0o700
    assert mode(paths["config_file"].parent) == 0o700
    # the generated key is in the config file
    assert "api_key" in paths["config_file"].read_text()


def test_healthz_is_refused_while_no_account(first: FirstRun) -> None:
    import socket

    port = status_json(first)["proxy"]["port"]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def help_text(argv: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    return out.getvalue()


def test_every_command_help_starts_with_what_it_does() -> None:
    commands = list(_walk(cli.build_parser(), ()))
    assert ("accounts", "add") in commands and ("service", "install") in commands
    for argv in commands:
        first_line = help_text(argv).splitlines()[0]
        assert first_line.strip(), argv
        assert not first_line.startswith("usage:"), (argv, first_line)


def test_agctl_help_runs_without_a_warning(first: FirstRun) -> None:
    res = first.ctl("accounts", "add", "--help")
    assert res.returncode == 0
    assert res.stderr == ""
    assert res.stdout.splitlines()[0] == "Add an account (browser sign-in)."


# ---------------------------------------------------------------- the rule, in process


def test_xdg_runtime_dir_is_used_only_when_private(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> None:
    # A short HOME: under a long one the socket path would not fit in AF_UNIX's
    # ~104 bytes and the run dir would move to /tmp for that reason instead.
    tmp_path = short_tmp
    monkeypatch.delenv("ANTIGRAVITY_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    p = paths_mod.resolve()
    assert p.run_dir == runtime / "antigravity" and p.run_dir_note == ""
    runtime.chmod(0o755)
    p = paths_mod.resolve()
    assert p.run_dir == tmp_path / ".local" / "state" / "antigravity" / "run"
    assert "not 0700" in p.run_dir_note
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    p = paths_mod.resolve()
    assert p.run_dir == tmp_path / ".local" / "state" / "antigravity" / "run"
    assert p.run_dir_note == ""


def test_a_socket_dir_of_another_kind_is_refused(tmp_path: Path) -> None:
    from daemon.errors import ConfigError

    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "run"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        paths_mod.check_run_dir(link)
    paths_mod.check_run_dir(tmp_path / "missing")  # created later, 0700
    target.chmod(0o755)
    paths_mod.check_run_dir(target)  # ours: the daemon makes it 0700
