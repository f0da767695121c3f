"""z.ai: an Anthropic-compatible upstream (UPSTREAM.md "z.ai"), used only for
the Anthropic routes. Bodies go through in Anthropic form with the model
mapped to glm-*; streams are relayed byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from daemon.config import ZaiConfig
from daemon.errors import (
    BadRequest,
    GatewayError,
    Overloaded,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from daemon.upstream.http import HttpClient, Reply

_encode = msgspec.json.Encoder().encode


def _error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    message = body[:300].decode("utf-8", "replace")
    try:
        data = msgspec.json.decode(body)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            message = str(data["error"].get("message") or message)
    except msgspec.DecodeError:
        pass
    retry = headers.get("retry-after")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    if status == 429:
        return RateLimited(f"z.ai: {message}", retry_after=retry_after)
    if status in (401, 403):
        # The proxy's own key was refused, not the client's: never a 401 to
        # the client (Claude Code would ask its user to log in again).
        return UpstreamError(
            f"z.ai rejected zai.api_key ({status}): {message}; check `agctl config get zai.api_key`",
            upstream_status=status,
        )
    if status == 529 or status == 503:
        return Overloaded(f"z.ai overloaded: {message}")
    if 400 <= status < 500:
        return BadRequest(f"z.ai: {message}", upstream_status=status)
    return UpstreamError(f"z.ai error {status}: {message}", upstream_status=status)


def _named(exc: UpstreamError) -> UpstreamError:
    """The http client's error (timeout, unreachable, ...), saying it was z.ai."""
    return type(exc)(f"z.ai: {exc.message}", upstream_status=exc.upstream_status)


def _json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise UpstreamError("z.ai answered something that is not JSON") from None


class Zai:
    def __init__(self, http: HttpClient, cfg: ZaiConfig) -> None:
        self.http = http
        self.cfg = cfg

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = {
            "x-api-key": self.cfg.api_key,
            "content-type": "application/json",
            "anthropic-version": headers.get("anthropic-version", "2023-06-01"),
        }
        if headers.get("anthropic-beta"):
            out["anthropic-beta"] = headers["anthropic-beta"]
        return out

    def _url(self, path: str) -> str:
        return self.cfg.base_url.rstrip("/") + path

    async def messages(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            resp = await self.http.post(self._url("/v1/messages"), _encode(body), self._headers(headers))
        except UpstreamError as exc:
            raise _named(exc) from None
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.content, resp.headers)
        data = _json(resp.content)
        if not isinstance(data, dict):
            raise UpstreamError("z.ai answered a non-object")
        return data

    async def stream(self, body: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[bytes]:
        """Opens the stream (errors raise before any byte); returns a byte iterator."""
        try:
            resp = await self.http.open(self._url("/v1/messages"), _encode(body), self._headers(headers))
        except UpstreamError as exc:
            raise _named(exc) from None
        if resp.status_code != 200:
            try:
                content = await resp.aread()
            except UpstreamError:
                content = b""
            finally:
                await resp.aclose()
            raise _error(resp.status_code, content, resp.headers)
        return self._relay(resp)

    async def _relay(self, resp: Reply) -> AsyncIterator[bytes]:
        # The bytes as decoded (content-encoding undone): the client gets
        # them without z.ai's content-encoding header.
        try:
            async for chunk in resp.aiter_bytes():
                yield chunk
        except UpstreamTimeout:
            raise UpstreamTimeout(
                "the z.ai stream went silent for too long (upstream.stream_idle_timeout)"
            ) from None
        except UpstreamError as exc:
            raise UpstreamError(f"the z.ai stream broke off: {exc.message}") from None
        finally:
            await resp.aclose()

    async def count_tokens(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            resp = await self.http.post(
                self._url("/v1/messages/count_tokens"), _encode(body), self._headers(headers)
            )
        except UpstreamError as exc:
            raise _named(exc) from None
        if resp.status_code != 200:
            raise _error(resp.status_code, resp.content, resp.headers)
        data = _json(resp.content)
        return data if isinstance(data, dict) else {}
