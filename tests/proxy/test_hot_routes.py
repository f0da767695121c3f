"""The hot routes (daemon.proxy.hot_routes) answer the model traffic in front
of Litestar: what Litestar did for them must still hold — methods, unknown
paths, body limits, headers, request ids, and request ids (disconnects: test_reliability)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle

CHAT = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "hi"}]}


def addr(d: Daemon) -> tuple[str, int]:
    u = urlsplit(d.base_url)
    return str(u.hostname), int(u.port or 80)


def read_response(s: socket.socket) -> bytes:
    """One whole response (head and content-length body) off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def h(d: Daemon) -> dict[str, str]:
    return {"authorization": f"Bearer {d.api_key}"}


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
        ("/v1/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
    ],
)
def test_other_methods_are_405_in_the_callers_shape(proxy: Daemon, path: str, shape: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = httpx.request(method, proxy.base_url + path, headers=h(proxy), timeout=10)
        assert r.status_code == 405, r.text
        body = r.json()
        if shape == "anthropic":
            assert body["type"] == "error" and "POST" in body["error"]["message"]
        else:
            assert "POST" in body["error"]["message"]
        assert r.headers["x-request-id"].startswith("req_")


def test_gets_on_model_paths_still_reach_litestar(proxy: Daemon) -> None:
    r = httpx.get(proxy.base_url + "/v1beta/models/gemini-3-flash", headers={"x-goog-api-key": proxy.api_key})
    assert r.status_code == 200 and r.json()["name"] == "models/gemini-3-flash"
    r = httpx.get(proxy.base_url + "/v1/models/gemini-3-flash", headers=h(proxy))
    assert r.status_code == 200 and r.json()["id"] == "gemini-3-flash"


def test_deeper_model_paths_are_404_with_a_hint(proxy: Daemon) -> None:
    r = httpx.post(
        proxy.base_url + "/v1beta/models/a/b:generateContent",
        headers={"x-goog-api-key": proxy.api_key},
        json={"contents": []},
    )
    assert r.status_code == 404
    assert r.json()["error"]["status"] == "NOT_FOUND"


def test_headers_of_a_whole_answer(proxy: Daemon, fake: FakeGoogle) -> None:
    r = httpx.post(proxy.base_url + "/v1/chat/completions", headers=h(proxy), json=CHAT, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["x-antigravity-model"] == "gemini-3-flash"
    assert r.headers["x-request-id"].startswith("req_")


def test_headers_of_a_stream(proxy: Daemon, fake: FakeGoogle) -> None:
    with httpx.stream(
        "POST", proxy.base_url + "/v1/chat/completions", headers=h(proxy), json={**CHAT, "stream": True}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-request-id"].startswith("req_")
        assert "content-length" not in r.headers
        text = r.read().decode()
    assert text.rstrip().endswith("data: [DONE]")


def test_declared_body_over_the_limit_is_refused_before_reading(proxy: Daemon) -> None:
    limit = int(proxy.admin("GET", "/config/proxy.max_body_bytes")["value"])
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {proxy.api_key}\r\n"
        f"content-type: application/json\r\ncontent-length: {limit + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(addr(proxy), timeout=10) as s:
        s.sendall(head + b"{")  # the rest never comes: the answer must not wait for it
        data = read_response(s)
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert b"request_too_large" in data


def test_bad_content_length_is_a_400(proxy: Daemon) -> None:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {proxy.api_key}\r\n"
        "content-length: 12abc\r\n\r\n"
    ).encode()
    with socket.create_connection(addr(proxy), timeout=10) as s:
        s.sendall(head)
        data = read_response(s)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
