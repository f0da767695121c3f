"""The path every AI route shares: decode, resolve the model, translate,
dispatch, translate back (whole or as a stream), record in the monitor.

Streams: bytes go out as each upstream event arrives; while the upstream is
silent the translator's keepalive goes out every KEEPALIVE_SECONDS; a client
disconnect cancels the response task, whose ``finally`` closes the upstream
response (the upstream call is cancelled at once).
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
from litestar.response import Stream

from daemon.dispatch import RequestCtx
from daemon.errors import BadRequest, GatewayError, InternalError
from daemon.protocols import GeminiCall
from daemon.protocols.signatures import SignatureStore

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 10.0
_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class StreamTranslator(Protocol):
    def start(self) -> bytes: ...
    def feed(self, chunk: dict[str, Any]) -> bytes: ...
    def finish(self) -> bytes: ...
    def fail(self, err: GatewayError) -> bytes: ...
    def keepalive(self) -> bytes: ...


def service_of(request: Request[Any, Any, Any]) -> Any:
    return request.app.state.service


async def decode_body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    ctx = request.scope.get("state", {}).get("ctx")
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


def new_ctx(request: Request[Any, Any, Any], protocol: str, route: str) -> RequestCtx:
    scope = request.scope
    client = scope.get("client")
    ctx = RequestCtx(
        request_id=scope.get("state", {}).get("request_id", ""),
        protocol=protocol,
        route=route,
        client=f"{client[0]}" if client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    scope.setdefault("state", {})["ctx"] = ctx
    return ctx


def finish_ctx(svc: Any, ctx: RequestCtx) -> None:
    ctx.latency_ms = (time.perf_counter() - ctx.t0) * 1000
    try:
        svc.monitor.record(ctx)
        metrics = getattr(svc, "metrics", None)
        if metrics is not None:
            metrics.observe(ctx)
    except Exception:  # the log must never break a request
        log.exception("monitor record failed")


@contextlib.contextmanager
def recorded(svc: Any, ctx: RequestCtx) -> Iterator[None]:
    """A GatewayError raised before dispatch still makes a monitor row."""
    try:
        with shape_errors():
            yield
    except GatewayError as exc:
        ctx.fail(exc)
        finish_ctx(svc, ctx)
        raise


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
    return Response(
        content=_encode(content), status_code=status, media_type="application/json", headers=headers
    )


async def relay(
    events: AsyncIterator[dict[str, Any]],
    translator: StreamTranslator,
    ctx: RequestCtx,
    on_done: Callable[[], None],
    keepalive: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[bytes]:
    """Upstream events -> client bytes, with keepalives and a clean error
    event when the upstream fails after the first byte."""
    pending: asyncio.Future[dict[str, Any]] | None = None
    it = events.__aiter__()
    try:
        head = translator.start()
        if head:
            ctx.mark_first_byte()
            yield head
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                ka = translator.keepalive()
                if ka:
                    yield ka
                continue
            fut, pending = pending, None
            try:
                chunk = fut.result()
            except StopAsyncIteration:
                break
            out = translator.feed(chunk)
            if out:
                ctx.mark_first_byte()
                yield out
        tail = translator.finish()
        if tail:
            yield tail
    except GatewayError as exc:
        ctx.fail(exc)
        log.warning("stream %s failed after the first byte: %s", ctx.request_id, exc.message)
        yield translator.fail(exc)
    except asyncio.CancelledError:
        ctx.status = 499
        ctx.error_kind = "client_closed"
        ctx.error = "the client went away"
        raise
    except Exception as exc:  # a bug: end the stream properly, log it
        log.exception("stream %s crashed", ctx.request_id)
        err = InternalError(f"internal error (request {ctx.request_id}); see the daemon log")
        ctx.fail(err)
        yield translator.fail(err)
        del exc
    finally:
        # The response task may be cancelled (client gone) under an anyio
        # cancel scope, which cancels every further await here; the upstream
        # is closed in a task of its own so that it really happens.
        _spawn(_close_upstream(pending, it))
        on_done()


_cleanups: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)


async def _close_upstream(pending: asyncio.Future[Any] | None, it: Any) -> None:
    if pending is not None and not pending.done():
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(BaseException):
            await aclose()


def stream_response(
    gen: AsyncIterator[bytes], headers: dict[str, str] | None = None, media_type: str = "text/event-stream"
) -> Stream:
    return Stream(gen, media_type=media_type, headers={**SSE_HEADERS, **(headers or {})})


async def run_call(
    request: Request[Any, Any, Any],
    ctx: RequestCtx,
    call: GeminiCall,
    *,
    render: Callable[[dict[str, Any]], Any],
    translator: Callable[[], StreamTranslator],
    media_type: str = "text/event-stream",
    on_complete: Callable[[Any], None] | None = None,
    record_failure: bool = True,
) -> Response[Any] | Stream:
    """Dispatch a translated call and answer whole or streamed. Errors before
    the first byte propagate (the app turns them into protocol errors); with
    ``record_failure=False`` the caller records them (it may still serve the
    request another way, e.g. z.ai fallback)."""
    svc = service_of(request)
    ctx.client_model = call.client_model
    ctx.model = call.model
    ctx.stream = call.stream
    try:
        if call.stream:
            return await _open_stream(svc, ctx, call, translator(), media_type, on_complete)
        try:
            resp = await _unless_client_leaves(request, svc.dispatcher.generate(call, ctx), ctx)
        except _ClientGone:
            ctx.status, ctx.error_kind, ctx.error = 499, "client_closed", "the client went away"
            finish_ctx(svc, ctx)
            return Response(content=b"", status_code=499)  # nobody is left to read it
        out = render(resp)
        if svc.config.monitor.log_bodies:
            ctx.response_body = _encode(out)
        if on_complete is not None:
            on_complete(out)
        ctx.mark_first_byte()
        finish_ctx(svc, ctx)
        return json_response(out, headers={"x-antigravity-model": call.model})
    except GatewayError as exc:
        if record_failure:
            ctx.fail(exc)
            finish_ctx(svc, ctx)
        raise


async def _unless_client_leaves(request: Request[Any, Any, Any], work: Any, ctx: RequestCtx) -> Any:
    """Await ``work`` (a whole answer) but cancel it, and so the upstream
    call, as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        gone.cancel()
    if task.cancelled():
        raise _ClientGone()
    return task.result()


