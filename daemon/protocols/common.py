"""Pieces every protocol translation shares (pure: no I/O).

Facts behind the rules are in UPSTREAM.md ("Thinking, signatures and tool
calls", "Both families").
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import msgspec

from daemon.errors import BadRequest
from daemon.models import CLAUDE_MIN_THINKING_BUDGET
from daemon.records import Usage

# ---------------------------------------------------------------- model family


def is_claude(model: str) -> bool:
    return model.startswith("claude")


def is_gemini(model: str) -> bool:
    return not is_claude(model)


# Budgets below this mean "no thinking" upstream.
MIN_THINKING_BUDGET = CLAUDE_MIN_THINKING_BUDGET  # Anthropic's minimum; below it, no thinking
EFFORT_BUDGETS = {"minimal": 0, "none": 0, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}


def thinking_budget_for_effort(effort: str | None) -> int | None:
    """OpenAI ``reasoning_effort`` / Anthropic effort -> a thinking budget."""
    if effort is None:
        return None
    if effort not in EFFORT_BUDGETS:
        raise BadRequest(
            f"unknown reasoning effort {effort!r}; use one of {', '.join(EFFORT_BUDGETS)}",
            param="reasoning_effort",
        )
    return EFFORT_BUDGETS[effort]


def thinking_config(
    budget: int | None, max_output_tokens: int | None
) -> tuple[dict[str, Any] | None, int | None]:
    """thinkingConfig and the (maybe raised) maxOutputTokens.

    Upstream facts: use a budget (not thinkingLevel) through v1internal;
    maxOutputTokens must exceed the budget; budgets below 1024 mean none.
    """
    if budget is None:
        return None, max_output_tokens
    if budget < MIN_THINKING_BUDGET:
        return {"includeThoughts": False, "thinkingBudget": 0}, max_output_tokens
    if max_output_tokens is not None and max_output_tokens <= budget:
        # Keep the client's answer length: raise the ceiling above the budget.
        max_output_tokens = budget + max_output_tokens
    return {"includeThoughts": True, "thinkingBudget": budget}, max_output_tokens


# ------------------------------------------------------------ schema cleaning

# Gemini's Schema object knows only these keys (UPSTREAM.md).
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_MAX_REF_DEPTH = 16


def clean_schema(schema: Any) -> dict[str, Any]:
    """A JSON Schema cleaned to the OpenAPI subset Gemini accepts.

    ``$ref``/``$defs`` are inlined, ``const`` becomes a one-value enum, type
    lists become ``type`` + ``nullable`` (or anyOf), unknown keys are dropped
    (their meaning is kept in the description where it matters to a model).
    """
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    out = _clean(schema, defs, 0)
    if "type" not in out and "anyOf" not in out:
        out["type"] = "object"
    if out.get("type") == "object" and "properties" not in out:
        out["properties"] = {}
    return out


def _resolve_ref(ref: str, defs: dict[str, Any]) -> Any:
    name = ref.rsplit("/", 1)[-1]
    return defs.get(name, {"type": "object"})


def _clean(node: Any, defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    if depth > _MAX_REF_DEPTH:
        # Recursive schemas cannot be inlined forever: stop with an open object.
        return {"type": "object"}
    if "$ref" in node:
        target = _resolve_ref(str(node["$ref"]), defs)
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs, depth + 1)
    if "allOf" in node and isinstance(node["allOf"], list):
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for sub in node["allOf"]:
            sub_c = _clean(sub, defs, depth + 1)
            props = {**merged.get("properties", {}), **sub_c.get("properties", {})}
            req = list(dict.fromkeys([*merged.get("required", []), *sub_c.get("required", [])]))
            merged = {**sub_c, **merged}
            if props:
                merged["properties"] = props
            if req:
                merged["required"] = req
        return _clean(merged, defs, depth + 1)

    out: dict[str, Any] = {}
    notes: list[str] = []
    typ = node.get("type")
    if isinstance(typ, list):
        kinds = [t for t in typ if t != "null"]
        if "null" in typ:
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": t} for t in kinds]
    elif isinstance(typ, str):
        out["type"] = typ
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", _json_type(node["const"]))

    for key, val in node.items():
        if key in ("type", "$schema", "$defs", "definitions", "const"):
            continue
        if key == "properties" and isinstance(val, dict):
            out["properties"] = {str(k): _clean(v, defs, depth + 1) for k, v in val.items()}
        elif key == "items":
            if isinstance(val, list):  # tuple validation: keep the first shape
                out["items"] = _clean(val[0] if val else {}, defs, depth + 1)
            else:
                out["items"] = _clean(val, defs, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(val, list):
            subs = [_clean(v, defs, depth + 1) for v in val]
            non_null = [s for s in subs if s.get("type") != "null"]
            if len(non_null) < len(subs):
                out["nullable"] = True
            if len(non_null) == 1 and "type" not in out:
                for k, v in non_null[0].items():
                    out.setdefault(k, v)
            elif non_null:
                out["anyOf"] = non_null
        elif key == "enum" and isinstance(val, list):
            vals = [v for v in val if v is not None]
            if len(vals) < len(val):
                out["nullable"] = True
            out["enum"] = [str(v) if not isinstance(v, str) else v for v in vals]
            if vals and not all(isinstance(v, str) for v in vals):
                # Gemini enums are strings only; say what the values mean.
                notes.append("one of " + ", ".join(map(str, vals)))
                out.pop("enum")
        elif key == "required" and isinstance(val, list):
            out["required"] = [str(v) for v in val]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(val, int | float):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = val
        elif key in SCHEMA_KEYS and key not in out:
            if key in ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"):
                if isinstance(val, int):
                    out[key] = val
            elif key in ("minimum", "maximum"):
                if isinstance(val, int | float):
                    out[key] = val
            elif key in ("description", "title", "format", "pattern") and not isinstance(val, str):
                continue
            else:
                out[key] = val
    if "required" in out and "properties" in out:
        out["required"] = [r for r in out["required"] if r in out["properties"]]
        if not out["required"]:
            del out["required"]
    elif "required" in out:
        del out["required"]
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"type": "string"}
    if out.get("type") == "object" and "properties" not in out and "anyOf" not in out:
        out["properties"] = {}
    if out.get("format") and out.get("type") == "string" and out["format"] not in ("enum", "date-time"):
        del out["format"]
    if notes:
        desc = out.get("description", "")
        out["description"] = (desc + " " if desc else "") + "(" + "; ".join(notes) + ")"
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


_TOOL_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:\-]")


def sanitize_tool_name(name: str) -> str:
    """Tool names upstream: letters, digits, ``_ - . :``, at most 64, not a digit first."""
    clean = _TOOL_NAME_BAD.sub("_", name)[:64]
    if not clean or not (clean[0].isalpha() or clean[0] == "_"):
        clean = ("_" + clean)[:64]
    return clean


def function_declaration(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": sanitize_tool_name(name)}
    if description:
        decl["description"] = description
    if parameters is not None:
        cleaned = clean_schema(parameters)
        # An empty object schema is fine, but no schema at all is the simplest.
        if cleaned.get("properties") or cleaned.get("type") != "object":
            decl["parameters"] = cleaned
    return decl


# ------------------------------------------------------------- finish reasons

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "OTHER": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}


def finish_reason(gemini_reason: str | None, *, had_tool_calls: bool) -> FinishReason:
    """Gemini finishReason -> neutral reason each protocol maps to its words."""
    if had_tool_calls and gemini_reason in (None, "STOP", "OTHER"):
        return "tool_calls"
    return _FINISH.get(gemini_reason or "STOP", "stop")  # type: ignore[return-value]


# ----------------------------------------------------------------------- usage


def usage_from_gemini(meta: dict[str, Any] | None) -> Usage:
    if not meta:
        return Usage()
    prompt = int(meta.get("promptTokenCount") or 0)
    cand = int(meta.get("candidatesTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    cached = int(meta.get("cachedContentTokenCount") or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=cand + thoughts,
        thinking_tokens=thoughts,
        cached_tokens=cached,
    )


# ------------------------------------------------------------- Gemini reading


def candidate(resp: dict[str, Any]) -> dict[str, Any]:
    cands = resp.get("candidates") or []
    return cands[0] if cands and isinstance(cands[0], dict) else {}


def parts_of(resp: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate(resp).get("content") or {}
    parts = content.get("parts") or []
    return [p for p in parts if isinstance(p, dict)]


def finish_of(resp: dict[str, Any]) -> str | None:
    reason = candidate(resp).get("finishReason")
    return str(reason) if reason else None


def prompt_blocked(resp: dict[str, Any]) -> str | None:
    fb = resp.get("promptFeedback") or {}
    reason = fb.get("blockReason")
    return str(reason) if reason else None


# ------------------------------------------------------------------------ SSE


def sse(data: bytes | str, event: str | None = None) -> bytes:
    """One Server-Sent Event; ``data`` must be a single line (JSON is)."""
    if isinstance(data, str):
        data = data.encode()
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


encoder = msgspec.json.Encoder()


def sse_json(obj: Any, event: str | None = None) -> bytes:
    return sse(encoder.encode(obj), event)


# ----------------------------------------------------------------- contents


def text_part(text: str) -> dict[str, Any] | None:
    """A text part, or None for empty text (upstream rejects parts with no data)."""
    return {"text": text} if text else None


def merge_turns(contents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive same-role contents and drop empty ones."""
    out: list[dict[str, Any]] = []
    for c in contents:
        parts = [p for p in c.get("parts", []) if p]
        if not parts:
            continue
        if out and out[-1]["role"] == c["role"]:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": c["role"], "parts": list(parts)})
    return out


