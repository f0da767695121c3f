"""The pure parts of server-side web search (``protocols.web_search``): what a
past search becomes when the client sends it back, what the gateway carries
in Anthropic's ``encrypted_content``, citation spans, and where a search's
result goes in a turn that also called the client's own tools."""

from __future__ import annotations

import base64
import json
from typing import Any

from daemon.protocols import GeminiCall, anthropic, openai_responses, server_tools, web_search
from daemon.protocols.signatures import SignatureStore

GEMINI = "gemini-3-flash"
SOURCES = [("https://a.example/x", "a.example"), ("https://b.example/y", "b.example")]
ANSWER = "Paris is sunny today. It is about 21 degrees."


def search_part(query: str = "weather paris") -> dict[str, Any]:
    return {"functionCall": {"name": "web_search", "args": {"query": query}, "id": "c1"}}


def grounded(supports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta = {
        "groundingChunks": [{"web": {"uri": u, "title": t}} for u, t in SOURCES],
        "groundingSupports": supports
        if supports is not None
        else [
            {"segment": {"endIndex": 21, "text": "Paris is sunny today."}, "groundingChunkIndices": [0]},
            {
                "segment": {"startIndex": 22, "endIndex": 45, "text": "It is about 21 degrees."},
                "groundingChunkIndices": [1, 0],
            },
        ],
    }
    return {"candidates": [{"content": {"parts": [{"text": ANSWER}]}, "groundingMetadata": meta}]}


def test_result_keeps_each_sources_segments() -> None:
    res = web_search.result(search_part(), "weather paris", grounded())
    assert res["text"] == ANSWER
    assert web_search.cited_segments(res) == [
        ("https://a.example/x", "a.example", ["Paris is sunny today.", "It is about 21 degrees."]),
        ("https://b.example/y", "b.example", ["It is about 21 degrees."]),
    ]


def test_citation_spans_cover_the_repeated_segment_else_the_whole_text() -> None:
    res = web_search.result(search_part(), "weather paris", grounded())
    text = "In short: Paris is sunny today. Pack light."
    spans = web_search.citation_spans(text, web_search.cited_segments(res))
    # a.example grounds a segment the text repeats; b.example's is not in it.
    assert spans == [
        ("https://b.example/y", "b.example", 0, len(text)),
        ("https://a.example/x", "a.example", 10, 31),
    ]
    assert text[10:31] == "Paris is sunny today."
    none = web_search.citation_spans("Nothing quoted.", [("u", "t", [])])
    assert none == [("u", "t", 0, len("Nothing quoted."))]


def test_carry_round_trips_bounded_and_ignores_other_blobs() -> None:
    res = {"query": "q", "text": "x" * (web_search.CARRIED_CHARS + 50)}
    blob = web_search.carry(res)
    assert blob.startswith(web_search.CARRY_PREFIX)
    assert web_search.carried(blob) == ("q", "x" * web_search.CARRIED_CHARS)
    assert web_search.carried("EqQBCkgIBxABGAIiQNzL") is None  # Anthropic's own
    assert web_search.carried(web_search.CARRY_PREFIX + "!!!") is None
    not_a_dict = base64.urlsafe_b64encode(b"[1]").decode()
    assert web_search.carried(web_search.CARRY_PREFIX + not_a_dict) is None
    assert web_search.carried(None) is None


def test_history_note() -> None:
    note = web_search.history_note("weather paris", [("a.example", "https://a.example/x")], "Sunny.")
    assert note["text"].splitlines() == [
        "[web_search was run here for: weather paris]",
        "It found: Sunny.",
        "Sources:",
        "- a.example <https://a.example/x>",
        "[end of web_search]",
    ]
    assert web_search.history_note("q", [])["text"] == "[web_search was run here for: q]"
    assert "failed" in web_search.history_note("q", [], failed=True)["text"]
    many = [("", f"https://e.example/{i}") for i in range(50)]
    assert web_search.history_note("q", many)["text"].count("<https://") == web_search.MAX_NOTED_SOURCES


# ------------------------------------------------------------ server_tools


def test_place_puts_results_before_the_clients_first_call() -> None:
    shown = {web_search.SEARCH_PART: {"query": "q"}}
    call = {"functionCall": {"name": "read_file", "args": {}}}
    assert server_tools.place([{"text": "t"}, call], [shown]) == [{"text": "t"}, shown, call]
    assert server_tools.place([{"text": "t"}], [shown]) == [{"text": "t"}, shown]
    assert server_tools.first_call([{"text": "t"}, call]) == 1
    assert server_tools.first_call([{"text": "t"}]) is None
    assert server_tools.chunk([], "STOP") == {
        "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}]
    }


# -------------------------------------------------------- Anthropic history


def anthropic_answer(res: dict[str, Any]) -> dict[str, Any]:
    """The gateway's own Anthropic answer holding a search, as the client gets it."""
    call = GeminiCall(request={}, client_model="claude-x", model=GEMINI, extra={"id": "msg_1"})
    resp = {"candidates": [{"content": {"parts": [{web_search.SEARCH_PART: res}, {"text": "Sunny."}]}}]}
    return anthropic.from_gemini(resp, call=call, store=SignatureStore())


def test_anthropic_answer_carries_the_search_in_encrypted_content() -> None:
    res = web_search.result(search_part(), "weather paris", grounded())
    msg = anthropic_answer(res)
    result = msg["content"][1]
    assert result["type"] == "web_search_tool_result"
    first, second = result["content"]
    assert web_search.carried(first["encrypted_content"]) == ("weather paris", ANSWER)
    assert second["encrypted_content"] == ""


def test_anthropic_history_search_becomes_a_note() -> None:
    res = web_search.result(search_part(), "weather paris", grounded())
    msg = anthropic_answer(res)
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": msg["content"]},
            {"role": "user", "content": "and tomorrow?"},
        ],
    }
    call = anthropic.to_gemini(body, model=GEMINI, store=SignatureStore())
    model_turn = call.request["contents"][1]
    assert model_turn["role"] == "model"
    note, answer = (p["text"] for p in model_turn["parts"])
    assert note.startswith("[web_search was run here for: weather paris]")
    assert ANSWER in note and "https://a.example/x" in note and "b.example" in note
    assert answer == "Sunny."
    assert "ignored_blocks" not in call.extra


