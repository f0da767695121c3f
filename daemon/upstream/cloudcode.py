"""Client for Google's Cloud Code ``v1internal`` API (UPSTREAM.md).

``POST {base}/v1internal:{method}``, tried over ``upstream.endpoints`` in
order; the next one on 404, 408, 5xx or a network error. Google JSON errors
become ``UpstreamHTTPError`` with what the pool needs (reason, reset time,
validation URL).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from daemon.config import Config
from daemon.errors import UpstreamError, redact
from daemon.ids import hex_id
from daemon.upstream.http import HttpClient, Reply

log = logging.getLogger(__name__)

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode

NEXT_ENDPOINT_STATUSES = frozenset({404, 408, 500, 502, 503, 504, 529})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """Go-style durations as Google sends them: "42s", "1h30m5s", "500ms", "3.5s"."""
    text = text.strip()
    if not text:
        return None
    total = 0.0
    pos = 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


def parse_timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class UpstreamHTTPError(Exception):
    """A non-2xx answer from the upstream, parsed."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str = "",
        google_status: str = "",
        retry_after: float | None = None,
        reset_at: float | None = None,
        validation_url: str = "",
    ) -> None:
        self.status = status
        self.message = redact(message)
        self.reason = reason
        self.google_status = google_status
        self.retry_after = retry_after
        self.reset_at = reset_at
        self.validation_url = validation_url
        super().__init__(f"{status} {reason or google_status}: {self.message}")

    def wait_seconds(self, now: float | None = None) -> float | None:
        """Seconds until the upstream says to try again, if it said."""
        now = time.time() if now is None else now
        if self.reset_at is not None:
            return max(0.0, self.reset_at - now)
        return self.retry_after


_VALIDATION_URL = re.compile(r"https://[^\s\"'<>]+")


def parse_error(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> UpstreamHTTPError:
    message = body[:500].decode("utf-8", "replace").strip() or f"HTTP {status}"
    reason = google_status = validation_url = ""
    retry_after: float | None = None
    reset_at: float | None = None
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        message = str(err.get("message") or message)
        google_status = str(err.get("status") or "")
        for d in err.get("details") or []:
            if not isinstance(d, dict):
                continue
            typ = str(d.get("@type", ""))
            if typ.endswith("google.rpc.ErrorInfo"):
                reason = str(d.get("reason") or reason)
                meta = d.get("metadata") or {}
                if isinstance(meta, dict):
                    if meta.get("quotaResetDelay"):
                        retry_after = parse_duration(str(meta["quotaResetDelay"]))
                    if meta.get("quotaResetTimeStamp"):
                        reset_at = parse_timestamp(str(meta["quotaResetTimeStamp"]))
                    if meta.get("validation_url") or meta.get("validationUrl"):
                        validation_url = str(meta.get("validation_url") or meta.get("validationUrl"))
            elif typ.endswith("google.rpc.RetryInfo") and retry_after is None:
                retry_after = parse_duration(str(d.get("retryDelay") or ""))
            elif typ.endswith("google.rpc.Help"):
                for link in d.get("links") or []:
                    if isinstance(link, dict) and "url" in link and not validation_url:
                        validation_url = str(link["url"])
    elif isinstance(data, dict) and "error" in data:
        reason = str(data.get("error"))
        message = str(data.get("error_description") or reason)
    if retry_after is None and headers is not None and headers.get("retry-after"):
        try:
            retry_after = float(headers["retry-after"])
        except ValueError:
            pass
    if status == 403 and "VALIDATION_REQUIRED" in message and not validation_url:
        m = _VALIDATION_URL.search(message)
        if m:
            validation_url = m.group(0)
    return UpstreamHTTPError(
        status,
        message,
        reason=reason,
        google_status=google_status,
        retry_after=retry_after,
        reset_at=reset_at,
        validation_url=validation_url,
    )


def new_request_id() -> str:
    return f"agent/{int(time.time() * 1000)}/{hex_id(4)}"


def envelope(*, project: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "project": project,
        "model": model,
        "requestId": new_request_id(),
        "userAgent": "antigravity",
        "requestType": "agent",
        "request": request,
    }


class CloudCode:
    def __init__(self, http: Callable[[], HttpClient], config: Callable[[], Config]) -> None:
        self._http = http
        self._config = config

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "user-agent": self._config().upstream.user_agent,
            "accept-encoding": "gzip",
        }

    async def call(self, method: str, token: str, payload: Any) -> Any:
        """A unary call; returns the decoded JSON answer."""
        body = payload if isinstance(payload, bytes) else _encode(payload)
        endpoints = self._config().upstream.endpoints
        http = self._http()
        last: Exception | None = None
        for i, base in enumerate(endpoints):
            try:
                resp = await http.post(f"{base}/v1internal:{method}", body, self._headers(token))
            except UpstreamError as exc:  # timed out, unreachable, broken, a redirect: the next one
                last = exc
                continue
            if resp.status_code == 200:
                try:
                    return _decode(resp.content)
                except msgspec.DecodeError:
                    raise UpstreamError(f"upstream {method} answered invalid JSON") from None
            err = parse_error(resp.status_code, resp.content, resp.headers)
            if resp.status_code in NEXT_ENDPOINT_STATUSES and i + 1 < len(endpoints):
                log.info("%s at %s: %s; trying next endpoint", method, base, err)
                last = err
                continue
            raise err
        assert last is not None
        raise last

    async def open_stream(self, token: str, payload: Any) -> Reply:
        """Open ``streamGenerateContent?alt=sse``; returns the response with
        status 200 and the body not yet read. The caller must close it."""
        body = payload if isinstance(payload, bytes) else _encode(payload)
        endpoints = self._config().upstream.endpoints
        last: Exception | None = None
        http = self._http()
        for i, base in enumerate(endpoints):
            url = f"{base}/v1internal:streamGenerateContent?alt=sse"
            try:
                resp = await http.open(url, body, self._headers(token))
            except UpstreamError as exc:
                last = exc
                continue
            if resp.status_code == 200:
                return resp
            try:
                content = await resp.aread()
            except UpstreamError:
                content = b""
            finally:
                await resp.aclose()
            err = parse_error(resp.status_code, content, resp.headers)
            if resp.status_code in NEXT_ENDPOINT_STATUSES and i + 1 < len(endpoints):
                last = err
                continue
            raise err
        assert last is not None
        raise last


async def sse_events(resp: Reply) -> AsyncIterator[dict[str, Any]]:
    """Decoded ``data:`` payloads of an SSE body, unwrapped from ``response``."""
    data: list[str] = []
    async for line in resp.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "":
            if data:
                yield _unwrap("\n".join(data))
                data = []
    if data:
        yield _unwrap("\n".join(data))


def _unwrap(text: str) -> dict[str, Any]:
    try:
        obj = _decode(text)
    except msgspec.DecodeError:
        raise UpstreamError("upstream stream sent an invalid JSON event") from None
    if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
        inner: dict[str, Any] = obj["response"]
        return inner
    if isinstance(obj, dict) and "error" in obj:
        err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
        raise UpstreamError(f"upstream stream error: {err.get('message', err)}")
    return obj if isinstance(obj, dict) else {}
