"""What real clients send past the first tool loop (issue 16), at the
translation layer: Anthropic typed tools, Codex namespace tools, effort,
Gemini-shaped tool loops on Claude models, logprobs and stop sequences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from openai.types.responses import Response, ResponseFunctionToolCall

from daemon.errors import BadRequest
from daemon.protocols import anthropic as A
from daemon.protocols import anthropic_tools, rules
from daemon.protocols import gemini as G
from daemon.protocols import openai_chat as C
from daemon.protocols import openai_completions as CO
from daemon.protocols import openai_responses as R
from daemon.protocols.signatures import SignatureStore

SIG = "EqQBCkgIBxABGAIiQGZ4YW1wbGUtc2lnbmF0dXJlLWNsYXVkZS1BLXByb3h5LWlzc3VlZA=="


@dataclass(frozen=True)
class Limits:
    max_output_tokens: int | None = 64000
    supports_thinking: bool = True
    min_thinking_budget: int | None = None


def decls(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for t in request.get("tools", []) for d in t.get("functionDeclarations", [])}


# ===================================================== 1. Anthropic typed tools

CLAUDE_CODE_TOOLS: list[dict[str, Any]] = [
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 10000},
    {"type": "text_editor_20250124", "name": "str_replace_editor"},
    {"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768},
    {"type": "memory_20250818", "name": "memory"},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {}}},
]


def _anthropic(tools: list[dict[str, Any]], model: str = "claude-sonnet-4-6") -> Any:
    body = {
        "model": model,
        "max_tokens": 1024,
        "tools": tools,
        "messages": [{"role": "user", "content": "edit it"}],
    }
    return A.to_gemini(body, model=model, store=SignatureStore())


def test_typed_tools_get_their_published_schemas() -> None:
    call = _anthropic(CLAUDE_CODE_TOOLS)
    d = decls(call.request)
    assert set(d) == {
        "bash",
        "str_replace_based_edit_tool",
        "str_replace_editor",
        "computer",
        "memory",
        "Read",
        "web_search",  # the gateway runs web search itself (protocols.web_search)
    }
    assert set(d["bash"]["parameters"]["properties"]) == {"command", "restart"}
    new_editor = d["str_replace_based_edit_tool"]["parameters"]
    assert new_editor["properties"]["command"]["enum"] == ["view", "create", "str_replace", "insert"]
    assert {"path", "view_range", "file_text", "old_str", "new_str", "insert_line"} <= set(
        new_editor["properties"]
    )
    assert new_editor["required"] == ["command", "path"]
    assert "undo_edit" in d["str_replace_editor"]["parameters"]["properties"]["command"]["enum"]
    computer = d["computer"]
    assert "scroll" in computer["parameters"]["properties"]["action"]["enum"]
    assert "1024x768" in computer["description"]
    assert "rename" in d["memory"]["parameters"]["properties"]["command"]["enum"]
    # Web search becomes the gateway's web_search function, max_uses kept.
    assert A.EXTRA_IGNORED_TOOLS not in call.extra
    assert call.extra["web_search"] == {"max_uses": 3}


def test_typed_tools_survive_the_claude_rules() -> None:
    """Every schema in the table passes the upstream rules for Claude without
    a placeholder (each has a required property, §6.2)."""
    tools = [{"type": kind, "name": name} for kind, (name, _, _) in anthropic_tools.KNOWN.items()]
    seen: dict[str, dict[str, Any]] = {}
    for tool in tools:  # one per request: several types share a name
        call = _anthropic([tool])
        notes = rules.apply(call.request, model="claude-sonnet-4-6", limits=Limits())
        assert not [n for n in notes if "placeholder" in n], tool
        seen.update(decls(call.request))
    assert set(seen) == {"bash", "str_replace_editor", "str_replace_based_edit_tool", "computer", "memory"}


def test_typed_tool_call_comes_back_under_its_name() -> None:
    call = _anthropic(CLAUDE_CODE_TOOLS)
    call.extra[A.EXTRA_ID] = "msg_test"
    args = {"command": "str_replace", "path": "/a.py", "old_str": "x", "new_str": "y"}
    resp = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "name": "str_replace_based_edit_tool",
                                "args": args,
                                "id": "toolu_1",
                            }
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    msg = A.from_gemini(resp, call=call, store=SignatureStore())
    assert msg["stop_reason"] == "tool_use"
    assert msg["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "str_replace_based_edit_tool", "input": args}
    ]


def test_unknown_typed_tool_is_a_400_naming_the_type() -> None:
    with pytest.raises(BadRequest) as exc:
        _anthropic([{"type": "teleporter_20990101", "name": "beam"}])
    assert exc.value.param == "tools.0.type"
    assert "'teleporter_20990101'" in exc.value.message
    assert "bash_20250124" in exc.value.message  # says what is known
    body = A.error_body(exc.value)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


# ===================================================== 2. Codex namespace tools

CODEX_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    },
    {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Sub-agents",
        "tools": [
            {
                "type": "function",
                "name": "spawn_agent",
                "description": "Start a sub-agent",
                "parameters": {"type": "object", "properties": {"task": {"type": "string"}}},
            }
        ],
    },
    {
        "type": "namespace",
        "name": "mcp__echo_server",
        "description": "Tools of the echo MCP server",
        "tools": [
            {
                "type": "function",
                "name": "echo",
                "description": "Echo the text back",
                "strict": False,
                "parameters": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                    "additionalProperties": False,
                },
            }
        ],
    },
    {"type": "web_search", "external_web_access": True},
]


def _codex(model: str, input_items: Any = "echo hi", store: SignatureStore | None = None) -> Any:
    body = {"model": model, "input": input_items, "tools": CODEX_TOOLS, "stream": True}
    return R.to_gemini(body, model=model, store=store or SignatureStore())


@pytest.mark.parametrize("model", ["gemini-3-flash", "claude-sonnet-4-6"])
def test_namespace_tools_are_flattened(model: str) -> None:
    call = _codex(model)
    d = decls(call.request)
    assert set(d) == {"exec_command", "multi_agent_v1__spawn_agent", "mcp__echo_server__echo", "web_search"}
    assert d["mcp__echo_server__echo"]["description"] == "Tools of the echo MCP server\n\nEcho the text back"
    assert d["mcp__echo_server__echo"]["parameters"]["required"] == ["text"]
    # web_search next to functions never breaks a request: it becomes the
    # gateway's own web_search function, never googleSearch.
    assert all("googleSearch" not in t for t in call.request["tools"])
    assert "web_search" not in call.extra.get("ignored_tools", [])
    assert call.extra["web_search"] == {"max_uses": 5}
    assert call.extra["tool_namespaces"]["mcp__echo_server__echo"] == ["mcp__echo_server", "echo"]


def test_long_namespaced_names_stay_unique_and_legal() -> None:
    a = R.namespaced_name("mcp__" + "s" * 50, "tool_one_with_a_long_name")
    b = R.namespaced_name("mcp__" + "s" * 50, "tool_two_with_a_long_name")
    assert a != b and len(a) <= 64 and len(b) <= 64
    assert a == R.namespaced_name("mcp__" + "s" * 50, "tool_one_with_a_long_name")  # stable
    assert R.namespaced_name("mcp__my server", "do it") == "mcp__my_server__do_it"


def _answer(call: Any, parts: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    call.extra["id"] = "resp_test"
    call.extra["created"] = 1
    resp = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}
    if not stream:
        return R.from_gemini(resp, call=call, store=SignatureStore())
    tr = R.StreamTranslator(call, SignatureStore())
    raw = tr.start() + tr.feed(resp) + tr.finish()
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added and added[0].get("namespace") == "mcp__echo_server"
    assert tr.response is not None
    return tr.response


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_namespaced_call_comes_back_as_codex_expects(stream: bool) -> None:
    call = _codex("gemini-3-flash")
    part = {"functionCall": {"name": "mcp__echo_server__echo", "args": {"text": "hi"}, "id": "call_1"}}
    resp = _answer(call, [part], stream)
    Response.model_validate(resp)
    item = ResponseFunctionToolCall.model_validate(resp["output"][0])
    assert item.namespace == "mcp__echo_server" and item.name == "echo"
    assert json.loads(item.arguments) == {"text": "hi"} and item.call_id == "call_1"


def test_namespaced_call_in_history_goes_back_flattened() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "echo hi"}]},
        {
            "type": "function_call",
            "namespace": "mcp__echo_server",
            "name": "echo",
            "arguments": '{"text":"hi"}',
            "call_id": "call_1",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "hi"},
    ]
    call = _codex("gemini-3-flash", items)
    model_turn, result_turn = call.request["contents"][1:]
    assert model_turn["parts"][0]["functionCall"]["name"] == "mcp__echo_server__echo"
    assert result_turn["parts"][0]["functionResponse"]["name"] == "mcp__echo_server__echo"
    assert result_turn["parts"][0]["functionResponse"]["id"] == "call_1"


# ================================================================== 3. Effort


@pytest.mark.parametrize(
    ("model", "mode", "effort", "expected"),
    [
        ("claude-sonnet-4-6", "budget", "high", {"includeThoughts": True, "thinkingBudget": 24576}),
        ("claude-sonnet-4-6", "budget", "xhigh", {"includeThoughts": True, "thinkingBudget": 32768}),
        ("claude-sonnet-4-6", "budget", "low", {"includeThoughts": True, "thinkingBudget": 1024}),
        ("claude-sonnet-4-6", "budget", "none", {"includeThoughts": False, "thinkingBudget": 0}),
        ("gemini-3-flash", "budget", "medium", {"includeThoughts": True, "thinkingBudget": 8192}),
        ("gemini-3-flash", "level", "medium", {"includeThoughts": True, "thinkingLevel": "medium"}),
        ("gemini-3-flash", "level", "xhigh", {"includeThoughts": True, "thinkingLevel": "high"}),
        ("gemini-3-flash", "level", "minimal", {"includeThoughts": False, "thinkingBudget": 0}),
    ],
)
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_effort_reaches_the_thinking_config(
    api: str, model: str, mode: rules.GeminiThinking, effort: str, expected: dict[str, Any]
) -> None:
    if api == "chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        body["reasoning_effort"] = effort
        call = C.to_gemini(body, model=model, store=SignatureStore())
    else:
        body = {"model": model, "input": "x", "reasoning": {"effort": effort, "summary": "auto"}}
        call = R.to_gemini(body, model=model, store=SignatureStore())
    rules.apply(call.request, model=model, limits=Limits(), gemini_thinking=mode)
    gen = call.request["generationConfig"]
    assert gen["thinkingConfig"] == expected
    if model.startswith("claude") and expected["thinkingBudget"]:
        # An effort names no length: Claude still gets room above the budget (§6.4).
        assert gen["maxOutputTokens"] == 64000


def test_anthropic_effort_through_the_rules() -> None:
    body = {
        "model": "claude-opus-4-6",
        "max_tokens": 32000,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "messages": [{"role": "user", "content": "x"}],
    }
    call = A.to_gemini(body, model="claude-opus-4-6-thinking", store=SignatureStore())
    rules.apply(call.request, model="claude-opus-4-6-thinking", limits=Limits())
    assert call.request["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 8192,
    }
    body["model"] = "gemini-3-pro"
    del body["thinking"]
    call = A.to_gemini(body, model="gemini-3-pro", store=SignatureStore())
    rules.apply(call.request, model="gemini-3-pro", limits=Limits(), gemini_thinking="level")
    assert call.request["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": False,
        "thinkingLevel": "medium",
    }


# ====================================== 4. Gemini-shaped tool loops on Claude

CLAUDE = "claude-sonnet-4-5-thinking"
THINK = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048}, "maxOutputTokens": 8192}
TOOLS = [
    {"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]}
]


def _claude_answer(store: SignatureStore, *, stream: bool, call_id: str | None = "toolu_vrtx_1") -> None:
    """Turn 1 as the upstream answers it on the Gemini route (recorded by the proxy)."""
    fc: dict[str, Any] = {"name": "get_weather", "args": {"city": "Paris"}}
    if call_id:
        fc["id"] = call_id
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [{"thought": True, "text": "Need the "}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"thought": True, "text": "weather."}]}}]},
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"thought": True, "text": ""},
                            {"thought": True, "thoughtSignature": SIG},
                            {"functionCall": fc},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ]
        },
    ]
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
        "generationConfig": THINK,
    }
    call = G.to_gemini(body, model=CLAUDE, store=store, stream=stream)
    if stream:
        tr = G.StreamTranslator(call, store)
        for chunk in chunks:
            tr.feed(chunk)
        tr.finish()
    else:
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
        whole = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}
        G.from_gemini(whole, call=call, store=store)


def _second_turn(model_parts: list[dict[str, Any]], result_parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": model_parts},
            {"role": "user", "parts": result_parts},
        ],
        "tools": TOOLS,
        "generationConfig": json.loads(json.dumps(THINK)),
    }


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("call_id", ["toolu_vrtx_1", None], ids=["upstream-id", "no-id"])
def test_gemini_cli_shape_gets_ids_and_thinking_back(stream: bool, call_id: str | None) -> None:
    """The Gemini CLI drops thought parts (and may drop ids): the turn goes back
    starting with the signed thinking, every call and result paired by id."""
    store = SignatureStore()
    _claude_answer(store, stream=stream, call_id=call_id)
    body = _second_turn(
        [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
        [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}],
    )
    call = G.to_gemini(body, model=CLAUDE, store=store)
    model_turn, results = call.request["contents"][1:]
    assert model_turn["parts"][0] == {"text": "Need the weather.", "thought": True, "thoughtSignature": SIG}
    fc = model_turn["parts"][1]["functionCall"]
    assert fc["id"].startswith("toolu_")
    assert results["parts"][0]["functionResponse"]["id"] == fc["id"]
    assert call.thinking and "thinkingConfig" in call.request["generationConfig"]
    assert not call.extra.get("notes")


def test_genai_afc_shape_keeps_its_thoughts_and_pairs_by_id() -> None:
    """google-genai's automatic function calling sends the model content back
    as received (thought parts, the call's id) and results without ids."""
    store = SignatureStore()
    _claude_answer(store, stream=False)
    body = _second_turn(
        [
            {"thought": True, "text": "Need the weather.", "thoughtSignature": SIG},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "toolu_vrtx_1"}},
        ],
        [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}],
    )
    call = G.to_gemini(body, model=CLAUDE, store=store)
    model_turn, results = call.request["contents"][1:]
    assert [p.get("thought", False) for p in model_turn["parts"]] == [True, False]
    assert results["parts"][0]["functionResponse"]["id"] == "toolu_vrtx_1"
    assert call.thinking


