"""A lean HTTP/1.1 client for the hot upstream calls (``generateContent``
and its stream, several per user request): asyncio protocols, httptools'
parser (uvicorn's own), a keep-alive pool. It is the ``Lane`` that
``daemon.upstream.http.make_client`` hands out when no upstream proxy is
set; everything else (OAuth, onboarding, z.ai) keeps the httpx API.

Why: aiohttp's request machinery cost ~80-100 µs of CPU per request here
(a quarter of the daemon's whole cost per proxied request in the
benchmark's profile); this costs ~15-25 µs for the same call.

What it does, and no more:

- ``POST`` of a body of known length, head and body in one write;
- http and https (the system's trust store, SNI, ALPN ``http/1.1``);
  connecting tries every address of the host, IPv6 and IPv4 raced
  (happy eyeballs, as aiohttp does);
- answers with content-length, chunked, or read to EOF; gzip/deflate undone;
- keep-alive, a pool of at most ``max_connections`` (callers wait for a
  free one up to ``pool_timeout``); an idle connection older than
  ``KEEPALIVE_EXPIRY`` is not reused;
- a connect timeout, and a read timeout that is an idle timeout: it fires
  when nothing arrived for that long while an answer is awaited (a slow
  reader that holds the stream back does not count);
- back-pressure: past ``HIGH_WATER`` unread bytes the socket stops being
  read, until the reader catches up;
- a reply not read to its end is closed with its connection, so the
  upstream sees the cancel at once;
- a request whose connection the server closed before any byte of an
  answer (a keep-alive connection closed just as it went out) is sent
  once more on a new connection;
- errors as httpx exceptions, like the rest of the upstream code.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohappyeyeballs
import httptools
import httpx

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
KEEPALIVE_EXPIRY = 15.0
HAPPY_EYEBALLS_DELAY = 0.25


class _Target(NamedTuple):
    key: tuple[str, str, int]  # scheme, host, port: one pool each
    host: str
    port: int
    tls: bool
    path: str  # path and query, as sent
    host_header: str


@lru_cache(maxsize=256)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"cannot send to {parts.scheme or '?'}://{parts.hostname or '?'}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == (443 if tls else 80) else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target((parts.scheme, host, port), host, port, tls, path, host_header)


def _head(t: _Target, length: int, headers: dict[str, str]) -> bytes:
    lines = [f"POST {t.path} HTTP/1.1\r\nhost: {t.host_header}\r\ncontent-length: {length}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise httpx.LocalProtocolError(f"invalid characters in the {name!r} header")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a header has characters that HTTP/1.1 cannot carry") from None


class Headers(dict[str, str]):
    """Answer headers by lower-case name; lookups ignore case, like httpx's."""

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


_NO_ANSWER = "the upstream closed the connection without answering"


class _Conn(asyncio.Protocol):
    """One connection; carries one exchange at a time."""

    def __init__(self, lane: H1Lane, key: tuple[str, str, int]) -> None:
        self.lane = lane
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.counted = True  # holds one of the pool's slots until lost
        self.idle_since = 0.0
        self.read_timeout = lane.read_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._begin_state()

    def _begin_state(self) -> None:
        self.status = 0
        self.headers = Headers()
        self.head_done = False
        self.complete = False
        self.to_eof = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: httpx.HTTPError | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- the exchange

    def send(self, data: bytes) -> None:
        self._begin_state()
        assert self.transport is not None
        self.transport.write(data)
        self.last_io = self.loop.time()
        self._timer = self.loop.call_at(self.last_io + self.read_timeout, self._check_idle)

    async def wait_head(self) -> None:
        while not self.head_done and self.error is None:
            await self._wait()
        if self.error is not None:
            raise self.error

    async def next_chunk(self) -> bytes:
        """The next piece of the body as it came; b"" at its end."""
        while True:
            if self.chunks:
                data = self.chunks.popleft()
                self.buffered -= len(data)
                if self.paused and self.buffered < LOW_WATER and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            await self._wait()

    async def _wait(self) -> None:
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, err: httpx.HTTPError) -> None:
        if self.error is None and not self.complete:
            self.error = err
        self._stop_timer()
        self._wake()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_idle(self) -> None:
        """The read timeout, checked once per period rather than re-armed
        per chunk: fires when nothing came for ``read_timeout`` seconds."""
        self._timer = None
        if self.complete or self.error is not None or self.transport is None:
            return
        now = self.loop.time()
        if self.paused or self.transport.get_write_buffer_size():
            self.last_io = now  # waiting on the reader, or still sending: not idle
        if now - self.last_io >= self.read_timeout:
            self._fail(
                httpx.ReadTimeout(f"no data from the upstream for {self.read_timeout:g}s", request=_REQUEST)
            )
            self.transport.close()
            return
        self._timer = self.loop.call_at(self.last_io + self.read_timeout, self._check_idle)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and self.error is None and not self.lost

    def close(self) -> None:
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_io = self.loop.time()
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(
                httpx.RemoteProtocolError(f"invalid HTTP answer from the upstream: {exc}", request=_REQUEST)
            )
            self.close()

    def eof_received(self) -> bool | None:
        self.lost = True  # not to be reused from now on
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.counted:
            self.counted = False
            self.lane._slot_freed()
        if self.to_eof and self.error is None and exc is None:
            self.complete = True  # a body delimited by the close
            self._stop_timer()
            self._wake()
            return
        if not self.got_bytes:
            err: httpx.HTTPError = httpx.RemoteProtocolError(_NO_ANSWER, request=_REQUEST)
        elif exc is None:
            err = httpx.RemoteProtocolError("the upstream closed the connection mid-answer", request=_REQUEST)
        else:
            err = httpx.ReadError(str(exc) or type(exc).__name__, request=_REQUEST)
        self._fail(err)

    # ---------------------------------------------------------------- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = dict.get(self.headers, key)
        dict.__setitem__(self.headers, key, text if old is None else f"{old}, {text}")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        ):
            self.to_eof = self.status >= 200 and self.status not in (204, 304)
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.to_eof = False
        self._stop_timer()
        self._wake()


