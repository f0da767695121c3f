"""Translation pieces the OpenAI and Anthropic translators share, beyond ``common``.

Pure, like the rest of ``daemon.protocols``: the only state touched is the
injected :class:`~daemon.protocols.signatures.SignatureStore`.

- tool-call plumbing: argument parsing, functionCall / functionResponse parts;
- reading an upstream answer part by part (:func:`read_part`) and remembering
  the signatures it carries (:class:`SignatureRecorder`);
- putting signatures back on the way in and making a conversation acceptable
  to the model family (:func:`finalize_contents`, :func:`apply_claude_rules`).

The facts behind every rule here are in UPSTREAM.md, "Thinking, signatures and
tool calls".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import msgspec

from daemon.errors import BadRequest
from daemon.ids import hex_id
from daemon.protocols import common
from daemon.protocols.signatures import SignatureStore

Family = Literal["claude", "gemini"]

# The literal Gemini accepts on a functionCall part whose real signature is
# unknown (UPSTREAM.md; not accepted on real Vertex).
SKIP_SIGNATURE = "skip_thought_signature_validator"

# Key (in the store's "text" space, next to a tool-call id) under which the
# signature of the thinking that opened a Claude tool-call turn is kept.
CLAUDE_TURN_THINKING = "claude-turn-thinking"

# Anthropic (behind v1internal) refuses thinking with a top_p below this.
_CLAUDE_MIN_TOP_P_WITH_THINKING = 0.95


def family(model: str) -> Family:
    return "claude" if common.is_claude(model) else "gemini"


# ------------------------------------------------------------------------ ids


def random_hex(length: int = 24) -> str:
    return hex_id((length + 1) // 2)[:length]


def derived_hex(seed: str, index: int | str, length: int = 24) -> str:
    """A stable id fragment from an answer id and a position.

    Ids made this way are unique as long as the answer id is, and they keep
    golden tests deterministic without a random source.
    """
    return hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:length]


# --------------------------------------------------------------- tool calls


def parse_arguments(raw: Any, *, param: str) -> dict[str, Any]:
    """Tool-call arguments (a JSON string, or an object some clients send) -> args."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}  # a call without parameters often comes back as ""
    if not isinstance(raw, str):
        raise BadRequest(f"{param} must be a JSON string", param=param)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"{param} is not valid JSON: {exc}", param=param) from None
    if not isinstance(value, dict):
        raise BadRequest(f"{param} must encode a JSON object", param=param)
    return value


def arguments_json(args: Any) -> str:
    """Upstream args (a Struct) -> the JSON string OpenAI-shaped clients expect."""
    return json.dumps(args if isinstance(args, dict) else {}, ensure_ascii=False, separators=(",", ":"))


