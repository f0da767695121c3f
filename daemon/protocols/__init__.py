"""Pure translation between client protocols and Gemini.

Modules: ``common`` (shared pieces: schema cleaning, finish reasons, usage,
SSE framing, parts), ``signatures`` (the thought-signature store),
``openai_chat``, ``openai_responses``, ``anthropic``, ``gemini``.

Every client protocol module exposes the same three things (no I/O; the only
state they touch is the injected SignatureStore):

    to_gemini(body: dict, *, model: str, store: SignatureStore) -> GeminiCall
        body is the client's decoded JSON request, model the UPSTREAM model id
        (already resolved). Raises daemon.errors.BadRequest naming the field.
    from_gemini(resp: dict, *, call: GeminiCall, store) -> dict
        resp is an unwrapped GenerateContentResponse (non-stream).
    StreamTranslator(call: GeminiCall, store)
        .start() -> bytes            what to send before the first chunk
        .feed(chunk: dict) -> bytes  one unwrapped upstream stream chunk in,
                                     SSE bytes for the client out (maybe b"")
        .finish() -> bytes           end of stream (final events, [DONE])
        .fail(err: GatewayError) -> bytes   an error after the first byte
        .keepalive() -> bytes        while the upstream is silent (b"" if none)
"""

from __future__ import annotations

from typing import Any

import msgspec


class GeminiCall(msgspec.Struct, kw_only=True):
    """A translated request plus what the answer's translation needs."""

    request: dict[str, Any]  # a Gemini GenerateContentRequest (no envelope)
    client_model: str  # the model name the client asked for (echoed back)
    model: str  # the upstream model id
    stream: bool = False
    session_key: str | None = None  # sticky-session / signature key
    thinking: bool = False  # thinking was requested
    extra: dict[str, Any] = msgspec.field(default_factory=dict)  # protocol-specific
