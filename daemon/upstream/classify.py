"""One classifier for every error Google answers, with the policy as data (pure).

:func:`parse_google_error` reads any answer body (a Google error object, an
Anthropic error wrapped in one, an OAuth error, HTML, garbage) into a
:class:`GoogleError` record and never raises. :func:`classify` names what it
means as a :class:`Verdict` and looks the verdict up in :data:`POLICIES`, the
one table saying, per verdict, what happens to the account, whether and where
to retry, whether the caller is at fault, and what the person reading the
error should do. The rows follow UPSTREAM.md §9.11.

Order of the decision (UPSTREAM.md §9.2: the quota and the rate-limit bodies
share one message text, only ``ErrorInfo.reason`` tells them apart):
``ErrorInfo.reason`` first, then known message texts, then the HTTP status
(or the canonical ``status`` when the HTTP one says nothing, as inside a
stream).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from daemon.errors import (
    BadRequest,
    GatewayError,
    ModelNotFound,
    NoAccountAvailable,
    Overloaded,
    RateLimited,
    UpstreamError,
    redact,
)
from daemon.quota import group_of
from daemon.timeparse import parse_duration, parse_retry_after, parse_timestamp

__all__ = [
    "POLICIES",
    "Classified",
    "Effect",
    "GoogleError",
    "HelpLink",
    "Policy",
    "Retry",
    "Verdict",
    "classify",
    "parse_google_error",
    "refuses_client_version",
    "verdict_of",
]

MESSAGE_LIMIT = 1000  # characters of an upstream message kept
DETAIL_LIMIT = 300  # characters of it quoted in a user-facing message
MAX_DELAY = 31 * 86400.0  # a delay beyond a month is garbage, not a plan


# --------------------------------------------------------------------------- the record


class HelpLink(msgspec.Struct, frozen=True):
    description: str
    url: str


class GoogleError(msgspec.Struct, frozen=True, kw_only=True):
    """What an error answer says, parsed once (UPSTREAM.md §9).

    ``retry_delay`` is read in this order (§9.10): ``RetryInfo.retryDelay``,
    ``ErrorInfo.metadata.quotaResetDelay``, the message ("…reset after
    1h43m56s", "Resets in 71h15m27s"), the ``Retry-After`` header;
    ``delay_source`` names which one gave it.
    """

    status: int
    google_status: str = ""  # canonical code: RESOURCE_EXHAUSTED, PERMISSION_DENIED, …
    message: str = ""  # redacted, at most MESSAGE_LIMIT characters
    reason: str = ""  # ErrorInfo.reason
    domain: str = ""  # ErrorInfo.domain
    metadata: dict[str, str] = msgspec.field(default_factory=dict)  # ErrorInfo.metadata
    retry_delay: float | None = None  # seconds
    delay_source: str = ""  # retry_info | quota_reset_delay | message | header | ""
    reset_at: float | None = None  # epoch, from quotaResetTimeStamp
    validation_url: str = ""
    appeal_url: str = ""
    help_links: tuple[HelpLink, ...] = ()
    violations: tuple[str, ...] = ()  # BadRequest.fieldViolations[].description
    model: str = ""  # metadata.model
    anthropic_type: str = ""  # Claude: the Anthropic error inside error.message (§6.1)
    anthropic_message: str = ""
    oauth_error: str = ""  # {"error": "invalid_grant", "error_description": …}

    @property
    def detail(self) -> str:
        """The most human part of the message."""
        return self.anthropic_message or self.message


_DECODE = msgspec.json.decode
_DELAY_TEXT = re.compile(
    r"(?:reset after|resets in|retry after|retry in|try again in|after)\s+"
    r"((?:\d+(?:\.\d+)?(?:h|ms|m|s))+)\b",
    re.IGNORECASE,
)
_URL = re.compile(r"https://[^\s\"'<>\\]+")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return ""


def _clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_body(body: bytes) -> object:
    """The JSON value of a body; tolerates SSE framing (Claude errors to a
    stream request arrive as ``text/event-stream``, §6.1) and Google's JSON
    arrays (``streamGenerateContent`` without ``alt=sse``)."""
    try:
        data: object = _DECODE(body)
    except (msgspec.DecodeError, ValueError, RecursionError):
        data = None
        text = body.decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("data:"):
                try:
                    data = _DECODE(line[5:].strip().encode())
                except (msgspec.DecodeError, ValueError, RecursionError):
                    continue
                break
    if isinstance(data, list):
        data = next((x for x in data if isinstance(x, dict) and "error" in x), None)
    return data


def _plain_text(body: bytes, status: int) -> str:
    text = body[:4000].decode("utf-8", "replace").strip()
    if "<" in text and ">" in text:
        m = _TITLE.search(text)
        text = m.group(1) if m else _TAG.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:500] or f"HTTP {status}"


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    if not headers:
        return ""
    try:
        value = headers.get(name)
        if value is None:
            value = next((v for k, v in headers.items() if k.lower() == name), None)
    except Exception:  # a foreign Mapping misbehaving must not break error handling
        return ""
    return value if isinstance(value, str) else ""


def _unwrap_anthropic(message: str) -> tuple[str, str]:
    """Claude errors come back as Anthropic JSON inside ``error.message`` (§6.1)."""
    start = message.find("{")
    if start < 0 or '"type"' not in message:
        return "", ""
    try:
        obj = _DECODE(message[start:].encode())
    except (msgspec.DecodeError, ValueError, RecursionError):
        return "", ""
    if not isinstance(obj, dict):
        return "", ""
    inner = obj.get("error")
    if isinstance(inner, dict):
        return _text(inner.get("type")), _text(inner.get("message"))
    if obj.get("type") not in (None, "error"):
        return _text(obj.get("type")), _text(obj.get("message"))
    return "", ""


def parse_google_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
) -> GoogleError:
    """Read an error answer; any body gives a sane record, never an exception.

    ``now`` is only needed for a ``Retry-After`` given as an HTTP date.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        body = str(body).encode("utf-8", "replace")
    body = bytes(body)
    data = _decode_body(body)
    message = ""
    google_status = reason = domain = oauth_error = ""
    metadata: dict[str, str] = {}
    links: list[HelpLink] = []
    violations: list[str] = []
    retry_info: float | None = None

    err: Any = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = _text(err.get("message"))
        google_status = _text(err.get("status"))
        details = err.get("details")
        for d in details if isinstance(details, list) else ():
            if not isinstance(d, dict):
                continue
            typ = _text(d.get("@type"))
            if typ.endswith("google.rpc.ErrorInfo"):
                reason = reason or _text(d.get("reason"))
                domain = domain or _text(d.get("domain"))
                meta = d.get("metadata")
                if isinstance(meta, dict):
                    for k, v in meta.items():
                        metadata.setdefault(_text(k), _text(v))
            elif typ.endswith("google.rpc.RetryInfo"):
                if retry_info is None:
                    retry_info = parse_duration(d.get("retryDelay"))
            elif typ.endswith("google.rpc.Help"):
                raw_links = d.get("links")
                for link in raw_links if isinstance(raw_links, list) else ():
                    if isinstance(link, dict) and link.get("url"):
                        links.append(HelpLink(_text(link.get("description")), _text(link.get("url"))))
            elif typ.endswith("google.rpc.BadRequest"):
                fvs = d.get("fieldViolations")
                for fv in fvs if isinstance(fvs, list) else ():
                    if isinstance(fv, dict) and fv.get("description"):
                        violations.append(redact(_clip(_text(fv.get("description")), DETAIL_LIMIT)))
        if not message:
            # The older 404 variant carries its text in "errors" (§9.7).
            errors = err.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                message = _text(errors[0].get("message"))
    elif isinstance(data, dict) and isinstance(err, str):
        oauth_error = err  # Google OAuth: {"error": "invalid_grant", "error_description": …}
        message = _text(data.get("error_description")) or err
    if not message:
        message = _plain_text(body, status)

    reset_delay = parse_duration(metadata.get("quotaResetDelay"))
    reset_at = parse_timestamp(metadata.get("quotaResetTimeStamp"))
    model = metadata.get("model", "")
    validation_url = metadata.get("validation_url") or metadata.get("validationUrl") or ""
    appeal_url = metadata.get("appeal_url") or metadata.get("appealUrl") or ""
    if not validation_url:
        for link in links:
            if "verif" in link.description.lower():
                validation_url = link.url
                break
    if not validation_url and "verify your account" in message.lower():
        # The older text puts the URL in the message only (§9.6a).
        m = _URL.search(message)
        if m:
            validation_url = m.group(0)

    anthropic_type, anthropic_message = _unwrap_anthropic(message)

    delay: float | None = None
    source = ""
    header_ms = _header(headers, "retry-after-ms")
    header = _header(headers, "retry-after")
    if retry_info is not None:
        delay, source = retry_info, "retry_info"
    elif reset_delay is not None:
        delay, source = reset_delay, "quota_reset_delay"
    else:
        m = _DELAY_TEXT.search(message)
        parsed = parse_duration(m.group(1)) if m else None
        if parsed is not None:
            delay, source = parsed, "message"
        elif header_ms:
            ms = parse_duration(header_ms)
            if ms is not None:
                delay, source = ms / 1000.0, "header"
        if delay is None and header:
            secs = parse_retry_after(header, time.time() if now is None else now)
            if secs is not None:
                delay, source = secs, "header"
    if delay is not None:
        delay = min(delay, MAX_DELAY)

    return GoogleError(
        status=status,
        google_status=google_status,
        message=redact(_clip(message)),
        reason=reason,
        domain=domain,
        metadata=metadata,
        retry_delay=delay,
        delay_source=source,
        reset_at=reset_at,
        validation_url=validation_url,
        appeal_url=appeal_url,
        help_links=tuple(links),
        violations=tuple(violations),
        model=model,
        anthropic_type=anthropic_type,
        anthropic_message=redact(_clip(anthropic_message)),
        oauth_error=oauth_error,
    )


# --------------------------------------------------------------------------- verdicts and policy


class Verdict(StrEnum):
    """What an upstream error means; one per row of UPSTREAM.md §9.11."""

    QUOTA_EXHAUSTED = "quota_exhausted"  # §9.1: the group's quota is empty until its reset
    RATE_LIMITED = "rate_limited"  # §9.2: short per-account, per-model throttle
    THROTTLED = "throttled"  # §9.3: 429 without details; host/client-scoped
    CAPACITY = "capacity"  # §9.4: the server has no capacity
    CLIENT_VERSION = "client_version"  # §2.2/§9.5: our User-Agent's version is refused
    VALIDATION_REQUIRED = "validation_required"  # §9.6a
    TOS_VIOLATION = "tos_violation"  # §9.6b
    SUBSCRIPTION_REQUIRED = "subscription_required"  # §9.6c
    SERVICE_DISABLED = "service_disabled"  # §9.6d
    SECURITY_POLICY = "security_policy"  # §9.6f: VPC Service Controls
    PERMISSION_DENIED = "permission_denied"  # §9.6e and any other 403
    NOT_FOUND = "not_found"  # §9.7
    CONTEXT_TOO_LONG = "context_too_long"  # §9.8: a 400 about the prompt's size
    BAD_REQUEST = "bad_request"  # §9.8
    UNAUTHENTICATED = "unauthenticated"  # §9.9: the access token; refresh and retry
    LOGIN_REVOKED = "login_revoked"  # §9.9: the refresh failed (invalid_grant, …)
    CREDITS_EXHAUSTED = "credits_exhausted"  # §4.4
    SERVER_ERROR = "server_error"  # other 5xx, 408
    REDIRECT = "redirect"  # 3xx: never the caller's fault
    UNKNOWN = "unknown"


class Effect(StrEnum):
    """What an error does to the account that got it."""

    NONE = "none"
    COOL_MODEL = "cool_model"  # rest this account for this model for the delay
    COOL_GROUP_UNTIL_RESET = "cool_group_until_reset"  # the model's quota group, until the reset time
    DISABLE = "disable"  # until a person acts; ``Classified.account_note`` says how
    NEEDS_RELOGIN = "needs_relogin"
    REFRESH_TOKEN = "refresh_token"  # refresh the access token once
    RECHECK_PROJECT = "recheck_project"  # re-run loadCodeAssist for the project
    STOP_CREDITS = "stop_credits"  # stop sending enabledCreditTypes for this account


class Retry(StrEnum):
    """Where the request goes next."""

    NEXT_ACCOUNT = "next_account"
    NEXT_HOST = "next_host"  # same account, the next upstream endpoint
    SAME_ACCOUNT_AFTER_WAIT = "same_account_after_short_wait"  # wait Classified.cooldown, retry
    SAME_ACCOUNT = "same_account"  # once, after the effect (a token refresh)
    NONE = "none"  # answer the caller now


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """One row of the table. Templates take the fields of :func:`_fields`."""

    effect: Effect
    retry: Retry
    client_fault: bool  # answered to the caller as their error (400/404)
    error: type[GatewayError]  # what the caller gets when nothing else serves
    account_state: str  # §9.11, for logs and the console
    message: str  # the user-facing text: what happened, what to do
    account_note: str = ""  # stored on the account for DISABLE / NEEDS_RELOGIN / RECHECK_PROJECT
    on_repeat: Effect | None = None  # when the same verdict comes right back after the effect
    default_cooldown: float | None = None  # seconds, when Google names no delay; None: pool default
    same_account_below: float | None = None  # a delay below this: wait and retry the same account
    as_quota_from: float | None = None  # a delay at or above this: treat as QUOTA_EXHAUSTED


# §9.2: CPA's thresholds, taken as decisions: a sub-3 s wait is cheaper than
# a switch; a 5-minute "rate limit" is a quota in all but name.
SAME_ACCOUNT_BELOW = 3.0
RATE_LIMIT_AS_QUOTA_FROM = 300.0
# §9.3: a 429 without details that persists across hosts: rest for minutes, visibly.
THROTTLE_COOLDOWN = 300.0
# Margin added to a short same-account wait so the retry lands after the reset.
SHORT_WAIT_MARGIN = 0.5

# Stands for the account in texts; the pool, which knows it, puts the email in.
ACCOUNT = "<account>"
_ENABLE = "then `agctl accounts enable {account}`"

POLICIES: Mapping[Verdict, Policy] = {
    Verdict.QUOTA_EXHAUSTED: Policy(
        effect=Effect.COOL_GROUP_UNTIL_RESET,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=RateLimited,
        account_state="group exhausted until quotaResetTimeStamp",
        message=(
            "Google says the {group_name} quota of this account is used up{for_model}{reset_part}. "
            "Other accounts are tried; add accounts or wait for the reset (`agctl accounts list` shows it)."
        ),
    ),
    Verdict.RATE_LIMITED: Policy(
        effect=Effect.COOL_MODEL,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=RateLimited,
        account_state="healthy; short per-model cooldown",
        message=(
            "Google rate-limited this account{for_model}{delay_part}. Other accounts are tried; "
            "if every account is limited, retry in a moment."
        ),
        same_account_below=SAME_ACCOUNT_BELOW,
        as_quota_from=RATE_LIMIT_AS_QUOTA_FROM,
    ),
    Verdict.THROTTLED: Policy(
        effect=Effect.NONE,
        retry=Retry.NEXT_HOST,
        client_fault=False,
        error=RateLimited,
        account_state="healthy; try the other host; minutes-long cooldown if persistent",
        message=(
            "Google throttled the request (429 without details: {detail}); this is not the account's quota. "
            "The other host is tried; if it persists the account rests for a few minutes."
        ),
        on_repeat=Effect.COOL_MODEL,
        default_cooldown=THROTTLE_COOLDOWN,
    ),
    Verdict.CAPACITY: Policy(
        effect=Effect.NONE,
        retry=Retry.NEXT_HOST,
        client_fault=False,
        error=Overloaded,
        account_state="healthy; server busy",
        message=(
            "Google has no capacity for {model_or_this} right now ({detail}); this is Google's load, "
            "not your quota. Retry in a few seconds or pick another model."
        ),
    ),
    Verdict.CLIENT_VERSION: Policy(
        effect=Effect.NONE,
        retry=Retry.NONE,
        client_fault=False,
        error=UpstreamError,
        account_state="healthy; client UA outdated",
        message=(
            "Google refuses this client version ({detail}); set upstream.client_version to the current "
            "Antigravity version (agctl config set upstream.client_version X.Y.Z)."
        ),
    ),
    Verdict.VALIDATION_REQUIRED: Policy(
        effect=Effect.DISABLE,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=NoAccountAvailable,
        account_state="blocked: needs verification",
        message=(
            "Google asks to verify this account in a browser: open {url_or_app} signed in as this account, "
            "then `agctl accounts enable ID`."
        ),
        account_note="validation required: open {url_or_app} signed in as this account, " + _ENABLE,
    ),
    Verdict.TOS_VIOLATION: Policy(
        effect=Effect.DISABLE,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=NoAccountAvailable,
        account_state="disabled: appeal",
        message=(
            "Google disabled this account for a Terms of Service violation ({detail}); only an appeal "
            "helps: {appeal}. The account stays disabled; remove it or, after a successful appeal, "
            "`agctl accounts enable ID`."
        ),
        account_note="suspended by Google for a Terms of Service violation; appeal at {appeal}, " + _ENABLE,
    ),
    Verdict.SUBSCRIPTION_REQUIRED: Policy(
        effect=Effect.RECHECK_PROJECT,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=NoAccountAvailable,
        account_state="misconfigured project / wrong path",
        message=(
            "Google treated the request as a Cloud project request without a Gemini Code Assist license "
            "({detail}); the account's project is looked up again. If it persists, run "
            "`agctl accounts refresh ID` and check the account's project."
        ),
        account_note="needs setup: Google wants a Gemini Code Assist license for its project; "
        "run `agctl accounts refresh {account}`",
        on_repeat=Effect.DISABLE,
    ),
    Verdict.SERVICE_DISABLED: Policy(
        effect=Effect.NONE,
        retry=Retry.NONE,
        client_fault=False,
        error=UpstreamError,
        account_state="our header bug",
        message=(
            "Google billed the request to a Cloud project whose Cloud Code API is disabled ({detail}): "
            "the gateway sent a quota-project header it should not have; please report this bug."
        ),
    ),
    Verdict.SECURITY_POLICY: Policy(
        effect=Effect.DISABLE,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=NoAccountAvailable,
        account_state="unusable from this network",
        message=(
            "Google blocks this account from this network by an organisation security policy (VPC Service "
            "Controls: {detail}); use it from an allowed network or remove it."
        ),
        account_note="blocked by its organisation's security policy (VPC-SC) from this network; " + _ENABLE,
    ),
    Verdict.PERMISSION_DENIED: Policy(
        effect=Effect.RECHECK_PROJECT,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=NoAccountAvailable,
        account_state="permission denied (after one project re-check)",
        message=(
            "Google denied this account permission ({detail}); its project is looked up again and the "
            "account is disabled if it repeats. Check it with `agctl accounts refresh ID`."
        ),
        account_note="permission denied by Google: {detail_short}; " + _ENABLE,
        on_repeat=Effect.DISABLE,
    ),
    Verdict.NOT_FOUND: Policy(
        effect=Effect.NONE,
        retry=Retry.NONE,
        client_fault=True,
        error=ModelNotFound,
        account_state="healthy; bad model id / gate",
        message=(
            "Google does not serve {model_or_this} to this account ({detail}). Pick a model from "
            "GET /v1/models; newer models can also be gated to newer clients (upstream.client_version)."
        ),
    ),
    Verdict.CONTEXT_TOO_LONG: Policy(
        effect=Effect.NONE,
        retry=Retry.NONE,
        client_fault=True,
        error=BadRequest,
        account_state="healthy; prompt too long",
        # Keeps Google's text: clients look for "prompt is too long" to compact.
        message="The prompt is too long for {model_or_this}: {detail}. Shorten or compact the conversation.",
    ),
    Verdict.BAD_REQUEST: Policy(
        effect=Effect.NONE,
        retry=Retry.NONE,
        client_fault=True,
        error=BadRequest,
        account_state="healthy; bad request",
        message="Google rejected the request as invalid: {detail}",
    ),
    Verdict.UNAUTHENTICATED: Policy(
        effect=Effect.REFRESH_TOKEN,
        retry=Retry.SAME_ACCOUNT,
        client_fault=False,
        error=UpstreamError,
        account_state="access token refused; refresh once",
        message=(
            "Google refused this account's access token ({detail}); the gateway refreshes it and retries. "
            "If it keeps failing, sign in again with `agctl accounts add`."
        ),
        on_repeat=Effect.NEEDS_RELOGIN,
    ),
    Verdict.LOGIN_REVOKED: Policy(
        effect=Effect.NEEDS_RELOGIN,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=NoAccountAvailable,
        account_state="needs re-login",
        message="Google revoked this account's login ({detail}); sign in again with `agctl accounts add`.",
        account_note="needs re-login: Google revoked the login ({detail_short}); run `agctl accounts add`",
    ),
    Verdict.CREDITS_EXHAUSTED: Policy(
        effect=Effect.STOP_CREDITS,
        retry=Retry.NEXT_ACCOUNT,
        client_fault=False,
        error=RateLimited,
        account_state="credits exhausted; stop sending enabledCreditTypes",
        message=(
            "This account's Google One AI credits are used up; the gateway stops spending credits on it "
            "(`agctl credits off` stops credits for every account)."
        ),
        account_note="AI credits used up; credits are no longer spent on this account",
    ),
    Verdict.SERVER_ERROR: Policy(
        effect=Effect.NONE,
        retry=Retry.NEXT_HOST,
        client_fault=False,
        error=UpstreamError,
        account_state="healthy; server error",
        message="Google answered {status} ({detail}); the other host is tried. Retry shortly if it persists.",
    ),
    Verdict.REDIRECT: Policy(
        effect=Effect.NONE,
        retry=Retry.NEXT_HOST,
        client_fault=False,
        error=UpstreamError,
        account_state="healthy; redirected",
        message=(
            "Google's endpoint answered a redirect ({status}) instead of an answer: an upstream or network "
            "problem (a proxy or captive portal?), not your request. Check proxy.upstream_proxy and "
            "upstream.endpoints."
        ),
    ),
    Verdict.UNKNOWN: Policy(
        effect=Effect.NONE,
        retry=Retry.NONE,
        client_fault=False,
        error=UpstreamError,
        account_state="unknown",
        message="Google answered {status}: {detail}",
    ),
}


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True, slots=True)
class Classified:
    """A verdict with its policy and what follows from this error's numbers."""

    verdict: Verdict
    policy: Policy
    error: GoogleError
    effect: Effect  # the policy's, unless a threshold changed it
    retry: Retry  # likewise
    # Seconds to rest (COOL_*, or on_repeat's COOL_MODEL), to wait (SAME_ACCOUNT_AFTER_WAIT), or
    # Google's hint (Retry-After for the caller); None: Google said nothing, the pool's default applies.
    cooldown: float | None
    until: float | None  # epoch the cooldown ends, None if unknown
    group: str  # the quota group of the error's model ("gemini" | "3p"), "" if unknown
    message: str  # for the person: what happened, what to do
    account_note: str  # the text to store on the account ("" if the effect stores none)

    @property
    def client_fault(self) -> bool:
        return self.policy.client_fault

    def gateway_error(self) -> GatewayError:
        """The error to answer the caller with when nothing else serves."""
        retry_after = self.cooldown if self.policy.error in (RateLimited, Overloaded) else None
        if (
            self.effect is Effect.NONE
            and self.policy.on_repeat is not None
            and self.error.retry_delay is None
        ):
            # The default cooldown is the rest a repeat earns (§9.3: the pool
            # applies it), not a wait this one transient answer asks for.
            retry_after = None
        return self.policy.error(self.message, retry_after=retry_after, upstream_status=self.error.status)


