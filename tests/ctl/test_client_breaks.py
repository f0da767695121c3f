"""agctl when the admin socket answers and then the connection breaks: the
daemon stopped or restarted mid-call, or something else listens there.

A real Unix-socket server on a short path plays each break; the real agctl
runs against it. It must end with exit 1 and one line that says what
happened and what to check, never a Python traceback.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import _bin

Behaviour = Callable[[socket.socket], None]


def _close_at_once(conn: socket.socket) -> None:
    conn.recv(65536)


def _half_a_head(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-le")


def _short_body(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"a":')


def _stream_cut(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
        b'40\r\n{"ts": 1'
    )


class BreakingSocket:
    """Accepts on a Unix socket and plays ``behaviour`` on every connection."""

    def __init__(self, path: Path, behaviour: Behaviour) -> None:
        self.path = path
        self.behaviour = behaviour
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.served = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.behaviour(conn)
                except OSError:
                    pass
                self.served += 1

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def breaking(short_tmp: Path) -> Iterator[Callable[[Behaviour], BreakingSocket]]:
    made: list[BreakingSocket] = []

    def make(behaviour: Behaviour) -> BreakingSocket:
        server = BreakingSocket(short_tmp / f"b{len(made)}.sock", behaviour)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.mark.parametrize(
    ("behaviour", "argv"),
    [
        (_close_at_once, ["status"]),
        (_half_a_head, ["status"]),
        (_short_body, ["accounts", "list"]),
        (_stream_cut, ["logs", "--follow"]),
    ],
    ids=["closed-at-once", "half-a-head", "short-body", "follow-cut"],
)
def test_a_connection_that_breaks_off_is_one_clear_line(
    breaking: Callable[[Behaviour], BreakingSocket], behaviour: Behaviour, argv: list[str]
) -> None:
    server = breaking(behaviour)
    run = subprocess.run(
        [*_bin("agctl"), "--socket", str(server.path), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.served >= 1, "agctl never reached the socket"
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert "broke off" in run.stderr and "agctl status" in run.stderr, run.stderr


def test_json_mode_says_it_as_json(breaking: Callable[[Behaviour], BreakingSocket]) -> None:
    server = breaking(_half_a_head)
    run = subprocess.run(
        [*_bin("agctl"), "--socket", str(server.path), "--json", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert '"error"' in run.stdout + run.stderr and "broke off" in run.stdout + run.stderr
