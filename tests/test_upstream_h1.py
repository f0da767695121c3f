"""The lean HTTP/1.1 lane (daemon.upstream.h1) against real servers on
loopback: what test_upstream_lane checks for every lane, plus what only a
client of our own has to get right — TLS, keep-alive reuse and expiry, the
pool's bound, back-pressure, bodies read to EOF, cancels and bad answers."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import trustme
from aiohttp import web

from daemon.upstream import h1
from daemon.upstream.h1 import H1Lane

HEADERS = {"content-type": "application/json", "authorization": "Bearer t"}


def new_lane(**kw: float) -> H1Lane:
    args: dict[str, float] = {"connect_timeout": 5.0, "read_timeout": 10.0, "pool_timeout": 5.0}
    args.update(kw)
    return H1Lane(max_connections=int(args.pop("max_connections", 64)), **args)  # type: ignore[arg-type]


class Site:
    """An aiohttp server that counts connections and requests."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.requests = 0
        self.gone = asyncio.Event()
        self.url = ""

    def seen(self, request: web.Request) -> None:
        self.requests += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(peer)


async def serve(
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()

    async def echo(request: web.Request) -> web.Response:
        s.seen(request)
        return web.json_response({"got": (await request.read()).decode()})

    async def slow(request: web.Request) -> web.Response:
        s.seen(request)
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.json_response({})

    async def big(request: web.Request) -> web.StreamResponse:
        s.seen(request)
        resp = web.StreamResponse()
        await resp.prepare(request)
        block = b"x" * 65536 + b"\n"
        try:
            for _ in range(64):  # 4 MiB
                await resp.write(block)
        except (ConnectionError, asyncio.CancelledError):
            s.gone.set()
            raise
        await resp.write_eof()
        return resp

    runner, s.url = await serve({"/echo": echo, "/slow": slow, "/big": big})
    yield s
    await runner.cleanup()


async def test_keep_alive_reuses_one_connection(site: Site) -> None:
    lane = new_lane()
    try:
        for i in range(5):
            reply = await lane.post(site.url + "/echo", f"{i}".encode(), dict(HEADERS))
            assert reply.status_code == 200 and reply.content == b'{"got": "%d"}' % i
        assert len(site.peers) == 1 and site.requests == 5
        assert lane.idle_connections() == 1
    finally:
        await lane.aclose()


async def test_an_idle_connection_past_its_expiry_is_not_reused(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1, "KEEPALIVE_EXPIRY", 0.05)
    lane = new_lane()
    try:
        await lane.post(site.url + "/echo", b"a", dict(HEADERS))
        await asyncio.sleep(0.1)
        await lane.post(site.url + "/echo", b"b", dict(HEADERS))
        assert len(site.peers) == 2
    finally:
        await lane.aclose()


async def test_tls_with_sni_and_the_given_trust() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"tls": request.secure})

    runner, url = await serve({"/echo": echo}, server_ctx)
    url = url.replace("127.0.0.1", "localhost")
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    lane = H1Lane(connect_timeout=5, read_timeout=5, pool_timeout=5, max_connections=4, ssl_context=trusting)
    untrusting = new_lane()  # the system's trust store does not know this CA
    try:
        reply = await lane.post(url + "/echo", b"{}", dict(HEADERS))
        assert reply.content == b'{"tls": true}'
        assert names == ["localhost"]
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.post(url + "/echo", b"{}", dict(HEADERS))
    finally:
        await lane.aclose()
        await untrusting.aclose()
        await runner.cleanup()


async def test_the_pool_bound_holds_and_times_out(site: Site) -> None:
    lane = new_lane(max_connections=2, pool_timeout=0.3)
    try:
        busy = [
            asyncio.ensure_future(lane.post(site.url + "/slow?s=1", b"{}", dict(HEADERS))) for _ in range(2)
        ]
        await asyncio.sleep(0.2)
        with pytest.raises(httpx.PoolTimeout):
            await lane.post(site.url + "/echo", b"{}", dict(HEADERS))
        await asyncio.gather(*busy)
        # Freed: the next request gets a pooled connection.
        reply = await lane.post(site.url + "/echo", b"{}", dict(HEADERS))
        assert reply.status_code == 200
    finally:
        await lane.aclose()


async def test_back_pressure_bounds_what_is_buffered(site: Site) -> None:
    lane = new_lane()
    try:
        reply = await lane.open(site.url + "/big", b"{}", dict(HEADERS))
        conn = reply._conn
        assert conn is not None
        for _ in range(100):  # the server writes as fast as it can; nobody reads
            if conn.paused:
                break
            await asyncio.sleep(0.05)
        assert conn.paused
        assert conn.buffered < h1.HIGH_WATER + 2 * 65537
        lines = 0
        peak = 0
        async for _ in reply.aiter_lines():
            lines += 1
            peak = max(peak, conn.buffered)
        assert lines == 64
        assert peak < h1.HIGH_WATER + 2 * 65537
        await reply.aclose()
    finally:
        await lane.aclose()


