"""OpenAI routes: /v1/chat/completions, /v1/completions, /v1/responses,
/v1/responses/compact and /v1/images/generations (hot routes,
daemon.proxy.hot_routes), /v1/models (Litestar).

A /v1/responses request whose input ends with a ``compaction_trigger`` (Codex's
remote compaction) and /v1/responses/compact are answered with a summary
sealed into one compaction item (``protocols.openai_compaction``); the
service's ``compaction`` Sealer seals and opens them."""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Request, Response, get

from daemon.app_deps import ProxyDeps
from daemon.errors import NotFound
from daemon.ids import hex_id
from daemon.models import client_names
from daemon.protocols import (
    image_generation,
    openai_chat,
    openai_compaction,
    openai_completions,
    openai_images,
    openai_responses,
)
from daemon.proxy.exchange import Out, Req, until_disconnect
from daemon.proxy.serving import (
    decode_body,
    json_out,
    json_response,
    model_of,
    new_ctx,
    run_call,
    service_of,
    shape_errors,
    store_of,
)
from daemon.records import Usage

log = logging.getLogger(__name__)


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    if "x-goog-api-key" in request.headers:
        from daemon.proxy.routes_gemini import list_models as gemini_list

        listed: Response[bytes] = await gemini_list.fn(request)
        return listed
    svc = service_of(request)
    names = client_names(svc.config.models, svc.pool.catalog())
    created = int(svc.started_at)
    return json_response(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "antigravity"} for m in names
            ],
        }
    )


@get("/v1/models/{model:str}")
async def get_model(request: Request[Any, Any, Any], model: str) -> Response[bytes]:
    if "x-goog-api-key" in request.headers or "key" in request.query_params:
        # A Google SDK asking with api_version v1: answer in its shape.
        from daemon.proxy.routes_gemini import model_info

        return await model_info(request, model)
    svc = service_of(request)
    names = client_names(svc.config.models, svc.pool.catalog())
    if model not in names:
        svc.dispatcher.resolve_model(model)  # raises ModelNotFound with the list
    return json_response(
        {"id": model, "object": "model", "created": int(svc.started_at), "owned_by": "antigravity"}
    )


def _history(svc: ProxyDeps, body: dict[str, Any]) -> list[Any] | None:
    """The earlier turns a ``previous_response_id`` names (kept in memory)."""
    prev = body.get("previous_response_id")
    if not prev:
        return None
    history: list[Any] | None = svc.responses.get(str(prev))
    if history is None:
        raise NotFound(
            f"previous_response_id {prev!r} is unknown or expired (the proxy keeps recent "
            "responses in memory); send the full input instead",
            param="previous_response_id",
        )
    return history


async def _serve(req: Req, module: Any, route: str, **kwargs: Any) -> Out:
    svc = req.service
    ctx = new_ctx(req, "openai", route)
    store = store_of(req)
    body = await decode_body(req)
    client_model = model_of(body)
    ctx.client_model = client_model
    model = svc.dispatcher.resolve_model(client_model)
    with shape_errors():
        call = module.to_gemini(body, model=model, store=store, **kwargs)
    call.extra.setdefault("created", int(time.time()))
    return await run_call(
        req,
        ctx,
        call,
        render=lambda resp: module.from_gemini(resp, call=call, store=store),
        translator=lambda: module.StreamTranslator(call, store),
    )


async def chat_completions(req: Req) -> Out:
    """POST /v1/chat/completions"""
    return await _serve(req, openai_chat, "chat")


async def completions(req: Req) -> Out:
    """POST /v1/completions"""
    return await _serve(req, openai_completions, "completions")


def _image_tool_model(svc: ProxyDeps, call: Any) -> None:
    """The upstream image model of a request with the image_generation tool
    (checked now, so a model that draws nothing is a 400 before any call)."""
    opts = image_generation.enabled(call)
    if opts is not None:
        param = f"{opts['param']}.model"
        opts["model"] = svc.dispatcher.image_model(opts.get("requested_model"), param=param)
        ignored = opts.get("ignored") or []
        if ignored:
            log.info("responses: image_generation settings not applied: %s", ", ".join(ignored))


