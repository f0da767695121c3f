"""The AI routes' own HTTP layer: a request, two kinds of answer, and the
ASGI code that sends them.

Why not Litestar's Request/Response for these routes: a proxied request
costs the daemon a few hundred microseconds of CPU, and Litestar's request
and response machinery took ~200 µs of that (tests/bench: a bare ASGI proxy
served 3,200 req/s on one core, the same proxy as a Litestar route 1,950).
So the POST routes that carry model traffic (``daemon.proxy.hot_routes``)
are served here, in front of the Litestar app, which keeps everything else.

What Litestar did for these routes is done here, once:

- the body, bounded by ``limits.max_body_bytes`` (413 in the caller's shape);
- a stream is sent as it is produced; a client disconnect cancels the
  producing task (so the upstream call is cancelled) — one watcher task per
  stream, which also sends the protocol's keepalive when the stream has been
  quiet for ``keepalive`` seconds, so nothing is spent per chunk;
- a whole answer: ``until_disconnect`` cancels the work when the client
  leaves before it is ready. On the proxy listener the connection itself
  cancels the waiting task when it is lost (``Disconnects``, in the scope
  under ``CONNECTION_KEY``), so a whole answer costs no watcher task; a
  server without it (tests, other listeners) gets the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from daemon.app_deps import ProxyDeps
from daemon.errors import BadRequest, PayloadTooLarge

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before the answer could be sent."""


CONNECTION_KEY = "antigravity.connection"


class Disconnects(Protocol):
    """What the proxy's connection offers in the scope (``CONNECTION_KEY``):
    it cancels a watched task when the client's connection is lost."""

    def watch(self, task: asyncio.Task[Any]) -> bool:
        """Watch ``task``; False when the connection is already gone."""
        ...

    def unwatch(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching; True when the loss of the connection cancelled it."""
        ...


class Headers:
    """Request headers by lower-case name (the last value wins)."""

    __slots__ = ("_d",)

    def __init__(self, raw: Any) -> None:
        self._d = {bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1") for k, v in raw}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._d.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._d

    def items(self) -> Any:
        return self._d.items()


class Req:
    """One request to an AI route."""

    __slots__ = ("_headers", "_query", "path_params", "receive", "scope", "service")

    def __init__(
        self, scope: Scope, receive: Receive, service: ProxyDeps, path_params: dict[str, str] | None = None
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.service: ProxyDeps = service
        self.path_params = path_params or {}
        self._headers: Headers | None = None
        self._query: dict[str, str] | None = None

    @property
    def path(self) -> str:
        return str(self.scope.get("path", "/"))

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self.scope.get("headers", ()))
        return self._headers

    @property
    def query_params(self) -> dict[str, str]:
        if self._query is None:
            qs = bytes(self.scope.get("query_string", b"")).decode("latin-1")
            self._query = dict(parse_qsl(qs, keep_blank_values=True))
        return self._query

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.scope.setdefault("state", {})
        return state

    async def body(self) -> bytes:
        """The whole body; PayloadTooLarge past ``limits.max_body_bytes``
        (known from content-length without reading, else while reading)."""
        limit = int(self.service.config.limits.max_body_bytes)
        declared = self.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise PayloadTooLarge(_too_large(limit))
            except ValueError:
                raise BadRequest("invalid content-length header") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(_too_large(limit))
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> str:
    return (
        f"the request body is over {limit} bytes (limits.max_body_bytes); "
        "send less, or raise limits.max_body_bytes"
    )


class JsonOut:
    """A whole JSON answer (already encoded)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.body = body
        self.status = status
        self.headers = headers


class StreamOut:
    """A streamed answer: ``chunks`` are sent as they come; after
    ``keepalive_every`` quiet seconds, ``keepalive()`` (when not empty)."""

    __slots__ = ("chunks", "headers", "keepalive", "keepalive_every", "media_type")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        media_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
        keepalive: Callable[[], bytes] | None = None,
        keepalive_every: float = 10.0,
    ) -> None:
        self.chunks = chunks
        self.media_type = media_type
        self.headers = headers
        self.keepalive = keepalive
        self.keepalive_every = keepalive_every


Out = JsonOut | StreamOut