# ErrorInfo.reason -> verdict: the first and strongest signal (§9.2).
REASONS: Mapping[str, Verdict] = {
    "QUOTA_EXHAUSTED": Verdict.QUOTA_EXHAUSTED,
    "RATE_LIMIT_EXCEEDED": Verdict.RATE_LIMITED,
    "MODEL_CAPACITY_EXHAUSTED": Verdict.CAPACITY,
    "VALIDATION_REQUIRED": Verdict.VALIDATION_REQUIRED,
    "TOS_VIOLATION": Verdict.TOS_VIOLATION,
    "SUBSCRIPTION_REQUIRED": Verdict.SUBSCRIPTION_REQUIRED,
    "SERVICE_DISABLED": Verdict.SERVICE_DISABLED,
    "SECURITY_POLICY_VIOLATED": Verdict.SECURITY_POLICY,
    "INSUFFICIENT_G1_CREDITS_BALANCE": Verdict.CREDITS_EXHAUSTED,
}

# OAuth token-endpoint errors that mean the login is gone (§9.9).
REVOKED_LOGIN = frozenset({"invalid_grant", "unauthorized_client", "invalid_client"})

# §2.2: Google's refusals of an old client version. Two of them arrived as a
# normal 200 model answer (assistant text with 0 tokens), so the answer path
# checks its text with :func:`refuses_client_version` too.
CLIENT_VERSION_TEXTS = (
    "version of antigravity is no longer supported",
    "version of antigravity is out of date",
)


