"""Anthropic routes: /v1/messages and /v1/messages/count_tokens, with z.ai
dispatch (hot routes: daemon.proxy.hot_routes)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from daemon import models as models_mod
from daemon.app_deps import ProxyDeps
from daemon.errors import GatewayError, ModelNotFound, NoAccountAvailable, Overloaded, RateLimited
from daemon.ids import hex_id
from daemon.protocols import anthropic
from daemon.proxy.exchange import Out, Req, StreamOut
from daemon.proxy.serving import (
    SSE_HEADERS,
    decode_body,
    json_out,
    model_of,
    new_ctx,
    run_call,
    shape_errors,
    store_of,
)
from daemon.records import Attempt, RequestCtx
from daemon.upstream.zai import Zai

log = logging.getLogger(__name__)


def _thinking_model(svc: ProxyDeps, body: dict[str, Any], model: str) -> str:
    """With thinking on, a Claude id that has a ``-thinking`` twin in the
    catalog is served by the twin (else thinking would silently never come
    back); ``claude-sonnet-4-6`` thinks itself (UPSTREAM.md §4.1)."""
    th = body.get("thinking")
    if not isinstance(th, dict) or th.get("type") not in ("enabled", "adaptive"):
        return model
    twin: str = models_mod.thinking_variant(svc.pool.catalog(), model)
    return twin


def _anthropic_error(exc: GatewayError) -> GatewayError:
    """Anthropic clients act on the status (the SDK picks its exception by
    it, Claude Code retries 429/529): "nothing in the pool can serve" is a
    429 rate_limit_error when a retry time is known, else a 529
    overloaded_error — never a 503 carrying either type."""
    if isinstance(exc, NoAccountAvailable):
        if exc.retry_after is not None:
            return RateLimited(exc.message, retry_after=exc.retry_after)
        return Overloaded(exc.message)
    return exc


async def _serve_zai(req: Req, body: dict[str, Any], ctx: RequestCtx) -> Out:
    from daemon.protocols import zai as zai_tr

    svc = req.service
    cfg = svc.config.zai
    model = zai_tr.zai_model(str(body.get("model", "")), cfg.models)
    ctx.model = model
    ctx.account = "z.ai"
    client = Zai(svc.http, cfg)
    headers = dict(req.headers.items())
    zbody = zai_tr.zai_request_body(body, model)
    if body.get("stream"):
        ctx.stream = True
        chunks = await client.stream(zbody, headers)

        async def gen() -> AsyncIterator[bytes]:
            try:
                async for chunk in chunks:
                    ctx.mark_first_byte()
                    yield chunk
            except GatewayError as exc:
                ctx.fail(exc)
                from daemon.protocols.common import sse_json
                from daemon.protocols.error_shapes import anthropic_body

                yield sse_json(anthropic_body(exc), "error")
            finally:
                with contextlib.suppress(Exception):
                    await chunks.aclose()  # type: ignore[attr-defined]

        return StreamOut(gen(), headers=SSE_HEADERS)
    data = await client.messages(zbody, headers)
    usage = data.get("usage") or {}
    ctx.usage.input_tokens = int(usage.get("input_tokens") or 0)
    ctx.usage.output_tokens = int(usage.get("output_tokens") or 0)
    return json_out(data)


async def messages(req: Req) -> Out:
    """POST /v1/messages"""
    svc = req.service
    ctx = new_ctx(req, "anthropic", "messages")
    store = store_of(req)
    plan = svc.backends
    try:
        body = await decode_body(req)
        client_model = model_of(body)
        ctx.client_model = client_model
        zai_tried = False
        if plan.first(client_model) == "zai":
            zai_tried = True
            try:
                return await _serve_zai(req, body, ctx)
            except GatewayError as exc:
                if not plan.google_after_zai(exc):
                    raise
                log.info("z.ai failed (%s); failing over to Google accounts", exc.message)
                ctx.attempts.append(Attempt(account="z.ai", status=exc.status, error=exc.message[:300]))
        can_fall_back = plan.zai_after_google(client_model, zai_tried=zai_tried)
        try:
            model = _thinking_model(svc, body, svc.dispatcher.resolve_model(client_model))
        except ModelNotFound as exc:
            if not can_fall_back:
                raise
            log.info("Google serves no model for %r (%s); falling back to z.ai", client_model, exc.message)
            return await _serve_zai(req, body, ctx)
        with shape_errors():
            call = anthropic.to_gemini(body, model=model, store=store)
        call.extra.setdefault("id", "msg_" + hex_id(12))
        try:
            return await run_call(
                req,
                ctx,
                call,
                render=lambda resp: anthropic.from_gemini(resp, call=call, store=store),
                translator=lambda: anthropic.StreamTranslator(call, store),
            )
        except GatewayError as exc:
            if can_fall_back and plan.falls_back_on(exc):
                log.info("no Google account could serve (%s); falling back to z.ai", exc.message)
                ctx.status, ctx.error, ctx.error_kind = 200, "", ""
                return await _serve_zai(req, body, ctx)
            raise
    except GatewayError as exc:
        raise _anthropic_error(exc) from None


async def _count_zai(req: Req, body: dict[str, Any], client_model: str) -> dict[str, Any]:
    from daemon.protocols import zai as zai_tr

    svc = req.service
    client = Zai(svc.http, svc.config.zai)
    zbody = zai_tr.zai_request_body(body, zai_tr.zai_model(client_model, svc.config.zai.models))
    return await client.count_tokens(zbody, dict(req.headers.items()))


async def count_tokens(req: Req) -> Out:
    """POST /v1/messages/count_tokens"""
    svc = req.service
    ctx = new_ctx(req, "anthropic", "count_tokens")
    try:
        body = await decode_body(req)
        client_model = model_of(body)
        ctx.client_model = client_model
        if svc.backends.mode == "exclusive":
            return json_out(await _count_zai(req, body, client_model))
        try:
            model = _thinking_model(svc, body, svc.dispatcher.resolve_model(client_model))
            ctx.model = model
            with shape_errors():
                call = anthropic.to_gemini(
                    {**body, "max_tokens": body.get("max_tokens") or 1}, model=model, store=store_of(req)
                )
            total = await svc.dispatcher.count_tokens(call, ctx)
        except GatewayError as exc:
            # pooled / fallback: a proxy whose Google accounts cannot serve
            # (or that has none) still counts, on z.ai.
            plan = svc.backends
            if plan.zai_after_google(client_model, zai_tried=False) and plan.falls_back_on(exc):
                data = await _count_zai(req, body, client_model)
                ctx.account = "z.ai"
                return json_out(data)
            raise
    except GatewayError as exc:
        raise _anthropic_error(exc) from None
    return json_out({"input_tokens": total})
