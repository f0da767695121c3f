"""The one shared outbound HTTP client (kept behind this module so it can be swapped)."""

from __future__ import annotations

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

        return httpx.AsyncClient(
            timeout=timeout,
            transport=AiohttpTransport(max_connections=MAX_CONNECTIONS),
            trust_env=False,
            follow_redirects=False,
        )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE),
        proxy=cfg.proxy.upstream_proxy,
        http2=False,
        trust_env=False,
        follow_redirects=False,
    )