# How those refusals begin (§2.2's texts), for a stream that splits one over
# several events: while an answer's text so far is a beginning of one of
# these, it cannot be told from a refusal yet.
CLIENT_VERSION_OPENINGS = (
    "this version of antigravity is no longer supported",
    "this version of antigravity is out of date",
    "your current version of antigravity is out of date",
    "your version of antigravity is out of date",
)


def refuses_client_version(text: str) -> bool:
    """Whether a model answer's text is Google refusing our client version (§2.2)."""
    low = _SPACE.sub(" ", text[:2000]).lower()
    return any(needle in low for needle in CLIENT_VERSION_TEXTS)


def may_become_version_refusal(text: str) -> bool:
    """Whether the text of an answer's first stream events is the beginning
    of a client-version refusal, so more of it must be read to decide. A
    normal answer stops being one by its first differing character."""
    low = _SPACE.sub(" ", text[:200]).lower().lstrip()
    return bool(low) and any(opening.startswith(low) for opening in CLIENT_VERSION_OPENINGS)


# (needle in the lower-cased, whitespace-collapsed message, statuses it applies to or None for
# any, verdict). First match wins; order matters.
TEXTS: tuple[tuple[str, frozenset[int] | None, Verdict], ...] = (
    # §2.2: both "no longer supported" texts, and "out of date" (seen as a 200 answer).
    *((needle, None, Verdict.CLIENT_VERSION) for needle in CLIENT_VERSION_TEXTS),
    # §9.6b: the older form has no details and breaks "Terms of\n\t\tService".
    ("disabled in this account for violation of terms of service", None, Verdict.TOS_VIOLATION),
    # §9.6a: current and older texts.
    ("verify your account", frozenset({403}), Verdict.VALIDATION_REQUIRED),
    ("further action is required", frozenset({403}), Verdict.VALIDATION_REQUIRED),
    ("lack a gemini code assist license", None, Verdict.SUBSCRIPTION_REQUIRED),
    ("cloud code private api has not been used in project", None, Verdict.SERVICE_DISABLED),
    # §9.4 and §1.2: capacity, by text when the details are missing.
    ("no capacity available", frozenset({429, 503, 529}), Verdict.CAPACITY),
    # §9.1: the short CPA form {"message": "QUOTA_EXHAUSTED"} and the weekly/tier text.
    ("quota_exhausted", frozenset({429}), Verdict.QUOTA_EXHAUSTED),
    ("individual quota reached", frozenset({429}), Verdict.QUOTA_EXHAUSTED),
    # §9.2: this text is shared by quota and rate-limit bodies: without a
    # reason it is a rate limit, promoted to quota by a long delay.
    ("exhausted your capacity on this model", frozenset({429}), Verdict.RATE_LIMITED),
    # §9.8 / §6.1: the prompt's size (Anthropic and Gemini wording).
    ("prompt is too long", frozenset({400, 413}), Verdict.CONTEXT_TOO_LONG),
    ("input token count", frozenset({400, 413}), Verdict.CONTEXT_TOO_LONG),
    ("exceeds the maximum number of tokens", frozenset({400, 413}), Verdict.CONTEXT_TOO_LONG),
)

