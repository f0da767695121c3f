"""Anthropic Messages <-> Gemini translation: golden cases plus checks with
the real anthropic SDK types and stream accumulation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from daemon import errors
from daemon.protocols import anthropic as A
from daemon.protocols import zai
from daemon.protocols.signatures import SignatureStore

GOLDEN = Path(__file__).parent.parent / "golden" / "anthropic"
CASES = sorted(GOLDEN.glob("*.json"))
EVENT = TypeAdapter(RawMessageStreamEvent)

SIG = "EqQBCkgIBxABGAIiQGZ4YW1wbGUtc2lnbmF0dXJlLWNsYXVkZS1BLXByb3h5LWlzc3VlZA=="
SIG2 = "EqQBCkgIBxABGAIiQGV4YW1wbGUtc2lnbmF0dXJlLWNsYXVkZS1CLXByb3h5LWlzc3VlZA=="


# ------------------------------------------------------------------ helpers


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def seeded(seed: dict[str, Any] | None) -> SignatureStore:
    store = SignatureStore()
    for sig, text in (seed or {}).get("thinking", {}).items():
        store.put_thinking(sig, text)
    for sig, family in (seed or {}).get("family", {}).items():
        store.put_family(sig, family)
    for call_id, sig in (seed or {}).get("tool", {}).items():
        store.put_tool_call(call_id, sig)
    return store


def assert_store(store: SignatureStore, expected: dict[str, Any]) -> None:
    for sig, text in expected.get("thinking", {}).items():
        assert store.thinking(sig) == text
    for sig, family in expected.get("family", {}).items():
        assert store.family(sig) == family
    for call_id, sig in expected.get("tool", {}).items():
        assert store.tool_call(call_id) == sig
    assert len(store) == sum(len(v) for v in expected.values())


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(lines) == {"event", "data"}
        events.append({"event": lines["event"], "data": json.loads(lines["data"])})
    assert raw.endswith(b"\n\n")
    return events


def run_stream(case: dict[str, Any], store: SignatureStore) -> bytes:
    call = A.to_gemini(case["client_request"], model=case["model"], store=store)
    call.extra[A.EXTRA_ID] = case["message_id"]
    tr = A.StreamTranslator(call, store)
    return tr.start() + b"".join(tr.feed(c) for c in case["chunks"]) + tr.finish()


def accumulate(events: list[dict[str, Any]]) -> Message:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for ev in events:
        if ev["event"] == "ping":
            continue
        snapshot = accumulate_event(
            event=EVENT.validate_python(ev["data"]), current_snapshot=snapshot, json_bufs=bufs
        )
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def body(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(over)
    return base


# ------------------------------------------------------------------- golden


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    case = load(path)
    store = seeded(case.get("store"))
    kind = case["kind"]
    if kind == "request":
        original = copy.deepcopy(case["request"])
        call = A.to_gemini(case["request"], model=case["model"], store=store)
        assert call.request == case["expected"]
        exp = case["expected_call"]
        got = {
            "client_model": call.client_model,
            "stream": call.stream,
            "session_key": call.session_key,
            "thinking": call.thinking,
            "extra": call.extra,
        }
        assert got == exp
        assert call.model == case["model"]
        assert case["request"] == original  # the client's body is not mutated
    elif kind == "count_tokens":
        assert A.count_tokens_request(case["request"], model=case["model"], store=store) == case["expected"]
    elif kind == "response":
        call = A.to_gemini(case["client_request"], model=case["model"], store=store)
        call.extra[A.EXTRA_ID] = case["message_id"]
        out = A.from_gemini(case["response"], call=call, store=store)
        assert out == case["expected"]
        Message.model_validate(out)
        assert_store(store, case["expected_store"])
    elif kind == "stream":
        events = parse_sse(run_stream(case, store))
        assert events == case["expected_events"]
        for ev in events:
            assert ev["event"] == ev["data"]["type"]
            EVENT.validate_python(ev["data"])
        assert_store(store, case["expected_store"])
    else:
        pytest.fail(f"unknown golden kind {kind!r}")


def test_golden_cases_cover_every_kind() -> None:
    kinds = {load(p)["kind"] for p in CASES}
    assert kinds == {"request", "count_tokens", "response", "stream"}
    for p in CASES:
        assert load(p)["description"]


# ------------------------------------------------ stream vs. SDK accumulation


STREAM_CASES = [p for p in CASES if p.stem.startswith("stream_")]


@pytest.mark.parametrize("path", STREAM_CASES, ids=lambda p: p.stem)
def test_stream_accumulates_like_non_stream(path: Path) -> None:
    """The SDK's accumulation of our stream equals from_gemini of the same parts."""
    case = load(path)
    message = accumulate(parse_sse(run_stream(case, seeded(case.get("store")))))

    merged = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [p for c in case["chunks"] for p in _parts(c)],
                },
                "finishReason": next(
                    c["candidates"][0]["finishReason"]
                    for c in reversed(case["chunks"])
                    if c.get("candidates") and c["candidates"][0].get("finishReason")
                ),
            }
        ],
        "usageMetadata": next(c["usageMetadata"] for c in reversed(case["chunks"]) if "usageMetadata" in c),
    }
    store = seeded(case.get("store"))
    call = A.to_gemini(case["client_request"], model=case["model"], store=store)
    call.extra[A.EXTRA_ID] = case["message_id"]
    assert message.model_dump(exclude_none=True) == Message.model_validate(
        A.from_gemini(merged, call=call, store=store)
    ).model_dump(exclude_none=True)


