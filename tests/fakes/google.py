"""A fake Google for tests: Cloud Code ``v1internal``, Google OAuth, and the public Gemini API.

The real hosts are unreachable from the development machines, so every test of
the gateway talks to this fake instead. It is a real HTTP server (uvicorn on
``127.0.0.1``, a raw ASGI app, no framework) running in a daemon thread with its
own event loop, so sync and async tests can both use it::

    from tests.fakes.google import FakeGoogle, Reply

    with FakeGoogle() as fake:                    # or fake = FakeGoogle().start()
        acct = fake.add_account(email="a@example.com", refresh_token="1//rt-a",
                                project="proj-a", tier="PRO")
        fake.script([Reply.function_call("read_file", {"path": "x"})])
        ...  # point the daemon at fake.endpoint / fake.token_url / ...
        assert fake.calls[-1].email == "a@example.com"

Facts it follows (all from /work/shared/UPSTREAM.md; a test that passes here must
also pass against Google):

Hosts and routes
    ``POST {endpoint}/v1internal:{method}`` for ``generateContent``,
    ``streamGenerateContent?alt=sse``, ``countTokens``, ``loadCodeAssist``,
    ``onboardUser``, ``fetchAvailableModels``, ``retrieveUserQuotaSummary`` and
    ``retrieveUserQuota``; ``GET {endpoint}/v1internal/operations/<id>`` (onboarding
    operations); ``POST {base}/token`` (OAuth token endpoint, both grants,
    form-encoded); ``GET {base}/o/oauth2/v2/auth`` (consent page, answers a 302 to
    the loopback redirect); ``GET {base}/oauth2/v2/userinfo``; the public Gemini API
    ``POST {base}/v1beta/models/{model}:generateContent`` /
    ``:streamGenerateContent?alt=sse`` / ``:countTokens`` (no envelope, any API key).
    Every v1internal answer carries ``server: ESF`` and ``x-cloudaicompanion-trace-id``
    (the same id as the body's ``traceId``); error answers of stream calls are JSON
    labelled ``text/event-stream`` (UPSTREAM.md §8.3).

Authentication and account state
    Every v1internal method needs ``Authorization: Bearer <access token>`` issued
    by the token endpoint and not expired/revoked, else 401 UNAUTHENTICATED
    ("Request had invalid authentication credentials..."). An ``x-goog-user-project``
    header answers 403 SERVICE_DISABLED (§9.6d). ``acct.forbidden`` makes an account
    answer every call with a §9 error (a kind of :data:`ERROR_BODIES`, e.g.
    ``"VALIDATION_REQUIRED"`` with the account's ``validation_url``, or
    ``"TOS_VIOLATION"``; ``"TOS"``, the old knob, is the plain 403 "The caller does not
    have permission"; other text: a 403 with that message).

Client versions (UPSTREAM.md §2.2; knobs ``version_gate``, ``min_supported_version``,
``gated_min_version``, ``gated_models``)
    The User-Agent's version (``antigravity/hub/X.Y.Z``, ``antigravity/cli/X.Y.Z``,
    legacy ``antigravity/X.Y.Z``; anything else counts as too old) must reach
    :data:`MIN_SUPPORTED_VERSIONS` for its family, else generate/stream/countTokens
    answer 503 "This version of Antigravity is no longer supported. Please upgrade to
    receive the latest features."; the suffixed 3.6/3.7 Flash ids
    (:data:`GATED_MODELS`) answer 404 to clients under 2.9.0. Account methods are not
    gated. ``FakeGoogle(version_gate=False)`` turns all of it off.

Catalog and quota (UPSTREAM.md §4)
    Accounts get the 28-entry catalog of 2026-08-22 (:data:`DEFAULT_MODELS`; the
    late-2025 one is :data:`LEGACY_MODELS`) and fetchAvailableModels answers it with
    the top-level keys of :data:`CATALOG_META`. Quota lives in four buckets per
    account (``gemini-5h``, ``gemini-weekly``, ``3p-5h``, ``3p-weekly``; Claude and
    GPT-OSS are ``3p``); a model's ``quotaInfo`` is its group's 5-hour bucket,
    internal and tab models show ``{"remainingFraction": 1}``. A group whose 5-hour or
    weekly bucket is at 0 answers 429 QUOTA_EXHAUSTED on every model of the group
    (weekly: "Individual quota reached ... Resets in ..."), unless the envelope has
    ``enabledCreditTypes: ["GOOGLE_ONE_AI"]`` and the account has usable credits
    (else INSUFFICIENT_G1_CREDITS_BALANCE). A bucket whose reset time passed is full.

Onboarding (UPSTREAM.md §3.3-3.4)
    ``add_account(..., fresh=True)``: loadCodeAssist shows no project; onboardUser
    needs ``tierId``/``tier_id`` (``free-tier``, or ``standard-tier`` with the user's
    ``cloudaicompanionProject``) and ``metadata`` (else the bare 400), answers
    ``{"name": "operations/<id>", "done": false}`` ``onboard_pending`` times (re-POST
    or GET the operation), then ``done: true`` with
    ``response.cloudaicompanionProject.id``; the project is the account's from then.

Envelope (generate / stream)
    ``{"project", "model", "requestId"?, "userAgent", "requestType", "request",
    "enabledCreditTypes"?}`` (snake_case names too; other keys: 400 unknown name);
    the project must be the account's (another fake account's project: 403,
    any other project — also before onboarding —: 403 SUBSCRIPTION_REQUIRED, none:
    400), the model must be in the account's catalog (else 404 "Requested entity was
    not found."), ``request.contents`` must be non-empty. A ``googleSearch`` tool
    gives a grounded answer (``groundingMetadata``, :meth:`Reply.search`); the image
    model answers an ``inlineData`` PNG.

Request validation (both families), answered with Google's 400 messages
    * proto (snake_case) and JSON (lowerCamelCase) field names are both accepted:
      incoming keys are normalised to camelCase once (only keys that are known
      field names; unknown keys keep their spelling so errors name them as sent;
      the insides of ``functionCall.args``, ``functionResponse.response``,
      schema ``properties`` names, ``example``/``default`` are never touched);
    * unknown fields on the request, a Content, a Part, a Tool, a
      FunctionDeclaration, generationConfig or thinkingConfig:
      ``Invalid JSON payload received. Unknown name "X" at
      'request.contents[0].parts[1]': Cannot find field.``
      (e.g. an Anthropic ``cache_control`` left on a part);
    * ``systemInstruction`` must be a Content object, not a string;
    * a part with no data field (an empty text counts as none unless the part
      carries a thoughtSignature — the Gemini "carrier" part):
      ``required oneof field 'data' must have one initialized field``;
    * roles must be ``user`` or ``model``; parts must not be empty;
    * function parameter schemas may only use Gemini's Schema keys
      (:data:`SCHEMA_KEYS`), checked recursively through ``properties``,
      ``items`` and ``anyOf``; ``type`` must be one string;
    * tool names must match ``^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$``;
    * every ``functionCall`` and ``functionResponse`` needs a ``name``;
    * ``maxOutputTokens`` at most the catalog's ``maxOutputTokens`` of the model;
    * ``thinkingConfig`` has ``thinkingBudget`` or ``thinkingLevel`` (any letter case),
      not both (§7.1);
    * no ``googleSearch`` next to ``functionDeclarations`` (§5.4);
    * Claude (§6.3, Anthropic JSON in the message): every declaration needs
      ``parameters`` (``parametersJsonSchema`` or none: "tools.N.custom.input_schema:
      Field required"), without the keys of :data:`CLAUDE_REJECTED_SCHEMA_KEYS` ("JSON
      schema is invalid..."); in VALIDATED mode an empty schema is the bare 400.

Thinking, signatures and tool calls (``fake.check_signatures``, default True)
    The fake issues signatures itself (opaque base64 strings it remembers, tied
    to the model family; for Claude also to the exact thought text; for Gemini
    to the kind of part — a functionCall of that name, or a non-call part).
    The *current turn* is every content after the last ``user`` content that
    has a ``text`` part. ``thoughtSignature`` is a proto ``bytes`` field: it is
    compared by its decoded bytes, so standard and URL-safe base64, padded or
    not, are the same signature (SDKs re-encode it); a value that is not base64
    at all is a 400 "Invalid value at '...thought_signature' (TYPE_BYTES),
    Base64 decoding failed for ...".

    Gemini-family (``gemini-*``), current turn only: the first functionCall
    part of each model content must carry a signature issued for a Gemini model
    on a functionCall of the same name, or ``skip_thought_signature_validator``;
    missing -> 400 "Function call is missing a thought_signature in
    functionCall parts. ... function call `default_api:NAME` , position N. ..."
    where N is the 1-based index of that content in ``contents``; any other
    signature in the current turn that the fake did not issue for a Gemini model
    (or that moved between a call and a non-call part, or between calls of
    different names) -> 400 "Corrupted thought signature.".

    Claude-family (``claude-*``), errors are Google 400s whose message is the
    Anthropic JSON error text (``{"type":"error","error":{"type":
    "invalid_request_error","message":...}}``); ``messages.N.content.M`` are the
    content and part indexes in ``contents``:
    * the conversation must end with a user content ("This model does not
      support assistant message prefill...");
    * every model functionCall needs an ``id``; every functionResponse needs the
      ``id`` of a functionCall in the previous model content, and every call
      needs its response in the very next content;
    * when thinking is on (the model supports thinking and
      ``thinkingConfig.includeThoughts`` is true or ``thinkingBudget >= 1024``):
      ``maxOutputTokens`` must exceed ``thinkingBudget``; every thought part in
      a model content must have non-empty text ("...thinking.thinking: Field
      required"), a signature ("...thinking.signature: Field required"), issued
      by the fake for a Claude model for exactly that text ("Invalid
      `signature` in `thinking` block"); and when the current turn contains a
      model functionCall (a tool loop), every model content of the current turn
      must start with a thought part ("Expected `thinking` or
      `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a
      final `assistant` message must start with a thinking block ...").
    ``check_signatures = False`` turns off every signature/thinking-block rule
    above (the structural Claude rules stay on).

Replies
    Non-stream: ``{"response": GenerateContentResponse, "traceId"}``. Stream
    (``alt=sse``): one ``data: {"response": {...}, "traceId"}`` event per chunk,
    each written as its own body message (really flushed), the last carrying
    ``finishReason`` and ``usageMetadata``. Without ``alt=sse`` a stream is a
    JSON array, as Google does. The public Gemini API answers the bare
    GenerateContentResponse (events end with CRLF CRLF, like Google's).

    Signatures in replies: Gemini — on the first functionCall part (parallel
    calls: only the first; always, thinking or not), else on the last text
    part when a thought was produced (or on an empty-text "carrier" part with
    ``carrier=True``). Claude — non-stream: one thought part with text and
    signature; stream: the thought text over unsigned chunks, then
    ``{"thought": true, "text": ""}`` and ``{"thought": true,
    "thoughtSignature": ...}``; tool call ids look like ``toolu_vrtx_...``.

    Usage: ``promptTokenCount = count_tokens(request)``;
    ``candidatesTokenCount = ceil(len(answer text + compact JSON of call args) / 4)``;
    ``thoughtsTokenCount = ceil(len(thought) / 4)`` when a thought was produced;
    ``totalTokenCount`` is their sum. ``Reply(usage=...)`` overrides any of them
    (e.g. ``cachedContentTokenCount``).

Errors
    Google JSON errors ``{"error": {"code", "message", "status", "details"}}``;
    429 details carry ``google.rpc.ErrorInfo`` (``reason``, ``domain``
    ``cloudcode-pa.googleapis.com``, ``metadata.quotaResetDelay`` as a Go
    duration, ``metadata.quotaResetTimeStamp`` RFC3339, ``metadata.model``)
    and/or ``google.rpc.RetryInfo`` (``retryDelay``), maybe a ``Retry-After``
    header (``Reply.error``). An empty quota bucket answers 429 QUOTA_EXHAUSTED by
    itself, for the whole group of models of that account (see Catalog and quota).

The tier of an account (``loadCodeAssist``, the live shape of UPSTREAM.md §3.3):
    * ``paidTier.id``: ``"g1-pro-tier"`` (name "Google AI Pro") for PRO,
      ``"g1-ultra-tier"`` (name "Google AI Ultra") for ULTRA; **no paidTier key at
      all for FREE**; ``paidTier.availableCredits`` when the account has credits;
    * ``currentTier.id`` is ``"free-tier"`` for every tier, so it does not tell the
      tiers apart; ``allowedTiers`` lists ``free-tier`` (``isDefault: true``) and
      ``standard-tier``;
    * ``metadata`` enums (ideType, platform, pluginType) are checked: names or numbers.

Errors of UPSTREAM.md §9 on demand: ``fake.fail_next(kind, n, email=, model=)``, with
the bodies of :func:`error_body` / :data:`ERROR_BODIES`.

Knobs and records are attributes of :class:`FakeGoogle` and :class:`Account`;
:meth:`FakeGoogle.reset` puts every knob back and clears records and scripts
but keeps the accounts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import math
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import msgspec
import uvicorn

__all__ = [
    "ANTIGRAVITY_CLIENT_ID",
    "BUCKETS",
    "CATALOG_META",
    "DEFAULT_MODELS",
    "ERROR_BODIES",
    "ERROR_KINDS",
    "ERROR_STATUS",
    "GATED_MODELS",
    "HUB_USER_AGENT",
    "LEGACY_MODELS",
    "MIN_SUPPORTED_VERSIONS",
    "SCHEMA_KEYS",
    "SKIP_SIGNATURE",
    "Account",
    "Bucket",
    "Call",
    "FakeGoogle",
    "Reply",
    "SignatureInfo",
    "client_version",
    "count_tokens",
    "error_body",
    "signature_bytes",
    "go_duration",
    "model_family",
    "to_camel",
]

# --------------------------------------------------------------------------- constants

#: The public client id of the Antigravity desktop client (UPSTREAM.md, OAuth).
ANTIGRAVITY_CLIENT_ID = "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "test-secret"
#: Accepted instead of a real signature on a Gemini functionCall part.
SKIP_SIGNATURE = "skip_thought_signature_validator"
DEFAULT_EXPIRES_IN = 3599
DEFAULT_SCOPES = (  # a real agy token's, per Google's tokeninfo (UPSTREAM.md §3.1)
    "openid https://www.googleapis.com/auth/aicode https://www.googleapis.com/auth/cloud-platform "
    "https://www.googleapis.com/auth/userinfo.email "
    "https://www.googleapis.com/auth/userinfo.profile "
    "https://www.googleapis.com/auth/cclog "
    "https://www.googleapis.com/auth/experimentsandconfigs"
)
ERROR_DOMAIN = "cloudcode-pa.googleapis.com"
#: Claude thinking needs a budget of at least this many tokens (UPSTREAM.md).
MIN_THINKING_BUDGET = 1024
#: Default time until a model's quota resets, for fresh accounts.
DEFAULT_QUOTA_WINDOW = timedelta(hours=5)  # the 5-hour bucket (BUCKET_WINDOWS)

UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MISSING_CREDENTIALS_MESSAGE = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
NOT_FOUND_MESSAGE = "Requested entity was not found."
PERMISSION_DENIED_MESSAGE = "The caller does not have permission"
MISSING_SIGNATURE_MESSAGE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
CORRUPTED_SIGNATURE_MESSAGE = "Corrupted thought signature."
QUOTA_MESSAGE = "You have exhausted your capacity on this model. Your quota will reset after {delay}."
ONEOF_MESSAGE = "required oneof field 'data' must have one initialized field"
TOOL_NAME_MESSAGE = (
    "Invalid function name. Must start with a letter or an underscore. Must be alphameric "
    "(a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
    "length of 64."
)
PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)
THINKING_FIRST_MESSAGE = (
    "Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is "
    "enabled, a final `assistant` message must start with a thinking block (preceeding the "
    "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking "
    "blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult "
    "our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
MISSING_RESULT_MESSAGE = (
    "messages.{n}: `tool_use` ids were found without `tool_result` blocks immediately after: "
    "{ids}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
    "message."
)
UNEXPECTED_RESULT_MESSAGE = (
    "messages.{n}.content.{m}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. "
    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
)
BUDGET_MESSAGE = (
    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
    "documentation at https://docs.claude.com/en/docs/build-with-claude/"
    "extended-thinking#max-tokens-and-context-window-size"
)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
DEFAULT_ERROR_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: UNAUTHENTICATED_MESSAGE,
    403: PERMISSION_DENIED_MESSAGE,
    404: NOT_FOUND_MESSAGE,
    408: "Request timed out.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
    529: "The model is overloaded. Please try again later.",
}

#: Field names of Gemini's Schema object: anything else in function parameters is a 400.
SCHEMA_KEYS = frozenset(
    "type format title description nullable enum maxItems minItems properties required "
    "minProperties maxProperties minLength maxLength pattern example anyOf propertyOrdering "
    "default items minimum maximum".split()
)
SCHEMA_TYPES = frozenset("STRING NUMBER INTEGER BOOLEAN ARRAY OBJECT NULL TYPE_UNSPECIFIED".split())
# The Part's "data" oneof (a part needs exactly one of these).
PART_DATA_KEYS = frozenset(
    "text inlineData fileData functionCall functionResponse executableCode codeExecutionResult".split()
)
PART_KEYS = PART_DATA_KEYS | frozenset(
    "thought thoughtSignature videoMetadata partMetadata mediaResolution".split()
)
CONTENT_KEYS = frozenset({"role", "parts"})
REQUEST_KEYS = frozenset(
    "contents systemInstruction tools toolConfig generationConfig safetySettings sessionId "
    "cachedContent labels model modelArmorConfig".split()
)
TOOL_KEYS = frozenset(
    "functionDeclarations googleSearch googleSearchRetrieval codeExecution urlContext retrieval "
    "computerUse googleMaps enterpriseWebSearch fileSearch".split()
)
FUNCTION_DECLARATION_KEYS = frozenset(
    "name description parameters parametersJsonSchema response responseJsonSchema behavior".split()
)
GENERATION_CONFIG_KEYS = frozenset(
    "temperature topP topK candidateCount maxOutputTokens stopSequences presencePenalty "
    "frequencyPenalty seed responseMimeType responseSchema responseJsonSchema responseLogprobs "
    "logprobs responseModalities speechConfig thinkingConfig mediaResolution "
    "enableEnhancedCivicAnswers routingConfig audioTimestamp imageConfig modelSelectionConfig "
    "enableAffectiveDialog".split()
)
THINKING_CONFIG_KEYS = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
OTHER_KNOWN_KEYS = frozenset(
    "mimeType data fileUri displayName name args id response mode allowedFunctionNames "
    "functionCallingConfig retrievalConfig category threshold method startOffset endOffset fps "
    "language code outcome output generateContentRequest willContinue scheduling parts".split()
)
# snake_case keys are converted only when their camelCase form is one of these, so an
# unknown key keeps the spelling the client sent and the error names it as sent.
KNOWN_CAMEL_KEYS = frozenset().union(
    SCHEMA_KEYS,
    PART_KEYS,
    CONTENT_KEYS,
    REQUEST_KEYS,
    TOOL_KEYS,
    FUNCTION_DECLARATION_KEYS,
    GENERATION_CONFIG_KEYS,
    THINKING_CONFIG_KEYS,
    OTHER_KNOWN_KEYS,
)
# Values under these keys are user data (JSON Struct/Value in the proto), never renamed.
OPAQUE_KEYS = frozenset(
    "args response example default labels parametersJsonSchema responseJsonSchema enum".split()
)

TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
FUNCTION_CALLING_MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"})


# Keys of a model table entry that are the fake's own bookkeeping, never sent.
#   quota: False -> no quotaInfo at all; group: "gemini" | "3p" | None (None: not metered,
#   quotaInfo is {"remainingFraction": 1} as Google shows for internal and tab models).
_PRIVATE_MODEL_KEYS = frozenset({"quota", "group"})

_PROVIDERS = {
    "GOOGLE_GEMINI": ("API_PROVIDER_GOOGLE_GEMINI", "MODEL_PROVIDER_GOOGLE", "gemini"),
    "ANTHROPIC_VERTEX": ("API_PROVIDER_ANTHROPIC_VERTEX", "MODEL_PROVIDER_ANTHROPIC", "3p"),
    "OPENAI_VERTEX": ("API_PROVIDER_OPENAI_VERTEX", "MODEL_PROVIDER_OPENAI", "3p"),
    "INTERNAL": ("API_PROVIDER_INTERNAL", "MODEL_PROVIDER_GOOGLE", None),
}


def _entry(
    enum: str,
    provider: str = "GOOGLE_GEMINI",
    display: str | None = None,
    *,
    budget: int | None = None,
    min_budget: int | None = None,
    max_tokens: int | None = None,
    max_output: int | None = None,
    images: bool = False,
    video: bool = False,
    tag: tuple[str, ...] = (),
    internal: bool = False,
    metered: bool = True,
) -> dict[str, Any]:
    """One catalog entry as fetchAvailableModels shows it (UPSTREAM.md §4.1): booleans only
    when true, numbers only when the live entry has them."""
    api, vendor, group = _PROVIDERS[provider]
    entry: dict[str, Any] = {}
    if display is not None:
        entry["displayName"] = display
    if images:
        entry["supportsImages"] = True
    if budget is not None:
        entry["supportsThinking"] = True
        entry["thinkingBudget"] = budget
    if min_budget is not None:
        entry["minThinkingBudget"] = min_budget
    if max_tokens is not None:
        entry["maxTokens"] = max_tokens
    if max_output is not None:
        entry["maxOutputTokens"] = max_output
    entry["model"] = enum
    entry["apiProvider"] = api
    entry["modelProvider"] = vendor
    if video:
        entry["supportsVideo"] = True
    if tag:
        entry["tagTitle"] = tag[0]
        if len(tag) > 1:
            entry["tagDescription"] = tag[1]
    if internal:
        entry["isInternal"] = True
    entry["group"] = group if metered else None
    return entry


_FAST = ("Fast", "Limited time")
_M = 1048576


def _flash(enum: str, display: str | None, budget: int, tag: tuple[str, ...] = _FAST) -> dict[str, Any]:
    return _entry(
        enum,
        display=display,
        budget=budget,
        min_budget=32,
        max_tokens=_M,
        max_output=65536,
        images=True,
        video=True,
        tag=tag,
    )


def _pro(enum: str, display: str, budget: int, tag: tuple[str, ...] = ()) -> dict[str, Any]:
    return _entry(
        enum,
        display=display,
        budget=budget,
        min_budget=128,
        max_tokens=_M,
        max_output=65535,
        images=True,
        video=True,
        tag=tag,
    )


def _lite(enum: str, display: str | None) -> dict[str, Any]:
    return _entry(enum, display=display, max_tokens=_M, max_output=65535)


#: The live catalog of 2026-08-22, 28 entries (UPSTREAM.md §4.1, display-name traps included).
#: Every account gets it unless ``add_account(models=...)`` (or ``FakeGoogle(default_models=)``)
#: says otherwise.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "gemini-3.7-flash-high": _flash("MODEL_PLACEHOLDER_M298", "Gemini 3.7 Flash (High)", -1),
    "gemini-3.7-flash-medium": _flash("MODEL_PLACEHOLDER_M299", "Gemini 3.7 Flash (Medium)", 4000),
    "gemini-3.7-flash-low": _flash("MODEL_PLACEHOLDER_M300", "Gemini 3.7 Flash (Low)", 1000),
    "gemini-3.7-flash-tiered": _flash("MODEL_PLACEHOLDER_M301", None, -1, ()),
    "gemini-3.6-flash-high": _flash("MODEL_PLACEHOLDER_M71", "Gemini 3.6 Flash (High)", -1),
    "gemini-3.6-flash-medium": _flash("MODEL_PLACEHOLDER_M72", "Gemini 3.6 Flash (Medium)", 4000),
    "gemini-3.6-flash-low": _flash("MODEL_PLACEHOLDER_M73", "Gemini 3.6 Flash (Low)", 1000),
    "gemini-3.6-flash-tiered": _flash("MODEL_PLACEHOLDER_M196", None, -1, ()),
    "gemini-3-flash-agent": _flash("MODEL_PLACEHOLDER_M84", "Gemini 3.5 Flash (High)", -1),
    "gemini-3.5-flash-low": _flash("MODEL_PLACEHOLDER_M20", "Gemini 3.5 Flash (Medium)", 4000),
    "gemini-3.5-flash-extra-low": _flash("MODEL_PLACEHOLDER_M187", "Gemini 3.5 Flash (Low)", 1000),
    "gemini-3-flash": _flash("MODEL_PLACEHOLDER_M18", "Gemini 3 Flash", -1, ()),
    "gemini-pro-agent": _pro("MODEL_PLACEHOLDER_M16", "Gemini 3.1 Pro (High)", 10001),
    "gemini-3.1-pro-high": _pro("MODEL_PLACEHOLDER_M37", "Gemini 3.1 Pro (High)", 10001, ("New",)),
    "gemini-3.1-pro-low": _pro("MODEL_PLACEHOLDER_M36", "Gemini 3.1 Pro (Low)", 1001),
    "gemini-3.1-flash-lite": _lite("MODEL_PLACEHOLDER_M50", "Gemini 3.1 Flash Lite"),
    "gemini-3.1-flash-image": _entry("MODEL_PLACEHOLDER_M21", display="Gemini 3.1 Flash Image"),
    "gemini-2.5-pro": _entry(
        "MODEL_GOOGLE_GEMINI_2_5_PRO",
        display="Gemini 2.5 Pro",
        budget=1024,
        min_budget=128,
        max_tokens=_M,
        max_output=65535,
        images=True,
    ),
    "gemini-2.5-flash": _lite("MODEL_GOOGLE_GEMINI_2_5_FLASH", "Gemini 3.1 Flash Lite"),
    "gemini-2.5-flash-lite": _lite("MODEL_GOOGLE_GEMINI_2_5_FLASH_LITE", "Gemini 3.1 Flash Lite"),
    "gemini-2.5-flash-thinking": _lite("MODEL_GOOGLE_GEMINI_2_5_FLASH_THINKING", "Gemini 3.1 Flash Lite"),
    "claude-opus-4-6-thinking": _entry(
        "MODEL_PLACEHOLDER_M26",
        "ANTHROPIC_VERTEX",
        "Claude Opus 4.6 (Thinking)",
        budget=1024,
        max_tokens=250000,
        max_output=64000,
        images=True,
    ),
    "claude-sonnet-4-6": _entry(
        "MODEL_PLACEHOLDER_M35",
        "ANTHROPIC_VERTEX",
        "Claude Sonnet 4.6 (Thinking)",
        budget=1024,
        max_tokens=250000,
        max_output=64000,
        images=True,
    ),
    "gpt-oss-120b-medium": _entry(
        "MODEL_OPENAI_GPT_OSS_120B_MEDIUM",
        "OPENAI_VERTEX",
        "GPT-OSS 120B (Medium)",
        budget=8192,
        max_tokens=131072,
        max_output=32768,
    ),
    # IDE completion models: not metered (quotaInfo {"remainingFraction": 1}).
    "tab_flash_lite_preview": _entry(
        "MODEL_PLACEHOLDER_M19", max_tokens=16384, max_output=4096, metered=False
    ),
    "tab_jump_flash_lite_preview": _entry(
        "MODEL_PLACEHOLDER_M28", max_tokens=16384, max_output=4096, metered=False
    ),
    "chat_20706": _entry("MODEL_CHAT_20706", "INTERNAL", max_tokens=16384, internal=True),
    "chat_23310": _entry("MODEL_CHAT_23310", "INTERNAL", max_tokens=32768, internal=True),
}
# Catalog order is the live dump's; agentModelSorts lists these as "Recommended".
_AGENT_MODELS = [
    "gemini-3.7-flash-high",
    "gemini-3.7-flash-medium",
    "gemini-3.7-flash-low",
    "gemini-3.6-flash-high",
    "gemini-3.6-flash-medium",
    "gemini-3.6-flash-low",
    "gemini-3-flash-agent",
    "gemini-3.5-flash-low",
    "gemini-3.5-flash-extra-low",
    "gemini-pro-agent",
    "gemini-3.1-pro-low",
    "claude-sonnet-4-6",
    "claude-opus-4-6-thinking",
    "gpt-oss-120b-medium",
]
for _id in _AGENT_MODELS:
    DEFAULT_MODELS[_id]["recommended"] = True

#: The top-level keys of the 2026-08-22 fetchAvailableModels answer besides ``models``
#: (UPSTREAM.md §4.1). Lists are filtered to the ids an account actually has.
CATALOG_META: dict[str, Any] = {
    "defaultAgentModelId": "gemini-3.7-flash-high",
    "agentModelSorts": [{"displayName": "Recommended", "groups": [{"modelIds": _AGENT_MODELS}]}],
    "commandModelIds": ["gemini-3-flash"],
    "tabModelIds": ["chat_20706", "chat_23310"],
    "imageGenerationModelIds": ["gemini-3.1-flash-image"],
    "mqueryModelIds": ["gemini-3.1-flash-lite"],
    "webSearchModelIds": ["gemini-3.1-flash-lite"],
    "deprecatedModelIds": {
        "gemini-3.1-pro-high": {
            "newModelId": "gemini-pro-agent",
            "oldModelEnum": "MODEL_PLACEHOLDER_M37",
            "newModelEnum": "MODEL_PLACEHOLDER_M16",
        }
    },
    "commitMessageModelIds": ["gemini-3.1-flash-lite"],
    "audioTranscriptionModelIds": ["models/proactive-observer-v10"],
    "experimentIds": [106140402, 105979552, 106015333, 105867471, 106123599, 106121401],
    "tieredModelIds": {
        "flashLite": ["gemini-3.1-flash-lite"],
        "flash": ["gemini-3.7-flash-tiered"],
        "pro": ["gemini-3.1-pro-low"],
    },
}

#: The suffixed Gemini 3.6/3.7 ids that Cloud Code resolves only for clients reporting at
#: least 2.9.0 (UPSTREAM.md §2.2 item 1, §4.1 "Which ids can actually be requested": the
#: ``*-tiered`` ids are what older clients could still use, so they are not gated).
GATED_MODELS = frozenset(f"gemini-{v}-flash-{e}" for v in ("3.6", "3.7") for e in ("high", "medium", "low"))

INFERENCE_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
#: Floors under which inference answers 503 (see FakeGoogle.min_supported_version).
MIN_SUPPORTED_VERSIONS = {"legacy": "1.22.0", "cli": "1.1.0", "hub": "2.1.0"}
#: A User-Agent the fake accepts for everything (the hub manifest's 2026-08-22 version).
HUB_USER_AGENT = "antigravity/hub/2.9.1 darwin/arm64"
_UA_RE = re.compile(r"^antigravity/(?:(hub|cli)/)?(\d+)\.(\d+)\.(\d+)(?:[\s(]|$)", re.IGNORECASE)


def client_version(user_agent: str) -> tuple[str, tuple[int, int, int]] | None:
    """``(family, (X, Y, Z))`` from an Antigravity User-Agent, or None when it is not one.

    ``antigravity/hub/2.9.1 darwin/arm64`` -> ``("hub", (2, 9, 1))``;
    ``antigravity/cli/1.1.18 linux/amd64`` -> ``("cli", ...)``;
    ``antigravity/1.15.8 linux/amd64`` -> ``("legacy", (1, 15, 8))``.
    """
    match = _UA_RE.match(user_agent.strip())
    if match is None:
        return None
    family = (match.group(1) or "legacy").lower()
    return family, (int(match.group(2)), int(match.group(3)), int(match.group(4)))


def _version_tuple(text: str) -> tuple[int, int, int]:
    x, y, z = (int(n) for n in text.split("."))
    return x, y, z


def _legacy(display: str, max_tokens: int, max_output: int, thinking: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"displayName": display, "maxTokens": max_tokens}
    entry["maxOutputTokens"] = max_output
    if thinking:
        entry["supportsThinking"] = True
    entry["supportsImages"] = True
    return entry


#: The late-2025 catalog the fake used to serve (ids that the real Google no longer has).
#: Only for tests that still need them: ``add_account(models=LEGACY_MODELS)`` or
#: ``FakeGoogle(default_models=LEGACY_MODELS)``.
LEGACY_MODELS: dict[str, dict[str, Any]] = {
    "gemini-3-flash": _legacy("Gemini 3 Flash", _M, 65536, True),
    "gemini-3-pro-high": _legacy("Gemini 3 Pro (High)", _M, 65535, True),
    "gemini-3-pro-low": _legacy("Gemini 3 Pro (Low)", _M, 65535, True),
    "gemini-2.5-flash": _legacy("Gemini 2.5 Flash", _M, 65535, True),
    "gemini-2.5-flash-lite": _legacy("Gemini 2.5 Flash Lite", _M, 65535, True),
    "gemini-2.5-pro": {**_legacy("Gemini 2.5 Pro", _M, 65535, True), "quota": False},
    "claude-sonnet-4-5": _legacy("Claude Sonnet 4.5", 200000, 64000, False),
    "claude-sonnet-4-5-thinking": _legacy("Claude Sonnet 4.5 (Thinking)", 200000, 64000, True),
    "claude-opus-4-5-thinking": _legacy("Claude Opus 4.5 (Thinking)", 200000, 64000, True),
    "chat_20706": {
        "displayName": "chat_20706",
        "maxTokens": 32768,
        "maxOutputTokens": 8192,
        "isInternal": True,
        "group": None,
    },
}

_JSON = msgspec.json.Encoder()
_JSON_SORTED = msgspec.json.Encoder(order="sorted")
_DECODE = msgspec.json.decode

# --------------------------------------------------------------------------- pure helpers


def model_family(model: str) -> str:
    """``"claude"``, ``"gemini"`` or ``"other"`` for a model id (``models/`` prefix allowed)."""
    name = model.removeprefix("models/")
    if name.startswith("claude"):
        return "claude"
    if name.startswith("gemini"):
        return "gemini"
    return "other"


@lru_cache(maxsize=4096)
def _camel_key(key: str) -> str:
    if "_" not in key or key.startswith(("_", "$")):
        return key
    head, *rest = key.split("_")
    camel = head + "".join(word[:1].upper() + word[1:] for word in rest)
    return camel if camel in KNOWN_CAMEL_KEYS else key


def to_camel(obj: Any) -> Any:
    """Rename proto (snake_case) field names to JSON (lowerCamelCase) names, recursively.

    Like Google's parser: only real field names are renamed; user data (call
    arguments, function responses, schema property names, examples) is kept.
    """
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = _camel_key(key) if isinstance(key, str) else key
            if name in OPAQUE_KEYS:
                out[name] = value
            elif name == "properties" and isinstance(value, dict):
                out[name] = {prop: to_camel(schema) for prop, schema in value.items()}
            else:
                out[name] = to_camel(value)
        return out
    if isinstance(obj, list):
        return [to_camel(item) for item in obj]
    return obj


def count_tokens(request: dict[str, Any]) -> int:
    """The fake's deterministic token count of a GenerateContentRequest.

    ``ceil(len(B) / 4)`` where ``B`` is the compact, key-sorted UTF-8 JSON of
    ``{"contents", "systemInstruction", "tools"}`` (those present) taken from
    the request after snake_case names were normalised to camelCase. Other
    fields (generationConfig, model, ...) do not count.
    """
    return _count_normalised(to_camel(request))


def _count_normalised(req: dict[str, Any]) -> int:
    counted = {key: req[key] for key in ("contents", "systemInstruction", "tools") if key in req}
    return math.ceil(len(_JSON_SORTED.encode(counted)) / 4)


def go_duration(seconds: float) -> str:
    """Format seconds as a Go duration, as Google's quotaResetDelay is ("1h30m5s", "500ms")."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        ms = round(seconds * 1000, 3)
        return f"{ms:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    secs = round(secs, 6)
    out += f"{secs:g}s" if secs != int(secs) else f"{int(secs)}s"
    return out


