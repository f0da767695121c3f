"""An httpx transport over aiohttp: the httpx API the code uses, aiohttp's
connection pool underneath.

Why: the benchmark profile (tests/bench) put httpcore at 57-63% of the
daemon's CPU under load (a poll() per pooled connection per request and a
pool scan that grows with concurrency); the same workload over aiohttp cost
a third of the CPU per request at concurrency 16 (PERFORMANCE.md measured
the same order). httpx stays the interface (timeouts, streaming, errors), so
this module is the only place that knows.

Used when no ``proxy.upstream_proxy`` is set; proxies go through httpx's own
transport, which speaks http(s) and socks5.

The hot calls (generateContent and its stream, many per second) skip this
layer and aiohttp: they go over ``daemon.upstream.h1``.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

# Hop-by-hop / computed headers aiohttp sets itself.
_SKIP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    t: dict[str, Any] = request.extensions.get("timeout") or {}
    return aiohttp.ClientTimeout(
        total=None,
        connect=t.get("pool"),
        sock_connect=t.get("connect"),
        # Per read, like httpx's read timeout: a stream may be silent this long.
        sock_read=t.get("read"),
    )


def _stale_connection(exc: BaseException) -> bool:
    """The server closed a pooled keep-alive connection just as a request
    went out on it (no byte of an answer came back): the request never
    reached the application, and one retry on a new connection is safe.
    A failure to connect, or a timeout, is not this."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in _RESET_ERRNOS


_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def _map_error(exc: BaseException, request: httpx.Request) -> httpx.HTTPError:
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(str(exc) or "connect timed out", request=request)
        return httpx.ReadTimeout(str(exc) or "read timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request)
    return httpx.ReadError(str(exc) or type(exc).__name__, request=request)


class _Body(httpx.AsyncByteStream):
    def __init__(self, resp: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._resp = resp
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map_error(exc, self._request) from None

    async def aclose(self) -> None:
        if self._resp.content.at_eof():
            self._resp.release()  # back to the pool
        else:
            # Not read to the end (client gone, error): close the connection so
            # the upstream sees the cancel at once.
            self._resp.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session behind the httpx API."""

    def __init__(self, *, max_connections: int, also_close: Any = None) -> None:
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._also_close = also_close  # the client's hot lane: closed with it

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max, limit_per_host=0, enable_cleanup_closed=True),
                # httpx decodes content-encoding from the headers we hand back.
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _SKIP_HEADERS]
        for attempt in (1, 2):
            try:
                resp = await self._get_session().request(
                    request.method,
                    str(request.url),
                    data=body or None,
                    headers=headers,
                    timeout=_timeout(request),
                    allow_redirects=False,
                    compress=None,
                )
                break
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt == 1 and _stale_connection(exc):
                    continue
                raise _map_error(exc, request) from None
        return httpx.Response(
            resp.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers],
            stream=_Body(resp, request),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def aclose(self) -> None:
        if self._also_close is not None:
            await self._also_close.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