_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+\-]+/[\w.+\-]+)?(?P<params>(;[^,;]*)*?)?(;base64)?,(?P<data>.*)$", re.S
)


def parse_data_url(url: str) -> tuple[str, str]:
    """``data:<mime>;base64,<data>`` -> (mime, base64 data)."""
    m = _DATA_URL.match(url)
    if not m:
        raise BadRequest("image URL is not a valid data: URL", param="image_url")
    mime = m.group("mime") or "application/octet-stream"
    data = m.group("data")
    if ";base64" not in url.split(",", 1)[0]:
        from urllib.parse import unquote_to_bytes

        data = base64.b64encode(unquote_to_bytes(data)).decode()
    else:
        try:
            base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False)
        except (binascii.Error, ValueError):
            raise BadRequest("image data: URL holds invalid base64", param="image_url") from None
    return mime, data


def image_part(url: str) -> dict[str, Any]:
    """An image given by URL: data: URLs inline, others as fileData (the
    upstream fetches public URLs itself)."""
    if url.startswith("data:"):
        mime, data = parse_data_url(url)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("http://", "https://", "gs://")):
        mime = guess_mime(url)
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise BadRequest("image URL must be a data: URL or an http(s) URL", param="image_url")


def guess_mime(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for ext, mime in (
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".gif", "image/gif"),
        (".webp", "image/webp"),
        (".pdf", "application/pdf"),
    ):
        if path.endswith(ext):
            return mime
    return "image/jpeg"