class _ClientGone(Exception):
    """The client disconnected before its whole answer was ready."""


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    # The body has been read: the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _open_stream(
    svc: Any,
    ctx: RequestCtx,
    call: GeminiCall,
    tr: StreamTranslator,
    media_type: str,
    on_complete: Callable[[Any], None] | None,
) -> Stream:
    """Failover happens while nothing has gone to the client. When the
    upstream stays silent past ``proxy.stream_keepalive`` before its first
    event (long thinking, a slow failover), the 200 is sent anyway with SSE
    comment keepalives, so clients and middleboxes do not time out; a
    failure after that ends the stream with the protocol's error event."""
    keepalive = float(svc.config.proxy.stream_keepalive)
    opening = asyncio.ensure_future(svc.dispatcher.stream(call, ctx))
    try:
        done, _ = await asyncio.wait({opening}, timeout=keepalive)
    except asyncio.CancelledError:
        opening.cancel()
        raise
    headers = {"x-antigravity-model": call.model}

    def on_done() -> None:
        _stream_done(svc, ctx, tr, on_complete)

    if done:
        events = opening.result()  # a GatewayError here is a clean protocol error
        return stream_response(relay(events, tr, ctx, on_done, keepalive), headers, media_type)
    sse_mode = media_type == "text/event-stream"
    return stream_response(_late_relay(opening, tr, ctx, on_done, keepalive, sse_mode), headers, media_type)


async def _late_relay(
    opening: asyncio.Future[AsyncIterator[dict[str, Any]]],
    tr: StreamTranslator,
    ctx: RequestCtx,
    on_done: Callable[[], None],
    keepalive: float,
    sse_mode: bool,
) -> AsyncIterator[bytes]:
    events: AsyncIterator[dict[str, Any]] | None = None
    try:
        while True:
            done, _ = await asyncio.wait({opening}, timeout=keepalive)
            if done:
                break
            if sse_mode:
                yield b": keepalive\n\n"  # an SSE comment: every SSE parser skips it
        try:
            events = opening.result()
        except GatewayError as exc:
            ctx.fail(exc)
            yield tr.fail(exc)
            on_done()
            return
    except BaseException:
        if not opening.done():
            opening.cancel()
        else:
            _spawn(_close_opened(opening))
        on_done()
        raise
    async for chunk in relay(events, tr, ctx, on_done, keepalive):
        yield chunk


async def _close_opened(opening: asyncio.Future[AsyncIterator[dict[str, Any]]]) -> None:
    with contextlib.suppress(BaseException):
        events = opening.result()
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _stream_done(svc: Any, ctx: RequestCtx, tr: Any, on_complete: Callable[[Any], None] | None) -> None:
    if on_complete is not None and ctx.status == 200:
        result = getattr(tr, "result", None)
        if result is not None:
            with contextlib.suppress(Exception):
                on_complete(result)
    finish_ctx(svc, ctx)


def store_of(request: Request[Any, Any, Any]) -> SignatureStore:
    store: SignatureStore = service_of(request).signatures
    return store
