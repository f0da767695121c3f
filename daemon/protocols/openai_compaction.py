"""Codex's remote compaction over the Responses API <-> Gemini (issue 24).

Facts relied on (checked against the published sources, late 2026):

- Codex turns remote compaction on when its provider is named "OpenAI"
  (``remote_compaction_v2``). It then sends an ordinary ``POST /v1/responses``
  (streamed, with its usual instructions and tools) whose ``input`` is the
  history followed by ``{"type": "compaction_trigger"}`` (codex-rs
  ``core/src/compact_remote_v2*.rs``: ``input.push(ResponseItem::
  CompactionTrigger {})``). It counts the ``response.output_item.done``
  events, needs exactly one whose item is a compaction item, and needs
  ``response.completed``; else "remote compaction v2 expected exactly one
  compaction output item, got N from M output items" (fatal, the session
  ends) or "stream closed before response.completed".
- The item is ``{"type": "compaction", "encrypted_content": str}`` with an
  optional ``id`` and ``created_by`` (OpenAI's ``ResponseCompactionItem``;
  codex-rs ``protocol/src/models.rs`` ``ResponseItem::Compaction``, which also
  reads the type name ``compaction_summary``). Codex keeps it opaque: its
  next history is the recent user messages plus that item, sent back in
  ``input`` on every later turn (``build_v2_compacted_history``).
- ``POST /v1/responses/compact`` (Codex's older remote compaction; OpenAI's
  "Compact a response"): a whole JSON answer ``{"id", "object":
  "response.compaction", "created_at", "output", "usage"}`` whose ``output``
  is "a list of all user messages, followed by a single compaction item"
  (OpenAI API reference, ``CompactedResponse``); Codex reads only ``output``
  and uses it as the new history (codex-rs ``codex-api/src/endpoint/
  compact.rs``, ``CompactHistoryResponse { output }``).
- While a summary is being written OpenAI streams
  ``response.compaction.compacting`` (``item_id``, ``output_index``; no
  content), after ``response.output_item.added``.

What the gateway does: the model is asked for a summary of the conversation
(``SUMMARY_INSTRUCTION`` as a last user turn, tools present but not
callable) and the text it writes is sealed (``seal``, from
``daemon.compaction``) into the item's ``encrypted_content``; a later turn
opens it again (``openai_responses`` with ``unseal``) as a user turn saying
it is the summary of the earlier turns. No I/O here: sealing is a callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.errors import BadRequest, GatewayError, UpstreamError
from daemon.protocols import GeminiCall, common, openai_responses, shared_extra
from daemon.protocols.openai_chat import KEEPALIVE, answer_id, new_timestamp
from daemon.protocols.openai_responses import Unseal
from daemon.protocols.signatures import SignatureStore

#: Seals a summary into an opaque ``encrypted_content`` (``daemon.compaction.Sealer.seal``).
Seal = Callable[[str], str]

TRIGGER = "compaction_trigger"

SUMMARY_INSTRUCTION = (
    "Stop here for a context checkpoint. The conversation above is about to be replaced by a "
    "summary, and the work will go on from that summary alone (plus the user's latest messages). "
    "Write that summary now, for the assistant who will carry on. Include:\n"
    "1. The user's goal and every requirement, preference or constraint they stated.\n"
    "2. What has been done so far and what was decided, with the reasons.\n"
    "3. The current state: files read or changed, commands run and their results, errors "
    "still open, with exact names, paths, values and identifiers.\n"
    "4. What remains to be done, in order, and anything to watch out for.\n"
    "Be complete but brief; use short headed sections or lists. Do not call tools, do not "
    "go on with the task and do not speak to the user: reply with the summary only."
)

# Request fields that would shape the summary wrongly: a JSON output format,
# an output cap meant for an ordinary turn, a forced tool.
_DROPPED = ("text", "max_output_tokens", "tool_choice", "stream")


def is_compaction_request(body: dict[str, Any]) -> bool:
    """Does this /v1/responses body end with a compaction trigger?"""
    value = body.get("input")
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[-1], dict)
        and value[-1].get("type") == TRIGGER
    )


def to_gemini(
    body: dict[str, Any],
    *,
    model: str,
    store: SignatureStore,
    history: list[dict[str, Any]] | None = None,
    unseal: Unseal | None = None,
    stream: bool = False,
) -> GeminiCall:
    """The upstream request that asks for the summary: the conversation as an
    ordinary turn would send it, then ``SUMMARY_INSTRUCTION`` as a user turn;
    tools stay declared (Claude needs the declarations of calls in the
    history) but calling them is off."""
    items = [it for it in openai_responses.input_items(body) if not _is_trigger(it)]
    if not items and not history:
        raise BadRequest("there is nothing to compact: input holds no turns", param="input")
    ask = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": SUMMARY_INSTRUCTION}],
    }
    inner = {k: v for k, v in body.items() if k not in _DROPPED}
    inner["input"] = [*items, ask]
    call = openai_responses.to_gemini(inner, model=model, store=store, history=history, unseal=unseal)
    if "tools" in call.request:
        call.request["toolConfig"] = {"functionCallingConfig": {"mode": "NONE"}}
    call.stream = stream
    call.extra["compaction"] = True
    return call


def _is_trigger(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == TRIGGER


class _Summary:
    """Collects the summary text (thoughts and stray tool calls are left out)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage_meta: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.blocked = False

    def feed(self, chunk: dict[str, Any]) -> bool:
        """True when this chunk brought summary text."""
        if chunk.get("usageMetadata"):
            self.usage_meta = chunk["usageMetadata"]
        if common.prompt_blocked(chunk):
            self.blocked = True
        cand = common.candidate(chunk)
        if cand.get("finishReason"):
            self.finish_reason = str(cand["finishReason"])
        got = False
        for part in common.parts_of(chunk):
            piece = shared_extra.read_part(part)
            if piece is not None and piece.kind == "text" and piece.text:
                self.parts.append(piece.text)
                got = True
        return got

    def text(self) -> str:
        text = "".join(self.parts).strip()
        if not text:
            why = "it was blocked" if self.blocked else f"finish reason {self.finish_reason or 'none'}"
            raise UpstreamError(
                f"the model wrote no summary for the compaction ({why}); try again, or start a "
                "new conversation"
            )
        return text


