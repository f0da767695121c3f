"""The first ASGI layer of the proxy: what a browser page or a foreign name
may not do, whatever the auth mode (issue 17; the rules and the facts behind
them are in ``daemon.guards``).

In order, before auth (a refusal needs no key to be a refusal):

1. Host: 421 for a name the proxy does not answer to (DNS rebinding); 400
   for an HTTP/1.1 request without one (as nginx does).
2. CORS preflight (OPTIONS with Origin and Access-Control-Request-Method):
   204 for an origin in ``limits.allowed_origins``, else 403.
3. Origin: any method but GET/HEAD/OPTIONS from another origin (or with
   ``Sec-Fetch-Site: cross-site``) is 403 unless its origin is allowed.
4. Content-Type: the model routes take JSON (415).
5. Body size: a declared Content-Length over the route's limit is 413 before
   a byte of it is read; on the routes Litestar serves, a chunked body is
   counted as it is read. (The model routes count theirs in
   ``daemon.proxy.exchange``.)

Responses to an allowed origin carry the CORS headers.
"""

from __future__ import annotations

import socket
from collections.abc import MutableMapping
from typing import Any

from daemon.app_deps import ProxyDeps
from daemon.errors import (
    BadRequest,
    CrossSiteRequest,
    GatewayError,
    MisdirectedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from daemon.guards import cross_site, host_allowed, json_content_type, media_type, origin_allowed
from daemon.protocols.error_shapes import protocol_for_path
from daemon.proxy.auth import ASGIApp, Receive, Scope, Send, new_request_id, normalize_path, send_error
from daemon.proxy.hot_routes import is_model_route
from daemon.records import Refusal
from daemon.refusals import Refusals

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CORS_METHODS = "GET, POST, OPTIONS"
CORS_DEFAULT_HEADERS = "authorization, content-type, x-api-key, x-goog-api-key, anthropic-version"
CORS_MAX_AGE = "600"
CORS_EXPOSE = "x-request-id, retry-after"
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_, ")


def local_names() -> frozenset[str]:
    """This machine's own names: a LAN client may address it by them."""
    names: set[str] = set()
    try:
        full = socket.gethostname().lower().rstrip(".")
    except OSError:
        return frozenset()
    if full:
        short = full.split(".")[0]
        names |= {full, short, f"{short}.local"}
    return frozenset(names)


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", CORS_EXPOSE.encode()),
        (b"vary", b"Origin"),
    ]


