"""GatewayError -> each client protocol's own error body.

OpenAI:    {"error": {"message", "type", "param", "code"}}
Anthropic: {"type": "error", "error": {"type", "message"}}
Gemini:    {"error": {"code", "message", "status"}}
"""

from __future__ import annotations

from typing import Any, Literal

from daemon.errors import GatewayError

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


def anthropic_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_type(err), "message": err.message}}


def gemini_body(err: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "code": err.status,
            "message": err.message,
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
