"""Issue 16, end to end through the real daemon and the fake Google (which
enforces Claude's id pairing and signed-thinking rules): the official SDKs
sending what real clients send past the first tool loop."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle, Reply

CLAUDE_THINKING = "claude-sonnet-4-5-thinking"


def _upstream_requests(fake: FakeGoogle) -> list[dict[str, Any]]:
    # The session's fake keeps every call, refused ones too (no parsed body):
    # which came before this test depends on the order the files ran in.
    return [
        c.body["request"]
        for c in fake.calls
        if c.method in ("generateContent", "streamGenerateContent") and c.body is not None
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_genai_automatic_function_calling_on_claude(proxy: Daemon, fake: FakeGoogle, stream: bool) -> None:
    """google-genai runs the tool itself and sends the result back without an
    id; Claude (thinking on) accepts the turn and answers."""
    fake.script(
        [
            Reply.function_call("get_weather", {"city": "Paris"}, thought="I should look up the weather."),
            Reply.text("It is sunny in Paris.", thought="Now answer."),
        ]
    )
    seen: list[str] = []

    def get_weather(city: str) -> str:
        """Weather for a city."""
        seen.append(city)
        return "sunny"

    client = genai.Client(api_key=proxy.api_key, http_options=types.HttpOptions(base_url=proxy.base_url))
    config = types.GenerateContentConfig(
        tools=[get_weather],
        max_output_tokens=8192,
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=2048),
    )
    if stream:
        chunks = list(
            client.models.generate_content_stream(
                model=CLAUDE_THINKING, contents="Weather in Paris?", config=config
            )
        )
        text = "".join(
            p.text or "" for c in chunks for p in (c.candidates[0].content.parts or []) if not p.thought
        )
    else:
        resp = client.models.generate_content(
            model=CLAUDE_THINKING, contents="Weather in Paris?", config=config
        )
        text = resp.text or ""
    assert seen == ["Paris"]
    assert "sunny in Paris" in text
    second = _upstream_requests(fake)[-1]
    assert second["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2048  # thinking stayed on
    model_turn = next(c for c in second["contents"] if c["role"] == "model")
    assert model_turn["parts"][0]["thought"] is True


def test_gemini_cli_shape_on_claude(proxy: Daemon, fake: FakeGoogle) -> None:
    """The Gemini CLI's second request: thought parts dropped, the result
    without an id; the proxy restores both and the fake accepts the turn."""
    fake.script(
        [
            Reply.function_call("read_file", {"path": "a.txt"}, thought="Read it first."),
            Reply.text("Done."),
        ]
    )
    url = f"{proxy.base_url}/v1beta/models/{CLAUDE_THINKING}:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": proxy.api_key}
    tools = [
        {
            "functionDeclarations": [
                {
                    "name": "read_file",
                    "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                }
            ]
        }
    ]
    gen = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048}, "maxOutputTokens": 8192}
    user = {"role": "user", "parts": [{"text": "Read a.txt"}]}
    with httpx.Client(timeout=30) as http:
        r = http.post(
            url, headers=headers, json={"contents": [user], "tools": tools, "generationConfig": gen}
        )
        assert r.status_code == 200, r.text
        parts = [
            p
            for line in r.text.splitlines()
            if line.startswith("data: ")
            for p in json.loads(line[6:])["candidates"][0]["content"].get("parts", [])
        ]
        call = next(p["functionCall"] for p in parts if "functionCall" in p)
        body = {
            "contents": [
                user,
                {"role": "model", "parts": [{"functionCall": {"name": call["name"], "args": call["args"]}}]},
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "read_file", "response": {"output": "hi"}}}],
                },
            ],
            "tools": tools,
            "generationConfig": gen,
        }
        r2 = http.post(url, headers=headers, json=body)
    assert r2.status_code == 200, r2.text
    answer = "".join(
        p.get("text", "")
        for line in r2.text.splitlines()
        if line.startswith("data: ")
        for p in json.loads(line[6:])["candidates"][0]["content"].get("parts", [])
        if not p.get("thought")
    )
    assert answer == "Done."
    sent = _upstream_requests(fake)[-1]
    assert sent["contents"][1]["parts"][0]["thought"] is True
    assert "thinkingConfig" in sent["generationConfig"]


def test_claude_code_typed_tools(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.function_call("str_replace_based_edit_tool", {"command": "view", "path": "/a.py"})])
    c = anthropic.Anthropic(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0)
    msg = c.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        tools=[
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        ],
        messages=[{"role": "user", "content": "show /a.py"}],
    )
    block = msg.content[-1]
    assert block.type == "tool_use" and block.name == "str_replace_based_edit_tool"
    assert block.input == {"command": "view", "path": "/a.py"}
    names = {d["name"] for t in _upstream_requests(fake)[-1]["tools"] for d in t["functionDeclarations"]}
    assert names == {"bash", "str_replace_based_edit_tool"}
    with pytest.raises(anthropic.BadRequestError) as exc:
        c.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=64,
            tools=[{"type": "hologram_20990101", "name": "holo"}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "x"}],
        )
    assert "hologram_20990101" in str(exc.value)
    c.close()


def test_codex_mcp_namespace_round_trip(proxy: Daemon, fake: FakeGoogle) -> None:
    fake.script([Reply.function_call("mcp__echo__echo", {"text": "hi"}), Reply.text("It said hi.")])
    c = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=proxy.api_key, max_retries=0)
    tools: Any = [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}},
        {
            "type": "namespace",
            "name": "mcp__echo",
            "description": "echo server",
            "tools": [
                {
                    "type": "function",
                    "name": "echo",
                    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
                }
            ],
        },
        {"type": "web_search", "external_web_access": True},
    ]
    first = c.responses.create(model="gemini-3-flash", input="echo hi", tools=tools, store=False)
    call = first.output[-1]
    assert call.type == "function_call"
    assert call.namespace == "mcp__echo" and call.name == "echo"
    history: Any = [
        {"role": "user", "content": "echo hi"},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "hi"},
    ]
    second = c.responses.create(model="gemini-3-flash", input=history, tools=tools, store=False)
    assert second.output_text == "It said hi."
    sent = _upstream_requests(fake)[-1]
    assert sent["contents"][1]["parts"][0]["functionCall"]["name"] == "mcp__echo__echo"
    c.close()