def deep_copy(obj: Any) -> Any:
    return copy.deepcopy(obj)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def iter_text(parts: Iterable[dict[str, Any]], *, thought: bool) -> Iterator[str]:
    for p in parts:
        if "text" in p and bool(p.get("thought")) == thought and p["text"]:
            yield p["text"]


# ----------------------------------------------------------------- size

#: What a picture or file part is counted as: Gemini bills an image at 258
#: tokens whatever its byte size, so its base64 must not count as text.
_MEDIA_BYTES = 258 * 4


def _part_bytes(part: Any) -> int:
    if not isinstance(part, dict):
        return 0
    size = 0
    text = part.get("text")
    if isinstance(text, str):
        size += len(text.encode("utf-8", "replace"))
    for key in ("functionCall", "functionResponse"):
        if key in part:
            size += len(encoder.encode(part[key]))
    if "inlineData" in part or "fileData" in part:
        size += _MEDIA_BYTES
    return size


def estimate_tokens(request: dict[str, Any]) -> int:
    """A cheap estimate of a GenerateContentRequest's prompt tokens: the
    bytes of its text, calls, results, system instruction and tool
    declarations over 4 (pictures at a flat rate). Good enough to tell a
    prompt far over a model's limit; not a count."""
    size = 0
    for content in request.get("contents") or ():
        if isinstance(content, dict):
            size += sum(_part_bytes(p) for p in content.get("parts") or ())
    system = request.get("systemInstruction")
    if isinstance(system, dict):
        size += sum(_part_bytes(p) for p in system.get("parts") or ())
    tools = request.get("tools")
    if tools:
        size += len(encoder.encode(tools))
    return size // 4
