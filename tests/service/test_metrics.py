"""Issue 7: ``GET /metrics`` (Prometheus text via prometheus-client).

A daemon of this module's own (accounts ``met-*``) so every counter delta is
exactly what the test did; the text is parsed with prometheus-client's own
parser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.metrics import upstream_error_kind
from tests.conftest import AdminError, Daemon, pooled_daemon
from tests.fakes.google import DEFAULT_MODELS, FakeGoogle, Reply

EMAILS = ("met-a@example.com", "met-b@example.com")
API_KEY = "sk-test-0123456789abcdef"
FAILOVER_MODEL = "gemini-2.5-flash"  # met-a is the pool's first choice for it
ALIAS_TARGET = "gemini-3.1-pro-low"
# The live catalog, but one model without quotaInfo (an entry Google could send: protobuf
# omits empty messages) to check that it gets no quota series.
MODELS: dict[str, dict[str, object]] = {mid: {} for mid in DEFAULT_MODELS} | {
    "gemini-2.5-pro": {"quotaInfo": None}
}
USAGE = {
    "promptTokenCount": 200,
    "candidatesTokenCount": 30,
    "thoughtsTokenCount": 4,
    "cachedContentTokenCount": 50,
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def met(fake: FakeGoogle) -> Iterator[Daemon]:
    for email in EMAILS:
        acct = fake.add_account(email=email, models=MODELS)
        if email != EMAILS[0]:
            # The whole Gemini group of met-b (quota is per group, UPSTREAM.md §4.1).
            acct.set_quota(FAILOVER_MODEL, 0.4)
    with pooled_daemon(fake, EMAILS, "ag-x-", models={"my-alias": ALIAS_TARGET}) as d:
        yield d


@pytest.fixture
def m(met: Daemon, fake: FakeGoogle) -> Iterator[Daemon]:
    fake.reset()
    yield met
    fake.reset()


def scrape(d: Daemon) -> tuple[str, Samples]:
    r = httpx.get(f"{d.base_url}/metrics", headers={"authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return r.text, samples


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def gen(d: Daemon, model: str, text: str = "hi") -> httpx.Response:
    return httpx.post(
        f"{d.base_url}/v1beta/models/{model}:generateContent",
        headers={"x-goog-api-key": API_KEY},
        json={"contents": [{"role": "user", "parts": [{"text": text}]}]},
        timeout=30,
    )


def test_metrics_need_the_key_in_strict_mode(m: Daemon) -> None:
    r = httpx.get(f"{m.base_url}/metrics")
    assert r.status_code == 401
    r = httpx.get(f"{m.base_url}/metrics", headers={"authorization": "Bearer sk-wrong-key-000000"})
    assert r.status_code == 401
    text, samples = scrape(m)
    assert "antigravity_requests_total" in text or "# TYPE antigravity_requests counter" in text
    # Only our registry: no process/platform collectors of the global one.
    assert "process_cpu_seconds_total" not in text and "python_info" not in text


def test_request_counters_histograms_and_tokens_move(m: Daemon, fake: FakeGoogle) -> None:
    _, before = scrape(m)
    fake.script([Reply(answer="counted", usage=USAGE)])
    r = gen(m, "gemini-3-flash")
    assert r.status_code == 200
    account = fake.calls_to("generateContent")[-1].email
    assert account in EMAILS
    r404 = gen(m, "no-such-model-metrics")
    assert r404.status_code == 404
    text, after = scrape(m)

    def d(name: str, **labels: str) -> float:
        return val(after, name, **labels) - val(before, name, **labels)

    ok = {"protocol": "gemini", "route": "generateContent", "model": "gemini-3-flash"}
    assert d("antigravity_requests_total", **ok, status="200") == 1
    assert d("antigravity_request_duration_seconds_count", **ok) == 1
    assert d("antigravity_time_to_first_byte_seconds_count", **ok) == 1
    assert d("antigravity_request_duration_seconds_bucket", **ok, le="300.0") == 1
    assert d("antigravity_request_duration_seconds_bucket", **ok, le="+Inf") == 1
    assert 0 < d("antigravity_request_duration_seconds_sum", **ok) < 30
    # Unknown client model strings never become labels: "other" / "none".
    bad = total(after, "antigravity_requests_total", status="404") - total(
        before, "antigravity_requests_total", status="404"
    )
    assert bad == 1
    assert "no-such-model-metrics" not in text
    assert "req_" not in text  # no request ids either

    tok = {"model": "gemini-3-flash", "account": account}
    assert d("antigravity_tokens_total", direction="input", **tok) == 200
    assert d("antigravity_tokens_total", direction="output", **tok) == 34
    assert d("antigravity_tokens_total", direction="thinking", **tok) == 4
    assert d("antigravity_tokens_total", direction="cached", **tok) == 50


def test_alias_and_family_fallback_are_labelled_by_upstream_model(m: Daemon) -> None:
    _, before = scrape(m)
    assert gen(m, "my-alias").status_code == 200  # [models] my-alias = ALIAS_TARGET
    # Family fallback: a Gemini Flash name in no catalog (as the Gemini CLI rewrites
    # names, CLIENTS.md) is served by the best Flash the pool has.
    assert gen(m, "gemini-9.9-flash-custom").status_code == 200
    text, after = scrape(m)
    key = {"protocol": "gemini", "route": "generateContent", "status": "200"}
    assert (
        val(after, "antigravity_requests_total", **key, model=ALIAS_TARGET)
        - val(before, "antigravity_requests_total", **key, model=ALIAS_TARGET)
        == 1
    )
    assert "gemini-9.9-flash-custom" not in text
    assert total(after, "antigravity_requests_total", model="other") == total(
        before, "antigravity_requests_total", model="other"
    )


def test_failover_and_upstream_errors(m: Daemon, fake: FakeGoogle) -> None:
    _, before = scrape(m)
    fake.script([Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay=60)], email=EMAILS[0])
    r = gen(m, FAILOVER_MODEL)
    assert r.status_code == 200, r.text
    assert [c.email for c in fake.calls_to("generateContent")] == list(EMAILS)
    _, after = scrape(m)
    assert (
        val(after, "antigravity_failovers_total", model=FAILOVER_MODEL)
        - val(before, "antigravity_failovers_total", model=FAILOVER_MODEL)
        == 1
    )
    assert (
        val(after, "antigravity_upstream_errors_total", kind="quota_exhausted", account=EMAILS[0])
        - val(before, "antigravity_upstream_errors_total", kind="quota_exhausted", account=EMAILS[0])
        == 1
    )
    # The account that took the 429 is cooling down now (its whole Gemini quota group,
    # UPSTREAM.md §9.1); the gauge says so at scrape time.
    acct = next(a for a in m.admin("GET", "/accounts")["accounts"] if a["email"] == EMAILS[0])
    assert set(acct["cooldowns"]) == {"group:gemini"}
    assert val(after, "antigravity_accounts", state="cooling_down") == 1
    assert val(after, "antigravity_accounts", state="active") == 1
    assert val(after, "antigravity_accounts", state="disabled") == 0
    assert (
        val(
            after,
            "antigravity_account_quota_remaining_ratio",
            account=EMAILS[1],
            model=FAILOVER_MODEL,
        )
        == 0.4
    )

    m.admin("POST", f"/accounts/{acct['id']}/reset")
    m.admin("POST", f"/accounts/{acct['id']}/disable")
    try:
        _, s = scrape(m)
        assert (
            val(s, "antigravity_accounts", state="disabled"),
            val(s, "antigravity_accounts", state="active"),
        ) == (1, 1)
    finally:
        m.admin("POST", f"/accounts/{acct['id']}/enable")
        m.admin("POST", f"/accounts/{acct['id']}/refresh")  # quota back from the fake
    _, s = scrape(m)
    assert val(s, "antigravity_accounts", state="active") == 2


def test_quota_gauge_follows_the_pool(m: Daemon, fake: FakeGoogle) -> None:
    _, s = scrape(m)
    series = {dict(ls)["model"] for (n, ls) in s if n == "antigravity_account_quota_remaining_ratio"}
    assert {"gemini-3-flash", "claude-sonnet-4-6"} <= series
    assert "gemini-2.5-pro" not in series  # no quotaInfo upstream: no series
    assert "chat_20706" not in series  # internal models are not offered
    assert "tab_flash_lite_preview" not in series  # nor IDE completion models
    fake.account(EMAILS[1]).set_quota("gemini-3.1-pro-low", 0.25)
    acct = next(a for a in m.admin("GET", "/accounts")["accounts"] if a["email"] == EMAILS[1])
    m.admin("POST", f"/accounts/{acct['id']}/refresh")
    _, s = scrape(m)
    assert (
        val(
            s,
            "antigravity_account_quota_remaining_ratio",
            account=EMAILS[1],
            model="gemini-3.1-pro-low",
        )
        == 0.25
    )
    assert (
        val(
            s,
            "antigravity_account_quota_remaining_ratio",
            account=EMAILS[0],
            model="gemini-3.1-pro-low",
        )
        == 1.0
    )
    # The 5-hour window of the group is what moved; Claude and the week did not.
    windows = {
        (dict(ls)["group"], dict(ls)["window"]): v
        for (n, ls), v in s.items()
        if n == "antigravity_account_quota_window_ratio" and dict(ls)["account"] == EMAILS[1]
    }
    assert windows == {
        ("gemini", "5h"): 0.25,
        ("gemini", "weekly"): 1.0,
        ("3p", "5h"): 1.0,
        ("3p", "weekly"): 1.0,
    }


def test_token_refresh_counters(m: Daemon, fake: FakeGoogle) -> None:
    _, before = scrape(m)
    acct = next(a for a in m.admin("GET", "/accounts")["accounts"] if a["email"] == EMAILS[1])
    m.admin("POST", f"/accounts/{acct['id']}/refresh")
    fake.token_fail_status = 500
    with pytest.raises(AdminError):
        m.admin("POST", f"/accounts/{acct['id']}/refresh")
    fake.token_fail_status = None
    _, after = scrape(m)
    assert (
        val(after, "antigravity_token_refreshes_total") - val(before, "antigravity_token_refreshes_total")
        == 1
    )
    assert (
        val(after, "antigravity_token_refresh_failures_total")
        - val(before, "antigravity_token_refresh_failures_total")
        == 1
    )


def test_monitor_rows_metrics(m: Daemon) -> None:
    _, before = scrape(m)
    assert gen(m, "gemini-3-flash").status_code == 200
    deadline = time.monotonic() + 5
    while True:  # the row is written by the monitor's thread, a batch later
        _, after = scrape(m)
        grown = val(after, "antigravity_monitor_written_rows_total") - val(
            before, "antigravity_monitor_written_rows_total"
        )
        if grown >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert grown == 1
    assert val(after, "antigravity_monitor_dropped_rows_total") == 0
    assert ("antigravity_monitor_queue_depth", ()) in after


def test_upstream_error_kinds() -> None:
    # What the dispatcher writes: the classifier's verdict, then Google's message.
    assert upstream_error_kind(429, "quota_exhausted: You have exhausted") == "quota_exhausted"
    assert upstream_error_kind(429, "capacity: No capacity available") == "capacity_exhausted"
    assert upstream_error_kind(429, "rate_limited: Resource has been exhausted") == "rate_limited"
    assert upstream_error_kind(429, "throttled: Resource has been exhausted") == "rate_limited"
    # The verdict word inside a message does not count: only the prefix does.
    assert upstream_error_kind(429, "rate_limited: not quota_exhausted") == "rate_limited"
    # Google's ErrorInfo reasons read the same.
    assert upstream_error_kind(429, "QUOTA_EXHAUSTED: You have exhausted") == "quota_exhausted"
    assert upstream_error_kind(429, "MODEL_CAPACITY_EXHAUSTED: no capacity") == "capacity_exhausted"
    assert upstream_error_kind(429, "RATE_LIMIT_EXCEEDED: slow down") == "rate_limited"
    assert upstream_error_kind(401, "") == "auth"
    assert upstream_error_kind(403, "") == "forbidden"
    assert upstream_error_kind(503, "") == "overloaded"
    assert upstream_error_kind(500, "") == "server_error"
    assert upstream_error_kind(504, "") == "timeout"
    assert upstream_error_kind(None, "empty answer") == "empty_answer"


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from daemon.metrics import _Histogram

    h = _Histogram("x_seconds", "doc", ("route",), (0.1, 1.0))
    for v in (0.1, 0.5, 1.0, 7.0):  # a value on a bound counts in that bucket (le)
        h.observe(("r",), v)

    class _One(Collector):
        def collect(self) -> Iterator[Metric]:
            yield h.family()

    reg = CollectorRegistry()
    reg.register(_One())
    text = generate_latest(reg).decode()
    assert 'x_seconds_bucket{le="0.1",route="r"} 1.0' in text
    assert 'x_seconds_bucket{le="1.0",route="r"} 3.0' in text
    assert 'x_seconds_bucket{le="+Inf",route="r"} 4.0' in text
    assert 'x_seconds_count{route="r"} 4.0' in text and 'x_seconds_sum{route="r"} 8.6' in text
