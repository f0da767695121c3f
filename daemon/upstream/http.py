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
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import aiohttp
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

# Set by the connector for the request being sent in this task: whether the
# connection it got had carried a request before (see _send).
_REUSED: ContextVar[bool] = ContextVar("upstream_connection_reused", default=False)


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


class Reply:
    """An upstream answer: status and headers at once; the body read whole
    (``request``; in ``content``) or, for ``open``, on demand with
    ``aiter_lines`` / ``aiter_bytes``. ``aclose`` always (it is safe twice):
    a body not read to its end closes its connection, which the upstream
    sees as a cancel."""

    __slots__ = ("_origin", "_read_timeout", "_resp", "content", "headers", "status_code")

    def __init__(self, resp: aiohttp.ClientResponse, origin: str, read_timeout: float) -> None:
        self._resp = resp
        self._origin = origin
        self._read_timeout = read_timeout
        self.status_code = resp.status
        # Case-insensitive, as HTTP header names are.
        self.headers: Mapping[str, str] = resp.headers
        self.content = b""

    async def aread(self) -> bytes:
        """The rest of the body (decoded), also kept in ``content``."""
        try:
            self.content = await self._resp.read()
        except BaseException as exc:
            self._resp.close()
            if isinstance(exc, _CAUGHT):
                raise _map_error(exc, self._origin, answered=True, read_timeout=self._read_timeout) from None
            raise
        return self.content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body (decoded) in pieces as they arrive."""
        content = self._resp.content
        try:
            while data := await content.readany():
                yield data
        except _CAUGHT as exc:
            raise _map_error(exc, self._origin, answered=True, read_timeout=self._read_timeout) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their ending (LF or CRLF), as they arrive. Split
        here rather than with aiohttp's readline, which refuses lines past
        its buffer size: an SSE event with an inline image is one long line."""
        pending = b""
        async for data in self.aiter_bytes():
            if b"\n" not in data:
                pending += data
                continue
            *lines, rest = (pending + data).split(b"\n")
            pending = rest
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

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
        return UpstreamError(f"{where} sent an answer that is not valid HTTP/1.1 ({name})")
    return UpstreamError(f"the request to {where} failed ({name}: {exc})")


def _no_answer(exc: BaseException) -> bool:
    """The connection ended before any byte of an answer: aiohttp gives a
    ServerDisconnectedError its partial answer when there was one (else a
    plain message); a reset or broken pipe while awaiting the head."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return isinstance(exc.message, str)
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in _RESET_ERRNOS


class HttpClient:
    """One pool of upstream connections (made on first use, in the loop)."""

    def __init__(self, cfg: Config) -> None:
        self.connect_timeout = float(cfg.upstream.connect_timeout)
        self.read_timeout = float(max(cfg.upstream.stream_idle_timeout, cfg.proxy.request_timeout))
        self.proxy = cfg.proxy.upstream_proxy
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
                resp = await session.request(method, url, data=body, headers=headers, allow_redirects=False)
            except aiohttp.ClientConnectorError as exc:
                raise _map_error(exc, _origin(url), answered=False) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
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
        reply = Reply(resp, _origin(url), self.read_timeout)
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
        return Reply(resp, _origin(url), self.read_timeout)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

