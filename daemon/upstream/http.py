"""The one outbound HTTP client: every upstream call (Cloud Code, OAuth,
userinfo, z.ai) goes through ``HttpClient``, one ``aiohttp.ClientSession``
per daemon (a new one when the settings it is made from change).

What it promises its callers:

- ``request`` (unary: the body read whole) and ``open`` (streamed: the
  caller reads lines or chunks, then closes) return a ``Reply``;
- no aiohttp exception ever leaves this module: timeouts raise
  ``UpstreamTimeout``, a connection that cannot be made (refused, DNS, TLS,
  proxy) or is closed before any answer raises ``UpstreamUnavailable``,
  anything else ``UpstreamError``, each naming the upstream's origin only
  (never a path, header or body: no token can end up in a message);
- TLS through the system trust store, read when the session is made, so
  ``SSL_CERT_FILE`` points it at another CA bundle;
- the connect timeout is ``upstream.connect_timeout``; the read timeout is
  an idle timeout (no byte for that long), ``max(upstream.stream_idle_timeout,
  proxy.request_timeout)``, as a stream may think silently for minutes;
- redirects are not followed: a 3xx is an ``UpstreamError`` (the upstream
  or ``upstream.endpoints`` is wrong, never the client's request);
- bounds on everything an upstream sends back (``[limits]``, issue 17):
  each head line and the header count (aiohttp's parser refuses past them
  while it reads, so an endless header ends in an error, not in memory), a
  unary body's decoded size (counted while it is decoded: a gzip bomb stops
  there), a stream's line and SSE event, and a stream that decodes past the
  body limit at a bomb's ratio. Each is an ``UpstreamError`` naming the key
  that raises it;
- gzip / deflate answers are decoded; no cookies, no environment proxies
  (``trust_env=False``): ``proxy.upstream_proxy`` is the only proxy, http(s)
  natively, socks5 through ``aiohttp_socks``;
- a POST whose reused keep-alive connection the server had closed (no byte
  of an answer came back) is sent once more on a new connection; see
  ``_send``.
"""

from __future__ import annotations

import errno
import ssl
import weakref
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlencode, urlsplit

import aiohttp
import yarl
from aiohttp.client import IDEMPOTENT_METHODS

from daemon.config import Config
from daemon.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

# Hundreds of concurrent streams share one pool; a stream holds a connection
# for its whole life, so this is also the ceiling on open upstream streams.
MAX_CONNECTIONS = 2048
# How long a request may wait for a free connection when all are in use,
# on top of the connect timeout.
POOL_WAIT = 30.0

# aiohttp sets these itself when the caller does not: a User-Agent naming
# aiohttp and a Content-Type of application/octet-stream would go to Google
# with every call. Accept-Encoding stays aiohttp's (what it can decode).
_SKIP_AUTO_HEADERS = ("User-Agent", "Content-Type")
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})

# A stream decoded past limits.upstream_max_body_bytes at more than this
# ratio to its wire size is a decompression bomb. Only streams past that size
# are judged: a unary answer stops at the size itself, and the ratio alone
# says little (a model repeating one word for 4 MB gzips 1000:1, a run of one
# byte at most about 1030:1), while real streams that long carry images,
# which do not compress.
BOMB_RATIO = 100

# Set by the connector for the request being sent in this task: whether the
# connection it got had carried a request before (see _send).
_REUSED: ContextVar[bool] = ContextVar("upstream_connection_reused", default=False)


# Parsed URLs by their text: the daemon calls a handful of URLs (the
# endpoints' methods, the token URL), and yarl parses a str on every request.
_URLS: dict[str, yarl.URL] = {}
_URLS_MAX = 256


def _url(text: str) -> yarl.URL:
    url = _URLS.get(text)
    if url is None:
        if len(_URLS) >= _URLS_MAX:
            _URLS.clear()
        url = _URLS[text] = yarl.URL(text)
    return url


class _ReuseMarking:
    """Connector mixin: marks in ``_REUSED`` whether ``connect`` handed out a
    pooled connection that already carried a request. aiohttp does not say
    (only through its tracing signals, which cost every request several
    awaits)."""

    _served: weakref.WeakSet[Any]

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        conn: Connection = await super().connect(req, traces, timeout)  # type: ignore[misc]
        proto = conn.protocol
        served = self._served
        _REUSED.set(proto in served)
        served.add(proto)
        return conn


