"""Issue 5: the OpenAI API end to end — the official ``openai`` SDK (sync,
async, streaming) against the real daemon and the fake Google.

Every test checks both sides: what the SDK parsed, and what the upstream got
(``fake.calls``): the fake enforces Google's rules (signatures, Claude's
thinking blocks, schema keys), so a green test here is a request Google takes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from tests.conftest import ACCOUNTS, Daemon
from tests.fakes.google import SCHEMA_KEYS, SKIP_SIGNATURE, FakeGoogle, Reply, signature_bytes

GEMINI = "gemini-3-flash"
# Ids of the 2026-08-22 catalog (UPSTREAM.md §4.1): Sonnet 4.6 thinks itself, Opus has a -thinking id.
CLAUDE = "claude-sonnet-4-6"
CLAUDE_THINKING = "claude-opus-4-6-thinking"

# A 1x1 PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# ---------------------------------------------------------------- helpers


@pytest.fixture
def key(proxy: Daemon) -> str:
    return proxy.api_key


@pytest.fixture
def client(proxy: Daemon, key: str) -> Iterator[OpenAI]:
    # No SDK retries: every test sees exactly what the daemon answered.
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
async def aclient(proxy: Daemon, key: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0, timeout=30) as c:
        yield c


def generate_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent")]


def upstream(fake: FakeGoogle) -> dict[str, Any]:
    """The GenerateContentRequest of the last generate/stream call (it must have succeeded)."""
    last = generate_calls(fake)[-1]
    assert last.status == 200, f"the upstream answered {last.status}"
    request: dict[str, Any] = last.body["request"]
    return request


def texts(content: dict[str, Any]) -> list[str]:
    return [p["text"] for p in content["parts"] if "text" in p and not p.get("thought")]


def assert_gemini_schema(schema: Any, path: str = "schema") -> None:
    """Only keys Gemini's Schema object knows, recursively (the fake checks
    function parameters this way; a responseSchema is the same proto)."""
    assert isinstance(schema, dict), path
    unknown = set(schema) - SCHEMA_KEYS
    assert not unknown, f"{path}: {unknown}"
    assert isinstance(schema.get("type", "object"), str), path
    for name, sub in (schema.get("properties") or {}).items():
        assert_gemini_schema(sub, f"{path}.{name}")
    if "items" in schema:
        assert_gemini_schema(schema["items"], f"{path}.items")
    for i, sub in enumerate(schema.get("anyOf") or []):
        assert_gemini_schema(sub, f"{path}.anyOf[{i}]")


def assert_issued_call_signature(fake: FakeGoogle, part: dict[str, Any], name: str) -> None:
    """The signature on a functionCall part is the real one the fake issued for that call."""
    sig = part.get("thoughtSignature")
    assert sig and sig != SKIP_SIGNATURE, part
    info = next(i for s, i in fake.signatures.items() if signature_bytes(s) == signature_bytes(sig))
    assert info.family == "gemini" and info.kind == "call" and info.name == name


def collect_stream_tool_calls(chunks: list[Any]) -> list[dict[str, Any]]:
    """Chat stream deltas -> the tool calls (by index: id and name first, then arguments)."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
    return [calls[i] for i in sorted(calls)]


def as_assistant(tool_calls: list[dict[str, Any]], content: str | None = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in tool_calls
        ],
    }


