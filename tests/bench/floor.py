"""The floor: the least a proxy on this stack can cost, measured beside the daemon.

    python tests/bench/floor.py MODE PORT UPSTREAM

MODE ``asgi``: a bare ASGI app on uvicorn (httptools, uvloop) that reads the
OpenAI chat body, builds the v1internal envelope, POSTs it with the daemon's
own upstream client (``daemon.upstream.http``, default settings), and answers an
OpenAI chat completion — no auth, accounts, failover, monitor, metrics or
disconnect handling. MODE ``litestar``: the same work as one Litestar route.

run.py starts both next to the daemon and reports their req/s and CPU per
request: what uvicorn + the upstream client alone cost, and what Litestar's
routing adds, on this machine, in the same run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, post

from daemon.config import Config
from daemon.upstream.http import HttpClient

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_client: HttpClient | None = None
TOKEN = "ya29.bench-access-token"


def lane() -> HttpClient:
    global _client
    if _client is None:
        _client = HttpClient(Config())
    return _client


async def proxy_once(upstream: str, raw: bytes) -> bytes:
    body = _decode(raw)
    contents = [
        {"role": "user", "parts": [{"text": m["content"]}]} for m in body["messages"] if m["role"] != "system"
    ]
    request = {
        "contents": contents,
        "generationConfig": {
            "maxOutputTokens": body.get("max_tokens"),
            "temperature": body.get("temperature"),
        },
    }
    envelope = _encode(
        {
            "project": "bench-project",
            "model": body["model"],
            "requestId": "agent/floor",
            "userAgent": "antigravity",
            "requestType": "agent",
            "request": request,
        }
    )
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    reply = await lane().post(upstream + "/v1internal:generateContent", envelope, headers)
    data = _decode(reply.content)
    cand = data["response"]["candidates"][0]
    text = "".join(p.get("text", "") for p in cand["content"]["parts"])
    return _encode(
        {
            "id": "chatcmpl-floor",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def asgi_app(upstream: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                done = message["type"] == "lifespan.shutdown"
                await send({"type": message["type"] + ".complete"})
                if done:
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        out = await proxy_once(upstream, b"".join(chunks))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app


def litestar_app(upstream: str) -> Any:
    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[bytes]:
        out = await proxy_once(upstream, await request.body())
        return Response(content=out, media_type="application/json")

    return Litestar([chat], openapi_config=None, logging_config=None)


def main() -> None:
    mode, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3].rstrip("/")
    app = asgi_app(upstream) if mode == "asgi" else litestar_app(upstream)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        http="httptools",
        loop="uvloop",
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
