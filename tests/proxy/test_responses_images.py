"""The Responses ``image_generation`` tool end to end: the official ``openai``
SDK against the real daemon and the fake Google.

The main model gets an ``image_generation(prompt)`` function; its call is run
by the gateway on the catalog's image model (UPSTREAM.md §5.5: requestType
``image_gen``, no tools, no system instruction) and answered with a short
text, and the client gets an ``image_generation_call`` item with the picture,
parsed by the SDK into its own types. Each test checks what the SDK parsed
and what the upstream got (``fake.calls``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseImageGenCallCompletedEvent,
    ResponseImageGenCallGeneratingEvent,
    ResponseImageGenCallInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)
from openai.types.responses.response_output_item import ImageGenerationCall

from daemon.protocols import image_generation
from tests.conftest import Daemon
from tests.fakes.google import PNG_BASE64, FakeGoogle, Reply

GEMINI = "gemini-3-flash"
CLAUDE = "claude-sonnet-4-5"
IMAGE_MODEL = "gemini-3.1-flash-image"  # the fake catalog's imageGenerationModelIds
SEARCH_MODEL = "gemini-3.1-flash-lite"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROMPT = "a red bicycle leaning on a blue wall, watercolour"
FINAL = "Here is your watercolour bicycle."
EXEC: dict[str, Any] = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}


@pytest.fixture
def client(proxy: Daemon) -> Iterator[OpenAI]:
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0, timeout=30) as c:
        yield c


def script_image(fake: FakeGoogle, final: str = FINAL) -> None:
    """The main model draws, the image model answers a PNG, the main model answers."""
    fake.script(
        [Reply.function_call("image_generation", {"prompt": PROMPT}), Reply.default(), Reply.text(final)]
    )


def generate_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.method in ("generateContent", "streamGenerateContent")]


def split_upstream(fake: FakeGoogle, images: int = 1) -> tuple[list[Any], list[Any]]:
    """(main calls, image calls); the image calls are as UPSTREAM.md §5.5 says."""
    calls = generate_calls(fake)
    assert all(c.status == 200 for c in calls), [(c.model, c.status) for c in calls]
    image = [c for c in calls if c.body["model"] == IMAGE_MODEL]
    main = [c for c in calls if c.body["model"] not in (IMAGE_MODEL, SEARCH_MODEL)]
    assert len(image) == images
    for c in image:
        assert c.body["requestType"] == "image_gen"
        req = c.body["request"]
        assert "tools" not in req and "systemInstruction" not in req
        assert req["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
    for c in main:
        assert c.body["requestType"] != "image_gen"
        names = {d["name"] for t in c.body["request"]["tools"] for d in t["functionDeclarations"]}
        assert "image_generation" in names
        # The picture never goes back to the main model.
        assert PNG_BASE64 not in json.dumps(c.body)
    return main, image


def check_answer(r: Response) -> ImageGenerationCall:
    kinds = [item.type for item in r.output]
    assert kinds == ["image_generation_call", "message"], kinds
    ig = r.output[0]
    assert isinstance(ig, ImageGenerationCall)
    assert ig.id.startswith("ig_")
    assert ig.status == "completed"
    assert ig.result is not None and base64.b64decode(ig.result).startswith(PNG_MAGIC)
    assert ig.revised_prompt == PROMPT
    assert ig.output_format == "png"
    assert r.output_text == FINAL
    assert r.status == "completed"
    return ig


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_image_tool_plain(client: OpenAI, fake: FakeGoogle, model: str) -> None:
    script_image(fake)
    r = client.responses.create(model=model, input="Draw me a bicycle", tools=[{"type": "image_generation"}])
    check_answer(r)
    main, _ = split_upstream(fake)
    assert len(main) == 2
    # The round after the picture answers the model's call with a short text.
    answer = main[-1].body["request"]["contents"][-1]["parts"][0]["functionResponse"]
    assert answer["name"] == "image_generation"
    assert answer["response"] == {"result": image_generation.DONE_TEXT}


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_image_tool_stream_events(client: OpenAI, fake: FakeGoogle, model: str) -> None:
    script_image(fake)
    stream = client.responses.create(
        model=model, input="Draw me a bicycle", tools=[{"type": "image_generation"}], stream=True
    )
    events = list(stream)
    final = events[-1]
    assert isinstance(final, ResponseCompletedEvent)
    ig = check_answer(final.response)
    mine = [e for e in events if getattr(e, "item_id", None) == ig.id or _item_id(e) == ig.id]
    kinds = [type(e) for e in mine]
    assert kinds == [
        ResponseOutputItemAddedEvent,
        ResponseImageGenCallInProgressEvent,
        ResponseImageGenCallGeneratingEvent,
        ResponseImageGenCallCompletedEvent,
        ResponseOutputItemDoneEvent,
    ], kinds
    added, done = mine[0], mine[-1]
    assert isinstance(added, ResponseOutputItemAddedEvent) and isinstance(done, ResponseOutputItemDoneEvent)
    assert isinstance(added.item, ImageGenerationCall) and added.item.status == "in_progress"
    assert added.item.result is None
    assert isinstance(done.item, ImageGenerationCall) and done.item.result == ig.result
    assert {e.output_index for e in mine} == {0}  # type: ignore[attr-defined]
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(events)))
    split_upstream(fake)


def _item_id(event: Any) -> str | None:
    item = getattr(event, "item", None)
    return getattr(item, "id", None)


def test_next_to_function_tools_with_a_size(client: OpenAI, fake: FakeGoogle) -> None:
    """A wide size is the image model's 3:2; the client's functions stay declared."""
    script_image(fake)
    r = client.responses.create(
        model=GEMINI,
        input="Draw me a bicycle",
        tools=[EXEC, {"type": "image_generation", "size": "1536x1024", "quality": "high"}],
    )
    check_answer(r)
    main, image = split_upstream(fake)
    assert image[0].body["request"]["generationConfig"] == {"imageConfig": {"aspectRatio": "3:2"}}
    names = {d["name"] for t in main[0].body["request"]["tools"] for d in t["functionDeclarations"]}
    assert names == {"exec_command", "image_generation"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_image_next_to_a_client_call(client: OpenAI, fake: FakeGoogle, stream: bool) -> None:
    """An image call next to a call of the client's own tool is run too: the
    answer holds the picture, then the client's call, and ends there."""
    fake.script(
        [
            Reply.function_calls([("image_generation", {"prompt": PROMPT}), ("exec_command", {"cmd": "ls"})]),
            Reply.default(),
        ]
    )
    tools = [EXEC, {"type": "image_generation"}]
    kw: dict[str, Any] = {"model": GEMINI, "input": "draw and list", "tools": tools}
    if stream:
        with client.responses.stream(**kw) as s:
            r = s.get_final_response()
    else:
        r = client.responses.create(**kw)
    assert [i.type for i in r.output] == ["image_generation_call", "function_call"]
    picture, fc = r.output
    assert picture.type == "image_generation_call" and picture.status == "completed" and picture.result
    assert fc.type == "function_call" and json.loads(fc.arguments) == {"cmd": "ls"}
    main, _ = split_upstream(fake)
    assert len(main) == 1


