"""Client for Google's Cloud Code ``v1internal`` API (UPSTREAM.md §1, §5, §8).

``POST {host}/v1internal:{method}`` over ``upstream.endpoints`` in order
(daily first, then prod, §1.2). Moving to the next host is decided by the
error classifier (``daemon.upstream.classify``): a network error, a 429
without details, no capacity, a 5xx — never a 404 or a 400, which the next
host would answer the same way. Every non-2xx answer becomes an
``UpstreamHTTPError`` carrying its classification; a refusal of the client
version is recorded on the ``Identity`` (it is the client's fault, not an
account's).

Headers (§1.4): the User-Agent of the configured family; ``onboardUser``
alone gets the Node client's long User-Agent and ``X-Goog-Api-Client``;
``x-goog-user-project`` is never sent (it makes Google bill the managed
project as a quota project: 403 SERVICE_DISABLED, §9.6d).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from daemon.config import Config
from daemon.errors import UpstreamError
from daemon.ids import hex_id
from daemon.upstream.classify import Classified, GoogleError, Retry, Verdict, classify, parse_google_error
from daemon.upstream.http import HttpClient, Reply
from daemon.upstream.identity import Identity

log = logging.getLogger(__name__)

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

# CPA's value for onboardUser only (§1.4); absent on every other call.
ONBOARD_API_CLIENT = "gl-node/22.21.1"


class UpstreamHTTPError(Exception):
    """A non-2xx answer from Cloud Code, parsed and classified."""

    def __init__(self, err: GoogleError, classified: Classified) -> None:
        self.error = err
        self.classified = classified
        self.status = err.status
        self.message = err.detail
        self.reason = err.reason
        self.verdict = classified.verdict
        super().__init__(
            f"{err.status} {err.reason or err.google_status or classified.verdict}: {err.detail}"
        )

    @classmethod
    def parse(cls, status: int, body: bytes, headers: Any = None, *, model: str = "") -> UpstreamHTTPError:
        err = parse_google_error(status, body, headers)
        return cls(err, classify(err, model=model))


def _uuid4() -> str:
    """A uuid4 string made from the daemon's id PRNG: ``uuid4`` reads the OS
    random source on every call (2.7 % of a request's CPU in the benchmark
    profile)."""
    h = hex_id(16)
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def new_request_id() -> str:
    """``agent-<uuid4>``: CPA's form; a unique value per attempt is the only
    rule peers agree on (§5.1)."""
    return f"agent-{_uuid4()}"


def image_request_id() -> str:
    """``image_gen/<unix ms>/<uuid4>/12``: the requestId form of an image
    generation call (UPSTREAM.md §5.5)."""
    return f"image_gen/{int(time.time() * 1000)}/{_uuid4()}/12"


def session_id(seed: str) -> str:
    """A stable ``request.sessionId`` for a conversation (§5.2, CPA's scheme):
    ``-`` + the decimal of the first 8 bytes of SHA-256(seed), as a
    non-negative int64."""
    digest = hashlib.sha256(seed.encode("utf-8", "replace")).digest()
    return "-" + str(int.from_bytes(digest[:8], "big") & 0x7FFFFFFFFFFFFFFF)


def envelope(
    *,
    project: str,
    model: str,
    request: dict[str, Any],
    request_type: str = "agent",
    request_id: str | None = None,
) -> dict[str, Any]:
    """The generate/stream envelope (§5.1); ``request_id`` defaults to a new
    ``agent-<uuid4>``."""
    return {
        "project": project,
        "model": model,
        "requestId": request_id or new_request_id(),
        "userAgent": "antigravity",
        "requestType": request_type,
        "request": request,
    }


class CloudCode:
    def __init__(
        self, http: Callable[[], HttpClient], config: Callable[[], Config], identity: Identity
    ) -> None:
        self._http = http
        self._config = config
        self.identity = identity

    def _headers(self, token: str, method: str) -> dict[str, str]:
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "user-agent": self.identity.user_agent,
        }
        if method in ("onboardUser", "loadCodeAssist"):
            headers["accept"] = "*/*"
        if method == "onboardUser":
            headers["user-agent"] = self.identity.onboard_user_agent
            headers["x-goog-api-client"] = ONBOARD_API_CLIENT
        return headers

    def _fail(self, status: int, body: bytes, headers: Any, model: str) -> UpstreamHTTPError:
        exc = UpstreamHTTPError.parse(status, body, headers, model=model)
        if exc.verdict is Verdict.CLIENT_VERSION:
            self.identity.note_rejection(exc.message)
        return exc

    async def call(self, method: str, token: str, payload: Any, *, model: str = "") -> Any:
        """A unary call; returns the decoded JSON answer."""
        body = payload if isinstance(payload, bytes) else _encode(payload)
        endpoints = self._config().upstream.endpoints
        http = self._http()
        last: Exception | None = None
        for i, base in enumerate(endpoints):
            try:
                resp = await http.post(f"{base}/v1internal:{method}", body, self._headers(token, method))
            except UpstreamError as exc:  # timed out, unreachable, broken, a redirect: the next one
                last = exc
                continue
            if resp.status_code == 200:
                try:
                    return _decode(resp.content)
                except msgspec.DecodeError:
                    raise UpstreamError(f"upstream {method} answered invalid JSON") from None
            err = self._fail(resp.status_code, resp.content, resp.headers, model)
            if err.classified.retry is Retry.NEXT_HOST and i + 1 < len(endpoints):
                log.info("%s at %s: %s; trying the next host", method, base, err)
                last = err
                continue
            raise err
        assert last is not None
        raise last

    async def get(self, path: str, token: str) -> Any:
        """``GET {host}/v1internal/{path}`` (an onboarding operation, §1.3)."""
        base = self._config().upstream.endpoints[0]
        resp = await self._http().get(f"{base}/v1internal/{path}", self._headers(token, "get"))
        if resp.status_code != 200:
            raise self._fail(resp.status_code, resp.content, resp.headers, "")
        try:
            return _decode(resp.content)
        except msgspec.DecodeError:
            raise UpstreamError("upstream operation answer is not JSON") from None

    async def open_stream(self, token: str, payload: Any, *, model: str = "") -> Reply:
        """Open ``streamGenerateContent?alt=sse``; returns the response with
        status 200 and the body not yet read. The caller must close it."""
        body = payload if isinstance(payload, bytes) else _encode(payload)
        endpoints = self._config().upstream.endpoints
        last: Exception | None = None
        http = self._http()
        headers = self._headers(token, "streamGenerateContent")
        for i, base in enumerate(endpoints):
            url = f"{base}/v1internal:streamGenerateContent?alt=sse"
            try:
                resp = await http.open(url, body, headers)
            except UpstreamError as exc:
                last = exc
                continue
            if resp.status_code == 200:
                return resp
            try:
                # An error answer of a stream call is plain JSON even though
                # it says text/event-stream (§6.1, §8.3).
                content = await resp.aread()
            except UpstreamError:
                content = b""
            finally:
                await resp.aclose()
            err = self._fail(resp.status_code, content, resp.headers, model)
            if err.classified.retry is Retry.NEXT_HOST and i + 1 < len(endpoints):
                last = err
                continue
            raise err
        assert last is not None
        raise last


async def sse_events(resp: Reply, *, model: str = "") -> AsyncIterator[dict[str, Any]]:
    """Decoded ``data:`` payloads of an SSE body, unwrapped from ``response``.
    One event holds at most ``limits.upstream_max_line_bytes`` of data, as
    one line does (the reply refuses a longer line itself)."""
    data: list[str] = []
    size = 0
    cap = resp.bounds.line
    async for line in resp.aiter_lines():
        if line.startswith("data:"):
            piece = line[5:].lstrip()
            size += len(piece) + 1
            if size > cap:
                data.clear()
                await resp.aclose()
                raise UpstreamError(
                    "the upstream stream sent an event over the size limit; the answer was cut there "
                    "(limits.upstream_max_line_bytes raises the limit)"
                )
            data.append(piece)
        elif line == "":
            if data:
                yield _unwrap("\n".join(data), model)
                data = []
                size = 0
    if data:
        yield _unwrap("\n".join(data), model)


def _unwrap(text: str, model: str) -> dict[str, Any]:
    try:
        obj = _decode(text)
    except msgspec.DecodeError:
        raise UpstreamError("upstream stream sent an invalid JSON event") from None
    if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
        inner: dict[str, Any] = obj["response"]
        return inner
    if isinstance(obj, dict) and "error" in obj:
        # An error inside a 200 stream: classified like any other (its
        # canonical status stands in for the HTTP one).
        raise UpstreamHTTPError.parse(200, text.encode(), None, model=model)
    return obj if isinstance(obj, dict) else {}
