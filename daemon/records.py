"""Plain records the layers pass to each other (no behaviour beyond
bookkeeping, no I/O): what a request did, its token usage, a refused
request. They sit at the bottom so the monitor, the metrics, dispatch and
the apps can all name them without importing each other."""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from daemon.errors import GatewayError


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0  # includes cached
    output_tokens: int = 0  # visible + thinking
    thinking_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


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
    credits: bool = False  # paid with AI credits ([credits])
    finished: bool = False  # recorded (daemon.proxy.serving.finish_ctx): once only

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = (time.perf_counter() - self.t0) * 1000

    def fail(self, err: GatewayError) -> None:
        self.status = err.status
        self.error_kind = err.kind
        self.error = err.message


@dataclass(slots=True)
class Refusal:
    """One refused request, as much as is known when it was refused."""

    reason: str
    status: int
    kind: str
    message: str
    client: str = ""
    protocol: str = "openai"
    route: str = "refused"
    request_id: str = ""
    user_agent: str = ""