class _Connector(_ReuseMarking, aiohttp.TCPConnector):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._served = weakref.WeakSet()


def _socks_connector(url: str, **kw: Any) -> aiohttp.BaseConnector:
    # aiohttp speaks only http(s) proxies; DESIGN.md promises socks5 too,
    # which aiohttp_socks adds as a connector (the one extra dependency).
    # socks5h:// has the proxy resolve host names, socks5:// resolves here
    # (curl's meaning of the two).
    from aiohttp_socks import ProxyConnector, ProxyType

    class _SocksConnector(_ReuseMarking, ProxyConnector):
        pass

    parts = urlsplit(url)
    conn = _SocksConnector(
        proxy_type=ProxyType.SOCKS5,
        host=parts.hostname or "",
        port=parts.port or 1080,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        rdns=parts.scheme == "socks5h",
        **kw,
    )
    conn._served = weakref.WeakSet()
    return conn


class Bounds(NamedTuple):
    """What one answer may hold (``[limits]``), in bytes."""

    body: int  # limits.upstream_max_body_bytes
    line: int  # limits.upstream_max_line_bytes


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % (scale // 16) == 0:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


class Reply:
    """An upstream answer: status and headers at once; the body read whole
    (``request``; in ``content``) or, for ``open``, on demand with
    ``aiter_lines`` / ``aiter_bytes``. ``aclose`` always (it is safe twice):
    a body not read to its end closes its connection, which the upstream
    sees as a cancel."""

    __slots__ = ("_origin", "_read_timeout", "_resp", "bounds", "content", "headers", "status_code")

    def __init__(
        self, resp: aiohttp.ClientResponse, origin: str, read_timeout: float, bounds: Bounds
    ) -> None:
        self._resp = resp
        self._origin = origin
        self._read_timeout = read_timeout
        self.bounds = bounds
        self.status_code = resp.status
        # Case-insensitive, as HTTP header names are.
        self.headers: Mapping[str, str] = resp.headers
        self.content = b""

    def _refuse(self, what: str, key: str) -> UpstreamError:
        """Past a limit: the connection is dropped at once (nothing more of
        the answer is read or decoded) and the error names the key."""
        self._resp.close()
        return UpstreamError(f"{self._origin} sent {what}; the answer was cut there ({key} raises the limit)")

    async def aread(self) -> bytes:
        """The rest of the body (decoded), also kept in ``content``. Read in
        pieces and counted as they are decoded: past the body limit the
        answer is refused without decoding the rest (a gzip bomb)."""
        resp = self._resp
        cap = self.bounds.body
        declared = resp.content_length
        if declared is not None and declared > cap:
            raise self._refuse(
                f"an answer of {declared} bytes, over {_size(cap)}", "limits.upstream_max_body_bytes"
            )
        # One growing buffer, not a list of the pieces: tens of thousands of
        # freed 64 KiB pieces stay in the allocator's heap (RSS never comes
        # back after a large answer), one large block is returned whole.
        buf = bytearray()
        content = resp.content
        try:
            while data := await content.readany():
                if len(buf) + len(data) > cap:
                    del buf
                    raise self._refuse(
                        f"an answer over {_size(cap)} decoded", "limits.upstream_max_body_bytes"
                    )
                buf += data
        except _CAUGHT as exc:
            resp.close()
            raise _map_error(exc, self._origin, answered=True, read_timeout=self._read_timeout) from None
        except BaseException:
            resp.close()
            raise
        self.content = bytes(buf)
        return self.content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body (decoded) in pieces as they arrive. A stream has no size
        limit of its own (it may run for an hour), except that past the body
        limit it must not be a decompression bomb (``BOMB_RATIO``)."""
        content = self._resp.content
        cap = self.bounds.body
        size = 0
        try:
            while data := await content.readany():
                size += len(data)
                if size > cap and size > BOMB_RATIO * content.total_raw_bytes:
                    raise self._refuse(
                        f"a stream that decodes to over {BOMB_RATIO} times its size (a decompression bomb)",
                        "limits.upstream_max_body_bytes",
                    )
                yield data
        except _CAUGHT as exc:
            raise _map_error(exc, self._origin, answered=True, read_timeout=self._read_timeout) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their ending (LF or CRLF), as they arrive. Split
        here rather than with aiohttp's readline, which refuses lines past
        its buffer size: an SSE event with an inline image is one long line.
        A line over ``limits.upstream_max_line_bytes`` is refused as soon as
        that much of it has come, never buffered whole."""
        cap = self.bounds.line
        buf = bytearray()
        async for data in self.aiter_bytes():
            seen = len(buf)  # no line end before here
            buf += data
            start = 0
            # (cap + 1: the CR of a CRLF is not the line's.)
            while (end := buf.find(b"\n", seen)) >= 0 and end - start <= cap + 1:
                yield buf[start:end].rstrip(b"\r").decode("utf-8", "replace")
                start = seen = end + 1
            if len(buf) - start > cap + 1:
                buf.clear()
                raise self._refuse(f"a stream line over {_size(cap)}", "limits.upstream_max_line_bytes")
            del buf[:start]
        if buf:
            yield buf.rstrip(b"\r").decode("utf-8", "replace")

    async def aclose(self) -> None:
        resp = self._resp
        if resp.content.is_eof():
            resp.release()  # read to the end: the connection goes back to the pool
        else:
            resp.close()


# What aiohttp (and the socks connector, and the loop under them) raise.
_CAUGHT: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError, ValueError)


