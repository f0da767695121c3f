"""The router for the routes that carry model traffic, in front of the
Litestar app (why: ``daemon.proxy.exchange``).

POST /v1/chat/completions, /v1/completions, /v1/responses,
/v1/responses/compact, /v1/images/generations, /v1/messages,
/v1/messages/count_tokens, and /{v1beta,v1alpha,v1}/models/{model}:{method}
are answered here; every other request goes on to Litestar. Errors are
answered in the caller's protocol shape, as Litestar's handlers do for the
rest.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from daemon.app_deps import ProxyDeps
from daemon.errors import BadRequest, GatewayError, InternalError
from daemon.protocols.error_shapes import body_for, headers_for, protocol_for_path
from daemon.proxy.exchange import ClientGone, JsonOut, Out, Receive, Req, Scope, Send, send_out
from daemon.proxy.serving import finish_ctx
from daemon.records import RequestCtx

log = logging.getLogger(__name__)

Handler = Callable[[Req], Awaitable[Out]]
MODEL_PREFIXES = ("/v1beta/models/", "/v1alpha/models/", "/v1/models/")
EXACT_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/responses/compact",
        "/v1/images/generations",
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
)


def is_model_route(path: str) -> bool:
    """Is ``path`` (normalised) one of the routes served here (when POSTed)?"""
    if path in EXACT_PATHS:
        return True
    for prefix in MODEL_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            return bool(rest) and "/" not in rest
    return False


def error_out(path: str, err: GatewayError) -> JsonOut:
    return JsonOut(msgspec.json.encode(body_for(protocol_for_path(path), err)), err.status, headers_for(err))


class HotRoutes:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], service: ProxyDeps) -> None:
        from daemon.proxy import routes_anthropic, routes_gemini, routes_openai

        self.app = app
        self.service = service
        self.exact: dict[str, Handler] = {
            "/v1/chat/completions": routes_openai.chat_completions,
            "/v1/completions": routes_openai.completions,
            "/v1/responses": routes_openai.responses,
            "/v1/responses/compact": routes_openai.responses_compact,
            "/v1/images/generations": routes_openai.images_generations,
            "/v1/messages": routes_anthropic.messages,
            "/v1/messages/count_tokens": routes_anthropic.count_tokens,
        }
        self.model_route: Handler = routes_gemini.generate

    def _route(self, path: str) -> tuple[Handler | None, dict[str, str]]:
        handler = self.exact.get(path)
        if handler is not None:
            return handler, {}
        for prefix in MODEL_PREFIXES:
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                if rest and "/" not in rest:
                    return self.model_route, {"model_method": rest}
                break
        return None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        handler, params = self._route(path)
        if handler is None:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if method != "POST":
            if params:  # GET /v1beta/models/{model} and friends are Litestar's
                await self.app(scope, receive, send)
                return
            err = BadRequest(f"{method} is not allowed on {path}: use POST")
            err.status = 405  # type: ignore[misc]
            await send_out(send, receive, error_out(path, err))
            return
        req = Req(scope, receive, self.service, params)
        try:
            try:
                out = await handler(req)
            except ClientGone:
                _gone(req)
                return  # left before the answer: nobody to send it to
            except GatewayError as exc:
                if exc.status >= 500:
                    log.warning("%s %s -> %s: %s", method, path, exc.status, exc.message)
                _failed(req, exc)
                out = error_out(path, exc)
            except Exception:
                log.exception("unhandled error on %s %s", method, path)
                rid = req.state.get("request_id", "")
                internal = InternalError(f"internal error (request {rid}); see the daemon log")
                _failed(req, internal)
                out = error_out(path, internal)
            await send_out(send, receive, out)
        finally:
            # The one place a request is finished (its log row and metrics):
            # after the whole answer went out, a stream's too, or it failed.
            ctx: RequestCtx | None = req.state.get("ctx")
            if ctx is not None:
                finish_ctx(self.service, ctx)


def _failed(req: Req, err: GatewayError) -> None:
    ctx: RequestCtx | None = req.state.get("ctx")
    if ctx is not None:
        ctx.fail(err)


def _gone(req: Req) -> None:
    ctx: RequestCtx | None = req.state.get("ctx")
    if ctx is not None:
        ctx.status, ctx.error_kind, ctx.error = 499, "client_closed", "the client went away"