def _parts(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    cands = chunk.get("candidates") or [{}]
    return list(cands[0].get("content", {}).get("parts", []))


def _sdk_client(payload: bytes, *, stream: bool) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages"
        ctype = "text/event-stream" if stream else "application/json"
        return httpx2.Response(200, content=payload, headers={"content-type": ctype})

    return anthropic.Anthropic(
        api_key="test",
        base_url="http://gateway.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def test_sdk_message_stream_final_message() -> None:
    """Our SSE bytes through the SDK's own MessageStream (httpx2 MockTransport)."""
    case = load(GOLDEN / "stream_interleaved_thinking.json")
    store = seeded(case.get("store"))
    call = A.to_gemini(case["client_request"], model=case["model"], store=store)
    call.extra[A.EXTRA_ID] = case["message_id"]
    tr = A.StreamTranslator(call, store)
    raw = (
        tr.start()
        + tr.keepalive()
        + b"".join(tr.feed(c) + tr.keepalive() for c in case["chunks"])
        + tr.finish()
    )

    client = _sdk_client(raw, stream=True)
    req = case["client_request"]
    with client.messages.stream(
        model="claude-gateway-test", max_tokens=req["max_tokens"], messages=req["messages"]
    ) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "thinking", "tool_use"]
    assert final.content[0].type == "thinking" and final.content[0].signature == SIG
    assert final.content[0].thinking == "First, plan."
    assert final.content[2].type == "thinking" and final.content[2].signature == SIG2
    assert final.content[3].type == "tool_use" and final.content[3].input == {"command": "wc -l setup.py"}
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 100 and final.usage.output_tokens == 42


def test_sdk_create_non_stream() -> None:
    case = load(GOLDEN / "response_claude_thinking_tool_use.json")
    payload = json.dumps(case["expected"]).encode()
    client = _sdk_client(payload, stream=False)
    msg = client.messages.create(
        model="claude-gateway-test", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    assert msg.content[0].type == "thinking" and msg.content[0].signature == SIG
    assert msg.usage.cache_read_input_tokens == 1000


def test_sdk_stream_error_event_raises() -> None:
    call = A.to_gemini(body(stream=True), model="claude-sonnet-4-5", store=SignatureStore())
    tr = A.StreamTranslator(call, SignatureStore())
    raw = tr.feed({"candidates": [{"content": {"parts": [{"text": "par"}]}}]})
    raw += tr.fail(errors.Overloaded("the upstream is overloaded; retry in a moment"))
    assert tr.finish() == b""  # nothing after an error
    client = _sdk_client(raw, stream=True)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="claude-gateway-test", max_tokens=10, messages=[]) as s:
            s.get_final_message()
    assert "overloaded_error" in str(info.value)


# ------------------------------------------------------------ round trips


def test_claude_round_trip_omitted_thinking_restored_first() -> None:
    """Answer -> Claude Code sends it back with EMPTY thinking -> the next
    request restores the text from the store and puts the thought first."""
    store = SignatureStore()
    req = body(
        model="claude-sonnet-4-5",
        max_tokens=32000,
        thinking={"type": "enabled", "budget_tokens": 31999, "display": "omitted"},
        tools=[
            {
                "name": "Read",
                "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}},
            }
        ],
    )
    call = A.to_gemini(req, model="claude-sonnet-4-5-thinking", store=store)
    answer = A.from_gemini(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"text": "Read it.", "thought": True, "thoughtSignature": SIG},
                            {
                                "functionCall": {
                                    "name": "Read",
                                    "args": {"p": "x"},
                                    "id": "toolu_vrtx_9",
                                }
                            },
                        ]
                    },
                    "finishReason": "STOP",
                }
            ]
        },
        call=call,
        store=store,
    )
    # What an SDK client sends back: the answer's blocks, as returned.
    blocks = [b.model_dump(exclude_none=True) for b in Message.model_validate(answer).content]
    blocks[0]["thinking"] = ""  # display: omitted
    nxt = dict(req)
    nxt["messages"] = [
        *req["messages"],
        {"role": "assistant", "content": blocks},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_vrtx_9", "content": "data"}],
        },
    ]
    call2 = A.to_gemini(nxt, model="claude-sonnet-4-5-thinking", store=store)
    model_turn = call2.request["contents"][1]
    assert model_turn["parts"][0] == {"text": "Read it.", "thought": True, "thoughtSignature": SIG}
    assert model_turn["parts"][1]["functionCall"]["id"] == "toolu_vrtx_9"
    assert call2.thinking and "thinkingConfig" in call2.request["generationConfig"]