def _proto_duration(seconds: float | str) -> str:
    if isinstance(seconds, str):
        return seconds
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _to_epoch(value: datetime | float | int | str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _split(text: str, pieces: int) -> list[str]:
    """Split text into at most ``pieces`` non-empty consecutive pieces (joining them gives text)."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def signature_bytes(value: Any) -> bytes | None:
    """Decode a ``bytes`` field the way Google's JSON parser does, or None if it is not base64.

    Proto JSON ``bytes`` accept standard or URL-safe base64, padded or not, so two
    spellings of the same bytes are the same signature (the google-genai SDK re-encodes
    signatures URL-safe; Google still accepts them).
    """
    if not isinstance(value, str):
        return None
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


_SKIP_BYTES = signature_bytes(SKIP_SIGNATURE)


def _random_id(n: int = 24) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------- answers (errors)


class _Answer(Exception):
    """A complete HTTP answer raised from deep inside a handler."""

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json; charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def google_error_body(
    code: int,
    message: str | None = None,
    status: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Google JSON error shape ``{"error": {"code", "message", "status", "details"?}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message if message is not None else DEFAULT_ERROR_MESSAGES.get(code, f"HTTP {code}"),
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


class GoogleError(_Answer):
    """A Google JSON error answer."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.error = google_error_body(code, message, status, details)
        self.message: str = self.error["error"]["message"]
        super().__init__(code, _JSON.encode(self.error), headers=headers)


# --------------------------------------------------------------------------- §9 error bodies

_ERRORINFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRYINFO = "type.googleapis.com/google.rpc.RetryInfo"
_HELP = "type.googleapis.com/google.rpc.Help"
VERSION_MESSAGE = (
    "This version of Antigravity is no longer supported. Please upgrade to receive the latest features."
)
WEEKLY_QUOTA_MESSAGE = (
    "Individual quota reached. Contact your administrator to enable overages. Resets in {delay}."
)
TOS_MESSAGE = (
    "This service has been disabled in this account for violation of Terms of Service. Please "
    "submit an appeal to continue using this product."
)
SUBSCRIPTION_MESSAGE = (
    "You are currently configured to use a Google Cloud Project but lack a Gemini Code Assist "
    "license. Please contact your administrator to request a license. (#3501)"
)
SERVICE_DISABLED_MESSAGE = (
    "Cloud Code Private API has not been used in project {p} before or it is disabled. Enable it "
    "by visiting https://console.developers.google.com/apis/api/cloudcode-pa.googleapis.com/"
    "overview?project={p} then retry. If you enabled this API recently, wait a few minutes for "
    "the action to propagate to our systems and retry."
)
VALIDATION_MESSAGE = "Verify your account to continue."
DEFAULT_VALIDATION_URL = (
    "https://accounts.google.com/signin/continue?sarp=1&scc=1&continue=https://developers.google"
    ".com/gemini-code-assist/auth/auth_success_gemini&plt=AKgnsbvexample&flowName=GlifWebSignIn"
    "&authuser"
)
LEARN_MORE_URL = "https://support.google.com/accounts?p=al_alert"
APPEAL_URL = "https://forms.gle/hGzM9MEUv2azZsrb9"
# UNVERIFIED (UPSTREAM.md §4.4, §12.4): only the ErrorInfo reason is known; the status and
# message are the fake's choice.
CREDITS_MESSAGE = "Insufficient Google One AI credits to complete this request."


def _quota_body(
    model: str, message: str, delay: str, stamp: str, retry: str, reason: str = "QUOTA_EXHAUSTED"
) -> dict[str, Any]:
    metadata = {"quotaResetDelay": delay, "quotaResetTimeStamp": stamp, "uiMessage": "true"}
    metadata["model"] = model
    return google_error_body(
        429,
        message,
        details=[
            {"@type": _ERRORINFO, "reason": reason, "domain": ERROR_DOMAIN, "metadata": metadata},
            {"@type": _RETRYINFO, "retryDelay": retry},
        ],
    )


def error_body(
    kind: str,
    *,
    model: str | None = None,
    project: str = "<project-id>",
    validation_url: str = DEFAULT_VALIDATION_URL,
    now: float | None = None,
) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, JSON body)`` of one of Google's error answers (UPSTREAM.md §9).

    ``kind`` is a key of :data:`ERROR_BODIES`. ``model`` replaces the model the capture
    named (in ``metadata.model`` and the capacity text), ``project`` the project of the
    SERVICE_DISABLED text. With ``now`` (epoch seconds), ``quotaResetTimeStamp`` is
    ``now + quotaResetDelay`` instead of the captured stamp (the fake injects bodies so).
    """

    def stamp(captured: str, seconds: float) -> str:
        return captured if now is None else _rfc3339(now + seconds)

    if kind == "QUOTA_EXHAUSTED":
        return 429, _quota_body(
            model or "claude-sonnet-4-5-thinking",
            "You have exhausted your capacity on this model. Your quota will reset after 2h37m22s.",
            "2h37m22.776060443s",
            stamp("2026-01-11T09:42:18Z", 9442.776060443),
            "9442.776060443s",
        )
    if kind == "QUOTA_EXHAUSTED_LONG":
        return 429, _quota_body(
            model or "claude-opus-4-6-thinking",
            "You have exhausted your capacity on this model. Your quota will reset after 25h20m26s.",
            "25h20m26.5s",
            stamp("2026-04-28T10:00:00Z", 91226.5),
            "91226.5s",
        )
    if kind == "QUOTA_EXHAUSTED_WEEKLY":
        return 429, _quota_body(
            model or "gpt-oss-120b-medium",
            WEEKLY_QUOTA_MESSAGE.format(delay="71h15m27s"),
            "71h15m27.791609974s",
            stamp("2026-05-27T11:00:00Z", 256527.791609974),
            "256527.791609974s",
        )
    if kind == "QUOTA_EXHAUSTED_SHORT":
        return 429, {"error": {"status": "RESOURCE_EXHAUSTED", "message": "QUOTA_EXHAUSTED"}}
    if kind == "RATE_LIMIT_EXCEEDED":
        return 429, _quota_body(
            model or "claude-opus-4-6-thinking",
            "You have exhausted your capacity on this model. Your quota will reset after 0s.",
            "479.417207ms",
            stamp("2026-04-20T09:19:49Z", 0.479417207),
            "0.479417207s",
            reason="RATE_LIMIT_EXCEEDED",
        )
    if kind == "RESOURCE_EXHAUSTED":
        return 429, google_error_body(429, "Resource has been exhausted (e.g. check quota).")
    if kind in ("MODEL_CAPACITY_EXHAUSTED", "MODEL_CAPACITY_EXHAUSTED_429"):
        code = 503 if kind == "MODEL_CAPACITY_EXHAUSTED" else 429
        name = model or "gemini-3.1-flash-image"
        info = {
            "@type": _ERRORINFO,
            "reason": "MODEL_CAPACITY_EXHAUSTED",
            "domain": ERROR_DOMAIN,
            "metadata": {"model": name},
        }
        text = f"No capacity available for model {name} on the server"
        return code, google_error_body(code, text, details=[info])
    if kind == "VERSION_UNSUPPORTED":
        return 503, google_error_body(503, VERSION_MESSAGE)
    if kind in ("VALIDATION_REQUIRED", "VALIDATION_REQUIRED_OLD"):
        metadata = {
            "validation_error_message": VALIDATION_MESSAGE,
            "validation_url_link_text": "Verify your account",
            "validation_url": validation_url,
            "validation_learn_more_link_text": "Learn more",
            "validation_learn_more_url": LEARN_MORE_URL,
        }
        message = VALIDATION_MESSAGE
        if kind == "VALIDATION_REQUIRED_OLD":
            message = (
                f"To continue, verify your account at\n\n{validation_url}\n\nLearn more\n\n{LEARN_MORE_URL}\n"
            )
            metadata["validation_message_description"] = "To continue, verify your account at"
        links = [
            {"description": "Verify your account", "url": validation_url},
            {"description": "Learn more", "url": LEARN_MORE_URL},
        ]
        details: list[dict[str, Any]] = [
            {
                "@type": _ERRORINFO,
                "reason": "VALIDATION_REQUIRED",
                "domain": ERROR_DOMAIN,
                "metadata": metadata,
            },
            {"@type": _HELP, "links": links},
        ]
        return 403, google_error_body(403, message, details=details)
    if kind == "TOS_VIOLATION":
        metadata = {
            "uiMessage": "true",
            "appeal_url_link_text": "Submit Appeal",
            "appeal_url": APPEAL_URL,
        }
        info = {"@type": _ERRORINFO, "reason": "TOS_VIOLATION", "domain": ERROR_DOMAIN, "metadata": metadata}
        return 403, google_error_body(403, TOS_MESSAGE, details=[info])
    if kind == "TOS_VIOLATION_OLD":
        text = (
            "This service has been disabled in this account for violation of Terms of\n\t\tService. "
            "If you believe this is an error, contact gemini-code-assist-user-feedback@google.com."
        )
        return 403, google_error_body(403, text)
    if kind == "SUBSCRIPTION_REQUIRED":
        details = [
            {
                "@type": _ERRORINFO,
                "reason": "SUBSCRIPTION_REQUIRED",
                "domain": "cloudaicompanion.googleapis.com",
            },
            {
                "@type": _HELP,
                "links": [
                    {
                        "description": "Learn more",
                        "url": "https://cloud.google.com/gemini/docs/codeassist/request-license",
                    }
                ],
            },
        ]
        return 403, google_error_body(403, SUBSCRIPTION_MESSAGE, details=details)
    if kind == "SERVICE_DISABLED":
        text = SERVICE_DISABLED_MESSAGE.format(p=project)
        url = (
            "https://console.developers.google.com/apis/api/cloudcode-pa.googleapis.com/"
            f"overview?project={project}"
        )
        metadata = {
            "activationUrl": url,
            "serviceTitle": "Cloud Code Private API",
            "service": "cloudcode-pa.googleapis.com",
            "consumer": f"projects/{project}",
            "containerInfo": project,
        }
        details = [
            {
                "@type": _ERRORINFO,
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": metadata,
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": text},
        ]
        return 403, google_error_body(403, text, details=details)
    if kind == "PERMISSION_DENIED":
        return 403, google_error_body(403, PERMISSION_DENIED_MESSAGE)
    if kind == "NOT_FOUND":
        return 404, google_error_body(404, NOT_FOUND_MESSAGE)
    if kind == "NOT_FOUND_OLD":
        body = google_error_body(404, NOT_FOUND_MESSAGE)
        body["error"]["errors"] = [{"message": NOT_FOUND_MESSAGE, "domain": "global", "reason": "notFound"}]
        return 404, body
    if kind == "INVALID_ARGUMENT":
        return 400, google_error_body(400, "Request contains an invalid argument.")
    if kind == "UNAUTHENTICATED":
        return 401, google_error_body(401, UNAUTHENTICATED_MESSAGE)
    if kind == "INSUFFICIENT_G1_CREDITS_BALANCE":
        info = {
            "@type": _ERRORINFO,
            "reason": "INSUFFICIENT_G1_CREDITS_BALANCE",
            "domain": ERROR_DOMAIN,
            "metadata": {"model": model or "claude-opus-4-6-thinking"},
        }
        return 429, google_error_body(429, CREDITS_MESSAGE, details=[info])
    raise KeyError(f"unknown error kind {kind!r}; known: {sorted(ERROR_KINDS)}")


#: The kinds :func:`error_body` and :meth:`FakeGoogle.fail_next` know.
ERROR_KINDS = (
    "QUOTA_EXHAUSTED",
    "QUOTA_EXHAUSTED_LONG",
    "QUOTA_EXHAUSTED_WEEKLY",
    "QUOTA_EXHAUSTED_SHORT",
    "RATE_LIMIT_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "MODEL_CAPACITY_EXHAUSTED",
    "MODEL_CAPACITY_EXHAUSTED_429",
    "VERSION_UNSUPPORTED",
    "VALIDATION_REQUIRED",
    "VALIDATION_REQUIRED_OLD",
    "TOS_VIOLATION",
    "TOS_VIOLATION_OLD",
    "SUBSCRIPTION_REQUIRED",
    "SERVICE_DISABLED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "NOT_FOUND_OLD",
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "INSUFFICIENT_G1_CREDITS_BALANCE",
)
#: The bodies exactly as captured (UPSTREAM.md §9): kind -> JSON body. Status: ERROR_STATUS.
ERROR_BODIES: dict[str, dict[str, Any]] = {k: error_body(k)[1] for k in ERROR_KINDS}
ERROR_STATUS: dict[str, int] = {k: error_body(k)[0] for k in ERROR_KINDS}


class _Failure:
    """A queued error (``FakeGoogle.fail_next``)."""

    __slots__ = ("kind", "left", "email", "model", "methods")

    def __init__(
        self, kind: str, left: int, email: str | None, model: str | None, methods: frozenset[str]
    ) -> None:
        self.kind, self.left, self.email, self.model, self.methods = kind, left, email, model, methods


def _bad_request(messages: Sequence[str], fields: Sequence[tuple[str, str]] = ()) -> GoogleError:
    details = []
    if fields:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": f, "description": d} for f, d in fields],
            }
        )
    return GoogleError(400, "\n".join(messages), details=details or None)


def _anthropic_error(message: str) -> GoogleError:
    """Claude-family errors: Google wraps the Anthropic JSON error text in its own 400."""
    inner = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
        "request_id": "req_vrtx_" + _random_id(24),
    }
    return GoogleError(400, _JSON.encode(inner).decode())


def _invalid_value(where: str, proto_type: str, value: Any) -> GoogleError:
    """Google's answer to a JSON value of the wrong type (e.g. a string where a Content goes)."""
    message = (
        f"Invalid value at '{where}' (type.googleapis.com/google.ai.generativelanguage.v1beta."
        f"{proto_type}), {_JSON.encode(value).decode()}"
    )
    return _bad_request([message], [(where, message)])


