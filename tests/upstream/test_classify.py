"""The error classifier (daemon.upstream.classify): one row per error body of
UPSTREAM.md §9 (copied verbatim where the sheet has one), the policy table,
the retry-delay order (§9.10), and garbage that must never raise."""

# The upstream bodies below are copied verbatim from UPSTREAM.md, long lines included.
# ruff: noqa: E501

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from daemon.errors import (
    BadRequest,
    ModelNotFound,
    NoAccountAvailable,
    Overloaded,
    RateLimited,
    UpstreamError,
)
from daemon.upstream.classify import (
    POLICIES,
    SHORT_WAIT_MARGIN,
    Effect,
    GoogleError,
    Retry,
    Verdict,
    classify,
    may_become_version_refusal,
    parse_google_error,
    refuses_client_version,
)

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "antigravity-hypothesis")  # not in the checkout


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


NOW = ts("2026-01-11T08:42:18Z")  # one hour before the §9.1 reset stamp

# --------------------------------------------------------------------------- bodies from UPSTREAM.md

# §9.1, first text [verbatim]
QUOTA_JAN = """{"error": {"code": 429,
  "message": "You have exhausted your capacity on this model. Your quota will reset after 2h37m22s.",
  "status": "RESOURCE_EXHAUSTED",
  "details": [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED",
     "domain": "cloudcode-pa.googleapis.com",
     "metadata": {"quotaResetDelay": "2h37m22.776060443s", "quotaResetTimeStamp": "2026-01-11T09:42:18Z",
                  "uiMessage": "true", "model": "claude-sonnet-4-5-thinking"}},
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9442.776060443s"}]}}"""


def quota_body(message: str, delay: str, retry: str, model: str, stamp: str = "2026-01-11T09:42:18Z") -> str:
    """§9.1: "Three message texts, same structure"."""
    return json.dumps(
        {
            "error": {
                "code": 429,
                "message": message,
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "QUOTA_EXHAUSTED",
                        "domain": "cloudcode-pa.googleapis.com",
                        "metadata": {
                            "quotaResetDelay": delay,
                            "quotaResetTimeStamp": stamp,
                            "uiMessage": "true",
                            "model": model,
                        },
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry},
                ],
            }
        }
    )


# §9.1, second and third texts
QUOTA_25H = quota_body(
    "You have exhausted your capacity on this model. Your quota will reset after 25h20m26s.",
    "25h20m26.1s",
    "91226.1s",
    "claude-opus-4-6-thinking",
)
QUOTA_WEEKLY = quota_body(
    "Individual quota reached. Contact your administrator to enable overages. Resets in 71h15m27s.",
    "71h15m27.791609974s",
    "256527.791609974s",
    "gpt-oss-120b-medium",
)
QUOTA_SHORT = """{"error":{"status":"RESOURCE_EXHAUSTED","message":"QUOTA_EXHAUSTED"}}"""  # §9.1 [verbatim]

# §9.2 [verbatim]
RATE_LIMIT = """{"error": {"code": 429,
  "message": "You have exhausted your capacity on this model. Your quota will reset after 0s.",
  "status": "RESOURCE_EXHAUSTED",
  "details": [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
     "domain": "cloudcode-pa.googleapis.com",
     "metadata": {"model": "claude-opus-4-6-thinking", "quotaResetDelay": "479.417207ms",
                  "quotaResetTimeStamp": "2026-04-20T09:19:49Z", "uiMessage": "true"}},
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.479417207s"}]}}"""


def rate_limit(retry: str) -> str:
    return RATE_LIMIT.replace('"0.479417207s"', json.dumps(retry)).replace(
        '"479.417207ms"', json.dumps(retry)
    )


# §9.3 [verbatim]
THROTTLE = """{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"""

# §9.4 [verbatim]
CAPACITY = """{"error": {"code": 503,
  "message": "No capacity available for model gemini-3.1-flash-image on the server",
  "status": "UNAVAILABLE",
  "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "MODEL_CAPACITY_EXHAUSTED",
               "domain": "cloudcode-pa.googleapis.com", "metadata": {"model": "gemini-3.1-flash-image"}}]}}"""
CAPACITY_TEXT_ONLY = (
    '{"error": {"code": 503, "message": "No capacity available for model gemini-3-pro-high on the server", '
    '"status": "UNAVAILABLE"}}'
)

# §2.2 version texts [verbatim texts; the 503 JSON shape is the sheet's "likely shape"]
VERSION_UPGRADE = (
    "This version of Antigravity is no longer supported. Please upgrade to receive the latest features."
)
VERSION_UPDATE = (
    "This version of Antigravity is no longer supported. Please update to receive the latest features!"
)
VERSION_OUT_OF_DATE = (
    "Your current version of Antigravity is out of date. Please visit https://antigravity.google/download "
    "to download and install the latest version."
)


def google(code: int, message: str, status: str) -> str:
    return json.dumps({"error": {"code": code, "message": message, "status": status}})


