"""Access tokens and account health, through real proxied requests.

One daemon (proxy running) for the module; every test leaves exactly ONE
account in it, so the requests it sends can only be served by that account.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon, base_config, free_port
from tests.fakes.google import APPEAL_URL, Account, FakeGoogle

MODEL = "gemini-3-flash"
BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


class Proxy:
    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.url = f"{d.base_url}/v1beta/models/{MODEL}:generateContent"
        self.headers = {"x-goog-api-key": d.api_key}

    def generate(self) -> httpx.Response:
        return httpx.post(self.url, headers=self.headers, json=BODY, timeout=30)

    def only(self, fake: FakeGoogle, email: str, **kw: Any) -> tuple[Account, str]:
        return only(self.d, fake, email, **kw)

    def account(self, email: str) -> dict[str, Any]:
        accounts: list[dict[str, Any]] = self.d.ctl_json("accounts", "list")["accounts"]
        (acc,) = [a for a in accounts if a["email"] == email]
        return acc


def only(d: Daemon, fake: FakeGoogle, email: str, **kw: Any) -> tuple[Account, str]:
    """Make ``email`` the daemon's only account; returns (fake account, account id)."""
    kw.setdefault("refresh_token", "1//0g" + secrets.token_hex(40))
    acct = fake.add_account(email=email, **kw)
    acc = d.admin("POST", "/accounts", json={"refresh_token": acct.refresh_token})["account"]
    for other in d.admin("GET", "/accounts")["accounts"]:
        if other["id"] != acc["id"]:
            d.admin("DELETE", f"/accounts/{other['id']}")
    return acct, acc["id"]


@pytest.fixture(scope="module")
def proxy(fake: FakeGoogle) -> Iterator[Proxy]:
    home = Path(tempfile.mkdtemp(prefix="ag-tok-", dir="/tmp"))
    d = Daemon(home)
    d.write_config(base_config(fake, free_port(), proxy={"auth_mode": "strict"}))
    d.start()
    try:
        only(d, fake, "tok-first@example.com")  # the proxy starts once there is an account
        if d.status["proxy"]["state"] != "running":
            d.admin("POST", "/proxy/start")
        yield Proxy(d)
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def g(fake: FakeGoogle) -> Iterator[FakeGoogle]:
    fake.reset()
    yield fake
    fake.reset()


def error_message(r: httpx.Response) -> str:
    return str(r.json()["error"]["message"])


def bearer(call: Any) -> str:
    return str(call.headers["authorization"]).removeprefix("Bearer ")


# ------------------------------------------------------------------ refresh timing


def test_refreshed_ahead_of_expiry(proxy: Proxy, g: FakeGoogle) -> None:
    # 200 s of life is inside the 300 s margin: every use refreshes first.
    acct, _ = proxy.only(g, "tok-ahead@example.com", expires_in=200)
    calls = acct.token_calls
    r = proxy.generate()
    assert r.status_code == 200, r.text
    assert acct.token_calls == calls + 1
    token_call, gen = g.calls_to("token")[-1], g.calls_to("generateContent")[-1]
    assert token_call.at < gen.at and token_call.body["grant_type"] == "refresh_token"

    # A token with an hour to live is used as it is.
    acct.expires_in = 3599
    assert proxy.generate().status_code == 200  # still the 200-s token: refreshed once more
    assert acct.token_calls == calls + 2
    used = bearer(g.calls_to("generateContent")[-1])
    for _ in range(3):
        assert proxy.generate().status_code == 200
    assert acct.token_calls == calls + 2
    assert {bearer(c) for c in g.calls_to("generateContent")[-3:]} == {used}


async def _burst(proxy: Proxy, n: int = 50) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(proxy.url, headers=proxy.headers, json=BODY) for _ in range(n))
        )


async def test_one_refresh_for_50_requests_on_an_expired_token(proxy: Proxy, g: FakeGoogle) -> None:
    # The daemon got a 1-second token: expired (by its own clock and Google's) when the burst comes.
    acct, _ = proxy.only(g, "tok-burst@example.com", expires_in=1)
    await asyncio.sleep(1.1)
    acct.expires_in = 3599
    g.token_delay = 0.5  # the 50 requests all arrive while the refresh is in flight
    calls = acct.token_calls
    responses = await _burst(proxy)
    assert [r.status_code for r in responses] == [200] * 50, responses[0].text
    assert acct.token_calls - calls == 1
    assert len({bearer(c) for c in g.calls_to("generateContent")}) == 1


