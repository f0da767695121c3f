"""The Responses ``image_generation`` tool, the pure half: the image call is
run by the dispatcher on the catalog's image model (UPSTREAM.md §5.5, the
same call as ``POST /v1/images/generations``) inside the server-tool loop
(``protocols.server_tools``).

How it is served:

* the main model gets a plain function declaration ``image_generation(prompt)``
  (next to the client's function tools, or alone);
* when it calls it, the dispatcher asks the image model for one picture of
  that prompt and answers the call with a short text (the picture is shown
  to the user; the bytes never go back to the main model), then the model
  goes on (usually a sentence about the picture);
* the client gets an ``image_generation_call`` output item holding the
  picture (base64 ``result``) with the stream events OpenAI sends for it;
* ``image_generation_call`` items that come back in a later request's input
  become a model-turn text saying an image was made from that prompt (the
  upstream knows no such item; the base64 is not sent back).

Facts relied on (OpenAI Responses API, as the official openai-python SDK
3.63 types it: ``types/responses/tool.py`` ``ImageGeneration``,
``response_output_item.py`` ``ImageGenerationCall``,
``response_image_gen_call_{in_progress,generating,partial_image,completed}_event.py``;
and the image generation guide, developers.openai.com/api/docs/guides/image-generation):

* the tool: ``{"type": "image_generation", "model", "size" ("auto",
  "1024x1024", "1536x1024", "1024x1536" or WIDTHxHEIGHT), "quality"
  (low/medium/high/xhigh/max/auto), "output_format" (png/webp/jpeg/gif/svg,
  default png), "output_compression", "background"
  (transparent/opaque/auto), "partial_images" (0 to 3, stream only),
  "moderation", "action" (generate/edit/auto), "input_image_mask",
  "input_fidelity", "complexity", "frame_count", "frame_duration_ms" (gif),
  "svg"}``; no ``n``: one picture per call;
* the item: ``{"id", "type": "image_generation_call", "status":
  "in_progress" | "generating" | "completed" | "failed", "result": base64 or
  null, "revised_prompt", "output_format", "action", "size", "quality",
  "background", "error": {"type", "message", "code"?, "param"?}}`` (all but
  id, type, status optional); ids start ``ig_``;
* the stream: ``response.output_item.added`` (status in_progress), then
  ``response.image_generation_call.in_progress`` and ``.generating``
  (``item_id``, ``output_index``, ``sequence_number``), zero or more
  ``.partial_image`` (``partial_image_b64``, 0-based
  ``partial_image_index``), ``.completed``, ``response.output_item.done``
  with the whole item;
* ``revised_prompt`` is the prompt the main model wrote for the tool, which
  is exactly the function call's ``prompt`` here.

Options Google cannot honour (the image model draws one PNG per prompt in
an aspect ratio of ``openai_images.ASPECT_RATIOS``):

* ``size``: mapped to ``imageConfig`` as ``/v1/images/generations`` does
  (``openai_images.image_config``); an unmapped size is a 400 naming
  ``tools[i].size``;
* ``background: "transparent"`` and an ``output_format`` that is no raster
  picture (gif, svg): a 400 naming the field, by the rule the Images API
  follows too (``openai_images.unservable``); png, jpeg and webp are taken,
  and the item's ``output_format`` says what the picture really is;
* ``action: "edit"``, ``input_image_mask``, gif frames and ``svg``: a 400
  naming the field (the client would get something else than it asked for);
* ``quality``, ``moderation``, ``output_compression``, ``input_fidelity``,
  ``complexity`` (and ``output_format``, ``background`` when taken):
  accepted, not applied (``opts["ignored"]``);
* ``partial_images``: accepted (0 to 3); no partial image is sent, which the
  stream allows (zero or more ``partial_image`` events).
"""

from __future__ import annotations

from typing import Any

from daemon.errors import BadRequest, GatewayError
from daemon.protocols import GeminiCall, openai_images

Json = dict[str, Any]

FUNCTION_NAME = "image_generation"
TOOL_TYPE = "image_generation"
EXTRA_KEY = "image_generation"  # call.extra: see options()
IMAGE_PART = "_imageGeneration"  # the synthetic part the Responses translator reads
#: Pictures one request may make (each is a call on the image model's quota).
MAX_CALLS = openai_images.MAX_IMAGES
#: What the main model is told once the picture is made: the user sees it,
#: the model does not (the bytes are never sent back).
DONE_TEXT = (
    "The image was generated and is shown to the user. You cannot see it; do not describe "
    "it in detail or repeat it as a link. Say briefly what was made if it helps."
)
DESCRIPTION = (
    "Generate an image from a text description and show it to the user. Write a complete, "
    "self-contained description in prompt: subject, style, composition, colours, any text "
    "to draw. Each call makes one new image; earlier images cannot be edited, so describe "
    "the whole picture again when asked for a change."
)

_NOT_APPLIED = (
    "quality",
    "moderation",
    "output_compression",
    "input_fidelity",
    "complexity",
    "output_format",
    "background",
)
_PARTIAL_MAX = 3


def declaration() -> Json:
    return {
        "name": FUNCTION_NAME,
        "description": DESCRIPTION,
        "parameters": {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": "The full description of the image to draw."}
            },
            "required": ["prompt"],
        },
    }


def _refuse(param: str, why: str) -> BadRequest:
    return BadRequest(f"{param}: {why}", param=param)


