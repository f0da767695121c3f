"""The proxy app: the guard in front (daemon.proxy.guard), auth
(daemon.proxy.auth), then the hot routes
(daemon.proxy.hot_routes: the model traffic), then the Litestar app for the
rest (models, health, metrics, near-miss 404s); errors in the caller's
protocol shape everywhere."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from litestar import Litestar, Request, Response, route
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
)
from litestar.exceptions import ValidationException as LitestarValidation

from daemon.errors import BadRequest, GatewayError, InternalError, NotFound, PayloadTooLarge
from daemon.protocols.error_shapes import body_for, headers_for, protocol_for_path
from daemon.proxy.auth import ASGIApp, AuthMiddleware, Scope
from daemon.proxy.guard import RequestGuard
from daemon.records import Refusal

if TYPE_CHECKING:
    from daemon.app_deps import ProxyDeps

log = logging.getLogger(__name__)

KNOWN_SUFFIXES = (
    "/chat/completions",
    "/completions",
    "/responses",
    "/responses/compact",
    "/messages",
    "/messages/count_tokens",
    "/models",
)


def near_miss_hint(path: str, base: str) -> str:
    """Say which base URL to use when a client got the prefix wrong."""
    if ":generateContent" in path or ":streamGenerateContent" in path or ":countTokens" in path:
        return (
            f"Gemini routes live under /v1beta: set the base URL to {base} "
            "(Gemini SDK / GOOGLE_GEMINI_BASE_URL)."
        )
    if path.startswith("/v1/v1/"):
        return (
            f"the base URL ends in /v1 twice: use {base}/v1 for OpenAI clients, {base} for Anthropic clients."
        )
    for suffix in KNOWN_SUFFIXES:
        if path.endswith(suffix) and not path.startswith("/v1/"):
            if suffix.startswith("/messages"):
                return f"set the Anthropic base URL to {base} (no /v1: the SDK adds it)."
            return f"set the OpenAI base URL to {base}/v1."
    return (
        f"known routes: /v1/chat/completions, /v1/responses, /v1/completions, /v1/models, "
        f"/v1/messages, /v1beta/models/{{model}}:generateContent; base URL {base}/v1 (OpenAI), "
        f"{base} (Anthropic, Gemini)."
    )


def error_response(request: Request[Any, Any, Any], err: GatewayError) -> Response[Any]:
    path = request.scope.get("path", "/")
    return Response(
        content=body_for(protocol_for_path(path), err),
        status_code=err.status,
        headers=headers_for(err),
        media_type="application/json",
    )


def _gateway_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, GatewayError)
    if exc.status >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.status, exc.message)
    return error_response(request, exc)


def _http_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    path = request.scope.get("path", "/")
    base = request.app.state.get("base_url", "http://127.0.0.1:8045")
    err: GatewayError
    if isinstance(exc, NotFoundException):
        err = NotFound(f"no route for {request.method} {path}: {near_miss_hint(path, base)}")
    elif isinstance(exc, MethodNotAllowedException):
        err = BadRequest(f"{request.method} is not allowed on {path}")
        err.status = 405  # type: ignore[misc]
    elif isinstance(exc, LitestarValidation):
        err = BadRequest(f"invalid request: {exc.detail}")
    elif isinstance(exc, HTTPException) and exc.status_code == 413:
        err = PayloadTooLarge(
            "the request body is too large (limits.max_other_body_bytes); send less, "
            "or raise limits.max_other_body_bytes"
        )
    elif isinstance(exc, HTTPException) and exc.status_code < 500:
        err = BadRequest(str(exc.detail))
    else:
        err = InternalError("internal error")
    return error_response(request, err)


def _internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    rid = request.scope.get("state", {}).get("request_id", "")
    return error_response(request, InternalError(f"internal error (request {rid}); see the daemon log"))


@route(["/healthz", "/health"], http_method=["GET", "HEAD"], sync_to_thread=False)
def health() -> dict[str, str]:
    """HEAD answers like GET without a body (monitors and clients probe with it)."""
    return {"status": "ok"}


@route("/", http_method=["GET", "HEAD"], sync_to_thread=False)
def root(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What this port is, for a person who opens it in a browser or a client
    that probes the base URL."""
    base = request.app.state.base_url
    return {
        "status": "ok",
        "service": "antigravity",
        "base_urls": {"openai": f"{base}/v1", "anthropic": base, "gemini": base},
    }


@route("/api/{rest:path}", http_method=["GET", "HEAD", "POST"], sync_to_thread=False)
def claude_code_side(rest: str) -> dict[str, Any]:
    """Claude Code probes ``HEAD /api/hello`` and posts telemetry to /api/...;
    answering 200 keeps a session from stopping on them."""
    return {}


def create_proxy_app(service: ProxyDeps) -> ASGIApp:
    from daemon.proxy import routes_gemini, routes_metrics, routes_openai
    from daemon.proxy.hot_routes import HotRoutes

    app = Litestar(
        route_handlers=[
            health,
            root,
            claude_code_side,
            *routes_openai.handlers,
            *routes_gemini.handlers,
            *routes_metrics.handlers,
        ],
        exception_handlers={
            GatewayError: _gateway_handler,
            HTTPException: _http_handler,
            Exception: _internal_handler,
        },
        # A backstop: daemon.proxy.guard refuses bodies over the limits first.
        request_max_body_size=service.config.limits.max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
    app.state.service = service
    app.state.base_url = service.base_url()

    def on_reject(scope: Scope, path: str, err: GatewayError) -> None:
        """A refused request is in the request log too (who tried, with
        what), aggregated per client and minute (daemon.refusals)."""
        client = scope.get("client")
        agent = next(
            (bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k == b"user-agent"), ""
        )
        service.refusals.refuse(
            Refusal(
                reason="unauthorized",
                status=err.status,
                kind=err.kind,
                message=err.message,
                client=f"{client[0]}" if client else "",
                protocol=protocol_for_path(path),
                route="unauthorized",  # not the path: metrics labels stay bounded
                request_id=scope["state"]["request_id"],
                user_agent=agent[:300],
            )
        )

    # The routes that carry model traffic skip Litestar (daemon.proxy.exchange);
    # the guard (Host, Origin, content type, body size) comes before auth.
    auth = AuthMiddleware(HotRoutes(cast(ASGIApp, app), service), service.auth_settings, on_reject)
    return RequestGuard(auth, service, service.refusals)
