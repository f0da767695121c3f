"""OpenAI protocol translation: golden files, plus shape checks against the
real ``openai`` SDK models and the SDK's own stream accumulators.

Golden files (tests/golden/openai_chat, tests/golden/openai_responses) are
one JSON object per case:

- request cases: ``request`` (+ ``history`` for Responses) -> ``expected``
  (the Gemini request), optionally ``expected_call`` (a subset of
  thinking / session_key / stream / extra);
- answer cases: ``client_request`` + ``response`` (an unwrapped Gemini
  answer) -> ``expected_answer``;
- stream cases: ``client_request`` + ``chunks`` -> ``expected_events`` (the
  SSE data objects in order, ``"[DONE]"`` as a string).

Any case may pre-seed the signature store (``store``: kind -> key -> value)
and check it afterwards (``expected_store``; a null value means absent).
``GOLDEN_UPDATE=1`` rewrites the expected parts from the current output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from daemon.errors import BadRequest, GatewayError, RateLimited, UpstreamError
from daemon.protocols import GeminiCall, common, openai_chat, openai_completions, openai_responses
from daemon.protocols.shared_extra import SKIP_SIGNATURE
from daemon.protocols.signatures import SignatureStore

GOLDEN = Path(__file__).parent.parent / "golden"
MODULES: dict[str, ModuleType] = {"openai_chat": openai_chat, "openai_responses": openai_responses}
FIXED_IDS = {"openai_chat": "chatcmpl-golden", "openai_responses": "resp_golden"}
CREATED = 1_700_000_000
UPDATE = os.environ.get("GOLDEN_UPDATE") == "1"

EVENT_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


# ---------------------------------------------------------------- harness


def golden_files() -> list[Any]:
    return [
        pytest.param(kind, path, id=f"{kind}/{path.stem}")
        for kind in MODULES
        for path in sorted((GOLDEN / kind).glob("*.json"))
    ]


def seeded_store(spec: dict[str, dict[str, str]]) -> SignatureStore:
    store = SignatureStore()
    for kind, entries in spec.items():
        for key, value in entries.items():
            store.put(kind, key, value)
    return store


def translate(kind: str, body: dict[str, Any], model: str, store: SignatureStore, **kw: Any) -> GeminiCall:
    call: GeminiCall = MODULES[kind].to_gemini(body, model=model, store=store, **kw)
    return call


def parse_sse(raw: bytes, *, named: bool) -> list[Any]:
    """SSE bytes -> data objects; checks each event's name equals its type."""
    events: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            continue  # a comment (keepalive)
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        if data == "[DONE]":
            events.append("[DONE]")
            continue
        obj = json.loads(data)
        if named:
            assert name == obj["type"], f"event name {name!r} != type {obj['type']!r}"
        else:
            assert name is None
        events.append(obj)
    return events


def run_stream(kind: str, call: GeminiCall, store: SignatureStore, chunks: list[dict[str, Any]]) -> bytes:
    t = MODULES[kind].StreamTranslator(call, store)
    raw = t.start()
    for chunk in chunks:
        raw += t.feed(chunk)
    return bytes(raw + t.finish())


def fixed(kind: str, call: GeminiCall) -> GeminiCall:
    call.extra.setdefault("id", FIXED_IDS[kind])
    call.extra.setdefault("created", CREATED)
    return call


def run_case(kind: str, case: dict[str, Any]) -> dict[str, Any]:
    """Everything a golden case checks, keyed like the case's expected fields."""
    store = seeded_store(case.get("store", {}))
    model = case["model"]
    actual: dict[str, Any] = {}
    if "request" in case:
        kw = {"history": case["history"]} if "history" in case else {}
        call = translate(kind, case["request"], model, store, **kw)
        actual["expected"] = call.request
        if "expected_call" in case:
            actual["expected_call"] = _call_subset(call, case["expected_call"])
    else:
        call = fixed(kind, translate(kind, case["client_request"], model, store))
        if "chunks" in case:
            raw = run_stream(kind, call, store, case["chunks"])
            actual["expected_events"] = parse_sse(raw, named=kind == "openai_responses")
        else:
            actual["expected_answer"] = MODULES[kind].from_gemini(case["response"], call=call, store=store)
    if "expected_store" in case:
        actual["expected_store"] = {
            k: {key: store.get(k, key) for key in entries} for k, entries in case["expected_store"].items()
        }
    return actual