# A status the HTTP layer did not give (an error event inside a 200 stream):
# the canonical code stands in.
CANONICAL_STATUS: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def _effective_status(err: GoogleError) -> int:
    if 300 <= err.status <= 599:
        return err.status
    return CANONICAL_STATUS.get(err.google_status.upper(), err.status)


def _by_status(status: int, err: GoogleError) -> Verdict:
    if 300 <= status < 400:
        return Verdict.REDIRECT
    if status in (400, 413, 422):
        return Verdict.BAD_REQUEST
    if status == 401:
        return Verdict.UNAUTHENTICATED
    if status == 403:
        return Verdict.PERMISSION_DENIED
    if status == 404:
        return Verdict.NOT_FOUND
    if status == 429:
        # §9.3 vs §9.2: a 429 that names a delay is a per-account rate limit;
        # one that names nothing is the host's or the client's throttle.
        return (
            Verdict.RATE_LIMITED
            if err.retry_delay is not None and err.delay_source != "header"
            else (Verdict.THROTTLED)
        )
    if status == 408 or 500 <= status <= 599:
        return Verdict.SERVER_ERROR
    return Verdict.UNKNOWN


def verdict_of(err: GoogleError) -> Verdict:
    """The verdict alone: reason, then text, then status."""
    if err.reason in REASONS:
        return REASONS[err.reason]
    status = _effective_status(err)
    if err.oauth_error in REVOKED_LOGIN:
        return Verdict.LOGIN_REVOKED
    text = _SPACE.sub(" ", f"{err.message} {err.anthropic_message}").lower()
    for needle, statuses, verdict in TEXTS:
        if needle in text and (statuses is None or status in statuses):
            return verdict
    return _by_status(status, err)


