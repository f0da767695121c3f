"""Shared fixtures: the fake Google, and the real daemon as a subprocess.

``Daemon`` starts the installed ``antigravityd`` with ANTIGRAVITY_HOME in a
temp dir and config pointing at the fake; ``d.ctl(...)`` runs the real
``agctl``; ``d.admin(...)`` speaks the admin API directly (fast, for setup).
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.fakes.google import FakeGoogle

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SECRET = "test-secret"


def _whole_suite(config: pytest.Config) -> bool:
    """True when this run is the whole suite: no paths other than tests/, no
    -k, -m, --deselect or --lf / --sw (which select a part of it)."""
    opt = config.option
    if opt.keyword or opt.markexpr or opt.deselect or getattr(opt, "lf", False):
        return False
    if getattr(opt, "stepwise", False) or getattr(opt, "stepwise_skip", False):
        return False
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        return True
    here = config.invocation_params.dir
    return {(here / arg).resolve() for arg in config.args} == {ROOT / "tests"}


def pytest_configure(config: pytest.Config) -> None:
    # The coverage floor ([tool.coverage.report] fail_under in pyproject.toml)
    # is a total for the whole suite: a part of it measures less and would
    # fail on it. A part skips the floor and the coverage table.
    # (pytest-cov reads its options from known_args_namespace.)
    opt = config.known_args_namespace
    if not _whole_suite(config) and getattr(opt, "cov_fail_under", None) is not None:
        opt.cov_fail_under = 0
        opt.cov_report = {}
    # The suite starts the daemon and agctl as processes a few hundred times.
    # Where PYTHONDONTWRITEBYTECODE is set (CI machines set it), each start
    # compiled every module of the project again: 0.5 s against 0.3 s for an
    # import of daemon.service. Compiled once here (py_compile writes even
    # then; the imports still read it), in the controller only.
    if not hasattr(config, "workerinput"):
        for package in ("daemon", "ctl"):
            compileall.compile_dir(ROOT / package, quiet=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> list[str]:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    if exe:
        return [exe]
    module = "daemon" if name == "antigravityd" else "ctl"
    return [sys.executable, "-m", module]


def base_config(fake: FakeGoogle | None, port: int, **sections: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "proxy": {"port": port, "api_key": "sk-test-0123456789abcdef"},
        "scheduling": {"quota_refresh_interval": 0},
    }
    if fake is not None:
        # No updater-manifest check: tests never reach out past the fake.
        cfg["upstream"] = {"endpoints": [fake.endpoint], "version_check": False}
        cfg["oauth"] = {
            "client_secret": CLIENT_SECRET,
            "auth_url": fake.auth_url,
            "token_url": fake.token_url,
            "userinfo_url": fake.userinfo_url,
        }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


class Daemon:
    def __init__(self, home: Path, *, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "ANTIGRAVITY_HOME": str(home), **(env or {})}
        self.env.pop("AGCTL_SOCKET", None)
        self.log_path = home / "daemon.log"
        self._admin: httpx.Client | None = None

    @property
    def socket(self) -> Path:
        return self.home / "run" / "agctl.sock"

    def write_config(self, cfg: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_bytes(msgspec.toml.encode(cfg))

    def start(self, *, wait: bool = True, extra_env: dict[str, str] | None = None) -> Daemon:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*_bin("antigravityd"), "--log-level", "DEBUG"],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                try:
                    self.admin("GET", "/status")
                    return
                except (httpx.HTTPError, OSError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        if self._admin is None:
            self._admin = httpx.Client(
                transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://d", timeout=60
            )
        resp = self._admin.request(method, path, **kw)
        if resp.status_code >= 400:
            raise AdminError(resp.status_code, resp.json())
        return resp.json()

    def ctl(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_bin("agctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def ctl_json(self, *args: str) -> Any:
        res = self.ctl(*args, "--json")
        assert res.returncode == 0, f"agctl {args} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
        return json.loads(res.stdout)

    @property
    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = self.admin("GET", "/status")
        return st

    @property
    def base_url(self) -> str:
        return str(self.status["proxy"]["base_url"])

    @property
    def api_key(self) -> str:
        return str(self.admin("GET", "/config/proxy.api_key")["value"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


class AdminError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeGoogle]:
    with FakeGoogle(client_secret=CLIENT_SECRET) as f:
        yield f


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir (AF_UNIX paths are limited to ~104 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_daemon(short_tmp: Path) -> Iterator[Any]:
    """Factory: make_daemon(config_dict, start=True) -> Daemon (stopped at teardown)."""
    made: list[Daemon] = []

    def factory(
        cfg: dict[str, Any] | None = None,
        *,
        start: bool = True,
        home: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Daemon:
        d = Daemon(home or short_tmp / f"h{len(made)}", env=env)
        if cfg is not None:
            d.write_config(cfg)
        made.append(d)
        if start:
            d.start()
        return d

    yield factory
    for d in made:
        d.stop()


ACCOUNTS = ("alice@example.com", "bob@example.com", "carol@example.com")


@contextlib.contextmanager
def pooled_daemon(
    fake: FakeGoogle,
    emails: Iterable[str],
    prefix: str,
    env: dict[str, str] | None = None,
    **sections: dict[str, Any],
) -> Iterator[Daemon]:
    """A daemon in a temp home with these (already added to the fake)
    accounts, the proxy running, auth strict unless ``proxy`` says; config
    ``sections`` override the base config, ``env`` adds to its environment.
    Stopped and removed after."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    sections["proxy"] = {"auth_mode": "strict", **sections.get("proxy", {})}
    d = Daemon(home, env=env)
    d.write_config(base_config(fake, free_port(), **sections))
    d.start()
    try:
        for email in emails:
            d.admin("POST", "/accounts", json={"refresh_token": fake.account(email).refresh_token})
        if d.status["proxy"]["state"] != "running":
            d.admin("POST", "/proxy/start")
        yield d
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)


def reactivate_accounts(d: Daemon) -> None:
    """Every account enabled again, with no cooldowns."""
    for acct in d.admin("GET", "/accounts")["accounts"]:
        if acct["state"] != "active":
            d.admin("POST", f"/accounts/{acct['id']}/enable")
            d.admin("POST", f"/accounts/{acct['id']}/reset")


@pytest.fixture(scope="session")
def served(fake: FakeGoogle) -> Iterator[Daemon]:
    """One daemon for the protocol tests: three accounts, proxy running, auth strict."""
    for email in ACCOUNTS:
        fake.add_account(email=email)
    with pooled_daemon(fake, ACCOUNTS, "ag-s-") as d:
        yield d


@pytest.fixture
def proxy(served: Daemon, fake: FakeGoogle) -> Iterator[Daemon]:
    """The shared daemon, with the fake's scripts and the pool's cooldowns reset."""
    fake.reset()
    reactivate_accounts(served)
    yield served
    fake.reset()