def _call_subset(call: GeminiCall, wanted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        if key == "extra":
            out["extra"] = {k: call.extra.get(k) for k in value}
        else:
            out[key] = getattr(call, key)
    return out


@pytest.mark.parametrize(("kind", "path"), golden_files())
def test_golden(kind: str, path: Path) -> None:
    case = json.loads(path.read_text())
    actual = run_case(kind, case)
    if UPDATE:
        case.update(actual)
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
        return
    for key, value in actual.items():
        assert value == case[key], f"{path.name}: {key} differs"


def load_cases(kind: str, key: str) -> list[Any]:
    return [
        pytest.param(json.loads(p.read_text()), id=p.stem)
        for p in sorted((GOLDEN / kind).glob("*.json"))
        if key in json.loads(p.read_text())
    ]


# ------------------------------------------------------------ strict shapes


def assert_no_extra(value: Any, allowed: frozenset[str] = frozenset(), path: str = "$") -> None:
    """The SDK models allow unknown fields; fail on any, so a misspelt or
    invented field shows up (``allowed`` names deliberate extensions)."""
    if isinstance(value, pydantic.BaseModel):
        extra = set(value.model_extra or {}) - allowed
        assert not extra, f"{path} ({type(value).__name__}) has unknown fields {sorted(extra)}"
        for name in type(value).model_fields:
            assert_no_extra(getattr(value, name), allowed, f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_no_extra(item, allowed, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            assert_no_extra(item, allowed, f"{path}.{k}")


REASONING_CONTENT = frozenset({"reasoning_content"})  # the DeepSeek-style extension


@pytest.mark.parametrize("case", load_cases("openai_chat", "expected_answer"))
def test_chat_answer_validates_with_sdk(case: dict[str, Any]) -> None:
    completion = ChatCompletion.model_validate(case["expected_answer"], strict=True)
    assert_no_extra(completion, REASONING_CONTENT)


@pytest.mark.parametrize("case", load_cases("openai_chat", "expected_events"))
def test_chat_chunks_validate_and_accumulate_with_sdk(case: dict[str, Any]) -> None:
    events = case["expected_events"]
    assert events[-1] == "[DONE]"
    state = ChatCompletionStreamState()
    for event in events[:-1]:
        chunk = ChatCompletionChunk.model_validate(event, strict=True)
        assert_no_extra(chunk, REASONING_CONTENT)
        state.handle_chunk(chunk)
    # The snapshot, not get_final_completion(): that one raises on "length".
    final = state.current_completion_snapshot
    assert all(choice.finish_reason for choice in final.choices)
    for choice in final.choices:
        for call in choice.message.tool_calls or []:
            assert call.type == "function"
            json.loads(call.function.arguments)


@pytest.mark.parametrize("case", load_cases("openai_responses", "expected_answer"))
def test_responses_answer_validates_with_sdk(case: dict[str, Any]) -> None:
    response = Response.model_validate(case["expected_answer"], strict=True)
    assert_no_extra(response)


def _validate_event(event: dict[str, Any]) -> Any:
    parsed = EVENT_ADAPTER.validate_python(event, strict=True)
    assert parsed.type == event["type"], f"{event['type']} parsed as {type(parsed).__name__}"
    assert_no_extra(parsed)
    return parsed


@pytest.mark.parametrize("case", load_cases("openai_responses", "expected_events"))
def test_responses_events_validate_and_accumulate_with_sdk(case: dict[str, Any]) -> None:
    events = case["expected_events"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    for event in events:
        state.handle_event(_validate_event(event))
    last = events[-1]
    assert last["type"] in ("response.completed", "response.incomplete")
    # Every item announced is finished, in order, and the final object agrees.
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == last["response"]["output"]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == list(range(len(done)))


# --------------------------------------------------------- round trips


def test_gemini_signature_round_trip_through_the_store() -> None:
    store = SignatureStore()
    body = {
        "model": "gemini-3-flash",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [_TOOL],
    }
    call = fixed("openai_chat", translate("openai_chat", body, "gemini-3-flash", store))
    answer = openai_chat.from_gemini(_gemini_call_answer("sig-xyz", None), call=call, store=store)
    tool_call = answer["choices"][0]["message"]["tool_calls"][0]
    assert tool_call["id"].startswith("call_") and len(tool_call["id"]) == 29

    follow = {
        "model": "gemini-3-flash",
        "tools": [_TOOL],
        "messages": [
            *body["messages"],
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny"},
        ],
    }
    req = translate("openai_chat", follow, "gemini-3-flash", store).request
    assert req["contents"][1]["parts"][0]["thoughtSignature"] == "sig-xyz"
    # A fresh store (a restart) falls back to the validator skip.
    req = translate("openai_chat", follow, "gemini-3-flash", SignatureStore()).request
    assert req["contents"][1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE


def test_signature_from_the_other_family_is_not_restored() -> None:
    store = SignatureStore()
    store.put_tool_call("call_1", "claude-sig")
    store.put_family("claude-sig", "claude")
    body = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [_tool_call("call_1")]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]
    }
    req = translate("openai_chat", body, "gemini-3-flash", store).request
    assert req["contents"][1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE


def test_claude_thinking_round_trip_through_the_store() -> None:
    store = SignatureStore()
    body = {
        "model": "claude-sonnet-4-5",
        "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [_TOOL],
    }
    model = "claude-sonnet-4-5-thinking"
    call = fixed("openai_chat", translate("openai_chat", body, model, store))
    assert call.thinking
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "text": "I should call the tool.",
                            "thought": True,
                            "thoughtSignature": "claude-sig",
                        },
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Oslo"},
                                "id": "toolu_vrtx_01",
                            }
                        },
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    msg = openai_chat.from_gemini(answer, call=call, store=store)["choices"][0]["message"]
    follow = {
        **body,
        "messages": [
            *body["messages"],
            {"role": "assistant", "content": None, "tool_calls": msg["tool_calls"]},
            {"role": "tool", "tool_call_id": "toolu_vrtx_01", "content": "sunny"},
        ],
    }
    next_call = translate("openai_chat", follow, model, store)
    assert next_call.thinking
    assert next_call.request["contents"][1]["parts"][0] == {
        "text": "I should call the tool.",
        "thought": True,
        "thoughtSignature": "claude-sig",
    }
    assert next_call.request["contents"][1]["parts"][1]["functionCall"]["id"] == "toolu_vrtx_01"


def test_responses_encrypted_content_round_trips_without_server_state() -> None:
    body = {
        "model": "gemini-3-flash",
        "input": "weather?",
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "parameters": _TOOL["function"]["parameters"],
            }
        ],
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    store = SignatureStore()
    call = fixed("openai_responses", translate("openai_responses", body, "gemini-3-flash", store))
    resp = openai_responses.from_gemini(
        _gemini_call_answer("sig-enc", "thinking about it"), call=call, store=store
    )
    kinds = [item["type"] for item in resp["output"]]
    assert kinds == ["reasoning", "function_call"]
    assert resp["output"][0]["encrypted_content"].startswith(openai_responses.ENCRYPTED_PREFIX)

    fc = resp["output"][1]
    follow = {
        **body,
        "input": [
            *openai_responses.input_items(body),
            *openai_responses.output_items(resp),
            {"type": "function_call_output", "call_id": fc["call_id"], "output": "sunny"},
        ],
    }
    req = translate("openai_responses", follow, "gemini-3-flash", SignatureStore()).request
    model_turn = req["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": fc["call_id"]},
            "thoughtSignature": "sig-enc",
        }
    ]
    assert req["contents"][2]["parts"][0]["functionResponse"]["response"] == {"result": "sunny"}


