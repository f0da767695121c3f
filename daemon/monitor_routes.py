"""Admin API routes for the request monitor (``agctl logs``, ``agctl monitor``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.response import Stream

from daemon.admin import _svc
from daemon.errors import BadRequest, NotFound

_encode = msgspec.json.Encoder().encode


@get("/logs")
async def logs(
    request: Request[Any, Any, Any],
    n: int = 50,
    status: str | None = None,
    model: str | None = None,
    account: str | None = None,
    since: float | None = None,
) -> dict[str, Any]:
    if n < 1 or n > 10_000:
        raise BadRequest("n must be 1..10000")
    mon = _svc(request).monitor
    rows = await asyncio.to_thread(mon.query, limit=n, status=status, model=model, account=account, since=since)
    for r in rows:
        r.pop("request_body", None)
        r.pop("response_body", None)
    return {"rows": rows, "dropped": mon.dropped}


@get("/logs/follow")
async def logs_follow(request: Request[Any, Any, Any]) -> Stream:
    mon = _svc(request).monitor

    async def gen() -> AsyncIterator[bytes]:
        q = mon.subscribe()
        try:
            yield b'{"following": true}\n'
            while True:
                try:
                    row = await asyncio.wait_for(q.get(), timeout=15)
                except asyncio.TimeoutError:
                    yield b'{"keepalive": true}\n'
                    continue
                yield _encode(row) + b"\n"
        finally:
            mon.unsubscribe(q)

    return Stream(gen(), media_type="application/x-ndjson")


@get("/logs/{request_id:str}")
async def log_show(request: Request[Any, Any, Any], request_id: str) -> dict[str, Any]:
    mon = _svc(request).monitor
    rows = await asyncio.to_thread(mon.query, limit=1, request_id=request_id)
    if not rows:
        raise NotFound(f"no logged request {request_id!r} (monitor on? retention?)")
    return {"row": rows[0]}


@post("/monitor/{switch:str}", status_code=200)
async def monitor_toggle(request: Request[Any, Any, Any], switch: str) -> dict[str, Any]:
    if switch not in ("on", "off"):
        raise BadRequest("use `agctl monitor on` or `agctl monitor off`")
    svc = _svc(request)
    svc.set_config("monitor.enabled", "true" if switch == "on" else "false")
    return {"enabled": svc.config.monitor.enabled, "at": time.time()}


handlers = [logs, logs_follow, log_show, monitor_toggle]