def _oauth_error(status: int, error: str, description: str | None = None) -> _Answer:
    body: dict[str, Any] = {"error": error}
    if description is not None:
        body["error_description"] = description
    return _Answer(status, _JSON.encode(body))


def _plain(status: int, text: str) -> _Answer:
    return _Answer(status, text.encode(), b"text/plain; charset=utf-8")


# --------------------------------------------------------------------------- accounts


#: Quota buckets of an account (UPSTREAM.md §4.2): group -> (weekly id, 5-hour id).
BUCKETS = {"gemini": ("gemini-weekly", "gemini-5h"), "3p": ("3p-weekly", "3p-5h")}
BUCKET_WINDOWS = {
    "gemini-weekly": 7 * 86400.0,
    "gemini-5h": 5 * 3600.0,
    "3p-weekly": 7 * 86400.0,
    "3p-5h": 5 * 3600.0,
}


@dataclass
class Bucket:
    """One quota bucket: ``fraction`` remaining (0..1) until ``reset`` (epoch seconds)."""

    fraction: float
    reset: float


def _fresh_buckets() -> dict[str, Bucket]:
    now = time.time()
    return {bid: Bucket(1.0, now + window) for bid, window in BUCKET_WINDOWS.items()}


@dataclass
class Account:
    """One fake Google account. Attributes are knobs: tests may change them at any time.

    ``forbidden``: None, a kind of :data:`ERROR_BODIES` (e.g. ``"VALIDATION_REQUIRED"`` —
    with this account's ``validation_url`` —, ``"TOS_VIOLATION"``), ``"TOS"`` (the old
    knob: plain 403 "The caller does not have permission") or any other text (a 403 with
    that message) — every v1internal call then answers that. ``revoked``: the refresh
    token answers invalid_grant and access tokens 401 (``fake.revoke(email)``).
    ``expires_in``: seconds of life of the access tokens issued from now on.
    ``models``: the catalog, model id -> fetchAvailableModels entry (see
    :data:`DEFAULT_MODELS`). ``buckets``: the four quota buckets (:data:`BUCKETS`).
    ``project``: the managed project; ``""`` for an account that has not onboarded yet
    (``onboard_project`` is what onboardUser will give it). ``credits``: Google One AI
    credits (None: the account has none; shown in loadCodeAssist ``paidTier``), usable
    while ``credits >= credits_minimum``.
    """

    email: str
    refresh_token: str
    project: str
    tier: str = "PRO"
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    expires_in: int = DEFAULT_EXPIRES_IN
    forbidden: str | None = None
    revoked: bool = False
    validation_url: str = ""
    name: str = ""
    picture: str = ""
    id: str = ""
    token_calls: int = 0
    buckets: dict[str, Bucket] = field(default_factory=_fresh_buckets)
    onboard_project: str = ""
    credits: int | None = None
    credits_minimum: int = 50
    credits_per_call: int = 10
    # onboarding in progress: (operation name, not-done answers still to give)
    operation: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.tier not in ("FREE", "PRO", "ULTRA"):
            raise ValueError(f"tier must be FREE, PRO or ULTRA, not {self.tier!r}")
        digest = hashlib.sha256(self.email.encode()).hexdigest()
        self.id = self.id or str(int(digest[:16], 16)).rjust(21, "1")[:21]
        local = self.email.split("@")[0]
        self.name = self.name or local.replace(".", " ").title()
        self.picture = self.picture or f"https://lh3.googleusercontent.com/a/fake-{self.id}=s96-c"
        self.validation_url = self.validation_url or (
            "https://accounts.google.com/signin/continue?sarp=1&scc=1&continue=https://developers"
            ".google.com/gemini-code-assist/auth/auth_success_gemini&plt="
            + digest[:32]
            + "&flowName=GlifWebSignIn&authuser"
        )
        self.onboard_project = self.onboard_project or self.project or f"proj-{local}"

    def reset_quota(self) -> None:
        """Every bucket back to full, with new windows."""
        self.buckets = _fresh_buckets()

    def group_of(self, model: str) -> str | None:
        """The quota group of a model: ``"gemini"``, ``"3p"`` or None (not metered)."""
        info = self.models.get(model, {})
        if "group" in info:
            group: str | None = info["group"]
            return group
        family = model_family(model)
        if family == "gemini":
            return "gemini"
        if family == "claude" or model.startswith("gpt"):
            return "3p"
        return None

    def bucket(self, bucket_id: str) -> Bucket:
        """A bucket, refilled when its reset time has passed (a new window starts)."""
        bucket = self.buckets[bucket_id]
        now = time.time()
        if bucket.reset <= now:
            bucket.fraction, bucket.reset = 1.0, now + BUCKET_WINDOWS[bucket_id]
        return bucket

    def set_bucket(
        self, bucket_id: str, fraction: float, reset_time: datetime | float | str | None = None
    ) -> None:
        """Set a quota bucket (``"gemini-5h"``, ``"gemini-weekly"``, ``"3p-5h"``,
        ``"3p-weekly"``): remaining fraction and, optionally, reset time (datetime, epoch
        seconds or RFC3339). A bucket at 0 makes every model of its group answer 429
        QUOTA_EXHAUSTED (the weekly one with the "Individual quota reached" text)."""
        if bucket_id not in self.buckets:
            raise KeyError(f"no bucket {bucket_id!r}; buckets are {sorted(self.buckets)}")
        bucket = self.bucket(bucket_id)
        bucket.fraction = float(fraction)
        if reset_time is not None:
            bucket.reset = _to_epoch(reset_time)

    def set_quota(
        self, model: str, fraction: float, reset_time: datetime | float | str | None = None
    ) -> None:
        """Set the 5-hour bucket of a model's group (all Gemini ids share one, Claude and
        GPT-OSS another: UPSTREAM.md §4.1), which is what its ``quotaInfo`` shows."""
        if model not in self.models:
            raise KeyError(f"{self.email} has no model {model!r}; it has {sorted(self.models)}")
        group = self.group_of(model)
        if group is None:
            raise ValueError(f"{model} is not metered: it has no quota to set")
        self.set_bucket(BUCKETS[group][1], fraction, reset_time)

    def quota(self, model: str) -> tuple[float, float] | None:
        """``(fraction, reset epoch)`` of a model's 5-hour bucket, or None when it has none."""
        group = self.group_of(model)
        if group is None or not self.models[model].get("quota", True):
            return None
        bucket = self.bucket(BUCKETS[group][1])
        return bucket.fraction, bucket.reset

    def exhausted(self, model: str) -> str | None:
        """The id of the empty bucket that blocks this model (weekly first), or None."""
        group = self.group_of(model)
        if group is None:
            return None
        for bucket_id in BUCKETS[group]:
            if self.bucket(bucket_id).fraction <= 0:
                return bucket_id
        return None