def test_responses_stream_and_non_stream_give_the_same_response() -> None:
    body = {"model": "gemini-3-flash", "input": "hi", "tools": [_RESPONSES_TOOL], "stream": True}
    answer = _gemini_call_answer("sig-1", "hmm")
    answer["candidates"][0]["content"]["parts"].insert(1, {"text": "Checking."})
    call = fixed("openai_responses", translate("openai_responses", body, "gemini-3-flash", SignatureStore()))
    t = openai_responses.StreamTranslator(call, SignatureStore())
    t.feed(answer)
    t.finish()
    call2 = fixed("openai_responses", translate("openai_responses", body, "gemini-3-flash", SignatureStore()))
    assert t.response == openai_responses.from_gemini(answer, call=call2, store=SignatureStore())
    assert t.response_id == "resp_golden"


# ------------------------------------------------------------ failures, keepalive


def test_chat_stream_failure_raises_api_error_in_the_sdk() -> None:
    call = fixed("openai_chat", translate("openai_chat", _CHAT_BODY, "gemini-3-flash", SignatureStore()))
    t = openai_chat.StreamTranslator(call, SignatureStore())
    events = parse_sse(t.start() + t.fail(RateLimited("quota exhausted", retry_after=3)), named=False)
    assert events[-1] == "[DONE]"
    assert events[1] == {
        "error": {
            "message": "quota exhausted",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert t.keepalive() == b": keepalive\n\n"


def test_responses_stream_failure_is_a_valid_failed_event() -> None:
    call = fixed(
        "openai_responses",
        translate("openai_responses", {"input": "hi"}, "gemini-3-flash", SignatureStore()),
    )
    t = openai_responses.StreamTranslator(call, SignatureStore())
    raw = t.start() + t.feed({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]})
    raw += t.fail(RateLimited("quota exhausted", retry_after=42))
    events = parse_sse(raw, named=True)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    failed = _validate_event(events[-1])
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error.code == "rate_limit_exceeded"
    assert "try again in 42s" in failed.response.error.message
    other = openai_responses.StreamTranslator(call, SignatureStore()).fail(UpstreamError("boom"))
    assert parse_sse(other, named=True)[-1]["response"]["error"]["code"] == "server_error"
    assert t.keepalive() == b": keepalive\n\n"


# ----------------------------------------------------------------- completions


def test_completions_request_and_answer() -> None:
    body = {
        "model": "gemini-3-flash",
        "prompt": ["Say hi"],
        "max_tokens": 20,
        "stop": "\n",
        "temperature": 0,
    }
    call = openai_completions.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    assert call.request == {
        "contents": [{"role": "user", "parts": [{"text": "Say hi"}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": 20, "stopSequences": ["\n"]},
    }
    call.extra.update(id="cmpl-golden", created=CREATED)
    answer = openai_completions.from_gemini(_TEXT_ANSWER, call=call, store=SignatureStore())
    completion = Completion.model_validate(answer, strict=True)
    assert_no_extra(completion)
    assert completion.choices[0].text == "lo!"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 7


def test_completions_stream() -> None:
    body = {"prompt": "Say hi", "stream": True, "stream_options": {"include_usage": True}}
    call = openai_completions.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    call.extra.update(id="cmpl-golden", created=CREATED)
    t = openai_completions.StreamTranslator(call, SignatureStore())
    chunks = [
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "x", "thought": True}, {"text": "Hel"}],
                    }
                }
            ]
        },
        _TEXT_ANSWER,
    ]
    events = parse_sse(t.start() + b"".join(t.feed(c) for c in chunks) + t.finish(), named=False)
    assert [e if e == "[DONE]" else [c["text"] for c in e["choices"]] for e in events] == [
        ["Hel"],
        ["lo!"],
        [""],
        [],
        "[DONE]",
    ]
    final = Completion.model_validate(events[2], strict=True)
    assert final.choices[0].finish_reason == "length"
    assert events[3]["usage"]["total_tokens"] == 12


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "max_tokens": "10"}, "max_tokens"),
    ],
)
def test_completions_bad_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as exc:
        openai_completions.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    assert exc.value.param == param


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            "messages[1].role",
        ),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:nope"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            "messages[0].content[0].file.file_id",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c1", "type": "function", "function": {}}],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.name",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            },
                            {
                                "id": "c2",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{bad json"},
                            },
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[1].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {"role": "tool", "tool_call_id": "nope", "content": "x"},
                ]
            },
            "messages[1].tool_call_id",
        ),
        ({"messages": [{"role": "system", "content": "only rules"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": 5}, "stop"),
        (
            {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"},
            "reasoning_effort",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
            "response_format",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools[0].function.name",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": {"type": "function", "function": {"name": "b"}},
            },
            "tool_choice",
        ),
    ],
)
def test_chat_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as exc:
        openai_chat.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    assert exc.value.param == param
    assert param.split("[")[0] in exc.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "data:image/png;base64"}],
                    }
                ]
            },
            "input[0].content[0].image_url",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1"}]},
            "input[0].arguments",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "zzz", "output": "x"}]},
            "input[0].call_id",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": "x", "reasoning": {"effort": "ultra"}}, "reasoning.effort"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({"input": "x", "max_output_tokens": 1.5}, "max_output_tokens"),
    ],
)
def test_responses_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as exc:
        openai_responses.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    assert exc.value.param == param


