"""sd_notify and journald (issue 2).

The daemon runs with NOTIFY_SOCKET on our own AF_UNIX datagram socket (a
path, or '@' for the abstract namespace) and WATCHDOG_USEC set, once with
systemd-python's sd_notify and once with the pure-socket fallback
(ANTIGRAVITY_NO_SYSTEMD_PYTHON=1). No systemd runs here, so this socket is
the whole of systemd's side of the conversation.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import logs, sdnotify
from tests.conftest import Daemon, free_port
from tests.service.test_daemon import bind_message, serving_config, taken_port

HAVE_SYSTEMD_PYTHON = importlib.util.find_spec("systemd") is not None
needs_systemd_python = pytest.mark.skipif(
    not HAVE_SYSTEMD_PYTHON, reason="systemd-python is not installed (pip install -e '.[systemd]')"
)


class NotifyListener:
    """Systemd's end of NOTIFY_SOCKET: collects the datagrams the daemon sends."""

    def __init__(self, directory: Path, *, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"antigravity-test-{os.getpid()}-{secrets.token_hex(4)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages: list[dict[str, str]] = []

    def close(self) -> None:
        self.sock.close()

    def _read(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(msg)
        return msg

    def wait_for(self, key: str, value: str | None = None, timeout: float = 10.0) -> dict[str, str]:
        """The next message with ``key`` (= ``value``); earlier ones are kept in ``messages``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._read(left)
            if msg is not None and key in msg and (value is None or msg[key] == value):
                return msg
        raise AssertionError(f"no {key}={value or '*'} within {timeout}s; got {self.messages}")


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[NotifyListener]:
    n = NotifyListener(short_tmp, abstract=request.param == "abstract")
    try:
        yield n
    finally:
        n.close()


@pytest.mark.parametrize(
    "backend",
    [pytest.param("systemd-python", marks=needs_systemd_python), "socket"],
)
def test_notify_conversation(make_daemon: Any, listener: NotifyListener, backend: str) -> None:
    port = free_port()
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}
    if backend == "socket":
        env["ANTIGRAVITY_NO_SYSTEMD_PYTHON"] = "1"
    d: Daemon = make_daemon(serving_config(port), start=False, env=env)  # auto_start on
    d.start(wait=False)
    assert d.proc is not None

    ready = listener.wait_for("READY", "1", timeout=20)
    # READY=1 comes once the admin socket answers and the auto-started proxy runs.
    assert d.socket.exists()
    assert d.status["proxy"]["state"] == "running"
    assert ready["STATUS"] == f"proxy running on 127.0.0.1:{port}"
    assert ready["MAINPID"] == str(d.proc.pid)
    assert f"sd_notify via {backend}" in d.log()

    # WATCHDOG=1 about every WATCHDOG_USEC/2 (0.1 s) from the event loop.
    start = time.monotonic()
    for _ in range(3):
        listener.wait_for("WATCHDOG", "1", timeout=2)
    assert time.monotonic() - start < 2

    # STATUS= on every proxy state change.
    d.admin("POST", "/proxy/stop")
    listener.wait_for("STATUS", "proxy stopped")
    d.admin("POST", "/proxy/start")
    listener.wait_for("STATUS", f"proxy running on 127.0.0.1:{port}")
    d.admin("POST", "/proxy/stop")
    listener.wait_for("STATUS", "proxy stopped")
    taken = taken_port()
    try:
        d.admin("PUT", "/config/proxy.port", json={"value": str(taken.getsockname()[1])})
        # (conftest is imported twice, as `conftest` and `tests.conftest`: match on the fields)
        with pytest.raises(Exception) as exc:  # noqa: B017
            d.admin("POST", "/proxy/start")
        assert getattr(exc.value, "status", None) == 500
        listener.wait_for("STATUS", f"proxy failed: {bind_message(taken.getsockname()[1])}")
    finally:
        taken.close()
    d.admin("POST", "/proxy/stop")  # failed -> stopped
    listener.wait_for("STATUS", "proxy stopped")

    d.proc.send_signal(signal.SIGTERM)
    stopping = listener.wait_for("STOPPING", "1")
    assert stopping.get("STATUS") == "stopping"
    assert d.proc.wait(timeout=15) == 0
    assert "Traceback" not in d.log()


# ---------------------------------------------------------------- units (in process)


@pytest.mark.parametrize(
    "backend",
    [pytest.param("systemd-python", marks=needs_systemd_python), "socket"],
)
def test_notifier_backends_send_one_datagram(
    listener: NotifyListener, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    if backend == "socket":
        monkeypatch.setenv("ANTIGRAVITY_NO_SYSTEMD_PYTHON", "1")
    else:
        monkeypatch.delenv("ANTIGRAVITY_NO_SYSTEMD_PYTHON", raising=False)
    n = sdnotify.Notifier()
    assert (n.backend, n.enabled) == (backend, True)
    n.ready("proxy stopped")
    assert listener.wait_for("READY", "1") == {
        "READY": "1",
        "STATUS": "proxy stopped",
        "MAINPID": str(os.getpid()),
    }
    n.status("proxy running on 127.0.0.1:1")
    assert listener.wait_for("STATUS")["STATUS"] == "proxy running on 127.0.0.1:1"
    n.watchdog()
    assert listener.wait_for("WATCHDOG") == {"WATCHDOG": "1"}
    n.stopping()
    assert listener.wait_for("STOPPING") == {"STOPPING": "1", "STATUS": "stopping"}


def test_notifier_without_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = sdnotify.Notifier()
    assert not n.enabled
    n.ready("x")  # nothing to send to, nothing raised
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock")
    assert sdnotify._socket_notify("READY=1") is False  # a dead socket is logged, not raised


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.Notifier.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    assert sdnotify.Notifier.watchdog_interval() == pytest.approx(0.1)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert sdnotify.Notifier.watchdog_interval() == pytest.approx(30.0)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.Notifier.watchdog_interval() == pytest.approx(30.0)
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert sdnotify.Notifier.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert sdnotify.Notifier.watchdog_interval() is None


# ---------------------------------------------------------------- journald


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """logs.setup replaces the root logger's handlers: put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield root
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)


@needs_systemd_python
def test_journal_stream_selects_the_journal_handler(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from systemd.journal import JournalHandler

    monkeypatch.setenv("JOURNAL_STREAM", _stderr_stream())
    assert logs.setup("DEBUG") == "journald"
    (handler,) = root_logger.handlers
    assert isinstance(handler, JournalHandler)
    assert any(isinstance(f, logs.RedactingFilter) for f in handler.filters)
    assert root_logger.level == logging.DEBUG


def _stderr_stream() -> str:
    st = os.fstat(sys.stderr.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_journal_stream_of_another_stream_keeps_stderr(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A JOURNAL_STREAM inherited by a process whose stderr is elsewhere (a
    # terminal): systemd's rule is to log to the journal only when it matches.
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert logs.setup("INFO") == "stderr"


def test_stderr_without_journal_stream(root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert logs.setup("INFO") == "stderr"
    (handler,) = root_logger.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr


def test_journal_stream_without_systemd_python_falls_back_to_stderr(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _stderr_stream())
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails
    monkeypatch.setitem(sys.modules, "systemd", None)
    assert logs.setup("INFO") == "stderr"
    (handler,) = root_logger.handlers
    assert isinstance(handler, logging.StreamHandler)


def test_daemon_under_journald_reports_it_in_status(make_daemon: Any) -> None:
    if not HAVE_SYSTEMD_PYTHON:
        pytest.skip("systemd-python is not installed")
    d = make_daemon(serving_config(free_port(), proxy={"auto_start": False}), start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    d.log_path.touch()
    st = d.log_path.stat()  # the daemon's stderr is this file: as systemd would connect it
    d.start(extra_env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert d.status["daemon"]["logs"] == "journald"
