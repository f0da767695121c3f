"""Pieces every admin route shares: the app's dependencies and the JSON body."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from daemon.app_deps import AdminDeps
from daemon.errors import BadRequest


def _svc(request: Request[Any, Any, Any]) -> AdminDeps:
    svc: AdminDeps = request.app.state.service
    return svc


async def body_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data