def test_restart_loses_signatures_turns_thinking_off() -> None:
    """After a proxy restart (empty store) the same history is unverifiable."""
    history = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "plan", "signature": SIG},
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
        },
    ]
    req = body(messages=history, thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=4096)
    call = A.to_gemini(req, model="claude-sonnet-4-5-thinking", store=SignatureStore())
    assert not call.thinking
    assert "thinkingConfig" not in call.request["generationConfig"]
    assert all(not p.get("thought") for c in call.request["contents"] for p in c["parts"])


def test_gemini_round_trip_signature_by_tool_id() -> None:
    """A client that drops thinking blocks still gets the signature back on the call."""
    store = SignatureStore()
    req = body(model="gemini-3-flash", tools=[{"name": "f", "input_schema": {"type": "object"}}])
    call = A.to_gemini(req, model="gemini-3-flash", store=store)
    tr = A.StreamTranslator(call, store)
    raw = tr.feed(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "gsig"}]
                    }
                }
            ]
        }
    )
    raw += tr.finish()
    tool = next(e["data"]["content_block"] for e in parse_sse(raw) if e["event"] == "content_block_start")
    req["messages"] = [
        *req["messages"],
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": tool["id"], "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "r"}],
        },
    ]
    call2 = A.to_gemini(req, model="gemini-3-flash", store=store)
    assert call2.request["contents"][1]["parts"][0]["thoughtSignature"] == "gsig"


# ------------------------------------------------------------ stream details


def test_stream_start_is_empty_and_keepalive_is_ping() -> None:
    call = A.to_gemini(body(stream=True), model="claude-sonnet-4-5", store=SignatureStore())
    tr = A.StreamTranslator(call, SignatureStore())
    assert tr.start() == b""
    assert tr.keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_stream_empty_upstream_still_well_formed() -> None:
    call = A.to_gemini(body(stream=True), model="claude-sonnet-4-5", store=SignatureStore())
    events = parse_sse(A.StreamTranslator(call, SignatureStore()).finish())
    assert [e["event"] for e in events] == ["message_start", "message_delta", "message_stop"]
    msg = accumulate(events)
    assert msg.content == [] and msg.stop_reason == "end_turn"


