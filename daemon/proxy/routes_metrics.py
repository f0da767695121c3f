"""GET /metrics: Prometheus text format, behind the same auth as the AI routes.

With auth off (the loopback default) anyone who can reach the port may
scrape; account emails are shown only to a scrape that sends the proxy key,
the rest see account ids (issue 17)."""

from __future__ import annotations

from typing import Any, cast

from litestar import Request, Response, get

from daemon.proxy.auth import client_key, key_matches
from daemon.proxy.serving import service_of


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    svc = service_of(request)
    given = client_key(cast(Any, request.scope), request.scope.get("path", "/metrics"))
    return Response(
        content=svc.metrics.render(show_accounts=key_matches(given, svc.config.proxy.api_key)),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


handlers = [metrics]
