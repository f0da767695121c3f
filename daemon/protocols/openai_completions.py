"""OpenAI legacy Completions (``/v1/completions``) <-> Gemini.

The prompt becomes one user turn; the answer is a ``text_completion`` (the
same object shape streamed, then ``data: [DONE]``). Thinking text is never
part of ``text``. ``echo``, ``suffix`` and ``best_of`` are ignored;
``logprobs`` (any count) is a 400: the upstream has none to give.
``call.extra``: reads ``id``, ``created``; writes ``include_usage``.
"""

from __future__ import annotations

from typing import Any

from daemon.errors import BadRequest, GatewayError
from daemon.protocols import GeminiCall, common
from daemon.protocols.openai_chat import (
    DONE,
    KEEPALIVE,
    answer_id,
    new_timestamp,
    openai_error,
    openai_finish,
    refuse_logprobs,
    require_object,
    sampling_config,
    usage_object,
)
from daemon.protocols.signatures import SignatureStore


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string (or a list holding one string)", param="prompt")
    if not prompt:
        raise BadRequest("prompt must not be empty", param="prompt")
    return prompt


def to_gemini(body: dict[str, Any], *, model: str, store: SignatureStore) -> GeminiCall:
    body = require_object(body)
    refuse_logprobs(body, flag="logprobs", top=None)
    prompt = _prompt(body)
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    gen = sampling_config(body, max_tokens_keys=("max_tokens",))
    if gen:
        request["generationConfig"] = gen
    options = body.get("stream_options")
    return GeminiCall(
        request=request,
        client_model=str(body.get("model") or model),
        model=model,
        stream=bool(body.get("stream")),
        session_key=common.text_hash(prompt),
        extra={"include_usage": bool(isinstance(options, dict) and options.get("include_usage"))},
    )


def _answer_text(cand: dict[str, Any]) -> str:
    parts = (cand.get("content") or {}).get("parts") or []
    return "".join(common.iter_text((p for p in parts if isinstance(p, dict)), thought=False))


def _finish(gemini_reason: str | None) -> str:
    reason = openai_finish(gemini_reason, had_tool_calls=False)
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def _candidates(resp: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    cands = [c for c in resp.get("candidates") or [] if isinstance(c, dict)]
    return [(c["index"] if isinstance(c.get("index"), int) else i, c) for i, c in enumerate(cands)]


def _object(call: GeminiCall, rid: str, created: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": call.client_model,
        "choices": choices,
    }


def from_gemini(resp: dict[str, Any], *, call: GeminiCall, store: SignatureStore) -> dict[str, Any]:
    choices = [
        {
            "text": _answer_text(c),
            "index": i,
            "logprobs": None,
            "finish_reason": _finish(c.get("finishReason")),
        }
        for i, c in _candidates(resp)
    ]
    if not choices:  # the prompt itself was blocked
        reason = "content_filter" if common.prompt_blocked(resp) else "stop"
        choices = [{"text": "", "index": 0, "logprobs": None, "finish_reason": reason}]
    out = _object(call, answer_id(call, "cmpl-"), new_timestamp(call), choices)
    out["usage"] = usage_object(resp.get("usageMetadata"))
    return out


class StreamTranslator:
    def __init__(self, call: GeminiCall, store: SignatureStore) -> None:
        self._call = call
        self._id = answer_id(call, "cmpl-")
        self._created = new_timestamp(call)
        self._finish: dict[int, str | None] = {}
        self._usage: dict[str, Any] | None = None
        self._blocked = False

    def _chunk(self, index: int, text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
        return common.sse_json(_object(self._call, self._id, self._created, [choice]))

    def start(self) -> bytes:
        return b""  # legacy completions have no role preamble

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if chunk.get("usageMetadata"):
            self._usage = chunk["usageMetadata"]
        if common.prompt_blocked(chunk):
            self._blocked = True
        out = []
        for index, cand in _candidates(chunk):
            self._finish.setdefault(index, None)
            if cand.get("finishReason"):
                self._finish[index] = str(cand["finishReason"])
            text = _answer_text(cand)
            if text:
                out.append(self._chunk(index, text, None))
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._finish:
            self._finish[0] = "SAFETY" if self._blocked else None
        out = [self._chunk(i, "", _finish(reason)) for i, reason in sorted(self._finish.items())]
        if self._call.extra.get("include_usage"):
            usage = _object(self._call, self._id, self._created, [])
            usage["usage"] = usage_object(self._usage)
            out.append(common.sse_json(usage))
        out.append(DONE)
        return b"".join(out)

    def fail(self, err: GatewayError) -> bytes:
        return common.sse_json({"error": openai_error(err)}) + DONE

    def keepalive(self) -> bytes:
        return KEEPALIVE