def test_parallel_results_pair_by_name_then_order() -> None:
    body = _second_turn(
        [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "a"}},
            {"functionCall": {"name": "get_time", "args": {}, "id": "b"}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}, "id": "c"}},
        ],
        [
            {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "rain"}}},
        ],
    )
    del body["generationConfig"]
    call = G.to_gemini(body, model="claude-sonnet-4-5", store=SignatureStore())
    ids = [p["functionResponse"]["id"] for p in call.request["contents"][2]["parts"]]
    assert ids == ["b", "a", "c"]


def test_unknown_thinking_turns_thinking_off() -> None:
    """A restarted proxy (empty store): the unsigned turn cannot be sent with
    thinking on, so thinking goes off for this request (the one rule)."""
    body = _second_turn(
        [
            {"thought": True, "text": "forged", "thoughtSignature": "bm90LWlzc3VlZA=="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        ],
        [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}],
    )
    call = G.to_gemini(body, model=CLAUDE, store=SignatureStore())
    assert "thinkingConfig" not in call.request["generationConfig"]
    assert not call.thinking
    assert not any(p.get("thought") for c in call.request["contents"] for p in c["parts"])
    assert call.extra["notes"]
    fc = call.request["contents"][1]["parts"][0]["functionCall"]
    assert call.request["contents"][2]["parts"][0]["functionResponse"]["id"] == fc["id"]


