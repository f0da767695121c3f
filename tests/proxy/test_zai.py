"""Issue 6: z.ai dispatch (UPSTREAM.md "z.ai") — modes off / exclusive /
pooled / fallback against a fake Anthropic-compatible z.ai server, with the
official `anthropic` SDK in front of the real daemon."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import Daemon, base_config, free_port, pooled_daemon, reactivate_accounts
from tests.fakes.google import FakeGoogle, Reply
from tests.fakes.zai import FakeZai, ZaiReply
from tests.fakes.zai import count_tokens as zai_count

GOOGLE = ("zai-g1@example.com", "zai-g2@example.com")
ZAI_KEY = "zai-test-key-0123"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def zai() -> Iterator[FakeZai]:
    with FakeZai(api_key=ZAI_KEY) as z:
        yield z


@pytest.fixture(scope="module")
def mixed(fake: FakeGoogle, zai: FakeZai) -> Iterator[Daemon]:
    """A daemon with two Google accounts and z.ai configured (mode set per test)."""
    for email in GOOGLE:
        fake.add_account(email=email)
    z = {"enabled": True, "api_key": ZAI_KEY, "base_url": zai.base_url, "dispatch_mode": "off"}
    with pooled_daemon(fake, GOOGLE, "ag-z-", zai=z) as d:
        yield d


def _mode(d: Daemon, fake: FakeGoogle, zai: FakeZai, mode: str) -> Daemon:
    fake.reset()
    zai.reset()
    reactivate_accounts(d)
    d.admin("PUT", "/config/zai.dispatch_mode", json={"value": mode})
    return d


@pytest.fixture
def sdk() -> Iterator[Any]:
    made: list[anthropic.Anthropic] = []

    def factory(d: Daemon) -> anthropic.Anthropic:
        c = anthropic.Anthropic(api_key=d.api_key, base_url=d.base_url, max_retries=0)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def google_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent")]


def is_zai(msg: anthropic.types.Message) -> bool:
    return "(z.ai)" in msg.content[0].text  # type: ignore[union-attr]


# ---------------------------------------------------------------- off


def test_off_never_calls_zai(mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any) -> None:
    d = _mode(mixed, fake, zai, "off")
    c = sdk(d)
    for _ in range(3):
        msg = c.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO)
        assert not is_zai(msg)
    with c.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=HELLO) as s:
        assert "Hello from claude-sonnet-4-6" in s.get_final_text()  # the live Sonnet (§4.1)
    assert c.messages.count_tokens(model="claude-sonnet-4-5", messages=HELLO).input_tokens > 0
    # Even with every Google account rate limited, z.ai stays out of it.
    # 30 s: a sub-3 s rate limit would be waited out on the same account (UPSTREAM.md §9.2).
    fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="30s") for _ in GOOGLE])
    with pytest.raises(anthropic.RateLimitError):
        c.messages.create(model="gemini-3-flash", max_tokens=50, messages=HELLO)
    assert zai.requests == []


# ---------------------------------------------------------------- exclusive


def test_exclusive_sends_everything_to_zai(mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any) -> None:
    d = _mode(mixed, fake, zai, "exclusive")
    c = sdk(d)
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {}}}]
    msg = c.messages.create(
        model="claude-sonnet-4-5-20250929",
        max_tokens=100,
        system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        tools=tools,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=HELLO,
        extra_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
    )
    assert msg.content[0].text == "Hello from glm-4.7 (z.ai)"  # type: ignore[union-attr]
    req = zai.messages_calls()[-1]
    assert req.path == "/api/anthropic/v1/messages"
    assert req.headers["x-api-key"] == ZAI_KEY  # the z.ai key, never the client's proxy key
    assert d.api_key not in str(req.headers)
    assert req.headers["anthropic-version"]  # the client's, passed on
    assert req.headers["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
    # The Anthropic body goes through as is, only the model is mapped.
    assert req.body["model"] == "glm-4.7"
    assert req.body["system"] == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]
    assert req.body["tools"] == tools and req.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert msg.usage.input_tokens == zai_count(req.body)

    c.messages.create(model="claude-haiku-4-5-20251001", max_tokens=10, messages=HELLO)
    assert zai.messages_calls()[-1].body["model"] == "glm-4.5-air"
    c.messages.create(model="glm-4.6", max_tokens=10, messages=HELLO)
    assert zai.messages_calls()[-1].body["model"] == "glm-4.6"

    n = c.messages.count_tokens(model="claude-opus-4-5", messages=HELLO)
    assert n.input_tokens == zai_count({"messages": HELLO})
    assert google_calls(fake) == [] and fake.calls_to("countTokens") == []


def test_exclusive_stream_is_relayed_byte_for_byte(
    mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any
) -> None:
    d = _mode(mixed, fake, zai, "exclusive")
    zai.script([ZaiReply.answer("streamed from glm, in pieces", chunks=5)])
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True, "messages": HELLO}
    with httpx.stream(
        "POST", d.base_url + "/v1/messages?beta=true", json=body, headers={"x-api-key": d.api_key}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        got = b"".join(r.iter_raw())
    assert got == zai.messages_calls()[-1].streamed
    assert b"event: ping" in got  # z.ai's own events pass untouched
    with sdk(d).messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO) as s:
        assert s.get_final_text() == "Hello from glm-4.7 (z.ai)"
        assert s.get_final_message().stop_reason == "end_turn"
    assert google_calls(fake) == []


def test_exclusive_errors(mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any) -> None:
    d = _mode(mixed, fake, zai, "exclusive")
    c = sdk(d)
    zai.script([ZaiReply.error(429, "slow down", retry_after=7)])
    with pytest.raises(anthropic.RateLimitError) as rl:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert rl.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert rl.value.response.headers["retry-after"] == "7"

    zai.script([ZaiReply.error(500, "boom")])
    with pytest.raises(anthropic.InternalServerError) as ie:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert ie.value.body["error"]["type"] == "api_error"  # type: ignore[index]

    zai.script([ZaiReply.error(529, "overloaded")])
    with pytest.raises(anthropic.OverloadedError):
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO, stream=True)

    zai.script([ZaiReply.error(400, "bad thing")])
    with pytest.raises(anthropic.BadRequestError) as br:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert "bad thing" in br.value.body["error"]["message"]  # type: ignore[index]

    # A wrong zai.api_key is the proxy's problem, not the client's: no 401
    # (Claude Code would ask its user to log in again).
    d.admin("PUT", "/config/zai.api_key", json={"value": "zai-wrong-key"})
    try:
        with pytest.raises(anthropic.InternalServerError) as auth:
            c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
        assert "zai.api_key" in auth.value.body["error"]["message"]  # type: ignore[index]
    finally:
        d.admin("PUT", "/config/zai.api_key", json={"value": ZAI_KEY})

    with pytest.raises(anthropic.NotFoundError):
        c.messages.create(model="gpt-4o", max_tokens=10, messages=HELLO)
    assert google_calls(fake) == []


# ---------------------------------------------------------------- pooled


def test_pooled_spreads_between_zai_and_google(
    mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any
) -> None:
    d = _mode(mixed, fake, zai, "pooled")
    c = sdk(d)
    served = [
        is_zai(c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)) for _ in range(6)
    ]
    # z.ai is one slot next to the two Google accounts.
    assert served.count(True) == 2 and len(zai.messages_calls()) == 2
    assert len(google_calls(fake)) == 4
    assert {c.email for c in google_calls(fake)} == set(GOOGLE)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_pooled_fails_over_to_google_when_zai_fails(
    mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any, stream: bool
) -> None:
    d = _mode(mixed, fake, zai, "pooled")
    c = sdk(d)
    zai.script([ZaiReply.error(500, "z.ai is down") for _ in range(5)])
    for _ in range(3):  # one of three goes to z.ai first
        if stream:
            with c.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO) as s:
                text = s.get_final_text()
        else:
            text = c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO).content[0].text  # type: ignore[union-attr]
        assert "Hello from claude-sonnet-4-6" in text  # served by the live Sonnet (§4.1)
    assert [r.status for r in zai.messages_calls()] == [500]
    assert len(google_calls(fake)) == 3


# ---------------------------------------------------------------- fallback


def test_fallback_uses_zai_only_when_google_cannot_serve(
    mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any
) -> None:
    d = _mode(mixed, fake, zai, "fallback")
    c = sdk(d)
    for _ in range(3):
        assert not is_zai(c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO))
    assert zai.requests == []

    # Every Google account answers 429: z.ai serves.
    fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="1h") for _ in GOOGLE])
    msg = c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert is_zai(msg)
    assert {c.email for c in google_calls(fake)} == set(GOOGLE)
    # Now the pool knows it is empty for that model: straight to z.ai, streamed too.
    before = len(google_calls(fake))
    with c.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO) as s:
        assert s.get_final_text() == "Hello from glm-4.7 (z.ai)"
    assert len(google_calls(fake)) == before
    assert len(zai.messages_calls()) == 2
    # count_tokens too, rather than an error that stops Claude Code.
    assert c.messages.count_tokens(model="claude-sonnet-4-5", messages=HELLO).input_tokens == zai_count(
        {"messages": HELLO}
    )
    # Other models still go to Google.
    assert not is_zai(c.messages.create(model="gemini-3-flash", max_tokens=10, messages=HELLO))


def test_fallback_when_zai_fails_too(mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any) -> None:
    d = _mode(mixed, fake, zai, "fallback")
    c = sdk(d)
    # 30 s: a sub-3 s rate limit would be waited out on the same account (UPSTREAM.md §9.2).
    fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="30s") for _ in GOOGLE])
    zai.script([ZaiReply.error(429, "z.ai busy too", retry_after=3)])
    with pytest.raises(anthropic.RateLimitError) as info:
        c.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert "z.ai busy too" in info.value.body["error"]["message"]  # type: ignore[index]
    assert len(zai.messages_calls()) == 1


def test_fallback_keeps_googles_error_for_models_zai_has_not(
    mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any
) -> None:
    """A gemini model has no glm-* counterpart: the client hears why Google
    could not serve (a 429), not a 404 from a fallback it never asked for."""
    d = _mode(mixed, fake, zai, "fallback")
    # 30 s: a sub-3 s rate limit would be waited out on the same account (UPSTREAM.md §9.2).
    fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="30s") for _ in GOOGLE])
    with pytest.raises(anthropic.RateLimitError) as info:
        sdk(d).messages.create(model="gemini-2.5-flash", max_tokens=10, messages=HELLO)
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert zai.requests == []


# ---------------------------------------------------------------- z.ai only


def _wait_running(d: Daemon) -> None:
    deadline = time.monotonic() + 10
    while (state := d.status["proxy"]["state"]) != "running":
        if state == "stopped":
            try:
                d.admin("POST", "/proxy/start")
            except Exception as exc:  # conftest.AdminError (pytest imports conftest by its own name)
                if getattr(exc, "status", None) != 409:  # 409: it was starting by itself
                    raise
        assert time.monotonic() < deadline, f"proxy is {state}: {d.status['proxy']}"
        time.sleep(0.05)


def test_zai_only_proxy_starts_and_serves(make_daemon: Any, zai: FakeZai, sdk: Any) -> None:
    """No Google account at all (and no [oauth]): the proxy starts and serves,
    in every mode that uses z.ai."""
    cfg = base_config(
        None,
        free_port(),
        proxy={"auth_mode": "strict"},
        zai={"enabled": True, "api_key": ZAI_KEY, "base_url": zai.base_url, "dispatch_mode": "fallback"},
    )
    d = make_daemon(cfg)
    _wait_running(d)
    c = sdk(d)
    for mode in ("fallback", "pooled", "exclusive"):
        zai.reset()
        d.admin("PUT", "/config/zai.dispatch_mode", json={"value": mode})
        assert is_zai(c.messages.create(model="claude-opus-4-5", max_tokens=10, messages=HELLO)), mode
        with c.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO) as s:
            assert s.get_final_text() == "Hello from glm-4.7 (z.ai)", mode
        n = c.messages.count_tokens(model="claude-sonnet-4-5", messages=HELLO)
        assert n.input_tokens == zai_count({"messages": HELLO}), mode
        assert [r.body["model"] for r in zai.messages_calls()] == ["glm-4.7", "glm-4.7"], mode


def test_fallback_takes_a_claude_name_google_does_not_serve(
    mixed: Daemon, fake: FakeGoogle, zai: FakeZai, sdk: Any
) -> None:
    """Google answers 404 for the name (the model left its catalog): in
    fallback mode z.ai, which has a model for it, answers, not the 404."""
    d = _mode(mixed, fake, zai, "fallback")
    fake.fail_next("NOT_FOUND")  # a 404 is not failed over: one account is asked
    msg = sdk(d).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert is_zai(msg)
    assert len(zai.messages_calls()) == 1 and len(google_calls(fake)) >= 1
    # Off: the 404 stands, in Anthropic's shape.
    d2 = _mode(mixed, fake, zai, "off")
    fake.fail_next("NOT_FOUND")
    with pytest.raises(anthropic.NotFoundError):
        sdk(d2).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    assert zai.messages_calls() == []  # (_mode reset it)
    fake.reset()  # nothing queued is left for the session's other tests
