"""A cheap fake Google for the benchmark: pre-encoded answers on a bare asyncio server.

Why not ``tests/fakes/google.py``: that fake validates every request the way
Google does (JSON decode, field checks, signatures) and runs on uvicorn; on
these 2-core machines a Python fake like it caps the harness near 450 req/s
(PERFORMANCE.md, "two traps"), far below what the proxy itself can do. This
one parses only the request line and the headers it needs, never decodes a
body, and answers from bytes built once at start, in one write, TCP_NODELAY.

It speaks just enough for the daemon and LiteLLM:

* ``POST /token`` (OAuth refresh), ``GET /oauth2/v2/userinfo``;
* ``POST /v1internal:loadCodeAssist | fetchAvailableModels | generateContent |
  streamGenerateContent?alt=sse`` (answers wrapped in ``{"response": ...}``);
* ``POST /v1beta/models/{m}:generateContent | :streamGenerateContent?alt=sse``
  (the public Gemini API: bare answers, events end with CRLF CRLF as Google's);
* ``POST /_bench/stream`` ``{"chunks", "delay", "stamp"}`` sets the shape of
  the streams that follow; ``GET /_bench/stats`` counts requests and open streams.

Streams send event ``i`` at ``start + i * delay`` (an absolute schedule, so
the spacing does not drift with load). With ``stamp`` each event's text
starts with ``<N>``, N the fake's ``time.monotonic_ns()`` at the write
(CLOCK_MONOTONIC, the same clock in every process of the machine): a client
that reads the stamp knows each chunk's one-way delay, direct or proxied.

Run: ``python tests/bench/fakeserver.py --port P``; prints ``READY <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import time
from typing import Any

MODEL = "gemini-3-flash"
PROJECT = "bench-project"
EMAIL = "bench@example.com"
ACCESS_TOKEN = "ya29.bench-access-token"

# ~200 tokens (~4 characters a token) of answer text.
ANSWER_WORDS = 200
ANSWER = " ".join(f"word{i % 10}" for i in range(ANSWER_WORDS)) + "."
USAGE = {"promptTokenCount": 260, "candidatesTokenCount": 200, "totalTokenCount": 460}
# Headers are never read past this: a request whose head is bigger is refused.
MAX_HEAD = 64 * 1024


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(text: str, finish: str | None, usage: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [cand], "modelVersion": MODEL, "responseId": "bench-1"}
    if usage:
        out["usageMetadata"] = USAGE
    return out


def _http(status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 400: b"Bad Request"}.get(status, b"X")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
        % (status, reason, ctype, len(body))
        + body
    )


def _fetch_models() -> bytes:
    return _dumps(
        {
            "models": {
                MODEL: {
                    "displayName": "Gemini 3 Flash",
                    "maxTokens": 1048576,
                    "maxOutputTokens": 65536,
                    "supportsThinking": True,
                    "supportsImages": True,
                    "quotaInfo": {"remainingFraction": 1.0, "resetTime": "2099-01-01T00:00:00Z"},
                }
            }
        }
    )


# Everything answered whole, built once.
TOKEN = _http(200, _dumps({"access_token": ACCESS_TOKEN, "expires_in": 86400, "token_type": "Bearer"}))
USERINFO = _http(200, _dumps({"id": "1", "email": EMAIL, "verified_email": True, "name": "Bench"}))
LOAD = _http(
    200,
    _dumps(
        {
            "currentTier": {"id": "standard-tier", "name": "Gemini Code Assist"},
            "paidTier": {"id": "g1-pro-tier", "name": "Google AI Pro"},
            "cloudaicompanionProject": PROJECT,
        }
    ),
)
MODELS = _http(200, _fetch_models())
GEN_V1 = _http(200, _dumps({"response": _response(ANSWER, "STOP", True), "traceId": "bench"}))
GEN_PUBLIC = _http(200, _dumps(_response(ANSWER, "STOP", True)))
NOT_FOUND = _http(
    404,
    _dumps(
        {
            "error": {
                "code": 404,
                "message": "Requested entity was not found.",
                "status": "NOT_FOUND",
            }
        }
    ),
)
BAD = _http(400, _dumps({"error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}}))
OK = _http(200, b"{}")
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class StreamShape:
    def __init__(self) -> None:
        self.set(chunks=20, delay=0.0, stamp=False)

    def set(self, *, chunks: int, delay: float, stamp: bool) -> None:
        self.chunks = max(1, int(chunks))
        self.delay = max(0.0, float(delay))
        self.stamp = bool(stamp)
        # Unstamped events are fixed bytes; built once per shape.
        words = ANSWER.split(" ")
        per = max(1, len(words) // self.chunks)
        self.texts = [
            " ".join(words[i * per : (i + 1) * per]) + " "
            if i < self.chunks - 1
            else " ".join(words[i * per :])
            for i in range(self.chunks)
        ]
        self.pre = {
            public: [self._event(i, self.texts[i], public) for i in range(self.chunks)]
            for public in (False, True)
        }

    def _event(self, i: int, text: str, public: bool) -> bytes:
        last = i == self.chunks - 1
        resp = _response(text, "STOP" if last else None, last)
        if public:
            data = b"data: " + _dumps(resp) + b"\r\n\r\n"
        else:
            data = b"data: " + _dumps({"response": resp, "traceId": "bench"}) + b"\n\n"
        return b"%x\r\n%s\r\n" % (len(data), data)

    def event(self, i: int, public: bool) -> bytes:
        if not self.stamp:
            return self.pre[public][i]
        return self._event(i, f"<{time.monotonic_ns()}>{self.texts[i]}", public)


class Stats:
    requests = 0
    streams_open = 0
    streams_done = 0


SHAPE = StreamShape()
STATS = Stats()


class FakeProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.streaming: asyncio.Task[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.streaming is not None:
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        # A stream in progress owns the connection; clients do not pipeline.
        while self.streaming is None and not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._write(BAD, close=True)
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, _ = lines[0].split(" ", 2)
            except ValueError:
                self._write(BAD, close=True)
                return
            length = 0
            chunked = close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            start = end + 4
            if chunked:
                body = self._dechunk(start)
                if body is None:
                    return  # wait for more
                body_bytes, used = body
                del self.buf[:used]
            else:
                if len(self.buf) < start + length:
                    return
                body_bytes = bytes(self.buf[start : start + length])
                del self.buf[: start + length]
            STATS.requests += 1
            self._route(method, target, body_bytes, close)

    def _dechunk(self, pos: int) -> tuple[bytes, int] | None:
        out = bytearray()
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                # no trailers from our clients: the final CRLF
                if len(buf) < pos + 2:
                    return None
                return bytes(out), pos + 2
            if len(buf) < pos + size + 2:
                return None
            out += buf[pos : pos + size]
            pos += size + 2

    def _write(self, data: bytes, close: bool = False) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
            if close:
                self.transport.close()

    def _route(self, method: str, target: str, body: bytes, close: bool) -> None:
        path, _, query = target.partition("?")
        if path.startswith("/v1internal:"):
            rpc = path[len("/v1internal:") :]
            if rpc == "generateContent":
                self._write(GEN_V1, close)
            elif rpc == "streamGenerateContent":
                self._stream(public=False, close=close)
            elif rpc == "loadCodeAssist":
                self._write(LOAD, close)
            elif rpc == "fetchAvailableModels":
                self._write(MODELS, close)
            else:
                self._write(NOT_FOUND, close)
        elif path.startswith("/v1beta/models/"):
            if path.endswith(":generateContent"):
                self._write(GEN_PUBLIC, close)
            elif path.endswith(":streamGenerateContent"):
                self._stream(public=True, close=close)
            else:
                self._write(NOT_FOUND, close)
        elif path == "/token":
            self._write(TOKEN, close)
        elif path == "/oauth2/v2/userinfo":
            self._write(USERINFO, close)
        elif path == "/_bench/stream":
            spec = json.loads(body or b"{}")
            SHAPE.set(
                chunks=spec.get("chunks", 20),
                delay=spec.get("delay", 0.0),
                stamp=spec.get("stamp", False),
            )
            self._write(OK, close)
        elif path == "/_bench/stats":
            stats = {
                "requests": STATS.requests,
                "streams_open": STATS.streams_open,
                "streams_done": STATS.streams_done,
            }
            self._write(_http(200, _dumps(stats)), close)
        else:
            self._write(NOT_FOUND, close)

    def _stream(self, *, public: bool, close: bool) -> None:
        self.streaming = asyncio.get_running_loop().create_task(self._send_stream(public, close))

    async def _send_stream(self, public: bool, close: bool) -> None:
        loop = asyncio.get_running_loop()
        shape = SHAPE  # a shape change applies to streams started after it
        chunks, delay = shape.chunks, shape.delay
        STATS.streams_open += 1
        try:
            start = loop.time()
            self._write(STREAM_HEAD + shape.event(0, public))
            for i in range(1, chunks):
                wait = start + i * delay - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.closed:
                    return
                self._write(shape.event(i, public))
            self._write(b"0\r\n\r\n", close)
            STATS.streams_done += 1
        finally:
            STATS.streams_open -= 1
            self.streaming = None
            if self.buf and not self.closed:
                self.data_received(b"")  # a request that came in behind the stream


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeProtocol, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("the benchmark fake serves on loopback only")
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