@lru_cache(maxsize=256)
def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "the upstream"


def _map_error(exc: BaseException, where: str, *, answered: bool, read_timeout: float = 0.0) -> UpstreamError:
    """An aiohttp (or socket, or socks) exception as one of ours.
    ``answered``: the status line and headers had come (the body broke)."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(
            f"could not connect to {where} in time (upstream.connect_timeout): check the network"
        )
    if isinstance(exc, TimeoutError):
        shown = f" for {read_timeout:g}s" if read_timeout else ""
        what = "stream" if answered else "answer"
        return UpstreamTimeout(
            f"{where} sent nothing{shown} ({what} idle; upstream.stream_idle_timeout / proxy.request_timeout)"
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return UpstreamUnavailable(
            f"the TLS certificate of {where} is not trusted ({exc.certificate_error}); if a private CA "
            "is in the way, point SSL_CERT_FILE at its bundle"
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamUnavailable(
            f"cannot connect to the upstream proxy (proxy.upstream_proxy): {exc.os_error.strerror or name}"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(f"cannot connect to {where}: {exc.os_error.strerror or name}")
    if type(exc).__module__.startswith(("python_socks", "aiohttp_socks")):
        if isinstance(exc, TimeoutError) or "Timeout" in name:
            return UpstreamTimeout(f"the socks proxy (proxy.upstream_proxy) timed out reaching {where}")
        return UpstreamUnavailable(f"the socks proxy (proxy.upstream_proxy) cannot reach {where}: {exc}")
    if answered:
        return UpstreamError(f"the answer from {where} broke off ({name})")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ConnectionError):
        return UpstreamUnavailable(f"{where} closed the connection without answering ({name})")
    if isinstance(exc, aiohttp.ClientResponseError):
        return _head_limit(exc, where) or UpstreamError(
            f"{where} sent an answer that is not valid HTTP/1.1 ({name})"
        )
    return UpstreamError(f"the request to {where} failed ({name}: {exc})")


def _head_limit(exc: aiohttp.ClientResponseError, where: str) -> UpstreamError | None:
    """aiohttp's refusal of a head past a limit, told by its message (the
    parser's LineTooLong / "Too many headers"), whose quoted line is dropped:
    it may hold a header's value."""
    text = str(exc.message)
    if text.startswith("Got more than"):
        limit = text.split()[3] if len(text.split()) > 3 else "the limit of"
        return UpstreamError(
            f"{where} sent a head line (status line or one header) over {limit} bytes; the answer was "
            "refused (limits.upstream_max_header_bytes raises the limit)"
        )
    if text.startswith("Too many headers"):
        return UpstreamError(
            f"{where} sent too many header lines; the answer was refused "
            "(limits.upstream_max_headers raises the limit)"
        )
    return None


