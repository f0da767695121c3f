"""Two upstream hosts, as the defaults have (daily, then prod: UPSTREAM.md
§1.1): which answers of the first host move the call to the second, and
which do not (§11: fail over on 429, 503 capacity and the network, not on
404). The first host is a small real HTTP server that answers every call
with one of Google's error bodies (tests/fakes/google.py ``error_body``);
the second is the fake Google. The real daemon, one account.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon, free_port, pooled_daemon
from tests.fakes.google import FakeGoogle, error_body

EMAIL = "hosts@example.com"


class FirstHost(ThreadingHTTPServer):
    """Answers every POST with ``error_body(self.kind)``, in one write."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.kind = "RESOURCE_EXHAUSTED"
        self.hits: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FirstHost

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.hits.append(self.path)
        status, body = error_body(self.server.kind, model="gemini-3-flash")
        raw = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def first() -> Iterator[FirstHost]:
    server = FirstHost()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def two_hosts(fake: FakeGoogle, first: FirstHost) -> Iterator[Daemon]:
    fake.add_account(email=EMAIL)
    endpoints = [first.url, fake.endpoint]
    with pooled_daemon(fake, [EMAIL], "ag-hosts-", upstream={"endpoints": endpoints}) as d:
        yield d


def chat(d: Daemon, text: str) -> httpx.Response:
    return httpx.post(
        d.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {d.api_key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def served_by_fake(fake: FakeGoogle, since: int) -> list[Any]:
    return [c for c in fake.calls[since:] if c.method == "generateContent"]


@pytest.mark.parametrize("kind", ["RESOURCE_EXHAUSTED", "MODEL_CAPACITY_EXHAUSTED"])
def test_a_throttle_or_no_capacity_moves_to_the_next_host(
    two_hosts: Daemon, fake: FakeGoogle, first: FirstHost, kind: str
) -> None:
    first.kind = kind
    hits, since = len(first.hits), len(fake.calls)
    r = chat(two_hosts, f"next host on {kind}")
    assert r.status_code == 200, r.text
    assert first.hits[hits:] == ["/v1internal:generateContent"]
    assert [c.status for c in served_by_fake(fake, since)] == [200]


def test_a_not_found_is_the_answer_and_no_other_host_is_asked(
    two_hosts: Daemon, fake: FakeGoogle, first: FirstHost
) -> None:
    first.kind = "NOT_FOUND"
    hits, since = len(first.hits), len(fake.calls)
    r = chat(two_hosts, "not found")
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"
    assert len(first.hits) == hits + 1
    assert served_by_fake(fake, since) == []


def test_a_host_that_cannot_be_reached_is_passed_over(fake: FakeGoogle) -> None:
    with socket.socket() as s:  # a port that was free: nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    email = "hosts-dead@example.com"
    fake.add_account(email=email)
    with pooled_daemon(fake, [email], "ag-hostsd-", upstream={"endpoints": [dead, fake.endpoint]}) as d:
        since = len(fake.calls)
        r = chat(d, "the first host is down")
        assert r.status_code == 200, r.text
        assert [c.status for c in served_by_fake(fake, since)] == [200]