def test_history_items_come_before_input() -> None:
    history: list[dict[str, Any]] = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "list files"}],
        },
        {
            "type": "function_call",
            "call_id": "call_h",
            "name": "shell",
            "arguments": '{"cmd":"ls"}',
        },
    ]
    body = {"input": [{"type": "function_call_output", "call_id": "call_h", "output": "a.txt"}]}
    req = openai_responses.to_gemini(
        body, model="gemini-3-flash", store=SignatureStore(), history=history
    ).request
    assert [c["role"] for c in req["contents"]] == ["user", "model", "user"]
    assert req["contents"][2]["parts"][0]["functionResponse"]["name"] == "shell"


# ------------------------------------------------------------------- data

_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
_RESPONSES_TOOL: dict[str, Any] = {"type": "function", **_TOOL["function"]}
_CHAT_BODY: dict[str, Any] = {
    "model": "gemini-3-flash",
    "messages": [{"role": "user", "content": "hi"}],
}
_TEXT_ANSWER: dict[str, Any] = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "lo!"}]}, "finishReason": "MAX_TOKENS"}],
    "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12},
}


def _tool_call(call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }


def _gemini_call_answer(signature: str, thought: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [] if thought is None else [{"text": thought, "thought": True}]
    parts.append(
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
            "thoughtSignature": signature,
        }
    )
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
    }