# §9.6a, current text [verbatim but for the validation_url placeholder]
VALIDATION_URL = (
    "https://accounts.google.com/signin/continue?sarp=1&scc=1&continue=https://developers.google.com/"
    "gemini-code-assist/auth/auth_success_gemini&plt=<opaque>&flowName=GlifWebSignIn&authuser"
)
VALIDATION = """{"error": {"code": 403, "message": "Verify your account to continue.", "status": "PERMISSION_DENIED",
  "details": [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "VALIDATION_REQUIRED",
     "domain": "cloudcode-pa.googleapis.com",
     "metadata": {
       "validation_error_message": "Verify your account to continue.",
       "validation_url_link_text": "Verify your account",
       "validation_url": "https://accounts.google.com/signin/continue?sarp=1&scc=1&continue=https://developers.google.com/gemini-code-assist/auth/auth_success_gemini&plt=<opaque>&flowName=GlifWebSignIn&authuser",
       "validation_learn_more_link_text": "Learn more",
       "validation_learn_more_url": "https://support.google.com/accounts?p=al_alert"}},
    {"@type": "type.googleapis.com/google.rpc.Help",
     "links": [{"description": "Verify your account", "url": "<same validation_url>"},
               {"description": "Learn more", "url": "https://support.google.com/accounts?p=al_alert"}]}]}}"""
# §9.6a, older text [verbatim message]
VALIDATION_OLD_MESSAGE = (
    "To continue, verify your account at\n\nhttps://accounts.google.com/signin/continue?…\n\n"
    "Learn more\n\nhttps://support.google.com/accounts?p=al_alert\n"
)
VALIDATION_OLD = json.dumps(
    {
        "error": {
            "code": 403,
            "message": VALIDATION_OLD_MESSAGE,
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "VALIDATION_REQUIRED",
                    "domain": "cloudcode-pa.googleapis.com",
                    "metadata": {"validation_message_description": "To continue, verify your account at"},
                }
            ],
        }
    }
)

# §9.6b [verbatim]
TOS = """{"error": {"code": 403,
  "message": "This service has been disabled in this account for violation of Terms of Service. Please submit an appeal to continue using this product.",
  "status": "PERMISSION_DENIED",
  "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TOS_VIOLATION",
               "domain": "cloudcode-pa.googleapis.com",
               "metadata": {"uiMessage": "true", "appeal_url_link_text": "Submit Appeal",
                            "appeal_url": "https://forms.gle/hGzM9MEUv2azZsrb9"}}]}}"""
TOS_OLD_MESSAGE = (
    "This service has been disabled in this account for violation of Terms of\n\t\tService. "
    "If you believe this is an error, contact gemini-code-assist-user-feedback@google.com."
)

# §9.6c [verbatim]
SUBSCRIPTION = """{"error": {"code": 403,
  "message": "You are currently configured to use a Google Cloud Project but lack a Gemini Code Assist license. Please contact your administrator to request a license. (#3501)",
  "status": "PERMISSION_DENIED",
  "details": [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SUBSCRIPTION_REQUIRED",
     "domain": "cloudaicompanion.googleapis.com"},
    {"@type": "type.googleapis.com/google.rpc.Help",
     "links": [{"description": "Learn more", "url": "https://cloud.google.com/gemini/docs/codeassist/request-license"}]}]}}"""

# §9.6d [verbatim]
SERVICE_DISABLED = """{"error": {"code": 403,
  "message": "Cloud Code Private API has not been used in project <p> before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/cloudcode-pa.googleapis.com/overview?project=<p> then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.",
  "status": "PERMISSION_DENIED",
  "details": [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com",
     "metadata": {"activationUrl": "https://console.developers.google.com/apis/api/cloudcode-pa.googleapis.com/overview?project=<p>",
                  "serviceTitle": "Cloud Code Private API", "service": "cloudcode-pa.googleapis.com",
                  "consumer": "projects/<p>", "containerInfo": "<p>"}},
    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "<same text>"}]}}"""

