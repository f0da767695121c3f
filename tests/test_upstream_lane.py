"""The lean upstream lane (daemon.upstream.http.lane) against a real HTTP
server on loopback: both implementations (aiohttp's session, and the httpx
client used when an upstream proxy is set) must behave the same — gzip
undone, SSE lines split, errors as httpx exceptions, an early close felt by
the server."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from daemon.config import Config
from daemon.upstream.http import lane, make_client

SSE = b'data: {"n": 1}\r\n\r\ndata: {"n": 2}\n\ndata: {"n": 3}\n\n'


class Server:
    def __init__(self) -> None:
        self.closed_early = asyncio.Event()
        self.headers: dict[str, str] = {}
        self.url = ""

    async def json_gz(self, request: web.Request) -> web.Response:
        self.headers = dict(request.headers)
        body = await request.read()
        return web.Response(
            body=gzip.compress(b'{"echo": ' + body + b"}"),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )

    async def error(self, request: web.Request) -> web.Response:
        return web.Response(status=429, body=b'{"error": {"code": 429}}', headers={"retry-after": "7"})

    async def sse_gz(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "content-encoding": "gzip"})
        await resp.prepare(request)
        await resp.write(gzip.compress(SSE))
        await resp.write_eof()
        return resp

    async def endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(10_000):
                await resp.write(f'data: {{"n": {i}}}\n\n'.encode())
                await asyncio.sleep(0.01)
        except (ConnectionResetError, asyncio.CancelledError):
            self.closed_early.set()
            raise
        return resp

    async def silent(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=b"{}")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/json", srv.json_gz)
    app.router.add_post("/error", srv.error)
    app.router.add_post("/sse", srv.sse_gz)
    app.router.add_post("/endless", srv.endless)
    app.router.add_post("/silent", srv.silent)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"http://127.0.0.1:{port}"
    yield srv
    await runner.cleanup()


def _config(read_timeout: float = 30.0) -> Config:
    cfg = Config()
    cfg.upstream.stream_idle_timeout = read_timeout
    cfg.proxy.request_timeout = read_timeout
    return cfg


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The daemon's own client (aiohttp lane), or a plain httpx client: what
    the lane is built over when ``proxy.upstream_proxy`` is set."""
    c = (
        make_client(_config())
        if request.param == "aiohttp"
        else httpx.AsyncClient(timeout=30, trust_env=False)
    )
    yield c
    await c.aclose()


HEADERS = {"content-type": "application/json", "accept-encoding": "gzip", "authorization": "Bearer t"}


async def test_post_undoes_gzip_and_sends_headers(server: Server, client: httpx.AsyncClient) -> None:
    reply = await lane(client).post(server.url + "/json", b'{"a": 1}', dict(HEADERS))
    assert reply.status_code == 200
    assert reply.content == b'{"echo": {"a": 1}}'
    assert server.headers["Authorization"] == "Bearer t"
    assert server.headers["Content-Type"] == "application/json"


async def test_error_status_and_headers(server: Server, client: httpx.AsyncClient) -> None:
    reply = await lane(client).post(server.url + "/error", b"{}", dict(HEADERS))
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "7" and reply.headers["retry-after"] == "7"
    assert b'"code": 429' in reply.content


async def test_stream_lines_through_gzip(server: Server, client: httpx.AsyncClient) -> None:
    reply = await lane(client).open(server.url + "/sse", b"{}", dict(HEADERS))
    try:
        lines = [line async for line in reply.aiter_lines()]
    finally:
        await reply.aclose()
    assert lines == ['data: {"n": 1}', "", 'data: {"n": 2}', "", 'data: {"n": 3}', ""]


async def test_early_close_reaches_the_server(server: Server, client: httpx.AsyncClient) -> None:
    reply = await lane(client).open(server.url + "/endless", b"{}", dict(HEADERS))
    got = []
    async for line in reply.aiter_lines():
        if line:
            got.append(line)
        if len(got) == 3:
            break
    await reply.aclose()
    await asyncio.wait_for(server.closed_early.wait(), 5)


async def test_unreachable_is_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await lane(client).post(f"http://127.0.0.1:{port}/x", b"{}", dict(HEADERS))


async def test_silence_is_a_read_timeout(server: Server) -> None:
    c = make_client(_config(read_timeout=0.3))
    try:
        with pytest.raises(httpx.ReadTimeout):
            await lane(c).post(server.url + "/silent", b"{}", dict(HEADERS))
    finally:
        await c.aclose()


class KeepAliveCloser:
    """A raw HTTP/1.1 server that answers the first request of a connection
    (keep-alive) and closes the connection, unanswered, on the next one —
    what a server does when its idle timeout meets a request in flight.
    With ``answer=False`` it never answers at all."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.connections = 0
        self.requests = 0
        self.url = ""
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                if not self.answer or served:
                    break  # closed with the request unanswered
                served += 1
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def closer() -> AsyncIterator[KeepAliveCloser]:
    srv = KeepAliveCloser()
    await srv.start()
    yield srv
    await srv.stop()


async def test_a_pooled_connection_closed_under_a_request_is_retried_once(closer: KeepAliveCloser) -> None:
    c = make_client(_config())
    try:
        for n in range(3):
            reply = await lane(c).post(closer.url + "/x", b"{}", dict(HEADERS))
            assert reply.status_code == 200 and reply.content == b'{"ok": true}', n
        # The lane: 3 connections, 5 requests (each reuse met a close).
        assert closer.connections == 3 and closer.requests == 5
        # The httpx API (token refresh, z.ai) has a pool of its own: the
        # first call opens a connection, the second reuses it and meets a close.
        for n in range(2):
            resp = await c.post(closer.url + "/y", content=b"{}")
            assert resp.status_code == 200, n
    finally:
        await c.aclose()
    assert closer.connections == 5 and closer.requests == 8


async def test_a_server_that_never_answers_is_tried_twice_only() -> None:
    srv = KeepAliveCloser(answer=False)
    await srv.start()
    c = make_client(_config())
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await lane(c).post(srv.url + "/x", b"{}", dict(HEADERS))
        assert srv.requests == 2
    finally:
        await c.aclose()
        await srv.stop()
