"""The one exception tree of antigravity.

Every layer (config, accounts, upstream, dispatch, protocols, admin) raises
from here, and each client protocol maps these to its own error shape in
``daemon.protocols.error_shapes``. The admin API maps them to stable error codes
that ``agctl`` turns into exit codes.

    GatewayError                  base: status, kind, message, retry_after
    ├── BadRequest                400  the caller's request is wrong
    │   ├── ConfigError           400  a config key/value is wrong
    │   ├── ContextTooLong        400  the prompt is over the model's input limit
    │   │                              (each protocol's own context-overflow shape)
    │   └── UnreadableCompaction  400  a compaction item this gateway cannot open
    ├── AuthenticationError       401  missing/wrong client key
    ├── PermissionDenied          403
    ├── NotFound                  404
    │   └── ModelNotFound         404  no upstream model for that name
    ├── PayloadTooLarge           413
    ├── Refused                   the listener's limits (issue 17):
    │   ├── RequestTimeout        408  head or body too slow
    │   ├── UnsupportedMediaType  415  not JSON on a model route
    │   ├── MisdirectedRequest    421  a Host the proxy does not answer to
    │   ├── CrossSiteRequest      403  a web page of another origin
    │   ├── HeadersTooLarge       431  request head too big / too many headers
    │   └── TooManyConnections    503  the connection cap
    ├── Conflict                  409  e.g. proxy already running
    ├── RateLimited               429  upstream quota / rate limit
    ├── NoAccountAvailable        503  nothing in the pool can serve
    ├── UpstreamError             502  upstream answered badly
    │   ├── UpstreamTimeout       504
    │   └── UpstreamUnavailable   503  network error / all endpoints down
    ├── Overloaded                529  server-side capacity
    └── InternalError             500  a bug: never leaks a traceback

Messages are for people: they say what happened and what to do next. They
must never hold tokens or keys (use ``redact``).
"""

from __future__ import annotations

import re
from typing import ClassVar

_SECRET_RE = re.compile(
    r"(ya29\.[A-Za-z0-9_\-]{0,4})[A-Za-z0-9_\-\.]+"  # Google access tokens
    r"|(1//[A-Za-z0-9_\-]{0,2})[A-Za-z0-9_\-]+"  # Google refresh tokens
    r"|(sk-[A-Za-z0-9]{0,2})[A-Za-z0-9_\-]{6,}"  # proxy / provider keys
    r"|(AIza[A-Za-z0-9_\-]{0,2})[A-Za-z0-9_\-]{20,}"  # Google API keys (GEMINI_API_KEY)
)


def redact(text: str) -> str:
    """Hide tokens and keys in ``text``, keeping a short recognisable prefix."""

    def _sub(m: re.Match[str]) -> str:
        prefix = next(g for g in m.groups() if g is not None)
        return prefix + "…"

    return _SECRET_RE.sub(_sub, text)


class GatewayError(Exception):
    status: ClassVar[int] = 500
    kind: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        param: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        self.message = redact(message)
        self.retry_after = retry_after
        self.param = param
        self.upstream_status = upstream_status
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "message": self.message}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class BadRequest(GatewayError):
    status = 400
    kind = "invalid_request"


class ConfigError(BadRequest):
    kind = "config"


_COUNTS_RE = re.compile(r"\d[\d,]*")


def token_counts(text: str) -> tuple[int | None, int | None]:
    """(prompt tokens, limit) from an upstream "too long" text: the first two
    numbers of at least three digits, in that order, as both wordings give
    them ("prompt is too long: 202007 tokens > 200000 maximum", "The input
    token count (1234567) exceeds the maximum number of tokens allowed
    (1048576)"); (None, None) when the text holds no such pair."""
    numbers = [int(n.replace(",", "")) for n in _COUNTS_RE.findall(text)]
    numbers = [n for n in numbers if n >= 100]
    if len(numbers) < 2:
        return None, None
    return numbers[0], numbers[1]