# §9.6f: the sheet gives the reason only; the rest is Google's usual shape.
VPC_SC = json.dumps(
    {
        "error": {
            "code": 403,
            "message": "Request is prohibited by organization's policy.",
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SECURITY_POLICY_VIOLATED",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
)

# §9.7 [verbatim], both variants
NOT_FOUND = (
    """{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}"""
)
NOT_FOUND_OLD = json.dumps(
    {
        "error": {
            "code": 404,
            "errors": [
                {"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}
            ],
            "status": "NOT_FOUND",
        }
    }
)

# §9.8 [verbatim]
BAD_REQUEST = (
    """{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"""
)

# §4.2 [verbatim]
METADATA_400 = """{"error": {"code": 400,
  "message": "Invalid JSON payload received. Unknown name \\"metadata\\": Cannot find field.",
  "status": "INVALID_ARGUMENT",
  "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
    "fieldViolations": [{"description": "Invalid JSON payload received. Unknown name \\"metadata\\": Cannot find field."}]}]}}"""

# §6.1 [verbatim]
ANTHROPIC_IN_MESSAGE = """{"error": {"code": 400,
  "message": "{\\"type\\":\\"error\\",\\"error\\":{\\"type\\":\\"invalid_request_error\\",\\"message\\":\\"<text>\\"},\\"request_id\\":\\"req_vrtx_011CWV6azxnzHaAwrN5ySWyv\\"}",
  "status": "INVALID_ARGUMENT"}}"""


def anthropic_400(text: str) -> str:
    inner = {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": text},
        "request_id": "req_vrtx_011CWV6azxnzHaAwrN5ySWyv",
    }
    return google(400, json.dumps(inner, separators=(",", ":")), "INVALID_ARGUMENT")


# §6.4 [verbatim texts]
THINKING_FIRST = (
    "messages.5.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When "
    "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
    "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
    "previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
THINKING_BUDGET = (
    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
)

# §4.4: only the reason is known (UNVERIFIED rest); Google's usual shape around it.
CREDITS = json.dumps(
    {
        "error": {
            "code": 429,
            "message": "Insufficient credits.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "INSUFFICIENT_G1_CREDITS_BALANCE",
                    "domain": "cloudcode-pa.googleapis.com",
                }
            ],
        }
    }
)

# §9.9: standard Google UNAUTHENTICATED (exact text UNVERIFIED)
UNAUTH = google(
    401,
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential.",
    "UNAUTHENTICATED",
)
INVALID_GRANT = """{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}"""

HTML_502 = (
    b"<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Error 502 (Server Error)!!1</title>"
    b"<p><b>502.</b> That\xe2\x80\x99s an error.</p></html>"
)


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    name: str
    status: int
    body: str | bytes
    verdict: Verdict
    effect: Effect
    retry: Retry
    client_fault: bool = False
    checks: dict[str, object] = field(default_factory=dict)  # GoogleError attribute -> value
    headers: dict[str, str] | None = None
    message_has: tuple[str, ...] = ()


ROWS = [
    Row(
        "9.1 quota, first text",
        429,
        QUOTA_JAN,
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
        checks={
            "reason": "QUOTA_EXHAUSTED",
            "google_status": "RESOURCE_EXHAUSTED",
            "domain": "cloudcode-pa.googleapis.com",
            "model": "claude-sonnet-4-5-thinking",
            "reset_at": ts("2026-01-11T09:42:18Z"),
            "retry_delay": 9442.776060443,
            "delay_source": "retry_info",
        },
        message_has=("Claude/GPT", "2026-01-11 09:42 UTC", "claude-sonnet-4-5-thinking"),
    ),
    Row(
        "9.1 quota, 25h text",
        429,
        QUOTA_25H,
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
        checks={"model": "claude-opus-4-6-thinking", "retry_delay": 91226.1},
    ),
    Row(
        "9.1 quota, weekly/tier text",
        429,
        QUOTA_WEEKLY,
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
        checks={"model": "gpt-oss-120b-medium", "retry_delay": 256527.791609974},
    ),
    Row(
        "9.1 quota, short form without details",
        429,
        QUOTA_SHORT,
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
        checks={"reason": "", "google_status": "RESOURCE_EXHAUSTED", "retry_delay": None},
    ),
    Row(
        "9.1 quota, short form inside a 200 stream",
        200,
        QUOTA_SHORT,
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
    ),
    Row(
        "9.1 tier text without details: quota, delay from the message",
        429,
        google(
            429,
            "Individual quota reached. Contact your administrator to enable overages. Resets in 71h15m27s.",
            "RESOURCE_EXHAUSTED",
        ),
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
        checks={"retry_delay": 71 * 3600 + 15 * 60 + 27.0, "delay_source": "message"},
    ),
    Row(
        "9.2 rate limit: sub-3 s delay waits and retries the same account",
        429,
        RATE_LIMIT,
        Verdict.RATE_LIMITED,
        Effect.COOL_MODEL,
        Retry.SAME_ACCOUNT_AFTER_WAIT,
        checks={"reason": "RATE_LIMIT_EXCEEDED", "retry_delay": 0.479417207, "model": "claude-opus-4-6-thinking"},
    ),
    Row(
        "9.2 rate limit: 42 s cools the model and moves on",
        429,
        rate_limit("42s"),
        Verdict.RATE_LIMITED,
        Effect.COOL_MODEL,
        Retry.NEXT_ACCOUNT,
        checks={"retry_delay": 42.0},
        message_has=("42s",),
    ),
    Row(
        "9.2 rate limit: >= 5 min is a quota",
        429,
        rate_limit("300s"),
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
    ),
    Row(
        "9.2 shared text without a reason: a rate limit by its delay",
        429,
        google(
            429,
            "You have exhausted your capacity on this model. Your quota will reset after 12s.",
            "RESOURCE_EXHAUSTED",
        ),
        Verdict.RATE_LIMITED,
        Effect.COOL_MODEL,
        Retry.NEXT_ACCOUNT,
        checks={"retry_delay": 12.0, "delay_source": "message"},
    ),
    Row(
        "9.2 shared text without a reason, 1h43m56s: a quota",
        429,
        google(
            429,
            "You have exhausted your capacity on this model. Your quota will reset after 1h43m56s.",
            "RESOURCE_EXHAUSTED",
        ),
        Verdict.QUOTA_EXHAUSTED,
        Effect.COOL_GROUP_UNTIL_RESET,
        Retry.NEXT_ACCOUNT,
        checks={"retry_delay": 6236.0},
    ),
    Row(
        "9.3 429 without details",
        429,
        THROTTLE,
        Verdict.THROTTLED,
        Effect.NONE,
        Retry.NEXT_HOST,
        checks={"retry_delay": None, "reason": ""},
        message_has=("not the account's quota",),
    ),
    Row(
        "9.4 capacity as 503",
        503,
        CAPACITY,
        Verdict.CAPACITY,
        Effect.NONE,
        Retry.NEXT_HOST,
        checks={"reason": "MODEL_CAPACITY_EXHAUSTED", "model": "gemini-3.1-flash-image"},
        message_has=("gemini-3.1-flash-image",),
    ),
    Row(
        "9.4 capacity as 429",
        429,
        CAPACITY.replace('"code": 503', '"code": 429').replace("UNAVAILABLE", "RESOURCE_EXHAUSTED"),
        Verdict.CAPACITY,
        Effect.NONE,
        Retry.NEXT_HOST,
    ),
    Row(
        "9.4 capacity by text alone",
        503,
        CAPACITY_TEXT_ONLY,
        Verdict.CAPACITY,
        Effect.NONE,
        Retry.NEXT_HOST,
    ),
    Row(
        "2.2 version, 503 upgrade text",
        503,
        google(503, VERSION_UPGRADE, "UNAVAILABLE"),
        Verdict.CLIENT_VERSION,
        Effect.NONE,
        Retry.NONE,
        message_has=("upstream.client_version", "agctl config set upstream.client_version", VERSION_UPGRADE),
    ),
    Row(
        "2.2 version, update text as plain text",
        503,
        VERSION_UPDATE,
        Verdict.CLIENT_VERSION,
        Effect.NONE,
        Retry.NONE,
        checks={"message": VERSION_UPDATE},
    ),
    Row(
        "2.2 version, out of date text",
        200,
        VERSION_OUT_OF_DATE,
        Verdict.CLIENT_VERSION,
        Effect.NONE,
        Retry.NONE,
    ),
    Row(
        "9.6a validation required, current text",
        403,
        VALIDATION,
        Verdict.VALIDATION_REQUIRED,
        Effect.DISABLE,
        Retry.NEXT_ACCOUNT,
        checks={"validation_url": VALIDATION_URL, "reason": "VALIDATION_REQUIRED"},
        message_has=(VALIDATION_URL, "agctl accounts enable"),
    ),
    Row(
        "9.6a validation required, older text",
        403,
        VALIDATION_OLD,
        Verdict.VALIDATION_REQUIRED,
        Effect.DISABLE,
        Retry.NEXT_ACCOUNT,
        checks={"validation_url": "https://accounts.google.com/signin/continue?…"},
    ),
    Row(
        "9.6a validation required, older text without details",
        403,
        google(403, VALIDATION_OLD_MESSAGE, "PERMISSION_DENIED"),
        Verdict.VALIDATION_REQUIRED,
        Effect.DISABLE,
        Retry.NEXT_ACCOUNT,
        checks={"validation_url": "https://accounts.google.com/signin/continue?…"},
    ),
    Row(
        "9.6b ToS violation with details",
        403,
        TOS,
        Verdict.TOS_VIOLATION,
        Effect.DISABLE,
        Retry.NEXT_ACCOUNT,
        checks={"appeal_url": "https://forms.gle/hGzM9MEUv2azZsrb9", "validation_url": ""},
        message_has=("https://forms.gle/hGzM9MEUv2azZsrb9", "Terms of Service"),
    ),
    Row(
        "9.6b ToS violation, older text without details",
        403,
        google(403, TOS_OLD_MESSAGE, "PERMISSION_DENIED"),
        Verdict.TOS_VIOLATION,
        Effect.DISABLE,
        Retry.NEXT_ACCOUNT,
        checks={"appeal_url": ""},
    ),
    Row(
        "9.6c subscription required",
        403,
        SUBSCRIPTION,
        Verdict.SUBSCRIPTION_REQUIRED,
        Effect.RECHECK_PROJECT,
        Retry.NEXT_ACCOUNT,
        # The Help link is "Learn more", not a validation URL.
        checks={"validation_url": "", "domain": "cloudaicompanion.googleapis.com"},
    ),
    Row(
        "9.6d service disabled",
        403,
        SERVICE_DISABLED,
        Verdict.SERVICE_DISABLED,
        Effect.NONE,
        Retry.NONE,
        checks={"domain": "googleapis.com"},
        message_has=("bug",),
    ),
    Row(
        "9.6e caller does not have permission",
        403,
        google(403, "The caller does not have permission", "PERMISSION_DENIED"),
        Verdict.PERMISSION_DENIED,
        Effect.RECHECK_PROJECT,
        Retry.NEXT_ACCOUNT,
        message_has=("The caller does not have permission",),
    ),
    Row(
        "9.6 not eligible (login-time text)",
        403,
        google(
            403,
            "Your current account is not eligible for Antigravity. Try signing in with another personal Google "
            "account. Learn more by visiting the FAQ.",
            "PERMISSION_DENIED",
        ),
        Verdict.PERMISSION_DENIED,
        Effect.RECHECK_PROJECT,
        Retry.NEXT_ACCOUNT,
    ),
    Row(
        "9.6f VPC-SC",
        403,
        VPC_SC,
        Verdict.SECURITY_POLICY,
        Effect.DISABLE,
        Retry.NEXT_ACCOUNT,
    ),
    Row(
        "9.7 not found",
        404,
        NOT_FOUND,
        Verdict.NOT_FOUND,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        checks={"message": "Requested entity was not found."},
        message_has=("upstream.client_version",),
    ),
    Row(
        "9.7 not found, older variant",
        404,
        NOT_FOUND_OLD,
        Verdict.NOT_FOUND,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        checks={"message": "Requested entity was not found."},
    ),
    Row(
        "9.8 bare invalid argument",
        400,
        BAD_REQUEST,
        Verdict.BAD_REQUEST,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        message_has=("Request contains an invalid argument.",),
    ),
    Row(
        "4.2 metadata rejected",
        400,
        METADATA_400,
        Verdict.BAD_REQUEST,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        checks={"violations": ('Invalid JSON payload received. Unknown name "metadata": Cannot find field.',)},
    ),
    Row(
        "6.1 Anthropic error inside message",
        400,
        ANTHROPIC_IN_MESSAGE,
        Verdict.BAD_REQUEST,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        checks={"anthropic_type": "invalid_request_error", "anthropic_message": "<text>"},
        message_has=("<text>",),
    ),
    Row(
        "6.1 Anthropic prompt too long",
        400,
        anthropic_400("prompt is too long: 215000 tokens > 200000 maximum"),
        Verdict.CONTEXT_TOO_LONG,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        message_has=("prompt is too long",),
    ),
    Row(
        "Gemini input token count exceeds",
        400,
        google(
            400,
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            "INVALID_ARGUMENT",
        ),
        Verdict.CONTEXT_TOO_LONG,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
    ),
    Row(
        "6.4 thinking block required",
        400,
        anthropic_400(THINKING_FIRST),
        Verdict.BAD_REQUEST,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
        checks={"anthropic_message": THINKING_FIRST},
        message_has=("preceeding",),
    ),
    Row(
        "6.4 thinking budget",
        400,
        anthropic_400(THINKING_BUDGET),
        Verdict.BAD_REQUEST,
        Effect.NONE,
        Retry.NONE,
        client_fault=True,
    ),
    Row(
        "4.4 credits exhausted",
        429,
        CREDITS,
        Verdict.CREDITS_EXHAUSTED,
        Effect.STOP_CREDITS,
        Retry.NEXT_ACCOUNT,
    ),
    Row(
        "9.9 401",
        401,
        UNAUTH,
        Verdict.UNAUTHENTICATED,
        Effect.REFRESH_TOKEN,
        Retry.SAME_ACCOUNT,
    ),
    Row(
        "9.9 refresh answered invalid_grant",
        400,
        INVALID_GRANT,
        Verdict.LOGIN_REVOKED,
        Effect.NEEDS_RELOGIN,
        Retry.NEXT_ACCOUNT,
        checks={"oauth_error": "invalid_grant", "message": "Token has been expired or revoked."},
        message_has=("agctl accounts add",),
    ),
    Row("500", 500, google(500, "Internal error encountered.", "INTERNAL"), Verdict.SERVER_ERROR,
        Effect.NONE, Retry.NEXT_HOST),
    Row("502 HTML page", 502, HTML_502, Verdict.SERVER_ERROR, Effect.NONE, Retry.NEXT_HOST,
        checks={"message": "Error 502 (Server Error)!!1"}),
    Row("504", 504, b"", Verdict.SERVER_ERROR, Effect.NONE, Retry.NEXT_HOST, checks={"message": "HTTP 504"}),
    Row("408", 408, b"timeout", Verdict.SERVER_ERROR, Effect.NONE, Retry.NEXT_HOST),
    Row("302 redirect", 302, b"", Verdict.REDIRECT, Effect.NONE, Retry.NEXT_HOST, client_fault=False),
    Row("307 redirect with HTML", 307, b"<html><body>Moved</body></html>", Verdict.REDIRECT, Effect.NONE,
        Retry.NEXT_HOST),
    Row("418", 418, b"teapot", Verdict.UNKNOWN, Effect.NONE, Retry.NONE),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_row(row: Row) -> None:
    body = row.body.encode() if isinstance(row.body, str) else row.body
    err = parse_google_error(row.status, body, row.headers, now=NOW)
    for attr, want in row.checks.items():
        got = getattr(err, attr)
        if isinstance(want, float):
            assert got == pytest.approx(want), attr
        else:
            assert got == want, attr
    c = classify(err, now=NOW)
    assert c.verdict is row.verdict
    assert c.effect is row.effect
    assert c.retry is row.retry
    assert c.client_fault is row.client_fault
    assert c.policy is POLICIES[row.verdict]
    for text in row.message_has:
        assert text in c.message
    assert c.message and not re.search(r"\{[a-z_]+\}", c.message)  # every placeholder filled


# --------------------------------------------------------------------------- numbers


def test_quota_cooldown_runs_to_the_reset_stamp() -> None:
    c = classify(parse_google_error(429, QUOTA_JAN.encode()), now=NOW)
    assert c.until == ts("2026-01-11T09:42:18Z")
    assert c.cooldown == pytest.approx(3600.0)
    assert c.group == "3p"
    e = c.gateway_error()
    assert isinstance(e, RateLimited) and e.retry_after == pytest.approx(3600.0)
    assert e.upstream_status == 429


def test_quota_stamp_in_the_past_falls_back_to_the_delay() -> None:
    later = ts("2026-01-11T10:00:00Z")
    c = classify(parse_google_error(429, QUOTA_JAN.encode()), now=later)
    assert c.until == pytest.approx(later + 9442.776060443)


def test_quota_without_any_time_leaves_the_cooldown_to_the_pool() -> None:
    c = classify(parse_google_error(429, QUOTA_SHORT.encode()), now=NOW, model="gemini-3-flash")
    assert (c.cooldown, c.until, c.group) == (None, None, "gemini")
    assert "Gemini" in c.message and "gemini-3-flash" in c.message


def test_short_rate_limit_waits_the_delay_plus_a_margin() -> None:
    c = classify(parse_google_error(429, RATE_LIMIT.encode()), now=NOW)
    assert c.cooldown == pytest.approx(0.479417207 + SHORT_WAIT_MARGIN)
    assert c.until == pytest.approx(NOW + 0.479417207 + SHORT_WAIT_MARGIN)


def test_rate_limit_boundaries() -> None:
    def verdict_retry(delay: str) -> tuple[Verdict, Retry]:
        c = classify(parse_google_error(429, rate_limit(delay).encode()), now=NOW)
        return c.verdict, c.retry

    assert verdict_retry("2.999s") == (Verdict.RATE_LIMITED, Retry.SAME_ACCOUNT_AFTER_WAIT)
    assert verdict_retry("3s") == (Verdict.RATE_LIMITED, Retry.NEXT_ACCOUNT)
    assert verdict_retry("299.9s") == (Verdict.RATE_LIMITED, Retry.NEXT_ACCOUNT)
    assert verdict_retry("300s") == (Verdict.QUOTA_EXHAUSTED, Retry.NEXT_ACCOUNT)


def test_reason_beats_the_shared_text() -> None:
    # §9.2: the rate-limit body says "exhausted your capacity … reset after 0s";
    # a reason-blind reader (or ACP's "quotaresetdelay" match) calls it quota.
    err = parse_google_error(429, RATE_LIMIT.encode())
    assert "quotaResetDelay" in err.metadata
    assert classify(err, now=NOW).verdict is Verdict.RATE_LIMITED


def test_throttle_default_cooldown_is_for_a_repeat() -> None:
    c = classify(parse_google_error(429, THROTTLE.encode()), now=NOW)
    assert c.policy.on_repeat is Effect.COOL_MODEL
    assert c.cooldown == 300.0
    # The caller is not told to wait the rest a repeat would earn.
    err = c.gateway_error()
    assert err.status == 429 and err.retry_after is None


def test_capacity_is_overloaded_with_the_delay_as_hint() -> None:
    body = CAPACITY.replace(
        "}]}}", '}, {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]}}'
    )
    c = classify(parse_google_error(503, body.encode()), now=NOW)
    assert c.verdict is Verdict.CAPACITY and c.effect is Effect.NONE
    e = c.gateway_error()
    assert isinstance(e, Overloaded) and e.retry_after == 2.0


@pytest.mark.parametrize(
    ("body", "status", "cls"),
    [
        (NOT_FOUND, 404, ModelNotFound),
        (BAD_REQUEST, 400, BadRequest),
        (VALIDATION, 403, NoAccountAvailable),
        (SERVICE_DISABLED, 403, UpstreamError),
        (UNAUTH, 401, UpstreamError),  # never the caller's 401: their key is fine
        (VERSION_UPGRADE, 503, UpstreamError),
    ],
)
def test_gateway_error_class(body: str, status: int, cls: type) -> None:
    e = classify(parse_google_error(status, body.encode()), now=NOW).gateway_error()
    assert type(e) is cls
    assert e.upstream_status == status


def test_account_notes() -> None:
    v = classify(parse_google_error(403, VALIDATION.encode()), now=NOW)
    assert VALIDATION_URL in v.account_note and "agctl accounts enable" in v.account_note
    t = classify(parse_google_error(403, TOS.encode()), now=NOW)
    assert "https://forms.gle/hGzM9MEUv2azZsrb9" in t.account_note
    r = classify(parse_google_error(400, INVALID_GRANT.encode()), now=NOW)
    assert "re-login" in r.account_note
    assert classify(parse_google_error(429, RATE_LIMIT.encode()), now=NOW).account_note == ""


def test_unknown_model_group_from_the_request() -> None:
    c = classify(parse_google_error(429, THROTTLE.encode()), now=NOW, model="claude-sonnet-4-6")
    assert c.group == "3p"
    assert classify(parse_google_error(429, THROTTLE.encode()), now=NOW).group == ""


# --------------------------------------------------------------------------- §9.10 delay order


def _body(*, retry: str | None = None, reset_delay: str | None = None, message: str = "x") -> bytes:
    details: list[dict[str, object]] = []
    if reset_delay is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "metadata": {"quotaResetDelay": reset_delay},
            }
        )
    if retry is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry})
    return json.dumps({"error": {"code": 429, "message": message, "details": details}}).encode()