def _when(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return "later"


def _human(seconds: float) -> str:
    s = int(round(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    if h:
        parts.append(f"{h}h")
    if m and not d:
        parts.append(f"{m}m")
    if s and not d and not h:
        parts.append(f"{s}s")
    return "".join(parts) or "0s"


_GROUP_NAMES = {"gemini": "Gemini", "3p": "Claude/GPT"}


def _fields(
    err: GoogleError, model: str, group: str, cooldown: float | None, until: float | None
) -> dict[str, str]:
    """The names a template may use."""
    detail = _clip(err.detail, DETAIL_LIMIT)
    url = err.validation_url
    return {
        "status": str(err.status),
        "google_status": err.google_status,
        "reason": err.reason,
        "detail": detail,
        "detail_short": _clip(err.detail, 120),
        "model": model,
        "model_or_this": model or "this model",
        "for_model": f" (for {model})" if model else "",
        "group_name": _GROUP_NAMES.get(group, "model group's"),
        "reset_part": f" until {_when(until)}" if until is not None else "",
        "delay_part": f" for {_human(cooldown)}" if cooldown is not None else "",
        "url_or_app": url or "the Antigravity app (or accounts.google.com)",
        "appeal": err.appeal_url or "the appeal form Google links in the Antigravity app",
        "account": ACCOUNT,
    }


def classify(err: GoogleError, *, now: float | None = None, model: str = "") -> Classified:
    """The verdict, policy and numbers for ``err``. ``model`` is the id the
    request asked for, used when the error names none; ``now`` defaults to
    the clock (only to turn reset times into cooldowns). Never raises."""
    now = time.time() if now is None else now
    verdict = verdict_of(err)
    row = POLICIES[verdict]
    delay = err.retry_delay
    if (
        verdict is Verdict.RATE_LIMITED
        and row.as_quota_from is not None
        and delay is not None
        and delay >= row.as_quota_from
    ):
        verdict = Verdict.QUOTA_EXHAUSTED  # §9.2 decision: a long rate limit is a quota
    policy = POLICIES[verdict]
    effect, retry = policy.effect, policy.retry
    cooldown: float | None = None
    until: float | None = None
    if verdict is Verdict.QUOTA_EXHAUSTED:
        # The reset stamp is exact; the delay is relative to when Google wrote it.
        if err.reset_at is not None and err.reset_at > now:
            until = err.reset_at
        elif delay is not None:
            until = now + delay
        cooldown = None if until is None else min(until - now, MAX_DELAY)
    elif verdict is Verdict.RATE_LIMITED:
        cooldown = delay
        if delay is not None and row.same_account_below is not None and delay < row.same_account_below:
            retry = Retry.SAME_ACCOUNT_AFTER_WAIT
            cooldown = delay + SHORT_WAIT_MARGIN
        until = None if cooldown is None else now + cooldown
    elif delay is not None:
        cooldown = delay  # a hint only: this verdict rests nothing by itself
        until = now + cooldown
    elif policy.default_cooldown is not None:
        cooldown = policy.default_cooldown
        until = now + cooldown
    used_model = err.model or model
    group = group_of(used_model) if used_model else ""
    fields = _fields(err, used_model, group, cooldown, until)
    message = policy.message.format_map(fields)
    note = policy.account_note.format_map(fields) if policy.account_note else ""
    return Classified(
        verdict=verdict,
        policy=policy,
        error=err,
        effect=effect,
        retry=retry,
        cooldown=cooldown,
        until=until,
        group=group,
        message=redact(message),
        account_note=redact(note),
    )
