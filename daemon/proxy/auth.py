"""Client authentication and path normalisation, as a plain ASGI wrapper.

It runs before Litestar's router, on the NORMALISED path, and rewrites the
scope to that same path: what auth decides on is exactly what gets routed, so
``//healthz``, ``/healthz/../v1/models`` or ``%2e%2e`` cannot skip auth.
"""

from __future__ import annotations

import functools
import hmac
import posixpath
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec

from daemon.errors import AuthenticationError, BadRequest, GatewayError
from daemon.ids import sortable_id
from daemon.protocols.error_shapes import body_for, headers_for, protocol_for_path

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATHS = frozenset({"/healthz", "/health", "/"})
_encode = msgspec.json.Encoder().encode
_MAX_DECODE_ROUNDS = 4


@functools.lru_cache(maxsize=512)
def normalize_path(raw: str) -> str:
    """(Cached: the guard and the auth layer both ask, for a few paths.)
    Percent-decode (repeatedly, so double encoding cannot hide a dot
    segment), collapse slashes, resolve ``.``/``..``; never above root."""
    path = raw
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    if "\x00" in path:
        raise BadRequest("invalid path")
    path = path.replace("\\", "/")
    norm = posixpath.normpath("/" + path.lstrip("/"))
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def client_key(scope: Scope, path: str) -> str | None:
    """The key from Authorization (Bearer or bare), x-api-key, x-goog-api-key,
    or ``?key=`` on /v1beta paths (Google's SDKs send it there)."""
    auth: str | None = None
    xkey: str | None = None
    gkey: str | None = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            auth = bytes(value).decode("latin-1").strip()
        elif name == b"x-api-key":
            xkey = bytes(value).decode("latin-1").strip()
        elif name == b"x-goog-api-key":
            gkey = bytes(value).decode("latin-1").strip()
    if auth:
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "bearer" and rest:
            return rest.strip()
        return auth
    if xkey:
        return xkey
    if gkey:
        return gkey
    if path.startswith(("/v1beta", "/v1alpha")):
        qs = bytes(scope.get("query_string", b"")).decode("latin-1")
        for k, v in parse_qsl(qs):
            if k == "key":
                return str(v)
    return None


def key_matches(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def needs_auth(mode: str, path: str) -> bool:
    if mode == "off":
        return False
    if mode == "all_except_health" and path in HEALTH_PATHS:
        return False
    return True


def _auth_message(path: str, given: str | None) -> str:
    proto = protocol_for_path(path)
    how = {
        "openai": "send `Authorization: Bearer <proxy.api_key>`",
        "anthropic": "send `x-api-key: <proxy.api_key>` (or `Authorization: Bearer <key>`)",
        "gemini": "send `x-goog-api-key: <proxy.api_key>` (or `?key=<key>`)",
    }[proto]
    what = "the API key is wrong" if given else "no API key was sent"
    return f"{what}: {how}. `agctl config get proxy.api_key` shows the key."


async def send_error(send: Send, path: str, err: GatewayError, extra: dict[str, str] | None = None) -> None:
    body = _encode(body_for(protocol_for_path(path), err))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for k, v in {**headers_for(err), **(extra or {})}.items():
        headers.append((k.encode(), v.encode()))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def new_request_id() -> str:
    return "req_" + sortable_id(6)


class AuthMiddleware:
    """``settings`` is read per request, so auth mode and key changes apply at once."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Callable[[], tuple[str, str]],
        on_reject: Callable[[Scope, str, GatewayError], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.on_reject = on_reject  # (scope, normalised path, error): the request log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("path", "/")
        try:
            path = normalize_path(raw)
        except BadRequest as exc:
            await send_error(send, "/", exc)
            return
        if path != raw:
            scope = dict(scope)
            scope["path"] = path
            scope["raw_path"] = path.encode()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        rid_header = (b"x-request-id", request_id.encode())
        mode, key = self.settings()
        if needs_auth(mode, path):
            given = client_key(scope, path)
            if not key_matches(given, key):
                err = AuthenticationError(_auth_message(path, given))
                await send_error(send, path, err, {"x-request-id": request_id})
                if self.on_reject is not None:
                    self.on_reject(scope, path, err)
                return

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        await self.app(scope, receive, send_with_id)
