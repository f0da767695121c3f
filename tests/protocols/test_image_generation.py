"""The pure parts of the Responses ``image_generation`` tool and of the
server-tool loop both server tools share (``protocols.server_tools``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.errors import BadRequest, UpstreamError
from daemon.protocols import GeminiCall, image_generation, openai_responses, server_tools, web_search
from daemon.protocols.signatures import SignatureStore

GEMINI = "gemini-3-flash"
TOOL = {"type": "image_generation"}


def call_part(name: str, args: dict[str, Any], call_id: str | None = None, sig: str | None = None) -> Any:
    fc: dict[str, Any] = {"name": name, "args": args}
    if call_id:
        fc["id"] = call_id
    part: dict[str, Any] = {"functionCall": fc}
    if sig:
        part["thoughtSignature"] = sig
    return part


def image_answer(mime: str = "image/png", data: str = "AAAA") -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"inlineData": {"mimeType": mime, "data": data}}]}}
        ]
    }


# ----------------------------------------------------------------- options


def test_options_map_the_size_and_list_what_is_not_applied() -> None:
    opts = image_generation.options(
        {"type": "image_generation", "size": "1024x1536", "quality": "high", "model": "gpt-image-1"},
        "tools[0]",
    )
    assert opts["image_config"] == {"aspectRatio": "2:3"}
    assert opts["requested_model"] is None  # an OpenAI image model means the catalog's
    assert opts["ignored"] == ["quality"]
    assert opts["max_uses"] == image_generation.MAX_CALLS
    assert image_generation.options({"type": "image_generation", "model": "my-image"}, "t")[
        "requested_model"
    ] == ("my-image")
    taken = image_generation.options(
        {"size": "auto", "partial_images": 2, "background": "opaque", "output_format": "webp"}, "t"
    )
    assert taken["image_config"] == {}
    assert taken["ignored"] == ["output_format", "background"]


@pytest.mark.parametrize(
    ("tool", "field"),
    [
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "svg"}, "output_format"),
        ({"background": "transparent"}, "background"),
        ({"action": "edit"}, "action"),
        ({"input_image_mask": {"image_url": "data:,"}}, "input_image_mask"),
        ({"frame_count": 4}, "frame_count"),
        ({"partial_images": 4}, "partial_images"),
        ({"partial_images": True}, "partial_images"),
        ({"size": "999x1000"}, "size"),
        ({"size": 1024}, "size"),
        ({"model": ""}, "model"),
    ],
)
def test_options_refuse_what_the_image_model_cannot_do(tool: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as info:
        image_generation.options({"type": "image_generation", **tool}, "tools[2]")
    assert info.value.param == f"tools[2].{field}"
    assert f"tools[2].{field}" in info.value.message


# ------------------------------------------------------------- the call's parts


def test_request_result_and_function_response() -> None:
    part = call_part("image_generation", {"prompt": "  a cat  "}, "c1")
    opts = image_generation.options({"size": "1536x864"}, "t")
    assert image_generation.prompt_of(part) == "a cat"
    assert image_generation.image_request("a cat", opts) == {
        "contents": [{"role": "user", "parts": [{"text": "a cat"}]}],
        "generationConfig": {"imageConfig": {"aspectRatio": "16:9"}},
    }
    res = image_generation.result(part, "a cat", image_answer("image/jpeg", "QUJD"))
    assert res == {
        "call_id": "c1",
        "prompt": "a cat",
        "status": "completed",
        "b64": "QUJD",
        "output_format": "jpeg",
    }
    fr = image_generation.function_response(res)["functionResponse"]
    assert fr == {"name": "image_generation", "id": "c1", "response": {"result": image_generation.DONE_TEXT}}
    item = image_generation.item("ig_1", res)
    assert item == {
        "id": "ig_1",
        "type": "image_generation_call",
        "status": "completed",
        "result": "QUJD",
        "revised_prompt": "a cat",
        "action": "generate",
        "output_format": "jpeg",
    }


def test_failures() -> None:
    part = call_part("image_generation", {"prompt": "x"})
    refused = {"candidates": [{"content": {"parts": [{"text": "no"}]}, "finishReason": "IMAGE_SAFETY"}]}
    res = image_generation.result(part, "x", refused)
    assert res["status"] == "failed" and res["error"]["code"] == "moderation_blocked"
    other = image_generation.failure(part, "x", UpstreamError("quota"))
    assert other["error"]["code"] == "image_generation_failed"
    # An upstream 400 on the image call is not a moderation verdict.
    bad = image_generation.failure(part, "x", BadRequest("bad"))
    assert bad["error"]["code"] == "image_generation_failed"
    assert "error" in image_generation.function_response(other)["functionResponse"]["response"]
    item = image_generation.item("ig_2", other)
    assert item["status"] == "failed" and item["result"] is None and item["error"]["message"] == "quota"
    limited = image_generation.limit_response(call_part("image_generation", {}, "c9"))["functionResponse"]
    assert limited["id"] == "c9" and "no more images" in limited["response"]["error"]


def test_history_part() -> None:
    done = image_generation.history_part(
        {"type": "image_generation_call", "revised_prompt": "a cat", "result": "X"}
    )
    assert "a cat" in done["text"] and "X" not in done["text"]
    bare = image_generation.history_part({"type": "image_generation_call", "id": "ig_1"})
    assert bare["text"].startswith("[an image was generated")
    failed = image_generation.history_part({"type": "image_generation_call", "status": "failed"})
    assert "no image was made" in failed["text"]


# ------------------------------------------------------------ server_tools


def test_split_calls_keeps_signatures_where_google_put_them() -> None:
    """A server call's signature leaves with it: Gemini refuses a signature
    moved onto a call of another name (the fake's "Corrupted thought signature")."""
    tools = {"image_generation": {"max_uses": 1}, "web_search": {"max_uses": 1}}
    parts = [
        {"text": "hi"},
        call_part("image_generation", {"prompt": "p"}, sig="SIG"),
        call_part("exec", {"cmd": "ls"}),
    ]
    kept, calls, other = server_tools.split_calls(parts, tools)
    assert other is True
    assert [server_tools.name_of(c) for c in calls] == ["image_generation"]
    assert kept == [{"text": "hi"}, call_part("exec", {"cmd": "ls"})]
    # A tool not offered is the client's own call.
    kept, calls, other = server_tools.split_calls(parts[1:2], {"web_search": {"max_uses": 1}})
    assert calls == [] and other is True


def test_plan_rounds_pending_and_limits() -> None:
    tools = {"image_generation": {"max_uses": 1}, "web_search": {"max_uses": 2}}
    assert server_tools.rounds(tools) == 5
    assert server_tools.rounds({}) == 1
    used: dict[str, int] = {}
    calls = [
        call_part("image_generation", {"prompt": "a"}, "1"),
        call_part("web_search", {"query": "q"}, "2"),
        call_part("image_generation", {"prompt": "b"}, "3"),
    ]
    planned = server_tools.plan(calls, tools, used)
    assert [run for _, run in planned] == [True, True, False]
    assert used == {"image_generation": 1, "web_search": 1}
    # Only image calls that run show progress; web_search shows none.
    pending = server_tools.pending_parts(planned)
    assert pending == [{image_generation.IMAGE_PART: {"call_id": "1", "prompt": "a", "status": "generating"}}]
    assert "no more images" in json.dumps(server_tools.limit_response(calls[2]))
    assert "no more searches" in json.dumps(server_tools.limit_response(calls[1]))


def test_relax_choice() -> None:
    tools = {"image_generation": {"max_uses": 1}}
    forced = {
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["image_generation"]}}
    }
    server_tools.relax_choice(forced, tools)
    assert forced["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    client = {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["exec"]}}}
    server_tools.relax_choice(client, tools)
    assert client["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"
    # "required" with only server tools declared: relaxed; with a client function: kept.
    decls = [{"name": "image_generation"}]
    required: dict[str, Any] = {
        "tools": [{"functionDeclarations": decls}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
    }
    server_tools.relax_choice(required, tools)
    assert required["toolConfig"]["functionCallingConfig"]["mode"] == "AUTO"
    required["tools"] = [{"functionDeclarations": [*decls, {"name": "exec"}]}]
    required["toolConfig"] = {"functionCallingConfig": {"mode": "ANY"}}
    server_tools.relax_choice(required, tools)
    assert required["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"


def test_without_pictures() -> None:
    items = [
        {"role": "user", "content": "draw"},
        {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": "QUJD"},
    ]
    kept = image_generation.without_pictures(items)
    assert kept[0] is items[0]
    assert kept[1] == {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": None}
    assert items[1]["result"] == "QUJD"  # the answer already sent is not touched


# ---------------------------------------------------- Responses translation


def translate(body: dict[str, Any], history: list[Any] | None = None) -> GeminiCall:
    call = openai_responses.to_gemini(
        {"model": GEMINI, **body}, model=GEMINI, store=SignatureStore(), history=history
    )
    call.extra.setdefault("id", "resp_test")
    call.extra.setdefault("created", 1)
    return call


def declared(call: GeminiCall) -> list[str]:
    return [d["name"] for t in call.request.get("tools", []) for d in t["functionDeclarations"]]


def test_to_gemini_declares_the_tool() -> None:
    call = translate({"input": "draw", "tools": [TOOL, {"type": "web_search"}], "tool_choice": TOOL})
    assert declared(call) == ["web_search", "image_generation"]
    assert call.extra[image_generation.EXTRA_KEY]["param"] == "tools[0]"
    assert web_search.EXTRA_KEY in call.extra
    assert call.request["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["image_generation"]}
    }
    assert set(server_tools.enabled(call)) == {"web_search", "image_generation"}


def test_a_client_tool_of_that_name_wins() -> None:
    own = {"type": "function", "name": "image_generation", "parameters": {"type": "object", "properties": {}}}
    call = translate({"input": "draw", "tools": [own, TOOL]})
    assert declared(call) == ["image_generation"]
    assert image_generation.EXTRA_KEY not in call.extra
    assert "image_generation" in call.extra["ignored_tools"]


def test_image_items_in_the_input_become_a_model_note() -> None:
    items = [
        {"role": "user", "content": "draw a cat"},
        {
            "type": "image_generation_call",
            "id": "ig_1",
            "status": "completed",
            "result": "QUJD",
            "revised_prompt": "a cat",
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Here."}]},
        {"role": "user", "content": "thanks"},
    ]
    call = translate({"input": items, "tools": [TOOL]})
    contents = call.request["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    texts = [p["text"] for p in contents[1]["parts"]]
    assert "a cat" in texts[0] and texts[-1] == "Here."
    assert "QUJD" not in json.dumps(call.request)
    assert "image_generation_call" not in call.extra.get("ignored_items", [])


def _events(tr: openai_responses.StreamTranslator, chunk: dict[str, Any]) -> list[dict[str, Any]]:
    raw = tr.feed(chunk).decode()
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


def test_stream_two_pictures_keep_their_places() -> None:
    call = translate({"input": "draw two", "tools": [TOOL], "stream": True})
    tr = openai_responses.StreamTranslator(call, SignatureStore())
    a, b = (
        call_part("image_generation", {"prompt": "a"}, "1"),
        call_part("image_generation", {"prompt": "b"}, "2"),
    )
    events = _events(tr, {"candidates": [{"content": {"parts": [{"text": "Drawing."}]}}]})
    events += _events(tr, server_tools.chunk([image_generation.pending(a), image_generation.pending(b)]))
    results = [
        image_generation.result(p, image_generation.prompt_of(p), image_answer(data=d))
        for p, d in ((a, "QQ"), (b, "Qg"))
    ]
    events += _events(tr, server_tools.chunk([{image_generation.IMAGE_PART: r} for r in results]))
    events += _events(
        tr, {"candidates": [{"content": {"parts": [{"text": "Done."}]}, "finishReason": "STOP"}]}
    )
    tr.finish()
    image_events = [(e["type"], e["output_index"]) for e in events if "image_generation_call" in e["type"]]
    assert image_events == [
        ("response.image_generation_call.in_progress", 1),
        ("response.image_generation_call.generating", 1),
        ("response.image_generation_call.in_progress", 2),
        ("response.image_generation_call.generating", 2),
        ("response.image_generation_call.completed", 1),
        ("response.image_generation_call.completed", 2),
    ]
    assert tr.response is not None
    output = tr.response["output"]
    assert [i["type"] for i in output] == [
        "message",
        "image_generation_call",
        "image_generation_call",
        "message",
    ]
    assert [i.get("result") for i in output[1:3]] == ["QQ", "Qg"]
    assert all(i["status"] == "completed" for i in output)


def test_non_stream_result_alone_is_a_whole_item() -> None:
    call = translate({"input": "draw", "tools": [TOOL]})
    part = call_part("image_generation", {"prompt": "a"})
    res = image_generation.result(part, "a", image_answer(data="QQ"))
    resp = {
        "candidates": [
            {
                "content": {"parts": [{image_generation.IMAGE_PART: res}, {"text": "Here."}]},
                "finishReason": "STOP",
            }
        ]
    }
    out = openai_responses.from_gemini(resp, call=call, store=SignatureStore())
    assert [i["type"] for i in out["output"]] == ["image_generation_call", "message"]
    ig = out["output"][0]
    assert ig["status"] == "completed" and ig["result"] == "QQ" and ig["id"].startswith("ig_")
