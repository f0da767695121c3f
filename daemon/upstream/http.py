"""The one shared outbound HTTP client (kept behind this module so it can be swapped)."""

from __future__ import annotations

import httpx

from daemon.config import Config

# Hundreds of concurrent streams share one pool.
MAX_CONNECTIONS = 512
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
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE),
        proxy=cfg.proxy.upstream_proxy or None,
        http2=False,
        trust_env=False,
        follow_redirects=False,
    )
