"""Issue 16 item 4: ``POST /v1/images/generations`` end to end — the official
``openai`` SDK against the real daemon and the fake Google, whose image model
answers a PNG as inline data (UPSTREAM.md §5.5).

Each test checks what the SDK parsed and what the upstream got (``fake.calls``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import ImagesResponse

from daemon.errors import BadRequest, UpstreamError
from daemon.protocols import openai_images
from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle, Reply

IMAGE_MODEL = "gemini-3.1-flash-image"  # the fake catalog's imageGenerationModelIds
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REQUEST_ID = re.compile(
    r"^image_gen/\d{13}/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/12$"
)


@pytest.fixture
def client(proxy: Daemon) -> Iterator[OpenAI]:
    with OpenAI(base_url=proxy.base_url + "/v1", api_key=proxy.api_key, max_retries=0, timeout=30) as c:
        yield c


def image_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.api == "v1internal" and c.model == IMAGE_MODEL]


def test_b64_json_is_a_png_from_the_image_model(client: OpenAI, fake: FakeGoogle) -> None:
    res = client.images.generate(model="gpt-image-1", prompt="a red bicycle", size="1024x1024")
    # The SDK's own model takes the whole answer: a valid ImagesResponse.
    ImagesResponse.model_validate(res.model_dump())
    assert res.created > 1_700_000_000
    assert res.data is not None and len(res.data) == 1
    img = res.data[0]
    assert img.url is None and img.revised_prompt is None
    assert img.b64_json is not None
    assert base64.b64decode(img.b64_json).startswith(PNG_MAGIC)
    assert res.output_format == "png"
    assert res.usage is not None and res.usage.input_tokens > 0

    calls = image_calls(fake)
    assert len(calls) == 1 and calls[0].status == 200
    env = calls[0].body
    assert env["requestType"] == "image_gen"
    assert REQUEST_ID.match(env["requestId"]), env["requestId"]
    assert env["model"] == IMAGE_MODEL
    req = env["request"]
    assert "tools" not in req and "systemInstruction" not in req
    assert req["contents"] == [{"role": "user", "parts": [{"text": "a red bicycle"}]}]
    gen = req["generationConfig"]
    assert gen["imageConfig"] == {"aspectRatio": "1:1"}
    assert "responseMimeType" not in gen and "responseModalities" not in gen


def test_default_model_and_n_two(client: OpenAI, fake: FakeGoogle) -> None:
    # No model: the catalog's image model. n=2: two upstream calls, two pictures.
    res = client.images.generate(prompt="two cats", n=2)
    assert res.data is not None and len(res.data) == 2
    for img in res.data:
        assert img.b64_json and base64.b64decode(img.b64_json).startswith(PNG_MAGIC)
    calls = image_calls(fake)
    assert len(calls) == 2
    ids = {c.body["requestId"] for c in calls}
    assert len(ids) == 2  # a new requestId per call
    for c in calls:
        assert c.body["requestType"] == "image_gen"
        # size left out: the model's own aspect ratio.
        assert "generationConfig" not in c.body["request"]


@pytest.mark.parametrize(
    ("size", "config"),
    [
        ("1536x1024", {"aspectRatio": "3:2"}),
        ("1024x1536", {"aspectRatio": "2:3"}),
        ("1792x1024", {"aspectRatio": "16:9"}),
        ("2048x2048", {"aspectRatio": "1:1", "imageSize": "2K"}),
        ("auto", None),
    ],
)
def test_size_becomes_image_config(
    client: OpenAI, fake: FakeGoogle, size: Any, config: dict[str, str] | None
) -> None:
    res = client.images.generate(model="dall-e-3", prompt="a lighthouse", size=size)
    assert res.data and res.data[0].b64_json
    (call,) = image_calls(fake)
    got = (call.body["request"].get("generationConfig") or {}).get("imageConfig")
    assert got == config


def test_bad_size_is_a_400_naming_size(client: OpenAI, fake: FakeGoogle) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="a tree", size="1000x700")  # type: ignore[arg-type]
    body: Any = info.value.body
    assert body["param"] == "size"
    assert "1000x700" in body["message"] and "1024x1536" in body["message"]
    assert image_calls(fake) == []


def test_too_many_images_is_a_400_naming_n(client: OpenAI, fake: FakeGoogle) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="many dogs", n=5)
    assert info.value.body["param"] == "n"  # type: ignore[index]
    assert image_calls(fake) == []


def test_url_is_a_data_url(client: OpenAI, fake: FakeGoogle) -> None:
    # The gateway keeps no files: url answers the picture as a data: URL.
    res = client.images.generate(prompt="a boat", response_format="url")
    assert res.data is not None
    img = res.data[0]
    assert img.b64_json is None and img.url is not None
    head, _, data = img.url.partition(",")
    assert head == "data:image/png;base64"
    assert base64.b64decode(data).startswith(PNG_MAGIC)


def test_a_text_model_is_refused(client: OpenAI, fake: FakeGoogle) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gemini-3-flash", prompt="a map")
    body: Any = info.value.body
    assert body["param"] == "model" and IMAGE_MODEL in body["message"]
    assert fake.calls_to("generateContent") == []


def test_missing_prompt_and_stream(proxy: Daemon, fake: FakeGoogle) -> None:
    url = proxy.base_url + "/v1/images/generations"
    headers = {"authorization": f"Bearer {proxy.api_key}"}
    r = httpx.post(url, json={"model": "gpt-image-1"}, headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.post(url, json={"prompt": "x", "stream": True}, headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
    r = httpx.get(url, headers=headers, timeout=30)
    assert r.status_code == 405
    assert image_calls(fake) == []


def test_picture_options_follow_the_one_rule(client: OpenAI, proxy: Daemon, fake: FakeGoogle) -> None:
    """What no image-model answer can honour is a 400 naming the field (as
    for the Responses tool); a raster format is taken and the answer says
    what the picture really is."""
    res = client.images.generate(prompt="a kite", output_format="webp", background="opaque")
    assert res.output_format == "png" and res.data and res.data[0].b64_json
    assert len(image_calls(fake)) == 1
    url = proxy.base_url + "/v1/images/generations"
    headers = {"authorization": f"Bearer {proxy.api_key}"}
    for body, param in (
        ({"prompt": "x", "background": "transparent"}, "background"),
        ({"prompt": "x", "output_format": "svg"}, "output_format"),
    ):
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == param and "is not served" in err["message"]
    assert len(image_calls(fake)) == 1


def test_a_refused_prompt_is_a_400(client: OpenAI, fake: FakeGoogle) -> None:
    refusal = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "I can't draw that."}]},
                "finishReason": "IMAGE_SAFETY",
            }
        ]
    }
    fake.script([Reply.raw(refusal)])
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="something forbidden")
    body: Any = info.value.body
    assert "IMAGE_SAFETY" in body["message"] and "I can't draw that." in body["message"]


# ---------------------------------------------------------------- the pure translation


@pytest.mark.parametrize(
    ("size", "config"),
    [
        (None, {}),
        ("auto", {}),
        ("1024x1024", {"aspectRatio": "1:1"}),
        ("256x256", {"aspectRatio": "1:1"}),
        ("1536x864", {"aspectRatio": "16:9"}),
        ("1024x1792", {"aspectRatio": "9:16"}),
        ("3840x2160", {"aspectRatio": "16:9", "imageSize": "4K"}),
    ],
)
def test_image_config(size: Any, config: dict[str, str]) -> None:
    assert openai_images.image_config(size) == config


@pytest.mark.parametrize("size", ["1000x700", "big", "1024", 1024, "0x0"])
def test_image_config_refuses(size: Any) -> None:
    with pytest.raises(BadRequest) as info:
        openai_images.image_config(size)
    assert info.value.param == "size"


def test_an_answer_without_a_picture_is_an_upstream_error() -> None:
    resp = {"candidates": [{"content": {"parts": [{"text": "Sure!"}]}, "finishReason": "STOP"}]}
    with pytest.raises(UpstreamError) as info:
        openai_images.picture(resp)
    assert "Sure!" in info.value.message
    # A thought picture (a draft) is not the answer.
    draft = {"inlineData": {"mimeType": "image/png", "data": "AAAA"}, "thought": True}
    final = {"inlineData": {"mimeType": "image/jpeg", "data": "BBBB"}}
    resp = {"candidates": [{"content": {"parts": [draft, final]}, "finishReason": "STOP"}]}
    assert openai_images.picture(resp)[:2] == ("image/jpeg", "BBBB")