def function_call_part(name: str, args: dict[str, Any], call_id: str | None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": common.sanitize_tool_name(name), "args": args}
    if call_id:
        call["id"] = call_id
    return {"functionCall": call}


def tool_result_object(result: Any) -> dict[str, Any]:
    """functionResponse.response must be an object: use a JSON-object result as
    it is and wrap anything else (plain text, numbers, lists) as {"result": ...}."""
    if isinstance(result, dict):
        return result
    if isinstance(result, str):
        stripped = result.strip()
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
    return {"result": result}


def function_response_part(name: str, call_id: str | None, result: Any) -> dict[str, Any]:
    resp: dict[str, Any] = {
        "name": common.sanitize_tool_name(name),
        "response": tool_result_object(result),
    }
    if call_id:
        resp["id"] = call_id
    return {"functionResponse": resp}


# --------------------------------------------------------- reading answers


class Piece(msgspec.Struct, kw_only=True):
    """One upstream answer part, classified."""

    kind: Literal["thought", "text", "call", "signature"]
    text: str = ""
    signature: str | None = None
    name: str = ""
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    call_id: str | None = None


def read_part(part: dict[str, Any]) -> Piece | None:
    """Classify an answer part; None for parts a text protocol cannot show
    (inline images, executable code)."""
    sig = part.get("thoughtSignature") or part.get("thought_signature") or None
    signature = str(sig) if sig else None
    call = part.get("functionCall")
    if isinstance(call, dict):
        args = call.get("args")
        return Piece(
            kind="call",
            name=str(call.get("name") or ""),
            args=args if isinstance(args, dict) else {},
            call_id=str(call["id"]) if call.get("id") else None,
            signature=signature,
        )
    if part.get("thought"):
        # Claude closes a thinking block with {"thought": true, "text": ""} and
        # {"thought": true, "thoughtSignature": ...} (UPSTREAM.md).
        return Piece(kind="thought", text=str(part.get("text") or ""), signature=signature)
    if "text" in part:
        return Piece(kind="text", text=str(part.get("text") or ""), signature=signature)
    if signature:
        return Piece(kind="signature", signature=signature)
    return None


class Thinking(msgspec.Struct, kw_only=True):
    text: str
    signature: str


class SignatureRecorder:
    """Remembers what the next request needs from one answer (one candidate).

    Gemini: the signature on a functionCall part, keyed by the call id.
    Claude: each thinking block's text by its signature, and the signature of
    the thinking that opened the turn keyed by the turn's first call id, so a
    later tool loop can start with that signed thinking again. Every stored
    signature is tagged with the family that issued it: a signature sent to
    the other family is "corrupted" upstream.
    """

    def __init__(self, store: SignatureStore, model_family: Family) -> None:
        self._store = store
        self._family = model_family
        self._thought: list[str] = []
        self.thinking: list[Thinking] = []  # completed, signed blocks in order
        self._calls = 0

    def thought(self, piece: Piece) -> Thinking | None:
        """Feed a thought piece; returns the block it completed, if any."""
        if piece.text:
            self._thought.append(piece.text)
        if not piece.signature:
            return None
        block = Thinking(text="".join(self._thought), signature=piece.signature)
        self._thought = []
        self._store.put_family(block.signature, self._family)
        if block.text:
            self._store.put_thinking(block.signature, block.text)
        self.thinking.append(block)
        return block

    def call(self, call_id: str, signature: str | None) -> None:
        self._calls += 1
        if signature:
            self._store.put_tool_call(call_id, signature)
            self._store.put_family(signature, self._family)
        if self._calls == 1 and self._family == "claude":
            opening = next((t for t in self.thinking if t.text), None)
            if opening is not None:
                self._store.put_text(call_id, CLAUDE_TURN_THINKING, opening.signature)


# ---------------------------------------------------------- restoring signatures


def signature_fits(store: SignatureStore, signature: str, model_family: Family) -> bool:
    """False when the store knows the signature came from the other family."""
    issued_by = store.family(signature)
    return issued_by is None or issued_by == model_family


def stored_call_signature(store: SignatureStore, call_id: str, model_family: Family) -> str | None:
    sig = store.tool_call(call_id)
    if sig and signature_fits(store, sig, model_family):
        return sig
    return None


def stored_turn_thinking(store: SignatureStore, first_call_id: str) -> dict[str, Any] | None:
    """The signed thought part that opened the Claude turn whose first call is
    ``first_call_id``, or None when the store no longer knows it."""
    sig = store.text(first_call_id, CLAUDE_TURN_THINKING)
    if not sig or not signature_fits(store, sig, "claude"):
        return None
    text = store.thinking(sig)
    if not text:
        return None
    return thought_part(text, sig)


def thought_part(text: str, signature: str) -> dict[str, Any]:
    return {"text": text, "thought": True, "thoughtSignature": signature}


class Finalized(msgspec.Struct, kw_only=True):
    contents: list[dict[str, Any]]
    thinking: bool
    notes: list[str] = msgspec.field(default_factory=list)


def current_turn_start(contents: list[dict[str, Any]]) -> int:
    """Index of the first content after the last user turn holding text: the
    upstream validates only from there ("everything since the last user
    text"). Tool results, and images riding next to them, do not count."""
    for i in range(len(contents) - 1, -1, -1):
        c = contents[i]
        if c["role"] == "user" and any("text" in p for p in c["parts"]):
            return i + 1
    return 0


def _is_signed_thought(part: dict[str, Any]) -> bool:
    return bool(part.get("thought") and part.get("text") and part.get("thoughtSignature"))


def strip_thoughts(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contents without any thought part (merged again: a turn that held
    only thoughts disappears)."""
    return common.merge_turns(
        {"role": c["role"], "parts": [p for p in c["parts"] if not p.get("thought")]} for c in contents
    )


def claude_thinking_allowed(contents: list[dict[str, Any]]) -> bool:
    """THE rule for Claude with thinking on (UPSTREAM.md §6.4), one home for
    every client protocol: the final assistant turn, when it made the tool
    calls the conversation is answering, must start with a signed thinking
    block ("a final `assistant` message must start with a thinking block
    (preceeding the lastmost set of `tool_use` and `tool_result` blocks)").
    Earlier turns are not checked: Anthropic ignores their thinking, and
    signed blocks the proxy issued go back unchanged wherever they are.
    False means thinking must be off for this request."""
    last = next((c for c in reversed(contents) if c["role"] == "model"), None)
    if last is None or not any("functionCall" in p for p in last["parts"]):
        return True
    return bool(last["parts"]) and _is_signed_thought(last["parts"][0])


def finalize_contents(contents: list[dict[str, Any]], *, model: str, thinking: bool) -> Finalized:
    """Make translated contents acceptable to the model family.

    - Consecutive same-role turns are merged, empty ones dropped.
    - Gemini: thought text is never sent back (the upstream does not need it;
      signatures ride on functionCall parts). In the current turn, the first
      functionCall of each model turn with no known signature gets
      SKIP_SIGNATURE instead of a 400 "missing a thought_signature".
    - Claude: a thought part goes back only with its text and signature.
      With thinking on, each model turn of the current tool loop must start
      with signed thinking ("Expected `thinking` ... found `tool_use`"); if one
      is unknown (proxy restarted, another client's history), thinking is
      turned off for this request rather than sending an unsigned turn. With
      thinking off, thought parts are dropped. A trailing assistant turn is
      dropped: the upstream refuses assistant prefill for Claude.
    """
    contents = common.merge_turns(contents)
    notes: list[str] = []
    if family(model) == "gemini":
        contents = strip_thoughts(contents)
        for c in contents[current_turn_start(contents) :]:
            if c["role"] != "model":
                continue
            first = next((p for p in c["parts"] if "functionCall" in p), None)
            if first is not None and not first.get("thoughtSignature"):
                first["thoughtSignature"] = SKIP_SIGNATURE
        return Finalized(contents=contents, thinking=thinking, notes=notes)

    for c in contents:
        c["parts"] = [p for p in c["parts"] if not p.get("thought") or _is_signed_thought(p)]
    contents = common.merge_turns(contents)
    while contents and contents[-1]["role"] == "model":
        contents.pop()
        notes.append("dropped a trailing assistant message: Claude models do not support assistant prefill")
    if thinking and not claude_thinking_allowed(contents):
        thinking = False
        notes.append(
            "thinking turned off for this request: the signed thinking of the last"
            " tool-call turn is unknown (the upstream refuses unsigned thinking)"
        )
    if not thinking:
        contents = strip_thoughts(contents)
    return Finalized(contents=contents, thinking=thinking, notes=notes)


def apply_claude_rules(request: dict[str, Any], notes: list[str]) -> None:
    """Anthropic's rules for extended thinking, enforced before the upstream
    answers 400: thinking cannot be combined with forced tool use, temperature
    or top_k changes, and needs top_p >= 0.95. A forced tool choice wins over
    thinking (the client asked for it explicitly); sampling knobs are dropped.
    """
    gen = request.get("generationConfig")
    if not isinstance(gen, dict):
        return
    tc = gen.get("thinkingConfig")
    if not tc or not tc.get("includeThoughts"):
        return
    mode = request.get("toolConfig", {}).get("functionCallingConfig", {}).get("mode")
    if mode == "ANY":
        del gen["thinkingConfig"]
        notes.append("thinking turned off: Claude models cannot think when a tool call is forced")
        return
    for key in ("temperature", "topK"):
        if gen.pop(key, None) is not None:
            notes.append(f"{key} dropped: Claude models do not accept it with thinking on")
    top_p = gen.get("topP")
    if isinstance(top_p, int | float) and top_p < _CLAUDE_MIN_TOP_P_WITH_THINKING:
        del gen["topP"]
        notes.append("topP dropped: Claude models need top_p >= 0.95 with thinking on")
