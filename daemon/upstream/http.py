"""The one shared outbound HTTP client (kept behind this module so it can be swapped).

``make_client`` gives the httpx client every module uses (over aiohttp, or
httpx's own transport when ``proxy.upstream_proxy`` is set); ``lane(client)``
gives the lean interface the hot upstream calls use (``Lane``): the
client's own HTTP/1.1 lane (``daemon.upstream.h1``) when it has one, else
the httpx client itself. Both raise httpx's exceptions.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import httpx

from daemon.config import Config

# Hundreds of concurrent streams share one pool; a stream holds a connection
# for its whole life, so this is also the ceiling on open upstream streams.
MAX_CONNECTIONS = 2048
MAX_KEEPALIVE = 128


def make_client(cfg: Config) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=float(cfg.upstream.connect_timeout),
        # read applies per chunk: it is the idle timeout of a stream, which
        # must tolerate long silent thinking.
        read=float(max(cfg.upstream.stream_idle_timeout, cfg.proxy.request_timeout)),
        write=30.0,
        pool=30.0,
    )
    if not cfg.proxy.upstream_proxy:
        from daemon.upstream.aio_transport import AiohttpTransport
        from daemon.upstream.h1 import H1Lane

        hot = H1Lane(
            connect_timeout=float(cfg.upstream.connect_timeout),
            read_timeout=float(timeout.read or 300.0),
            pool_timeout=float(timeout.pool or 30.0),
            max_connections=MAX_CONNECTIONS,
        )
        transport = AiohttpTransport(max_connections=MAX_CONNECTIONS, also_close=hot)
        client = httpx.AsyncClient(
            timeout=timeout, transport=transport, trust_env=False, follow_redirects=False
        )
        _lanes[client] = hot
        return client
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE),
        proxy=cfg.proxy.upstream_proxy,
        http2=False,
        trust_env=False,
        follow_redirects=False,
    )


class Reply(Protocol):
    """An upstream answer on the lane: status and headers at once; the body
    read whole (``post``) or on demand (``open``; the caller closes it)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...

    async def aread(self) -> bytes: ...
    def aiter_lines(self) -> AsyncIterator[str]: ...
    async def aclose(self) -> None: ...


class Lane(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply: ...
    async def open(self, url: str, body: bytes, headers: dict[str, str]) -> Reply: ...


class HttpxLane:
    """The lane over an httpx client (an upstream proxy is set)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        return await self._client.post(url, content=body, headers=headers)

    async def open(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        req = self._client.build_request("POST", url, content=body, headers=headers)
        return await self._client.send(req, stream=True)


_lanes: weakref.WeakKeyDictionary[httpx.AsyncClient, Lane] = weakref.WeakKeyDictionary()


def lane(client: httpx.AsyncClient) -> Lane:
    found = _lanes.get(client)
    if found is None:
        found = _lanes[client] = HttpxLane(client)
    return found