def _no_answer(exc: BaseException) -> bool:
    """The connection ended before any byte of an answer: aiohttp gives a
    ServerDisconnectedError its partial answer when there was one (else a
    plain message); a reset or broken pipe while awaiting the head; the
    transport found closing when the request was written (aiohttp's
    ClientConnectionResetError: nothing was sent)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return isinstance(exc.message, str)
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in _RESET_ERRNOS


class HttpClient:
    """One pool of upstream connections (made on first use, in the loop)."""

    def __init__(self, cfg: Config) -> None:
        self.connect_timeout = float(cfg.upstream.connect_timeout)
        self.read_timeout = float(max(cfg.upstream.stream_idle_timeout, cfg.proxy.request_timeout))
        self.proxy = cfg.proxy.upstream_proxy
        lim = cfg.limits
        self.bounds = Bounds(body=lim.upstream_max_body_bytes, line=lim.upstream_max_line_bytes)
        self.max_header_bytes = lim.upstream_max_header_bytes
        self.max_headers = lim.upstream_max_headers
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.connect_timeout + POOL_WAIT,
            sock_connect=self.connect_timeout,
            sock_read=self.read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise UpstreamUnavailable("the upstream client was closed (the daemon is stopping)")
        # The system trust store, read now: SSL_CERT_FILE / SSL_CERT_DIR
        # override it (a private CA, or a test's).
        ctx = ssl.create_default_context()
        kw: dict[str, Any] = {"limit": MAX_CONNECTIONS, "limit_per_host": 0, "ssl": ctx}
        proxy: str | None = None
        if self.proxy.startswith(("socks5://", "socks5h://")):
            connector: aiohttp.BaseConnector = _socks_connector(self.proxy, **kw)
        else:
            connector = _Connector(**kw)
            proxy = self.proxy or None
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            proxy=proxy,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            auto_decompress=True,
            # The head: aiohttp's parser refuses a status line or one header
            # (name and value) past max_field_size / max_line_size, and more
            # than max_headers lines, as it reads them (see _head_limit).
            max_line_size=self.max_header_bytes,
            max_field_size=self.max_header_bytes,
            max_headers=self.max_headers,
        )
        return self._session

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        session = self._session or self._open()
        # A request that met a server closing its idle keep-alive connection
        # (RFC 9112 §9.3.1: the server never saw it) is sent once more on a
        # new connection. aiohttp does this itself for idempotent methods
        # (GET, ...; any connection), so only the others are retried here, and
        # only off a reused connection with no byte of an answer: a fresh
        # connection closed under a POST may have been read, and a POST is not
        # sent twice then.
        retry = method not in IDEMPOTENT_METHODS
        while True:
            _REUSED.set(False)
            try:
                resp = await session.request(
                    method, _url(url), data=body, headers=headers, allow_redirects=False
                )
            except aiohttp.ClientConnectorError as exc:
                raise _map_error(exc, _origin(url), answered=False) from None
            except (
                aiohttp.ServerDisconnectedError,
                aiohttp.ClientOSError,
                aiohttp.ClientConnectionResetError,
            ) as exc:
                if retry and _REUSED.get() and _no_answer(exc):
                    retry = False
                    continue
                raise _map_error(exc, _origin(url), answered=False) from None
            except _CAUGHT as exc:
                raise _map_error(exc, _origin(url), answered=False, read_timeout=self.read_timeout) from None
            if 300 <= resp.status < 400:
                resp.close()
                where = _origin(url)
                raise UpstreamError(
                    f"{where} answered HTTP {resp.status} (a redirect, not followed): check the "
                    "upstream URLs in the config",
                    upstream_status=resp.status,
                )
            return resp

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One call, its answer read whole (``Reply.content``)."""
        resp = await self._send(method, url, body, headers or {})
        reply = Reply(resp, _origin(url), self.read_timeout, self.bounds)
        await reply.aread()
        resp.release()
        return reply

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        return await self.request("POST", url, body, headers)

    async def post_form(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Reply:
        """A POST of an ``application/x-www-form-urlencoded`` body (OAuth)."""
        return await self.request(
            "POST",
            url,
            urlencode(form).encode(),
            {**headers, "content-type": "application/x-www-form-urlencoded"},
        )

    async def get(self, url: str, headers: Mapping[str, str]) -> Reply:
        return await self.request("GET", url, None, headers)

    async def open(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """A POST whose answer is read by the caller as it comes; the caller
        must ``aclose`` the reply (closing early cancels the upstream call)."""
        resp = await self._send("POST", url, body, headers)
        return Reply(resp, _origin(url), self.read_timeout, self.bounds)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
