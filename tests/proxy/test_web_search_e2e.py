"""Issue 16 item 2: server-side web search, end to end through the real
daemon and the fake Google with the official SDKs.

The model gets a ``web_search(query)`` function; its call is run by the
gateway as a separate ``requestType: "web_search"`` call with ``googleSearch``
on the catalog's web-search model (UPSTREAM.md §5.4), and the conversation goes
on with the result, in one client request. The fake rejects googleSearch
next to functionDeclarations, as Google does; the tests also check no such
request was ever sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message
from openai import OpenAI
from openai.types.responses import Response

from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle, Reply

CLAUDE = "claude-sonnet-4-5"
CLAUDE_THINKING = "claude-sonnet-4-5-thinking"
GEMINI = "gemini-3-flash"
SEARCH_MODEL = "gemini-3.1-flash-lite"
SOURCES = (
    ("https://example.org/paris-weather", "example.org"),
    ("https://news.example/paris", "news.example"),
)
QUERY = "weather in Paris today"
SEARCH_TEXT = "It is sunny in Paris, 21 degrees."
FINAL = "Paris is sunny today, about 21 degrees."

WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
READ_FILE = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
CODEX_TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
        "strict": False,
    },
    {"type": "web_search", "external_web_access": True},
]


def script_search(fake: FakeGoogle, *, thought: str | None = None) -> None:
    """The main model searches, the search model answers grounded, the main model answers."""
    fake.script(
        [
            Reply.function_call("web_search", {"query": QUERY}, thought=thought),
            Reply.search(SEARCH_TEXT, SOURCES),
            Reply.text(FINAL),
        ]
    )


def generate_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent")]


def check_upstream(fake: FakeGoogle, searches: int = 1) -> list[Any]:
    """The separate search call(s) were made as §5.4 says, and no request mixed
    googleSearch with function declarations. Returns the main calls."""
    calls = generate_calls(fake)
    assert all(c.status == 200 for c in calls), [(c.model, c.status) for c in calls]
    search, main = [], []
    for c in calls:
        tools = c.body["request"].get("tools") or []
        has_search = any("googleSearch" in t for t in tools)
        has_funcs = any(t.get("functionDeclarations") for t in tools)
        assert not (has_search and has_funcs), "googleSearch mixed with functionDeclarations"
        (search if has_search else main).append(c)
    assert len(search) == searches
    for c in search:
        assert c.body["requestType"] == "web_search"
        assert c.body["model"] == SEARCH_MODEL
        assert c.method == "generateContent"
        assert "requestId" not in c.body
        assert c.body["request"]["contents"] == [{"role": "user", "parts": [{"text": QUERY}]}]
    for c in main:
        assert c.body["requestType"] != "web_search"
        names = {d["name"] for t in c.body["request"]["tools"] for d in t["functionDeclarations"]}
        assert "web_search" in names
    # The round after the search answers the model's call with the result.
    last = main[-1].body["request"]["contents"]
    response = last[-1]["parts"][0]["functionResponse"]
    assert response["name"] == "web_search"
    assert response["response"]["answer"] == SEARCH_TEXT
    assert [s["url"] for s in response["response"]["sources"]] == [u for u, _ in SOURCES]
    return main


_OPEN: list[anthropic.Anthropic] = []


def aclient(d: Daemon) -> anthropic.Anthropic:
    c = anthropic.Anthropic(base_url=d.base_url, api_key=d.api_key, max_retries=0)
    _OPEN.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def check_anthropic(msg: Message) -> None:
    kinds = [b.type for b in msg.content]
    assert kinds == ["server_tool_use", "web_search_tool_result", "text"], kinds
    use, result, text = msg.content
    assert use.type == "server_tool_use" and use.name == "web_search"
    assert use.input == {"query": QUERY}
    assert use.id.startswith("srvtoolu_")
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    assert isinstance(result.content, list)
    assert [(r.type, r.url, r.title) for r in result.content] == [
        ("web_search_result", u, t) for u, t in SOURCES
    ]
    assert text.type == "text" and text.text == FINAL
    assert text.citations and {c.url for c in text.citations} == {u for u, _ in SOURCES}
    assert all(c.type == "web_search_result_location" for c in text.citations)
    assert msg.stop_reason == "end_turn"
    assert msg.usage.server_tool_use is not None
    assert msg.usage.server_tool_use.web_search_requests == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_web_search_only(proxy: Daemon, fake: FakeGoogle, stream: bool) -> None:
    script_search(fake)
    c = aclient(proxy)
    kw: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 1024,
        "tools": [WEB_SEARCH_TOOL],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }
    if stream:
        with c.messages.stream(**kw) as s:
            msg = s.get_final_message()
    else:
        msg = c.messages.create(**kw)
    check_anthropic(msg)
    main = check_upstream(fake)
    assert len(main) == 2
    assert all(c.stream is stream for c in main)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_web_search_next_to_a_function_with_thinking(
    proxy: Daemon, fake: FakeGoogle, stream: bool
) -> None:
    """Claude with thinking: the searching turn goes back upstream with its
    signed thinking (the fake checks Claude's signatures)."""
    script_search(fake, thought="I should look this up.")
    c = aclient(proxy)
    kw: dict[str, Any] = {
        "model": CLAUDE_THINKING,
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [READ_FILE, WEB_SEARCH_TOOL],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }
    if stream:
        with c.messages.stream(**kw) as s:
            msg = s.get_final_message()
    else:
        msg = c.messages.create(**kw)
    assert msg.content[0].type == "thinking"
    assert all(b.signature for b in msg.content if b.type == "thinking")
    msg.content = [b for b in msg.content if b.type != "thinking"]
    check_anthropic(msg)
    main = check_upstream(fake)
    names = {d["name"] for t in main[0].body["request"]["tools"] for d in t["functionDeclarations"]}
    assert names == {"read_file", "web_search"}
    model_turn = main[1].body["request"]["contents"][-2]
    assert model_turn["role"] == "model" and model_turn["parts"][0].get("thought")


def test_anthropic_client_function_still_served(proxy: Daemon, fake: FakeGoogle) -> None:
    """With web search declared, a call of the client's own tool reaches it as before."""
    fake.script([Reply.function_call("read_file", {"path": "a.txt"})])
    msg = aclient(proxy).messages.create(
        model=CLAUDE,
        max_tokens=1024,
        tools=[READ_FILE, WEB_SEARCH_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "read a.txt"}],
    )
    assert [b.type for b in msg.content] == ["tool_use"]
    assert msg.stop_reason == "tool_use"
    assert len(generate_calls(fake)) == 1


