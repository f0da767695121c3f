"""OpenAI's Images API (``POST /v1/images/generations``) <-> the image model.

The upstream side is UPSTREAM.md §5.5: the catalog's image model
(``imageGenerationModelIds``), a request with no tools and no system
instruction, the picture's shape in ``generationConfig.imageConfig``
(``aspectRatio``, ``imageSize``), an answer carrying the picture as an
``inlineData`` part (base64).

Fields of the request:

- ``prompt`` (required): the one user turn.
- ``model``: optional. Absent, or an OpenAI image model name (``gpt-image-*``,
  ``dall-e-*``, ``chatgpt-image-*``), means the catalog's image model; any
  other name must resolve to an image model (the route checks it).
- ``n``: 1 to ``MAX_IMAGES``; one upstream call per picture (the image model
  answers one picture per call). More is a 400 naming ``n``.
- ``size``: ``auto`` or absent (the model's own choice), or ``WxH`` whose
  ratio is one of the image model's aspect ratios (``ASPECT_RATIOS``:
  1024x1024 -> 1:1, 1536x1024 -> 3:2, 1024x1536 -> 2:3, 1536x864 -> 16:9,
  ...); DALL-E 3's 1792x1024 and 1024x1792 are taken as 16:9 and 9:16. A
  long edge of 2048 or more asks for ``imageSize`` "2K", of 3840 or more
  "4K"; below that the model's default (1K). Anything else is a 400 naming
  ``size``.
- ``response_format``: ``b64_json`` (the default) answers the base64 PNG;
  ``url`` answers a ``data:`` URL holding the same picture (RFC 2397): the
  gateway keeps no files, so it has nothing else to link to. A browser or an
  ``<img>`` tag shows it; a client that downloads ``url`` over HTTP cannot,
  and should ask for ``b64_json``.
- ``stream``: refused (400): partial images are not made upstream.
- ``background`` and ``output_format``: what no answer of the image model
  can honour is a 400 (``unservable``, the one rule the Responses
  ``image_generation`` tool follows too): a transparent background, and a
  format that is not a raster picture (svg, gif). ``png``, ``jpeg`` and
  ``webp`` are taken and not applied: the answer's ``output_format`` says
  what the picture really is.
- ``quality``, ``style``, ``moderation``, ``output_compression``,
  ``partial_images``, ``user`` (and ``background``, ``output_format`` when
  taken): accepted and not applied (the image model has no such settings);
  listed in ``call.extra["ignored"]`` for the log.

The answer is OpenAI's ``ImagesResponse``: ``created``, ``data`` (one
``{"b64_json"}`` or ``{"url"}`` per picture), ``output_format``, and
``usage`` summed over the calls. No ``revised_prompt``: the prompt goes to the
model as sent, and the text the model may write next to its picture is a
remark, not a rewritten prompt.
"""

from __future__ import annotations

import math
import re
from typing import Any

from daemon.errors import BadRequest, UpstreamError
from daemon.protocols import GeminiCall
from daemon.protocols.common import candidate, parts_of

#: Pictures per request at most: each is a call on the image model's quota.
MAX_IMAGES = 4
#: The aspect ratios the image model takes (Gemini's ``imageConfig.aspectRatio``).
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
#: DALL-E 3's wide and tall sizes (7:4) are meant as the 16:9 family.
_LEGACY_SIZES = {"1792x1024": "16:9", "1024x1792": "9:16"}
_SIZE = re.compile(r"^\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*$")
_OPENAI_IMAGE_MODEL = re.compile(r"^(gpt-image|dall-e|chatgpt-image)", re.IGNORECASE)
_IGNORED = (
    "quality",
    "style",
    "background",
    "moderation",
    "output_format",
    "output_compression",
    "partial_images",
    "user",
)
# finishReason values that mean the model would not draw this prompt.
_REFUSALS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_PROHIBITED_CONTENT",
    }
)
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}
#: The output_format values a client may ask for and still be served: the
#: model's picture, labelled with what it really is.
RASTER_FORMATS = ("png", "jpeg", "webp")


def unservable(opts: dict[str, Any], prefix: str = "") -> None:
    """Raise BadRequest (``param`` = ``prefix`` + the field) for picture
    options no answer of the image model can honour: a transparent
    background (it draws opaque pictures) and an ``output_format`` that is no
    raster picture. For the Images API and the Responses tool alike."""
    background = opts.get("background")
    if background not in (None, "auto", "opaque"):
        param = f"{prefix}background"
        raise BadRequest(
            f"{param}: {background!r} is not served: the image model draws opaque pictures; "
            "send auto or opaque, or leave it out",
            param=param,
        )
    fmt = opts.get("output_format")
    if fmt is not None and fmt not in RASTER_FORMATS:
        param = f"{prefix}output_format"
        raise BadRequest(
            f"{param}: {fmt!r} is not served: the image model draws raster pictures (PNG); send "
            f"{', '.join(RASTER_FORMATS)} (the answer's output_format says which it is), or leave it out",
            param=param,
        )


def requested_model(body: dict[str, Any]) -> str | None:
    """The client's model name when it names a model of its own; None when
    the catalog's image model is meant (absent, null, or an OpenAI image
    model name)."""
    model = body.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model must be a model name (or left out for the image model)", param="model")
    if _OPENAI_IMAGE_MODEL.match(model.strip()):
        return None
    return model.strip()