def test_anthropic_history_foreign_and_failed_searches() -> None:
    blocks: list[Any] = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "one"}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": [
                {
                    "type": "web_search_result",
                    "url": "https://a.example/",
                    "title": "A",
                    "encrypted_content": "Eq",
                }
            ],
        },
        {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "input": {"query": "two"}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_2",
            "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"},
        },
        {"type": "text", "text": "Done."},
    ]
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "search"},
            {"role": "assistant", "content": blocks},
            {"role": "user", "content": "ok"},
        ],
    }
    call = anthropic.to_gemini(body, model=GEMINI, store=SignatureStore())
    texts = [p["text"] for p in call.request["contents"][1]["parts"]]
    assert texts[0].splitlines() == [
        "[web_search was run here for: one]",
        "Sources:",
        "- A <https://a.example/>",
        "[end of web_search]",
    ]
    assert texts[1] == "[web_search was called here for: two; the search failed]"
    assert texts[2] == "Done."


# -------------------------------------------------------- Responses history


def responses(items: list[Any]) -> GeminiCall:
    body = {"model": GEMINI, "input": items, "tools": [{"type": "web_search"}]}
    return openai_responses.to_gemini(body, model=GEMINI, store=SignatureStore())


def test_responses_history_search_becomes_a_note() -> None:
    item = {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {
            "type": "search",
            "query": "weather paris",
            "sources": [{"type": "url", "url": "https://a/"}],
        },
    }
    call = responses(
        [
            {"role": "user", "content": "weather?"},
            item,
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
            {"role": "user", "content": "and tomorrow?"},
        ]
    )
    parts = call.request["contents"][1]["parts"]
    assert [p["text"] for p in parts] == [
        "[web_search was run here for: weather paris]\nSources:\n- <https://a/>\n[end of web_search]",
        "Sunny.",
    ]
    assert "web_search_call" not in (call.extra.get("ignored_items") or [])


def test_responses_history_queries_failed_and_empty() -> None:
    call = responses(
        [
            {"role": "user", "content": "go"},
            {
                "type": "web_search_call",
                "status": "completed",
                "action": {"type": "search", "queries": ["a", "b"]},
            },
            {"type": "web_search_call", "status": "failed", "action": {"type": "search", "query": "c"}},
            {"type": "web_search_call", "status": "completed"},
            {"role": "user", "content": "next"},
        ]
    )
    texts = [p["text"] for p in call.request["contents"][1]["parts"]]
    assert texts == [
        "[web_search was run here for: a; b]",
        "[web_search was called here for: c; the search failed]",
    ]
    assert call.extra["ignored_items"] == ["web_search_call"]  # nothing to tell
    assert json.dumps(call.request).count("web_search was") == 2


def test_responses_answer_carries_the_search_in_a_reasoning_item() -> None:
    """With include reasoning.encrypted_content, a reasoning item without
    summary follows the search item; sent back, its answer joins the note."""
    res = web_search.result(search_part(), "weather paris", grounded())
    body = {
        "model": GEMINI,
        "input": "weather?",
        "tools": [{"type": "web_search"}],
        "include": ["reasoning.encrypted_content"],
    }
    call = openai_responses.to_gemini(body, model=GEMINI, store=SignatureStore())
    call.extra.update(id="resp_1", created=1)
    resp = {"candidates": [{"content": {"parts": [{web_search.SEARCH_PART: res}, {"text": "Sunny."}]}}]}
    out = openai_responses.from_gemini(resp, call=call, store=SignatureStore())["output"]
    assert [i["type"] for i in out] == ["web_search_call", "reasoning", "message"]
    carrier = out[1]
    assert carrier["summary"] == [] and web_search.carried(carrier["encrypted_content"]) == (
        "weather paris",
        ANSWER,
    )
    # Codex sends the search item back with its query only, and the reasoning item.
    codex = {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "wp"}}
    back = responses(
        [{"role": "user", "content": "weather?"}, codex, carrier, out[2], {"role": "user", "content": "ok"}]
    )
    texts = [p["text"] for p in back.request["contents"][1]["parts"]]
    assert texts == [f"[web_search was run here for: wp]\nIt found: {ANSWER}\n[end of web_search]", "Sunny."]
    # The reasoning item alone (the search item dropped) still tells what was found.
    alone = responses([{"role": "user", "content": "weather?"}, carrier, {"role": "user", "content": "ok"}])
    assert alone.request["contents"][1]["parts"][0]["text"].startswith(
        "[web_search was run here for: weather paris]\nIt found: Paris is sunny"
    )
