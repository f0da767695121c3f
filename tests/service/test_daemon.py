"""Issue 2 end to end: the real antigravityd driven by the real agctl.

Daemon life cycle, the proxy listener's state machine and its two start
errors, LAN binding, health, files and socket modes, stale / live sockets,
`--socket` / AGCTL_SOCKET, signals and graceful shutdown.

A daemon "can serve" once z.ai is enabled in config (``serving_config``);
tests that need a real upstream answer use an account on the fake Google.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon import __version__
from tests.conftest import Daemon, _bin, base_config, free_port
from tests.fakes.google import FakeGoogle, Reply

NO_ACCOUNT = "No account available: add one with `agctl accounts add` first"
# z.ai pointed at a closed local port: "can serve" without ever leaving the machine.
DEAD_URL = "http://127.0.0.1:9/api/anthropic"


def serving_config(port: int, fake: FakeGoogle | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config that can serve with no account: z.ai on, pooled."""
    zai = {
        "enabled": True,
        "api_key": "sk-zai-test-0123456789",
        "dispatch_mode": "pooled",
        "base_url": DEAD_URL,
    }
    zai.update(sections.pop("zai", {}))
    return base_config(fake, port, zai=zai, **sections)


def settled(d: Daemon, timeout: float = 10.0) -> dict[str, Any]:
    """Status once the auto-start attempt is over (the admin socket answers
    a moment before the proxy has started)."""
    deadline = time.monotonic() + timeout
    while True:
        st = d.status
        p = st["proxy"]
        if p["state"] in ("running", "failed") or p["reason"]:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"proxy did not settle: {p}")
        time.sleep(0.02)


def raw_http(
    port: int,
    target: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """Send the request line exactly as given (no client-side path cleaning)."""
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: test",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return int(status_line.split()[1]), hdrs, payload


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def refused(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


def listening_addresses(port: int) -> set[str] | None:
    """Local addresses listening on ``port`` per `ss`, or None without ss."""
    try:
        out = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        return None
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def lan_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        out = ""
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    return None


def ctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_bin("agctl"), *args], env=env, capture_output=True, text=True, timeout=60)


def taken_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def bind_message(port: int) -> str:
    return f"failed to bind address 127.0.0.1:{port}: {os.strerror(errno.EADDRINUSE)}"


@contextlib.contextmanager
def daemon_in_tmp(cfg: dict[str, Any] | None, *, env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """A daemon for a whole module (make_daemon is per test)."""
    root = Path(tempfile.mkdtemp(prefix="ag-m-", dir="/tmp"))
    d = Daemon(root / "h", env=env)
    if cfg is not None:
        d.write_config(cfg)
    try:
        d.start()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- no daemon


@pytest.mark.parametrize("stale", [False, True], ids=["no-socket", "stale-socket"])
def test_agctl_without_daemon_exits_3_and_says_how_to_start(short_tmp: Path, stale: bool) -> None:
    d = Daemon(short_tmp / "h")
    if stale:  # a socket file nobody listens on (a crashed daemon's)
        d.socket.parent.mkdir(parents=True, mode=0o700)
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(d.socket))
        s.close()
    for args in (["status"], ["start"]) if not stale else (["status"],):
        res = d.ctl(*args)
        assert res.returncode == 3, (args, res.stdout, res.stderr)
        assert "antigravityd is not running" in res.stderr
        assert str(d.socket) in res.stderr
        assert "Start it with `antigravityd`" in res.stderr
        assert "systemctl --user start antigravity" in res.stderr
    res = d.ctl("status", "--json")
    assert res.returncode == 3
    err = json.loads(res.stdout)["error"]
    assert err["kind"] == "unreachable"
    assert "not running" in err["message"] and "Start it with `antigravityd`" in err["message"]


# ---------------------------------------------------------------- one daemon, several tests


