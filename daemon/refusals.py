"""Refused requests: counted one by one, logged in aggregate.

A flood of refused requests (no key, a foreign Host, oversized heads) must
not become a flood of request-log rows: 112,000 unauthenticated requests once
wrote 11,000 rows (issue 17). So, per (client address, reason):

- the first refusal is written at once, with its request id (a caller who
  got a 401 finds it with `agctl logs`);
- the ones after it within ``WINDOW`` seconds are only counted, and the
  count goes out in ONE summary row when that minute is over (a sweep every
  ``SWEEP_EVERY`` seconds, and at shutdown).

That is at most one row per client and reason per minute plus the first.
Every refusal still counts in ``antigravity_refusals_total{reason}``. The
pairs tracked at once are capped (``MAX_PAIRS``): past it, new clients share
one pair named ``OVERFLOW_CLIENT``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from daemon.ids import sortable_id
from daemon.monitor import Monitor
from daemon.records import Refusal, RequestCtx

log = logging.getLogger(__name__)

WINDOW = 60.0
SWEEP_EVERY = 10.0
MAX_PAIRS = 1000
OVERFLOW_CLIENT = "(many clients)"

# The reasons (a metrics label: a fixed set).
REASONS = (
    "unauthorized",
    "host",
    "origin",
    "content_type",
    "body_too_large",
    "head_too_large",
    "too_many_headers",
    "header_timeout",
    "body_timeout",
    "connections",
)


@dataclass(slots=True)
class _Window:
    start: float
    last: Refusal
    more: int = 0


class Refusals:
    """``write(refusal, count)`` puts one row in the request log (``count``:
    how many refusals it stands for); ``count(refusal)`` bumps metrics."""

    def __init__(
        self,
        write: Callable[[Refusal, int, float], None],
        count: Callable[[Refusal], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._count = count
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._swept = clock()
        self.total = 0

    def refuse(self, r: Refusal) -> None:
        self.total += 1
        try:
            self._count(r)
        except Exception:  # metrics must never break the refusal
            log.exception("refusal metrics failed")
        now = self._clock()
        if now - self._swept >= SWEEP_EVERY:
            self.sweep(now)
        key = (r.client, r.reason)
        w = self._windows.get(key)
        if w is None and len(self._windows) >= MAX_PAIRS:
            key = (OVERFLOW_CLIENT, r.reason)
            r.client = OVERFLOW_CLIENT
            w = self._windows.get(key)
        if w is not None and now - w.start < WINDOW:
            w.more += 1
            w.last = r
            return
        if w is not None and w.more:
            self._summary(key, w)
        self._windows[key] = _Window(start=now, last=r)
        self._emit(r, 1, 0.0)

    def sweep(self, now: float | None = None, *, everything: bool = False) -> None:
        """Write the summary rows of the windows that are over (all of them
        with ``everything``, at shutdown) and forget those pairs."""
        now = self._clock() if now is None else now
        self._swept = now
        for key, w in list(self._windows.items()):
            if everything or now - w.start >= WINDOW:
                del self._windows[key]
                if w.more:
                    self._summary(key, w, now)

    def _summary(self, key: tuple[str, str], w: _Window, now: float | None = None) -> None:
        span = max(0.0, (self._clock() if now is None else now) - w.start)
        client = key[0]
        r = w.last
        who = f"from {client}" if client else "from one client"
        summary = Refusal(
            reason=r.reason,
            status=r.status,
            kind=r.kind,
            message=(
                f"{w.more} more request(s) {who} refused the same way within {min(span, WINDOW):.0f} s "
                f"(one row per client and reason per minute): {r.message}"
            ),
            client=client,
            protocol=r.protocol,
            route=r.route,
            request_id="req_" + sortable_id(6),
            user_agent=r.user_agent,
        )
        self._emit(summary, w.more, span)

    def _emit(self, r: Refusal, n: int, span: float) -> None:
        try:
            self._write(r, n, span)
        except Exception:  # the log must never break a request
            log.exception("refusal log failed")

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep()


class HasMonitor(Protocol):
    """What ``monitor_writer`` needs of the service. Not ``ProxyDeps``:
    daemon.app_deps imports this module, and the imports stay acyclic."""

    monitor: Monitor


def monitor_writer(service: HasMonitor) -> Callable[[Refusal, int, float], None]:
    """Rows for the service's request log (``daemon.monitor``)."""

    def write(r: Refusal, n: int, span: float) -> None:
        ctx = RequestCtx(
            request_id=r.request_id or "req_" + sortable_id(6),
            protocol=r.protocol,
            route=r.route,
            client=r.client,
            user_agent=r.user_agent,
            status=r.status,
            error_kind=r.kind,
            error=r.message,
            started=time.time() - span,
        )
        ctx.latency_ms = 0.0
        service.monitor.record(ctx)

    return write
