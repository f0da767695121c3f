"""AI credits as an opt-in fallback when quota is spent (UPSTREAM.md §4.4), end to end:
the real daemon, agctl and the fake Google."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon, pooled_daemon
from tests.fakes.google import FakeGoogle

EMAIL = "credits@example.com"
MODEL = "gemini-3-flash"


@pytest.fixture(scope="module")
def paying(fake: FakeGoogle) -> Iterator[tuple[Daemon, Any]]:
    acct = fake.add_account(email=EMAIL, credits=1000)
    # The Gemini 5-hour window is used up until tomorrow: free quota cannot serve.
    acct.set_bucket("gemini-5h", 0.0, reset_time=time.time() + 86400)
    with pooled_daemon(fake, [EMAIL], "ag-cr-", credits={"daily_limit": 25}) as d:
        yield d, acct


def _ask(d: Daemon) -> httpx.Response:
    return httpx.post(
        d.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {d.api_key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def _credit_calls(fake: FakeGoogle) -> list[Any]:
    return [c for c in fake.calls if c.email == EMAIL and getattr(c, "credits", False)]


def _account(d: Daemon) -> dict[str, Any]:
    data = d.ctl_json("accounts", "list")
    acc: dict[str, Any] = next(a for a in data["accounts"] if a["email"] == EMAIL)
    return acc


def _wait_spent(d: Daemon, spent: float) -> dict[str, Any]:
    deadline = time.time() + 10
    while True:
        acc = _account(d)
        if acc["credits"]["spent_today"] >= spent or time.time() > deadline:
            return acc
        time.sleep(0.1)


def test_credits_off_by_default_and_the_balance_shows(paying: tuple[Daemon, Any], fake: FakeGoogle) -> None:
    d, _ = paying
    before = len(_credit_calls(fake))
    resp = _ask(d)
    assert resp.status_code in (429, 503), resp.text  # quota spent, credits off
    assert len(_credit_calls(fake)) == before  # never spent while off
    acc = _account(d)
    assert acc["credits"]["balance"] == 1000
    out = d.ctl("credits")
    assert out.returncode == 0
    assert "credits  off" in out.stdout and "25 credits per account per day" in out.stdout


def test_credits_pay_when_quota_is_spent_up_to_the_cap(paying: tuple[Daemon, Any], fake: FakeGoogle) -> None:
    d, acct = paying
    on = d.ctl("credits", "on")
    assert on.returncode == 0 and "25 credits per account per day" in on.stdout
    resp = _ask(d)
    assert resp.status_code == 200, resp.text
    paid = _credit_calls(fake)
    assert paid and paid[-1].body.get("enabledCreditTypes") == ["GOOGLE_ONE_AI"]
    acc = _wait_spent(d, 10)
    assert acc["credits"]["requests_today"] == 1 and acc["credits"]["spent_today"] == 10
    assert acc["credits"]["balance"] == 990

    # The request log marks it; /metrics counts it and shows the balance.
    rows = d.ctl_json("logs", "-n", "5")
    rows = rows["rows"]
    assert any(r.get("credits") == 1 and r.get("account") == EMAIL for r in rows), rows
    metrics = httpx.get(
        d.base_url + "/metrics", headers={"authorization": f"Bearer {d.api_key}"}, timeout=10
    ).text
    assert f'antigravity_credit_requests_total{{account="{EMAIL}"}} 1.0' in metrics
    assert f'antigravity_account_credits{{account="{EMAIL}"}} 990.0' in metrics

    # 10 + 10 spent, then the cap (25) stops the third: 20 < 25 allows one more, 30 > 25.
    assert _ask(d).status_code == 200
    _wait_spent(d, 20)
    assert _ask(d).status_code == 200
    _wait_spent(d, 30)
    n = len(_credit_calls(fake))
    assert _ask(d).status_code in (429, 503)  # past credits.daily_limit
    assert len(_credit_calls(fake)) == n

    # The day's count survives a restart.
    d.stop()
    d.start()
    assert _account(d)["credits"]["spent_today"] == 30


def test_out_of_credits_stops_the_fallback_until_a_balance_is_seen(
    paying: tuple[Daemon, Any], fake: FakeGoogle
) -> None:
    d, acct = paying
    d.ctl("config", "set", "credits.daily_limit", "1000")
    acct.credits = 0  # spent elsewhere: the daemon still believes 970
    first = _ask(d)
    assert first.status_code in (429, 503)
    assert _account(d)["credits"]["exhausted"] is True
    # A position in the session's fake.calls (other accounts' calls may be in it).
    calls = len(fake.calls)
    assert _ask(d).status_code in (429, 503)
    # No credit attempt for an account whose balance answer said it is out.
    assert not [
        c
        for c in fake.calls[calls:]
        if c.email == EMAIL and isinstance(c.body, dict) and c.body.get("enabledCreditTypes")
    ]
    acct.credits = 500
    assert d.ctl("accounts", "refresh", EMAIL).returncode == 0
    assert _account(d)["credits"]["exhausted"] is False
    assert _ask(d).status_code == 200


def test_credits_off_again(paying: tuple[Daemon, Any], fake: FakeGoogle) -> None:
    d, _ = paying
    off = d.ctl("credits", "off")
    assert off.returncode == 0 and "never spent" in off.stdout
    n = len(_credit_calls(fake))
    assert _ask(d).status_code in (429, 503)
    assert len(_credit_calls(fake)) == n