def sdk_calls(message: Any) -> list[dict[str, Any]]:
    return [
        {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
        for tc in message.tool_calls or []
    ]


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """Parse an SSE body into (event name, decoded data) pairs."""
    out: list[tuple[str | None, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            joined = "\n".join(data)
            out.append((name, joined if joined == "[DONE]" else json.loads(joined)))
    return out


# ---------------------------------------------------------------- chat: basics


@pytest.mark.parametrize(
    ("model", "serving"),
    [
        pytest.param(GEMINI, GEMINI, id=GEMINI),
        pytest.param(CLAUDE, CLAUDE, id=CLAUDE),
        # A retired Claude name is served by the live model of its family and
        # echoed as the client sent it (UPSTREAM.md §9.7: claude-sonnet-4-5 is gone).
        pytest.param("claude-sonnet-4-5", CLAUDE, id="claude-sonnet-4-5"),
    ],
)
def test_plain_chat(client: OpenAI, fake: FakeGoogle, model: str, serving: str) -> None:
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == model
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content and f"Hello from {serving}" in msg.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    sent = generate_calls(fake)[-1]
    assert sent.body["model"] == serving and not sent.stream
    assert sent.body["request"]["contents"] == [{"role": "user", "parts": [{"text": "Hello"}]}]

    fake.script([Reply.text("one two three", chunks=3)])
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1 and all(c.model == model for c in chunks)
    assert generate_calls(fake)[-1].stream


def test_system_and_developer_prompts(client: OpenAI, fake: FakeGoogle) -> None:
    client.chat.completions.create(
        model=GEMINI,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hello", "name": "ada"},
            {"role": "assistant", "content": "Bonjour."},
            {"role": "user", "content": "Again"},
        ],
    )
    req = upstream(fake)
    assert req["systemInstruction"] == {
        "role": "user",
        "parts": [{"text": "You are terse."}, {"text": "Answer in French."}],
    }
    assert [c["role"] for c in req["contents"]] == ["user", "model", "user"]
    assert texts(req["contents"][1]) == ["Bonjour."]


def test_images_inline_and_by_url(client: OpenAI, fake: FakeGoogle) -> None:
    r = client.chat.completions.create(
        model=GEMINI,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
                    },
                ],
            }
        ],
    )
    assert r.choices[0].message.content
    parts = upstream(fake)["contents"][0]["parts"]
    assert parts[0] == {"text": "What is in these?"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
    assert parts[2] == {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}


def test_json_mode_object_and_schema(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text('{"ok": true}')])
    r = client.chat.completions.create(
        model=GEMINI,
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(r.choices[0].message.content or "") == {"ok": True}
    gen = upstream(fake)["generationConfig"]
    assert gen["responseMimeType"] == "application/json" and "responseSchema" not in gen

    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "people": {"type": "array", "items": {"$ref": "#/$defs/person"}},
            "kind": {"const": "census"},
        },
        "required": ["people", "kind"],
        "additionalProperties": False,
        "$defs": {
            "person": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
                "required": ["name", "age"],
                "additionalProperties": False,
            }
        },
    }
    fake.script([Reply.text('{"people": [], "kind": "census"}')])
    client.chat.completions.create(
        model=GEMINI,
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "census", "schema": schema, "strict": True},
        },
    )
    gen = upstream(fake)["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    out = gen["responseSchema"]
    assert_gemini_schema(out)
    person = out["properties"]["people"]["items"]
    assert person["properties"]["name"] == {"type": "string"}
    assert person["properties"]["age"] == {"type": "integer", "nullable": True}
    assert out["properties"]["kind"]["enum"] == ["census"]


def test_parameters_map_to_generation_config(client: OpenAI, fake: FakeGoogle) -> None:
    client.chat.completions.create(
        model=GEMINI,
        messages=[{"role": "user", "content": "Count"}],
        n=2,
        stop=["END", "STOP"],
        temperature=0.3,
        top_p=0.8,
        max_completion_tokens=123,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.25,
    )
    gen = upstream(fake)["generationConfig"]
    assert gen == {
        "candidateCount": 2,
        "stopSequences": ["END", "STOP"],
        "temperature": 0.3,
        "topP": 0.8,
        "maxOutputTokens": 123,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
    }
    client.chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": "x"}], stop="Z", max_tokens=9, n=1
    )
    gen = upstream(fake)["generationConfig"]
    assert gen == {"stopSequences": ["Z"], "maxOutputTokens": 9}


def test_finish_reasons(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.max_tokens("cut off here")])
    r = client.chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": "long"}], max_tokens=3
    )
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "cut off here"

    fake.script([Reply.max_tokens("cut off", chunks=2)])
    chunks = list(
        client.chat.completions.create(
            model=GEMINI, messages=[{"role": "user", "content": "long"}], stream=True
        )
    )
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]

    fake.script([Reply.function_call("get_weather", {"city": "Oslo"})])
    r = client.chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    )
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None