@pytest.fixture(scope="module")
def shared() -> Iterator[Daemon]:
    """First run (no config.toml), then made able to serve through agctl's own API."""
    with daemon_in_tmp(None) as d:
        settled(d)
        for key, value in (
            ("proxy.port", str(free_port())),
            ("proxy.auto_start", "false"),
            ("zai.enabled", "true"),
            ("zai.api_key", "sk-zai-test-0123456789"),
            ("zai.base_url", DEAD_URL),
            ("zai.dispatch_mode", "pooled"),
        ):
            d.admin("PUT", f"/config/{key}", json={"value": value})
        yield d


@pytest.fixture
def idle(shared: Daemon) -> Daemon:
    """The shared daemon with its proxy stopped and no failure reason."""
    if shared.status["proxy"]["state"] == "running":
        shared.admin("POST", "/proxy/stop")
    shared.admin("POST", "/proxy/start")
    shared.admin("POST", "/proxy/stop")
    return shared


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_home_layout_and_private_modes(idle: Daemon) -> None:
    d = idle
    assert (d.home / "config.toml").is_file()
    assert (d.home / "data").is_dir()
    assert d.socket == d.home / "run" / "agctl.sock"
    assert stat.S_ISSOCK(d.socket.lstat().st_mode)
    assert _mode(d.socket) == 0o600
    assert _mode(d.socket.parent) == 0o700
    assert _mode(d.home / "data") == 0o700
    assert _mode(d.home / "config.toml") == 0o600  # written by the daemon (first run, then sets)
    st = d.status["daemon"]
    assert (st["config_file"], st["data_dir"], st["socket"]) == (
        str(d.home / "config.toml"),
        str(d.home / "data"),
        str(d.socket),
    )