async def test_one_refresh_for_50_requests_when_google_says_401(proxy: Proxy, g: FakeGoogle) -> None:
    # The daemon believes its token is good for an hour, but Google expired it: 50 x 401.
    acct, _ = proxy.only(g, "tok-burst-401@example.com")
    g.expire_tokens(acct.email)
    g.token_delay = 0.5
    calls = acct.token_calls
    responses = await _burst(proxy)
    assert [r.status_code for r in responses] == [200] * 50, responses[0].text
    assert acct.token_calls - calls == 1


async def test_one_refresh_for_50_requests_with_short_lived_tokens(proxy: Proxy, g: FakeGoogle) -> None:
    # Tokens that always live less than the margin: the waiters take the fresh one
    # instead of refreshing again, one after the other.
    acct, _ = proxy.only(g, "tok-burst-short@example.com", expires_in=120)
    g.token_delay = 0.5
    calls = acct.token_calls
    responses = await _burst(proxy)
    assert [r.status_code for r in responses] == [200] * 50, responses[0].text
    assert acct.token_calls - calls == 1


# ------------------------------------------------------------------ dead and failing refresh


def test_invalid_grant_disables_the_account(proxy: Proxy, g: FakeGoogle) -> None:
    acct, acc_id = proxy.only(g, "tok-revoked@example.com")
    assert proxy.generate().status_code == 200
    g.revoke(acct.email)  # refresh token dead, access tokens 401
    try:
        r = proxy.generate()
        assert r.status_code >= 400
        msg = error_message(r)
        assert "invalid_grant" in msg

        acc = proxy.account(acct.email)
        assert acc["state"] == "disabled" and "invalid_grant" in acc["disabled_reason"]
        table = proxy.d.ctl("accounts", "list").stdout
        assert "disabled: invalid_grant" in table
        saved = json.loads((proxy.d.home / "data" / "accounts" / f"{acc_id}.json").read_bytes())
        assert saved["enabled"] is False and "invalid_grant" in saved["disabled_reason"]

        # Out of rotation: no more calls to Google, and a clear reason for the client.
        before = len(g.calls)
        r = proxy.generate()
        assert r.status_code == 503
        msg = error_message(r)
        assert acct.email in msg and "invalid_grant" in msg and "agctl accounts" in msg
        assert len(g.calls) == before
    finally:
        acct.revoked = False
    # Signed in again upstream: enable brings it back.
    assert proxy.d.ctl("accounts", "enable", acct.email).returncode == 0
    assert proxy.generate().status_code == 200


def test_transient_token_failure_does_not_disable(proxy: Proxy, g: FakeGoogle) -> None:
    acct, _ = proxy.only(g, "tok-transient@example.com")
    g.expire_tokens(acct.email)
    g.token_fail_status = 500
    r = proxy.generate()
    assert r.status_code >= 500
    assert "token endpoint" in error_message(r)
    acc = proxy.account(acct.email)
    assert acc["state"] == "active" and acc["disabled_reason"] == ""

    g.token_fail_status = None
    time.sleep(1.1)  # the pool holds a failed refresh for a second (REFRESH_FAILURE_HOLD)
    r = proxy.generate()
    assert r.status_code == 200, r.text
    # `accounts refresh` while Google's token endpoint is down: fails, account kept.
    g.token_fail_status = 503
    res = proxy.d.ctl("accounts", "refresh", acct.email)
    assert res.returncode == 1 and "token endpoint" in res.stderr
    assert proxy.account(acct.email)["state"] == "active"


# ------------------------------------------------------------------ 403: validation, ToS


def test_validation_required_marks_the_account(proxy: Proxy, g: FakeGoogle) -> None:
    acct, acc_id = proxy.only(g, "tok-validate@example.com")
    acct.forbidden = "VALIDATION_REQUIRED"
    try:
        r = proxy.generate()
        # 403 (Google's answer) or 503 (no account left): either way it says why and where to go.
        assert r.status_code in (403, 503), r.text
        assert acct.validation_url in error_message(r)
        acc = proxy.account(acct.email)
        assert acc["state"] == "disabled"
        assert "validation" in acc["disabled_reason"].lower()
        assert acc["validation_url"] == acct.validation_url
        table = proxy.d.ctl("accounts", "list").stdout
        assert acct.validation_url in table and "validation required" in table

        # Never retried: the next request does not reach Google and says why.
        before = len(g.calls)
        r = proxy.generate()
        assert r.status_code == 503
        msg = error_message(r)
        assert acct.email in msg and "validation" in msg and acct.validation_url in msg
        assert "agctl accounts enable" in msg
        assert len(g.calls) == before
    finally:
        acct.forbidden = None
    res = proxy.d.ctl("accounts", "enable", acc_id)
    assert res.returncode == 0, res.stderr
    acc = proxy.account(acct.email)
    assert acc["state"] == "active" and acc["validation_url"] == ""
    r = proxy.generate()
    assert r.status_code == 200, r.text


