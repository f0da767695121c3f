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
- Claude models (:func:`claude_tool_loop`): google-genai's automatic
  function calling and the Gemini CLI send function responses without ids
  and drop thought parts, and Claude needs both (UPSTREAM.md §6.3 ids,
  §6.4 the final tool-call turn starts with signed thinking). Missing ids
  are filled (calls and their results paired by order and name), and the
  signed thinking that opened each tool-call turn comes back from the store;
  the answers' thinking is recorded for that (:class:`ClaudeRecorder`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from daemon.errors import BadRequest, GatewayError
from daemon.protocols import GeminiCall, shared_extra
from daemon.protocols.common import (
    clean_schema,
    encoder,
    is_claude,
    is_gemini,
    merge_turns,
    sanitize_tool_name,
    sse,
    text_hash,
)
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


# ------------------------------------------------------------ Claude tool loops


def call_key(name: Any, args: Any) -> str:
    """A key for a call by what it says (name and arguments), for clients that
    send the call back without the id it was answered with."""
    canonical = json.dumps(args if isinstance(args, dict) else {}, sort_keys=True, ensure_ascii=False)
    return "call-" + text_hash(f"{name}\n{canonical}")


def _fill_call_ids(contents: list[dict[str, Any]]) -> None:
    """Every model functionCall gets an id (Claude refuses calls without one),
    and every functionResponse of the next content the id of its call.

    A call without an id gets ``toolu_<hash>`` from its position and content
    (the same call always gets the same id). A response without an id (or
    with one no call of the previous content has) answers the first call not
    yet answered that has its name, else the first call not yet answered:
    google-genai and the Gemini CLI answer calls in order.
    """
    for ci, content in enumerate(contents):
        if content.get("role") != "model":
            continue
        calls = [p["functionCall"] for p in content["parts"] if isinstance(p.get("functionCall"), dict)]
        if not calls:
            continue
        for pi, call in enumerate(calls):
            if not call.get("id"):
                key = call_key(call.get("name"), call.get("args"))
                call["id"] = "toolu_" + shared_extra.derived_hex(key, f"{ci}:{pi}")
        following = contents[ci + 1] if ci + 1 < len(contents) else None
        if following is None or following.get("role") != "user":
            continue
        responses = [
            p["functionResponse"] for p in following["parts"] if isinstance(p.get("functionResponse"), dict)
        ]
        ids = [str(c["id"]) for c in calls]
        open_ids = [i for i in ids if i not in {r.get("id") for r in responses}]
        for resp in responses:
            if resp.get("id") in ids:
                continue
            named = [
                i
                for i, c in zip(ids, calls, strict=True)
                if i in open_ids and c.get("name") == resp.get("name")
            ]
            pick = named[0] if named else (open_ids[0] if open_ids else None)
            if pick is not None:
                resp["id"] = pick
                open_ids.remove(pick)


def _claude_thought(part: dict[str, Any], store: SignatureStore) -> dict[str, Any] | None:
    """A thought part as Claude accepts it: signed by Claude through this proxy,
    with the text that was signed (from the store when known); else None."""
    sig = part.get("thoughtSignature")
    if not isinstance(sig, str) or not sig or store.family(sig) != "claude":
        return None
    text = store.thinking(sig) or part.get("text")
    if not isinstance(text, str) or not text:
        return None
    return shared_extra.thought_part(text, sig)


def _restore_turn_thinking(content: dict[str, Any], store: SignatureStore) -> None:
    """Put the signed thinking that opened a tool-call turn back at its start,
    found by the first call's id, else by what the call says."""
    parts = content["parts"]
    first = next((p["functionCall"] for p in parts if isinstance(p.get("functionCall"), dict)), None)
    if first is None or (parts and parts[0].get("thought")):
        return
    keys = [str(first["id"])] if first.get("id") else []
    keys.append(call_key(first.get("name"), first.get("args")))
    for key in keys:
        thought = shared_extra.stored_turn_thinking(store, key)
        if thought is not None:
            parts.insert(0, thought)
            return


def _thinking_requested(gen: Any) -> bool:
    tc = gen.get("thinkingConfig") if isinstance(gen, dict) else None
    if not isinstance(tc, dict):
        return False
    budget = tc.get("thinkingBudget")
    big = isinstance(budget, int) and not isinstance(budget, bool) and (budget >= 1024 or budget < 0)
    return bool(tc.get("includeThoughts")) or big or bool(tc.get("thinkingLevel"))