def test_gemini_models_are_left_alone() -> None:
    body = _second_turn(
        [{"functionCall": {"name": "get_weather", "args": {}}}],
        [{"functionResponse": {"name": "get_weather", "response": {}}}],
    )
    call = G.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    assert "id" not in call.request["contents"][1]["parts"][0]["functionCall"]


# ============================================================ 5. Small things


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": False, "top_logprobs": 3}, "top_logprobs"),
    ],
)
def test_chat_logprobs_are_refused_by_name(extra: dict[str, Any], param: str) -> None:
    body = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(BadRequest) as exc:
        C.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    assert exc.value.param == param and param in exc.value.message


def test_logprobs_off_is_fine() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "logprobs": False,
        "top_logprobs": 0,
    }
    C.to_gemini(body, model="gemini-3-flash", store=SignatureStore())
    CO.to_gemini(
        {"model": "m", "prompt": "x", "logprobs": None}, model="gemini-3-flash", store=SignatureStore()
    )
    R.to_gemini(
        {"model": "m", "input": "x", "top_logprobs": 0}, model="gemini-3-flash", store=SignatureStore()
    )


@pytest.mark.parametrize(
    ("api", "body", "param"),
    [
        ("completions", {"prompt": "x", "logprobs": 2}, "logprobs"),
        ("responses", {"input": "x", "top_logprobs": 2}, "top_logprobs"),
        ("responses", {"input": "x", "include": ["message.output_text.logprobs"]}, "include"),
    ],
)
def test_other_apis_refuse_logprobs(api: str, body: dict[str, Any], param: str) -> None:
    mod: Any = CO if api == "completions" else R
    with pytest.raises(BadRequest) as exc:
        mod.to_gemini({"model": "m", **body}, model="gemini-3-flash", store=SignatureStore())
    assert exc.value.param == param