def test_stream_fail_shape() -> None:
    call = A.to_gemini(body(stream=True), model="claude-sonnet-4-5", store=SignatureStore())
    raw = A.StreamTranslator(call, SignatureStore()).fail(
        errors.RateLimited("quota exhausted", retry_after=3)
    )
    assert parse_sse(raw) == [
        {
            "event": "error",
            "data": {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "quota exhausted"},
            },
        }
    ]


def test_stream_prompt_blocked_is_refusal() -> None:
    call = A.to_gemini(body(stream=True), model="gemini-3-flash", store=SignatureStore())
    tr = A.StreamTranslator(call, SignatureStore())
    raw = tr.feed({"promptFeedback": {"blockReason": "SAFETY"}}) + tr.finish()
    assert accumulate(parse_sse(raw)).stop_reason == "refusal"


def test_non_stream_generates_message_id() -> None:
    call = A.to_gemini(body(), model="claude-sonnet-4-5", store=SignatureStore())
    out = A.from_gemini(
        {"candidates": [{"content": {"parts": [{"text": "hi"}]}}]},
        call=call,
        store=SignatureStore(),
    )
    assert out["id"].startswith("msg_") and len(out["id"]) == 28
    assert Message.model_validate(out).stop_reason == "end_turn"


# ----------------------------------------------------------- request details


def test_session_key_forms() -> None:
    def key(user_id: Any) -> str | None:
        req = body(metadata={"user_id": user_id})
        return A.to_gemini(req, model="claude-sonnet-4-5", store=SignatureStore()).session_key

    assert key(json.dumps({"device_id": "d", "session_id": "s-1"})) == "s-1"
    assert key(json.dumps({"device_id": "d"})) == json.dumps({"device_id": "d"})
    assert key("user_abc_account_u1_session_s-2") == "s-2"
    assert key("plain") == "plain"
    assert key(None) is None


@pytest.mark.parametrize(
    ("thinking", "effort", "max_tokens", "expected"),
    [
        ({"type": "adaptive"}, None, 64000, {"includeThoughts": True, "thinkingBudget": 24576}),
        ({"type": "adaptive"}, "max", 64000, {"includeThoughts": True, "thinkingBudget": 32768}),
        ({"type": "adaptive"}, "medium", 4000, {"includeThoughts": True, "thinkingBudget": 3999}),
        ({"type": "adaptive"}, "high", 800, None),  # no room for 1024 thinking tokens
        ({"type": "enabled", "budget_tokens": 512}, None, 4000, None),  # below the minimum
        ({"type": "disabled"}, "high", 4000, None),
        # Effort alone on a Gemini model: its thinking budget, thoughts kept out
        # of the answer (the client did not ask for thinking blocks).
        (None, "high", 4000, {"includeThoughts": False, "thinkingBudget": 24576}),
        (None, "low", 4000, {"includeThoughts": False, "thinkingBudget": 1024}),
        # An explicit budget wins over the effort.
        (
            {"type": "enabled", "budget_tokens": 2048},
            "max",
            4000,
            {"includeThoughts": True, "thinkingBudget": 2048},
        ),
    ],
)
def test_thinking_budgets(
    thinking: dict[str, Any] | None,
    effort: str | None,
    max_tokens: int,
    expected: dict[str, Any] | None,
) -> None:
    req = body(max_tokens=max_tokens)
    if thinking:
        req["thinking"] = thinking
    if effort:
        req["output_config"] = {"effort": effort}
    call = A.to_gemini(req, model="gemini-3-pro-high", store=SignatureStore())
    assert call.request["generationConfig"].get("thinkingConfig") == expected
    assert call.thinking == bool(expected and expected["includeThoughts"])