def _content_type(media_type: str) -> bytes:
    if media_type.startswith("text/") and "charset" not in media_type:
        media_type += "; charset=utf-8"
    return media_type.encode("latin-1")


Raw = list[tuple[bytes, bytes]]


def _header_list(headers: dict[str, str] | None, base: Raw) -> Raw:
    if headers:
        base.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return base


async def send_json(send: Send, out: JsonOut) -> None:
    headers = _header_list(
        out.headers,
        [(b"content-type", b"application/json"), (b"content-length", str(len(out.body)).encode())],
    )
    await send({"type": "http.response.start", "status": out.status, "headers": headers})
    await send({"type": "http.response.body", "body": out.body, "more_body": False})


class _Watch:
    """Watches ``receive`` for the client's disconnect while the current task
    works; on disconnect, cancels that task (``gone`` says why it was
    cancelled). With ``keepalive``, also sends it after quiet periods."""

    def __init__(
        self,
        receive: Receive,
        send: Send | None = None,
        keepalive: Callable[[], bytes] | None = None,
        every: float = 0.0,
    ) -> None:
        self.gone = False
        self.last_sent = time.monotonic()
        self._task = asyncio.current_task()
        self._receive = receive
        self._send = send
        self._keepalive = keepalive
        self._every = every
        self._stopped = False
        self._watcher = asyncio.ensure_future(self._run())

    def _disconnected(self) -> None:
        if not self._stopped:
            self.gone = True
            if self._task is not None:
                self._task.cancel()

    async def _run(self) -> None:
        keepalive = self._keepalive
        if keepalive is None:  # only the disconnect to wait for
            while (await self._receive())["type"] != "http.disconnect":
                pass
            self._disconnected()
            return
        pending: asyncio.Future[Any] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(self._receive())
                wait = max(0.0, self.last_sent + self._every - time.monotonic())
                await asyncio.wait({pending}, timeout=wait)
                if pending.done():
                    message, pending = pending.result(), None
                    if message["type"] == "http.disconnect":
                        self._disconnected()
                        return
                    continue
                if self._send is not None and not self._stopped:
                    if time.monotonic() - self.last_sent >= self._every:
                        data = keepalive()
                        self.last_sent = time.monotonic()
                        if data:
                            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            if pending is not None and not pending.done():
                pending.cancel()

    def stop(self) -> None:
        self._stopped = True
        self._watcher.cancel()


@contextlib.contextmanager
def _absorb_disconnect(watch: _Watch) -> Iterator[None]:
    """A cancel the watcher caused becomes ClientGone; any other cancel
    (shutdown) stays a cancel."""
    try:
        yield
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if watch.gone and task is not None:
            task.uncancel()
            raise ClientGone() from None
        raise
    finally:
        watch.stop()


async def until_disconnect(req: Req, work: Coroutine[Any, Any, Any]) -> Any:
    """Await ``work`` in this task; ClientGone (and ``work`` cancelled) when
    the client disconnects first. Call after the body has been read."""
    conn: Disconnects | None = req.scope.get(CONNECTION_KEY)
    task = asyncio.current_task()
    if conn is None or task is None:
        return await _watched(req.receive, work)
    if not conn.watch(task):
        work.close()
        raise ClientGone()
    try:
        return await work
    except asyncio.CancelledError:
        if conn.unwatch(task):
            task.uncancel()
            raise ClientGone() from None
        raise
    finally:
        conn.unwatch(task)


async def _watched(receive: Receive, work: Awaitable[Any]) -> Any:
    watch = _Watch(receive)
    with _absorb_disconnect(watch):
        return await work


async def send_stream(send: Send, receive: Receive, out: StreamOut) -> None:
    headers = _header_list(out.headers, [(b"content-type", _content_type(out.media_type))])
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunks = out.chunks
    watch = _Watch(receive, send, out.keepalive, out.keepalive_every)
    try:
        with _absorb_disconnect(watch):
            async for chunk in chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    watch.last_sent = time.monotonic()
    except ClientGone:
        return
    except Exception:
        # The status line is out: all that is left is to end the stream.
        log.exception("stream producer failed after the response started")
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_out(send: Send, receive: Receive, out: Out) -> None:
    if isinstance(out, StreamOut):
        await send_stream(send, receive, out)
    else:
        await send_json(send, out)
