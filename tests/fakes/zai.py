"""A fake z.ai: an Anthropic-compatible Messages API on loopback, for tests.

Like :mod:`tests.fakes.google` it is a real HTTP server (uvicorn, a raw ASGI
app) in a daemon thread with its own event loop::

    from tests.fakes.zai import FakeZai, ZaiReply

    with FakeZai(api_key="zai-key") as z:
        z.script([ZaiReply.error(500)])
        ...  # point the daemon's [zai] base_url at z.base_url
        assert z.requests[-1].body["model"] == "glm-4.7"

Facts it follows (UPSTREAM.md, "z.ai"):

Routes
    ``POST {base}/v1/messages`` (JSON or, with ``"stream": true``, an SSE
    stream) and ``POST {base}/v1/messages/count_tokens``; anything else 404.
Authentication
    ``x-api-key`` must equal ``api_key``, else 401 with Anthropic's error
    shape ``{"type": "error", "error": {"type": "authentication_error", ...}}``.
Models
    Only ``glm-*`` models exist; anything else is a 400 invalid_request_error
    (a proxy that forgot to map the model fails loudly).
Answers
    Anthropic Messages JSON: ``{"id": "msg_zai_…", "type": "message", "role":
    "assistant", "model", "content": [{"type": "text", "text"}], "stop_reason":
    "end_turn", "stop_sequence": null, "usage": {input_tokens, output_tokens,
    cache_read_input_tokens}}``. Streams are Anthropic's event sequence:
    message_start, content_block_start, ping, text_delta chunks,
    content_block_stop, message_delta, message_stop — each event sent as its
    own body message; the exact bytes of every stream are kept in
    ``Request.streamed`` so tests can compare them byte for byte.
    ``input_tokens`` is :func:`count_tokens` of the request body (also what
    count_tokens answers): ``ceil(len(compact sorted JSON of system, messages,
    tools) / 4)``.
Errors
    ``ZaiReply.error(status, message, retry_after=...)`` answers Anthropic's
    error shape with the matching ``error.type`` (400 invalid_request_error,
    401 authentication_error, 429 rate_limit_error, 500 api_error, 529
    overloaded_error) and an optional ``retry-after`` header.

Records: ``requests`` (every request, with path, headers, decoded body and
the status answered). :meth:`reset` clears records and scripts.
"""

from __future__ import annotations

import math
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn

__all__ = ["FakeZai", "Request", "ZaiReply", "count_tokens"]

_JSON = msgspec.json.Encoder()
_JSON_SORTED = msgspec.json.Encoder(order="sorted")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def count_tokens(body: dict[str, Any]) -> int:
    """The fake's deterministic count of an Anthropic request's input."""
    counted = {k: body[k] for k in ("system", "messages", "tools") if k in body}
    return math.ceil(len(_JSON_SORTED.encode(counted)) / 4)


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + _JSON.encode(event) + b"\n\n"


@dataclass
class ZaiReply:
    """One scripted answer to a /v1/messages call."""

    text: str | None = None  # None: "Hello from <model> (z.ai)"
    chunks: int = 3
    status: int = 200
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def answer(cls, text: str, chunks: int = 3) -> ZaiReply:
        return cls(text=text, chunks=chunks)

    @classmethod
    def error(cls, status: int, message: str | None = None, retry_after: float | None = None) -> ZaiReply:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, message=message or f"fake z.ai error {status}", headers=headers)


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any = None
    status: int | None = None
    streamed: bytes = b""


def _error_body(status: int, message: str) -> bytes:
    typ = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _JSON.encode({"type": "error", "error": {"type": typ, "message": message}})


def _split(text: str, pieces: int) -> list[str]:
    pieces = max(1, min(pieces, len(text) or 1))
    size = math.ceil(len(text) / pieces) if text else 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeZai:
    def __init__(self, *, api_key: str = "zai-test-key-0123") -> None:
        self.api_key = api_key
        self.requests: list[Request] = []
        self._scripts: deque[ZaiReply] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeZai:
        if self._server is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self._port,
            log_config=None,
            log_level=None,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-zai-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake z.ai server did not start")
            time.sleep(0.002)
        self._sock = sock
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeZai:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What ``zai.base_url`` points at (like ``https://api.z.ai/api/anthropic``)."""
        if self._port is None:
            raise RuntimeError("FakeZai is not started")
        return f"http://127.0.0.1:{self._port}/api/anthropic"

    # ----------------------------------------------------------------- knobs

    def script(self, replies: Iterable[ZaiReply]) -> None:
        with self._lock:
            self._scripts.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
        self.requests = []

    def messages_calls(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/v1/messages")]

    def _next(self) -> ZaiReply:
        with self._lock:
            return self._scripts.popleft() if self._scripts else ZaiReply()

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        req = Request(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
        )
        self.requests.append(req)
        try:
            req.body = msgspec.json.decode(body) if body else None
        except msgspec.DecodeError:
            req.body = None
        prefix = "/api/anthropic"
        path = req.path[len(prefix) :] if req.path.startswith(prefix) else None
        if req.method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            await self._send(send, req, 404, _error_body(404, f"no route {req.method} {req.path}"))
            return
        if headers.get("x-api-key") != self.api_key:
            await self._send(send, req, 401, _error_body(401, "invalid x-api-key"))
            return
        data = req.body
        if not isinstance(data, dict):
            await self._send(send, req, 400, _error_body(400, "body must be a JSON object"))
            return
        model = data.get("model")
        if not isinstance(model, str) or not model.startswith("glm-"):
            await self._send(send, req, 400, _error_body(400, f"unknown model {model!r}"))
            return
        if path == "/v1/messages/count_tokens":
            await self._send(send, req, 200, _JSON.encode({"input_tokens": count_tokens(data)}))
            return
        reply = self._next()
        if reply.status != 200:
            await self._send(send, req, reply.status, _error_body(reply.status, reply.message), reply.headers)
            return
        text = reply.text if reply.text is not None else f"Hello from {model} (z.ai)"
        msg_id = "msg_zai_" + secrets.token_hex(8)
        usage = {
            "input_tokens": count_tokens(data),
            "output_tokens": math.ceil(len(text) / 4),
            "cache_read_input_tokens": 0,
        }
        if data.get("stream") is True:
            await self._stream(send, req, model, msg_id, text, reply.chunks, usage)
            return
        message = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        await self._send(send, req, 200, _JSON.encode(message))

    async def _send(
        self, send: Any, req: Request, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        req.status = status
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self, send: Any, req: Request, model: str, msg_id: str, text: str, chunks: int, usage: dict[str, int]
    ) -> None:
        req.status = 200
        start_usage = {**usage, "output_tokens": 1}
        events: list[dict[str, Any]] = [
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "ping"},
            *(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                for piece in _split(text, chunks)
            ),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            {"type": "message_stop"},
        ]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for ev in events:
            chunk = sse(ev)
            req.streamed += chunk
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