def test_with_web_search_in_one_request(client: OpenAI, fake: FakeGoogle) -> None:
    """Both server tools run in one loop: a search, then a picture, then the answer."""
    fake.script(
        [
            Reply.function_call("web_search", {"query": "bicycle colours"}),
            Reply.search("Red is popular.", [("https://example.org/bikes", "example.org")]),
            Reply.function_call("image_generation", {"prompt": PROMPT}),
            Reply.default(),
            Reply.text(FINAL),
        ]
    )
    r = client.responses.create(
        model=GEMINI,
        input="Draw a popular bicycle",
        tools=[{"type": "web_search"}, {"type": "image_generation"}],
    )
    assert [i.type for i in r.output] == ["web_search_call", "image_generation_call", "message"]
    assert r.output_text == FINAL
    main, _ = split_upstream(fake)
    assert len(main) == 3
    searches = [c for c in generate_calls(fake) if c.body["requestType"] == "web_search"]
    assert len(searches) == 1


def test_a_picture_that_fails_is_a_failed_item(client: OpenAI, fake: FakeGoogle) -> None:
    """The image model answers text only: the item fails, the model is told, the request succeeds."""
    fake.script(
        [
            Reply.function_call("image_generation", {"prompt": PROMPT}),
            Reply.text("I cannot draw that."),
            Reply.text("Sorry, no picture this time."),
        ]
    )
    r = client.responses.create(model=GEMINI, input="Draw", tools=[{"type": "image_generation"}])
    assert [i.type for i in r.output] == ["image_generation_call", "message"]
    ig = r.output[0]
    assert isinstance(ig, ImageGenerationCall)
    assert ig.status == "failed" and ig.result is None
    assert ig.error is not None and "without an image" in ig.error.message
    main = [c for c in generate_calls(fake) if c.body["model"] == GEMINI]
    answer = main[-1].body["request"]["contents"][-1]["parts"][0]["functionResponse"]
    assert "no image was made" in answer["response"]["error"]


