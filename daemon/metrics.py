"""Prometheus metrics for ``GET /metrics`` (prometheus-client, text format).

One ``CollectorRegistry`` per Service (never the process-global one: tests
run several services in one process, and the library's own process/GC
collectors are not ours to publish).

Request-time series are updated by ``observe(ctx)``, called once per proxied
request by ``daemon.proxy.serving.finish_ctx``. Pool and monitor state is
read at scrape time by ``_StateCollector``, so it is never stale.

Label cardinality is bounded: ``model`` is a model the pool lists or a
``[models]`` key/target, else ``"other"``; ``account`` is the email of a
configured account (or ``"z.ai"``), else ``"other"``; ``status`` is an HTTP
code; ``route`` and ``protocol`` come from the route code. No request ids,
no raw client strings.
"""

from __future__ import annotations

import logging
import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from daemon.accounts.pool import Pool
    from daemon.config import Config
    from daemon.monitor import Monitor
    from daemon.records import Refusal, RequestCtx

log = logging.getLogger(__name__)

PREFIX = "antigravity"
OTHER = "other"
NONE = "none"
ZAI = "z.ai"
# From a cached countTokens (a few ms) to a long thinking stream (minutes;
# proxy.request_timeout defaults to 300 s).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
LABEL_SETS_TTL = 1.0
TOKEN_DIRECTIONS = ("input", "output", "thinking", "cached")
_ACCOUNT_LABEL = re.compile(rb'account="([^"\\]*)"')


def upstream_error_kind(status: int | None, error: str) -> str:
    """A failed upstream attempt -> a small fixed set of kinds. The
    dispatcher writes upstream errors as "verdict: message", the verdict
    being the classifier's (``quota_exhausted``, ``capacity``, ...); the
    older "REASON: message" form (Google's ErrorInfo reason) reads the same."""
    if status is None:
        return "empty_answer" if "empty" in error else "network"
    if status == 429:
        head = error.partition(":")[0].strip().lower()
        if head == "quota_exhausted":
            return "quota_exhausted"
        if head in ("capacity", "model_capacity_exhausted"):
            return "capacity_exhausted"
        return "rate_limited"
    if status == 401:
        return "auth"
    if status == 403:
        return "forbidden"
    if status == 404:
        return "not_found"
    if status in (408, 504):
        return "timeout"
    if status in (503, 529):
        return "overloaded"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "bad_request"
    return OTHER