class ContextTooLong(BadRequest):
    """The prompt is larger than the model takes. Clients compact the
    conversation on this error, each recognising its own shape
    (``daemon.proxy.error_shapes``): OpenAI's ``context_length_exceeded`` code,
    Anthropic's "prompt is too long: N tokens > M maximum", Gemini's
    INVALID_ARGUMENT with the token counts. Never an account's fault.
    ``tokens`` / ``limit``: the counts when known."""

    kind = "context_length_exceeded"

    def __init__(
        self,
        message: str,
        *,
        tokens: int | None = None,
        limit: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, param=param, upstream_status=upstream_status)
        self.tokens = tokens
        self.limit = limit

    def anthropic_text(self) -> str:
        """Anthropic's wording: Claude Code compacts on "prompt is too long"."""
        if self.tokens is not None and self.limit is not None:
            return f"prompt is too long: {self.tokens} tokens > {self.limit} maximum"
        return f"prompt is too long: {self.message}"

    def gemini_text(self) -> str:
        """Google's wording of the same error, with the counts when known."""
        if self.tokens is not None and self.limit is not None:
            return (
                f"The input token count ({self.tokens}) exceeds the maximum number of tokens "
                f"allowed ({self.limit})."
            )
        return self.message


class UnreadableCompaction(BadRequest):
    """A compaction item's ``encrypted_content`` this gateway did not seal
    with its key, or that was altered: refused, never silently dropped (the
    summary of the earlier turns would be lost without anyone knowing)."""

    kind = "invalid_encrypted_content"


class AuthenticationError(GatewayError):
    status = 401
    kind = "authentication"


class PermissionDenied(GatewayError):
    status = 403
    kind = "permission"


class NotFound(GatewayError):
    status = 404
    kind = "not_found"


class ModelNotFound(NotFound):
    kind = "model_not_found"


class Conflict(GatewayError):
    status = 409
    kind = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "too_large"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limited"


class NoAccountAvailable(GatewayError):
    status = 503
    kind = "no_account"


class UpstreamError(GatewayError):
    status = 502
    kind = "upstream"


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status = 503
    kind = "upstream_unavailable"


class Overloaded(GatewayError):
    status = 529
    kind = "overloaded"


class InternalError(GatewayError):
    status = 500
    kind = "internal"


class Refused(GatewayError):
    """A limit of the proxy listener: the message names it and its config key."""

    status = 400
    kind = "refused"


class RequestTimeout(Refused):
    status = 408
    kind = "request_timeout"


class UnsupportedMediaType(Refused):
    status = 415
    kind = "unsupported_media_type"


class MisdirectedRequest(Refused):
    status = 421
    kind = "misdirected_request"


class CrossSiteRequest(Refused):
    status = 403
    kind = "cross_site"


class HeadersTooLarge(Refused):
    status = 431
    kind = "headers_too_large"


class TooManyConnections(Refused):
    status = 503
    kind = "too_many_connections"


KINDS: dict[str, type[GatewayError]] = {
    cls.kind: cls
    for cls in (
        BadRequest,
        ConfigError,
        ContextTooLong,
        UnreadableCompaction,
        AuthenticationError,
        PermissionDenied,
        NotFound,
        ModelNotFound,
        Conflict,
        PayloadTooLarge,
        RateLimited,
        NoAccountAvailable,
        UpstreamError,
        UpstreamTimeout,
        UpstreamUnavailable,
        Overloaded,
        InternalError,
        Refused,
        RequestTimeout,
        UnsupportedMediaType,
        MisdirectedRequest,
        CrossSiteRequest,
        HeadersTooLarge,
        TooManyConnections,
    )
}


def from_dict(data: dict[str, object]) -> GatewayError:
    """Rebuild an error sent over the admin API (used by agctl)."""
    cls = KINDS.get(str(data.get("kind")), GatewayError)
    ra = data.get("retry_after")
    return cls(str(data.get("message", "")), retry_after=float(ra) if isinstance(ra, int | float) else None)
