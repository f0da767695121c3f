"""Serving a translated request: pick an account, call the upstream, fail over.

Before the first byte reaches the client, any failure an account or the
upstream can be blamed for (429, 401 after one refresh, 403, 5xx, network
errors, an empty stream) moves on to the next usable account, with bounded
attempts and backoff. After the first byte a failure surfaces as an error
the route turns into its protocol's stream error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from daemon import models as models_mod
from daemon.accounts.oauth import InvalidGrant
from daemon.accounts.pool import Pool
from daemon.accounts.store import Account
from daemon.errors import (
    BadRequest,
    GatewayError,
    ModelNotFound,
    NoAccountAvailable,
    Overloaded,
    PermissionDenied,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from daemon.protocols import GeminiCall
from daemon.protocols.common import Usage, usage_from_gemini
from daemon.upstream.cloudcode import UpstreamHTTPError, envelope, sse_events
from daemon.upstream.http import Reply

if TYPE_CHECKING:
    from daemon.service import Service

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.1
BACKOFF_MAX = 2.0
_encode = msgspec.json.Encoder().encode


class Attempt(msgspec.Struct, kw_only=True):
    account: str
    status: int | None = None
    error: str = ""


class RequestCtx(msgspec.Struct, kw_only=True):
    """What one proxied request did (feeds the monitor)."""

    request_id: str
    protocol: str
    route: str
    client_model: str = ""
    model: str = ""
    stream: bool = False
    account: str = ""
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    status: int = 200
    error_kind: str = ""
    error: str = ""
    started: float = msgspec.field(default_factory=time.time)
    t0: float = msgspec.field(default_factory=time.perf_counter)
    ttfb_ms: float | None = None
    latency_ms: float | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    client: str = ""
    user_agent: str = ""
    request_body: bytes = b""
    response_body: bytes = b""

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = (time.perf_counter() - self.t0) * 1000

    def fail(self, err: GatewayError) -> None:
        self.status = err.status
        self.error_kind = err.kind
        self.error = err.message


def _is_empty(resp: dict[str, Any]) -> bool:
    cands = resp.get("candidates")
    if not cands:
        return not resp.get("promptFeedback")
    first = cands[0] if isinstance(cands[0], dict) else {}
    parts = (first.get("content") or {}).get("parts") or []
    # No parts and a plain STOP is an empty answer (retryable); SAFETY or
    # MAX_TOKENS without parts are real outcomes the client must see.
    return not parts and first.get("finishReason") in (None, "STOP", "FINISH_REASON_UNSPECIFIED")


def client_error(exc: UpstreamHTTPError, model: str) -> GatewayError:
    """An upstream error that is the request's fault (no failover helps)."""
    if exc.status == 404:
        return ModelNotFound(
            f"the upstream does not know model {model!r} (Requested entity was not found); "
            "see /v1/models for what the pool serves",
            param="model",
        )
    if exc.status == 413:
        return BadRequest(f"upstream: request too large: {exc.message}")
    return BadRequest(f"upstream rejected the request: {exc.message}", upstream_status=exc.status)


def final_error(exc: UpstreamHTTPError | GatewayError) -> GatewayError:
    if isinstance(exc, GatewayError):
        if exc.status in (400, 401, 403):
            # An account's token or the proxy's OAuth setup failed: not the
            # caller's request or key, so never a 4xx to the client.
            return UpstreamError(f"no account could be used: {exc.message}")
        return exc
    if exc.status == 429:
        if exc.reason == "MODEL_CAPACITY_EXHAUSTED":
            return Overloaded(
                f"the upstream has no capacity for this model now: {exc.message}",
                retry_after=exc.wait_seconds(),
            )
        return RateLimited(f"rate limited upstream: {exc.message}", retry_after=exc.wait_seconds())
    if exc.status == 403:
        return PermissionDenied(f"upstream refused the account: {exc.message}")
    if exc.status in (408, 504):
        return UpstreamTimeout(f"upstream timed out: {exc.message}")
    if exc.status in (503, 529):
        return Overloaded(f"upstream overloaded ({exc.status}): {exc.message}")
    return UpstreamError(f"upstream error {exc.status}: {exc.message}", upstream_status=exc.status)