class _Counter:
    """A counter family: values by label tuple, exposed when scraped.

    Plain dict updates on the event loop (the only thread that counts)
    instead of prometheus-client's labelled children, which take a lock per
    ``inc`` and walk the buckets in Python per ``observe``: the per-request
    series were ~4 % of a proxied request's CPU (tests/bench profile)."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], n: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + n

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in list(self.values.items()):
            fam.add_metric(key, value)
        return fam


class _Histogram:
    """A histogram family: per label tuple, the count in each bucket (not
    cumulative; the last is +Inf), then the sum."""

    __slots__ = ("_le", "bounds", "doc", "labels", "name", "series")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.series: dict[tuple[str, ...], list[float]] = {}
        self._le = tuple("+Inf" if b == math.inf else repr(float(b)) for b in (*bounds, math.inf))

    def observe(self, key: tuple[str, ...], value: float) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0.0] * (len(self.bounds) + 2)
        s[bisect_left(self.bounds, value)] += 1  # le is inclusive: the first bound >= value
        s[-1] += value

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, s in list(self.series.items()):
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for le, n in zip(self._le, s[:-1], strict=True):
                running += n
                buckets.append((le, running))
            fam.add_metric(key, buckets, s[-1])
        return fam


class Metrics(Collector):
    """The request series, and (``_StateCollector``) the pool's and the
    request log's state, read when scraped from what it is given."""

    def __init__(
        self, pool: Callable[[], Pool], config: Callable[[], Config], monitor: Callable[[], Monitor]
    ) -> None:
        self._pool = pool
        self._config = config
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = _Counter(
            f"{PREFIX}_requests",
            "Proxied requests by client protocol, route, model and HTTP status.",
            ("protocol", "route", "model", "status"),
        )
        self.latency = _Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            ("protocol", "route", "model"),
            LATENCY_BUCKETS,
        )
        self.ttfb = _Histogram(
            f"{PREFIX}_time_to_first_byte_seconds",
            "Time from request to the first byte of the answer.",
            ("protocol", "route", "model"),
            LATENCY_BUCKETS,
        )
        self.tokens = _Counter(
            f"{PREFIX}_tokens",
            "Tokens by direction (input, output, thinking, cached), model and account; "
            "output includes thinking, input includes cached.",
            ("direction", "model", "account"),
        )
        self.upstream_errors = _Counter(
            f"{PREFIX}_upstream_errors",
            "Failed upstream attempts (and streams that broke after the first byte) by kind.",
            ("kind", "account"),
        )
        self.failovers = _Counter(
            f"{PREFIX}_failovers",
            "Requests that needed more than one account attempt.",
            ("model",),
        )
        self.refusals = _Counter(
            f"{PREFIX}_refusals",
            "Requests and connections the listener refused, by reason (see daemon.refusals).",
            ("reason",),
        )
        self.credit_requests = _Counter(
            f"{PREFIX}_credit_requests",
            "Requests paid with Google One AI credits ([credits]), by account.",
            ("account",),
        )
        self._series: tuple[_Counter | _Histogram, ...] = (
            self.requests,
            self.latency,
            self.ttfb,
            self.tokens,
            self.upstream_errors,
            self.failovers,
            self.refusals,
            self.credit_requests,
        )
        reg.register(self)
        reg.register(_StateCollector(pool, monitor))
        self._sets_at = -LABEL_SETS_TTL
        self._models: set[str] = set()
        self._emails: set[str] = set()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        for series in self._series:
            yield series.family()

    # ---------------------------------------------------------------- labels

    def _refresh_label_sets(self) -> None:
        """The models and accounts a label may name, re-read at most once a
        second (a request must not rebuild them)."""
        now = time.monotonic()
        if now - self._sets_at < LABEL_SETS_TTL:
            return
        self._sets_at = now
        self._models = self._known_models()
        self._emails = {a.email for a in self._pool().accounts.values()}

    def _known_models(self) -> set[str]:
        known = set(self._pool().catalog().models)
        cfg_models = self._config().models
        known.update(cfg_models.keys())
        known.update(cfg_models.values())
        return known

    def _model_label(self, model: str) -> str:
        if not model:
            return NONE
        return model if model in self._models else OTHER

    def _account_label(self, account: str) -> str:
        if not account:
            return NONE
        if account == ZAI:
            return ZAI
        return account if account in self._emails else OTHER

    # ---------------------------------------------------------------- per request

    def observe(self, ctx: RequestCtx) -> None:
        self._refresh_label_sets()
        model = self._model_label(ctx.model or ctx.client_model)
        account = self._account_label(ctx.account)
        protocol, route = ctx.protocol, ctx.route
        self.requests.inc((protocol, route, model, str(ctx.status)))
        if ctx.latency_ms is not None:
            self.latency.observe((protocol, route, model), ctx.latency_ms / 1000)
        if ctx.ttfb_ms is not None:
            self.ttfb.observe((protocol, route, model), ctx.ttfb_ms / 1000)
        u = ctx.usage
        for direction, n in zip(
            TOKEN_DIRECTIONS,
            (u.input_tokens, u.output_tokens, u.thinking_tokens, u.cached_tokens),
            strict=True,
        ):
            if n:
                self.tokens.inc((direction, model, account), n)
        served = False
        for att in ctx.attempts:
            if att.status == 200:
                served = True
            else:
                kind = upstream_error_kind(att.status, att.error)
                self.upstream_errors.inc((kind, self._account_label(att.account)))
        if served and ctx.status >= 500 and ctx.error_kind and ctx.error_kind != "client_closed":
            # The account answered, then the stream broke or timed out.
            self.upstream_errors.inc((ctx.error_kind, account))
        if len(ctx.attempts) > 1:
            self.failovers.inc((model,))
        if ctx.credits:
            self.credit_requests.inc((account,))

    def refused(self, r: Refusal) -> None:
        self.refusals.inc((r.reason,))
        self.requests.inc((r.protocol, r.route, NONE, str(r.status)))

    def render(self, *, show_accounts: bool = True) -> bytes:
        """The text format. ``show_accounts=False`` (a scrape without the
        proxy key) names accounts by their id instead of their email."""
        text: bytes = generate_latest(self.registry)
        if show_accounts:
            return text
        ids: dict[bytes, bytes] = {
            a.email.encode(): a.id.encode() for a in list(self._pool().accounts.values())
        }

        def swap(m: re.Match[bytes]) -> bytes:
            value = m.group(1)
            if value in (NONE.encode(), OTHER.encode(), ZAI.encode()):
                return m.group(0)
            return b'account="' + ids.get(value, OTHER.encode()) + b'"'

        return _ACCOUNT_LABEL.sub(swap, text)