def test_stream_usage(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text("a b c", chunks=3)])
    chunks = list(
        client.chat.completions.create(
            model=GEMINI,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    # Without include_usage no chunk carries usage.
    chunks = list(
        client.chat.completions.create(
            model=GEMINI, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_reasoning_effort(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.thinking("Let me think about it.", "Forty-two.")])
    r = client.chat.completions.create(
        model=GEMINI,
        messages=[{"role": "user", "content": "Meaning of life?"}],
        reasoning_effort="high",
    )
    tc = upstream(fake)["generationConfig"]["thinkingConfig"]
    assert tc == {"includeThoughts": True, "thinkingBudget": 24576}
    msg = r.choices[0].message
    assert msg.content == "Forty-two."
    assert (msg.model_extra or {}).get("reasoning_content") == "Let me think about it."
    assert r.usage is not None and r.usage.completion_tokens_details is not None
    assert (r.usage.completion_tokens_details.reasoning_tokens or 0) > 0

    # Streamed: the thinking arrives as reasoning_content deltas before the text.
    fake.script([Reply.thinking("Hmm, thinking hard.", "Done.")])
    chunks = list(
        client.chat.completions.create(
            model=CLAUDE_THINKING,
            messages=[{"role": "user", "content": "Think"}],
            reasoning_effort="low",
            max_tokens=500,
            stream=True,
        )
    )
    gen = upstream(fake)["generationConfig"]
    assert gen["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 1024}
    assert gen["maxOutputTokens"] > 1024  # must exceed the budget upstream
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == "Hmm, thinking hard." and content == "Done."

    # "minimal" turns thinking off.
    client.chat.completions.create(
        model=GEMINI, messages=[{"role": "user", "content": "x"}], reasoning_effort="minimal"
    )
    assert upstream(fake)["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 0


# ---------------------------------------------------------------- chat: tools


def test_gemini_two_round_parallel_tool_calls(client: OpenAI, fake: FakeGoogle) -> None:
    """Round 1 (non-stream) and round 2 (stream) each answer two parallel calls;
    the fake rejects a call turn without its signature, as Google does."""
    assert fake.check_signatures
    tools: list[Any] = [WEATHER_TOOL, TIME_TOOL]
    messages: list[Any] = [{"role": "user", "content": "Weather and time in Paris and Oslo?"}]

    fake.script([Reply.function_calls([("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})])])
    r1 = client.chat.completions.create(
        model=GEMINI, messages=messages, tools=tools, parallel_tool_calls=True
    )
    assert r1.choices[0].finish_reason == "tool_calls"
    calls1 = sdk_calls(r1.choices[0].message)
    assert [c["name"] for c in calls1] == ["get_weather", "get_time"]
    assert json.loads(calls1[0]["arguments"]) == {"city": "Paris"}
    assert len({c["id"] for c in calls1}) == 2
    decl = upstream(fake)["tools"][0]["functionDeclarations"][0]
    assert "$schema" not in decl["parameters"] and "additionalProperties" not in decl["parameters"]

    messages.append(as_assistant(calls1))
    messages.append(
        {"role": "tool", "tool_call_id": calls1[1]["id"], "content": "09:00"}
    )  # out of order on purpose
    messages.append({"role": "tool", "tool_call_id": calls1[0]["id"], "content": '{"temp": 21}'})
    fake.script([Reply.function_calls([("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Oslo"})])])
    chunks = list(client.chat.completions.create(model=GEMINI, messages=messages, tools=tools, stream=True))
    calls2 = collect_stream_tool_calls(chunks)
    assert [c["name"] for c in calls2] == ["get_weather", "get_time"]
    assert json.loads(calls2[1]["arguments"]) == {"city": "Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    req = upstream(fake)
    model_turn = req["contents"][1]
    assert model_turn["role"] == "model"
    assert_issued_call_signature(fake, model_turn["parts"][0], "get_weather")
    assert "thoughtSignature" not in model_turn["parts"][1]  # parallel: only the first is signed
    results = req["contents"][2]["parts"]
    assert [p["functionResponse"]["name"] for p in results] == ["get_time", "get_weather"]
    assert results[1]["functionResponse"]["response"] == {"temp": 21}
    assert results[0]["functionResponse"]["response"] == {"result": "09:00"}

    messages.append(as_assistant(calls2))
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": "fine"} for c in calls2]
    fake.script([Reply.text("Paris 21C 09:00, Oslo fine.")])
    r3 = client.chat.completions.create(model=GEMINI, messages=messages, tools=tools)
    assert r3.choices[0].message.content == "Paris 21C 09:00, Oslo fine."
    contents = upstream(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert_issued_call_signature(fake, contents[1]["parts"][0], "get_weather")
    assert_issued_call_signature(fake, contents[3]["parts"][0], "get_weather")


def test_missing_signature_is_what_google_rejects(client: OpenAI, fake: FakeGoogle) -> None:
    """Control: a call id the proxy never saw gets the skip marker (accepted);
    the fake itself rejects the same turn with no signature at all."""
    messages: list[Any] = [
        {"role": "user", "content": "weather?"},
        as_assistant([{"id": "call_unknown", "name": "get_weather", "arguments": '{"city": "Rome"}'}]),
        {"role": "tool", "tool_call_id": "call_unknown", "content": "sunny"},
    ]
    r = client.chat.completions.create(model=GEMINI, messages=messages, tools=[WEATHER_TOOL])
    assert r.choices[0].message.content
    assert upstream(fake)["contents"][1]["parts"][0]["thoughtSignature"] == SKIP_SIGNATURE
    raw = httpx.post(
        fake.endpoint + "/v1internal:generateContent",
        json={
            **generate_calls(fake)[-1].body,
            "request": {
                "contents": [
                    {"role": "user", "parts": [{"text": "weather?"}]},
                    {
                        "role": "model",
                        "parts": [{"functionCall": {"name": "get_weather", "args": {}}}],
                    },
                    {
                        "role": "user",
                        "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}],
                    },
                ]
            },
        },
        headers={
            "authorization": generate_calls(fake)[-1].headers["authorization"],
            # The daemon's own client identity: Google refuses unknown versions (§2.2).
            "user-agent": generate_calls(fake)[-1].headers["user-agent"],
        },
    )
    assert raw.status_code == 400 and "missing a thought_signature" in raw.text


async def test_claude_thinking_two_round_parallel_tool_calls(aclient: AsyncOpenAI, fake: FakeGoogle) -> None:
    """Claude with thinking through v1internal: each model turn of the tool loop
    must start with its signed thinking; OpenAI clients drop it, the proxy restores it."""
    tools: list[Any] = [WEATHER_TOOL, TIME_TOOL]
    messages: list[Any] = [{"role": "user", "content": "Weather and time in Paris, then Oslo?"}]
    effort: Any = "medium"

    fake.script(
        [
            Reply.function_calls(
                [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})],
                thought="First Paris.",
            )
        ]
    )
    stream = await aclient.chat.completions.create(
        model=CLAUDE_THINKING, messages=messages, tools=tools, reasoning_effort=effort, stream=True
    )
    chunks = [c async for c in stream]
    calls1 = collect_stream_tool_calls(chunks)
    assert [c["name"] for c in calls1] == ["get_weather", "get_time"]
    assert all(c["id"].startswith("toolu_vrtx_") for c in calls1)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    assert reasoning == "First Paris."
    assert upstream(fake)["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 8192,
    }

    # The client echoes reasoning_content (some do): it must not be sent as unsigned thinking.
    messages.append({**as_assistant(calls1), "reasoning_content": reasoning})
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": f"{c['name']} ok"} for c in calls1]
    fake.script(
        [
            Reply.function_calls(
                [("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Oslo"})],
                thought="Now Oslo.",
            )
        ]
    )
    r2 = await aclient.chat.completions.create(
        model=CLAUDE_THINKING, messages=messages, tools=tools, reasoning_effort=effort
    )
    assert r2.choices[0].finish_reason == "tool_calls"
    assert (r2.choices[0].message.model_extra or {}).get("reasoning_content") == "Now Oslo."
    calls2 = sdk_calls(r2.choices[0].message)
    req = upstream(fake)
    assert "thinkingConfig" in req["generationConfig"]  # thinking stayed on
    first = req["contents"][1]["parts"][0]
    assert first["thought"] is True and first["text"] == "First Paris." and first["thoughtSignature"]
    assert [p["functionCall"]["id"] for p in req["contents"][1]["parts"][1:]] == [c["id"] for c in calls1]
    assert [p["functionResponse"]["id"] for p in req["contents"][2]["parts"]] == [c["id"] for c in calls1]

    messages.append(as_assistant(calls2))
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls2]
    fake.script([Reply.text("All done.", thought="Summing up.")])
    r3 = await aclient.chat.completions.create(
        model=CLAUDE_THINKING, messages=messages, tools=tools, reasoning_effort=effort
    )
    assert r3.choices[0].message.content == "All done."
    assert r3.choices[0].finish_reason == "stop"
    contents = upstream(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[1]["parts"][0]["text"] == "First Paris."
    assert contents[3]["parts"][0]["thought"] and contents[3]["parts"][0]["text"] == "Now Oslo."
    assert "thinkingConfig" in upstream(fake)["generationConfig"]


def test_tool_choice_mapping(client: OpenAI, fake: FakeGoogle) -> None:
    cases: list[tuple[Any, dict[str, Any]]] = [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ]
    for choice, expected in cases:
        client.chat.completions.create(
            model=GEMINI,
            messages=[{"role": "user", "content": "x"}],
            tools=[WEATHER_TOOL, TIME_TOOL],
            tool_choice=choice,
        )
        assert upstream(fake)["toolConfig"] == {"functionCallingConfig": expected}


# ---------------------------------------------------------------- legacy completions, models


def test_legacy_completions_and_models(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text("a poem")])
    r = client.completions.create(
        model=GEMINI, prompt="Write a poem", max_tokens=50, temperature=0.1, stop="\n\n"
    )
    assert r.object == "text_completion" and r.model == GEMINI
    assert r.choices[0].text == "a poem" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.total_tokens > 0
    req = upstream(fake)
    assert req["contents"] == [{"role": "user", "parts": [{"text": "Write a poem"}]}]
    assert req["generationConfig"] == {
        "temperature": 0.1,
        "maxOutputTokens": 50,
        "stopSequences": ["\n\n"],
    }

    fake.script([Reply.text("x y z", chunks=3)])
    chunks = list(
        client.completions.create(
            model=GEMINI, prompt="go", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "x y z"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    models = [m.id for m in client.models.list()]
    assert GEMINI in models and CLAUDE_THINKING in models
    assert "chat_20706" not in models  # internal models are not offered
    assert client.models.retrieve(GEMINI).id == GEMINI
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model-xyz")


# ---------------------------------------------------------------- errors


def test_error_shapes(client: OpenAI, proxy: Daemon, fake: FakeGoogle) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model-xyz", messages=[{"role": "user", "content": "x"}])
    assert nf.value.status_code == 404
    assert GEMINI in nf.value.message and CLAUDE_THINKING in nf.value.message  # what it can serve
    assert isinstance(nf.value.body, dict) and nf.value.body.get("param") == "model"

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=GEMINI, messages=[], extra_body={"messages": "hello"})
    assert "messages" in bad.value.message and bad.value.param == "messages"
    assert bad.value.type == "invalid_request_error"

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=GEMINI,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"temperature": "hot"},
        )
    assert bad.value.param == "temperature"

    # A wrong key, and no key at all (the Authorization header left out).
    for headers in ({}, {"Authorization": openai.omit}):
        with OpenAI(base_url=proxy.base_url + "/v1", api_key="sk-wrong-key-000000", max_retries=0) as other:
            with pytest.raises(openai.AuthenticationError) as auth:
                other.chat.completions.create(
                    model=GEMINI, messages=[{"role": "user", "content": "x"}], extra_headers=headers
                )
        assert auth.value.status_code == 401
        assert auth.value.request.headers.get("authorization") is None or not headers
    assert not generate_calls(fake)  # nothing reached the upstream


def test_all_accounts_rate_limited(client: OpenAI, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="1h")], email=email)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
    err = exc.value
    assert isinstance(err, openai.RateLimitError) or err.status_code == 503
    assert int(err.response.headers["retry-after"]) > 3000
    assert GEMINI in err.message


def test_upstream_failure_mid_stream_raises(client: OpenAI, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        fake.script([Reply.drop_after(1, then=Reply.text("one two three four", chunks=4))], email=email)
    got: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model=GEMINI, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got).startswith("one")


async def test_async_client_and_concurrency(aclient: AsyncOpenAI) -> None:
    async def one(i: int) -> str:
        r = await aclient.chat.completions.create(
            model=GEMINI, messages=[{"role": "user", "content": f"hi {i}"}]
        )
        return r.choices[0].message.content or ""

    answers = await asyncio.gather(*(one(i) for i in range(8)))
    assert all("Hello from gemini-3-flash" in a for a in answers)


# ---------------------------------------------------------------- Responses API


def test_responses_create_and_stream(client: OpenAI, fake: FakeGoogle) -> None:
    r = client.responses.create(model=GEMINI, input="Hello", instructions="Be brief.", max_output_tokens=200)
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert "Hello from gemini-3-flash" in r.output_text
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    req = upstream(fake)
    assert req["systemInstruction"] == {"role": "user", "parts": [{"text": "Be brief."}]}
    assert req["generationConfig"]["maxOutputTokens"] == 200

    fake.script([Reply.text("one two three", chunks=3)])
    deltas: list[str] = []
    types: list[str] = []
    with client.responses.stream(model=GEMINI, input="Hi") as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "one two three" and final.output_text == "one two three"
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.output_text.done" in types

    # Cut off: incomplete with the reason.
    fake.script([Reply.max_tokens("partial")])
    r = client.responses.create(model=GEMINI, input="long", max_output_tokens=5)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"


def test_responses_function_calls_two_turns(client: OpenAI, fake: FakeGoogle) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "weather",
            "parameters": WEATHER_TOOL["function"]["parameters"],
            "strict": True,
        },
        {"type": "function", "name": "get_time", "parameters": TIME_TOOL["function"]["parameters"]},
    ]
    fake.script([Reply.function_calls([("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})])])
    r1 = client.responses.create(model=GEMINI, input="Weather and time in Paris?", tools=tools)
    calls = [o for o in r1.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert all(c.call_id for c in calls) and json.loads(calls[0].arguments) == {"city": "Paris"}

    fake.script([Reply.text("21C at 09:00.")])
    second: list[Any] = [
        {"role": "user", "content": "Weather and time in Paris?"},
        *[c.model_dump(exclude_none=True) for c in r1.output],
        *[{"type": "function_call_output", "call_id": c.call_id, "output": "21C / 09:00"} for c in calls],
    ]
    r2 = client.responses.create(model=GEMINI, input=second, tools=tools)
    assert r2.output_text == "21C at 09:00."
    contents = upstream(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert_issued_call_signature(fake, contents[1]["parts"][0], "get_weather")
    assert [p["functionResponse"]["id"] for p in contents[2]["parts"]] == [c.call_id for c in calls]

    # The same loop streamed, continued with previous_response_id.
    fake.script([Reply.function_call("get_weather", {"city": "Oslo"})])
    with client.responses.stream(model=GEMINI, input="And Oslo?", tools=tools) as stream:
        arg_done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        r3 = stream.get_final_response()
    call = next(o for o in r3.output if o.type == "function_call")
    assert json.loads(arg_done[0].arguments) == {"city": "Oslo"} and call.call_id
    fake.script([Reply.text("Oslo is cold.")])
    r4 = client.responses.create(
        model=GEMINI,
        previous_response_id=r3.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "-3C"}],
        tools=tools,
    )
    assert r4.output_text == "Oslo is cold." and r4.previous_response_id == r3.id
    contents = upstream(fake)["contents"]
    assert texts(contents[0]) == ["And Oslo?"]
    assert_issued_call_signature(fake, contents[1]["parts"][0], "get_weather")
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"result": "-3C"}


def test_responses_previous_response_id(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.text("Nice to meet you, Ada.")])
    r1 = client.responses.create(model=GEMINI, input="My name is Ada.", instructions="Be kind.")
    fake.script([Reply.text("Your name is Ada.")])
    r2 = client.responses.create(model=GEMINI, input="What is my name?", previous_response_id=r1.id)
    assert r2.output_text == "Your name is Ada."
    contents = upstream(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert texts(contents[0]) == ["My name is Ada."]
    assert texts(contents[1]) == ["Nice to meet you, Ada."]
    assert texts(contents[2]) == ["What is my name?"]
    # A third turn chains through both.
    r3 = client.responses.create(model=GEMINI, input="Thanks", previous_response_id=r2.id)
    assert r3.output_text
    assert len(upstream(fake)["contents"]) == 5

    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model=GEMINI, input="x", previous_response_id="resp_unknown")
    assert "previous_response_id" in exc.value.message

    # store=false: nothing to continue from.
    r4 = client.responses.create(model=GEMINI, input="secret", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=GEMINI, input="x", previous_response_id=r4.id)


def test_responses_reasoning_and_json_schema(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.thinking("Considering options.", "Pick B.")])
    r = client.responses.create(
        model=GEMINI,
        input="A or B?",
        reasoning={"effort": "medium", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    assert upstream(fake)["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 8192,
    }
    kinds = [o.type for o in r.output]
    assert kinds[0] == "reasoning" and kinds[-1] == "message"
    reasoning = r.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary and reasoning.summary[0].text == "Considering options."
    assert r.output_text == "Pick B."
    assert r.usage is not None and r.usage.output_tokens_details.reasoning_tokens > 0

    fake.script([Reply.thinking("Hmm.", "Fine.")])
    with client.responses.stream(model=CLAUDE_THINKING, input="Think", reasoning={"effort": "low"}) as stream:
        summary = "".join(e.delta for e in stream if e.type == "response.reasoning_summary_text.delta")
        final = stream.get_final_response()
    assert summary == "Hmm." and final.output_text == "Fine."
    assert final.output[0].type == "reasoning"

    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "score": {"type": "number", "exclusiveMinimum": 0},
        },
        "required": ["answer", "score"],
        "additionalProperties": False,
    }
    fake.script([Reply.text('{"answer": "B", "score": 1}')])
    r = client.responses.create(
        model=GEMINI,
        input="JSON",
        text={"format": {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}},
    )
    assert json.loads(r.output_text) == {"answer": "B", "score": 1}
    gen = upstream(fake)["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert_gemini_schema(gen["responseSchema"])
    assert set(gen["responseSchema"]["properties"]) == {"answer", "score"}
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"


def test_responses_image_input(client: OpenAI, fake: FakeGoogle) -> None:
    client.responses.create(
        model=GEMINI,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Describe"},
                    {
                        "type": "input_image",
                        "image_url": f"data:image/png;base64,{PNG_B64}",
                        "detail": "auto",
                    },
                ],
            }
        ],
    )
    parts = upstream(fake)["contents"][0]["parts"]
    assert parts == [
        {"text": "Describe"},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
    ]


def test_responses_error_midstream(client: OpenAI, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        fake.script([Reply.drop_after(1, then=Reply.text("one two three", chunks=3))], email=email)
    events = list(client.responses.create(model=GEMINI, input="x", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None and events[-1].response.error.code == "server_error"


# ---------------------------------------------------------------- Codex


def _codex_body(model: str, input_items: list[Any]) -> dict[str, Any]:
    return {
        "model": model,
        "instructions": "You are Codex, a coding agent.",
        "stream": True,
        "input": input_items,
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "description": "Runs a shell command",
                "strict": False,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "command": {"type": "array", "items": {"type": "string"}},
                        "workdir": {"type": "string"},
                        "timeout_ms": {"type": "number"},
                    },
                    "required": ["command"],
                    "additionalProperties": False,
                },
            },
            {
                "type": "custom",
                "name": "apply_patch",
                "description": "Apply a patch",
                "format": {
                    "type": "grammar",
                    "syntax": "lark",
                    "definition": "start: begin_patch hunk+ end_patch",
                },
            },
            {"type": "web_search"},
            {"type": "local_shell"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "text": {"verbosity": "low"},
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a8d2-codex-session",
        "client_metadata": {"x-codex-installation-id": "abc"},
    }


def _codex_post(proxy: Daemon, key: str, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    r = httpx.post(
        proxy.base_url + "/v1/responses",
        json=body,
        headers={
            "authorization": f"Bearer {key}",
            "accept": "text/event-stream",
            "originator": "codex_exec",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return sse_events(r.text)


@pytest.mark.parametrize("model", [GEMINI, CLAUDE_THINKING])
def test_codex_shaped_session(proxy: Daemon, key: str, fake: FakeGoogle, model: str) -> None:
    """Two turns as Codex sends them: streamed, store=false (so the whole
    history comes back, reasoning as encrypted_content), a freeform tool."""
    developer = {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "<permissions>workspace-write</permissions>"}],
    }
    user = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Fix the typo in README.md"}],
    }
    env = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "<environment_context>cwd=/repo</environment_context>"}],
    }
    patch = "*** Begin Patch\n*** Update File: README.md\n-teh\n+the\n*** End Patch"
    fake.script([Reply.function_call("apply_patch", {"input": patch}, thought="Need to patch README.")])
    events = _codex_post(proxy, key, _codex_body(model, [developer, env, user]))
    names = [n for n, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    seqs = [d["sequence_number"] for _, d in events]
    assert seqs == list(range(len(seqs)))
    assert all(d["type"] == n for n, d in events)
    done = events[-1][1]["response"]
    items = done["output"]
    reasoning = [i for i in items if i["type"] == "reasoning"]
    custom = [i for i in items if i["type"] == "custom_tool_call"]
    assert reasoning and any(i.get("encrypted_content") for i in reasoning)
    assert len(custom) == 1 and custom[0]["name"] == "apply_patch" and custom[0]["input"] == patch
    assert custom[0]["call_id"]

    req = upstream(fake)
    decls = req["tools"][0]["functionDeclarations"]
    # web_search is the gateway's own function (never googleSearch next to
    # functions); local_shell is not served.
    assert [d["name"] for d in decls] == ["shell", "apply_patch", "web_search"]
    assert len(req["tools"]) == 1
    for d in decls:
        assert_gemini_schema(d["parameters"])
    assert req["systemInstruction"]["parts"] == [
        {"text": "You are Codex, a coding agent."},
        {"text": "<permissions>workspace-write</permissions>"},
    ]
    assert req["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    # Claude through v1internal: VALIDATED whenever tools are given (UPSTREAM.md §6.2).
    mode = "AUTO" if model == GEMINI else "VALIDATED"
    assert req["toolConfig"] == {"functionCallingConfig": {"mode": mode}}

    # Turn 2: store=false, so Codex sends everything back, reasoning (encrypted) included.
    fake.script([Reply.text("Fixed the typo.")])
    second = [
        developer,
        env,
        user,
        *items,
        {"type": "custom_tool_call_output", "call_id": custom[0]["call_id"], "output": "Done!"},
    ]
    events = _codex_post(proxy, key, _codex_body(model, second))
    assert events[-1][0] == "response.completed"
    final = events[-1][1]["response"]
    text = [c["text"] for i in final["output"] if i["type"] == "message" for c in i["content"]]
    assert text == ["Fixed the typo."]
    contents = upstream(fake)["contents"]
    model_turn = contents[-2]
    assert model_turn["role"] == "model"
    call_part = next(p for p in model_turn["parts"] if "functionCall" in p)
    assert call_part["functionCall"]["args"] == {"input": patch}
    if model == GEMINI:
        assert_issued_call_signature(fake, call_part, "apply_patch")
    else:
        # Claude: the signed thinking comes back first, the tool_use id is kept.
        assert model_turn["parts"][0]["thought"] is True
        assert model_turn["parts"][0]["text"] == "Need to patch README."
        assert call_part["functionCall"]["id"] == custom[0]["call_id"]
        assert "thinkingConfig" in upstream(fake)["generationConfig"]
    assert contents[-1]["parts"][0]["functionResponse"]["response"] == {"result": "Done!"}


# ---------------------------------------------------------------- more edges


def test_upstream_rejection_and_stream_errors_before_first_byte(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.error(400, message="Invalid value at 'request.contents[0]'")])
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
    assert "Invalid value" in bad.value.message
    assert len(generate_calls(fake)) == 1  # the request's fault: no failover

    # Errors before the first byte of a stream are plain HTTP errors.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="nope-model", messages=[{"role": "user", "content": "x"}], stream=True
        )
    for email in ACCOUNTS:
        fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay="1h")], email=email)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}], stream=True)
    assert exc.value.status_code in (429, 503) and "retry-after" in exc.value.response.headers

    # The Responses API: same shapes.
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope-model", input="x")
    with pytest.raises(openai.BadRequestError) as bad:
        robot: Any = {"type": "message", "role": "robot", "content": "x"}
        client.responses.create(model=GEMINI, input=[robot])
    assert bad.value.param == "input[0].role"