# ---------------------------------------------------- through the real SDK client


def _sdk(kind: str, model: str, chunks: list[dict[str, Any]], fail: Exception | None = None) -> Any:
    """An openai client (strict response validation) whose transport answers
    with this proxy's translation of canned upstream chunks."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        store = SignatureStore()
        call = fixed(kind, translate(kind, body, model, store))
        if not body.get("stream"):
            # One answer holding every chunk's parts, the last finish and usage.
            parts = [p for chunk in chunks for p in common.parts_of(chunk)]
            cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
            merged: dict[str, Any] = {"candidates": [cand]}
            for chunk in chunks:
                cand.update({k: v for k, v in common.candidate(chunk).items() if k != "content"})
                merged.update({k: v for k, v in chunk.items() if k != "candidates"})
            answer = MODULES[kind].from_gemini(merged, call=call, store=store)
            return httpx2.Response(200, json=answer)
        t = MODULES[kind].StreamTranslator(call, store)
        raw = t.start() + b"".join(t.feed(c) for c in chunks)
        raw += t.fail(fail) if isinstance(fail, GatewayError) else t.finish()
        return httpx2.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://proxy.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
        _strict_response_validation=True,
    )


_SDK_CHUNKS: list[dict[str, Any]] = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hmm.", "thought": True}]}}]},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me look."}]}}]},
    {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                            "thoughtSignature": "sig-sdk",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13},
    },
]


def test_sdk_chat_stream_helper_accumulates_the_answer() -> None:
    client = _sdk("openai_chat", "gemini-3-flash", _SDK_CHUNKS)
    with client.chat.completions.stream(
        model="gemini-3-flash",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[_TOOL],
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me look."
    assert msg.tool_calls and msg.tool_calls[0].function.arguments == '{"city":"Oslo"}'
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 13


def test_sdk_chat_non_stream_and_error_stream() -> None:
    client = _sdk("openai_chat", "gemini-3-flash", _SDK_CHUNKS)
    out = client.chat.completions.create(
        model="gemini-3-flash",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[_TOOL],
    )
    assert out.choices[0].finish_reason == "tool_calls"
    failing = _sdk("openai_chat", "gemini-3-flash", _SDK_CHUNKS[:1], fail=RateLimited("quota gone"))
    stream = failing.chat.completions.create(
        model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="quota gone"):
        list(stream)


def test_sdk_responses_stream_helper_and_create() -> None:
    client = _sdk("openai_responses", "gemini-3-flash", _SDK_CHUNKS)
    tools: Any = [_RESPONSES_TOOL]
    with client.responses.stream(
        model="gemini-3-flash",
        input="weather?",
        tools=tools,
        include=["reasoning.encrypted_content"],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [item.type for item in final.output] == [
        "reasoning",
        "message",
        "reasoning",
        "function_call",
    ]
    assert final.output_text == "Let me look."
    assert final.usage is not None and final.usage.total_tokens == 13
    plain = client.responses.create(model="gemini-3-flash", input="weather?", tools=tools)
    assert [item.type for item in plain.output] == ["reasoning", "message", "function_call"]