@pytest.mark.parametrize(
    ("body", "headers", "delay", "source"),
    [
        (
            _body(retry="7s", reset_delay="8s", message="reset after 9s"),
            {"Retry-After": "10"},
            7.0,
            "retry_info",
        ),
        (_body(reset_delay="8s", message="reset after 9s"), {"Retry-After": "10"}, 8.0, "quota_reset_delay"),
        (_body(message="Your quota will reset after 1h43m56s."), {"Retry-After": "10"}, 6236.0, "message"),
        (_body(message="Resets in 71h15m27s."), None, 256527.0, "message"),
        (_body(message="after 9s"), None, 9.0, "message"),
        (_body(), {"Retry-After": "10"}, 10.0, "header"),
        (_body(), {"retry-after": "10"}, 10.0, "header"),
        (_body(), {"retry-after-ms": "1500"}, 1.5, "header"),
        (_body(), {"Retry-After": "Sun, 11 Jan 2026 08:43:18 GMT"}, 60.0, "header"),
        (_body(), {"Retry-After": "soon"}, None, ""),
        (_body(retry="garbage", reset_delay="also garbage", message="after 3months"), None, None, ""),
        (_body(reset_delay="71h15m27.791609974s"), None, 256527.791609974, "quota_reset_delay"),
        (_body(reset_delay="479.417207ms"), None, 0.479417207, "quota_reset_delay"),
        (_body(retry="99999999999999999999999h"), None, 31 * 86400.0, "retry_info"),
    ],
)
def test_delay_order(body: bytes, headers: dict[str, str] | None, delay: float | None, source: str) -> None:
    err = parse_google_error(429, body, headers, now=NOW)
    assert err.retry_delay == (pytest.approx(delay) if delay is not None else None)
    assert err.delay_source == source


