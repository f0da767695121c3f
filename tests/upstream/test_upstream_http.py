"""The one upstream HTTP client (daemon.upstream.http) against real servers
on loopback: aiohttp.web apps for well-behaved answers, raw asyncio servers
for what a well-behaved server never does (closing a keep-alive connection
under a request, a proxy, a stall)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from daemon.config import Config
from daemon.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from daemon.upstream.http import HttpClient

SSE = b'data: {"n": 1}\r\n\r\ndata: {"n": 2}\n\ndata: {"n": 3}\n\n'
HEADERS = {"content-type": "application/json", "authorization": "Bearer ya29.secret-token"}


def config(read_timeout: float = 30.0, proxy: str = "") -> Config:
    cfg = Config()
    cfg.upstream.stream_idle_timeout = read_timeout  # type: ignore[assignment]
    cfg.proxy.request_timeout = read_timeout  # type: ignore[assignment]
    cfg.upstream.connect_timeout = 5
    cfg.proxy.upstream_proxy = proxy
    return cfg


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient(config())
    yield c
    await c.aclose()


# ------------------------------------------------------------------ aiohttp.web servers


class App:
    """A well-behaved upstream: JSON (gzip), errors, SSE (gzip), an endless
    stream, a stall, a redirect."""

    def __init__(self) -> None:
        self.closed_early = asyncio.Event()
        self.headers: dict[str, str] = {}
        self.peers: list[object] = []  # the connection of each request
        self.redirect_target_hits = 0
        self.url = ""

    async def json_gz(self, request: web.Request) -> web.Response:
        self.headers = dict(request.headers)
        self.peers.append(request.transport)
        body = await request.read()
        return web.Response(
            body=gzip.compress(b'{"echo": ' + body + b"}"),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )

    async def form(self, request: web.Request) -> web.Response:
        data = await request.post()
        return web.json_response({"ctype": request.content_type, "got": dict(data)})

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "auth": request.headers.get("authorization")})

    async def error(self, request: web.Request) -> web.Response:
        return web.Response(status=429, body=b'{"error": {"code": 429}}', headers={"retry-after": "7"})

    async def sse_gz(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "content-encoding": "gzip"})
        await resp.prepare(request)
        await resp.write(gzip.compress(SSE))
        await resp.write_eof()
        return resp

    async def long_line(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + b"x" * 300_000)  # past aiohttp's line limit, in pieces
        await resp.write(b"y" * 300_000 + b"\n\n")
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

    async def stall(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"n": 1}\n\n')
        await asyncio.sleep(10)
        return resp

    async def silent(self, request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(body=b"{}")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(location="/json")

    def app(self) -> web.Application:
        app = web.Application()
        for path, handler in (
            ("/json", self.json_gz),
            ("/form", self.form),
            ("/error", self.error),
            ("/sse", self.sse_gz),
            ("/long", self.long_line),
            ("/endless", self.endless),
            ("/stall", self.stall),
            ("/silent", self.silent),
            ("/redirect", self.redirect),
        ):
            app.router.add_post(path, handler)
        app.router.add_get("/get", self.get)
        return app


async def serve(srv: App, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    runner = web.AppRunner(srv.app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    return runner


@pytest.fixture
async def app() -> AsyncIterator[App]:
    srv = App()
    runner = await serve(srv)
    yield srv
    await runner.cleanup()


# ------------------------------------------------------------------ unary calls


async def test_post_undoes_gzip_sends_headers_and_reuses_the_connection(app: App, client: HttpClient) -> None:
    for n in range(3):
        reply = await client.post(app.url + "/json", b'{"a": %d}' % n, HEADERS)
        assert reply.status_code == 200
        assert reply.content == b'{"echo": {"a": %d}}' % n
    assert app.headers["Authorization"] == "Bearer ya29.secret-token"
    assert app.headers["Content-Type"] == "application/json"
    assert "aiohttp" not in app.headers.get("User-Agent", "")
    assert "gzip" in app.headers["Accept-Encoding"]
    # Keep-alive: one connection carried all three.
    assert len(app.peers) == 3 and app.peers[0] is app.peers[1] is app.peers[2]


async def test_error_status_and_headers_are_a_reply(app: App, client: HttpClient) -> None:
    reply = await client.post(app.url + "/error", b"{}", HEADERS)
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "7" and reply.headers["retry-after"] == "7"
    assert b'"code": 429' in reply.content


async def test_form_post_and_get(app: App, client: HttpClient) -> None:
    reply = await client.post_form(app.url + "/form", {"grant_type": "refresh_token", "x": "a b&c"}, {})
    assert reply.status_code == 200
    assert b'"ctype": "application/x-www-form-urlencoded"' in reply.content
    assert b'"x": "a b&c"' in reply.content
    reply = await client.get(app.url + "/get", {"authorization": "Bearer t"})
    assert reply.content == b'{"method": "GET", "auth": "Bearer t"}'


async def test_a_redirect_is_not_followed(app: App, client: HttpClient) -> None:
    app.headers = {}
    with pytest.raises(UpstreamError) as info:
        await client.post(app.url + "/redirect", b"{}", HEADERS)
    assert type(info.value) is UpstreamError and info.value.status == 502
    assert info.value.upstream_status == 302 and "redirect" in info.value.message
    assert app.headers == {}  # /json was never asked


async def test_connect_refused_is_unavailable(client: HttpClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(UpstreamUnavailable, match=f"cannot connect to http://127.0.0.1:{port}"):
            await client.post(f"http://127.0.0.1:{port}/v1internal:x?key=secret", b"{}", HEADERS)


async def test_a_silent_upstream_is_a_timeout(app: App) -> None:
    c = HttpClient(config(read_timeout=0.3))
    try:
        with pytest.raises(UpstreamTimeout) as info:
            await c.post(app.url + "/silent", b"{}", HEADERS)
        assert info.value.status == 504
    finally:
        await c.aclose()


async def test_messages_hold_no_path_or_token(client: HttpClient) -> None:
    with pytest.raises(UpstreamError) as info:
        await client.post("http://127.0.0.1:9/v1internal:secretpath", b"{}", HEADERS)
    assert "secretpath" not in info.value.message and "ya29" not in info.value.message


# ------------------------------------------------------------------ streams


async def test_stream_lines_through_gzip(app: App, client: HttpClient) -> None:
    reply = await client.open(app.url + "/sse", b"{}", HEADERS)
    try:
        lines = [line async for line in reply.aiter_lines()]
    finally:
        await reply.aclose()
    assert lines == ['data: {"n": 1}', "", 'data: {"n": 2}', "", 'data: {"n": 3}', ""]


async def test_a_line_longer_than_any_buffer(app: App, client: HttpClient) -> None:
    reply = await client.open(app.url + "/long", b"{}", HEADERS)
    try:
        lines = [line async for line in reply.aiter_lines()]
    finally:
        await reply.aclose()
    assert lines == ["data: " + "x" * 300_000 + "y" * 300_000, ""]


async def test_closing_mid_stream_reaches_the_server(app: App, client: HttpClient) -> None:
    reply = await client.open(app.url + "/endless", b"{}", HEADERS)
    got = []
    async for line in reply.aiter_lines():
        if line:
            got.append(line)
        if len(got) == 3:
            break
    await reply.aclose()
    await asyncio.wait_for(app.closed_early.wait(), 5)
    await reply.aclose()  # twice is fine


async def test_a_stalled_stream_is_a_timeout(app: App) -> None:
    c = HttpClient(config(read_timeout=0.3))
    try:
        reply = await c.open(app.url + "/stall", b"{}", HEADERS)
        lines = []
        with pytest.raises(UpstreamTimeout, match="sent nothing"):
            async for line in reply.aiter_lines():
                lines.append(line)
        assert lines == ['data: {"n": 1}', ""]
        await reply.aclose()
    finally:
        await c.aclose()


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_with_a_ca_from_ssl_cert_file(
    app: App, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    tls = App()
    runner = await serve(tls, server_ctx)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    try:
        # Without the CA: refused, and the message says what to do.
        c = HttpClient(config())
        try:
            with pytest.raises(UpstreamUnavailable, match="not trusted.*SSL_CERT_FILE"):
                await c.post(tls.url + "/json", b"{}", HEADERS)
        finally:
            await c.aclose()
        # The trust store read through SSL_CERT_FILE, as the daemon does.
        monkeypatch.setenv("SSL_CERT_FILE", str(cafile))
        c = HttpClient(config())
        try:
            reply = await c.post(tls.url + "/json", b'{"tls": 1}', HEADERS)
            assert reply.content == b'{"echo": {"tls": 1}}'
            stream = await c.open(tls.url + "/sse", b"{}", HEADERS)
            assert [line async for line in stream.aiter_lines()][0] == 'data: {"n": 1}'
            await stream.aclose()
        finally:
            await c.aclose()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ raw servers


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A raw TCP server on loopback: ``handler`` per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.url = ""
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Raw:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    lengths = [int(h.split(b":", 1)[1]) for h in lines if h.startswith(b"content-length:")]
    await reader.readexactly(lengths[0] if lengths else 0)
    return head


OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ok": true}'


class KeepAliveCloser:
    """Answers the first request of each connection (keep-alive), then on the
    next one does ``then``: close unanswered (``"close"``, what a server does
    when its idle timeout meets a request in flight), or send part of an
    answer and close (``"partial"``). ``first=False``: no answer at all."""

    def __init__(self, then: str = "close", first: bool = True) -> None:
        self.then = then
        self.first = first
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            await read_request(reader)
            self.requests += 1
            if served or not self.first:
                if self.then == "partial":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
                    await writer.drain()
                return  # closed with the request (partly) unanswered
            served += 1
            writer.write(OK)
            await writer.drain()


async def test_a_reused_connection_closed_under_a_post_is_retried_once(client: HttpClient) -> None:
    behaviour = KeepAliveCloser()
    async with Raw(behaviour) as srv:
        for n in range(3):
            reply = await client.post(srv.url + "/x", b"{}", HEADERS)
            assert reply.status_code == 200 and reply.content == b'{"ok": true}', n
        # Each reuse met a close and went again on a new connection.
        assert srv.connections == 3 and behaviour.requests == 5
        stream = await client.open(srv.url + "/x", b"{}", HEADERS)
        assert [line async for line in stream.aiter_lines()] == ['{"ok": true}']
        await stream.aclose()
        assert srv.connections == 4 and behaviour.requests == 7


async def test_a_get_is_retried_by_aiohttp_alone(client: HttpClient) -> None:
    behaviour = KeepAliveCloser()
    async with Raw(behaviour) as srv:
        for _ in range(2):
            assert (await client.get(srv.url + "/x", {})).status_code == 200
        assert srv.connections == 2 and behaviour.requests == 3  # once more, not twice


async def test_a_fresh_connection_dropped_after_the_request_is_not_retried(client: HttpClient) -> None:
    behaviour = KeepAliveCloser(first=False)
    async with Raw(behaviour) as srv:
        with pytest.raises(UpstreamUnavailable, match="closed the connection without answering"):
            await client.post(srv.url + "/x", b"{}", HEADERS)
        with pytest.raises(UpstreamUnavailable):
            await client.open(srv.url + "/x", b"{}", HEADERS)
        assert behaviour.requests == 2 and srv.connections == 2


async def test_a_partial_answer_on_a_reused_connection_is_not_retried(client: HttpClient) -> None:
    behaviour = KeepAliveCloser(then="partial")
    async with Raw(behaviour) as srv:
        assert (await client.post(srv.url + "/x", b"{}", HEADERS)).status_code == 200
        with pytest.raises(UpstreamError):
            await client.post(srv.url + "/x", b"{}", HEADERS)
        assert behaviour.requests == 2 and srv.connections == 1


async def test_an_http_proxy_carries_the_requests() -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(OK)
            await writer.drain()

    async with Raw(proxy) as srv:
        c = HttpClient(config(proxy=srv.url))
        try:
            # A host that does not resolve: only the proxy can answer.
            reply = await c.post("http://upstream.invalid:8080/v1internal:x", b"{}", HEADERS)
            assert reply.content == b'{"ok": true}'
        finally:
            await c.aclose()
    assert seen and seen[0].startswith(b"POST http://upstream.invalid:8080/v1internal:x HTTP/1.1\r\n")


async def test_a_socks5_proxy_carries_the_requests(app: App) -> None:
    asked: list[tuple[str, int]] = []

    async def socks5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 1928, no authentication, CONNECT by domain name (socks5h).
        ver, n = await reader.readexactly(2)
        await reader.readexactly(n)
        writer.write(b"\x05\x00")
        _, cmd, _, atyp = await reader.readexactly(4)
        assert cmd == 1 and atyp == 3
        name = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        asked.append((name, port))
        target_port = int(app.url.rsplit(":", 1)[1])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writer.write(b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async with Raw(socks5) as srv:
        c = HttpClient(config(proxy=f"socks5h://127.0.0.1:{srv.port}"))
        try:
            reply = await c.post("http://upstream.invalid:9999/json", b'{"s": 5}', HEADERS)
            assert reply.content == b'{"echo": {"s": 5}}'
        finally:
            await c.aclose()
    assert asked == [("upstream.invalid", 9999)]
