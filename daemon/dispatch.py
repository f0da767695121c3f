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
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from daemon import models as models_mod
from daemon.accounts.oauth import InvalidGrant
from daemon.accounts.pool import Pool
from daemon.accounts.store import Account
from daemon.config import Config
from daemon.errors import (
    BadRequest,
    ContextTooLong,
    GatewayError,
    ModelNotFound,
    NoAccountAvailable,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    token_counts,
)
from daemon.protocols import GeminiCall, image_generation, rules, server_tools, web_search
from daemon.protocols.common import candidate, parts_of, usage_from_gemini
from daemon.records import Attempt, RequestCtx
from daemon.upstream.classify import Verdict, may_become_version_refusal, refuses_client_version
from daemon.upstream.cloudcode import UpstreamHTTPError, envelope, image_request_id, session_id, sse_events
from daemon.upstream.http import Reply

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.1
BACKOFF_MAX = 2.0
_encode = msgspec.json.Encoder().encode
# The one credit type known (UPSTREAM.md §4.4).
CREDIT_TYPE = "GOOGLE_ONE_AI"


def _is_empty(resp: dict[str, Any]) -> bool:
    cands = resp.get("candidates")
    if not cands:
        return not resp.get("promptFeedback")
    first = cands[0] if isinstance(cands[0], dict) else {}
    parts = (first.get("content") or {}).get("parts") or []
    # No parts and a plain STOP is an empty answer (retryable); SAFETY or
    # MAX_TOKENS without parts are real outcomes the client must see.
    return not parts and first.get("finishReason") in (None, "STOP", "FINISH_REASON_UNSPECIFIED")


def final_error(exc: UpstreamHTTPError | GatewayError) -> GatewayError:
    """What the caller gets when nothing served: the classifier's error for
    an upstream answer (UPSTREAM.md §9.11), or the gateway error as it is."""
    if isinstance(exc, GatewayError):
        if exc.status in (400, 401, 403):
            # An account's token or the proxy's OAuth setup failed: not the
            # caller's request or key, so never a 4xx to the client.
            return UpstreamError(f"no account could be used: {exc.message}")
        return exc
    return exc.classified.gateway_error()