def test_effort_alone_on_claude_turns_nothing_on() -> None:
    """Claude would answer with thinking blocks the client never asked for
    (and could not send back in a tool loop): effort alone changes nothing."""
    req = body(max_tokens=4000, output_config={"effort": "high"})
    call = A.to_gemini(req, model="claude-sonnet-4-6", store=SignatureStore())
    assert "thinkingConfig" not in call.request["generationConfig"]
    assert not call.thinking


def test_claude_thinking_drops_sampling_anthropic_refuses() -> None:
    req = body(
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        temperature=0.2,
        top_k=5,
        top_p=0.5,
    )
    gen = A.to_gemini(req, model="claude-sonnet-4-5-thinking", store=SignatureStore()).request[
        "generationConfig"
    ]
    assert "temperature" not in gen and "topK" not in gen and "topP" not in gen
    req.update(temperature=1, top_p=0.97)
    gen = A.to_gemini(req, model="claude-sonnet-4-5-thinking", store=SignatureStore()).request[
        "generationConfig"
    ]
    assert gen["temperature"] == 1 and gen["topP"] == 0.97


def test_trailing_assistant_tool_use_gets_error_results() -> None:
    req = body(
        messages=[
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
            },
        ]
    )
    contents = A.to_gemini(req, model="claude-sonnet-4-5", store=SignatureStore()).request["contents"]
    assert contents[-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "f", "id": "t1", "response": {"error": A.MISSING_RESULT}}}],
    }


def test_count_tokens_needs_no_max_tokens() -> None:
    out = A.count_tokens_request(
        {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]},
        model="claude-sonnet-4-5",
        store=SignatureStore(),
    )
    assert out == {
        "request": {
            "model": "claude-sonnet-4-5",
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        }
    }


# ------------------------------------------------------------- bad requests


def _msgs(*content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(content)}]