def claude_tool_loop(req: dict[str, Any], store: SignatureStore) -> list[str]:
    """Make a Gemini-shaped conversation acceptable to a Claude model (in place);
    returns notes for the request log.

    Thought parts are kept only as Claude signed them (text from the store);
    each tool-call turn that lost its thinking gets it back from the store,
    looked up before missing ids are filled, so a call sent back without its
    id is found by what it says. Then ids are filled and paired. Whether
    thinking can stay on is the one rule, ``shared_extra.claude_thinking_allowed``:
    if not, thinking is switched off for this request and thought parts go.
    """
    notes: list[str] = []
    contents: list[dict[str, Any]] = req["contents"]
    for content in contents:
        if content.get("role") != "model":
            continue
        # Thought keys are looked up before ids are filled: a call the client
        # sent without its id is found by what it says.
        kept = []
        for part in content["parts"]:
            if part.get("thought"):
                restored = _claude_thought(part, store)
                if restored is not None:
                    kept.append(restored)
            else:
                kept.append(part)
        content["parts"] = kept
        _restore_turn_thinking(content, store)
    contents[:] = merge_turns(contents)
    _fill_call_ids(contents)
    gen = req.get("generationConfig")
    if _thinking_requested(gen) and not shared_extra.claude_thinking_allowed(contents):
        assert isinstance(gen, dict)
        del gen["thinkingConfig"]
        notes.append(
            "thinking turned off for this request: the signed thinking of the last"
            " tool-call turn is unknown (the upstream refuses unsigned thinking)"
        )
    if not _thinking_requested(req.get("generationConfig")):
        contents[:] = shared_extra.strip_thoughts(contents)
    return notes


class ClaudeRecorder:
    """Remembers the signed thinking of a Claude answer on the Gemini route:
    the text of each block by its signature, and the block that opened a
    tool-call turn by the first call's id and by what that call says (for
    clients that send the call back without its id)."""

    def __init__(self, store: SignatureStore) -> None:
        self._store = store
        self._recorder = shared_extra.SignatureRecorder(store, "claude")
        self._calls = 0

    def feed(self, resp: dict[str, Any]) -> None:
        cands = resp.get("candidates") or []
        cand = cands[0] if cands and isinstance(cands[0], dict) else {}
        for part in (cand.get("content") or {}).get("parts") or []:
            piece = shared_extra.read_part(part) if isinstance(part, dict) else None
            if piece is None:
                continue
            if piece.kind == "thought":
                self._recorder.thought(piece)
            elif piece.kind == "call":
                self._call(piece)

    def _call(self, piece: shared_extra.Piece) -> None:
        self._calls += 1
        if piece.call_id:
            self._recorder.call(piece.call_id, piece.signature)
        if self._calls == 1:
            opening = next((t for t in self._recorder.thinking if t.text), None)
            if opening is not None:
                key = call_key(piece.name, piece.args)
                self._store.put_text(key, shared_extra.CLAUDE_TURN_THINKING, opening.signature)


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
    notes = claude_tool_loop(req, store) if is_claude(model) else []
    gc = req.get("generationConfig")
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
        extra={"notes": notes} if notes else {},
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
    if is_claude(call.model):
        ClaudeRecorder(store).feed(resp)
    out = dict(resp)
    out.setdefault("modelVersion", call.model)
    return out


def error_body(err: GatewayError) -> dict[str, Any]:
    from daemon.protocols.error_shapes import gemini_body

    return gemini_body(err)


class StreamTranslator:
    """``alt=sse``: one ``data:`` event per chunk; otherwise the JSON array
    stream Google's REST API answers without alt=sse."""

    def __init__(self, call: GeminiCall, store: SignatureStore, *, sse_mode: bool = True) -> None:
        self.call = call
        self.store = store
        self.sse_mode = sse_mode
        self._first = True
        self._claude = ClaudeRecorder(store) if is_claude(call.model) else None

    def start(self) -> bytes:
        return b""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        remember_signatures(chunk, self.store)
        if self._claude is not None:
            self._claude.feed(chunk)
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