def image_config(size: Any, *, param: str = "size") -> dict[str, str]:
    """``generationConfig.imageConfig`` for an OpenAI ``size`` (a refusal names ``param``)."""
    if size is None or size == "auto":
        return {}
    if not isinstance(size, str):
        raise BadRequest(f"{param} must be a string such as 1024x1024, or auto", param=param)
    ratio = _LEGACY_SIZES.get(size.strip())
    m = _SIZE.match(size)
    if m is None:
        raise BadRequest(_size_message(size, param), param=param)
    w, h = int(m.group(1)), int(m.group(2))
    if ratio is None:
        g = math.gcd(w, h) or 1
        ratio = f"{w // g}:{h // g}"
        if ratio not in ASPECT_RATIOS:
            raise BadRequest(_size_message(size, param), param=param)
    config = {"aspectRatio": ratio}
    edge = max(w, h)
    if edge >= 3840:
        config["imageSize"] = "4K"
    elif edge >= 2048:
        config["imageSize"] = "2K"
    return config


def _size_message(size: str, param: str = "size") -> str:
    ratios = ", ".join(sorted(ASPECT_RATIOS, key=lambda r: int(r.split(":")[0]) / int(r.split(":")[1])))
    return (
        f"{param} {size!r} is not served: the image model draws in the aspect ratios {ratios}; "
        "send auto, 1024x1024, 1536x1024, 1024x1536, or another WIDTHxHEIGHT in one of those ratios"
    )


def image_request(prompt: str, config: dict[str, str]) -> dict[str, Any]:
    """The image model's ``request`` for one picture of ``prompt``.

    UPSTREAM.md §5.5: no tools, no systemInstruction, the shape in
    ``generationConfig.imageConfig``, no responseMimeType / responseModalities."""
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    if config:
        request["generationConfig"] = {"imageConfig": dict(config)}
    return request


def image_format(mime: str) -> str:
    """The OpenAI ``output_format`` name of a picture's mime type."""
    return _FORMATS.get(mime, mime)


def to_gemini(body: dict[str, Any], *, model: str, client_model: str = "") -> GeminiCall:
    """The request for ONE picture (the route makes ``call.extra["n"]`` calls)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt is required: describe the image to generate", param="prompt")
    n = body.get("n")
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise BadRequest("n must be a whole number from 1", param="n")
    if n > MAX_IMAGES:
        raise BadRequest(
            f"n={n} is more than this gateway makes in one request ({MAX_IMAGES}): each image is "
            "one call on the image model's quota; ask for fewer, or send several requests",
            param="n",
        )
    fmt = body.get("response_format")
    if fmt is None:
        fmt = "b64_json"
    if fmt not in ("b64_json", "url"):
        raise BadRequest("response_format must be b64_json or url", param="response_format")
    if body.get("stream"):
        raise BadRequest(
            "stream is not supported for images: the image model answers whole pictures; "
            "send the request without stream",
            param="stream",
        )
    unservable(body)
    request = image_request(prompt, image_config(body.get("size")))
    ignored = [k for k in _IGNORED if body.get(k) is not None]
    return GeminiCall(
        request=request,
        client_model=client_model or str(body.get("model") or model),
        model=model,
        extra={"n": n, "response_format": fmt, "ignored": ignored},
    )


def picture(resp: dict[str, Any]) -> tuple[str, str, str]:
    """(mime type, base64 data, the model's text) of one answer; an answer
    with no picture is an error that says why."""
    texts: list[str] = []
    for part in parts_of(resp):
        if not isinstance(part, dict) or part.get("thought"):
            continue
        inline = part.get("inlineData")
        if isinstance(inline, dict) and isinstance(inline.get("data"), str) and inline["data"]:
            text = "".join(texts).strip()
            return str(inline.get("mimeType") or "image/png"), inline["data"], text
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    text = "".join(texts).strip()
    reason = str(candidate(resp).get("finishReason") or "")
    block = (resp.get("promptFeedback") or {}).get("blockReason") if isinstance(resp, dict) else None
    if block or reason in _REFUSALS:
        why = block or reason
        said = f": {text[:300]}" if text else ""
        raise BadRequest(f"the image model refused this prompt ({why}){said}; rephrase it", param="prompt")
    said = f"; it said: {text[:300]}" if text else ""
    raise UpstreamError(f"the image model answered without an image (finishReason {reason or 'none'}){said}")


def from_gemini(resps: list[dict[str, Any]], *, call: GeminiCall) -> dict[str, Any]:
    """OpenAI's ImagesResponse for the answers of ``call.extra["n"]`` calls."""
    data: list[dict[str, Any]] = []
    formats: set[str] = set()
    prompt_tokens = output_tokens = total = 0
    for resp in resps:
        mime, b64, _ = picture(resp)
        formats.add(image_format(mime))
        item: dict[str, Any] = (
            {"url": f"data:{mime};base64,{b64}"}
            if call.extra.get("response_format") == "url"
            else {"b64_json": b64}
        )
        data.append(item)
        meta = resp.get("usageMetadata") or {}
        p = int(meta.get("promptTokenCount") or 0)
        o = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
        prompt_tokens += p
        output_tokens += o
        total += int(meta.get("totalTokenCount") or (p + o))
    out: dict[str, Any] = {"created": int(call.extra.get("created") or 0), "data": data}
    if len(formats) == 1:
        fmt = next(iter(formats))
        if fmt in _FORMATS.values():
            out["output_format"] = fmt
    out["usage"] = {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
        "output_tokens": output_tokens,
        "total_tokens": total,
    }
    return out