# --------------------------------------------------------------------------- shapes and garbage


def test_stream_array_and_sse_framing() -> None:
    arr = parse_google_error(429, f"[{QUOTA_JAN}]".encode())
    assert arr.reason == "QUOTA_EXHAUSTED"
    sse = parse_google_error(400, f"data: {ANTHROPIC_IN_MESSAGE.replace(chr(10), ' ')}\n\n".encode())
    assert sse.anthropic_message == "<text>"


def test_secrets_are_redacted() -> None:
    body = google(
        401, "bad token ya29.a0AfH6SMBsecretsecretsecret and sk-abcdefghijklmnop", "UNAUTHENTICATED"
    )
    err = parse_google_error(401, body.encode())
    assert "secretsecret" not in err.message and "ghijklmnop" not in err.message
    c = classify(err, now=NOW)
    assert "secretsecret" not in c.message


def test_long_messages_are_clipped() -> None:
    err = parse_google_error(400, google(400, "x" * 50_000, "INVALID_ARGUMENT").encode())
    assert len(err.message) <= 1000
    assert len(classify(err, now=NOW).message) < 600


GARBAGE: list[tuple[int, bytes]] = [
    (500, b""),
    (500, b"null"),
    (500, b"[]"),
    (500, b"[1, 2]"),
    (429, b'"just a string"'),
    (429, b"42"),
    (429, b'{"error": 5}'),
    (429, b'{"error": null}'),
    (429, b'{"error": {"details": "x", "message": 5, "status": ["a"]}}'),
    (
        429,
        b'{"error": {"details": [1, null, {"@type": 3}, {"@type": "type.googleapis.com/google.rpc.Help"}]}}',
    ),
    (
        429,
        b'{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "metadata": [1]}]}}',
    ),
    (
        429,
        b'{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": {"a": 1}}]}}',
    ),
    (429, QUOTA_JAN.encode()[:200]),  # truncated
    (400, b"\xff\xfe\x00garbage"),
    (400, b'{"error": {"message": "{\\"type\\": \\"error\\", \\"error\\": 5}"}}'),
    (400, b'{"error": {"message": "{not json"}}'),
    (403, b"<html><head><title></title></head></html>"),
    (0, b"{}"),
    (-1, b"{}"),
    (999, b"{}"),
    (200, b"data: nope\n\n"),
    (429, b"[" * 10_000),
]