class Dispatcher:
    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def pool(self) -> Pool:
        pool: Pool = self.service.pool
        return pool

    def resolve_model(self, client_model: str) -> str:
        cfg = self.service.config
        # Minimal adapter: the pool still exposes ids only; pass its merged
        # Catalog instead once it keeps one (models.merge of parse_catalog).
        res = models_mod.resolve(client_model, cfg.models, self.pool.available_models().keys())
        if res.changed:
            log.info("model: %s", res.note)
        return res.model

    # ---------------------------------------------------------------- accounts

    def _next_account(self, model: str, session_key: str | None, tried: set[str]) -> Account | None:
        try:
            cands: list[Account] = self.pool.candidates(model, session_key)
        except NoAccountAvailable:
            if not tried:
                raise
            return None
        for acct in cands:
            if acct.id not in tried:
                return acct
        return None

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_BASE * (2**attempt)))

    async def _run(
        self, call: GeminiCall, ctx: RequestCtx, method: str, body_for: Any
    ) -> tuple[Account, Any]:
        """The failover loop shared by every method; ``body_for(acct)`` builds
        the upstream body; returns the account and what the method returned."""
        pool = self.pool
        cfg = self.service.config.scheduling
        tried: set[str] = set()
        last: UpstreamHTTPError | GatewayError | None = None
        model = call.model
        for attempt in range(cfg.max_attempts):
            acct = self._next_account(model, call.session_key, tried)
            if acct is None:
                break
            tried.add(acct.id)
            record = Attempt(account=acct.email)
            ctx.attempts.append(record)
            if not await pool.recheck_after_reset(acct, model):
                record.error = "quota still empty after its reset time"
                continue
            refreshed = False
            token: str | None = None
            while True:
                try:
                    token = await pool.access_token(
                        acct, force=refreshed, rejected=token if refreshed else None
                    )
                    result = await self._method(method, token, body_for(acct))
                except InvalidGrant as exc:
                    record.status, record.error = 401, exc.message
                    last = exc
                    break
                except UpstreamHTTPError as exc:
                    record.status, record.error = (
                        exc.status,
                        f"{exc.reason or exc.google_status}: {exc.message}"[:300],
                    )
                    kind = pool.note_http_error(acct, model, exc)
                    if kind == "auth" and not refreshed:
                        refreshed = True
                        continue
                    if kind == "client":
                        raise client_error(exc, model) from None
                    last = exc
                    if kind in ("server", "capacity"):
                        await self._backoff(attempt)
                    break
                except _EmptyAnswer:
                    record.error = "empty answer"
                    last = UpstreamError("the upstream sent an empty answer")
                    break
                except GatewayError as exc:
                    record.status, record.error = exc.status, exc.message[:300]
                    last = exc
                    await self._backoff(attempt)
                    break
                else:
                    record.status = 200
                    pool.note_success(acct, model)
                    pool.bind_session(call.session_key, acct)
                    ctx.account = acct.email
                    return acct, result
        # Nothing served. When the pool now has no usable account, that (with
        # the reasons and the soonest retry time) is the answer.
        pool.candidates(model, call.session_key)
        if last is None:
            raise NoAccountAvailable(f"no account could serve model {model}")
        raise final_error(last)

    async def _method(self, method: str, token: str, body: bytes) -> Any:
        cc = self.pool.cloudcode
        if method == "stream":
            resp = await cc.open_stream(token, body)
            events = sse_events(resp)
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                await resp.aclose()
                raise _EmptyAnswer() from None
            except UpstreamTimeout:
                await resp.aclose()
                raise UpstreamTimeout("the upstream sent nothing before the read timeout") from None
            except BaseException:
                await resp.aclose()
                raise
            return resp, events, first
        data = await cc.call(method, token, body)
        if method == "generateContent":
            inner = data.get("response", data) if isinstance(data, dict) else {}
            if not isinstance(inner, dict) or _is_empty(inner):
                raise _EmptyAnswer()
            return inner
        return data

    # ---------------------------------------------------------------- methods

    def _envelope(self, call: GeminiCall) -> Any:
        cache: dict[str, bytes] = {}

        def body_for(acct: Account) -> bytes:
            if acct.project not in cache:
                cache[acct.project] = _encode(
                    envelope(project=acct.project, model=call.model, request=call.request)
                )
            return cache[acct.project]

        return body_for

    async def generate(self, call: GeminiCall, ctx: RequestCtx) -> dict[str, Any]:
        _, resp = await self._run(call, ctx, "generateContent", self._envelope(call))
        ctx.usage = usage_from_gemini(resp.get("usageMetadata"))
        result: dict[str, Any] = resp
        return result

    async def stream(self, call: GeminiCall, ctx: RequestCtx) -> AsyncIterator[dict[str, Any]]:
        """Opens the stream (failing over until a first event arrives) and
        returns an iterator over the unwrapped events. Closing the iterator
        (client gone) closes the upstream response at once."""
        _, (resp, events, first) = await self._run(call, ctx, "stream", self._envelope(call))
        return self._relay(resp, events, first, ctx)

    async def _relay(
        self,
        resp: Reply,
        events: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        ctx: RequestCtx,
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            self._note_usage(first, ctx)
            yield first
            try:
                async for ev in events:
                    self._note_usage(ev, ctx)
                    yield ev
            except UpstreamTimeout:
                raise UpstreamTimeout(
                    "the upstream stream went silent for too long (upstream.stream_idle_timeout)"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await resp.aclose()

    @staticmethod
    def _note_usage(ev: dict[str, Any], ctx: RequestCtx) -> None:
        meta = ev.get("usageMetadata")
        if meta:
            ctx.usage = usage_from_gemini(meta)

    async def count_tokens(self, call: GeminiCall, ctx: RequestCtx) -> int:
        """Upstream countTokens for a translated request (system, tools and
        tool results included)."""
        req: dict[str, Any] = {"model": f"models/{call.model}", "contents": call.request.get("contents", [])}
        for key in ("systemInstruction", "tools"):
            if key in call.request:
                req[key] = call.request[key]
        body = _encode({"request": req})
        _, data = await self._run(call, ctx, "countTokens", lambda acct: body)
        total = data.get("totalTokens") if isinstance(data, dict) else None
        if not isinstance(total, int):
            raise UpstreamError("the upstream countTokens answer has no totalTokens")
        return total


class _EmptyAnswer(Exception):
    """The upstream answered with no content: retryable before the first byte."""
