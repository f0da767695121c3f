"""GET /metrics: Prometheus text format, behind the same auth as the AI routes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from daemon.proxy.serving import service_of


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    svc = service_of(request)
    return Response(
        content=svc.metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


handlers = [metrics]
