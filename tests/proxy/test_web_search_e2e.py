"""Issue 16 item 2: server-side web search, end to end through the real
daemon and the fake Google with the official SDKs (and the follow-ups:
a search next to the client's own calls, past searches in the history,
citations that cover their own segment).

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


def check_upstream(fake: FakeGoogle, searches: int = 1, answered: bool = True) -> list[Any]:
    """The separate search call(s) were made as §5.4 says, and no request mixed
    googleSearch with function declarations; ``answered``: a later round answered
    the model's web_search call with the result. Returns the main calls."""
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
    if not answered:
        return main
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


def ask(c: Any, stream: bool, **kw: Any) -> Any:
    """One Anthropic message, streamed or not (the final message either way)."""
    if stream:
        with c.messages.stream(**kw) as s:
            return s.get_final_message()
    return c.messages.create(**kw)


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
    msg = ask(c, stream, **kw)
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
    msg = ask(c, stream, **kw)
    assert msg.content[0].type == "thinking"
    assert all(b.signature for b in msg.content if b.type == "thinking")
    msg.content = [b for b in msg.content if b.type != "thinking"]
    check_anthropic(msg)
    main = check_upstream(fake)
    names = {d["name"] for t in main[0].body["request"]["tools"] for d in t["functionDeclarations"]}
    assert names == {"read_file", "web_search"}
    model_turn = main[1].body["request"]["contents"][-2]
    assert model_turn["role"] == "model" and model_turn["parts"][0].get("thought")


def answered_upstream(contents: list[dict[str, Any]]) -> None:
    """No web_search call reaches the upstream from the history, and every
    model call is answered in the next content (Gemini and Claude both want it)."""
    for i, content in enumerate(contents):
        calls = [p["functionCall"] for p in content["parts"] if "functionCall" in p]
        assert all(c["name"] != "web_search" for c in calls), content
        if content["role"] == "model" and calls:
            answers = [p["functionResponse"] for p in contents[i + 1]["parts"] if "functionResponse" in p]
            assert [a["name"] for a in answers] == [c["name"] for c in calls]


def search_note(contents: list[dict[str, Any]]) -> str:
    """The model-turn note a past search became (exactly one)."""
    notes = [
        p["text"]
        for c in contents
        if c["role"] == "model"
        for p in c["parts"]
        if isinstance(p.get("text"), str) and p["text"].startswith("[web_search was run here")
    ]
    assert len(notes) == 1, contents
    return notes[0]


def resend(msg: Message) -> list[dict[str, Any]]:
    """The assistant content as a client sends it back (the SDK's own dump)."""
    return [b.model_dump(exclude_none=True) for b in msg.content]