def test_start_stop_restart_transitions(idle: Daemon) -> None:
    d = idle
    port = d.status["proxy"]["port"]
    st = d.ctl_json("status")["proxy"]
    assert (st["state"], st["reason"]) == ("stopped", "")
    assert refused(port)

    res = d.ctl("start")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"proxy running on http://127.0.0.1:{port}"
    assert d.status["proxy"]["state"] == "running"
    for path in ("/healthz", "/health"):
        r = httpx.get(f"http://127.0.0.1:{port}{path}")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert listening_addresses(port) in (None, {f"127.0.0.1:{port}"})

    res = d.ctl("start")
    assert res.returncode == 1 and "already running" in res.stderr

    res = d.ctl("stop")
    assert (res.returncode, res.stdout.strip()) == (0, "proxy stopped")
    assert d.status["proxy"]["state"] == "stopped"
    assert refused(port)
    assert d.proc is not None and d.proc.poll() is None  # the daemon and its admin socket stay up

    res = d.ctl("stop")
    assert res.returncode == 1 and "not running" in res.stderr

    st = d.ctl_json("restart")["proxy"]  # from stopped: starts
    assert st["state"] == "running"
    st2 = d.ctl_json("restart")["proxy"]  # from running: stops, then starts again
    assert st2["state"] == "running" and st2["since"] > st["since"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    log = d.log()
    for transition in (
        "stopped -> starting",
        "starting -> running",
        "running -> stopping",
        "stopping -> stopped",
    ):
        assert f"proxy {transition}" in log


def test_socket_flag_and_env_override(idle: Daemon, short_tmp: Path) -> None:
    d = idle
    assert d.proc is not None
    env = {**d.env, "ANTIGRAVITY_HOME": str(short_tmp / "elsewhere")}
    assert ctl(["status"], env).returncode == 3  # the default socket is not the daemon's
    res = ctl(["--socket", str(d.socket), "status", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["daemon"]["pid"] == d.proc.pid
    res = ctl(["status", "--socket", str(d.socket)], env)  # after the command too
    assert res.returncode == 0, res.stderr
    res = ctl(["status", "--json"], {**env, "AGCTL_SOCKET": str(d.socket)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["daemon"]["pid"] == d.proc.pid
    missing = short_tmp / "nope.sock"
    res = ctl(["--socket", str(missing), "status"], {**env, "AGCTL_SOCKET": str(d.socket)})
    assert res.returncode == 3 and str(missing) in res.stderr  # the flag wins over the env


def test_daemon_on_an_agctl_socket_path_leaves_its_directory_alone(make_daemon: Any, short_tmp: Path) -> None:
    """AGCTL_SOCKET moves the daemon's socket too; the directory it names may
    be shared (/tmp, $HOME): it must not be chmod-ed to 0700."""
    shared_dir = short_tmp / "shared"
    shared_dir.mkdir(mode=0o755)
    os.chmod(shared_dir, 0o755)
    sock = shared_dir / "ag.sock"
    d = make_daemon(serving_config(free_port(), proxy={"auto_start": False}), start=False)
    d.start(wait=False, extra_env={"AGCTL_SOCKET": str(sock)})
    deadline = time.monotonic() + 20
    while True:
        assert d.proc is not None and d.proc.poll() is None, d.log()
        assert time.monotonic() < deadline, d.log()
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(sock))
            break
        except OSError:
            time.sleep(0.02)
    res = ctl(["status", "--json"], {**d.env, "AGCTL_SOCKET": str(sock)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["daemon"]["socket"] == str(sock)
    assert _mode(sock) == 0o600
    assert _mode(shared_dir) == 0o755
    assert not d.socket.exists()
    assert d.stop() == 0
    assert not sock.exists()


def test_second_daemon_on_the_same_home_refuses(idle: Daemon) -> None:
    d1 = idle
    d1.admin("POST", "/proxy/start")
    config_before = (d1.home / "config.toml").read_bytes()
    d2 = Daemon(d1.home)
    d2.log_path = d1.home / "second.log"
    d2.start(wait=False)
    try:
        assert d2.proc is not None
        code = d2.proc.wait(timeout=20)
    finally:
        d2.stop()
    assert code == 1
    assert "another antigravityd is already running" in d2.log()
    assert "agctl shutdown" in d2.log()
    assert "loaded" not in d2.log()  # it refused before touching accounts or the monitor
    # the first one is untouched: its process, socket, proxy and config
    assert d1.proc is not None and d1.proc.poll() is None
    assert d1.ctl_json("status")["daemon"]["pid"] == d1.proc.pid
    assert d1.status["proxy"]["state"] == "running"
    assert (d1.home / "config.toml").read_bytes() == config_before


# ---------------------------------------------------------------- status; a request across SIGTERM


@pytest.fixture
def with_account(make_daemon: Any, fake: FakeGoogle) -> tuple[Daemon, str]:
    """A daemon serving one account of the fake, its proxy running."""
    email = "lifecycle@example.com"
    acct = fake.add_account(email=email)
    d = make_daemon(base_config(fake, free_port()))
    assert settled(d)["proxy"]["reason"] == NO_ACCOUNT  # auto-start found no account
    d.admin("POST", "/accounts", json={"refresh_token": acct.refresh_token})
    # The first account starts the proxy that waited only for it (proxy.auto_start).
    assert d.status["proxy"]["state"] == "running"
    return d, email


def test_status_text_and_json_fields(with_account: tuple[Daemon, str]) -> None:
    d, _ = with_account
    assert d.proc is not None
    port = d.status["proxy"]["port"]

    st = d.ctl_json("status")
    assert st["daemon"]["pid"] == d.proc.pid
    assert st["daemon"]["version"] == __version__
    assert 0 < st["daemon"]["uptime"] < 120
    p = st["proxy"]
    assert (p["state"], p["reason"]) == ("running", "")
    assert (p["host"], p["port"]) == ("127.0.0.1", port)
    assert p["base_url"] == f"http://127.0.0.1:{port}"
    assert (p["auth_mode"], p["auth_mode_setting"]) == ("off", "auto")  # auto resolved: no LAN
    assert p["restart_pending"] is False
    assert st["accounts"] == {"active": 1, "total": 1}
    acct_id = d.admin("GET", "/accounts")["accounts"][0]["id"]
    d.admin("POST", f"/accounts/{acct_id}/disable")
    try:
        res = d.ctl("status")
    finally:
        d.admin("POST", f"/accounts/{acct_id}/enable")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert re.search(
        rf"daemon\s+running\s+pid {d.proc.pid}\s+version {re.escape(__version__)}\s+up \d+s", out
    ), out
    assert re.search(r"proxy\s+running\n", out), out
    assert f"127.0.0.1:{port}  base URL http://127.0.0.1:{port}" in out
    assert re.search(r"auth\s+off \(auto: any key accepted while only 127\.0\.0\.1 listens\)", out), out
    assert re.search(r"accounts\s+0 active / 1 total", out), out
    assert d.status["daemon"]["uptime"] > st["daemon"]["uptime"]


def test_sigterm_lets_an_in_flight_request_finish(with_account: tuple[Daemon, str], fake: FakeGoogle) -> None:
    d, email = with_account
    port = d.status["proxy"]["port"]
    fake.script([Reply.silence(2.0)], email=email)
    n_calls = len(fake.calls)
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["resp"] = httpx.post(
                f"http://127.0.0.1:{port}/v1beta/models/gemini-3-flash:generateContent",
                json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                timeout=30,
            )
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not any(c.email == email and c.method == "generateContent" for c in fake.calls[n_calls:]):
            assert time.monotonic() < deadline, "the request never reached the fake"
            time.sleep(0.01)
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        # New connections are refused while the old request is still running.
        deadline = time.monotonic() + 1.5
        while not refused(port):
            assert time.monotonic() < deadline, "the proxy still accepts connections after SIGTERM"
            time.sleep(0.02)
        got = result["resp"].text[:600] if "resp" in result else result
        assert t.is_alive(), f"the in-flight request ended before the listener closed: {got}"
    finally:
        t.join(30)
    assert "error" not in result, result.get("error")
    resp = result["resp"]
    assert resp.status_code == 200, resp.text
    assert email in resp.json()["candidates"][0]["content"]["parts"][0]["text"]
    assert d.proc.wait(timeout=15) == 0
    assert not d.socket.exists()
    assert "antigravityd stopped" in d.log() and "Traceback" not in d.log()


# ---------------------------------------------------------------- start errors; shutdown; SIGINT


def test_no_account_start_fails_until_zai_is_enabled_then_agctl_shutdown(make_daemon: Any) -> None:
    port = free_port()
    d = make_daemon(base_config(None, port))
    st = settled(d)["proxy"]
    assert (st["state"], st["reason"]) == ("stopped", NO_ACCOUNT)  # auto-start could not serve

    res = d.ctl("start")
    assert res.returncode == 1
    assert res.stderr.strip() == f"agctl: {NO_ACCOUNT}"
    res = d.ctl("start", "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["error"] == {"kind": "no_account", "message": NO_ACCOUNT}
    assert refused(port)

    for key, value in (
        ("zai.enabled", "true"),
        ("zai.api_key", "sk-zai-test-0123456789"),
        ("zai.base_url", DEAD_URL),
        ("zai.dispatch_mode", "pooled"),
    ):
        d.admin("PUT", f"/config/{key}", json={"value": value})
    res = d.ctl("start")
    assert res.returncode == 0, res.stderr
    assert d.status["proxy"]["state"] == "running"
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}

    res = d.ctl("shutdown")
    assert res.returncode == 0, res.stderr
    assert d.proc is not None
    assert res.stdout.strip() == f"antigravityd (pid {d.proc.pid}) stopped"
    assert d.proc.wait(timeout=15) == 0
    assert not d.socket.exists()
    assert refused(port)
    assert d.ctl("status").returncode == 3


def test_taken_port_fails_auto_start_and_agctl_start_then_sigint_stops_cleanly(
    make_daemon: Any,
) -> None:
    taken = taken_port()
    port = taken.getsockname()[1]
    try:
        d = make_daemon(serving_config(port))  # auto_start on
        st = settled(d)["proxy"]
        assert (st["state"], st["reason"]) == ("failed", bind_message(port))
        assert bind_message(port) in d.log()

        res = d.ctl("start")
        assert res.returncode == 1
        assert res.stderr.strip() == f"agctl: {bind_message(port)}"
        st = d.ctl_json("status")["proxy"]
        assert (st["state"], st["reason"]) == ("failed", bind_message(port))
        assert f"proxy    failed ({bind_message(port)})" in d.ctl("status").stdout
        assert d.proc is not None and d.proc.poll() is None
    finally:
        taken.close()
    st = d.ctl_json("start")["proxy"]  # failed -> starting is allowed
    assert (st["state"], st["reason"]) == ("running", "")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

    assert d.stop(signal.SIGINT) == 0
    assert not d.socket.exists()
    assert refused(port)
    assert "antigravityd stopped" in d.log() and "Traceback" not in d.log()


# ---------------------------------------------------------------- LAN; SIGTERM


def test_lan_access_binds_all_interfaces_then_sigterm_stops_cleanly(make_daemon: Any) -> None:
    port = free_port()
    d = make_daemon(serving_config(port, proxy={"allow_lan_access": True}))  # auto_start on
    p = settled(d)["proxy"]
    assert (p["state"], p["host"], p["port"]) == ("running", "0.0.0.0", port)
    assert (p["auth_mode"], p["auth_mode_setting"]) == ("all_except_health", "auto")
    assert listening_addresses(port) in (None, {f"0.0.0.0:{port}"})
    lan = lan_address()
    if lan is not None:
        status, _, body = raw_http(port, "/healthz", host=lan)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert raw_http(port, "/v1/models")[0] == 401

    # LAN off while still bound to 0.0.0.0: auth must not drop to "off" before the restart.
    d.admin("PUT", "/config/proxy.allow_lan_access", json={"value": "false"})
    p = d.status["proxy"]
    assert (p["host"], p["restart_pending"], p["auth_mode"]) == (
        "0.0.0.0",
        True,
        "all_except_health",
    )
    assert raw_http(port, "/v1/models")[0] == 401

    assert d.ctl("restart").returncode == 0
    p = d.status["proxy"]
    assert (p["host"], p["restart_pending"], p["auth_mode"]) == ("127.0.0.1", False, "off")
    assert listening_addresses(port) in (None, {f"127.0.0.1:{port}"})
    if lan is not None:
        assert refused(port, host=lan)
    assert raw_http(port, "/v1/models")[0] == 200

    assert d.stop(signal.SIGTERM) == 0
    assert not d.socket.exists()
    assert refused(port)


# ---------------------------------------------------------------- stale sockets


def start_over_stale_socket(d: Daemon) -> None:
    """Start ``d`` where a dead socket file lies, and wait for its own socket.

    (Polling the stale file with httpx would leak the socket of each refused
    connect: httpcore does not close it, and ResourceWarnings fail tests.)"""
    d.start(wait=False)
    deadline = time.monotonic() + 20
    while True:
        assert d.proc is not None and d.proc.poll() is None, d.log()
        assert time.monotonic() < deadline, d.log()
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(d.socket))
            break
        except OSError:
            time.sleep(0.02)
    d.wait_ready()


def test_stale_sockets_are_replaced(make_daemon: Any, short_tmp: Path) -> None:
    home = short_tmp / "stale"
    run = home / "run"
    run.mkdir(parents=True, mode=0o700)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(run / "agctl.sock"))
    s.close()  # left behind, nobody listening
    d1 = make_daemon(serving_config(free_port(), proxy={"auto_start": False}), home=home, start=False)
    start_over_stale_socket(d1)
    assert d1.ctl("status").returncode == 0
    assert _mode(d1.socket) == 0o600
    assert "removing stale admin socket" in d1.log()

    assert d1.proc is not None
    d1.proc.kill()  # a crash: no cleanup
    d1.proc.wait()
    assert d1.socket.exists()
    d2 = make_daemon(home=home, start=False)
    start_over_stale_socket(d2)
    assert d2.ctl_json("status")["daemon"]["pid"] == d2.proc.pid
