"""Admin API routes for the request monitor (``agctl logs``, ``agctl stats``,
``agctl monitor``). Reads run in a worker thread: SQLite never blocks the
event loop that serves the proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.response import Stream

from daemon.admin.common import _svc
from daemon.errors import BadRequest, NotFound
from daemon.monitor import STATS_BY, parse_since, row_matches, status_clause

_encode = msgspec.json.Encoder().encode
# A line every so often keeps a quiet follow stream from looking dead (and
# lets the server notice a follower that went away).
FOLLOW_KEEPALIVE = 15.0
MAX_ROWS_PER_CALL = 10_000


def _check_status(status: str | None) -> None:
    if status:
        try:
            status_clause(status)
        except ValueError as exc:
            raise BadRequest(str(exc), param="status") from None


@get("/logs")
async def logs(
    request: Request[Any, Any, Any],
    n: int = 50,
    status: str | None = None,
    model: str | None = None,
    account: str | None = None,
    since: str | None = None,
) -> dict[str, Any]:
    if n < 1 or n > MAX_ROWS_PER_CALL:
        raise BadRequest(f"n must be 1..{MAX_ROWS_PER_CALL}", param="n")
    _check_status(status)
    try:
        since_ts = parse_since(since) if since else None
    except ValueError as exc:
        raise BadRequest(str(exc), param="since") from None
    mon = _svc(request).monitor
    rows = await asyncio.to_thread(
        mon.query, limit=n, status=status, model=model, account=account, since=since_ts
    )
    return {"rows": rows, "dropped": mon.dropped, "enabled": mon.enabled}


@get("/logs/follow")
async def logs_follow(
    request: Request[Any, Any, Any],
    status: str | None = None,
    model: str | None = None,
    account: str | None = None,
) -> Stream:
    """NDJSON: ``{"following": true}`` once subscribed, then one row per new
    request matching the filters, ``{"keepalive": true}`` while quiet."""
    _check_status(status)
    mon = _svc(request).monitor

    async def gen() -> AsyncIterator[bytes]:
        q = mon.subscribe()
        try:
            yield b'{"following": true}\n'
            while True:
                try:
                    row = await asyncio.wait_for(q.get(), timeout=FOLLOW_KEEPALIVE)
                except TimeoutError:
                    yield b'{"keepalive": true}\n'
                    continue
                if row_matches(row, status=status, model=model, account=account):
                    yield _encode(row) + b"\n"
        finally:
            mon.unsubscribe(q)

    return Stream(gen(), media_type="application/x-ndjson")


@get("/logs/{request_id:str}")
async def log_show(request: Request[Any, Any, Any], request_id: str) -> dict[str, Any]:
    mon = _svc(request).monitor
    rows = await asyncio.to_thread(mon.query, limit=1, request_id=request_id, bodies=True)
    if not rows:
        where = "" if mon.enabled else " (the monitor is off: `agctl monitor on`)"
        raise NotFound(
            f"no logged request {request_id!r}{where}; ids are in the x-request-id header "
            "and in error messages, and rows go after monitor.retention_days"
        )
    return {"row": rows[0]}


@get("/stats")
async def stats(request: Request[Any, Any, Any], since: str = "24h", by: str = "model") -> dict[str, Any]:
    if by not in STATS_BY:
        raise BadRequest(f"by must be one of {', '.join(STATS_BY)}", param="by")
    try:
        since_ts = parse_since(since)
    except ValueError as exc:
        raise BadRequest(str(exc), param="since") from None
    mon = _svc(request).monitor
    data = await asyncio.to_thread(mon.stats, since=since_ts, by=by)
    data["window"] = since
    data["dropped"] = mon.dropped
    return data


@get("/monitor")
async def monitor_info(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _svc(request).monitor.info()


@post("/monitor/{switch:str}", status_code=200)
async def monitor_toggle(request: Request[Any, Any, Any], switch: str) -> dict[str, Any]:
    if switch not in ("on", "off"):
        raise BadRequest("use `agctl monitor on` or `agctl monitor off`")
    svc = _svc(request)
    svc.set_config("monitor.enabled", "true" if switch == "on" else "false")
    return {"enabled": svc.config.monitor.enabled, "at": time.time()}


handlers = [logs, logs_follow, log_show, stats, monitor_info, monitor_toggle]