async def responses(req: Req) -> Out:
    """POST /v1/responses"""
    svc = req.service
    ctx = new_ctx(req, "openai", "responses")
    store = store_of(req)
    body = await decode_body(req)
    client_model = model_of(body)
    ctx.client_model = client_model
    model = svc.dispatcher.resolve_model(client_model)
    history = _history(svc, body)
    sealer = svc.compaction
    compacting = openai_compaction.is_compaction_request(body)
    with shape_errors():
        if compacting:
            call = openai_compaction.to_gemini(
                body,
                model=model,
                store=store,
                history=history,
                unseal=sealer.open,
                stream=bool(body.get("stream")),
            )
        else:
            call = openai_responses.to_gemini(
                body, model=model, store=store, history=history, unseal=sealer.open
            )
            _image_tool_model(svc, call)
    call.extra.setdefault("id", "resp_" + hex_id(24))
    call.extra.setdefault("created", int(time.time()))
    for typ in call.extra.get("ignored_tools", []) or []:
        log.info("responses: ignoring built-in tool type %r (not served by the upstream)", typ)
    inputs = openai_responses.input_items(body)
    past = list(history or [])

    def remember(resp_obj: Any) -> None:
        if body.get("store") is False or not isinstance(resp_obj, dict):
            return
        items = [*past, *inputs, *openai_responses.output_items(resp_obj)]
        svc.responses.put(str(resp_obj.get("id")), image_generation.without_pictures(items))

    if compacting:
        return await run_call(
            req,
            ctx,
            call,
            render=lambda resp: openai_compaction.from_gemini(resp, call=call, store=store, seal=sealer.seal),
            translator=lambda: openai_compaction.StreamTranslator(call, store, sealer.seal),
            on_complete=remember,
        )
    return await run_call(
        req,
        ctx,
        call,
        render=lambda resp: openai_responses.from_gemini(resp, call=call, store=store),
        translator=lambda: openai_responses.StreamTranslator(call, store),
        on_complete=remember,
    )


async def responses_compact(req: Req) -> Out:
    """POST /v1/responses/compact: a whole ``response.compaction`` object
    (never streamed), whose output is the input's user messages and one
    compaction item."""
    svc = req.service
    ctx = new_ctx(req, "openai", "responses_compact")
    store = store_of(req)
    sealer = svc.compaction
    body = await decode_body(req)
    client_model = model_of(body)
    ctx.client_model = client_model
    model = svc.dispatcher.resolve_model(client_model)
    history = _history(svc, body)
    with shape_errors():
        call = openai_compaction.to_gemini(
            body, model=model, store=store, history=history, unseal=sealer.open
        )
    call.extra.setdefault("id", "resp_" + hex_id(24))
    call.extra.setdefault("created", int(time.time()))
    inputs = [*(history or []), *openai_responses.input_items(body)]
    return await run_call(
        req,
        ctx,
        call,
        render=lambda resp: openai_compaction.compacted(resp, call=call, seal=sealer.seal, inputs=inputs),
        translator=lambda: openai_compaction.StreamTranslator(call, store, sealer.seal),  # never used
    )


async def images_generations(req: Req) -> Out:
    """POST /v1/images/generations: one image-model call per picture, one
    after the other (each goes through failover on its own; at most
    ``openai_images.MAX_IMAGES``)."""
    svc = req.service
    ctx = new_ctx(req, "openai", "images")
    body = await decode_body(req)
    with shape_errors():
        requested = openai_images.requested_model(body)
        ctx.client_model = str(body.get("model") or "")
        model = svc.dispatcher.image_model(requested)
        call = openai_images.to_gemini(body, model=model)
    call.extra["created"] = int(time.time())
    ctx.client_model = call.client_model
    ctx.model = model
    ignored = call.extra.get("ignored") or []
    if ignored:
        log.info("images: not applied (the image model has no such settings): %s", ", ".join(ignored))
    usage = Usage()
    answers: list[dict[str, Any]] = []
    for _ in range(int(call.extra["n"])):
        resp = await until_disconnect(req, svc.dispatcher.generate_image(call, ctx))
        answers.append(resp)
        meta = resp.get("usageMetadata") or {}
        usage.input_tokens += int(meta.get("promptTokenCount") or 0)
        usage.output_tokens += int(meta.get("candidatesTokenCount") or 0)
    ctx.usage = usage
    out = openai_images.from_gemini(answers, call=call)
    ctx.mark_first_byte()
    return json_out(out, 200, {"x-antigravity-model": model})


handlers = [list_models, get_model]
