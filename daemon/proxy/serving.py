"""The path every AI route shares: decode, resolve the model, translate,
dispatch, translate back (whole or as a stream), record in the monitor.

Streams: bytes go out as each upstream event arrives (``relay``); while the
stream is quiet the translator's keepalive goes out every
``proxy.stream_keepalive`` seconds (sent by the exchange layer's watcher, so
nothing is spent per chunk); a client disconnect cancels the response task,
whose ``finally`` closes the upstream response (the upstream call is
cancelled at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import msgspec
from litestar import Request, Response

from daemon import models as models_mod
from daemon.app_deps import ProxyDeps
from daemon.errors import BadRequest, ContextTooLong, GatewayError, InternalError
from daemon.protocols import GeminiCall, common
from daemon.protocols.signatures import SignatureStore
from daemon.proxy.exchange import JsonOut, Out, Req, StreamOut, until_disconnect
from daemon.records import RequestCtx

log = logging.getLogger(__name__)

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_COMMENT = b": keepalive\n\n"  # every SSE parser skips a comment


class StreamTranslator(Protocol):
    def start(self) -> bytes: ...
    def feed(self, chunk: dict[str, Any]) -> bytes: ...
    def finish(self) -> bytes: ...
    def fail(self, err: GatewayError) -> bytes: ...
    def keepalive(self) -> bytes: ...


def service_of(request: Request[Any, Any, Any]) -> ProxyDeps:
    """The Service, from a Litestar route (hot routes have ``req.service``)."""
    svc: ProxyDeps = request.app.state.service  # set once by create_proxy_app
    return svc


async def decode_body(req: Req) -> dict[str, Any]:
    raw = await req.body()
    ctx = req.state.get("ctx")
    if ctx is not None:
        ctx.request_body = raw  # kept only if monitor.log_bodies is on
    if not raw:
        raise BadRequest("the request body is empty: send a JSON object")
    try:
        data = _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def new_ctx(req: Req, protocol: str, route: str) -> RequestCtx:
    scope = req.scope
    client = scope.get("client")
    state = req.state
    ctx = RequestCtx(
        request_id=state.get("request_id", ""),
        protocol=protocol,
        route=route,
        client=f"{client[0]}" if client else "",
        user_agent=req.headers.get("user-agent") or "",
    )
    state["ctx"] = ctx
    return ctx


def finish_ctx(svc: ProxyDeps, ctx: RequestCtx) -> None:
    """The one place a request is finished: its latency, its request-log row
    and its metrics. Called by the hot router (``daemon.proxy.hot_routes``)
    once the answer is out, whole or streamed, or failed; at most once."""
    if ctx.finished:
        return
    ctx.finished = True
    ctx.latency_ms = (time.perf_counter() - ctx.t0) * 1000
    try:
        svc.monitor.record(ctx)
        svc.metrics.observe(ctx)
    except Exception:  # the log must never break a request
        log.exception("monitor record failed")


@contextlib.contextmanager
def shape_errors() -> Iterator[None]:
    """Translation of a body whose values have unexpected types (a number
    where text belongs, a list for an object, absurd nesting) is the
    caller's error, not a 500."""
    try:
        yield
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
        log.info("request body of an unexpected shape: %s: %s", type(exc).__name__, exc)
        raise BadRequest(
            f"the request body has a value of an unexpected type or shape ({type(exc).__name__}); "
            "check it against the API reference"
        ) from None


def model_of(body: dict[str, Any], field: str = "model") -> str:
    model = body.get(field)
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(f"{field} is required and must be a string", param=field)
    return model


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    """A JSON answer from a Litestar route."""
    return Response(
        content=_encode(content), status_code=status, media_type="application/json", headers=headers
    )