@pytest.mark.parametrize(("status", "body"), GARBAGE)
def test_garbage_gives_a_sane_record(status: int, body: bytes) -> None:
    err = parse_google_error(status, body, now=NOW)
    assert isinstance(err, GoogleError)
    assert err.message  # always something to show
    c = classify(err, now=NOW)
    assert c.message
    assert c.verdict in POLICIES


def test_truncated_quota_body_still_reads_as_a_throttle_not_a_crash() -> None:
    err = parse_google_error(429, QUOTA_JAN.encode()[:200])
    assert classify(err, now=NOW).verdict in (
        Verdict.RATE_LIMITED,
        Verdict.QUOTA_EXHAUSTED,
        Verdict.THROTTLED,
    )


# --------------------------------------------------------------------------- the table itself


def test_every_verdict_has_a_row() -> None:
    assert set(POLICIES) == set(Verdict)


@pytest.mark.parametrize("verdict", list(Verdict))
@pytest.mark.parametrize("model", ["", "claude-opus-4-6-thinking"])
def test_every_template_renders(verdict: Verdict, model: str) -> None:
    from daemon.upstream.classify import _fields

    policy = POLICIES[verdict]
    fields = _fields(GoogleError(status=500), model, "", None, None)
    assert policy.message.format_map(fields)
    if policy.account_note:
        assert policy.account_note.format_map(fields)
    if policy.effect in (Effect.DISABLE, Effect.NEEDS_RELOGIN):
        assert policy.account_note, "an account that a person must fix says how"