class RequestGuard:
    def __init__(self, app: ASGIApp, service: ProxyDeps, refusals: Refusals) -> None:
        self.app = app
        self.service = service
        self.refusals = refusals
        self.local_names = local_names()
        # Host verdicts by (Host value, the allow-list it was checked against):
        # clients send the same Host on every request, parsing it each time
        # was 1.7 % of a request's CPU in the benchmark profile.
        self._hosts: dict[tuple[str, tuple[str, ...]], bool] = {}

    def _host_ok(self, host: str, allowed: list[str]) -> bool:
        key = (host, tuple(allowed))
        ok = self._hosts.get(key)
        if ok is None:
            if len(self._hosts) >= 1024:  # bounded: a scan of many names cannot grow it
                self._hosts.clear()
            ok = self._hosts[key] = host_allowed(host, allowed, self.local_names)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = fetch_site = ctype = clen = acrm = acrh = None
        agent = ""
        hosts = 0
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = bytes(value).decode("latin-1")
                hosts += 1
            elif name == b"origin":
                origin = bytes(value).decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = bytes(value).decode("latin-1")
            elif name == b"content-type":
                ctype = bytes(value).decode("latin-1")
            elif name == b"content-length":
                clen = bytes(value).decode("latin-1")
            elif name == b"access-control-request-method":
                acrm = bytes(value).decode("latin-1")
            elif name == b"access-control-request-headers":
                acrh = bytes(value).decode("latin-1")
            elif name == b"user-agent":
                agent = bytes(value).decode("latin-1")
        lim = self.service.config.limits
        method = scope.get("method", "GET")
        try:
            path = normalize_path(scope.get("path", "/"))
        except BadRequest:
            path = "/"  # auth answers it
        refuse = self._refuser(scope, send, path, agent)

        # 1. Host
        if host is None:
            if scope.get("http_version") == "1.1":
                await refuse(
                    "host",
                    BadRequest("an HTTP/1.1 request must send a Host header (RFC 9112 §3.2)"),
                )
                return
        elif hosts > 1 or not self._host_ok(host, lim.allowed_hosts):
            shown = host if len(host) <= 100 else host[:100] + "…"
            await refuse(
                "host",
                MisdirectedRequest(
                    f"this proxy does not answer to the Host {shown!r} (a guard against DNS rebinding): "
                    f"use {self.service.base_url()}, or add the name to limits.allowed_hosts "
                    "(`agctl config set limits.allowed_hosts NAME`)"
                ),
            )
            return

        # 2. CORS preflight, 3. Origin
        allowed = origin is not None and origin_allowed(origin, lim.allowed_origins)
        if method == "OPTIONS" and origin is not None and acrm is not None:
            if allowed:
                await self._preflight(send, origin, acrh)
                return
            await refuse("origin", self._cross_site_error(origin))
            return
        if method not in SAFE_METHODS and not allowed and cross_site(origin, fetch_site, host):
            await refuse("origin", self._cross_site_error(origin))
            return

        # 4. Content-Type
        model = method == "POST" and is_model_route(path)
        if model and not json_content_type(ctype):
            await refuse(
                "content_type",
                UnsupportedMediaType(
                    "this route takes JSON: send `Content-Type: application/json` "
                    f"(got {media_type(ctype or '')!r}). "
                    "Plain-text and form posts are refused because any web page can send them; "
                    "this is not configurable"
                ),
            )
            return

        # 5. Body size
        cap, key = (
            (lim.max_body_bytes, "limits.max_body_bytes")
            if model
            else (lim.max_other_body_bytes, "limits.max_other_body_bytes")
        )
        if clen is not None and clen.strip().isdigit() and int(clen) > cap:
            await refuse("body_too_large", PayloadTooLarge(_too_large(int(clen), cap, key)))
            return
        if not model and method not in ("GET", "HEAD"):
            receive = _capped(receive, cap, key)

        if allowed and origin is not None:
            extra = _cors_headers(origin)

            async def send_cors(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            await self.app(scope, receive, send_cors)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _cross_site_error(origin: str | None) -> GatewayError:
        who = f"the web page at {origin[:100]!r}" if origin is not None else "a web page of another site"
        return CrossSiteRequest(
            f"requests from {who} are refused (cross-site); to let that page call the proxy, add its "
            "origin to limits.allowed_origins (`agctl config set limits.allowed_origins ORIGIN`)"
        )

    def _refuser(self, scope: Scope, send: Send, path: str, agent: str) -> Any:
        async def refuse(reason: str, err: GatewayError) -> None:
            rid = new_request_id()
            await send_error(send, path, err, {"x-request-id": rid})
            client = scope.get("client")
            self.refusals.refuse(
                Refusal(
                    reason=reason,
                    status=err.status,
                    kind=err.kind,
                    message=err.message,
                    client=str(client[0]) if client else "",
                    protocol=protocol_for_path(path),
                    request_id=rid,
                    user_agent=agent[:300],
                )
            )

        return refuse

    @staticmethod
    async def _preflight(send: Send, origin: str, acrh: str | None) -> None:
        asked = (acrh or "").strip().lower()
        allow = asked if asked and set(asked) <= _TOKEN_CHARS else CORS_DEFAULT_HEADERS
        headers = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-allow-headers", allow.encode()),
            (b"access-control-max-age", CORS_MAX_AGE.encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _too_large(size: int | None, cap: int, key: str) -> str:
    what = f"the request body ({size} bytes)" if size is not None else "the request body"
    return f"{what} is over {cap} bytes ({key}); send less, or raise {key}"


def _capped(receive: Receive, cap: int, key: str) -> Receive:
    seen = 0

    async def capped() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise PayloadTooLarge(_too_large(None, cap, key))
        return message

    return capped