class Dispatcher:
    """Serves translated calls from the pool; it knows the pool and the
    config, nothing of the apps above it."""

    def __init__(self, pool: Callable[[], Pool], config: Callable[[], Config]) -> None:
        self._pool = pool
        self._config = config
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def pool(self) -> Pool:
        return self._pool()

    def resolve(self, client_model: str) -> models_mod.Resolved:
        """The upstream model for a client's name, from the pool's live
        catalog (UPSTREAM.md §4.1); a name nobody serves raises ModelNotFound
        listing what is served. A substitute is logged, and every answer
        names the model that served it (``x-antigravity-model``)."""
        res = models_mod.resolve(client_model, self._config().models, self.pool.catalog())
        if res.changed:
            log.info("model: %s", res.note)
        return res

    def resolve_model(self, client_model: str) -> str:
        return self.resolve(client_model).model

    def _client_error(self, exc: UpstreamHTTPError, model: str) -> GatewayError:
        """The caller's own error (400, 404, a prompt too long), from the classifier."""
        err = exc.classified.gateway_error()
        if exc.verdict is Verdict.CONTEXT_TOO_LONG:
            # Answered in each client's context-overflow shape (error_shapes).
            tokens, limit = token_counts(exc.message)
            return ContextTooLong(err.message, tokens=tokens, limit=limit, upstream_status=exc.status)
        if exc.verdict is Verdict.NOT_FOUND:
            served = ", ".join(m.id for m in models_mod.listed_models(self.pool.catalog())) or "none yet"
            return ModelNotFound(f"{err.message} Served now: {served}.", param="model")
        return err

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
        """The pool's accounts first; when every one that could serve is out
        of quota for the model, one retry paid with AI credits ([credits])."""
        try:
            return await self._run_pool(call, ctx, method, body_for)
        except (NoAccountAvailable, RateLimited) as exc:
            if method == "countTokens":
                raise
            served = await self._run_credits(call, ctx, method, body_for)
            if served is None:
                raise exc from None
            return served

    async def _run_credits(
        self, call: GeminiCall, ctx: RequestCtx, method: str, body_for: Any
    ) -> tuple[Account, Any] | None:
        """One attempt with ``enabledCreditTypes`` (UPSTREAM.md §4.4).

        DISAGREE in the evidence on when to send it: one peer sends it on
        every request, one retries with it after a quota answer. Only the
        retry here: spending money must never surprise anyone, so credits go
        only to a request that free quota can no longer serve, only with
        ``credits.enabled``, and never past ``credits.daily_limit``."""
        pool = self.pool
        model = call.model
        cands = [a for a in pool.credit_candidates(model) if pool.quota_blocked(a, model)]
        if not cands:
            return None
        acct = cands[0]
        record = Attempt(account=acct.email, error="paid with AI credits")
        ctx.attempts.append(record)
        sent: str | None = None
        try:
            token = await pool.access_token(acct)
            await pool.ensure_project(acct)
            sent = acct.project
            result = await self._method(method, token, body_for(acct, credits=True), model)
        except UpstreamHTTPError as exc:
            record.status, record.error = exc.status, f"credits: {exc.verdict}: {exc.message}"[:300]
            pool.note_http_error(acct, model, exc, sent_project=sent)
            return None
        except _EmptyAnswer:
            record.error = "credits: empty answer"
            return None
        except GatewayError as exc:
            record.status, record.error = exc.status, f"credits: {exc.message}"[:300]
            return None
        record.status = 200
        ctx.account = acct.email
        ctx.credits = True
        pool.note_credit_use(acct)
        log.info("request %s to %s paid with AI credits of %s", ctx.request_id, model, acct.email)
        task = asyncio.ensure_future(pool.refresh_credits(acct))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return acct, result

    async def _run_pool(
        self, call: GeminiCall, ctx: RequestCtx, method: str, body_for: Any
    ) -> tuple[Account, Any]:
        """The failover loop shared by every method; ``body_for(acct)`` builds
        the upstream body; returns the account and what the method returned."""
        pool = self.pool
        cfg = self._config().scheduling
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
            refreshed = waited = reread = force = False
            token: str | None = None
            while True:
                sent: str | None = None  # the project the call carried
                sent_at: float | None = None
                try:
                    token = await pool.access_token(acct, force=force, rejected=token if force else None)
                    force = False
                    await pool.ensure_project(acct)
                    sent, sent_at = acct.project, time.time()
                    result = await self._method(method, token, body_for(acct), model)
                except InvalidGrant as exc:
                    record.status, record.error = 401, exc.message
                    last = exc
                    break
                except UpstreamHTTPError as exc:
                    record.status, record.error = exc.status, f"{exc.verdict}: {exc.message}"[:300]
                    kind = pool.note_http_error(acct, model, exc, sent_project=sent, sent_at=sent_at)
                    if kind == "auth" and not refreshed:
                        refreshed = force = True
                        continue
                    if sent is not None and acct.project != sent and not reread:
                        # A 403 that put the project in doubt (§9.6c/e): it is
                        # read again (ensure_project, above; or it was, for a
                        # call sent before) and this account tried once more.
                        reread = True
                        continue
                    if kind == "retry_same" and not waited:
                        # A sub-3-second rate limit: waiting beats switching (§9.2).
                        waited = True
                        await asyncio.sleep(exc.classified.cooldown or 0.0)
                        continue
                    if kind == "client":
                        raise self._client_error(exc, model) from None
                    if kind == "stop":
                        # Every account would get the same answer (a refused
                        # client version): say so now.
                        raise final_error(exc) from None
                    last = exc
                    if exc.verdict in (Verdict.CAPACITY, Verdict.SERVER_ERROR, Verdict.THROTTLED):
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

    async def _method(self, method: str, token: str, body: bytes, model: str) -> Any:
        cc = self.pool.cloudcode
        if method == "stream":
            resp = await cc.open_stream(token, body, model=model)
            events: AsyncIterator[dict[str, Any]] = sse_events(resp, model=model)
            held: list[dict[str, Any]] = []
            try:
                first = await events.__anext__()
                # A refusal split over events is read whole before it is judged
                # (a normal answer goes on at once: its first words differ).
                held.append(first)
                text = _answer_text(first)
                said = _says_something(first)
                while (may_become_version_refusal(text) or not said) and len(held) < _VERSION_PEEK_EVENTS:
                    try:
                        held.append(await events.__anext__())
                    except StopAsyncIteration:
                        break
                    text += _answer_text(held[-1])
                    said = said or _says_something(held[-1])
                self._check_version_text(text)
                if len(held) > 1:
                    events = _replay(held[1:], events)
            except StopAsyncIteration:
                await resp.aclose()
                raise _EmptyAnswer() from None
            except UpstreamTimeout as exc:
                await resp.aclose()
                if held:  # went silent while its first words were read ahead
                    raise exc from None
                raise UpstreamTimeout("the upstream sent nothing before the read timeout") from None
            except BaseException:
                await resp.aclose()
                raise
            return resp, events, first
        data = await cc.call(method, token, body, model=model)
        if method == "generateContent":
            inner = data.get("response", data) if isinstance(data, dict) else {}
            if not isinstance(inner, dict) or _is_empty(inner):
                raise _EmptyAnswer()
            self._check_version_text(_answer_text(inner))
            return inner
        return data

    def _check_version_text(self, text: str) -> None:
        """Google has refused old clients with a normal answer whose text
        says so (UPSTREAM.md §2.2): that is an error, not the model's reply.
        ``text``: the answer's first text (``_answer_text``)."""
        if not text:
            return
        if len(text) < 400 and refuses_client_version(text):
            identity = self.pool.identity
            identity.note_rejection(text)
            raise UpstreamError(
                f"Google refuses this client version ({identity.user_agent}): {text.strip()} "
                "Set the current Antigravity version: agctl config set upstream.client_version X.Y.Z"
            )
        self.pool.identity.note_accepted()

    # ---------------------------------------------------------------- methods

    def _prepare(self, call: GeminiCall) -> frozenset[str]:
        """Apply the upstream's rules for the serving model (once per call);
        returns the tools that got a placeholder parameter."""
        if "_rules" not in call.extra:
            cfg = self._config()
            info = models_mod.model_info(self.pool.catalog(), call.model)
            notes = rules.apply(
                call.request, model=call.model, limits=info, gemini_thinking=cfg.upstream.gemini_thinking
            )
            for note in notes:
                log.debug("request to %s: %s", call.model, note)
            call.extra["_rules"] = sorted(rules.placeholder_tools(call.request))
        return frozenset(call.extra["_rules"])

    def _envelope(self, call: GeminiCall) -> Any:
        self._prepare(call)
        if "sessionId" not in call.request:
            # Stable per conversation (§5.2): the client's session key, else
            # the first user text.
            call.request["sessionId"] = session_id(call.session_key or _first_text(call.request))

        def body_for(acct: Account, credits: bool = False) -> bytes:
            # Encoded per attempt: each attempt has its own requestId (§5.1),
            # a retry on the same account included.
            env = envelope(project=acct.project, model=call.model, request=call.request)
            if credits:
                env["enabledCreditTypes"] = [CREDIT_TYPE]
            return _encode(env)

        return body_for

    async def generate(self, call: GeminiCall, ctx: RequestCtx) -> dict[str, Any]:
        tools = server_tools.enabled(call)
        shown: list[dict[str, Any]] = []  # earlier rounds' parts and server tools' results
        used: dict[str, int] = {}
        rounds = server_tools.rounds(tools)
        for n in range(rounds):
            _, resp = await self._run(call, ctx, "generateContent", self._envelope(call))
            rules.strip_placeholder_calls(resp, self._prepare(call))
            ctx.usage = usage_from_gemini(resp.get("usageMetadata"))
            result: dict[str, Any] = resp
            if not tools:
                return result
            parts = parts_of(resp)
            kept, calls, other = server_tools.split_calls(parts, tools)
            # The last round can still run calls that come with the client's
            # own: no round follows them either way.
            if not calls or (n == rounds - 1 and not other):
                if calls or shown:
                    _set_parts(resp, shown + kept)
                return result
            planned = server_tools.plan(calls, tools, used)
            responses, results = await self._server_calls(ctx, planned, tools)
            if other:
                # The client's own calls end the answer: it gets the server
                # tools' results with them (protocols.server_tools).
                _set_parts(resp, shown + server_tools.place(kept, results))
                return result
            shown += kept + results
            self._continue(call, parts, responses, tools)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------- server tools

    async def _server_calls(
        self, ctx: RequestCtx, planned: list[tuple[dict[str, Any], bool]], tools: dict[str, dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Run the model's server-tool calls (``protocols.server_tools``):
        (function responses for the model, synthetic parts for the client)."""
        runners = {
            web_search.FUNCTION_NAME: self._search_call,
            image_generation.FUNCTION_NAME: self._image_call,
        }
        responses: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for part, run in planned:
            if not run:
                responses.append(server_tools.limit_response(part))
                continue
            name = server_tools.name_of(part) or ""
            answer, shown = await runners[name](ctx, part, tools[name])
            responses.append(answer)
            results.append(shown)
        return responses, results

    async def _search_call(
        self, ctx: RequestCtx, part: dict[str, Any], opts: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        query = web_search.query_of(part)
        try:
            if not query:
                raise UpstreamError("the web_search call has no query")
            resp = await self._web_search(ctx, query, opts.get("domains"))
            res = web_search.result(part, query, resp)
        except GatewayError as exc:
            # The model gets the failure as the search's answer and goes on;
            # the caller sees a search that failed, not a failed request.
            log.info("request %s: web search failed: %s", ctx.request_id, exc.message)
            res = web_search.result(part, query, None, exc.message)
        return web_search.function_response(res), {web_search.SEARCH_PART: res}

    async def _image_call(
        self, ctx: RequestCtx, part: dict[str, Any], opts: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One picture on the image model (the call ``generate_image`` makes
        for /v1/images/generations), for the model's image_generation call."""
        prompt = image_generation.prompt_of(part)
        try:
            if not prompt:
                raise UpstreamError("the image_generation call has no prompt")
            model = str(opts.get("model") or self.image_model(None))
            picture = GeminiCall(
                request=image_generation.image_request(prompt, opts), client_model=model, model=model
            )
            res = image_generation.result(part, prompt, await self.generate_image(picture, ctx))
        except GatewayError as exc:
            res = image_generation.failure(part, prompt, exc)
        if res["status"] == "failed":
            # As with a failed search: the model is told, the caller sees a failed item.
            log.info("request %s: image generation failed: %s", ctx.request_id, res["error"]["message"])
        return image_generation.function_response(res), {image_generation.IMAGE_PART: res}

    def image_model(self, requested: str | None, param: str = "model") -> str:
        """The upstream image model: the catalog's first ``imageGenerationModelIds``
        entry (UPSTREAM.md §5.5) when the client named none of its own, else the
        client's name resolved, which must be an image model."""
        catalog = self.pool.catalog()
        if not catalog.models:
            catalog = models_mod.DEFAULT_CATALOG
        image_models: list[str] = list(catalog.image_models)
        if requested is None:
            if not image_models:
                raise NotFound(
                    "no image generation model is served now (the catalog lists none)", param=param
                )
            return image_models[0]
        model = self.resolve_model(requested)
        if model not in image_models:
            served = ", ".join(image_models) or "none now"
            raise BadRequest(
                f"model {requested!r} ({model}) does not generate images; leave {param} out, or use an "
                f"image model: {served}",
                param=param,
            )
        return model

    async def _web_search(self, ctx: RequestCtx, query: str, domains: list[str] | None) -> dict[str, Any]:
        """The separate search call (UPSTREAM.md §5.4): requestType web_search,
        a web-search model of the catalog, only the googleSearch tool, no
        requestId or sessionId."""
        listed = self.pool.catalog().web_search_models or models_mod.DEFAULT_CATALOG.web_search_models
        if not listed:
            raise UpstreamError("the model catalog names no web-search model")
        model = listed[0]
        search = GeminiCall(
            request=web_search.search_request(query, domains), client_model=model, model=model
        )

        def body_for(acct: Account, credits: bool = False) -> bytes:
            env = envelope(
                project=acct.project, model=model, request=search.request, request_type="web_search"
            )
            env.pop("requestId", None)
            if credits:
                env["enabledCreditTypes"] = [CREDIT_TYPE]
            return _encode(env)

        _, resp = await self._run(search, ctx, "generateContent", body_for)
        out: dict[str, Any] = resp
        return out

    @staticmethod
    def _continue(
        call: GeminiCall,
        turn: list[dict[str, Any]],
        responses: list[dict[str, Any]],
        tools: dict[str, dict[str, Any]],
    ) -> None:
        """Append the model's turn (as it came, signatures included) and the
        server tools' answers; a tool_choice that forced a server tool is
        relaxed, or the model would have to call it again and again."""
        contents = call.request.setdefault("contents", [])
        contents.append({"role": "model", "parts": turn})
        contents.append({"role": "user", "parts": responses})
        server_tools.relax_choice(call.request, tools)

    async def generate_image(self, call: GeminiCall, ctx: RequestCtx) -> dict[str, Any]:
        """One answer of the image model (UPSTREAM.md §5.5). ``call.request``
        goes out as the image protocol built it (no tools, no system
        instruction, ``generationConfig.imageConfig``), so no model rules
        apply; the envelope says ``requestType: "image_gen"`` with its own
        requestId form, a new one per attempt."""

        def body_for(acct: Account, credits: bool = False) -> bytes:
            env = envelope(
                project=acct.project,
                model=call.model,
                request=call.request,
                request_type="image_gen",
                request_id=image_request_id(),
            )
            if credits:
                env["enabledCreditTypes"] = [CREDIT_TYPE]
            return _encode(env)

        _, resp = await self._run(call, ctx, "generateContent", body_for)
        result: dict[str, Any] = resp
        return result

    async def stream(self, call: GeminiCall, ctx: RequestCtx) -> AsyncIterator[dict[str, Any]]:
        """Opens the stream (failing over until a first event arrives) and
        returns an iterator over the unwrapped events. Closing the iterator
        (client gone) closes the upstream response at once."""
        _, (resp, events, first) = await self._run(call, ctx, "stream", self._envelope(call))
        relay = self._relay(resp, events, first, ctx, self._prepare(call))
        tools = server_tools.enabled(call)
        if not tools:
            return relay
        return self._serving_tools(call, ctx, relay, tools)

    async def _serving_tools(
        self,
        call: GeminiCall,
        ctx: RequestCtx,
        relay: AsyncIterator[dict[str, Any]],
        tools: dict[str, dict[str, Any]],
    ) -> AsyncIterator[dict[str, Any]]:
        """The stream of a request with server tools: each round's events go
        on as they come until its first function call; from there the round's
        parts (and its finishReason) are held back to its end. Then, when the
        round called server tools: a chunk saying which calls run (tools that
        show progress), and either a chunk with their results followed by the
        next round's stream, or, when the client's own calls came too, one
        chunk with the results and those calls that ends the answer (see
        ``protocols.server_tools``)."""
        used: dict[str, int] = {}
        rounds = server_tools.rounds(tools)
        for n in range(rounds):
            last = n == rounds - 1
            turn: list[dict[str, Any]] = []
            held: list[dict[str, Any]] = []  # the round's parts from its first call on
            finish: str | None = None
            try:
                async for ev in relay:
                    parts = parts_of(ev)
                    turn.extend(parts)
                    at = 0 if held else server_tools.first_call(parts)
                    if at is not None:
                        held += parts[at:]
                        _set_parts(ev, parts[:at])
                        # The round's end is told when the held parts are out.
                        finish = candidate(ev).pop("finishReason", None) or finish
                    yield ev
            finally:
                aclose = getattr(relay, "aclose", None)
                if aclose is not None:
                    await aclose()
            kept, calls, other = server_tools.split_calls(held, tools)
            if not calls or (last and not other):
                if kept or finish:
                    yield server_tools.chunk(kept, finish)
                return
            planned = server_tools.plan(calls, tools, used)
            running = server_tools.pending_parts(planned)
            if running:
                yield server_tools.chunk(running)
            responses, results = await self._server_calls(ctx, planned, tools)
            if other:
                yield server_tools.chunk(server_tools.place(kept, results), finish)
                return
            if kept or results:
                yield server_tools.chunk(kept + results)
            self._continue(call, server_tools.merge_parts(turn), responses, tools)
            _, (resp, events, first) = await self._run(call, ctx, "stream", self._envelope(call))
            relay = self._relay(resp, events, first, ctx, self._prepare(call))

    async def _relay(
        self,
        resp: Reply,
        events: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        ctx: RequestCtx,
        placeholders: frozenset[str],
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            self._note_usage(first, ctx)
            rules.strip_placeholder_calls(first, placeholders)
            yield first
            try:
                async for ev in events:
                    self._note_usage(ev, ctx)
                    rules.strip_placeholder_calls(ev, placeholders)
                    yield ev
            except UpstreamHTTPError as exc:
                # An error event inside the stream, after the first byte.
                raise exc.classified.gateway_error() from None
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
        self._prepare(call)
        req: dict[str, Any] = {"model": f"models/{call.model}", "contents": call.request.get("contents", [])}
        for key in ("systemInstruction", "tools"):
            if key in call.request:
                req[key] = call.request[key]
        body = _encode({"request": req})
        _, data = await self._run(call, ctx, "countTokens", lambda acct, credits=False: body)
        total = data.get("totalTokens") if isinstance(data, dict) else None
        if not isinstance(total, int):
            raise UpstreamError("the upstream countTokens answer has no totalTokens")
        return total


def _set_parts(resp: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    cand = candidate(resp)
    if cand:
        content = cand.setdefault("content", {"role": "model"})
        content["parts"] = parts


# Stream events read ahead at most while an answer may still be a split
# client-version refusal (its texts are about ten words).
_VERSION_PEEK_EVENTS = 16


def _answer_text(resp: dict[str, Any]) -> str:
    """The answer's text (not thoughts) in its first parts, for the §2.2 check."""
    return "".join(
        p["text"] for p in parts_of(resp)[:3] if not p.get("thought") and isinstance(p.get("text"), str)
    )


def _says_something(resp: dict[str, Any]) -> bool:
    """Whether a stream event carries any of the answer (text, a thought, a
    call, a picture): events before the first that does are read ahead too,
    since a refusal may follow them."""
    return any(
        p.get("text") or p.get("thought") or "functionCall" in p or "inlineData" in p for p in parts_of(resp)
    ) or bool(candidate(resp).get("finishReason"))


async def _replay(
    held: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """The events read ahead, then the rest of the stream; closing it closes the rest."""
    try:
        for event in held:
            yield event
        async for event in rest:
            yield event
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _first_text(request: dict[str, Any]) -> str:
    for content in request.get("contents") or []:
        if isinstance(content, dict) and content.get("role") == "user":
            for part in content.get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    return str(part["text"])
    return ""


class _EmptyAnswer(Exception):
    """The upstream answered with no content: retryable before the first byte."""