@pytest.mark.parametrize("how", ["input", "previous_response_id"])
def test_follow_up_carries_the_item_back(client: OpenAI, fake: FakeGoogle, how: str) -> None:
    script_image(fake)
    first = client.responses.create(
        model=GEMINI, input="Draw me a bicycle", tools=[{"type": "image_generation"}]
    )
    check_answer(first)
    fake.calls.clear()
    fake.script([Reply.text("It is red.")])
    tools: Any = [{"type": "image_generation"}]
    if how == "input":
        items: list[Any] = [
            {"role": "user", "content": "Draw me a bicycle"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"role": "user", "content": "What colour is it?"},
        ]
        second = client.responses.create(model=GEMINI, input=items, tools=tools)
    else:
        second = client.responses.create(
            model=GEMINI, input="What colour is it?", previous_response_id=first.id, tools=tools
        )
    assert second.output_text == "It is red."
    (call,) = generate_calls(fake)
    body = json.dumps(call.body)
    assert PNG_BASE64 not in body  # the picture is not sent back
    contents = call.body["request"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    texts = [p["text"] for p in contents[1]["parts"] if "text" in p]
    assert any("image was generated" in t and PROMPT in t for t in texts), texts
    assert FINAL in "".join(texts)


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"output_format": "svg"}, "tools[1].output_format"),
        ({"background": "transparent"}, "tools[1].background"),
        ({"size": "1000x333"}, "tools[1].size"),
        ({"action": "edit"}, "tools[1].action"),
        ({"partial_images": 5}, "tools[1].partial_images"),
        ({"model": "gemini-3-flash"}, "tools[1].model"),
    ],
)
def test_refused_options_are_a_400_naming_them(
    client: OpenAI, fake: FakeGoogle, tool: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model=GEMINI,
            input="Draw",
            tools=[EXEC, {"type": "image_generation", **tool}],  # type: ignore[list-item]
        )
    assert info.value.status_code == 400
    err = info.value.body
    assert isinstance(err, dict) and err.get("param") == param, err
    assert generate_calls(fake) == []


def test_a_forced_image_call_is_relaxed_after_it_ran(client: OpenAI, fake: FakeGoogle) -> None:
    script_image(fake)
    r = client.responses.create(
        model=GEMINI,
        input="Draw me a bicycle",
        tools=[EXEC, {"type": "image_generation"}],
        tool_choice={"type": "image_generation"},
    )
    check_answer(r)
    main, _ = split_upstream(fake)
    forced = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["image_generation"]}}
    assert main[0].body["request"]["toolConfig"] == forced
    assert main[1].body["request"]["toolConfig"]["functionCallingConfig"]["mode"] == "AUTO"