class _StateCollector(Collector):
    """Pool and monitor state, read when scraped."""

    def __init__(self, pool: Callable[[], Pool], monitor: Callable[[], Monitor]) -> None:
        self._pool = pool
        self._monitor = monitor

    def describe(self) -> list[Any]:
        return []  # families vary with the pool: not described up front

    def collect(self) -> Iterator[Any]:
        pool = self._pool()
        now = time.time()
        states = GaugeMetricFamily(
            f"{PREFIX}_accounts",
            "Accounts by state (active, cooling_down, disabled).",
            labels=("state",),
        )
        counts = {"active": 0, "cooling_down": 0, "disabled": 0}
        quota = GaugeMetricFamily(
            f"{PREFIX}_account_quota_remaining_ratio",
            "Remaining quota fraction (0..1) per account and model, from the last quota fetch.",
            labels=("account", "model"),
        )
        windows = GaugeMetricFamily(
            f"{PREFIX}_account_quota_window_ratio",
            "Remaining quota fraction (0..1) per account, quota group (gemini, 3p) and window (5h, weekly).",
            labels=("account", "group", "window"),
        )
        for acct in list(pool.accounts.values()):
            if not acct.enabled:
                counts["disabled"] += 1
            elif any(cd.until > now for cd in acct.cooldowns.values()):
                counts["cooling_down"] += 1
            else:
                counts["active"] += 1
            for mid, q in acct.catalog.models.items():
                if q.listed and q.remaining_fraction is not None:
                    quota.add_metric((acct.email, mid), float(q.remaining_fraction))
            for group in acct.quota.groups.values() if acct.quota is not None else ():
                for bucket in (group.five_hour, group.weekly):
                    if bucket is not None:
                        windows.add_metric((acct.email, group.key, bucket.window), bucket.remaining_fraction)
        credits = GaugeMetricFamily(
            f"{PREFIX}_account_credits",
            "Google One AI credit balance per account, from the last loadCodeAssist.",
            labels=("account",),
        )
        for acct in list(pool.accounts.values()):
            if acct.credits.balance is not None:
                credits.add_metric((acct.email,), acct.credits.balance)
        for state, n in counts.items():
            states.add_metric((state,), n)
        yield credits
        yield states
        yield quota
        yield windows
        yield CounterMetricFamily(
            f"{PREFIX}_token_refreshes",
            "Access-token refreshes that succeeded.",
            value=pool.token_refreshes,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_token_refresh_failures",
            "Access-token refreshes that failed.",
            value=pool.token_refresh_failures,
        )
        mon = self._monitor()
        yield CounterMetricFamily(
            f"{PREFIX}_monitor_dropped_rows",
            "Request-log rows dropped (queue full or write failed).",
            value=mon.dropped,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_monitor_written_rows", "Request-log rows written.", value=mon.written
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_monitor_queue_depth",
            "Request-log rows waiting for the writer.",
            value=mon.pending,
        )