async def test_closing_an_unfinished_reply_reaches_the_server(site: Site) -> None:
    lane = new_lane()
    try:
        reply = await lane.open(site.url + "/big", b"{}", dict(HEADERS))
        async for _ in reply.aiter_lines():
            break
        await reply.aclose()
        await asyncio.wait_for(site.gone.wait(), 5)
        assert lane.idle_connections() == 0  # not put back half-read
    finally:
        await lane.aclose()


async def test_a_cancel_while_waiting_closes_the_connection() -> None:
    async with RawServer(b"", close=False) as srv:  # reads the request, never answers
        lane = new_lane()
        try:
            task = asyncio.ensure_future(lane.post(srv.url + "/x", b"{}", dict(HEADERS)))
            await asyncio.wait_for(srv.got_request.wait(), 10)  # the request is out: now the cancel
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(srv.client_left.wait(), 5)
        finally:
            await lane.aclose()


async def test_header_injection_is_refused() -> None:
    lane = new_lane()
    try:
        with pytest.raises(httpx.LocalProtocolError):
            await lane.post("http://127.0.0.1:9/x", b"{}", {"authorization": "Bearer t\r\nx-evil: 1"})
    finally:
        await lane.aclose()


class RawServer:
    """Answers every request with the given bytes, then closes (or not)."""

    def __init__(self, answer: bytes, close: bool = True) -> None:
        self.answer = answer
        self.close = close
        self.url = ""
        self.client_left = asyncio.Event()
        self.got_request = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.got_request.set()
            if self.answer:
                writer.write(self.answer)
                await writer.drain()
            if self.close:
                return
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):  # until the client closes
                    pass
            self.client_left.set()
        finally:
            writer.close()


async def test_a_body_delimited_by_the_close_is_read_whole() -> None:
    async with RawServer(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n"
    ) as srv:
        lane = new_lane()
        try:
            reply = await lane.open(srv.url + "/x", b"{}", dict(HEADERS))
            lines = [line async for line in reply.aiter_lines()]
            await reply.aclose()
            assert lines == ["data: 1", "", "data: 2", ""]
            assert lane.idle_connections() == 0
        finally:
            await lane.aclose()


async def test_an_answer_cut_short_is_an_error_and_not_retried() -> None:
    async with RawServer(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial') as srv:
        lane = new_lane()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="mid-answer"):
                await lane.post(srv.url + "/x", b"{}", dict(HEADERS))
        finally:
            await lane.aclose()


async def test_garbage_is_a_protocol_error() -> None:
    async with RawServer(b"SMTP ready\r\n\r\n", close=False) as srv:
        lane = new_lane()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="invalid HTTP"):
                await lane.post(srv.url + "/x", b"{}", dict(HEADERS))
        finally:
            await lane.aclose()


async def test_a_corrupt_gzip_body_is_a_decoding_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 9\r\n\r\nnot gzip!"
    async with RawServer(answer, close=False) as srv:
        lane = new_lane()
        try:
            with pytest.raises(httpx.DecodingError):
                await lane.post(srv.url + "/x", b"{}", dict(HEADERS))
        finally:
            await lane.aclose()


async def test_a_connect_that_hangs_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*args: object, **kw: object) -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(h1.aiohappyeyeballs, "start_connection", never)
    lane = new_lane(connect_timeout=0.2)
    try:
        with pytest.raises(httpx.ConnectTimeout):
            await lane.post("http://127.0.0.1:9/x", b"{}", dict(HEADERS))
        # The slot it held is free again.
        assert not lane._slots.locked()
    finally:
        await lane.aclose()


async def test_an_unknown_host_is_a_connect_error() -> None:
    lane = new_lane()
    try:
        with pytest.raises(httpx.ConnectError):
            await lane.post("http://no-such-host.invalid/x", b"{}", dict(HEADERS))
    finally:
        await lane.aclose()


async def test_connections_left_by_a_burst_are_closed_once_expired(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1, "KEEPALIVE_EXPIRY", 0.2)
    lane = new_lane()
    try:
        await asyncio.gather(*[lane.post(site.url + "/echo", b"{}", dict(HEADERS)) for _ in range(5)])
        assert lane.idle_connections() == 5
        await asyncio.sleep(0.3)
        await lane.post(site.url + "/echo", b"{}", dict(HEADERS))  # one in use, the rest expired
        assert lane.idle_connections() == 1
    finally:
        await lane.aclose()