def test_claude_tool_loop_without_thinking(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.function_calls([("get_weather", {"city": "Rome"}), ("get_time", {"city": "Rome"})])])
    messages: list[Any] = [{"role": "user", "content": "Rome?"}]
    r1 = client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    calls = sdk_calls(r1.choices[0].message)
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    messages.append(as_assistant(calls, content="Checking both."))
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls]
    fake.script([Reply.text("Sunny, noon.")])
    r2 = client.chat.completions.create(model=CLAUDE, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    assert r2.choices[0].message.content == "Sunny, noon."
    contents = upstream(fake)["contents"]
    assert contents[1]["parts"][0] == {"text": "Checking both."}
    assert [p["functionCall"]["id"] for p in contents[1]["parts"][1:]] == [c["id"] for c in calls]
    assert [p["functionResponse"]["id"] for p in contents[2]["parts"]] == [c["id"] for c in calls]


def test_tool_result_with_image(client: OpenAI, fake: FakeGoogle) -> None:
    fake.script([Reply.function_call("screenshot", {})])
    tool: Any = {
        "type": "function",
        "function": {"name": "screenshot", "parameters": {"type": "object", "properties": {}}},
    }
    messages: list[Any] = [{"role": "user", "content": "Look at the screen"}]
    r1 = client.chat.completions.create(model=GEMINI, messages=messages, tools=[tool])
    calls = sdk_calls(r1.choices[0].message)
    assert calls[0]["arguments"] == "{}"
    messages.append(as_assistant(calls))
    messages.append(
        {
            "role": "tool",
            "tool_call_id": calls[0]["id"],
            "content": [
                {"type": "text", "text": "captured"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            ],
        }
    )
    client.chat.completions.create(model=GEMINI, messages=messages, tools=[tool])
    parts = upstream(fake)["contents"][2]["parts"]
    assert parts[0]["functionResponse"]["response"] == {"result": "captured"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}


async def test_async_responses_claude_tool_loop_with_previous_response_id(
    aclient: AsyncOpenAI, fake: FakeGoogle
) -> None:
    """Claude thinking through the Responses API, continued by previous_response_id
    and streamed: the stored history must bring the signed thinking back first."""
    tools: list[Any] = [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    fake.script([Reply.function_call("get_weather", {"city": "Lima"}, thought="Check Lima.")])
    async with aclient.responses.stream(
        model=CLAUDE_THINKING, input="Weather in Lima?", tools=tools, reasoning={"effort": "low"}
    ) as stream:
        async for _ in stream:
            pass
        r1 = await stream.get_final_response()
    assert [o.type for o in r1.output] == ["reasoning", "function_call"]
    call = r1.output[1]
    assert call.type == "function_call" and call.call_id.startswith("toolu_vrtx_")

    fake.script([Reply.text("Lima: 18C.", thought="Answer.")])
    r2 = await aclient.responses.create(
        model=CLAUDE_THINKING,
        previous_response_id=r1.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
        tools=tools,
        reasoning={"effort": "low"},
    )
    assert r2.output_text == "Lima: 18C."
    req = upstream(fake)
    assert "thinkingConfig" in req["generationConfig"]
    first = req["contents"][1]["parts"][0]
    assert first["thought"] and first["text"] == "Check Lima."


class _Person(BaseModel):
    name: str
    age: int | None = None


class _Census(BaseModel):
    people: list[_Person]
    town: str


class _GetWeather(BaseModel):
    """Current weather for a city."""

    city: str
    unit: Literal["c", "f"] | None = None


def test_sdk_parse_helpers(client: OpenAI, fake: FakeGoogle) -> None:
    """The SDK's pydantic helpers send strict schemas ($defs, $ref, anyOf null,
    additionalProperties false): cleaned for Gemini, parsed back by the SDK."""
    fake.script([Reply.text('{"people": [{"name": "Ada", "age": 36}], "town": "London"}')])
    r = client.chat.completions.parse(
        model=GEMINI, messages=[{"role": "user", "content": "census"}], response_format=_Census
    )
    parsed = r.choices[0].message.parsed
    assert parsed == _Census(people=[_Person(name="Ada", age=36)], town="London")
    schema = upstream(fake)["generationConfig"]["responseSchema"]
    assert_gemini_schema(schema)
    assert schema["properties"]["people"]["items"]["properties"]["age"]["nullable"] is True

    fake.script([Reply.function_call("_GetWeather", {"city": "Paris", "unit": "c"})])
    r = client.chat.completions.parse(
        model=GEMINI,
        messages=[{"role": "user", "content": "weather"}],
        tools=[openai.pydantic_function_tool(_GetWeather)],
    )
    tc = (r.choices[0].message.tool_calls or [])[0]
    assert tc.type == "function" and tc.function.parsed_arguments == _GetWeather(city="Paris", unit="c")
    params = upstream(fake)["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params["properties"]["unit"]["enum"] == ["c", "f"]

    fake.script([Reply.text('{"people": [], "town": "Oslo"}')])
    rr = client.responses.parse(model=GEMINI, input="census", text_format=_Census)
    assert rr.output_parsed == _Census(people=[], town="Oslo")
    assert_gemini_schema(upstream(fake)["generationConfig"]["responseSchema"])


def test_unsupported_parameters_are_ignored(client: OpenAI, fake: FakeGoogle) -> None:
    """What real clients send along and the upstream has no field for."""
    r = client.chat.completions.create(
        model=GEMINI,
        messages=[{"role": "user", "content": "hi"}],
        logit_bias={"50256": -100},
        logprobs=False,
        user="user-1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        parallel_tool_calls=False,
        prompt_cache_key="conv-1",
        safety_identifier="s-1",
        verbosity="low",
        extra_body={"top_k": 5},
    )
    assert r.choices[0].message.content
    req = upstream(fake)
    assert set(req) <= {"contents", "generationConfig", "sessionId"}