def test_client_faults_are_exactly_the_callers_errors() -> None:
    faults = {v for v, p in POLICIES.items() if p.client_fault}
    assert faults == {Verdict.NOT_FOUND, Verdict.BAD_REQUEST, Verdict.CONTEXT_TOO_LONG}
    assert POLICIES[Verdict.REDIRECT].client_fault is False
    # Never rotate or cool accounts on 400 (§9.8).
    for v in faults:
        assert POLICIES[v].effect is Effect.NONE and POLICIES[v].retry is Retry.NONE


# --------------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
error_like = st.fixed_dictionaries(
    {
        "error": st.fixed_dictionaries(
            {},
            optional={
                "code": json_values,
                "message": st.text(max_size=80) | json_values,
                "status": st.sampled_from(["RESOURCE_EXHAUSTED", "UNAVAILABLE", "PERMISSION_DENIED", ""])
                | json_values,
                "details": st.lists(
                    st.fixed_dictionaries(
                        {
                            "@type": st.sampled_from(
                                [
                                    "type.googleapis.com/google.rpc.ErrorInfo",
                                    "type.googleapis.com/google.rpc.RetryInfo",
                                    "type.googleapis.com/google.rpc.Help",
                                    "type.googleapis.com/google.rpc.BadRequest",
                                ]
                            )
                        },
                        optional={
                            "reason": st.sampled_from(list(["QUOTA_EXHAUSTED", "RATE_LIMIT_EXCEEDED", "X"]))
                            | json_values,
                            "metadata": st.dictionaries(
                                st.sampled_from(["quotaResetDelay", "quotaResetTimeStamp", "model", "x"]),
                                st.text(max_size=30) | json_values,
                                max_size=3,
                            )
                            | json_values,
                            "retryDelay": st.text(max_size=20) | json_values,
                            "links": json_values,
                            "fieldViolations": json_values,
                        },
                    )
                    | json_values,
                    max_size=4,
                )
                | json_values,
            },
        )
    }
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | error_like.map(lambda v: json.dumps(v).encode())
)
FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@FUZZ
@given(
    status=st.integers(min_value=-5, max_value=1000),
    body=bodies,
    headers=st.none()
    | st.dictionaries(st.sampled_from(["Retry-After", "retry-after-ms", "x"]), st.text(max_size=30)),
    model=st.text(max_size=20),
)
def test_fuzz_never_raises(status: int, body: bytes, headers: dict[str, str] | None, model: str) -> None:
    err = parse_google_error(status, body, headers, now=NOW)
    c = classify(err, now=NOW, model=model)
    assert isinstance(c.message, str) and c.message
    assert c.cooldown is None or 0 <= c.cooldown <= 31 * 86400.0
    c.gateway_error()


def test_client_version_refusal_as_answer_text() -> None:
    # §2.2: two of the texts came back as a normal 200 answer.
    assert refuses_client_version("⏺ " + VERSION_UPDATE)
    assert refuses_client_version(VERSION_OUT_OF_DATE)
    assert not refuses_client_version("Antigravity is a fine name for a version control tool.")


@pytest.mark.parametrize(
    ("text", "undecided"),
    [
        ("This", True),
        ("  this version of", True),
        ("This version of Antigravity is no longer supp", True),
        ("Your current version\nof Antigravity", True),
        ("This version of Antigravity is no longer supported. Please", False),  # decided: a refusal
        ("This version of Antigravity is great", False),
        ("Hello", False),
        ("", False),
    ],
)
def test_may_become_version_refusal(text: str, undecided: bool) -> None:
    assert may_become_version_refusal(text) is undecided
