"""Gemini API routes under /v1beta (google-genai SDK, Gemini CLI): model
listing and info on Litestar, the POST methods as hot routes
(daemon.proxy.hot_routes)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from daemon.errors import BadRequest, NotFound
from daemon.protocols import gemini
from daemon.proxy.exchange import Out, Req
from daemon.proxy.serving import (
    decode_body,
    json_out,
    json_response,
    new_ctx,
    run_call,
    service_of,
    shape_errors,
    store_of,
)

METHODS = ("generateContent", "streamGenerateContent", "countTokens")


def _model_entry(mid: str, q: Any) -> dict[str, Any]:
    return {
        "name": f"models/{mid}",
        "baseModelId": mid,
        "version": "001",
        "displayName": getattr(q, "display_name", "") or mid,
        "description": f"{mid} served by the antigravity pool",
        "inputTokenLimit": getattr(q, "max_tokens", None) or 1_048_576,
        "outputTokenLimit": getattr(q, "max_output_tokens", None) or 65_536,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        "thinking": bool(getattr(q, "supports_thinking", False)),
    }


@get(["/v1beta/models", "/v1alpha/models"])
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    svc = service_of(request)
    catalog = svc.pool.catalog()
    from daemon.models import client_names

    names = client_names(svc.config.models, catalog)
    return json_response({"models": [_model_entry(m, catalog.get(m)) for m in names]})


async def generate(req: Req) -> Out:
    """POST /v1beta/models/{model}:{method} (also /v1alpha, and /v1 as
    google-genai sends with api_version v1; the colon method names cannot
    clash with OpenAI routes)."""
    model_method = req.path_params["model_method"]
    model_name, _, method = model_method.rpartition(":")
    if method not in METHODS or not model_name:
        raise NotFound(
            f"unknown Gemini method {model_method!r}: use models/{{model}}:generateContent, "
            ":streamGenerateContent or :countTokens"
        )
    svc = req.service
    ctx = new_ctx(req, "gemini", method)
    store = store_of(req)
    ctx.client_model = model_name
    body = await decode_body(req)
    model = svc.dispatcher.resolve_model(model_name)
    if method == "countTokens":
        # countTokens takes contents, or a whole generateContentRequest.
        inner = body.get("generateContentRequest") or body.get("generate_content_request") or body
        if not isinstance(inner, dict):
            raise BadRequest("generateContentRequest must be an object")
        with shape_errors():
            call = gemini.to_gemini(inner, model=model, store=store, client_model=model_name)
        ctx.client_model, ctx.model = model_name, model
        total = await svc.dispatcher.count_tokens(call, ctx)
        return json_out({"totalTokens": total})
    stream = method == "streamGenerateContent"
    with shape_errors():
        call = gemini.to_gemini(body, model=model, store=store, client_model=model_name, stream=stream)
    sse_mode = req.query_params.get("alt") == "sse"
    return await run_call(
        req,
        ctx,
        call,
        render=lambda resp: gemini.from_gemini(resp, call=call, store=store),
        translator=lambda: gemini.StreamTranslator(call, store, sse_mode=sse_mode),
        media_type="text/event-stream" if sse_mode else "application/json",
    )


@get(["/v1beta/models/{model:str}", "/v1alpha/models/{model:str}"])
async def get_model(request: Request[Any, Any, Any], model: str) -> Response[bytes]:
    return await model_info(request, model)


async def model_info(request: Request[Any, Any, Any], model: str) -> Response[bytes]:
    svc = service_of(request)
    resolved = svc.dispatcher.resolve_model(model)
    entry = _model_entry(resolved, svc.pool.catalog().get(resolved))
    entry["name"] = f"models/{model}"
    return json_response(entry)


handlers = [list_models, get_model]