@pytest.mark.parametrize(
    ("over", "param", "fragment"),
    [
        ({"max_tokens": None}, "max_tokens", "Field required"),
        ({"max_tokens": "10"}, "max_tokens", "valid integer"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"model": None}, "model", "Field required"),
        ({"messages": None}, "messages", "Field required"),
        ({"messages": []}, "messages", "at least 1 item"),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role",
            "'user', 'assistant' or 'system'",
        ),
        ({"messages": [{"role": "user"}]}, "messages.0.content", "Field required"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "valid string"),
        ({"messages": _msgs({"text": "x"})}, "messages.0.content.0.type", "Field required"),
        (
            {"messages": _msgs({"type": "text", "text": 3})},
            "messages.0.content.0.text",
            "valid string",
        ),
        ({"messages": _msgs({"type": "image"})}, "messages.0.content.0.source", "Field required"),
        (
            {"messages": _msgs({"type": "image", "source": {"type": "file", "file_id": "f"}})},
            "messages.0.content.0.source.type",
            "Files API",
        ),
        (
            {"messages": _msgs({"type": "image", "source": {"type": "base64", "data": "AA=="}})},
            "messages.0.content.0.source.media_type",
            "Field required",
        ),
        (
            {"messages": _msgs({"type": "tool_result"})},
            "messages.0.content.0.tool_use_id",
            "Field required",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}],
                    },
                ]
            },
            "messages.1.content.0.input",
            "valid dictionary",
        ),
        (
            {"messages": [{"role": "user", "content": ""}]},
            "messages",
            "must end with a user message",
        ),
        ({"system": [{"type": "image"}]}, "system.0.type", "'text'"),
        ({"tools": [{"description": "x"}]}, "tools.0.name", "Field required"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema", "Field required"),
        (
            {"tools": [{"name": "a b", "input_schema": {}}, {"name": "a/b", "input_schema": {}}]},
            "tools.1.name",
            "same upstream tool name",
        ),
        (
            {
                "tools": [{"name": "f", "input_schema": {}}],
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "tool_choice.name",
            "no tool named",
        ),
        (
            {"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "sometimes"}},
            "tool_choice.type",
            "'auto'",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens", "Field required"),
        ({"thinking": {"type": "on"}}, "thinking.type", "'enabled'"),
        ({"thinking": {"type": "adaptive", "display": "full"}}, "thinking.display", "'omitted'"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort", "'max'"),
        ({"temperature": "hot"}, "temperature", "valid number"),
        ({"top_k": 1.5}, "top_k", "valid integer"),
        ({"stop_sequences": "STOP"}, "stop_sequences", "list of strings"),
    ],
)
def test_bad_request_names_the_field(over: dict[str, Any], param: str, fragment: str) -> None:
    req = body()
    for k, v in over.items():
        if v is None:
            req.pop(k, None)
        else:
            req[k] = v
    with pytest.raises(errors.BadRequest) as info:
        A.to_gemini(req, model="claude-sonnet-4-5", store=SignatureStore())
    assert info.value.param == param
    assert info.value.message.startswith(f"{param}: ")
    assert fragment in info.value.message


def test_body_must_be_an_object() -> None:
    with pytest.raises(errors.BadRequest):
        A.to_gemini([], model="claude-sonnet-4-5", store=SignatureStore())  # type: ignore[arg-type]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (errors.BadRequest("x"), "invalid_request_error"),
        (errors.ConfigError("x"), "invalid_request_error"),
        (errors.AuthenticationError("x"), "authentication_error"),
        (errors.PermissionDenied("x"), "permission_error"),
        (errors.NotFound("x"), "not_found_error"),
        (errors.ModelNotFound("x"), "not_found_error"),
        (errors.Conflict("x"), "invalid_request_error"),
        (errors.PayloadTooLarge("x"), "request_too_large"),
        (errors.RateLimited("x"), "rate_limit_error"),
        (errors.NoAccountAvailable("x"), "overloaded_error"),
        (errors.UpstreamError("x"), "api_error"),
        (errors.UpstreamTimeout("x"), "timeout_error"),
        (errors.UpstreamUnavailable("x"), "api_error"),
        (errors.Overloaded("x"), "overloaded_error"),
        (errors.InternalError("x"), "api_error"),
    ],
)
def test_error_type(err: errors.GatewayError, expected: str) -> None:
    assert A.error_type(err) == expected
    assert A.error_body(err) == {"type": "error", "error": {"type": expected, "message": "x"}}


# --------------------------------------------------------------------- z.ai


@pytest.mark.parametrize(
    ("client_model", "expected"),
    [
        ("claude-opus-4-5-20251101", "glm-4.7"),
        ("claude-sonnet-4-5", "glm-4.7"),
        ("claude-3-5-haiku-20241022", "glm-4.5-air"),
        ("Claude-Haiku-4-5", "glm-4.5-air"),
        ("glm-4.6", "glm-4.6"),
        ("GLM-4.5-Flash", "GLM-4.5-Flash"),
    ],
)
def test_zai_model_defaults(client_model: str, expected: str) -> None:
    assert zai.zai_model(client_model, dict(zai.DEFAULT_MODELS)) == expected
    assert zai.zai_model(client_model, {}) == expected


def test_zai_model_custom_mapping_and_unknown() -> None:
    mapping = {"opus": "glm-5", "claude-opus-4-5": "glm-4.6", "sonnet": "glm-4.7"}
    assert zai.zai_model("claude-opus-4-5", mapping) == "glm-4.6"  # exact name first
    assert zai.zai_model("claude-opus-4-1", mapping) == "glm-5"
    with pytest.raises(errors.ModelNotFound) as info:
        zai.zai_model("gpt-4o", mapping)
    assert "zai.models" in info.value.message


def test_zai_request_body_only_changes_model() -> None:
    req = body(stream=True, thinking={"type": "enabled", "budget_tokens": 2048}, metadata={"user_id": "u"})
    out = zai.zai_request_body(req, "glm-4.7")
    assert out == {**req, "model": "glm-4.7"}
    assert req["model"] == "claude-sonnet-4-5"
