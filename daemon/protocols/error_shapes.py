"""GatewayError -> each client protocol's own error body.

OpenAI:    {"error": {"message", "type", "param", "code"}}
Anthropic: {"type": "error", "error": {"type", "message"}}
Gemini:    {"error": {"code", "message", "status"}}

A prompt over the model's limit (``ContextTooLong``) is answered in the
shape each client compacts on: OpenAI code ``context_length_exceeded``
(Codex and the OpenAI SDKs key on the code); Anthropic 400
``invalid_request_error`` whose message begins "prompt is too long" (Claude
Code matches that text; the counts follow as the Anthropic API words them,
"prompt is too long: 202007 tokens > 200000 maximum", UPSTREAM.md §4.1);
Gemini 400 INVALID_ARGUMENT "The input token count (N) exceeds the maximum
number of tokens allowed (M)." (Google's own wording of it).
"""

from __future__ import annotations

from typing import Any, Literal

from daemon.errors import ContextTooLong, GatewayError

Protocol = Literal["openai", "anthropic", "gemini"]

_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODE = {
    "model_not_found": "model_not_found",
    "authentication": "invalid_api_key",
    "rate_limited": "rate_limit_exceeded",
    "no_account": "no_account_available",
    "too_large": "request_too_large",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    421: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    421: "PERMISSION_DENIED",
    431: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}


def anthropic_type(err: GatewayError) -> str:
    if err.kind == "no_account":
        return "overloaded_error" if err.retry_after is None else "rate_limit_error"
    return _ANTHROPIC_TYPE.get(err.status, "api_error")


def openai_body(err: GatewayError) -> dict[str, Any]:
    typ = _OPENAI_TYPE.get(err.status, "server_error" if err.status >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": err.message,
            "type": typ,
            "param": err.param,
            "code": _OPENAI_CODE.get(err.kind, err.kind),
        }
    }


def anthropic_message(err: GatewayError) -> str:
    return err.anthropic_text() if isinstance(err, ContextTooLong) else err.message


def gemini_message(err: GatewayError) -> str:
    return err.gemini_text() if isinstance(err, ContextTooLong) else err.message


def anthropic_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_type(err), "message": anthropic_message(err)}}


def gemini_body(err: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "code": err.status,
            "message": gemini_message(err),
            "status": _GOOGLE_STATUS.get(err.status, "INTERNAL"),
        }
    }


def body_for(protocol: Protocol, err: GatewayError) -> dict[str, Any]:
    if protocol == "anthropic":
        return anthropic_body(err)
    if protocol == "gemini":
        return gemini_body(err)
    return openai_body(err)


def protocol_for_path(path: str) -> Protocol:
    if path.startswith(("/v1/messages", "/api/")):
        return "anthropic"
    if path.startswith(("/v1beta", "/v1alpha")):
        return "gemini"
    if path.startswith("/v1/models/") and ":" in path:
        return "gemini"  # google-genai with api_version v1
    return "openai"


def headers_for(err: GatewayError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, int(err.retry_after + 0.999)))
    if err.status == 401:
        headers["www-authenticate"] = 'Bearer realm="antigravity"'
    return headers