def test_permission_denied_disables_the_account(proxy: Proxy, g: FakeGoogle) -> None:
    """A bare 403 "The caller does not have permission" (UPSTREAM.md §9.6e): the pool reads
    the project again before it tries once more; the same 403 on that read (this account
    is refused everything) disables the account."""
    acct, _ = proxy.only(g, "tok-perm@example.com")
    checks = len(g.calls_to("loadCodeAssist"))  # the add read the project once
    tries = len(g.calls_to("generateContent"))
    acct.forbidden = "PERMISSION_DENIED"
    try:
        r = proxy.generate()
        assert r.status_code in (403, 503), r.text
        assert "does not have permission" in error_message(r)
        acc = proxy.account(acct.email)
        assert acc["state"] == "disabled"
        reason = acc["disabled_reason"]
        assert "permission denied by Google" in reason and "does not have permission" in reason
        assert "agctl accounts enable" in reason
        assert acc["validation_url"] == ""
        assert len(g.calls_to("loadCodeAssist")) == checks + 1  # read again once: refused
        assert len(g.calls_to("generateContent")) == tries + 1  # so no second try
        assert "disabled: permission denied by Google" in proxy.d.ctl("accounts", "list").stdout
        # Not retried: the next request does not reach Google and says why.
        before = len(g.calls)
        r = proxy.generate()
        assert r.status_code == 503 and "does not have permission" in error_message(r)
        assert len(g.calls) == before
    finally:
        acct.forbidden = None
    assert proxy.d.ctl("accounts", "enable", acct.email).returncode == 0
    assert proxy.generate().status_code == 200


def test_tos_violation_disables_with_the_appeal_link(proxy: Proxy, g: FakeGoogle) -> None:
    """403 TOS_VIOLATION (UPSTREAM.md §9.6b): disabled at once, the note says an appeal is
    the only way back and where to file it."""
    acct, _ = proxy.only(g, "tok-tos@example.com")
    checks = len(g.calls_to("loadCodeAssist"))  # the add read the project once
    acct.forbidden = "TOS_VIOLATION"
    try:
        r = proxy.generate()
        assert r.status_code in (403, 503), r.text
        msg = error_message(r)
        assert acct.email in msg and "Terms of Service" in msg
        assert msg.count(APPEAL_URL) == 1, msg  # the link once, not repeated
        acc = proxy.account(acct.email)
        assert acc["state"] == "disabled"
        reason = acc["disabled_reason"]
        assert "Terms of Service" in reason and APPEAL_URL in reason
        assert "agctl accounts enable" in reason
        assert acc["validation_url"] == APPEAL_URL  # shown as the link to open
        table = proxy.d.ctl("accounts", "list").stdout
        assert "disabled: suspended by Google for a Terms of Service violation" in table
        assert f"open {APPEAL_URL}" in table
        assert len(g.calls_to("loadCodeAssist")) == checks  # no project re-check: it would not help
        before = len(g.calls)
        r = proxy.generate()
        assert r.status_code == 503 and "Terms of Service" in error_message(r)
        assert len(g.calls) == before
    finally:
        acct.forbidden = None
    assert proxy.d.ctl("accounts", "enable", acct.email).returncode == 0
    acc = proxy.account(acct.email)
    assert acc["state"] == "active" and acc["validation_url"] == ""
    assert proxy.generate().status_code == 200


def test_forbidden_found_by_accounts_refresh(proxy: Proxy, g: FakeGoogle) -> None:
    acct, _ = proxy.only(g, "tok-refresh-403@example.com")
    acct.forbidden = "VALIDATION_REQUIRED"
    try:
        res = proxy.d.ctl("accounts", "refresh", acct.email)
        assert res.returncode == 1
        # Names the account, says what Google wants and where to do it.
        assert acct.email in res.stderr and "verify" in res.stderr.lower()
        assert acct.validation_url in res.stderr and "agctl accounts enable" in res.stderr
        acc = proxy.account(acct.email)
        assert acc["state"] == "disabled" and acc["validation_url"] == acct.validation_url
    finally:
        acct.forbidden = None
    assert proxy.d.ctl("accounts", "enable", acct.email).returncode == 0


def test_token_never_in_log(proxy: Proxy, g: FakeGoogle) -> None:
    """Runs last: the whole log of the module's daemon, after refreshes, 401s, 403s."""
    log = proxy.d.log()
    assert "refresh" in log.lower() or "disabled" in log
    for token in [t for t, _ in g._tokens.items()]:
        assert token not in log
    for acct in g.accounts.values():
        if acct.email.startswith("tok-"):
            assert acct.refresh_token not in log
    time.sleep(0)  # nothing else to wait for
