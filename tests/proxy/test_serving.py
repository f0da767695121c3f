"""Issue 4: serving through the pool — the google-genai SDK end to end,
failover, cooldowns, sticky sessions, disconnects, stream failures."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import types

from tests.conftest import ACCOUNTS, Daemon, base_config, free_port
from tests.fakes.google import FakeGoogle, Reply

GEN = "/v1beta/models/gemini-3-flash:generateContent"
STREAM = "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse"


def body(text: str = "hi") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def post(d: Daemon, path: str, payload: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(
        d.base_url + path, json=payload, headers={"x-goog-api-key": d.api_key}, timeout=30, **kw
    )


def served_by(resp: httpx.Response) -> str:
    text = resp.json()["candidates"][0]["content"]["parts"][0]["text"]
    return next(e for e in ACCOUNTS if e in text)


def account(d: Daemon, email: str) -> dict[str, Any]:
    accts = d.admin("GET", "/accounts")["accounts"]
    return next(a for a in accts if a["email"] == email)


def genai_client(d: Daemon) -> genai.Client:
    return genai.Client(api_key=d.api_key, http_options={"base_url": d.base_url})


# ---------------------------------------------------------------- google-genai SDK


def test_genai_generate_stream_count_and_models(proxy: Daemon, fake: FakeGoogle) -> None:
    client = genai_client(proxy)
    r = client.models.generate_content(model="gemini-3-flash", contents="Hello")
    assert r.text and "Hello from gemini-3-flash" in r.text
    assert r.usage_metadata is not None and r.usage_metadata.prompt_token_count

    fake.script([Reply.text("one two three four", chunks=4)])
    pieces = [c.text for c in client.models.generate_content_stream(model="gemini-3-flash", contents="Hello")]
    assert len(pieces) == 4 and "".join(p or "" for p in pieces) == "one two three four"

    counted = client.models.count_tokens(model="gemini-3-flash", contents="Hello there")
    from tests.fakes.google import count_tokens

    sent = fake.calls[-1].body["request"]
    assert counted.total_tokens == count_tokens(sent)

    names = [m.name for m in client.models.list()]
    assert "models/gemini-3-flash" in names
    assert not any("chat_20706" in (n or "") for n in names)  # internal models hidden


def test_genai_tool_round_trip_keeps_signature(proxy: Daemon, fake: FakeGoogle) -> None:
    client = genai_client(proxy)
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="weather for a city",
                parameters_json_schema={
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            )
        ]
    )
    cfg = types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    fake.script([Reply.function_call("get_weather", {"city": "Paris"})])
    r = client.models.generate_content(model="gemini-3-flash", contents="weather in Paris?", config=cfg)
    assert r.function_calls and r.function_calls[0].name == "get_weather"
    assert r.function_calls[0].args == {"city": "Paris"}
    history = [
        types.Content(role="user", parts=[types.Part(text="weather in Paris?")]),
        r.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(name="get_weather", response={"temp": 20})
                )
            ],
        ),
    ]
    fake.script([Reply.text("It is 20 degrees.")])
    r2 = client.models.generate_content(model="gemini-3-flash", contents=history, config=cfg)
    assert r2.text == "It is 20 degrees."
    sent = fake.calls[-1].body["request"]
    # The schema was cleaned for Gemini, the signature went back on the call.
    params = sent["tools"][0]["functionDeclarations"][0]["parameters"]
    assert "$schema" not in params and "additionalProperties" not in params
    call_part = sent["contents"][1]["parts"][0]
    assert (
        call_part["thoughtSignature"] and call_part["thoughtSignature"] != "skip_thought_signature_validator"
    )


def test_gemini_json_array_stream_and_sse(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.text("a b c", chunks=3)])
    r = post(proxy, "/v1beta/models/gemini-3-flash:streamGenerateContent", body())
    assert r.status_code == 200
    chunks = json.loads(r.text)
    assert isinstance(chunks, list) and len(chunks) == 3
    fake.script([Reply.text("a b c", chunks=3)])
    r = post(proxy, STREAM, body())
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert len(events) == 3 and events[-1]["candidates"][0]["finishReason"] == "STOP"


def test_unknown_model_lists_available(proxy: Daemon) -> None:
    r = post(proxy, "/v1beta/models/not-a-model-x:generateContent", body())
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["status"] == "NOT_FOUND" and "gemini-3-flash" in err["message"]


def test_bad_json_is_a_gemini_400(proxy: Daemon) -> None:
    r = httpx.post(
        proxy.base_url + GEN,
        content=b"{nope",
        headers={"x-goog-api-key": proxy.api_key, "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = post(proxy, GEN, {"contents": []})
    assert r.status_code == 400 and "contents" in r.json()["error"]["message"]


# ---------------------------------------------------------------- failover


def test_failover_two_of_three_fail(proxy: Daemon, fake: FakeGoogle) -> None:
    a, b, c = ACCOUNTS
    fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="1h")], email=a)
    fake.script([Reply.error(500)], email=b)
    fake.script([Reply.error(503)], email=b)
    served = set()
    for _ in range(3):
        r = post(proxy, GEN, body())
        assert r.status_code == 200, r.text
        served.add(served_by(r))
    assert a not in served
    # QUOTA_EXHAUSTED empties the whole quota group (UPSTREAM.md §9.1): a cools
    # down for every Gemini model, visible in the accounts list.
    acct = account(proxy, a)
    assert acct["state"] == "cooling_down" and set(acct["cooldowns"]) == {"group:gemini"}
    until = acct["cooldowns"]["group:gemini"]["until"]
    assert 3500 < until - time.time() <= 3600
    # Another Gemini model does not use it either ...
    other = {
        served_by(post(proxy, "/v1beta/models/gemini-2.5-flash:generateContent", body())) for _ in range(3)
    }
    assert a not in other
    # ... but a model of the other group (Claude) still does.
    fake.script([Reply.text("fine")], email=a)
    ok = [post(proxy, "/v1beta/models/claude-sonnet-4-6:generateContent", body()) for _ in range(3)]
    assert all(r.status_code == 200 for r in ok)
    assert any(r.json()["candidates"][0]["content"]["parts"][0]["text"] == "fine" for r in ok)
    res = proxy.ctl("accounts", "reset", a)
    assert res.returncode == 0, res.stderr
    assert account(proxy, a)["state"] == "active"


def test_short_rate_limit_waits_for_the_same_account(proxy: Daemon, fake: FakeGoogle) -> None:
    """A rate limit under 3 seconds is waited out on the same account, which
    gets no cooldown (UPSTREAM.md §9.2)."""
    for email in ACCOUNTS:
        fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="0.5s")], email=email)
    r = post(proxy, GEN, body())
    assert r.status_code == 200, r.text
    gens = fake.calls_to("generateContent")
    assert [c.email for c in gens[-2:]] == [served_by(r)] * 2  # the same account, twice
    assert all(account(proxy, e)["state"] == "active" for e in ACCOUNTS)


def test_cooldown_expires_on_time(proxy: Daemon, fake: FakeGoogle) -> None:
    a = ACCOUNTS[0]
    # 3 s or more: no longer waited out on the account, a per-model cooldown (§9.2).
    for email in ACCOUNTS:
        fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="3.2s")], email=email)
    r = post(proxy, GEN, body())
    assert r.status_code in (429, 503)
    assert r.json()["error"]["status"] in ("RESOURCE_EXHAUSTED", "UNAVAILABLE")
    assert "retry-after" in r.headers and 3 <= int(r.headers["retry-after"]) <= 4
    acct = account(proxy, a)
    assert acct["state"] == "cooling_down" and set(acct["cooldowns"]) == {"gemini-3-flash"}
    time.sleep(3.4)
    assert account(proxy, a)["state"] == "active"
    r = post(proxy, GEN, body())
    assert r.status_code == 200


def test_capacity_exhausted_is_not_the_accounts_fault(proxy: Daemon, fake: FakeGoogle) -> None:
    a = ACCOUNTS[0]
    fake.script([Reply.error(429, reason="MODEL_CAPACITY_EXHAUSTED")], email=a)
    for _ in range(3):
        assert post(proxy, GEN, body()).status_code == 200
    assert account(proxy, a)["state"] == "active"


def test_all_quota_exhausted_says_until_when(proxy: Daemon, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="2h")], email=email)
    r = httpx.post(
        proxy.base_url + "/v1/messages",
        json={"model": "gemini-3-flash", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": proxy.api_key, "anthropic-version": "2023-06-01"},
    )
    assert r.status_code in (429, 503)
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] in ("rate_limit_error", "overloaded_error")
    assert "until" in err["error"]["message"] and "gemini-3-flash" in err["error"]["message"]
    assert int(r.headers["retry-after"]) > 3600


def test_401_refreshes_once_then_serves(proxy: Daemon, fake: FakeGoogle) -> None:
    before = fake.token_calls
    fake.expire_tokens()
    try:
        r = post(proxy, GEN, body())
        assert r.status_code == 200
        assert fake.token_calls - before == 1
    finally:
        # The shared daemon's other accounts still hold expired tokens: fresh
        # ones, so the next test (of any file on this worker) sees no 401 first.
        proxy.admin("POST", "/accounts-refresh")


def test_empty_stream_fails_over(proxy: Daemon, fake: FakeGoogle) -> None:
    a = ACCOUNTS[0]
    fake.script([Reply.empty()], email=a)
    fake.script([Reply.empty()])
    for _ in range(3):
        r = post(proxy, STREAM, body())
        assert r.status_code == 200
        assert "Hello from" in r.text or "data:" in r.text
        assert '"error"' not in r.text


def test_stream_broken_after_first_byte_ends_with_error_event(proxy: Daemon, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        fake.script([Reply.drop_after(1, then=None) if False else Reply.drop_after(1)], email=email)
    r = post(proxy, STREAM, body())
    assert r.status_code == 200
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert "candidates" in events[0]
    assert events[-1]["error"]["code"] >= 500


def test_openai_stream_error_after_first_byte(proxy: Daemon, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        fake.script([Reply.drop_after(1)], email=email)
    r = httpx.post(
        proxy.base_url + "/v1/chat/completions",
        json={"model": "gemini-3-flash", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {proxy.api_key}"},
    )
    datas = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert any('"error"' in d for d in datas), r.text


# ---------------------------------------------------------------- disconnects, back-pressure


def test_client_disconnect_cancels_upstream(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.text("x " * 50, chunks=50, delay=0.1)] * 3)
    with httpx.Client(timeout=10) as c:
        with c.stream(
            "POST", proxy.base_url + STREAM, json=body(), headers={"x-goog-api-key": proxy.api_key}
        ) as r:
            it = r.iter_lines()
            first = next(line for line in it if line.startswith("data:"))
            assert first
    deadline = time.time() + 3
    while fake.streams_cancelled < 1 and time.time() < deadline:
        time.sleep(0.02)
    assert fake.streams_cancelled >= 1
    assert fake.streams_open == 0


def test_chunks_are_forwarded_as_they_arrive(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.text("a b c d e", chunks=5, delay=0.3)])
    arrivals = []
    with httpx.Client(timeout=10) as c:
        with c.stream(
            "POST", proxy.base_url + STREAM, json=body(), headers={"x-goog-api-key": proxy.api_key}
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(g > 0.2 for g in gaps), gaps  # not buffered and sent at the end


def test_slow_reader_backpressure(proxy: Daemon, fake: FakeGoogle) -> None:
    """A client that reads nothing: the proxy must not read the whole upstream
    answer into memory; once the client reads, everything arrives intact."""
    big = "y" * 256 * 1024
    fake.script([Reply.text(big * 128, chunks=128)])  # 32 MiB in 128 events
    raw = socket.create_connection(("127.0.0.1", int(proxy.base_url.rsplit(":", 1)[1])))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    payload = json.dumps(body()).encode()
    raw.sendall(
        f"POST {STREAM} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {proxy.api_key}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    time.sleep(1.0)
    assert fake.streams_open == 1  # the upstream stream is held open, not drained
    got = bytearray()
    raw.settimeout(10)
    while b"0\r\n\r\n" not in got[-16:]:
        chunk = raw.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    raw.close()
    assert got.count(b"data:") == 128
    assert fake.streams_open == 0


# ---------------------------------------------------------------- sticky + persistence


@pytest.fixture
def sticky(fake: FakeGoogle, make_daemon: Any) -> Daemon:
    fake.reset()
    emails = ["s1@example.com", "s2@example.com", "s3@example.com"]
    for e in emails:
        fake.add_account(email=e)
    d = make_daemon(base_config(fake, free_port(), scheduling={"mode": "sticky"}))
    for e in emails:
        d.admin("POST", "/accounts", json={"refresh_token": fake.account(e).refresh_token})
    assert d.status["proxy"]["state"] == "running"  # started by the first account
    return d


def _who(resp: httpx.Response) -> str:
    text = resp.json()["candidates"][0]["content"]["parts"][0]["text"]
    return text.split("(")[1].rstrip(")")


def test_sticky_keeps_conversation_and_returns_after_failover(sticky: Daemon, fake: FakeGoogle) -> None:
    conv = body("a long conversation about sticky sessions")
    first = _who(post(sticky, GEN, conv))
    assert all(_who(post(sticky, GEN, conv)) == first for _ in range(4))
    other = {_who(post(sticky, GEN, body(f"another conversation {i}"))) for i in range(6)}
    assert len(other) >= 2  # new conversations spread over the pool
    # A short rate limit is waited out on the conversation's account (§9.2).
    fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="0.5s")], email=first)
    assert _who(post(sticky, GEN, conv)) == first
    # An empty quota moves the conversation, until the quota is back.
    fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="1s")], email=first)
    moved = _who(post(sticky, GEN, conv))
    assert moved != first
    time.sleep(1.2)
    assert _who(post(sticky, GEN, conv)) == first  # back once it can serve


def test_cooldowns_survive_restart(fake: FakeGoogle, make_daemon: Any, short_tmp: Any) -> None:
    fake.reset()
    fake.add_account(email="persist@example.com")
    home = short_tmp / "persist"
    cfg = base_config(fake, free_port())
    d = make_daemon(cfg, home=home)
    d.admin("POST", "/accounts", json={"refresh_token": fake.account("persist@example.com").refresh_token})
    assert d.status["proxy"]["state"] == "running"  # started by the first account
    fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="30m")])
    r = post(d, GEN, body())
    assert r.status_code in (429, 503)
    assert d.stop() == 0
    d2 = make_daemon(None, home=home)
    acct = d2.admin("GET", "/accounts")["accounts"][0]
    assert acct["state"] == "cooling_down"
    assert 1700 < acct["cooldowns"]["group:gemini"]["until"] - time.time() <= 1800


def test_many_concurrent_streams(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.text("p q r", chunks=3, delay=0.05)] * 60)

    async def one(client: httpx.AsyncClient) -> int:
        r = await client.post(STREAM, json=body(), headers={"x-goog-api-key": proxy.api_key})
        return r.text.count("data:")

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30) as client:
            return await asyncio.gather(*(one(client) for _ in range(60)))

    counts = asyncio.run(main())
    assert all(c >= 1 for c in counts)
    assert sum(counts) >= 60 * 3 - 3


def test_quota_rechecked_after_reset(fake: FakeGoogle, make_daemon: Any) -> None:
    """When a quota cooldown runs out the pool fetches quota before trusting
    the account: still empty -> a new cooldown until the reset it names;
    refilled -> served again. A cooldown never outlives the upstream's reset."""
    fake.reset()
    fake.add_account(email="q1@example.com")
    fake.add_account(email="q2@example.com")
    d = make_daemon(
        base_config(fake, free_port(), scheduling={"mode": "fixed", "fixed_account": "q1@example.com"})
    )
    for e in ("q1@example.com", "q2@example.com"):
        d.admin("POST", "/accounts", json={"refresh_token": fake.account(e).refresh_token})
    assert d.status["proxy"]["state"] == "running"  # started by the first account
    fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="1s")], email="q1@example.com")
    assert post(d, GEN, body()).status_code in (429, 503)
    fake.account("q1@example.com").set_quota("gemini-3-flash", 0.0, time.time() + 3600)
    time.sleep(1.1)
    before = len(fake.calls_to("fetchAvailableModels"))
    r = post(d, GEN, body())
    assert r.status_code in (429, 503)  # fixed mode: only q1, and it is still empty
    assert len(fake.calls_to("fetchAvailableModels")) == before + 1
    acct = next(a for a in d.admin("GET", "/accounts")["accounts"] if a["email"] == "q1@example.com")
    assert 3500 < acct["cooldowns"]["group:gemini"]["until"] - time.time() <= 3600
    assert int(r.headers["retry-after"]) > 3000
    # The quota comes back early (an admin refresh sees it): usable at once.
    fake.account("q1@example.com").set_quota("gemini-3-flash", 0.8)
    d.admin("POST", f"/accounts/{acct['id']}/refresh")
    r = post(d, GEN, body())
    assert r.status_code == 200 and "q1@example.com" in r.text