@pytest.mark.parametrize("model", [GEMINI, CLAUDE_THINKING])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_search_next_to_a_client_call(
    proxy: Daemon, fake: FakeGoogle, stream: bool, model: str
) -> None:
    """The model calls web_search and read_file in one turn: the search runs,
    the answer holds its blocks and the tool_use (stop_reason tool_use); sent
    back with the tool's result, the search comes back as a note, the model
    turn keeps only read_file's call (signature valid: the fake checks it)."""
    fake.script(
        [
            Reply.function_calls(
                [("web_search", {"query": QUERY}), ("read_file", {"path": "a.txt"})], thought="Look it up."
            ),
            Reply.search(SEARCH_TEXT, SOURCES),
            Reply.text(FINAL),
        ]
    )
    c = aclient(proxy)
    kw: dict[str, Any] = {
        "model": model,
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [READ_FILE, WEB_SEARCH_TOOL],
        "messages": [{"role": "user", "content": "What is the weather in Paris? Also read a.txt"}],
    }
    msg = ask(c, stream, **kw)
    kinds = [b.type for b in msg.content if b.type != "thinking"]
    assert kinds == ["server_tool_use", "web_search_tool_result", "tool_use"], kinds
    use, result, tool = [b for b in msg.content if b.type != "thinking"]
    assert use.type == "server_tool_use" and use.input == {"query": QUERY}
    assert result.type == "web_search_tool_result" and isinstance(result.content, list)
    assert [r.url for r in result.content] == [u for u, _ in SOURCES]
    assert tool.type == "tool_use" and tool.name == "read_file" and tool.input == {"path": "a.txt"}
    assert msg.stop_reason == "tool_use"
    assert msg.usage.server_tool_use is not None and msg.usage.server_tool_use.web_search_requests == 1
    main = check_upstream(fake, answered=False)
    assert len(main) == 1

    follow = c.messages.create(
        **{
            **kw,
            "messages": [
                *kw["messages"],
                {"role": "assistant", "content": resend(msg)},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "A"}],
                },
            ],
        }
    )
    assert [b.text for b in follow.content if b.type == "text"] == [FINAL]
    calls = generate_calls(fake)
    assert all(c.status == 200 for c in calls)
    contents = calls[-1].body["request"]["contents"]
    answered_upstream(contents)
    note = search_note(contents)
    assert QUERY in note and SEARCH_TEXT in note
    assert all(u in note for u, _ in SOURCES)
    model_turn = contents[-2]
    assert model_turn["role"] == "model"
    assert [p["functionCall"]["name"] for p in model_turn["parts"] if "functionCall" in p] == ["read_file"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_past_search_comes_back_as_a_note(proxy: Daemon, fake: FakeGoogle, stream: bool) -> None:
    """An answer that searched, sent back with a new question: the model turn
    says what was searched, what it found (carried in encrypted_content) and
    the sources, before the answer text."""
    script_search(fake)
    c = aclient(proxy)
    kw: dict[str, Any] = {
        "model": GEMINI,
        "max_tokens": 1024,
        "tools": [WEB_SEARCH_TOOL],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }
    msg = ask(c, stream, **kw)
    check_anthropic(msg)
    fake.script([Reply.text("Take sunglasses.")])
    follow = c.messages.create(
        **{
            **kw,
            "messages": [
                *kw["messages"],
                {"role": "assistant", "content": resend(msg)},
                {"role": "user", "content": "What should I take?"},
            ],
        }
    )
    assert follow.content[0].type == "text" and follow.content[0].text == "Take sunglasses."
    contents = generate_calls(fake)[-1].body["request"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    note = search_note(contents)
    assert QUERY in note and SEARCH_TEXT in note
    assert all(u in note and t in note for u, t in SOURCES)
    texts = [p["text"] for p in contents[1]["parts"] if "text" in p]
    assert texts == [note, FINAL]
    answered_upstream(contents)


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


def codex_search_item(query: str = QUERY) -> dict[str, Any]:
    """A web_search_call as Codex sends it back: no id, the action's query only."""
    return {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": query}}


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_search_next_to_a_client_call(
    oclient: OpenAI, fake: FakeGoogle, stream: bool, model: str
) -> None:
    """web_search and exec_command in one model turn: the search runs, the
    answer holds the web_search_call item and the function_call; Codex sends
    them back with the command's output, and the search comes back as a note
    (the model turn keeps only exec_command's call, answered)."""
    fake.script(
        [
            Reply.function_calls(
                [("web_search", {"query": QUERY}), ("exec_command", {"cmd": "ls"})], thought=True
            ),
            Reply.search(SEARCH_TEXT, SOURCES),
            Reply.text(FINAL),
        ]
    )
    first: list[Any] = [{"role": "user", "content": "weather in Paris, and list files"}]
    kw: dict[str, Any] = {
        "model": model,
        "input": first,
        "tools": CODEX_TOOLS,
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }
    if stream:
        with oclient.responses.stream(**kw) as s:
            r = s.get_final_response()
    else:
        r = oclient.responses.create(**kw)
    kinds = [i.type for i in r.output if i.type != "reasoning"]
    assert kinds == ["web_search_call", "function_call"], kinds
    ws, fc = [i for i in r.output if i.type != "reasoning"]
    assert ws.type == "web_search_call" and ws.status == "completed" and ws.action.type == "search"
    assert ws.action.query == QUERY
    assert [s.url for s in ws.action.sources or []] == [u for u, _ in SOURCES]
    assert fc.type == "function_call" and fc.name == "exec_command"
    assert json.loads(fc.arguments) == {"cmd": "ls"}
    assert len(check_upstream(fake, answered=False)) == 1

    # Codex sends back every item as it kept it: the search item without id
    # and sources, reasoning items as they came (the one after the search
    # carries what was found), the call, then the command's output.
    items: list[Any] = []
    for item in r.output:
        if item.type == "web_search_call":
            items.append(codex_search_item())
        elif item.type == "reasoning":
            items.append({"type": "reasoning", "summary": [], "encrypted_content": item.encrypted_content})
        else:
            items.append(item.model_dump(exclude_none=True))
    items.append({"type": "function_call_output", "call_id": fc.call_id, "output": "a.txt"})
    follow = oclient.responses.create(**{**kw, "input": [*first, *items]})
    assert follow.output_text == FINAL
    calls = generate_calls(fake)
    assert all(c.status == 200 for c in calls)
    contents = calls[-1].body["request"]["contents"]
    answered_upstream(contents)
    note = search_note(contents)
    assert QUERY in note and SEARCH_TEXT in note
    model_turn = contents[-2]
    assert [p["functionCall"]["name"] for p in model_turn["parts"] if "functionCall" in p] == ["exec_command"]


def test_responses_past_search_comes_back_as_a_note(oclient: OpenAI, fake: FakeGoogle) -> None:
    """previous_response_id: the stored web_search_call (with its sources)
    becomes a note before the answer; sent back as Codex does, the query."""
    script_search(fake)
    r = oclient.responses.create(model=GEMINI, input="What is the weather in Paris?", tools=CODEX_TOOLS)
    check_responses(r)
    fake.script([Reply.text("Take sunglasses."), Reply.text("Sunglasses.")])
    follow = oclient.responses.create(
        model=GEMINI, input="What should I take?", tools=CODEX_TOOLS, previous_response_id=r.id
    )
    assert follow.output_text == "Take sunglasses."
    contents = generate_calls(fake)[-1].body["request"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    note = search_note(contents)
    assert QUERY in note and all(u in note for u, _ in SOURCES)
    assert [p["text"] for p in contents[1]["parts"]] == [note, FINAL]
    # Codex's own replay: the item without id and sources, then the answer.
    codex = oclient.responses.create(
        model=GEMINI,
        tools=CODEX_TOOLS,
        store=False,
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            codex_search_item(),
            {"role": "assistant", "content": [{"type": "output_text", "text": FINAL}]},
            {"role": "user", "content": "What should I take?"},
        ],
    )
    assert codex.output_text == "Sunglasses."
    contents = generate_calls(fake)[-1].body["request"]["contents"]
    assert [p["text"] for p in contents[1]["parts"]] == [f"[web_search was run here for: {QUERY}]", FINAL]


SEGMENTS = ("Paris is sunny today.", "It is about 21 degrees.")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_citations_cover_their_segment(oclient: OpenAI, fake: FakeGoogle, stream: bool) -> None:
    """Each grounding support's segment that the answer repeats is cited on
    its own span, by its own source."""
    answer = " ".join(SEGMENTS)
    fake.script(
        [
            Reply.function_call("web_search", {"query": QUERY}),
            Reply.search(answer, SOURCES, supports=[(SEGMENTS[0], [0]), (SEGMENTS[1], [1])]),
            Reply.text("Here is what I found. " + answer),
        ]
    )
    kw: dict[str, Any] = {"model": GEMINI, "input": "weather in Paris?", "tools": CODEX_TOOLS}
    if stream:
        with oclient.responses.stream(**kw) as s:
            r = s.get_final_response()
    else:
        r = oclient.responses.create(**kw)
    text = r.output[-1].content[0]
    assert text.type == "output_text"
    spans = [
        (a.url, text.text[a.start_index : a.end_index]) for a in text.annotations if a.type == "url_citation"
    ]
    assert spans == [(SOURCES[0][0], SEGMENTS[0]), (SOURCES[1][0], SEGMENTS[1])]