def options(tool: Json, param: str) -> Json:
    """``call.extra[EXTRA_KEY]`` for a Responses ``image_generation`` tool:
    ``{"max_uses", "image_config", "requested_model", "param", "ignored"}``
    (the route adds ``model``, the upstream image model). Raises BadRequest
    naming ``<param>.<field>`` for what the image model cannot do."""
    model = tool.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise _refuse(f"{param}.model", "must be an image model name, or left out")
    requested = openai_images.requested_model({"model": model}) if model is not None else None
    openai_images.unservable(tool, f"{param}.")
    if tool.get("action") not in (None, "auto", "generate"):
        raise _refuse(
            f"{param}.action",
            f"{tool.get('action')!r} is not served: every call draws a new image from its prompt "
            "(no editing of earlier images); send generate or auto",
        )
    for key in ("input_image_mask", "frame_count", "frame_duration_ms", "svg"):
        if tool.get(key) is not None:
            raise _refuse(
                f"{param}.{key}",
                "is not served: the image model draws one PNG from a prompt (no masks, GIF frames or SVG)",
            )
    partial = tool.get("partial_images")
    if partial is not None and (
        not isinstance(partial, int) or isinstance(partial, bool) or not 0 <= partial <= _PARTIAL_MAX
    ):
        raise _refuse(f"{param}.partial_images", f"must be a whole number from 0 to {_PARTIAL_MAX}")
    return {
        "max_uses": MAX_CALLS,
        "image_config": openai_images.image_config(tool.get("size"), param=f"{param}.size"),
        "requested_model": requested,
        "param": param,
        "ignored": [k for k in _NOT_APPLIED if tool.get(k) is not None],
    }


def enabled(call: GeminiCall) -> Json | None:
    opts = call.extra.get(EXTRA_KEY)
    return opts if isinstance(opts, dict) else None


def prompt_of(call_part: Json) -> str:
    args = call_part["functionCall"].get("args")
    prompt = args.get("prompt") if isinstance(args, dict) else None
    return prompt.strip() if isinstance(prompt, str) else ""


def image_request(prompt: str, opts: Json) -> Json:
    """The image model's ``request`` for the call's prompt."""
    return openai_images.image_request(prompt, opts.get("image_config") or {})


def _call_id(call_part: Json) -> str | None:
    fc = call_part["functionCall"]
    return fc["id"] if isinstance(fc.get("id"), str) else None


def pending(call_part: Json) -> Json:
    """The synthetic part a stream shows while the picture is drawn."""
    shown = {"call_id": _call_id(call_part), "prompt": prompt_of(call_part), "status": "generating"}
    return {IMAGE_PART: shown}


def result(call_part: Json, prompt: str, resp: Json) -> Json:
    """The outcome of the image model's answer: ``{"call_id", "prompt",
    "status": "completed", "b64", "output_format"}``, or a failure (an answer
    without a picture, a refused prompt)."""
    try:
        mime, b64, _remark = openai_images.picture(resp)
    except BadRequest as exc:
        # The image model would not draw this prompt (a safety finish or a
        # blocked prompt): OpenAI calls that moderation_blocked.
        return failure(call_part, prompt, exc, code="moderation_blocked")
    except GatewayError as exc:
        return failure(call_part, prompt, exc)
    return {
        "call_id": _call_id(call_part),
        "prompt": prompt,
        "status": "completed",
        "b64": b64,
        "output_format": openai_images.image_format(mime),
    }


def failure(call_part: Json, prompt: str, exc: GatewayError, code: str = "image_generation_failed") -> Json:
    """A picture that was not made: the model is told why and goes on."""
    return {
        "call_id": _call_id(call_part),
        "prompt": prompt,
        "status": "failed",
        "error": {"type": "image_generation_error", "code": code, "message": exc.message},
    }


def function_response(res: Json) -> Json:
    """The user part answering the model's image_generation call."""
    body: Json = (
        {"error": f"no image was made: {res['error']['message']}"}
        if res.get("status") == "failed"
        else {"result": DONE_TEXT}
    )
    fr: Json = {"name": FUNCTION_NAME, "response": body}
    if res.get("call_id"):
        fr["id"] = res["call_id"]
    return {"functionResponse": fr}


def limit_response(call_part: Json) -> Json:
    """The answer to an image_generation call past the request's budget."""
    fr: Json = {
        "name": FUNCTION_NAME,
        "response": {"error": "no more images in this request; answer now"},
    }
    if _call_id(call_part):
        fr["id"] = _call_id(call_part)
    return {"functionResponse": fr}


def item(item_id: str, res: Json) -> Json:
    """The finished ``image_generation_call`` output item."""
    out: Json = {"id": item_id, "type": "image_generation_call", "status": res["status"], "result": None}
    if res.get("prompt"):
        out["revised_prompt"] = res["prompt"]
    out["action"] = "generate"
    if res["status"] == "completed":
        out["result"] = res["b64"]
        out["output_format"] = res["output_format"]
    else:
        out["error"] = res["error"]
    return out


def without_pictures(items: list[Any]) -> list[Any]:
    """Conversation items to keep for ``previous_response_id``, with the
    pictures of ``image_generation_call`` items dropped: ``history_part``
    never sends them upstream, and each is megabytes of base64."""
    return [
        {**entry, "result": None}
        if isinstance(entry, dict) and entry.get("type") == "image_generation_call" and entry.get("result")
        else entry
        for entry in items
    ]


def history_part(entry: Json) -> Json:
    """An ``image_generation_call`` item from the client's input as the model
    turn's text: the upstream has no such item, and the picture itself need
    not go back (the model never saw it)."""
    prompt = entry.get("revised_prompt")
    about = f" from the prompt: {prompt.strip()}" if isinstance(prompt, str) and prompt.strip() else ""
    if entry.get("status") == "failed":
        return {"text": f"[image_generation was called here{about}; no image was made]"}
    return {"text": f"[an image was generated here with image_generation{about}; the user saw it]"}
