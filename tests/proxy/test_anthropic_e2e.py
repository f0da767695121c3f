"""Issue 6: the Anthropic API end to end — the official `anthropic` SDK (and
Claude Code's exact wire shape) against the real daemon and the fake Google.

The fake enforces Google's and Anthropic's signature rules
(``fake.check_signatures``), so a tool loop that passes here is one the real
upstream accepts."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import ACCOUNTS, Daemon
from tests.fakes.google import SKIP_SIGNATURE, FakeGoogle, Reply, count_tokens

THINKING_MODEL = "claude-sonnet-4-5-thinking"
THINKING = {"type": "enabled", "budget_tokens": 2048}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a file",
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "write_file",
        "description": "Write a file",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
        "cache_control": {"type": "ephemeral"},
    },
]

# A 1x1 transparent PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n").decode()


_OPEN: list[anthropic.Anthropic] = []


def client(d: Daemon, **kw: Any) -> anthropic.Anthropic:
    """An SDK client on the daemon (closed after the test)."""
    if "auth_token" not in kw:
        kw.setdefault("api_key", d.api_key)
    c = anthropic.Anthropic(base_url=d.base_url, max_retries=0, **kw)
    _OPEN.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def upstream_request(fake: FakeGoogle) -> dict[str, Any]:
    gen = [c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent")]
    body: dict[str, Any] = gen[-1].body["request"]
    return body


def thought_parts(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in content["parts"] if p.get("thought")]


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        event, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data:
            out.append((event, json.loads(data)))
    return out


@pytest.fixture
def keepalive(proxy: Daemon) -> Iterator[float]:
    """proxy.stream_keepalive lowered (it is read per request) for ping tests."""
    old = proxy.admin("GET", "/config/proxy.stream_keepalive")["value"]
    proxy.admin("PUT", "/config/proxy.stream_keepalive", json={"value": "0.2"})
    try:
        yield 0.2
    finally:
        proxy.admin("PUT", "/config/proxy.stream_keepalive", json={"value": str(old)})


# ---------------------------------------------------------------- basics


def test_head_api_hello(proxy: Daemon) -> None:
    key = {"x-api-key": proxy.api_key}
    r = httpx.head(proxy.base_url + "/api/hello", headers=key, timeout=10)
    assert 200 <= r.status_code < 300
    r = httpx.post(proxy.base_url + "/api/event_logging/batch", json={"events": []}, headers=key, timeout=10)
    assert 200 <= r.status_code < 300


def test_messages_non_stream_usage(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply(answer="Hi there.", usage={"cachedContentTokenCount": 7})])
    msg = client(proxy).messages.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello"}],
        stop_sequences=["END"],
        extra_body={"temperature": 0.3, "top_p": 0.9},  # no longer SDK parameters
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == "claude-sonnet-4-5"
    assert msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Hi there."  # type: ignore[union-attr]
    # Gemini says STOP for a natural end and for a matched stop sequence alike;
    # with stop_sequences given, the gateway reports the sequence (the decision
    # in daemon.protocols.anthropic._stop), naming it when there is only one.
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"
    sent = upstream_request(fake)
    prompt = count_tokens(sent)
    # Anthropic's input_tokens exclude cache reads.
    assert msg.usage.input_tokens == prompt - 7
    assert msg.usage.cache_read_input_tokens == 7
    assert msg.usage.output_tokens == 3  # ceil(len("Hi there.") / 4)
    assert sent["systemInstruction"] == {"role": "user", "parts": [{"text": "You are terse."}]}
    gen = sent["generationConfig"]
    assert gen["temperature"] == 0.3 and gen["topP"] == 0.9 and gen["stopSequences"] == ["END"]
    assert gen["maxOutputTokens"] == 256


def test_messages_stream_events(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.text("one two three four", chunks=4)])
    types: list[str] = []
    with client(proxy).messages.stream(
        model="claude-sonnet-4-5", max_tokens=128, messages=[{"role": "user", "content": "count"}]
    ) as stream:
        for ev in stream:
            types.append(ev.type)
        final = stream.get_final_message()
    assert final.content[0].text == "one two three four"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    raw = [
        t
        for t in types
        if t
        in ("message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop")
    ]
    assert raw == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert types.count("text") == 4


def test_stream_max_tokens_stop_reason(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.max_tokens("cut o")])
    with client(proxy).messages.stream(
        model="gemini-3-flash", max_tokens=5, messages=[{"role": "user", "content": "long story"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.content[0].text == "cut o"  # type: ignore[union-attr]


# ---------------------------------------------------------------- the tool loop with thinking


def _loop_replies() -> list[Reply]:
    return [
        Reply.function_call("read_file", {"path": "a.txt"}),
        Reply.function_call("write_file", {"path": "b.txt", "content": "A"}),
        Reply.text("Copied a.txt to b.txt.", thought="The copy is done; report it."),
    ]


def _call(c: anthropic.Anthropic, stream: bool, **kw: Any) -> anthropic.types.Message:
    if stream:
        with c.messages.stream(**kw) as s:
            return s.get_final_message()
    return c.messages.create(**kw)


def _run_loop(
    proxy: Daemon,
    fake: FakeGoogle,
    *,
    model: str = THINKING_MODEL,
    stream: bool,
    mangle: Any = None,
    thinking: dict[str, Any] | None = THINKING,
) -> tuple[list[anthropic.types.Message], list[dict[str, Any]]]:
    """tool_use -> tool_result -> tool_use -> tool_result -> text, feeding back
    exactly what the SDK returned (``mangle`` may alter the assistant content
    first, as other clients do). Returns the answers and the upstream requests."""
    c = client(proxy)
    fake.script(_loop_replies())
    messages: list[Any] = [{"role": "user", "content": "Copy a.txt to b.txt"}]
    answers: list[anthropic.types.Message] = []
    sent: list[dict[str, Any]] = []
    extra = {"thinking": thinking} if thinking else {}
    for _ in range(3):
        msg = _call(c, stream, model=model, max_tokens=8192, tools=TOOLS, messages=messages, **extra)
        answers.append(msg)
        sent.append(upstream_request(fake))
        if msg.stop_reason != "tool_use":
            break
        content: Any = msg.content
        if mangle is not None:
            content = mangle([b.model_dump(exclude_none=True) for b in msg.content])
        messages.append({"role": "assistant", "content": content})
        results = [
            {"type": "tool_result", "tool_use_id": b.id, "content": f"ok {b.name}"}
            for b in msg.content
            if b.type == "tool_use"
        ]
        messages.append({"role": "user", "content": results})
    return answers, sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_claude_thinking_tool_loop(proxy: Daemon, fake: FakeGoogle, stream: bool) -> None:
    answers, sent = _run_loop(proxy, fake, stream=stream)
    assert [a.stop_reason for a in answers] == ["tool_use", "tool_use", "end_turn"]
    for a in answers:
        assert a.content[0].type == "thinking"
        assert a.content[0].thinking and a.content[0].signature  # type: ignore[union-attr]
    first_call = next(b for b in answers[0].content if b.type == "tool_use")
    assert first_call.id.startswith("toolu_vrtx_")  # ids kept as the upstream made them
    assert first_call.input == {"path": "a.txt"}
    assert answers[2].content[-1].text == "Copied a.txt to b.txt."  # type: ignore[union-attr]
    # Thinking stayed on and every model turn went back starting with its
    # signed thought (the fake rejects anything else, as Google does).
    last = sent[-1]
    assert last["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048
    model_turns = [c for c in last["contents"] if c["role"] == "model"]
    assert len(model_turns) == 2
    for turn, answer in zip(model_turns, answers, strict=False):
        first = turn["parts"][0]
        assert first["thought"] is True
        assert first["thoughtSignature"] == answer.content[0].signature  # type: ignore[union-attr]
        assert first["text"] == answer.content[0].thinking  # type: ignore[union-attr]
    calls = [p["functionCall"] for t in model_turns for p in t["parts"] if "functionCall" in p]
    results = [
        p["functionResponse"]
        for c in last["contents"]
        if c["role"] == "user"
        for p in c["parts"]
        if "functionResponse" in p
    ]
    assert [c["id"] for c in calls] == [r["id"] for r in results]
    assert [r["name"] for r in results] == ["read_file", "write_file"]


def _foreign_signature(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for b in blocks:
        if b["type"] == "thinking":
            b["signature"] = base64.b64encode(secrets.token_bytes(180)).decode()  # as from Anthropic's API
    return blocks


def _omitted_text(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for b in blocks:
        if b["type"] == "thinking":
            b["thinking"] = ""  # display: "omitted"
    return blocks


def _no_signature(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for b in blocks:
        if b["type"] == "thinking":
            b.pop("signature", None)
    return blocks


def _thinking_dropped(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for b in blocks if b["type"] != "thinking"]


@pytest.mark.parametrize(
    "mangle", [_foreign_signature, _no_signature, _thinking_dropped], ids=["foreign", "unsigned", "dropped"]
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_claude_loop_with_unverifiable_thinking(
    proxy: Daemon, fake: FakeGoogle, stream: bool, mangle: Any
) -> None:
    """Thinking the proxy cannot vouch for is never sent: the turn still works
    (with thinking off for it) instead of a 400 "Invalid `signature`"."""
    answers, sent = _run_loop(proxy, fake, stream=stream, mangle=mangle)
    assert [a.stop_reason for a in answers] == ["tool_use", "tool_use", "end_turn"]
    for req in sent[1:]:
        for content in req["contents"]:
            assert not thought_parts(content)
        assert "thinkingConfig" not in req.get("generationConfig", {})


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_claude_loop_with_omitted_thinking_text(proxy: Daemon, fake: FakeGoogle, stream: bool) -> None:
    """display: omitted — the client sends the thinking back with an empty
    text; the proxy restores the text it signed, thinking stays on."""
    answers, sent = _run_loop(
        proxy, fake, stream=stream, mangle=_omitted_text, thinking={**THINKING, "display": "omitted"}
    )
    assert [a.stop_reason for a in answers] == ["tool_use", "tool_use", "end_turn"]
    last = sent[-1]
    assert last["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048
    model_turns = [c for c in last["contents"] if c["role"] == "model"]
    for turn, answer in zip(model_turns, answers, strict=False):
        first = turn["parts"][0]
        assert first["thought"] is True and first["text"] == answer.content[0].thinking  # type: ignore[union-attr]


def test_claude_parallel_calls_results_out_of_order(proxy: Daemon, fake: FakeGoogle) -> None:
    """Parallel tool_use with thinking; the client answers them in another
    order (and with an extra text): responses go up in call order, first."""
    c = client(proxy)
    kw: dict[str, Any] = {"model": THINKING_MODEL, "max_tokens": 4096, "thinking": THINKING, "tools": TOOLS}
    fake.script(
        [
            Reply.function_calls([("read_file", {"path": "a"}), ("read_file", {"path": "b"})]),
            Reply.text("a+b"),
        ]
    )
    first = c.messages.create(messages=[{"role": "user", "content": "read a and b"}], **kw)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.content[0].type == "thinking" and len(uses) == 2
    messages: list[Any] = [
        {"role": "user", "content": "read a and b"},
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[1].id, "content": "B"},
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "A"},
            ],
        },
    ]
    final = c.messages.create(messages=messages, **kw)
    assert final.content[-1].text == "a+b"  # type: ignore[union-attr]
    sent = upstream_request(fake)
    assert "thinkingConfig" in sent["generationConfig"]
    ids = [p["functionResponse"]["id"] for p in sent["contents"][2]["parts"]]
    assert ids == [uses[0].id, uses[1].id]


def test_claude_interleaved_thinking_in_one_turn(proxy: Daemon, fake: FakeGoogle) -> None:
    """An answer with two signed thinking segments (thinking, tool_use; an
    assistant turn of a loop may hold several) goes back segment by segment."""
    sig1 = fake.sign(THINKING_MODEL, thought="first thought")
    sig2 = fake.sign(THINKING_MODEL, thought="second thought")
    events = [
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "first thought", "thought": True}]}}
            ]
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "", "thought": True, "thoughtSignature": sig1}],
                    }
                }
            ]
        },
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me look."}]}}]},
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "second thought", "thought": True}]}}
            ]
        },
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"thought": True, "thoughtSignature": sig2}]}}
            ]
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {
                                    "name": "read_file",
                                    "args": {"path": "x"},
                                    "id": "toolu_vrtx_abc",
                                }
                            }
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        },
    ]
    fake.script([Reply.raw(events[-1], events=events), Reply.text("done")])
    c = client(proxy)
    kw: dict[str, Any] = {"model": THINKING_MODEL, "max_tokens": 4096, "thinking": THINKING, "tools": TOOLS}
    first = _call(c, True, messages=[{"role": "user", "content": "look at x"}], **kw)
    assert [b.type for b in first.content] == ["thinking", "text", "thinking", "tool_use"]
    assert first.content[0].signature == sig1 and first.content[2].signature == sig2  # type: ignore[union-attr]
    messages: list[Any] = [
        {"role": "user", "content": "look at x"},
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_vrtx_abc", "content": "x!"}],
        },
    ]
    final = _call(c, False, messages=messages, **kw)
    assert final.content[-1].text == "done"  # type: ignore[union-attr]
    model_turn = upstream_request(fake)["contents"][1]
    assert model_turn["parts"][0] == {"text": "first thought", "thought": True, "thoughtSignature": sig1}
    assert {"text": "second thought", "thought": True, "thoughtSignature": sig2} in model_turn["parts"]


# ---------------------------------------------------------------- gemini through /v1/messages


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_gemini_tool_loop_signatures(proxy: Daemon, fake: FakeGoogle, stream: bool) -> None:
    answers, sent = _run_loop(proxy, fake, model="gemini-3-flash", stream=stream, thinking=THINKING)
    assert [a.stop_reason for a in answers] == ["tool_use", "tool_use", "end_turn"]
    model_turns = [c for c in sent[-1]["contents"] if c["role"] == "model"]
    assert len(model_turns) == 2
    for turn in model_turns:
        call_part = next(p for p in turn["parts"] if "functionCall" in p)
        sig = call_part["thoughtSignature"]
        assert sig != SKIP_SIGNATURE and fake.signatures[sig].kind == "call"
        assert not thought_parts(turn)  # no thought text goes back to Gemini


def test_gemini_signatures_survive_a_client_that_drops_thinking(proxy: Daemon, fake: FakeGoogle) -> None:
    """Parallel calls; the client keeps only the tool_use blocks (no thinking,
    no signature): the proxy puts the signature back from its own store."""
    c = client(proxy)
    fake.script(
        [
            Reply.function_calls([("read_file", {"path": "a"}), ("read_file", {"path": "b"})]),
            Reply.text("both read"),
        ]
    )
    kw: dict[str, Any] = {"model": "gemini-3-flash", "max_tokens": 1024, "tools": TOOLS, "thinking": THINKING}
    first = c.messages.create(messages=[{"role": "user", "content": "read a and b"}], **kw)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 2 and uses[0].id != uses[1].id
    messages: list[Any] = [
        {"role": "user", "content": "read a and b"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in uses]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "data"} for u in uses],
        },
    ]
    final = c.messages.create(messages=messages, **kw)
    assert final.content[-1].text == "both read"  # type: ignore[union-attr]
    parts = upstream_request(fake)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] != SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]  # parallel calls: only the first


def test_gemini_unknown_signature_history(proxy: Daemon, fake: FakeGoogle) -> None:
    """A history the proxy never saw (another proxy, a restart): calls go back
    with skip_thought_signature_validator, foreign thinking is not sent."""
    foreign = base64.b64encode(secrets.token_bytes(64)).decode()
    messages: list[Any] = [
        {"role": "user", "content": "read a"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": foreign},
                {"type": "tool_use", "id": "toolu_01XYZ", "name": "read_file", "input": {"path": "a"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01XYZ", "content": "A"}]},
    ]
    fake.script([Reply.text("A it is")])
    msg = client(proxy).messages.create(
        model="gemini-3-flash", max_tokens=512, tools=TOOLS, messages=messages
    )
    assert msg.content[-1].text == "A it is"  # type: ignore[union-attr]
    parts = upstream_request(fake)["contents"][1]["parts"]
    assert parts == [
        {
            "functionCall": {"name": "read_file", "args": {"path": "a"}, "id": "toolu_01XYZ"},
            "thoughtSignature": SKIP_SIGNATURE,
        }
    ]


# ---------------------------------------------------------------- media


def test_images_documents_and_tool_result_media(proxy: Daemon, fake: FakeGoogle) -> None:
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look at these"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_shot", "name": "screenshot", "input": {}},
                {"type": "tool_use", "id": "toolu_fail", "name": "read_file", "input": {"path": "/nope"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_shot",
                    "content": [
                        {"type": "text", "text": "the screen"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                },
                {"type": "tool_result", "tool_use_id": "toolu_fail", "content": "ENOENT", "is_error": True},
                {"type": "text", "text": "what now?"},
            ],
        },
    ]
    tools = [
        *TOOLS,
        {
            "name": "screenshot",
            "description": "grab the screen",
            "input_schema": {"type": "object", "properties": {}},
        },
    ]
    for model in ("claude-sonnet-4-5", "gemini-3-flash"):
        fake.script([Reply.text("I see a cat.")])
        msg = client(proxy).messages.create(model=model, max_tokens=512, tools=tools, messages=messages)
        assert msg.content[0].text == "I see a cat."  # type: ignore[union-attr]
        contents = upstream_request(fake)["contents"]
        first = contents[0]["parts"]
        assert first[0] == {"text": "Look at these"}
        assert first[1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
        assert first[2] == {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}
        assert first[3] == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}
        last = contents[2]["parts"]
        assert last[0]["functionResponse"] == {
            "name": "screenshot",
            "id": "toolu_shot",
            "response": {"result": "the screen"},
        }
        assert last[1]["functionResponse"] == {
            "name": "read_file",
            "id": "toolu_fail",
            "response": {"error": "ENOENT"},
        }
        assert {"inlineData": {"mimeType": "image/png", "data": PNG}} in last[2:]
        assert last[-1] == {"text": "what now?"}


# ---------------------------------------------------------------- Claude Code's request


def _claude_code_body(messages: list[Any]) -> dict[str, Any]:
    session = str(uuid.uuid4())
    tools = [
        {
            "name": name,
            "description": f"The {name} tool",
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "arg": {"type": "string", "description": "x"},
                    "n": {"type": "integer", "exclusiveMinimum": 0},
                },
                "required": ["arg"],
                "additionalProperties": False,
            },
        }
        for name in (
            "Bash",
            "Read",
            "Edit",
            "Write",
            "Glob",
            "Grep",
            "Task",
            "TodoWrite",
            "WebFetch",
            "NotebookEdit",
            "ExitPlanMode",
        )
    ]
    tools.append(
        {
            "name": "mcp__ide__getDiagnostics",
            "description": "deferred",
            "input_schema": {"type": "object", "properties": {"uri": {"type": "string"}}},
            "defer_loading": True,
        }
    )
    return {
        "model": "claude-sonnet-4-5-20250929",
        "messages": messages,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0"},
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "Long instructions...",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        "tools": tools,
        "metadata": {
            "user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": session})
        },
        "max_tokens": 32000,
        "thinking": {"type": "enabled", "budget_tokens": 31999, "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "stream": True,
    }


def _claude_code_post(
    proxy: Daemon, body: dict[str, Any], path: str = "/v1/messages?beta=true"
) -> httpx.Response:
    headers = {
        "x-api-key": proxy.api_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
        "context-management-2025-06-27,"
        "thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20",
        "anthropic-dangerous-direct-browser-access": "true",
        "x-app": "cli",
        "user-agent": "claude-cli/2.1.0 (external, cli)",
        "X-Claude-Code-Session-Id": str(uuid.uuid4()),
        "accept": "application/json",
    }
    return httpx.post(proxy.base_url + path, json=body, headers=headers, timeout=30)


def _fold(events: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """SSE events -> (content blocks, message_delta), checking the event grammar."""
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks: list[dict[str, Any]] = []
    delta: dict[str, Any] = {}
    for name, data in events:
        assert data["type"] == name
        if name == "content_block_start":
            assert data["index"] == len(blocks)
            blocks.append(dict(data["content_block"]))
            if blocks[-1]["type"] == "tool_use":
                blocks[-1]["_json"] = ""
        elif name == "content_block_delta":
            b, d = blocks[data["index"]], data["delta"]
            if d["type"] == "text_delta":
                b["text"] += d["text"]
            elif d["type"] == "thinking_delta":
                b["thinking"] += d["thinking"]
            elif d["type"] == "signature_delta":
                b["signature"] = d["signature"]
            elif d["type"] == "input_json_delta":
                b["_json"] += d["partial_json"]
        elif name == "message_delta":
            delta = data
    for b in blocks:
        if b["type"] == "tool_use":
            b["input"] = json.loads(b.pop("_json") or "{}")
    return blocks, delta


def test_claude_code_request_shape(proxy: Daemon, fake: FakeGoogle) -> None:
    """Claude Code's real request (CLIENTS.md), streamed to completion, then
    the next turn of its tool loop with the thinking text omitted."""
    user_turn = {
        "role": "user",
        "content": [
            {
                "type": "text",
                "text": "<system-reminder>\nAs you answer, use the context.\n</system-reminder>",
            },
            {"type": "text", "text": "<system-reminder>\nTodo list is empty.\n</system-reminder>"},
            {"type": "text", "text": "List the files", "cache_control": {"type": "ephemeral"}},
        ],
    }
    fake.script([Reply.function_call("Bash", {"arg": "ls"}), Reply.text("Two files.")])
    body = _claude_code_body([user_turn])
    r = _claude_code_post(proxy, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks, delta = _fold(sse_events(r.text))
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"]
    assert blocks[0]["signature"] and blocks[1]["name"] == "Bash" and blocks[1]["input"] == {"arg": "ls"}
    assert delta["delta"]["stop_reason"] == "tool_use"

    sent = upstream_request(fake)
    assert sent["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 31999}
    assert sent["generationConfig"]["maxOutputTokens"] == 32000
    names = [d["name"] for d in sent["tools"][0]["functionDeclarations"]]
    assert len(names) == 12 and "mcp__ide__getDiagnostics" in names
    assert [p["text"] for p in sent["contents"][0]["parts"]][-1] == "List the files"
    assert len(sent["systemInstruction"]["parts"]) == 3
    assert "cache_control" not in json.dumps(sent) and "defer_loading" not in json.dumps(sent)

    # Claude Code keeps the block as it got it; with display "omitted" the
    # real API would have sent an empty text: send it back empty.
    thinking = {"type": "thinking", "thinking": "", "signature": blocks[0]["signature"]}
    tool_use = {k: blocks[1][k] for k in ("type", "id", "name", "input")}
    body2 = _claude_code_body(
        [
            user_turn,
            {"role": "assistant", "content": [thinking, tool_use]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "a\nb"}],
            },
        ]
    )
    r2 = _claude_code_post(proxy, body2)
    assert r2.status_code == 200, r2.text
    blocks2, delta2 = _fold(sse_events(r2.text))
    assert blocks2[-1] == {"type": "text", "text": "Two files."}
    assert delta2["delta"]["stop_reason"] == "end_turn"
    assert delta2["usage"]["output_tokens"] > 0
    sent2 = upstream_request(fake)
    # thinking asked: Claude Code's Sonnet name is served by the live Sonnet,
    # which thinks itself (no -thinking twin in the 2026-08 catalog, UPSTREAM.md §4.1)
    assert fake.calls_to("streamGenerateContent")[-1].model == "claude-sonnet-4-6"
    assert sent2["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    model_turn = sent2["contents"][1]
    assert (
        model_turn["parts"][0]["thought"] is True and model_turn["parts"][0]["text"] == blocks[0]["thinking"]
    )
    # Google reports usage on the last chunk only: the prompt count comes in
    # message_delta (message_start went out before it was known).
    assert delta2["usage"]["input_tokens"] == count_tokens(sent2)

    # count_tokens of that very request (Claude Code decides when to compact on it).
    counted = _claude_code_post(
        proxy, {k: v for k, v in body2.items() if k != "stream"}, "/v1/messages/count_tokens?beta=true"
    )
    assert counted.status_code == 200, counted.text
    assert counted.json() == {"input_tokens": count_tokens(sent2)}


# ---------------------------------------------------------------- keepalives and stream errors


def _stream_raw(proxy: Daemon, model: str = "claude-sonnet-4-5") -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "wait"}],
    }
    return httpx.post(
        proxy.base_url + "/v1/messages", json=body, headers={"x-api-key": proxy.api_key}, timeout=30
    )


def test_ping_while_upstream_is_silent(proxy: Daemon, fake: FakeGoogle, keepalive: float) -> None:
    """Silence between upstream events (thinking) -> Anthropic `ping` events."""
    fake.script([Reply.text("after the silence", chunks=3, delay=0.7)])
    r = _stream_raw(proxy)
    assert r.status_code == 200
    events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names.count("ping") >= 4, names
    assert names[0] == "message_start"  # pings only after it, as Anthropic does
    assert all(d == {"type": "ping"} for e, d in events if e == "ping")
    blocks, _ = _fold([e for e in events if e[0] != "ping"])
    assert blocks[0]["text"] == "after the silence"
    # The SDK skips them.
    fake.script([Reply.text("sdk", chunks=2, delay=0.5)])
    with client(proxy).messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "wait"}]
    ) as s:
        assert s.get_final_text() == "sdk"


def test_ping_while_upstream_is_silent_before_the_first_event(
    proxy: Daemon, fake: FakeGoogle, keepalive: float
) -> None:
    fake.script([Reply.silence(1.0, Reply.text("late"))])
    t0 = time.monotonic()
    with httpx.stream(
        "POST",
        proxy.base_url + "/v1/messages",
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        headers={"x-api-key": proxy.api_key},
        timeout=30,
    ) as r:
        chunks = r.iter_raw()
        first = next(chunks)
        waited = time.monotonic() - t0
        for _ in chunks:
            pass
    assert waited < 0.8, f"first byte after {waited:.1f}s: {first[:60]!r}"
    # The SDK reads through the early keepalives to the late answer.
    fake.script([Reply.silence(1.0, Reply.text("late answer"))])
    client = anthropic.Anthropic(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "late answer"


def test_failure_after_first_byte_is_an_error_event(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.drop_after(1, Reply.text("a b c d e f", chunks=4)) for _ in ACCOUNTS])
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    r = httpx.post(
        proxy.base_url + "/v1/messages", json=body, headers={"x-api-key": proxy.api_key}, timeout=30
    )
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    err = events[-1][1]
    assert err["type"] == "error" and err["error"]["type"] in ("api_error", "overloaded_error")
    assert "message_stop" not in [e for e, _ in events]

    fake.script([Reply.drop_after(1, Reply.text("a b c d e f", chunks=4)) for _ in ACCOUNTS])
    with pytest.raises(anthropic.APIStatusError) as info:
        with client(proxy).messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as s:
            for _ in s:
                pass
    assert "broke off" in str(info.value)


def test_empty_streams_fail_over_before_first_byte(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.empty(), Reply.drop_after(0), Reply.text("third time")])
    with client(proxy).messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    ) as s:
        assert s.get_final_text() == "third time"


# ---------------------------------------------------------------- count_tokens


def test_count_tokens_matches_the_upstream(proxy: Daemon, fake: FakeGoogle) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "read a"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "contents of a " * 50}],
                },
                {"type": "text", "text": "summarise"},
            ],
        },
    ]
    c = client(proxy)
    system = [{"type": "text", "text": "You summarise files. " * 20, "cache_control": {"type": "ephemeral"}}]
    for model in ("claude-sonnet-4-5", "gemini-3-flash"):
        n = c.messages.count_tokens(model=model, system=system, tools=TOOLS, messages=messages)  # type: ignore[arg-type]
        req = fake.calls_to("countTokens")[-1].body["request"]
        assert n.input_tokens == count_tokens(req) > 0
        assert req["systemInstruction"]["parts"][0]["text"].startswith("You summarise files.")
        assert req["tools"][0]["functionDeclarations"][0]["name"] == "read_file"
        assert any("functionResponse" in p for ct in req["contents"] for p in ct["parts"])
    # The same request, generated, is counted the same (the prompt the model saw).
    fake.script([Reply.text("sum")])
    msg = c.messages.create(
        model="gemini-3-flash",
        max_tokens=100,
        system=system,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        messages=messages,
    )
    assert msg.usage.input_tokens == n.input_tokens


# ---------------------------------------------------------------- errors


def _raw_post(proxy: Daemon, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/v1/messages", json=body, headers={"x-api-key": key or proxy.api_key}, timeout=30
    )


def test_error_invalid_request(proxy: Daemon) -> None:
    c = client(proxy)
    with pytest.raises(anthropic.BadRequestError) as info:
        c.post(
            "/v1/messages",
            body={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]},
            cast_to=object,
        )
    assert info.value.status_code == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in info.value.body["error"]["message"]  # type: ignore[index]
    r = _raw_post(proxy, {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []})
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(
        proxy.base_url + "/v1/messages",
        content=b"{not json",
        headers={"x-api-key": proxy.api_key, "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_error_authentication(proxy: Daemon) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        client(proxy, api_key="sk-wrong-key-000000000").messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 401
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    # The Bearer form (ANTHROPIC_AUTH_TOKEN) is accepted too.
    ok = client(proxy, auth_token=proxy.api_key)
    assert ok.messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ).content


def test_error_unknown_model(proxy: Daemon) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client(proxy).messages.create(
            model="llama-3-70b", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        client(proxy).messages.count_tokens(model="llama-3-70b", messages=[{"role": "user", "content": "x"}])


def test_error_rate_limited_on_every_account(proxy: Daemon, fake: FakeGoogle) -> None:
    for email in ACCOUNTS:
        # 20 s: a sub-3 s rate limit would be waited out on the same account (UPSTREAM.md §9.2).
        fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay="20s")], email=email)
    with pytest.raises(anthropic.RateLimitError) as info:
        client(proxy).messages.create(
            model="gemini-2.5-flash", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    err = info.value
    assert err.status_code == 429
    assert err.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": err.body["error"]["message"]},  # type: ignore[index]
    }
    assert 19 <= int(err.response.headers["retry-after"]) <= 20
    assert len(fake.calls_to("generateContent")) == len(ACCOUNTS)
    # Now every account is cooling down: the pool itself answers, as a 429 too.
    with pytest.raises(anthropic.RateLimitError) as again:
        client(proxy).messages.count_tokens(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert again.value.response.headers.get("retry-after")


def test_error_overloaded(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.error(429, reason="MODEL_CAPACITY_EXHAUSTED") for _ in range(10)])
    with pytest.raises(anthropic.OverloadedError) as info:
        client(proxy).messages.create(
            model="gemini-2.5-flash-lite", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_error_api_error(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.error(500) for _ in range(10)])
    with pytest.raises(anthropic.InternalServerError) as info:
        client(proxy).messages.create(
            model="gemini-3-pro-low", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert info.value.body["type"] == "error"  # type: ignore[index]


def test_upstream_400_is_invalid_request(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.error(400, message="Request contains an invalid argument.")])
    with pytest.raises(anthropic.BadRequestError) as info:
        client(proxy).messages.create(
            model="gemini-3-flash", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(fake.calls_to("generateContent")) == 1  # no failover for the request's own fault


def test_model_echo_and_aliases(proxy: Daemon, fake: FakeGoogle) -> None:
    """Claude Code's dated names resolve by family (haiku -> the cheapest Claude
    served, never another vendor); the answer echoes the client's name."""
    msg = client(proxy).messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=10, messages=[{"role": "user", "content": "title?"}]
    )
    assert msg.model == "claude-haiku-4-5-20251001"
    # The 2026-08 catalog has no Haiku: the cheapest Claude served is the live Sonnet.
    assert fake.calls_to("generateContent")[-1].model == "claude-sonnet-4-6"
