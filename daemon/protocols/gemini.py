"""The Gemini API (``/v1beta/models/{m}:generateContent`` …): the least
translation. The client already speaks GenerateContentRequest; this module
normalises it to what v1internal accepts and frames the answer.

- Google's parser takes proto (snake_case) names and JSON (lowerCamelCase)
  names; we send lowerCamelCase only (UPSTREAM.md). Keys inside function
  args/responses and schema property names are data, never renamed.
- Schemas are cleaned to Gemini's Schema subset (clients send JSON Schema
  via ``parametersJsonSchema`` too).
- A functionCall in the current turn without a signature gets one back from
  the store (by call id) or ``skip_thought_signature_validator``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from daemon.errors import BadRequest, GatewayError
from daemon.protocols import GeminiCall
from daemon.protocols.common import clean_schema, encoder, is_gemini, sanitize_tool_name, sse, text_hash
from daemon.protocols.signatures import SignatureStore

SKIP_SIGNATURE = "skip_thought_signature_validator"
_DATA_KEYS = frozenset({"args", "response", "example", "default", "enum", "metadata", "labels"})
_SNAKE = re.compile(r"_([a-z0-9])")


def camel(key: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key


def camelize(node: Any) -> Any:
    """snake_case -> lowerCamelCase keys, leaving data maps alone."""
    if isinstance(node, list):
        return [camelize(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, val in node.items():
        k = camel(key)
        if k in _DATA_KEYS:
            out[k] = val
        elif k == "properties" and isinstance(val, dict):
            out[k] = {pk: camelize(pv) for pk, pv in val.items()}
        else:
            out[k] = camelize(val)
    return out


def _current_turn_start(contents: list[dict[str, Any]]) -> int:
    """Index after the last user content holding text (the validated span)."""
    for i in range(len(contents) - 1, -1, -1):
        c = contents[i]
        if c.get("role") == "user" and any("text" in p for p in c.get("parts", []) if isinstance(p, dict)):
            return i
    return 0


def restore_signatures(contents: list[dict[str, Any]], model: str, store: SignatureStore) -> None:
    if not is_gemini(model):
        return
    start = _current_turn_start(contents)
    for c in contents[start:]:
        if c.get("role") != "model":
            continue
        first_call = True
        for p in c.get("parts", []):
            if not isinstance(p, dict) or "functionCall" not in p:
                continue
            if first_call and not p.get("thoughtSignature"):
                call_id = (p["functionCall"] or {}).get("id")
                sig = store.tool_call(call_id) if call_id else None
                p["thoughtSignature"] = sig or SKIP_SIGNATURE
            first_call = False


def _clean_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list", param="tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}] must be an object", param=f"tools[{i}]")
        tool = dict(tool)
        decls = tool.get("functionDeclarations")
        if isinstance(decls, list):
            clean = []
            for d in decls:
                if not isinstance(d, dict) or not d.get("name"):
                    raise BadRequest(f"tools[{i}].functionDeclarations: every declaration needs a name")
                d = dict(d)
                d["name"] = sanitize_tool_name(str(d["name"]))
                schema = d.pop("parametersJsonSchema", None)
                if schema is not None and "parameters" not in d:
                    d["parameters"] = schema
                if "parameters" in d:
                    d["parameters"] = clean_schema(d["parameters"])
                d.pop("responseJsonSchema", None)
                if "response" in d:
                    d["response"] = clean_schema(d["response"])
                clean.append(d)
            tool["functionDeclarations"] = clean
        out.append(tool)
    return out


def to_gemini(
    body: dict[str, Any], *, model: str, store: SignatureStore, client_model: str = "", stream: bool = False
) -> GeminiCall:
    req = camelize(body)
    req.pop("model", None)
    contents = req.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if isinstance(contents, str):
        contents = [{"role": "user", "parts": [{"text": contents}]}]
    if not isinstance(contents, list) or not contents:
        raise BadRequest("contents is required: a non-empty list of Content objects", param="contents")
    clean_contents = []
    for i, c in enumerate(contents):
        if not isinstance(c, dict):
            raise BadRequest(f"contents[{i}] must be an object", param=f"contents[{i}]")
        parts = c.get("parts")
        if not isinstance(parts, list):
            raise BadRequest(f"contents[{i}].parts must be a list", param=f"contents[{i}].parts")
        # A part with no data is rejected upstream; empty text is no data.
        kept = [
            p
            for p in parts
            if isinstance(p, dict) and not (set(p) <= {"text", "thought"} and not p.get("text"))
        ]
        if kept:
            clean_contents.append({"role": c.get("role") or "user", "parts": kept})
    if not clean_contents:
        raise BadRequest("contents holds no non-empty parts", param="contents")
    req["contents"] = clean_contents
    si = req.get("systemInstruction")
    if isinstance(si, str):
        req["systemInstruction"] = {"role": "user", "parts": [{"text": si}]}
    elif isinstance(si, dict):
        si = dict(si)
        si["role"] = "user"
        si["parts"] = [p for p in si.get("parts", []) if isinstance(p, dict) and p.get("text", "x")]
        req["systemInstruction"] = si
        if not si["parts"]:
            del req["systemInstruction"]
    if "tools" in req:
        req["tools"] = _clean_tools(req["tools"])
    gc = req.get("generationConfig")
    if isinstance(gc, dict):
        gc.pop("responseJsonSchema", None) if "responseSchema" in gc else None
        if "responseJsonSchema" in gc:
            gc["responseSchema"] = clean_schema(gc.pop("responseJsonSchema"))
        elif isinstance(gc.get("responseSchema"), dict):
            gc["responseSchema"] = clean_schema(gc["responseSchema"])
    for key in ("cachedContent", "labels"):
        req.pop(key, None)
    restore_signatures(req["contents"], model, store)
    first_user = next((c for c in clean_contents if c["role"] == "user"), None)
    session = None
    if first_user:
        text = "".join(p.get("text", "") for p in first_user["parts"] if isinstance(p, dict))
        session = text_hash(text) if text else None
    thinking = (
        bool(((gc or {}).get("thinkingConfig") or {}).get("includeThoughts"))
        if isinstance(gc, dict)
        else False
    )
    return GeminiCall(
        request=req,
        client_model=client_model or model,
        model=model,
        stream=stream,
        session_key=session,
        thinking=thinking,
    )


def remember_signatures(resp: dict[str, Any], store: SignatureStore) -> None:
    for cand in resp.get("candidates") or []:
        for p in ((cand or {}).get("content") or {}).get("parts") or []:
            if isinstance(p, dict) and p.get("thoughtSignature") and "functionCall" in p:
                call_id = (p["functionCall"] or {}).get("id")
                if call_id:
                    store.put_tool_call(call_id, p["thoughtSignature"])


def from_gemini(resp: dict[str, Any], *, call: GeminiCall, store: SignatureStore) -> dict[str, Any]:
    remember_signatures(resp, store)
    out = dict(resp)
    out.setdefault("modelVersion", call.model)
    return out


def error_body(err: GatewayError) -> dict[str, Any]:
    from daemon.proxy.error_shapes import gemini_body

    return gemini_body(err)


class StreamTranslator:
    """``alt=sse``: one ``data:`` event per chunk; otherwise the JSON array
    stream Google's REST API answers without alt=sse."""

    def __init__(self, call: GeminiCall, store: SignatureStore, *, sse_mode: bool = True) -> None:
        self.call = call
        self.store = store
        self.sse_mode = sse_mode
        self._first = True

    def start(self) -> bytes:
        return b""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        remember_signatures(chunk, self.store)
        data = encoder.encode(chunk)
        if self.sse_mode:
            return sse(data)
        prefix = b"[" if self._first else b",\r\n"
        self._first = False
        return prefix + data

    def finish(self) -> bytes:
        if self.sse_mode:
            return b""
        return b"[]" if self._first else b"]"

    def fail(self, err: GatewayError) -> bytes:
        data = msgspec.json.encode(error_body(err))
        if self.sse_mode:
            return sse(data)
        prefix = b"[" if self._first else b",\r\n"
        self._first = False
        return prefix + data + b"]"

    def keepalive(self) -> bytes:
        return b""