def _item(response_id: str, blob: str) -> dict[str, Any]:
    return {
        "id": "cmp_" + shared_extra.derived_hex(response_id, "compaction", 40),
        "type": "compaction",
        "encrypted_content": blob,
    }


def from_gemini(
    resp: dict[str, Any], *, call: GeminiCall, store: SignatureStore, seal: Seal
) -> dict[str, Any]:
    """A whole /v1/responses answer to a compaction request: a response whose
    output is the one compaction item."""
    summary = _Summary()
    summary.feed(resp)
    asm = openai_responses.Assembler(call, store)
    item = _item(asm.id, seal(summary.text()))
    return asm.response("completed", output=[item], usage=openai_responses.usage(summary.usage_meta))


def compacted(
    resp: dict[str, Any],
    *,
    call: GeminiCall,
    seal: Seal,
    inputs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The /v1/responses/compact answer: every user message of ``inputs``
    (as sent), then the one compaction item."""
    summary = _Summary()
    summary.feed(resp)
    response_id = answer_id(call, "resp_")
    item = _item(response_id, seal(summary.text()))
    kept = [_user_message(it) for it in inputs if _is_user_message(it)]
    return {
        "id": response_id,
        "object": "response.compaction",
        "created_at": new_timestamp(call),
        "output": [*kept, item],
        "usage": openai_responses.usage(summary.usage_meta),
    }


def _is_user_message(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role") == "user"


def _user_message(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return {"type": "message", "role": "user", "content": content}


class StreamTranslator(openai_responses.EventStream):
    """Upstream chunks -> the Responses events of a compaction: created,
    in_progress; at the first summary text ``output_item.added`` (the item,
    its content still empty) and ``response.compaction.compacting``; at the
    end ``output_item.done`` with the sealed item and ``response.completed``."""

    def __init__(self, call: GeminiCall, store: SignatureStore, seal: Seal) -> None:
        super().__init__(openai_responses.Assembler(call, store))
        self._seal = seal
        self._summary = _Summary()
        self._item = _item(self._asm.id, "")
        self._added = False
        self.response: dict[str, Any] | None = None

    @property
    def result(self) -> dict[str, Any] | None:
        return self.response

    def _emit(self, kind: str, **fields: Any) -> None:
        self._asm.emit(kind, **fields)

    def _add(self) -> None:
        if not self._added:
            self._added = True
            self._emit("response.output_item.added", output_index=0, item=dict(self._item))
            self._emit("response.compaction.compacting", item_id=self._item["id"], output_index=0)

    def start(self) -> bytes:
        self._begin()
        return self._drain()

    def feed(self, chunk: dict[str, Any]) -> bytes:
        self._begin()
        if self._summary.feed(chunk):
            self._add()
        return self._drain()

    def finish(self) -> bytes:
        self._begin()
        item = {**self._item, "encrypted_content": self._seal(self._summary.text())}
        self._add()
        self._emit("response.output_item.done", output_index=0, item=item)
        resp = self._asm.response(
            "completed", output=[item], usage=openai_responses.usage(self._summary.usage_meta)
        )
        self._emit("response.completed", response=resp)
        self.response = resp
        return self._drain()

    def fail(self, err: GatewayError) -> bytes:
        self._begin()
        self._asm.usage_meta = self._summary.usage_meta
        self.response = self._asm.fail(err)
        return self._drain()

    def keepalive(self) -> bytes:
        return KEEPALIVE