# ------------------------------------------------------------------ Responses


@pytest.fixture
def oclient(proxy: Daemon) -> Iterator[OpenAI]:
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0, timeout=30) as c:
        yield c


def check_responses(r: Response) -> None:
    kinds = [item.type for item in r.output]
    assert kinds == ["web_search_call", "message"], kinds
    ws, message = r.output
    assert ws.type == "web_search_call" and ws.status == "completed"
    assert ws.action.type == "search" and ws.action.query == QUERY
    assert message.type == "message"
    text = message.content[0]
    assert text.type == "output_text" and text.text == FINAL
    urls = [(a.type, a.url, a.title) for a in text.annotations if a.type == "url_citation"]
    assert urls == [("url_citation", u, t) for u, t in SOURCES]
    for a in text.annotations:
        assert a.type == "url_citation" and 0 <= a.start_index <= a.end_index <= len(FINAL)
    assert r.output_text == FINAL


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_codex_web_search(oclient: OpenAI, fake: FakeGoogle, stream: bool, model: str) -> None:
    script_search(fake)
    kw: dict[str, Any] = {"model": model, "input": "What is the weather in Paris?", "tools": CODEX_TOOLS}
    if stream:
        events = []
        with oclient.responses.stream(**kw) as s:
            for ev in s:
                events.append(ev.type)
            r = s.get_final_response()
        assert "response.web_search_call.completed" in events
        assert "response.output_text.annotation.added" in events
        assert events[-1] == "response.completed"
    else:
        r = oclient.responses.create(**kw)
    check_responses(r)
    main = check_upstream(fake)
    names = {d["name"] for t in main[0].body["request"]["tools"] for d in t["functionDeclarations"]}
    assert names == {"exec_command", "web_search"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_function_tools_still_served(oclient: OpenAI, fake: FakeGoogle, stream: bool) -> None:
    """Codex sends web_search on every request: its function tools keep working."""
    fake.script([Reply.function_call("exec_command", {"cmd": "ls"})])
    kw: dict[str, Any] = {"model": GEMINI, "input": "list files", "tools": CODEX_TOOLS}
    if stream:
        with oclient.responses.stream(**kw) as s:
            r = s.get_final_response()
    else:
        r = oclient.responses.create(**kw)
    calls = [i for i in r.output if i.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("exec_command", {"cmd": "ls"})]
    assert len(generate_calls(fake)) == 1
    tools = generate_calls(fake)[0].body["request"]["tools"]
    assert all("googleSearch" not in t for t in tools)


def test_search_budget_is_bounded(proxy: Daemon, fake: FakeGoogle) -> None:
    """max_uses 1: a second web_search call is answered 'no more searches', not run."""
    fake.script(
        [
            Reply.function_call("web_search", {"query": QUERY}),
            Reply.search(SEARCH_TEXT, SOURCES),
            Reply.function_call("web_search", {"query": "again"}),
            Reply.text(FINAL),
        ]
    )
    msg = aclient(proxy).messages.create(
        model=CLAUDE,
        max_tokens=1024,
        tools=[{**WEB_SEARCH_TOOL, "max_uses": 1}],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert [b.type for b in msg.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert msg.usage.server_tool_use is not None and msg.usage.server_tool_use.web_search_requests == 1
    calls = generate_calls(fake)
    assert sum(1 for c in calls if c.body["requestType"] == "web_search") == 1
    refused = calls[-1].body["request"]["contents"][-1]["parts"][0]["functionResponse"]
    assert "no more searches" in refused["response"]["error"]
