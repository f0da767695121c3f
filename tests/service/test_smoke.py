"""A first request end to end: daemon + fake Google + an SDK client."""

from __future__ import annotations

import httpx

from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle


def test_gemini_generate_through_pool(proxy: Daemon, fake: FakeGoogle) -> None:
    r = httpx.post(
        f"{proxy.base_url}/v1beta/models/gemini-3-flash:generateContent",
        headers={"x-goog-api-key": proxy.api_key},
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    text = body["candidates"][0]["content"]["parts"][0]["text"]
    assert "@example.com" in text
    assert r.headers["x-request-id"].startswith("req_")
    assert fake.calls[-1].method == "generateContent"