# httpx exceptions want a request; the URL is never shown (errors name the
# endpoint base themselves).
_REQUEST = httpx.Request("POST", "http://upstream.invalid/")


class Reply:
    """An answer: status and headers at once; the body read whole
    (``aread``) or line by line (``aiter_lines``); ``aclose`` always."""

    __slots__ = ("_conn", "_decoder", "_lane", "content", "headers", "status_code")

    def __init__(self, lane: H1Lane, conn: _Conn) -> None:
        self._lane = lane
        self._conn: _Conn | None = conn
        self.status_code = conn.status
        self.headers = conn.headers
        self.content = b""
        encoding = conn.headers.get("content-encoding", "").strip().lower()
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()

    async def _next(self) -> bytes:
        conn = self._conn
        if conn is None:
            return b""
        while True:
            data: bytes = await conn.next_chunk()
            decoder = self._decoder
            if decoder is None:
                return data
            try:
                data = decoder.decompress(data) if data else decoder.flush()
            except zlib.error as exc:
                raise httpx.DecodingError(
                    f"cannot decode the upstream's answer: {exc}", request=_REQUEST
                ) from None
            if data or conn.complete and not conn.chunks:
                return data

    async def aread(self) -> bytes:
        parts = []
        while data := await self._next():
            parts.append(data)
        self.content = parts[0] if len(parts) == 1 else b"".join(parts)
        return self.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their ending (LF or CRLF), as they arrive."""
        pending = b""
        while data := await self._next():
            pending += data
            if b"\n" not in data:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._lane._release(conn)


class H1Lane:
    """The pool and the two calls of ``daemon.upstream.http.Lane``."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_timeout = pool_timeout
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl = ctx
        return self._ssl

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        reply = await self._request(url, body, headers)
        try:
            await reply.aread()
        finally:
            await reply.aclose()
        return reply

    async def open(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        return await self._request(url, body, headers)

    async def _request(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        t = _target(url)
        data = _head(t, len(body), headers) + body
        for attempt in (1, 2):
            conn = await self._checkout(t)
            try:
                conn.send(data)
                await conn.wait_head()
            except httpx.RemoteProtocolError:
                conn.close()
                if attempt == 1 and not conn.got_bytes:  # closed before any byte of an answer
                    continue
                raise
            except BaseException:
                conn.close()  # cancelled (the client left) or failed: the upstream sees it
                raise
            return Reply(self, conn)
        raise AssertionError("unreachable")

    async def _checkout(self, t: _Target) -> _Conn:
        idle = self._idle.get(t.key)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                closing = conn.lost or conn.transport is None or conn.transport.is_closing()
                if not closing and now - conn.idle_since < KEEPALIVE_EXPIRY:
                    return conn
                conn.close()
        return await self._connect(t)

    async def _connect(self, t: _Target) -> _Conn:
        if self._closed:
            raise httpx.ConnectError("the upstream client is closed", request=_REQUEST)
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self.pool_timeout)
            except TimeoutError:
                raise httpx.PoolTimeout("no free upstream connection", request=_REQUEST) from None
        else:
            await self._slots.acquire()
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                infos = await loop.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
                )
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, t.key),
                    sock=sock,
                    ssl=self._ssl_context() if t.tls else None,
                    server_hostname=t.host if t.tls else None,
                )
        except BaseException as exc:
            if sock is not None:
                sock.close()
            self._slots.release()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"cannot connect to {t.host} in time", request=_REQUEST) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS
                raise httpx.ConnectError(f"cannot connect to {t.host}: {exc}", request=_REQUEST) from None
            raise
        return conn

    def _release(self, conn: _Conn) -> None:
        if not conn.reusable() or self._closed:
            conn.close()
            return
        now = conn.idle_since = conn.loop.time()
        idle = self._idle.setdefault(conn.key, [])
        idle.append(conn)
        # Reuse takes the newest (the end); what a past burst left at the
        # start is closed once it expires, not kept open for ever.
        while idle and (idle[0].lost or now - idle[0].idle_since >= KEEPALIVE_EXPIRY):
            idle.pop(0).close()

    def _slot_freed(self) -> None:
        self._slots.release()

    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def aclose(self) -> None:
        """Close the idle connections, and wait (briefly) until they are."""
        self._closed = True
        idle, self._idle = self._idle, {}
        closing = [conn for conns in idle.values() for conn in conns]
        for conn in closing:
            conn.close()
        for _ in range(100):
            if all(conn.lost for conn in closing):
                break
            await asyncio.sleep(0.01)
