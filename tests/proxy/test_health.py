"""Probes clients and monitors send: GET and HEAD on /healthz and on / (issue: small things clients do)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Daemon

KEY = {"authorization": "Bearer sk-test-0123456789abcdef"}  # the served daemon is strict


@pytest.mark.parametrize("path", ["/healthz", "/health", "/"])
def test_head_answers_like_get_without_a_body(proxy: Daemon, path: str) -> None:
    got = httpx.get(proxy.base_url + path, timeout=10, headers=KEY)
    head = httpx.head(proxy.base_url + path, timeout=10, headers=KEY)
    assert got.status_code == head.status_code == 200
    assert got.json()["status"] == "ok"
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]


def test_root_names_the_base_urls(proxy: Daemon) -> None:
    data = httpx.get(proxy.base_url + "/", timeout=10, headers=KEY).json()
    assert data["base_urls"]["openai"] == proxy.base_url + "/v1"
    assert data["base_urls"]["anthropic"] == proxy.base_url