def _build_models(
    models: dict[str, dict[str, Any]] | None, catalog: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The table of an account: entries of ``catalog`` (the fake's default one) first, then
    of :data:`DEFAULT_MODELS`, then of :data:`LEGACY_MODELS`, updated with ``models``."""
    table: dict[str, dict[str, Any]] = {}
    source = DEFAULT_MODELS if models is None else models
    for model_id, given in source.items():
        known = (catalog or {}).get(model_id) or DEFAULT_MODELS.get(model_id) or LEGACY_MODELS.get(model_id)
        if known is not None:
            base = dict(known)
        else:
            base = {"displayName": model_id, "maxTokens": 128000, "maxOutputTokens": 8192}
            if model_family(model_id) != "other":
                base["supportsThinking"] = True
        given = dict(given or {})
        # Old knobs: per-model fraction/reset now live in the group's buckets.
        given.pop("fraction", None), given.pop("remainingFraction", None)
        given.pop("reset", None), given.pop("resetTime", None)
        if "quotaInfo" in given and given.pop("quotaInfo") is None:
            given["quota"] = False
        base.update(given)
        table[model_id] = base
    return table


@dataclass
class Call:
    """One request the fake received (``fake.calls``).

    ``api``: ``"oauth"``, ``"v1internal"`` or ``"v1beta"``; ``method``: ``"token"``,
    ``"auth"``, ``"userinfo"`` or the v1internal/v1beta method name
    (``"generateContent"``, ``"streamGenerateContent"``, ...); ``body``: the parsed
    JSON (token: the form as a dict); ``headers``: lower-cased names; ``at``:
    ``time.monotonic()`` on arrival; ``status``: the HTTP status answered.
    """

    api: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    at: float
    email: str | None = None
    model: str | None = None
    body: Any = None
    status: int | None = None
    stream: bool = False
    credits: bool = False  # the call was paid with Google One AI credits


@dataclass(frozen=True)
class SignatureInfo:
    """What the fake remembers about a signature it issued."""

    family: str
    kind: str  # "thought" (claude), "call" or "text" (gemini)
    text: str | None = None
    name: str | None = None


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """A scripted answer to one generate/stream call. Build with the classmethods.

    Fields (all optional, use :func:`dataclasses.replace` to tweak): ``answer``
    (None: the default "Hello from <model> (<email>)"), ``thought`` (None: a
    thought is added when the request has thinking on and the model supports
    it; False: never; a string: always), ``calls`` ((name, args, id) tuples),
    ``chunks`` (stream events the answer text is split into), ``delay``
    (seconds between stream events), ``finish`` (finishReason), ``usage``
    (usageMetadata overrides), ``carrier`` (Gemini: put the signature on an
    extra empty-text part), ``drop_at`` (stream: abort the connection after that
    many events; non-stream: after half the body), ``silent_for`` (seconds of
    silence after the headers).
    """

    kind: str = "content"  # content | error | raw | empty
    answer: str | None = None
    thought: str | bool | None = None
    calls: tuple[tuple[str, dict[str, Any], str | None], ...] = ()
    chunks: int = 2
    delay: float = 0.0
    finish: str = "STOP"
    usage: dict[str, int] | None = None
    carrier: bool = False
    drop_at: int | None = None
    silent_for: float = 0.0
    status: int = 200
    error_spec: dict[str, Any] | None = None
    raw_response: dict[str, Any] | None = None
    raw_events: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sources: tuple[tuple[str, str], ...] | None = None  # grounding (uri, title) pairs
    # grounding supports: (segment text of the answer, groundingChunk indices)
    supports: tuple[tuple[str, tuple[int, ...]], ...] | None = None

    @classmethod
    def search(
        cls,
        text: str,
        sources: Iterable[tuple[str, str]],
        chunks: int = 2,
        supports: Iterable[tuple[str, Sequence[int]]] | None = None,
    ) -> Reply:
        """A grounded answer (for requests with a googleSearch tool): ``sources`` are the
        (uri, title) of its groundingChunks; ``supports`` the (segment of ``text``, chunk
        indices) of its groundingSupports (default: one support, the whole text, every
        chunk)."""
        given = tuple((seg, tuple(idx)) for seg, idx in supports) if supports is not None else None
        return cls(answer=text, chunks=chunks, sources=tuple(sources), supports=given)

    @classmethod
    def default(cls) -> Reply:
        """What the fake answers when nothing is scripted."""
        return cls()

    @classmethod
    def text(cls, text: str, chunks: int = 3, delay: float = 0.0, thought: str | bool | None = None) -> Reply:
        """A text answer; a stream splits it into ``chunks`` events ``delay`` seconds apart."""
        return cls(answer=text, chunks=chunks, delay=delay, thought=thought)

    @classmethod
    def thinking(
        cls,
        thought: str,
        then_text: str = "",
        chunks: int = 3,
        delay: float = 0.0,
        carrier: bool = False,
    ) -> Reply:
        """A thought (always shown, signed as the model family does) then ``then_text``."""
        return cls(answer=then_text, thought=thought, chunks=chunks, delay=delay, carrier=carrier)

    @classmethod
    def function_call(
        cls,
        name: str,
        args: dict[str, Any] | None = None,
        id: str | None = None,
        thought: str | bool | None = None,
    ) -> Reply:
        """One tool call. Claude models get an id ``toolu_vrtx_...`` unless one is given."""
        return cls(answer="", calls=((name, args or {}, id),), thought=thought)

    @classmethod
    def function_calls(cls, calls: Iterable[Sequence[Any]], thought: str | bool | None = None) -> Reply:
        """Parallel tool calls from ``(name, args)`` or ``(name, args, id)`` tuples."""
        normalised = tuple((c[0], dict(c[1]), c[2] if len(c) > 2 else None) for c in calls)
        return cls(answer="", calls=normalised, thought=thought)

    @classmethod
    def error(
        cls,
        status: int,
        reason: str | None = None,
        quota_reset_delay: str | float | None = None,
        quota_reset_timestamp: datetime | float | str | None = None,
        retry_delay: str | float | None = None,
        retry_after: str | float | None = None,
        message: str | None = None,
    ) -> Reply:
        """A Google JSON error. ``reason``/quota fields give a google.rpc.ErrorInfo,
        ``retry_delay`` a google.rpc.RetryInfo, ``retry_after`` a Retry-After header.
        Numbers are seconds (formatted as Go / proto durations)."""
        spec = {
            "reason": reason,
            "quota_reset_delay": quota_reset_delay,
            "quota_reset_timestamp": quota_reset_timestamp,
            "retry_delay": retry_delay,
            "message": message,
        }
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        return cls(kind="error", status=status, error_spec=spec, headers=headers)

    @classmethod
    def drop_after(cls, n_events: int, then: Reply | None = None) -> Reply:
        """Send ``n_events`` events of ``then`` (default reply) and abort the connection."""
        return replace(then or cls(), drop_at=n_events)

    @classmethod
    def empty(cls) -> Reply:
        """Stream: zero events; non-stream: a candidate with no parts."""
        return cls(kind="empty")

    @classmethod
    def silence(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Send the headers, stay silent ``seconds``, then answer ``then`` (default reply)."""
        return replace(then or cls(), silent_for=seconds)

    @classmethod
    def max_tokens(cls, partial_text: str, chunks: int = 2) -> Reply:
        """A cut-off answer: finishReason MAX_TOKENS."""
        return cls(answer=partial_text, finish="MAX_TOKENS", chunks=chunks)

    @classmethod
    def raw(
        cls,
        response: dict[str, Any],
        events: list[dict[str, Any]] | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Anything else: ``response`` is the GenerateContentResponse of a non-stream
        answer (wrapped in the v1internal envelope by the fake); ``events`` the ones of
        a stream (default: ``[response]``)."""
        return cls(
            kind="raw",
            raw_response=response,
            raw_events=events,
            status=status,
            headers=headers or {},
        )


@dataclass
class _Context:
    """What rendering a reply needs to know about the request."""

    api: str  # v1internal | v1beta
    model: str
    email: str | None
    family: str
    thinking: bool  # the model thinks for this request
    show_thoughts: bool  # thought text is returned
    request: dict[str, Any]
    search: bool = False  # a googleSearch tool: the answer is grounded (UPSTREAM.md §5.4)
    image: bool = False  # an image generation model (UPSTREAM.md §5.5)


@dataclass
class _Rendered:
    status: int
    headers: dict[str, str]
    events: list[bytes] | None = None  # stream
    body: bytes | None = None  # non-stream


# --------------------------------------------------------------------------- validation


def _thinking_state(req: dict[str, Any], supports_thinking: bool) -> tuple[bool, bool, int | None]:
    """(thinking on, includeThoughts, budget) for a normalised request."""
    gen = req.get("generationConfig")
    tc = gen.get("thinkingConfig") if isinstance(gen, dict) else None
    if not isinstance(tc, dict):
        return False, False, None
    raw_budget = tc.get("thinkingBudget")
    budget = raw_budget if isinstance(raw_budget, int) else None
    include = bool(tc.get("includeThoughts"))
    # includeThoughts, or a budget of at least 1024 (smaller budgets mean no thinking).
    requested = include or (budget is not None and budget >= MIN_THINKING_BUDGET)
    return requested and supports_thinking, include, budget


def _current_turn_start(contents: list[dict[str, Any]]) -> int:
    """Index of the first content after the last user content that has a text part."""
    start = 0
    for i, content in enumerate(contents):
        if content.get("role", "user") == "user" and any("text" in p for p in content.get("parts") or ()):
            start = i + 1
    return start


class _Validator:
    """Google's checks of a normalised GenerateContentRequest (raise GoogleError)."""

    def __init__(self, prefix: str) -> None:
        # v1internal paths start with "request." (the envelope field); the public API's do not.
        self.prefix = prefix
        self.unknown: list[tuple[str, str]] = []
        self.violations: list[str] = []

    def _unknown(self, name: str, path: str, why: str = "Cannot find field.") -> None:
        where = f"{self.prefix}{path}" if path else self.prefix.rstrip(".")
        self.unknown.append(
            (where, f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': {why}")
        )

    def _check_keys(self, obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in obj:
            if key not in allowed:
                self._unknown(key, path)

    def _violation(self, path: str, message: str) -> None:
        self.violations.append(f"* GenerateContentRequest.{path}: {message}\n")

    def raise_if_any(self) -> None:
        if self.unknown:
            raise _bad_request([m for _, m in self.unknown], self.unknown)
        if self.violations:
            raise GoogleError(400, "".join(self.violations))

    # -- pieces

    def content(self, content: Any, path: str, snake_path: str, system: bool = False) -> None:
        if not isinstance(content, dict):
            raise _invalid_value(self.prefix + snake_path, "Content", content)
        self._check_keys(content, CONTENT_KEYS, snake_path)
        role = content.get("role")
        if not system and role is not None and role not in ("user", "model"):
            self.violations.append("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            self._violation(f"{path}.parts", "contents.parts must not be empty.")
            return
        for j, part in enumerate(parts):
            part_path = f"{snake_path}.parts[{j}]"
            if not isinstance(part, dict):
                self._violation(f"{path}.parts[{j}].data", ONEOF_MESSAGE)
                continue
            self._check_keys(part, PART_KEYS, part_path)
            data = [k for k in PART_DATA_KEYS if k in part]
            empty_text = data == ["text"] and part["text"] == "" and not part.get("thoughtSignature")
            if not data or empty_text:
                self._violation(f"{path}.parts[{j}].data", ONEOF_MESSAGE)
            if "thoughtSignature" in part:
                self._bytes(part["thoughtSignature"], f"{part_path}.thought_signature")
            inline = part.get("inlineData")
            if isinstance(inline, dict) and "data" in inline:
                self._bytes(inline["data"], f"{part_path}.inline_data.data")
            call = part.get("functionCall")
            if isinstance(call, dict) and not call.get("name"):
                self._violation(f"{path}.parts[{j}].function_call.name", "Name cannot be empty.")
            result = part.get("functionResponse")
            if isinstance(result, dict) and not result.get("name"):
                self._violation(f"{path}.parts[{j}].function_response.name", "Name cannot be empty.")

    def _bytes(self, value: Any, path: str) -> None:
        if signature_bytes(value) is None:
            where = f"{self.prefix}{path}"
            shown = value if isinstance(value, str) else _JSON.encode(value).decode()
            message = f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{shown}\""
            self.unknown.append((where, message))

    def schema(self, schema: Any, path: str) -> None:
        if not isinstance(schema, dict):
            return
        for key, value in schema.items():
            if key not in SCHEMA_KEYS:
                self._unknown(key, path)
            elif key == "type":
                if isinstance(value, list):
                    self._unknown("type", path, "Proto field is not repeating, cannot start list.")
                elif not isinstance(value, str) or value.upper() not in SCHEMA_TYPES:
                    where = f"{self.prefix}{path}.type"
                    self.unknown.append((where, _invalid_value(where, "Type", value).message))
            elif key == "properties" and isinstance(value, dict):
                for i, sub in enumerate(value.values()):
                    self.schema(sub, f"{path}.properties[{i}].value")
            elif key == "items":
                self.schema(value, f"{path}.items")
            elif key == "anyOf" and isinstance(value, list):
                for i, sub in enumerate(value):
                    self.schema(sub, f"{path}.any_of[{i}]")

    def request(self, req: dict[str, Any]) -> None:
        self._check_keys(req, REQUEST_KEYS, "")
        system = req.get("systemInstruction")
        if system is not None:
            if not isinstance(system, dict):
                raise _invalid_value(f"{self.prefix}system_instruction", "Content", system)
            self.content(system, "system_instruction", "system_instruction", system=True)
        contents = req.get("contents")
        if not isinstance(contents, list) or not contents:
            self._violation("contents", "contents is not specified")
        else:
            for i, content in enumerate(contents):
                self.content(content, f"contents[{i}]", f"contents[{i}]")
        tools = req.get("tools")
        if tools is not None:
            for t, tool in enumerate(tools if isinstance(tools, list) else [tools]):
                if not isinstance(tool, dict):
                    continue
                self._check_keys(tool, TOOL_KEYS, f"tools[{t}]")
                decls = tool.get("functionDeclarations") or []
                for d, decl in enumerate(decls if isinstance(decls, list) else []):
                    path = f"tools[{t}].function_declarations[{d}]"
                    if not isinstance(decl, dict):
                        continue
                    self._check_keys(decl, FUNCTION_DECLARATION_KEYS, path)
                    name = decl.get("name")
                    if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
                        self._violation(f"{path}.name", TOOL_NAME_MESSAGE)
                    if "parameters" in decl:
                        self.schema(decl["parameters"], f"{path}.parameters")
        gen = req.get("generationConfig")
        if isinstance(gen, dict):
            self._check_keys(gen, GENERATION_CONFIG_KEYS, "generation_config")
            tc = gen.get("thinkingConfig")
            if isinstance(tc, dict):
                self._check_keys(tc, THINKING_CONFIG_KEYS, "generation_config.thinking_config")
            # responseSchema is a Schema object too: the same key rules apply.
            if isinstance(gen.get("responseSchema"), dict):
                self.schema(gen["responseSchema"], "generation_config.response_schema")
        tool_config = req.get("toolConfig")
        if isinstance(tool_config, dict):
            fcc = tool_config.get("functionCallingConfig")
            if (
                isinstance(fcc, dict)
                and "mode" in fcc
                and (not isinstance(fcc["mode"], str) or fcc["mode"] not in FUNCTION_CALLING_MODES)
            ):
                where = f"{self.prefix}tool_config.function_calling_config.mode"
                mode = _invalid_value(where, "FunctionCallingConfig.Mode", fcc["mode"])
                self.unknown.append((where, mode.message))
        self.raise_if_any()


#: Schema keys Claude refuses in tool schemas (UPSTREAM.md §6.3: "Claude rejects these"; the
#: ones Gemini's Schema does not even have are refused earlier as unknown names).
CLAUDE_REJECTED_SCHEMA_KEYS = frozenset(
    "minLength maxLength pattern minItems maxItems format default".split()
)
CLAUDE_SCHEMA_MESSAGE = (
    "tools.{n}.custom.input_schema: JSON schema is invalid. It must match JSON Schema draft "
    "2020-12 (https://json-schema.org/draft/2020-12). Learn more about tool use at "
    "https://docs.claude.com/en/docs/tool-use."
)
# UNVERIFIED text (UPSTREAM.md §7.1 only says never to send both).
BOTH_THINKING_MESSAGE = "Thinking budget and thinking level cannot be set at the same time."
THINKING_LEVELS = frozenset({"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"})
INVALID_ARGUMENT_MESSAGE = "Request contains an invalid argument."


def _check_generation(req: dict[str, Any], model: str, family: str, info: dict[str, Any]) -> None:
    gen = req.get("generationConfig")
    if not isinstance(gen, dict):
        return
    tc = gen.get("thinkingConfig")
    if isinstance(tc, dict) and "thinkingLevel" in tc:
        level = tc["thinkingLevel"]
        # Both "low" and "LOW" reach the wire from working clients (UPSTREAM.md §7.1).
        if not isinstance(level, str) or level.upper() not in THINKING_LEVELS:
            where = "request.generation_config.thinking_config.thinking_level"
            raise _invalid_value(where, "ThinkingLevel", level)
        if "thinkingBudget" in tc:
            raise GoogleError(400, BOTH_THINKING_MESSAGE)
    limit = info.get("maxOutputTokens")
    wanted = gen.get("maxOutputTokens")
    if isinstance(limit, int) and isinstance(wanted, int) and wanted > limit:
        # UPSTREAM.md §4.1: above the catalog maxOutputTokens is a 400 (PIA).
        if family == "claude":
            raise _anthropic_error(
                f"max_tokens: {wanted} > {limit}, which is the maximum allowed number of output "
                f"tokens for {model}"
            )
        raise GoogleError(
            400,
            f"Unable to submit request because it has a maxOutputTokens value of {wanted} but the "
            f"supported range is from 1 (inclusive) to {limit + 1} (exclusive). Update the value "
            "and try again.",
        )


def _claude_schema_ok(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    for key, value in schema.items():
        if key in CLAUDE_REJECTED_SCHEMA_KEYS:
            return False
        if key == "properties" and isinstance(value, dict):
            if not all(_claude_schema_ok(sub) for sub in value.values()):
                return False
        elif key == "items" and not _claude_schema_ok(value):
            return False
        elif key == "anyOf" and isinstance(value, list):
            if not all(_claude_schema_ok(sub) for sub in value):
                return False
    return True


def _check_tools(req: dict[str, Any], family: str) -> bool:
    """Tool rules beyond the proto: no googleSearch next to functions (UPSTREAM.md §5.4) and,
    for Claude, Anthropic's input_schema rules (§6.3). True when googleSearch is on."""
    tools = req.get("tools")
    if not isinstance(tools, list):
        return False
    tools = [t for t in tools if isinstance(t, dict)]
    search = any("googleSearch" in t or "googleSearchRetrieval" in t for t in tools)
    decls = [d for t in tools for d in (t.get("functionDeclarations") or ()) if isinstance(d, dict)]
    if search and decls:
        raise GoogleError(400, INVALID_ARGUMENT_MESSAGE)
    if family != "claude":
        return search
    fcc = (req.get("toolConfig") or {}).get("functionCallingConfig") or {}
    validated = fcc.get("mode") == "VALIDATED"
    for n, decl in enumerate(decls):
        if "parametersJsonSchema" in decl or not isinstance(decl.get("parameters"), dict):
            raise _anthropic_error(f"tools.{n}.custom.input_schema: Field required")
        params = decl["parameters"]
        if not _claude_schema_ok(params):
            raise _anthropic_error(CLAUDE_SCHEMA_MESSAGE.format(n=n))
        if validated and not params.get("properties"):
            # An empty schema in VALIDATED mode: the bare 400 (UPSTREAM.md §6.3 placeholders).
            raise GoogleError(400, INVALID_ARGUMENT_MESSAGE)
    return search


def _check_gemini_signatures(contents: list[dict[str, Any]], issued: dict[bytes, SignatureInfo]) -> None:
    for ci in range(_current_turn_start(contents), len(contents)):
        content = contents[ci]
        if content.get("role") != "model":
            continue
        first_call = True
        for part in content.get("parts") or ():
            call = part.get("functionCall")
            signature = part.get("thoughtSignature")
            if call is not None and first_call:
                first_call = False
                if not signature:
                    name = call.get("name", "")
                    raise GoogleError(400, MISSING_SIGNATURE_MESSAGE.format(name=name, position=ci + 1))
            if not signature:
                continue
            key = signature_bytes(signature)
            if call is not None and key == _SKIP_BYTES:
                continue
            info = issued.get(key) if key is not None else None
            if info is None or info.family != "gemini":
                raise GoogleError(400, CORRUPTED_SIGNATURE_MESSAGE)
            if call is not None and (info.kind != "call" or info.name != call.get("name")):
                raise GoogleError(400, CORRUPTED_SIGNATURE_MESSAGE)
            if call is None and info.kind == "call":
                raise GoogleError(400, CORRUPTED_SIGNATURE_MESSAGE)


def _call_ids(content: dict[str, Any]) -> list[str | None]:
    return [p["functionCall"].get("id") for p in content.get("parts") or () if "functionCall" in p]


def _result_ids(content: dict[str, Any]) -> list[str | None]:
    parts = content.get("parts") or ()
    return [p["functionResponse"].get("id") for p in parts if "functionResponse" in p]


def _check_tool_pairing(contents: list[dict[str, Any]]) -> None:
    """Claude: tool_use ids are required, and each result answers a call of the message before."""
    for ci, content in enumerate(contents):
        if content.get("role") == "model":
            for pi, part in enumerate(content.get("parts") or ()):
                if "functionCall" in part and not part["functionCall"].get("id"):
                    raise _anthropic_error(f"messages.{ci}.content.{pi}.tool_use.id: Field required")
            following = contents[ci + 1] if ci + 1 < len(contents) else {}
            answered = set(_result_ids(following)) if following.get("role", "user") == "user" else set()
            missing = [str(i) for i in _call_ids(content) if i not in answered]
            if missing:
                raise _anthropic_error(MISSING_RESULT_MESSAGE.format(n=ci, ids=", ".join(missing)))
            continue
        previous = contents[ci - 1] if ci > 0 else {}
        known = set(_call_ids(previous)) if previous.get("role") == "model" else set()
        for pi, part in enumerate(content.get("parts") or ()):
            if "functionResponse" not in part:
                continue
            result_id = part["functionResponse"].get("id")
            if not result_id or result_id not in known:
                raise _anthropic_error(UNEXPECTED_RESULT_MESSAGE.format(n=ci, m=pi, id=result_id))


def _check_claude(
    req: dict[str, Any],
    thinking: bool,
    budget: int | None,
    issued: dict[bytes, SignatureInfo],
    check_signatures: bool,
) -> None:
    contents: list[dict[str, Any]] = req["contents"]
    if contents[-1].get("role", "user") != "user":
        raise _anthropic_error(PREFILL_MESSAGE)
    max_out = (req.get("generationConfig") or {}).get("maxOutputTokens")
    if thinking and budget is not None and isinstance(max_out, int) and max_out <= budget:
        raise _anthropic_error(BUDGET_MESSAGE)

    _check_tool_pairing(contents)

    if not (thinking and check_signatures):
        return
    # 1. fields (Anthropic validates the block shape first)
    for ci, content in enumerate(contents):
        if content.get("role") != "model":
            continue
        for pi, part in enumerate(content.get("parts") or ()):
            if part.get("thought"):
                if not part.get("text"):
                    raise _anthropic_error(f"messages.{ci}.content.{pi}.thinking.thinking: Field required")
                if not part.get("thoughtSignature"):
                    raise _anthropic_error(f"messages.{ci}.content.{pi}.thinking.signature: Field required")
    # 2. the tool loop of the current turn must start each assistant message with thinking
    start = _current_turn_start(contents)
    turn = [(ci, contents[ci]) for ci in range(start, len(contents)) if contents[ci].get("role") == "model"]
    if any("functionCall" in p for _, c in turn for p in c.get("parts") or ()):
        for ci, content in turn:
            first = (content.get("parts") or [{}])[0]
            if not first.get("thought"):
                found = "tool_use" if "functionCall" in first else "text"
                raise _anthropic_error(
                    f"messages.{ci}.content.0.type: " + THINKING_FIRST_MESSAGE.format(found=found)
                )
    # 3. signatures (verified last, by the model backend)
    for ci, content in enumerate(contents):
        if content.get("role") != "model":
            continue
        for pi, part in enumerate(content.get("parts") or ()):
            if part.get("thought"):
                key = signature_bytes(part["thoughtSignature"])
                info = issued.get(key) if key is not None else None
                if info is None or info.family != "claude" or info.text != part["text"]:
                    raise _anthropic_error(
                        f"messages.{ci}.content.{pi}: Invalid `signature` in `thinking` block"
                    )


# --------------------------------------------------------------------------- logging


class _QuietDrops(logging.Filter):
    """Hide uvicorn's error line for connections the fake aborts on purpose (Reply.drop_after)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.thread in self.threads
            and record.msg == "ASGI callable returned without completing response."
        )


_QUIET = _QuietDrops()
logging.getLogger("uvicorn.error").addFilter(_QUIET)


async def _wait_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _pause(watcher: asyncio.Future[None], seconds: float) -> bool:
    """Sleep, waking early if the client goes away. True when it went away."""
    if seconds > 0:
        await asyncio.wait({watcher}, timeout=seconds)
    return watcher.done()


# --------------------------------------------------------------------------- the fake


class FakeGoogle:
    """The fake Google server. See the module docstring for the facts it follows.

    Knobs put back by :meth:`reset`: ``token_delay``, ``token_fail_status``,
    ``consent_account``, ``consent_deny``, ``check_signatures``, ``outage`` (an
    HTTP status every v1internal call answers, before authentication — a dead
    host), ``version_gate``, ``min_supported_version``, ``gated_min_version``,
    ``gated_models``, ``onboard_pending``, ``deprecated_status``, queued
    ``fail_next`` errors. ``client_id``, ``client_secret``, ``tls_cert``,
    ``version_gate`` (its reset value) and ``default_models`` are constructor
    arguments (kept).
    Records: ``calls``, ``token_calls``, ``streams_cancelled``,
    ``streams_open``, ``last_auth_params``, ``signatures`` (issued).
    """

    def __init__(
        self,
        *,
        client_id: str = ANTIGRAVITY_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        tls_cert: str | None = None,
        version_gate: bool = True,
        default_models: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        # version_gate=False: no User-Agent checks at all (knob ``version_gate``, put back
        # to this value by reset()). default_models: the catalog add_account gives when it
        # is not told (e.g. LEGACY_MODELS for tests of the late-2025 ids).
        self._version_gate_default = version_gate
        self.default_models = default_models
        self.client_id = client_id
        self.client_secret = client_secret
        # A PEM file with the key and the certificate chain: serve https.
        self.tls_cert = tls_cert
        self.accounts: dict[str, Account] = {}
        self.signatures: dict[str, SignatureInfo] = {}
        self._signature_index: dict[bytes, SignatureInfo] = {}  # by decoded bytes
        self._tokens: dict[str, tuple[Account, float]] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._scripts: dict[str | None, deque[Reply]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self.streams_open = 0
        self._reset_knobs()

    def _reset_knobs(self) -> None:
        self.token_delay = 0.0
        self.token_fail_status: int | None = None
        self.consent_account: str | None = None
        self.consent_deny = False
        self.check_signatures = True
        self.outage: int | None = None
        # A predicate on the (camelCased) request: matching calls get the
        # default reply and leave the scripts alone (a client's side requests,
        # e.g. Claude Code's title generation, must not eat a scripted reply).
        self.unscripted_when: Callable[[dict[str, Any]], bool] | None = None
        # The same, with a reply of its own: a Reply for the requests it picks
        # (e.g. a client's compaction request, answered with a summary), None
        # for the rest, which go on to the scripts.
        self.reply_when: Callable[[dict[str, Any]], Reply | None] | None = None
        self.last_auth_params: dict[str, str] | None = None
        # Client version gates (UPSTREAM.md §2.2, §9.5), from the User-Agent
        # (``antigravity/hub/X.Y.Z``, ``antigravity/cli/X.Y.Z``, legacy ``antigravity/X.Y.Z``).
        # Versions are "X.Y.Z" strings, or dicts family ("hub", "cli", "legacy") -> version.
        self.version_gate = self._version_gate_default
        # Below it every inference call answers 503 "This version of Antigravity is no
        # longer supported." (legacy 1.21.9 was refused in April 2026 and agy 1.0.13 in
        # July; the hub 2.x floor is not known, 2.1.0 is the oldest hub version seen
        # working after 2.0.x was refused).
        self.min_supported_version: str | dict[str, str] = dict(MIN_SUPPORTED_VERSIONS)
        # Below it the models of ``gated_models`` answer 404 NOT_FOUND.
        self.gated_min_version: str | dict[str, str] = "2.9.0"
        self.gated_models: set[str] = set(GATED_MODELS)
        # onboardUser: how many ``done: false`` answers (re-POSTs or operation GETs) an
        # onboarding gives before ``done: true``.
        self.onboard_pending = 1
        # A status (e.g. 400, as one peer saw) for requests naming a deprecatedModelIds
        # old id; None: they work like any catalog id.
        self.deprecated_status: int | None = None
        self._failures: list[_Failure] = []
        self.calls: list[Call] = []
        self.token_calls = 0
        self.streams_cancelled = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeGoogle:
        """Serve on 127.0.0.1:<free port> in a daemon thread; return once it accepts connections."""
        if self._server is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self._port = sock.getsockname()[1]
        # log_config=None and log_level=None: uvicorn must not reconfigure the test
        # process's logging (it would set global levels on the uvicorn loggers).
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self._port,
            log_config=None,
            log_level=None,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=self.tls_cert,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"fake-google-{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Google server did not start")
            time.sleep(0.002)
        if self._thread.ident is not None:
            _QUIET.threads.add(self._thread.ident)
        self._sock = sock
        return self

    def stop(self) -> None:
        """Stop the server (open streams get a second to finish)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        if thread.ident is not None:
            _QUIET.threads.discard(thread.ident)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeGoogle is not started: call start() first")
        return f"{'https' if self.tls_cert else 'http'}://127.0.0.1:{self._port}"

    @property
    def endpoint(self) -> str:
        """Base of the v1internal methods (``POST {endpoint}/v1internal:{method}``)."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def auth_url(self) -> str:
        return self.base_url + "/o/oauth2/v2/auth"

    @property
    def userinfo_url(self) -> str:
        return self.base_url + "/oauth2/v2/userinfo"

    # ----------------------------------------------------------------- accounts & knobs

    def add_account(
        self,
        email: str,
        refresh_token: str | None = None,
        project: str | None = None,
        tier: str = "PRO",
        models: dict[str, dict[str, Any]] | None = None,
        expires_in: int = DEFAULT_EXPIRES_IN,
        *,
        fresh: bool = False,
        credits: int | None = None,
    ) -> Account:
        """Add (or replace) an account.

        ``models``: None for the fake's default catalog (:data:`DEFAULT_MODELS`), else
        model id -> fields (``{}`` for the catalog entry of a known id — this catalog's or
        :data:`LEGACY_MODELS`' —, ``quotaInfo: None`` for no quota data, any model field;
        ``fraction``/``reset`` set the 5-hour bucket of the model's group).
        ``fresh``: the account has not onboarded yet — loadCodeAssist shows no project
        until onboardUser gave it ``project`` (default ``proj-<local part>``).
        ``credits``: Google One AI credits shown in ``paidTier.availableCredits``.
        """
        local = email.split("@")[0]
        project = project or f"proj-{local}"
        source = models if models is not None else self.default_models
        account = Account(
            email=email,
            refresh_token=refresh_token or f"1//rt-{local}",
            project="" if fresh else project,
            tier=tier,
            models=_build_models(source, self.default_models),
            expires_in=expires_in,
            onboard_project=project,
            credits=credits,
        )
        for model_id, given in (source or {}).items():
            given = given or {}
            fraction = given.get("fraction", given.get("remainingFraction"))
            reset = given.get("reset", given.get("resetTime"))
            current = account.quota(model_id)
            if (fraction is not None or reset is not None) and current is not None:
                account.set_quota(model_id, current[0] if fraction is None else fraction, reset)
        self.accounts[email] = account
        return account

    def account(self, email: str) -> Account:
        return self.accounts[email]

    def revoke(self, email: str) -> None:
        """The account's refresh token now answers invalid_grant; its access tokens 401."""
        account = self.accounts[email]
        account.revoked = True
        with self._lock:
            for token in [t for t, (a, _) in self._tokens.items() if a is account]:
                del self._tokens[token]

    def issue_token(self, email: str, expires_in: int | None = None) -> str:
        """A valid access token for an account, without going through the token endpoint."""
        account = self.accounts[email]
        token = "ya29.a0" + _random_id(60)
        life = account.expires_in if expires_in is None else expires_in
        with self._lock:
            self._tokens[token] = (account, time.monotonic() + life)
        return token

    def expire_tokens(self, email: str | None = None) -> None:
        """Expire the access tokens of one account (or all): they answer 401 from now on."""
        with self._lock:
            for token, (account, _) in list(self._tokens.items()):
                if email is None or account.email == email:
                    self._tokens[token] = (account, 0.0)

    def sign(self, model: str, *, thought: str | None = None, call: str | None = None) -> str:
        """Issue a signature as the model would (for tests that build a history by hand).

        Claude: ``thought`` is the exact thought text it signs. Gemini: ``call`` is
        the function name when it rides on a functionCall, else it is for a text part.
        """
        family = model_family(model)
        if family == "claude":
            return self._issue("claude", "thought", text=thought or "")
        return self._issue(family, "call" if call else "text", name=call)

    def _issue(self, family: str, kind: str, text: str | None = None, name: str | None = None) -> str:
        raw = secrets.token_bytes(96)
        signature = base64.b64encode(raw).decode()
        info = SignatureInfo(family, kind, text, name)
        self.signatures[signature] = info
        self._signature_index[raw] = info
        return signature

    def script(self, replies: Iterable[Reply], email: str | None = None) -> None:
        """Queue replies, one consumed per generate/stream call that passes validation.

        With ``email`` only that account's calls consume them; the global queue is
        used when the account's queue is empty. Unscripted calls get Reply.default().
        """
        with self._lock:
            self._scripts.setdefault(email, deque()).extend(replies)

    def _next_reply(self, email: str | None, request: dict[str, Any] | None = None) -> Reply:
        if request is not None and self.reply_when is not None:
            picked = self.reply_when(request)
            if picked is not None:
                return picked
        if request is not None and self.unscripted_when is not None and self.unscripted_when(request):
            return Reply.default()
        with self._lock:
            for key in (email, None) if email is not None else (None,):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
        return Reply.default()

    def reset(self) -> None:
        """Clear scripts, calls, counters and knobs; keep accounts, tokens and signatures."""
        with self._lock:
            self._scripts.clear()
        self._reset_knobs()
        for account in self.accounts.values():
            account.token_calls = 0

    def fail_next(
        self,
        kind: str,
        n: int = 1,
        *,
        email: str | None = None,
        model: str | None = None,
        methods: Iterable[str] = INFERENCE_METHODS,
    ) -> None:
        """Answer the next ``n`` matching calls with a Google error of UPSTREAM.md §9.

        ``kind``: a key of :data:`ERROR_BODIES` (e.g. ``"TOS_VIOLATION"``,
        ``"RATE_LIMIT_EXCEEDED"``). Matching: the account ``email`` and/or ``model`` when
        given, and one of ``methods`` (default: generateContent, streamGenerateContent,
        countTokens). The body is :func:`error_body` with the requested model, the
        account's validation URL and reset stamps counted from now. Queued errors are
        checked after authentication and the envelope, before request validation.
        """
        error_body(kind)  # unknown kinds fail here, in the test
        with self._lock:
            self._failures.append(_Failure(kind, n, email, model, frozenset(methods)))

    def _take_failure(self, method: str, account: Account, model: str | None) -> None:
        with self._lock:
            for failure in self._failures:
                if (
                    failure.left > 0
                    and method in failure.methods
                    and failure.email in (None, account.email)
                    and failure.model in (None, model)
                ):
                    failure.left -= 1
                    kind = failure.kind
                    break
            else:
                return
            self._failures = [f for f in self._failures if f.left > 0]
        status, body = error_body(
            kind,
            model=model,
            project=account.project or account.onboard_project,
            validation_url=account.validation_url,
            now=time.time(),
        )
        raise _Answer(status, _JSON.encode(body))

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one method (e.g. ``"streamGenerateContent"``, ``"token"``)."""
        return [c for c in self.calls if c.method == method]

    # ----------------------------------------------------------------- ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if path.startswith("/v1internal:"):
            api, method = "v1internal", path[len("/v1internal:") :]
        elif path.startswith("/v1internal/operations/"):
            api, method = "v1internal", path[len("/v1internal/") :]
        elif path.startswith("/v1beta/models/"):
            api, method = "v1beta", path.rsplit(":", 1)[-1] if ":" in path else ""
        elif path == "/token":
            api, method = "oauth", "token"
        elif path == "/o/oauth2/v2/auth":
            api, method = "oauth", "auth"
        elif path in ("/oauth2/v2/userinfo", "/oauth2/v1/userinfo"):
            api, method = "oauth", "userinfo"
        else:
            api, method = "other", path
        call = Call(api=api, method=method, path=path, query=query, headers=headers, at=time.monotonic())
        self.calls.append(call)
        try:
            if api == "v1internal":
                await self._v1internal(method, scope, body, headers, query, call, receive, send)
            elif api == "v1beta":
                await self._v1beta(path, method, body, headers, query, call, receive, send)
            elif method == "token":
                await self._token(scope, body, headers, call, send)
            elif method == "auth":
                await self._auth(scope, query, call, send)
            elif method == "userinfo":
                await self._userinfo(headers, query, call, send)
            else:
                page = (
                    "<!DOCTYPE html><title>Error 404 (Not Found)</title>"
                    f"<p>The requested URL {path} was not found."
                )
                raise _Answer(404, page.encode(), b"text/html; charset=UTF-8")
        except _Answer as answer:
            content_type = answer.content_type
            if api == "v1internal" and method == "streamGenerateContent":
                # Errors of stream calls are JSON labelled as SSE (UPSTREAM.md §6.1, §8.3).
                content_type = _SSE
            await self._send(send, call, answer.status, answer.body, content_type, answer.headers)

    async def _send(
        self,
        send: Any,
        call: Call,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json; charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        call.status = status
        raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        if call.api == "v1internal":
            raw += _esf_headers(headers)
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    # ----------------------------------------------------------------- OAuth

    async def _token(
        self, scope: dict[str, Any], body: bytes, headers: dict[str, str], call: Call, send: Any
    ) -> None:
        self.token_calls += 1
        if scope["method"] != "POST":
            raise _Answer(405, b"Method Not Allowed", b"text/plain")
        if headers.get("content-type", "").startswith("application/json"):
            parsed = _parse_json(body)
            form = {k: str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
        else:
            form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        call.body = form
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_fail_status:
            raise _oauth_error(self.token_fail_status, "internal_failure", "Backend Error")
        if form.get("client_id") != self.client_id:
            raise _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if form.get("client_secret") != self.client_secret:
            raise _oauth_error(401, "invalid_client", "Unauthorized")
        grant = form.get("grant_type")
        if grant == "refresh_token":
            token = form.get("refresh_token")
            if not token:
                raise _oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
            account = next((a for a in self.accounts.values() if a.refresh_token == token), None)
            if account is not None:
                account.token_calls += 1
                call.email = account.email
            if account is None or account.revoked:
                raise _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            answer = {
                "access_token": self.issue_token(account.email),
                "expires_in": account.expires_in,
                "scope": DEFAULT_SCOPES,
                "token_type": "Bearer",
            }
        elif grant == "authorization_code":
            code = form.get("code", "")
            issued = self._codes.get(code)
            if issued is None or issued["expires"] < time.monotonic():
                raise _oauth_error(400, "invalid_grant", "Malformed auth code.")
            account = self.accounts.get(issued["email"])
            if account is None:
                raise _oauth_error(400, "invalid_grant", "Malformed auth code.")
            account.token_calls += 1
            call.email = account.email
            if form.get("redirect_uri") != issued["redirect_uri"]:
                raise _oauth_error(400, "redirect_uri_mismatch", "Bad Request")
            challenge = issued["code_challenge"]
            if challenge:
                verifier = form.get("code_verifier", "")
                if not verifier:
                    raise _oauth_error(400, "invalid_grant", "Missing code verifier.")
                if issued["code_challenge_method"] == "S256":
                    computed = _b64url(hashlib.sha256(verifier.encode()).digest())
                else:
                    computed = verifier
                if computed != challenge:
                    raise _oauth_error(400, "invalid_grant", "Bad Request")
            del self._codes[code]  # single use
            if account.revoked:
                raise _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            answer = {
                "access_token": self.issue_token(account.email),
                "expires_in": account.expires_in,
                "refresh_token": account.refresh_token,
                "scope": issued["scope"],
                "token_type": "Bearer",
                "id_token": self._id_token(account),
            }
        else:
            raise _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant or ''}")
        await self._send(send, call, 200, _JSON.encode(answer))

    def _id_token(self, account: Account) -> str:
        """An unsigned JWT-shaped id token (the gateway must not rely on verifying it)."""
        now = int(time.time())
        header = {"alg": "RS256", "kid": "fake-google", "typ": "JWT"}
        payload = {
            "iss": "https://accounts.google.com",
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": account.id,
            "email": account.email,
            "email_verified": True,
            "name": account.name,
            "picture": account.picture,
            "iat": now,
            "exp": now + 3600,
        }
        return ".".join(
            [
                _b64url(_JSON.encode(header)),
                _b64url(_JSON.encode(payload)),
                _b64url(b"fake-signature"),
            ]
        )

    async def _auth(self, scope: dict[str, Any], query: str, call: Call, send: Any) -> None:
        """The consent page: validate, then 302 to ``redirect_uri`` with a code (or an error).

        The consenting account is ``consent_account`` if set, else ``login_hint`` when it
        names a fake account, else the first account added.
        """
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        call.body = params
        self.last_auth_params = params
        for required in ("client_id", "redirect_uri", "response_type", "scope"):
            if not params.get(required):
                raise _plain(400, f"Error 400: invalid_request\nMissing required parameter: {required}")
        if params["client_id"] != self.client_id:
            raise _plain(401, "Error 401: invalid_client\nThe OAuth client was not found.")
        if params["response_type"] != "code":
            raise _plain(400, f"Error 400: invalid_request\nInvalid response_type: {params['response_type']}")
        if params.get("code_challenge_method") and not params.get("code_challenge"):
            raise _plain(400, "Error 400: invalid_request\nMissing required parameter: code_challenge")
        method = params.get("code_challenge_method") or "plain"
        if method not in ("S256", "plain"):
            raise _plain(400, f"Error 400: invalid_request\nInvalid code_challenge_method: {method}")
        redirect = params["redirect_uri"]
        state = params.get("state")
        if self.consent_deny:
            query_out = {"error": "access_denied"}
        else:
            email = self.consent_account
            if email is None and params.get("login_hint") in self.accounts:
                email = params["login_hint"]
            if email is None and self.accounts:
                email = next(iter(self.accounts))
            if email is None or email not in self.accounts:
                raise _plain(400, "fake Google: no account to consent with (call add_account first)")
            call.email = email
            code = "4/0A" + _random_id(70)
            self._codes[code] = {
                "email": email,
                "redirect_uri": redirect,
                "code_challenge": params.get("code_challenge"),
                "code_challenge_method": method,
                "scope": params["scope"],
                "expires": time.monotonic() + 600,
            }
            query_out = {
                "code": code,
                "scope": params["scope"],
                "authuser": "0",
                "prompt": "consent",
            }
        if state is not None:
            query_out = {"state": state, **query_out}
        location = redirect + ("&" if urlsplit(redirect).query else "?") + urlencode(query_out)
        await self._send(send, call, 302, b"", b"text/html; charset=UTF-8", {"location": location})

    def _authenticate(self, headers: dict[str, str], query: str = "") -> Account:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not token and "access_token=" in query:
            token = parse_qs(query).get("access_token", [""])[-1]
        www = {"www-authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
        if not token:
            raise GoogleError(
                401,
                MISSING_CREDENTIALS_MESSAGE,
                details=[_auth_info("CREDENTIALS_MISSING")],
                headers=www,
            )
        entry = self._tokens.get(token)
        if entry is None:
            unknown = [_auth_info("ACCESS_TOKEN_TYPE_UNSUPPORTED")]
            raise GoogleError(401, UNAUTHENTICATED_MESSAGE, details=unknown, headers=www)
        account, expires = entry
        if account.revoked or expires <= time.monotonic():
            raise GoogleError(
                401,
                UNAUTHENTICATED_MESSAGE,
                details=[_auth_info("ACCESS_TOKEN_EXPIRED")],
                headers=www,
            )
        return account

    async def _userinfo(self, headers: dict[str, str], query: str, call: Call, send: Any) -> None:
        account = self._authenticate(headers, query)
        call.email = account.email
        info = {
            "id": account.id,
            "email": account.email,
            "verified_email": True,
            "name": account.name,
            "given_name": account.name.split(" ")[0],
            "picture": account.picture,
        }
        await self._send(send, call, 200, _JSON.encode(info))

    # ----------------------------------------------------------------- v1internal

    async def _v1internal(
        self,
        method: str,
        scope: dict[str, Any],
        raw: bytes,
        headers: dict[str, str],
        query: str,
        call: Call,
        receive: Any,
        send: Any,
    ) -> None:
        if self.outage:
            raise GoogleError(self.outage)
        operation = method.startswith("operations/")
        if scope["method"] != ("GET" if operation else "POST"):
            raise GoogleError(404, NOT_FOUND_MESSAGE)
        account = self._authenticate(headers)
        call.email = account.email
        body = _parse_json(raw)
        call.body = body
        # UPSTREAM.md §1.4, §9.6d: with x-goog-user-project the call is billed to that
        # project as a quota project, where the Cloud Code Private API is not enabled.
        if "x-goog-user-project" in headers:
            status, error = error_body(
                "SERVICE_DISABLED", project=headers["x-goog-user-project"] or account.project
            )
            raise _Answer(status, _JSON.encode(error))
        if account.forbidden:
            raise self._forbidden(account)
        if operation:
            answer = self._poll_operation(account, method)
        elif method == "loadCodeAssist":
            answer = self._load_code_assist(account, body)
        elif method == "onboardUser":
            answer = self._onboard_user(account, body)
        elif method in ("fetchAvailableModels", "retrieveUserQuotaSummary", "retrieveUserQuota"):
            _check_project_body(account, body)
            if method == "fetchAvailableModels":
                answer = self._available_models(account)
            elif method == "retrieveUserQuota":
                answer = _quota_per_model(account)
            else:
                answer = _quota_summary(account)
        elif method == "countTokens":
            self._check_version(headers)
            request = body.get("request") if isinstance(body, dict) else None
            if not isinstance(request, dict):
                raise GoogleError(400, "Invalid request: field 'request' is required.")
            # UPSTREAM.md §8.4: the model is optional (CPA sends none).
            model = str(request.get("model") or body.get("model") or "").removeprefix("models/")
            call.model = model or None
            if model:
                self._check_model(account, model, headers)
            self._take_failure(method, account, model or None)
            req = to_camel(request)
            _Validator("request.").request(req)
            answer = {"totalTokens": _count_normalised(req)}
        elif method in ("generateContent", "streamGenerateContent"):
            stream = method == "streamGenerateContent"
            call.stream = stream
            self._check_version(headers)
            model, req, envelope = self._check_envelope(account, body, call)
            self._check_model(account, model, headers)
            self._take_failure(method, account, model)
            info = account.models[model]
            ctx = self._validate(req, model, "request.", info, "v1internal", account.email)
            self._check_quota(account, model, envelope, call)
            reply = self._next_reply(account.email, req)
            await self._answer(reply, ctx, stream, "alt=sse" in query, call, receive, send)
            return
        else:
            raise GoogleError(404, NOT_FOUND_MESSAGE)
        await self._send(send, call, 200, _JSON.encode(answer))

    # -- version gates (UPSTREAM.md §2.2)

    def _check_version(self, headers: dict[str, str]) -> None:
        """503 "no longer supported" for clients under ``min_supported_version``. A
        User-Agent that is not an Antigravity one counts as too old: Google decides from
        the version it reports."""
        if not self.version_gate:
            return
        version = client_version(headers.get("user-agent", ""))
        floor = _floor(self.min_supported_version, version[0] if version else "legacy")
        if version is None or (floor is not None and version[1] < _version_tuple(floor)):
            status, error = error_body("VERSION_UNSUPPORTED")
            raise _Answer(status, _JSON.encode(error))

    def _check_model(self, account: Account, model: str, headers: dict[str, str]) -> None:
        if model not in account.models:
            raise GoogleError(404, NOT_FOUND_MESSAGE)
        if self.version_gate and model in self.gated_models:
            version = client_version(headers.get("user-agent", ""))
            floor = _floor(self.gated_min_version, version[0] if version else "legacy")
            if version is None or (floor is not None and version[1] < _version_tuple(floor)):
                raise GoogleError(404, NOT_FOUND_MESSAGE)
        if self.deprecated_status is not None and model in CATALOG_META["deprecatedModelIds"]:
            raise GoogleError(self.deprecated_status)

    # -- quota (UPSTREAM.md §4.2, §9.1, §4.4)

    def _check_quota(self, account: Account, model: str, envelope: dict[str, Any], call: Call) -> None:
        bucket_id = account.exhausted(model)
        if bucket_id is None:
            return
        if "GOOGLE_ONE_AI" in (envelope.get("enabledCreditTypes") or ()):
            # Credits pay when quota is gone (UPSTREAM.md §4.4).
            if account.credits is not None and account.credits >= account.credits_minimum:
                call.credits = True
                # Each paid call costs ``credits_per_call`` (the real price
                # depends on the tokens; a fixed one keeps tests exact).
                account.credits -= account.credits_per_call
                return
            status, error = error_body("INSUFFICIENT_G1_CREDITS_BALANCE", model=model)
            raise _Answer(status, _JSON.encode(error))
        bucket = account.bucket(bucket_id)
        raise _quota_error(model, bucket.reset, weekly=bucket_id.endswith("weekly"))

    # -- account methods

    def _forbidden(self, account: Account) -> _Answer:
        reason = account.forbidden or ""
        if reason == "TOS":  # the old knob's meaning: a bare permission denial
            reason = "PERMISSION_DENIED"
        if reason in ERROR_KINDS:
            status, error = error_body(
                reason,
                project=account.project or account.onboard_project,
                validation_url=account.validation_url,
                now=time.time(),
            )
            return _Answer(status, _JSON.encode(error))
        return GoogleError(403, reason)

    def _load_code_assist(self, account: Account, body: Any) -> dict[str, Any]:
        """The live answer of UPSTREAM.md §3.3: ``currentTier`` is ``free-tier`` for every
        account, the plan is ``paidTier`` (absent for FREE); no ``cloudaicompanionProject``
        before onboarding."""
        if not isinstance(body, dict):
            raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
        _check_keys_top(body, {"metadata", "cloudaicompanionProject", "mode"})
        metadata = body.get("metadata")
        if metadata is not None:
            _check_metadata(metadata)
        answer: dict[str, Any] = {
            "currentTier": {
                **FREE_TIER,
                "upgradeSubscriptionUri": (
                    f"https://accounts.google.com/AccountChooser?Email={account.email}"
                    "&continue=https%3A%2F%2Fone.google.com%2Fai"
                ),
                "upgradeSubscriptionText": (
                    "Upgrade to get 1,500 model requests per day with Gemini CLI and Gemini Code "
                    "Assist's agent mode with Google AI Pro."
                ),
                "upgradeSubscriptionType": "GOOGLE_ONE",
            },
            "allowedTiers": [{**FREE_TIER, "isDefault": True}, STANDARD_TIER],
        }
        if account.project:
            answer["cloudaicompanionProject"] = account.project
        answer["gcpManaged"] = False
        answer["upgradeSubscriptionUri"] = "https://codeassist.google.com/upgrade"
        paid = PAID_TIERS.get(account.tier)
        if paid is not None:
            answer["paidTier"] = dict(paid)
            if account.credits is not None:
                answer["paidTier"]["availableCredits"] = [
                    {
                        "creditType": "GOOGLE_ONE_AI",
                        "creditAmount": str(account.credits),
                        "minimumCreditAmountForUsage": str(account.credits_minimum),
                    }
                ]
        return answer

    def _onboard_user(self, account: Account, body: Any) -> dict[str, Any]:
        """UPSTREAM.md §3.4: a tier id (``tierId`` or ``tier_id``) of ``allowedTiers`` and
        ``metadata`` are required (else the bare 400); ``standard-tier`` needs the user's
        own ``cloudaicompanionProject``. The first answer is a pending operation
        (``onboard_pending`` knob), then ``done: true`` with the project."""
        bare = GoogleError(400, "Request contains an invalid argument.")
        if not isinstance(body, dict):
            raise bare
        tier = body.get("tierId", body.get("tier_id"))
        metadata = body.get("metadata")
        if tier not in ("free-tier", "standard-tier") or not isinstance(metadata, dict):
            raise bare
        _check_metadata(metadata)
        user_project = body.get("cloudaicompanionProject", body.get("cloudaicompanion_project"))
        if tier == "standard-tier" and not user_project:
            raise bare
        if account.project and account.operation is None:
            # Already onboarded: done at once (the live capture).
            return {"done": True, "response": _onboard_response(account.project)}
        return self._advance(account)

    def _advance(self, account: Account) -> dict[str, Any]:
        if account.operation is None:
            account.operation = ("operations/" + secrets.token_hex(12), self.onboard_pending)
        name, left = account.operation
        if left > 0 and not account.project:
            account.operation = (name, left - 1)
            return {"name": name, "done": False}
        account.project = account.project or account.onboard_project
        return {"name": name, "done": True, "response": _onboard_response(account.project)}

    def _poll_operation(self, account: Account, name: str) -> dict[str, Any]:
        """``GET /v1internal/operations/<id>`` (the long-running-operation polling style)."""
        if account.operation is None or account.operation[0] != name:
            raise GoogleError(404, NOT_FOUND_MESSAGE)
        return self._advance(account)

    def _available_models(self, account: Account) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for model_id, info in account.models.items():
            entry = {
                k: v
                for k, v in info.items()
                if k not in _PRIVATE_MODEL_KEYS and v is not False and v is not None
            }
            group = account.group_of(model_id)
            if group is None:
                entry["quotaInfo"] = {"remainingFraction": 1}
            elif info.get("quota", True):
                bucket = account.bucket(BUCKETS[group][1])
                entry["quotaInfo"] = _without_zero(
                    {"remainingFraction": bucket.fraction, "resetTime": _rfc3339(bucket.reset)}
                )
            models[model_id] = entry
        return {"models": models, **_catalog_meta(set(models))}

    def _check_envelope(
        self, account: Account, body: Any, call: Call
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        if not isinstance(body, dict):
            raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
        envelope: dict[str, Any] = {ENVELOPE_SNAKE.get(str(k), str(k)): v for k, v in body.items()}
        _check_keys_top(envelope, ENVELOPE_KEYS)
        project = envelope.get("project")
        if not project:
            raise GoogleError(400, "Invalid request: field 'project' is required.")
        if project != account.project:
            if any(a.project == project for a in self.accounts.values()):
                raise GoogleError(
                    403,
                    "Permission 'cloudaicompanion.companions.generateChat' denied on resource "
                    f"'//cloudaicompanion.googleapis.com/projects/{project}/locations/global' "
                    "(or it may not exist).",
                )
            # A project that is not this account's managed one is taken for a user GCP
            # project, which has no Code Assist license (UPSTREAM.md §9.6c); this is also
            # what an account that has not onboarded yet gets.
            status, error = error_body("SUBSCRIPTION_REQUIRED")
            raise _Answer(status, _JSON.encode(error))
        # requestId is optional: CPA leaves it out of web_search calls (UPSTREAM.md §5.4).
        for name in ("model", "userAgent", "requestType"):
            if not isinstance(envelope.get(name), str) or not envelope[name]:
                raise GoogleError(400, f"Invalid request: field '{name}' is required.")
        credit_types = envelope.get("enabledCreditTypes")
        if credit_types is not None:
            for i, value in enumerate(credit_types if isinstance(credit_types, list) else [0]):
                if value not in ("GOOGLE_ONE_AI", "CREDIT_TYPE_UNSPECIFIED"):
                    where = f"enabled_credit_types[{i}]"
                    text = (
                        f"Invalid value at '{where}' (type.googleapis.com/google.internal.cloud."
                        f"code.v1internal.CreditType), {_JSON.encode(value).decode()}"
                    )
                    raise _bad_request([text], [(where, text)])
        model = envelope["model"].removeprefix("models/")
        call.model = model
        if model not in account.models:
            raise GoogleError(404, NOT_FOUND_MESSAGE)
        request = envelope.get("request")
        if not isinstance(request, dict):
            raise GoogleError(400, "* GenerateContentRequest.contents: contents is not specified\n")
        return model, request, envelope

    def _validate(
        self,
        request: dict[str, Any],
        model: str,
        prefix: str,
        info: dict[str, Any],
        api: str,
        email: str | None,
    ) -> _Context:
        req = to_camel(request)
        _Validator(prefix).request(req)
        family = model_family(model)
        supports_thinking = bool(info.get("supportsThinking", False))
        _check_generation(req, model, family, info)
        search = _check_tools(req, family)
        thinking, include, budget = _thinking_state(req, supports_thinking)
        if family == "claude":
            _check_claude(req, thinking, budget, self._signature_index, self.check_signatures)
        elif family == "gemini" and self.check_signatures:
            _check_gemini_signatures(req["contents"], self._signature_index)
        show = thinking if family == "claude" else (include and supports_thinking)
        image = model in CATALOG_META["imageGenerationModelIds"]
        return _Context(api, model, email, family, thinking, show, req, search, image)

    # ----------------------------------------------------------------- public Gemini API

    async def _v1beta(
        self,
        path: str,
        method: str,
        raw: bytes,
        headers: dict[str, str],
        query: str,
        call: Call,
        receive: Any,
        send: Any,
    ) -> None:
        model = path[len("/v1beta/models/") :].rsplit(":", 1)[0]
        call.model = model
        if not headers.get("x-goog-api-key") and "key=" not in query:
            raise GoogleError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        body = _parse_json(raw)
        call.body = body
        if not isinstance(body, dict):
            raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
        if method == "countTokens":
            request = body.get("generateContentRequest", body)
            req = to_camel(request)
            _Validator("").request(req)
            await self._send(send, call, 200, _JSON.encode({"totalTokens": _count_normalised(req)}))
            return
        if method not in ("generateContent", "streamGenerateContent"):
            raise GoogleError(404, NOT_FOUND_MESSAGE)
        stream = method == "streamGenerateContent"
        call.stream = stream
        # The public API's own models think (the Antigravity catalog does not apply here).
        info = {"supportsThinking": model_family(model) != "other"}
        ctx = self._validate(body, model, "", info, "v1beta", None)
        reply = self._next_reply(None, body)
        await self._answer(reply, ctx, stream, "alt=sse" in query, call, receive, send)

    # ----------------------------------------------------------------- rendering & sending

    def _render(self, reply: Reply, ctx: _Context, stream: bool) -> _Rendered:
        trace = secrets.token_hex(8)  # one trace (and response id) per answer, as Google does
        response_id = _random_id(20)
        headers = dict(reply.headers)
        if ctx.api == "v1internal":
            headers[_TRACE_HEADER] = trace
        if reply.kind == "error":
            return _Rendered(reply.status, dict(headers), body=_JSON.encode(_error_body(reply, ctx.model)))
        if reply.kind == "raw":
            assert reply.raw_response is not None
            events = reply.raw_events if reply.raw_events is not None else [reply.raw_response]
            if stream:
                return _Rendered(
                    reply.status,
                    dict(headers),
                    events=[self._wrap(e, ctx, trace) for e in events],
                )
            return _Rendered(reply.status, dict(headers), body=self._wrap(reply.raw_response, ctx, trace))
        base = {"modelVersion": ctx.model, "responseId": response_id}
        usage = {
            "promptTokenCount": _count_normalised(ctx.request),
            "candidatesTokenCount": 0,
            "totalTokenCount": 0,
        }
        if reply.kind == "empty":
            usage["totalTokenCount"] = usage["promptTokenCount"]
            if stream:
                return _Rendered(200, dict(headers), events=[])
            response = {
                "candidates": [{"content": {"role": "model"}, "finishReason": "STOP"}],
                "usageMetadata": usage,
            }
            return _Rendered(200, dict(headers), body=self._wrap({**response, **base}, ctx, trace))

        events, thought, answer, calls = self._parts(reply, ctx, stream)
        usage["candidatesTokenCount"] = math.ceil(
            (len(answer) + sum(len(_JSON.encode(args)) for _, args, _ in calls)) / 4
        )
        if thought:
            usage["thoughtsTokenCount"] = math.ceil(len(thought) / 4)
        usage["totalTokenCount"] = (
            usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0)
        )
        if reply.usage:
            usage.update(reply.usage)
            if "totalTokenCount" not in reply.usage:
                usage["totalTokenCount"] = (
                    usage["promptTokenCount"]
                    + usage["candidatesTokenCount"]
                    + usage.get("thoughtsTokenCount", 0)
                )
        responses: list[dict[str, Any]] = []
        for i, parts in enumerate(events):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
            response: dict[str, Any] = {"candidates": [candidate]}
            if i == len(events) - 1:
                candidate["finishReason"] = reply.finish
                response["usageMetadata"] = usage
            response.update(base)
            responses.append(response)
        if ctx.search:
            last: dict[str, Any] = responses[-1]["candidates"][0]
            last["groundingMetadata"] = _grounding(ctx.request, answer, reply.sources, reply.supports)
        if stream:
            return _Rendered(200, dict(headers), events=[self._wrap(r, ctx, trace) for r in responses])
        return _Rendered(200, dict(headers), body=self._wrap(responses[0], ctx, trace))

    def _parts(
        self, reply: Reply, ctx: _Context, stream: bool
    ) -> tuple[list[list[dict[str, Any]]], str, str, list[tuple[str, dict[str, Any], str | None]]]:
        """Parts grouped by stream event (non-stream: one group), plus thought/answer/calls."""
        image = ctx.image and reply.answer is None and not reply.calls
        if image:
            answer = ""  # an image model answers an image (UPSTREAM.md §5.5)
        elif reply.answer is None:
            answer = f"Hello from {ctx.model} ({ctx.email or 'gemini-api'})"
        else:
            answer = reply.answer
        calls = list(reply.calls)
        if isinstance(reply.thought, str):
            thought = reply.thought
        elif reply.thought is None and ctx.show_thoughts:
            thought = (
                f"I should call {calls[0][0]}."
                if calls
                else f"Thinking about how to answer with {ctx.model}."
            )
        else:
            thought = ""
        family = ctx.family
        events: list[list[dict[str, Any]]] = []
        chunks = reply.chunks if stream else 1

        if thought:
            if family == "claude":
                signature = self._issue("claude", "thought", text=thought)
                if stream:
                    events += [[{"text": piece, "thought": True}] for piece in _split(thought, chunks)]
                    events += [
                        [{"thought": True, "text": ""}],
                        [{"thought": True, "thoughtSignature": signature}],
                    ]
                else:
                    events.append([{"text": thought, "thought": True, "thoughtSignature": signature}])
            else:
                events += [[{"text": piece, "thought": True}] for piece in _split(thought, chunks)]
        text_events = [[{"text": piece}] for piece in _split(answer, chunks)]
        events += text_events
        if image:
            events.append([{"inlineData": {"mimeType": "image/png", "data": PNG_BASE64}}])
        if calls:
            call_parts = []
            for n, (name, args, call_id) in enumerate(calls):
                fc: dict[str, Any] = {"name": name, "args": args}
                if call_id is None and family == "claude":
                    call_id = "toolu_vrtx_" + _random_id(24)
                if call_id is not None:
                    fc["id"] = call_id
                part: dict[str, Any] = {"functionCall": fc}
                if n == 0 and family != "claude":
                    # Gemini: the signature rides on the FIRST call of the turn only.
                    part["thoughtSignature"] = self._issue(family, "call", name=name)
                call_parts.append(part)
            events.append(call_parts)
        elif thought and family != "claude":
            signature = self._issue(family, "text")
            if text_events and not reply.carrier:
                text_events[-1][-1]["thoughtSignature"] = signature
            else:
                events.append([{"text": "", "thoughtSignature": signature}])
        if not stream:
            events = [[part for group in events for part in group]] if events else [[]]
        return events, thought, answer, calls

    def _wrap(self, response: dict[str, Any], ctx: _Context, trace: str) -> bytes:
        if ctx.api == "v1internal":
            return _JSON.encode({"response": response, "traceId": trace})
        return _JSON.encode(response)

    async def _answer(
        self,
        reply: Reply,
        ctx: _Context,
        stream: bool,
        sse: bool,
        call: Call,
        receive: Any,
        send: Any,
    ) -> None:
        rendered = self._render(reply, ctx, stream)
        if rendered.body is not None:
            if reply.silent_for or reply.drop_at is not None:
                await self._send_slow(reply, rendered, call, receive, send)
            else:
                sse_error = stream and ctx.api == "v1internal"
                content_type = _SSE if sse_error else b"application/json; charset=UTF-8"
                await self._send(send, call, rendered.status, rendered.body, content_type, rendered.headers)
            return
        assert rendered.events is not None
        if sse:
            end = b"\n\n" if ctx.api == "v1internal" else b"\r\n\r\n"
            chunks = [b"data: " + event + end for event in rendered.events]
            content_type = b"text/event-stream"
        else:
            # Without alt=sse Google streams one JSON array.
            chunks = [(b"[" if i == 0 else b",\r\n") + e for i, e in enumerate(rendered.events)]
            chunks = chunks or [b"["]
            chunks[-1] += b"]"
            content_type = b"application/json; charset=UTF-8"
        await self._stream(reply, rendered, chunks, content_type, call, receive, send)

    async def _send_slow(
        self, reply: Reply, rendered: _Rendered, call: Call, receive: Any, send: Any
    ) -> None:
        """A non-stream answer with silence before the body, or cut in the middle."""
        assert rendered.body is not None
        body = rendered.body
        call.status = rendered.status
        headers = [
            (b"content-type", b"application/json; charset=UTF-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in rendered.headers.items()]
        if call.api == "v1internal":
            headers += _esf_headers(rendered.headers)
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
            if await _pause(watcher, reply.silent_for):
                return
            if reply.drop_at is not None:
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[: len(body) // 2],
                        "more_body": True,
                    }
                )
                return  # uvicorn closes the connection: the body is cut
            await send({"type": "http.response.body", "body": body})
        finally:
            watcher.cancel()

    async def _stream(
        self,
        reply: Reply,
        rendered: _Rendered,
        chunks: list[bytes],
        content_type: bytes,
        call: Call,
        receive: Any,
        send: Any,
    ) -> None:
        call.status = rendered.status
        headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
        headers += [(k.encode(), v.encode()) for k, v in rendered.headers.items()]
        if call.api == "v1internal":
            headers += _esf_headers(rendered.headers)
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        self.streams_open += 1
        cancelled = False
        try:
            await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
            if await _pause(watcher, reply.silent_for):
                cancelled = True
                return
            for i, chunk in enumerate(chunks):
                if reply.drop_at is not None and i >= reply.drop_at:
                    return  # abort: uvicorn closes the connection mid-body
                if i and await _pause(watcher, reply.delay):
                    cancelled = True
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if watcher.done():
                    cancelled = True
                    return
            if reply.drop_at is not None:
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self.streams_open -= 1
            if cancelled:
                self.streams_cancelled += 1


# --------------------------------------------------------------------------- small builders


#: A 1x1 PNG, what the image model answers by default.
PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
_REDIRECT = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"


def _grounding(
    request: dict[str, Any],
    answer: str,
    sources: tuple[tuple[str, str], ...] | None,
    supports: tuple[tuple[str, tuple[int, ...]], ...] | None = None,
) -> dict[str, Any]:
    """groundingMetadata of a web-search answer: the query, the sources (redirect links, as
    Google gives: UPSTREAM.md §5.4) and the supports: one covering the answer, or the
    scripted segments (each located in the answer; indexes in UTF-8 bytes, startIndex
    left out when 0, as a proto3 default is)."""
    query = ""
    for content in request.get("contents") or ():
        for part in content.get("parts") or ():
            if content.get("role", "user") == "user" and isinstance(part.get("text"), str):
                query = part["text"]
    if sources is None:
        sources = ((_REDIRECT + "AUZIYQ" + hashlib.sha256(query.encode()).hexdigest()[:40], "example.com"),)
    chunks = [{"web": {"uri": uri, "title": title}} for uri, title in sources]
    if supports is None:
        supports = ((answer, tuple(range(len(chunks)))),) if answer else ()
    out = []
    for text, indices in supports:
        at = answer.find(text)
        assert at >= 0, f"a scripted support must be a segment of the answer: {text!r}"
        start = len(answer[:at].encode())
        segment: dict[str, Any] = {"endIndex": start + len(text.encode()), "text": text}
        if start:
            segment["startIndex"] = start
        out.append({"segment": segment, "groundingChunkIndices": list(indices)})
    return {
        "webSearchQueries": [query],
        "groundingChunks": chunks,
        "groundingSupports": out,
    }


_SSE = b"text/event-stream"
_SERVER_ESF = (b"server", b"ESF")
_TRACE_HEADER = "x-cloudaicompanion-trace-id"


def _esf_headers(given: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    """``server: ESF`` and a trace id, as Cloud Code answers carry (UPSTREAM.md §1.4, §8.3)."""
    if given and _TRACE_HEADER in given:
        return [_SERVER_ESF]
    return [_SERVER_ESF, (_TRACE_HEADER.encode(), secrets.token_hex(8).encode())]


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return _DECODE(raw)
    except msgspec.DecodeError as exc:
        raise GoogleError(400, f"Invalid JSON payload received. {exc}") from None


def _auth_info(reason: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": ERROR_DOMAIN},
    }


def _quota_error(model: str, reset: float, *, weekly: bool) -> _Answer:
    """429 QUOTA_EXHAUSTED as UPSTREAM.md §9.1: the 5-hour text, or for the weekly bucket
    the "Individual quota reached" text; delays counted to the bucket's reset."""
    delay = max(reset - time.time(), 0.0)
    shown = go_duration(int(delay))
    message = (WEEKLY_QUOTA_MESSAGE if weekly else QUOTA_MESSAGE).format(delay=shown)
    body = _quota_body(model, message, go_duration(delay), _rfc3339(reset), _proto_duration(delay))
    return _Answer(429, _JSON.encode(body))


def _floor(knob: str | dict[str, str], family: str) -> str | None:
    return knob if isinstance(knob, str) else knob.get(family)


FREE_TIER = {
    "id": "free-tier",
    "name": "Antigravity",
    "description": "Gemini-powered code suggestions and chat in multiple IDEs",
    "privacyNotice": {
        "showNotice": True,
        "noticeText": "This notice and our Privacy Policy describe how Antigravity handles your "
        "data. You can opt out below.",
    },
}
STANDARD_TIER = {
    "id": "standard-tier",
    "name": "Antigravity",
    "description": "Unlimited coding assistant with the most powerful Gemini models",
    "userDefinedCloudaicompanionProject": True,
    "privacyNotice": {},
    "usesGcpTos": True,
}
PAID_TIERS = {
    "PRO": {
        "id": "g1-pro-tier",
        "name": "Google AI Pro",
        "description": "Google AI Pro",
        "upgradeSubscriptionUri": "https://antigravity.google/g1-upgrade",
        "upgradeSubscriptionText": (
            "You can upgrade to a Google AI Ultra plan to receive higher rate limits."
        ),
    },
    "ULTRA": {"id": "g1-ultra-tier", "name": "Google AI Ultra", "description": "Google AI Ultra"},
}
ENVELOPE_KEYS = frozenset("project model userAgent requestType requestId request enabledCreditTypes".split())
ENVELOPE_SNAKE = {
    "user_agent": "userAgent",
    "request_type": "requestType",
    "request_id": "requestId",
    "enabled_credit_types": "enabledCreditTypes",
}
# ClientMetadata enums (UPSTREAM.md §3.3: names as ACP lists them; numbers accepted too).
_METADATA_ENUMS = {
    "ideType": (
        "ide_type",
        "IdeType",
        frozenset(
            "IDE_UNSPECIFIED VSCODE INTELLIJ VSCODE_CLOUD_SHELL CLOUD_SHELL PLUGINS ANTIGRAVITY "
            "JETSKI".split()
        ),
    ),
    "platform": (
        "platform",
        "Platform",
        frozenset(
            "PLATFORM_UNSPECIFIED DARWIN_AMD64 DARWIN_ARM64 LINUX_AMD64 LINUX_ARM64 WINDOWS_AMD64".split()
        ),
    ),
    "pluginType": (
        "plugin_type",
        "PluginType",
        frozenset("PLUGIN_UNSPECIFIED PLUGIN_TYPE_UNSPECIFIED CLOUD_CODE GEMINI".split()),
    ),
}
_METADATA_KEYS = frozenset(
    "ideType ideVersion pluginVersion platform updateChannel duetProject pluginType ideName".split()
)


def _camel_simple(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _unknown_name(name: str, where: str | None = None) -> GoogleError:
    at = f" at '{where}'" if where else ""
    text = f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
    violation: dict[str, str] = {"field": where} if where else {}
    violation["description"] = text
    details = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
    return GoogleError(400, text, details=details)


def _check_keys_top(body: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    for key in body:
        if _camel_simple(key) not in allowed:
            raise _unknown_name(key)


def _check_metadata(metadata: Any) -> None:
    """loadCodeAssist/onboardUser ``metadata``: a ClientMetadata, enums by name or number."""
    if not isinstance(metadata, dict):
        raise GoogleError(400, "Request contains an invalid argument.")
    for key, value in metadata.items():
        name = _camel_simple(key)
        if name not in _METADATA_KEYS:
            raise _unknown_name(key, "metadata")
        enum = _METADATA_ENUMS.get(name)
        if enum is None:
            continue
        snake, type_name, names = enum
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            continue
        if isinstance(value, str) and value in names:
            continue
        where = f"metadata.{snake}"
        text = (
            f"Invalid value at '{where}' (type.googleapis.com/google.internal.cloud.code."
            f"v1internal.ClientMetadata.{type_name}), {_JSON.encode(value).decode()}"
        )
        raise _bad_request([text], [(where, text)])


def _onboard_response(project: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
        "cloudaicompanionProject": {"id": project, "name": project},
        "releaseChannel": {"type": "EXPERIMENTAL", "name": "Preview Channel"},
    }


def _check_project_body(account: Account, body: Any) -> None:
    """fetchAvailableModels / retrieveUserQuota*: ``{"project": p}`` or ``{}`` (UPSTREAM.md
    §4.1-4.3); any other key is an unknown field (``metadata`` included, as live)."""
    if not isinstance(body, dict):
        raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
    for key in body:
        if key != "project":
            text = f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"description": text}],
                }
            ]
            raise GoogleError(400, text, details=details)
    project = body.get("project")
    if project is not None and project != account.project:
        raise GoogleError(403, f"Permission denied on resource project {project}.")


def _catalog_meta(ids: set[str]) -> dict[str, Any]:
    """The top-level keys of fetchAvailableModels, keeping only ids the account has."""
    meta: dict[str, Any] = {}
    for key, value in CATALOG_META.items():
        if key == "defaultAgentModelId":
            if value in ids:
                meta[key] = value
        elif key == "agentModelSorts":
            kept = [m for m in value[0]["groups"][0]["modelIds"] if m in ids]
            meta[key] = [{"displayName": "Recommended", "groups": [{"modelIds": kept}]}]
        elif key == "deprecatedModelIds":
            meta[key] = {old: new for old, new in value.items() if old in ids}
        elif key == "tieredModelIds":
            meta[key] = {tier: [m for m in ms if m in ids] for tier, ms in value.items()}
        elif key in ("experimentIds", "audioTranscriptionModelIds"):
            meta[key] = value
        else:
            meta[key] = [m for m in value if m in ids]
    return meta


def _refresh_text(window: str, seconds: float) -> str:
    """ "it will fully refresh in 6 days, 21 hours" / "in 4 hours, 23 minutes" (§4.2)."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)

    def unit(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    span = (
        f"{unit(days, 'day')}, {unit(hours, 'hour')}"
        if days
        else f"{unit(hours, 'hour')}, {unit(mins, 'minute')}"
    )
    name = "weekly" if window == "weekly" else "5-hour"
    return f"You have used some of your {name} limit, it will fully refresh in {span}."


_GROUPS = (
    ("gemini", "Gemini Models", "Models within this group: Gemini Flash, Gemini Pro"),
    ("3p", "Claude and GPT models", "Models within this group: Claude Opus, Claude Sonnet, GPT-OSS"),
)
SUMMARY_DESCRIPTION = (
    "Within each group, models share a weekly limit and a 5-hour limit. Quota is consumed "
    "proportionally to the cost of the tokens. Thus, limits will last longer with shorter tasks "
    "or using more cost-effective models. The 5-hour limit smooths out aggregate demand to fairly "
    "distribute global capacity across all users, while your weekly limit is tied directly to "
    "your individual tier."
)


def _quota_summary(account: Account) -> dict[str, Any]:
    """retrieveUserQuotaSummary (UPSTREAM.md §4.2): a bucket untouched (fraction 1) has no
    ``description``."""
    now = time.time()
    groups = []
    for group, display, description in _GROUPS:
        buckets = []
        for bucket_id in BUCKETS[group]:
            bucket = account.bucket(bucket_id)
            window = "weekly" if bucket_id.endswith("weekly") else "5h"
            entry: dict[str, Any] = {
                "bucketId": bucket_id,
                "displayName": "Weekly Limit" if window == "weekly" else "Five Hour Limit",
                "window": window,
                "resetTime": _rfc3339(bucket.reset),
            }
            if bucket.fraction < 1:
                entry["description"] = _refresh_text(window, bucket.reset - now)
            entry["remainingFraction"] = bucket.fraction
            buckets.append(_without_zero(entry))
        groups.append({"buckets": buckets, "displayName": display, "description": description})
    return {"groups": groups, "description": SUMMARY_DESCRIPTION}


def _quota_per_model(account: Account) -> dict[str, Any]:
    """retrieveUserQuota (UPSTREAM.md §4.3): one bucket per catalog id, the 5-hour values.
    The live ``tokenType`` was redacted; "REQUESTS" is the fake's choice."""
    buckets = []
    for model_id in sorted(account.models):
        quota = account.quota(model_id)
        entry: dict[str, Any] = {}
        if quota is not None:
            entry["resetTime"] = _rfc3339(quota[1])
        entry["tokenType"] = "REQUESTS"
        entry["modelId"] = model_id
        entry["remainingFraction"] = quota[0] if quota is not None else 1
        buckets.append(_without_zero(entry))
    return {"buckets": buckets}


def _without_zero(entry: dict[str, Any]) -> dict[str, Any]:
    """proto3 JSON leaves a field at its default out: an exhausted bucket has
    no ``remainingFraction`` at all (UPSTREAM.md §4.1: missing means 0)."""
    if entry.get("remainingFraction") == 0:
        del entry["remainingFraction"]
    return entry


def _error_body(reply: Reply, model: str) -> dict[str, Any]:
    spec = reply.error_spec or {}
    reason = spec.get("reason")
    delay = spec.get("quota_reset_delay")
    if delay is not None and not isinstance(delay, str):
        delay = go_duration(float(delay))
    stamp = spec.get("quota_reset_timestamp")
    if stamp is not None:
        stamp = _rfc3339(_to_epoch(stamp)) if not isinstance(stamp, str) else stamp
    details: list[dict[str, Any]] = []
    if reason or delay is not None or stamp is not None:
        metadata: dict[str, str] = {"model": model}
        if delay is not None:
            metadata["quotaResetDelay"] = delay
        if stamp is not None:
            metadata["quotaResetTimeStamp"] = stamp
        info: dict[str, Any] = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "domain": ERROR_DOMAIN,
        }
        if reason:
            info["reason"] = reason
        info["metadata"] = metadata
        details.append(info)
    if spec.get("retry_delay") is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": _proto_duration(spec["retry_delay"]),
            }
        )
    message = spec.get("message")
    if message is None:
        if reason == "QUOTA_EXHAUSTED" and delay is not None:
            message = QUOTA_MESSAGE.format(delay=delay)
        elif reason == "MODEL_CAPACITY_EXHAUSTED":
            message = f"No capacity available for model {model} on the server"
    return google_error_body(reply.status, message, details=details or None)