def json_out(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JsonOut:
    """A JSON answer from a hot route."""
    return JsonOut(_encode(content), status, headers)


class _Relay:
    """One stream's upstream events -> client bytes; ``keepalive`` is what
    the watcher sends after a quiet period: the translator's own once the
    stream has begun, an SSE comment before (late first event)."""

    def __init__(self, tr: StreamTranslator, ctx: RequestCtx, on_done: Callable[[], None], sse: bool) -> None:
        self.tr = tr
        self.ctx = ctx
        self.on_done = on_done
        self.sse = sse
        self.started = False

    def keepalive(self) -> bytes:
        if self.started:
            return self.tr.keepalive()
        return SSE_COMMENT if self.sse else b""

    async def run(self, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        """Upstream events -> client bytes, with a clean error event when
        the upstream fails after the first byte."""
        tr, ctx = self.tr, self.ctx
        finished = False
        try:
            head = tr.start()
            self.started = True
            if head:
                ctx.mark_first_byte()
                yield head
            async for chunk in events:
                out = tr.feed(chunk)
                if out:
                    ctx.mark_first_byte()
                    yield out
            tail = tr.finish()
            finished = True
            if tail:
                yield tail
        except GatewayError as exc:
            finished = True
            ctx.fail(exc)
            log.warning("stream %s failed after the first byte: %s", ctx.request_id, exc.message)
            yield tr.fail(exc)
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:
                ctx.status = 499
                ctx.error_kind = "client_closed"
                ctx.error = "the client went away"
            raise
        except Exception:  # a bug: end the stream properly, log it
            finished = True
            log.exception("stream %s crashed", ctx.request_id)
            err = InternalError(f"internal error (request {ctx.request_id}); see the daemon log")
            ctx.fail(err)
            yield tr.fail(err)
        finally:
            # Cancelled (client gone), every further await here may be
            # cancelled too: the upstream is closed in a task of its own.
            _spawn(_aclose(events))
            self.on_done()

    async def late(self, opening: asyncio.Future[AsyncIterator[dict[str, Any]]]) -> AsyncIterator[bytes]:
        """The 200 went out before the upstream's first event: wait for it
        (the watcher sends SSE comments meanwhile), then relay."""
        try:
            events = await opening
        except GatewayError as exc:
            self.ctx.fail(exc)
            yield self.tr.fail(exc)
            self.on_done()
            return
        except BaseException:
            if not opening.done():
                opening.cancel()
            ctx = self.ctx
            ctx.status, ctx.error_kind, ctx.error = 499, "client_closed", "the client went away"
            self.on_done()
            raise
        async for chunk in self.run(events):
            yield chunk


_cleanups: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)


async def _aclose(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(BaseException):
            await aclose()


# bytes/4 overstates tokens only for text heavy in whitespace runs (indented
# code), by well under this; a prompt closer to the limit goes to Google,
# whose own "too long" answer becomes the same error (dispatch).
CLEARLY_OVER = 1.1


def check_context(svc: ProxyDeps, call: GeminiCall) -> None:
    """ContextTooLong when the prompt is clearly larger than the model's input
    limit in the live catalog (Claude: 200 000 in practice, UPSTREAM.md §4.1):
    answered at once in the client's own context-overflow shape, so the
    client compacts, and no account is asked (or rested) for it."""
    limit = models_mod.limits(svc.pool.catalog(), call.model).context_tokens
    if not limit:
        return
    tokens = common.estimate_tokens(call.request)
    if tokens > limit * CLEARLY_OVER:
        raise ContextTooLong(
            f"This model's maximum context length is {limit} tokens, but the request holds about "
            f"{tokens} tokens ({call.model}; estimated by the gateway). Compact or shorten the "
            "conversation.",
            tokens=tokens,
            limit=limit,
        )


async def run_call(
    req: Req,
    ctx: RequestCtx,
    call: GeminiCall,
    *,
    render: Callable[[dict[str, Any]], Any],
    translator: Callable[[], StreamTranslator],
    media_type: str = "text/event-stream",
    on_complete: Callable[[Any], None] | None = None,
) -> Out:
    """Dispatch a translated call and answer whole or streamed. Errors before
    the first byte propagate (the router turns them into protocol errors and
    finishes the request; a caller may still serve it another way, e.g. the
    z.ai fallback)."""
    svc = req.service
    ctx.client_model = call.client_model
    ctx.model = call.model
    ctx.stream = call.stream
    check_context(svc, call)
    if call.stream:
        return await _open_stream(svc, ctx, call, translator(), media_type, on_complete)
    resp = await until_disconnect(req, svc.dispatcher.generate(call, ctx))
    out = render(resp)
    body = _encode(out)
    if svc.config.monitor.log_bodies:
        ctx.response_body = body
    if on_complete is not None:
        on_complete(out)
    ctx.mark_first_byte()
    return JsonOut(body, 200, {"x-antigravity-model": call.model})


async def _open_stream(
    svc: ProxyDeps,
    ctx: RequestCtx,
    call: GeminiCall,
    tr: StreamTranslator,
    media_type: str,
    on_complete: Callable[[Any], None] | None,
) -> StreamOut:
    """Failover happens while nothing has gone to the client. When the
    upstream stays silent past ``proxy.stream_keepalive`` before its first
    event (long thinking, a slow failover), the 200 is sent anyway with SSE
    comment keepalives, so clients and middleboxes do not time out; a
    failure after that ends the stream with the protocol's error event."""
    keepalive = float(svc.config.proxy.stream_keepalive)
    headers = {**SSE_HEADERS, "x-antigravity-model": call.model}

    def on_done() -> None:
        _stream_done(ctx, tr, on_complete)

    relay = _Relay(tr, ctx, on_done, media_type == "text/event-stream")
    opening = asyncio.ensure_future(svc.dispatcher.stream(call, ctx))
    try:
        done, _ = await asyncio.wait({opening}, timeout=keepalive)
    except asyncio.CancelledError:
        opening.cancel()
        raise
    chunks = relay.run(opening.result()) if done else relay.late(opening)  # a GatewayError: clean error
    return StreamOut(
        chunks, media_type=media_type, headers=headers, keepalive=relay.keepalive, keepalive_every=keepalive
    )


def _stream_done(ctx: RequestCtx, tr: Any, on_complete: Callable[[Any], None] | None) -> None:
    if on_complete is not None and ctx.status == 200:
        result = getattr(tr, "result", None)
        if result is not None:
            with contextlib.suppress(Exception):
                on_complete(result)


def store_of(req: Req) -> SignatureStore:
    store: SignatureStore = req.service.signatures
    return store