def _stop_answer(stops: list[str], finish: str, parts: list[dict[str, Any]], stream: bool) -> tuple[Any, Any]:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "stop_sequences": stops,
        "messages": [{"role": "user", "content": "x"}],
    }
    call = A.to_gemini(body, model="claude-sonnet-4-6", store=SignatureStore())
    call.extra[A.EXTRA_ID] = "msg_1"
    resp = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}]}
    if not stream:
        msg = A.from_gemini(resp, call=call, store=SignatureStore())
        return msg["stop_reason"], msg["stop_sequence"]
    tr = A.StreamTranslator(call, SignatureStore())
    raw = (tr.feed(resp) + tr.finish()).decode()
    delta = next(json.loads(line[6:]) for line in raw.splitlines() if '"message_delta"' in line)
    return delta["delta"]["stop_reason"], delta["delta"]["stop_sequence"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("stops", "finish", "parts", "expected"),
    [
        (["</answer>"], "STOP", [{"text": "<answer>42"}], ("stop_sequence", "</answer>")),
        (["</a>", "</b>"], "STOP", [{"text": "x"}], ("stop_sequence", None)),
        ([], "STOP", [{"text": "x"}], ("end_turn", None)),
        (["</a>"], "MAX_TOKENS", [{"text": "x"}], ("max_tokens", None)),
        (["</a>"], "STOP", [{"functionCall": {"name": "f", "args": {}, "id": "t"}}], ("tool_use", None)),
    ],
)
def test_stop_sequence_reported_when_it_can_be_told(
    stream: bool, stops: list[str], finish: str, parts: list[dict[str, Any]], expected: tuple[str, Any]
) -> None:
    assert _stop_answer(stops, finish, parts, stream) == expected
