"""The late-2026 upstream end to end (UPSTREAM.md §4-§5, §9): model names from the
live catalog, the 5-hour and weekly windows in account selection, the envelope,
and what each class of Google error does to an account. The real daemon, the
official SDKs and the fake Google."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Daemon, pooled_daemon, reactivate_accounts
from tests.fakes.google import FakeGoogle

A, B = "w-a@example.com", "w-b@example.com"


@pytest.fixture(scope="module")
def two(fake: FakeGoogle) -> Iterator[Daemon]:
    for email in (A, B):
        fake.add_account(email=email)
    with pooled_daemon(fake, (A, B), "ag-w-") as d:
        yield d


@pytest.fixture
def daemon(two: Daemon, fake: FakeGoogle) -> Iterator[Daemon]:
    fake.reset()
    for email in (A, B):
        fake.account(email).reset_quota()
    reactivate_accounts(two)
    for email in (A, B):  # the pool reads the quota windows again
        assert two.ctl("accounts", "refresh", email).returncode == 0
    yield two
    fake.reset()


def _claude(d: Daemon) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=d.base_url, api_key=d.api_key, max_retries=0)


def _inference(fake: FakeGoogle, since: int) -> list[Any]:
    return [c for c in fake.calls[since:] if c.method in ("generateContent", "streamGenerateContent")]


# ------------------------------------------------------------------ model names


@pytest.mark.parametrize(
    ("asked", "served"),
    [
        ("claude-opus-5-5", "claude-opus-4-6-thinking"),  # today's Claude Code default: in no catalog
        ("opus", "claude-opus-4-6-thinking"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-6"),
        ("sonnet", "claude-sonnet-4-6"),
        ("claude-3-5-haiku-20241022", "claude-sonnet-4-6"),  # the cheapest Claude served
    ],
)
def test_claude_code_names_resolve_by_family_and_tier(
    daemon: Daemon, fake: FakeGoogle, asked: str, served: str
) -> None:
    n = len(fake.calls)
    raw = _claude(daemon).messages.with_raw_response.create(
        model=asked, max_tokens=200, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-antigravity-model"] == served
    msg = raw.parse()
    assert msg.model == asked  # the client's own name comes back
    assert [c.model for c in _inference(fake, n)] == [served]


def test_a_name_nobody_serves_is_a_404_listing_what_is_served(daemon: Daemon, fake: FakeGoogle) -> None:
    n = len(fake.calls)
    with pytest.raises(anthropic.NotFoundError) as info:
        _claude(daemon).messages.create(
            model="claude-mythic-9", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    assert "claude-sonnet-4-6" in str(info.value)
    assert not _inference(fake, n)  # never another model's answer


def test_gemini_cli_rewritten_names_stay_in_their_family(daemon: Daemon, fake: FakeGoogle) -> None:
    n = len(fake.calls)
    resp = httpx.post(
        f"{daemon.base_url}/v1beta/models/gemini-3.8-flash:generateContent",
        headers={"x-goog-api-key": daemon.api_key},
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    served = resp.headers["x-antigravity-model"]
    assert served.startswith("gemini-") and "flash" in served and "lite" not in served
    assert [c.model for c in _inference(fake, n)] == [served]


def test_model_lists_show_what_the_pool_serves_and_no_internal_models(daemon: Daemon) -> None:
    oai = openai.OpenAI(base_url=daemon.base_url + "/v1", api_key=daemon.api_key)
    ids = {m.id for m in oai.models.list()}
    assert {"claude-sonnet-4-6", "claude-opus-4-6-thinking", "gemini-3-flash", "gemini-pro-agent"} <= ids
    assert not {i for i in ids if i.startswith(("chat_", "tab_"))}
    assert "gemini-3.7-flash-tiered" not in ids  # no display name: not offered (§4.1)
    gem = httpx.get(daemon.base_url + "/v1beta/models", params={"key": daemon.api_key}, timeout=10).json()
    names = {m["name"] for m in gem["models"]}
    assert "models/gemini-3-flash" in names and not any("chat_" in n for n in names)
    flash = next(m for m in gem["models"] if m["name"] == "models/gemini-3-flash")
    assert flash["outputTokenLimit"] == 65536


# ------------------------------------------------------------------ quota windows


def test_an_empty_weekly_gemini_window_skips_the_account_for_gemini_only(
    daemon: Daemon, fake: FakeGoogle
) -> None:
    fake.account(A).set_bucket("gemini-weekly", 0.0, reset_time=time.time() + 5 * 86400)
    assert daemon.ctl("accounts", "refresh", A).returncode == 0
    listed = daemon.ctl("accounts", "list")
    assert "week 0%" in listed.stdout, listed.stdout
    oai = openai.OpenAI(base_url=daemon.base_url + "/v1", api_key=daemon.api_key, max_retries=0)
    n = len(fake.calls)
    for _ in range(4):
        oai.chat.completions.create(model="gemini-3-flash", messages=[{"role": "user", "content": "hi"}])
    assert {c.email for c in _inference(fake, n)} == {B}  # never tried for Gemini
    n = len(fake.calls)
    for _ in range(4):
        oai.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}])
    assert A in {c.email for c in _inference(fake, n)}  # still serves Claude
    windows = daemon.ctl_json("accounts", "list")["accounts"]
    a = next(x for x in windows if x["email"] == A)
    assert a["quota"]["groups"]["gemini"]["weekly"]["remaining_fraction"] == 0


# ------------------------------------------------------------------ envelope


def test_envelope_session_id_is_stable_and_no_user_project_header(daemon: Daemon, fake: FakeGoogle) -> None:
    oai = openai.OpenAI(base_url=daemon.base_url + "/v1", api_key=daemon.api_key)
    n = len(fake.calls)
    first = [{"role": "user", "content": "the same conversation"}]
    oai.chat.completions.create(model="gemini-3-flash", messages=first)
    oai.chat.completions.create(
        model="gemini-3-flash",
        messages=[*first, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "and more"}],
    )
    calls = _inference(fake, n)
    sessions = {c.body["request"]["sessionId"] for c in calls}
    assert len(calls) == 2 and len(sessions) == 1
    for c in calls:
        assert "x-goog-user-project" not in c.headers
        assert c.headers["user-agent"].startswith("antigravity/hub/")
        assert c.body["requestId"].startswith("agent-")


# ------------------------------------------------------------------ error classes


def _one_request(d: Daemon) -> httpx.Response:
    return _chat(d, "hi")


def _chat(d: Daemon, text: str) -> httpx.Response:
    return httpx.post(
        d.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {d.api_key}"},
        json={"model": "gemini-3-flash", "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )


def _account(d: Daemon, email: str) -> dict[str, Any]:
    accounts: list[dict[str, Any]] = d.ctl_json("accounts", "list")["accounts"]
    return next(a for a in accounts if a["email"] == email)


@pytest.mark.parametrize(
    ("kind", "state", "cooled"),
    [
        ("QUOTA_EXHAUSTED", "cooling_down", "group:gemini"),
        ("QUOTA_EXHAUSTED_WEEKLY", "cooling_down", "group:gemini"),
        ("RATE_LIMIT_EXCEEDED", "active", None),  # a sub-second delay: waited out on the same account
        ("MODEL_CAPACITY_EXHAUSTED", "active", None),
        ("RESOURCE_EXHAUSTED", "active", None),
        ("TOS_VIOLATION", "disabled", None),
        ("VALIDATION_REQUIRED", "disabled", None),
    ],
)
def test_what_an_error_does_to_the_account(
    daemon: Daemon, fake: FakeGoogle, kind: str, state: str, cooled: str | None
) -> None:
    fake.fail_next(kind, 1)
    n = len(fake.calls)
    resp = _one_request(daemon)
    assert resp.status_code == 200, resp.text  # the other account (or a retry) served it
    hit = next(c.email for c in fake.calls[n:] if c.status is not None and c.status >= 400 and c.email)
    acc = _account(daemon, hit)
    assert acc["state"] == state, (kind, acc)
    if cooled:
        assert cooled in acc["cooldowns"], acc["cooldowns"]
    if kind == "VALIDATION_REQUIRED":
        assert acc["validation_url"].startswith("https://accounts.google.com/")
    if kind == "TOS_VIOLATION":
        assert "appeal" in acc["disabled_reason"].lower() or acc["validation_url"].startswith(
            "https://forms.gle/"
        )


def test_a_throttle_that_persists_rests_the_account(fake: FakeGoogle) -> None:
    """§9.3, on a one-account pool (nothing else to serve): one bare 429 is a
    transient, so nothing rests and the caller is not told to wait minutes;
    the same account throttled again soon after rests for minutes, visibly,
    and is not asked again meanwhile."""
    email = "w-throttle@example.com"
    fake.add_account(email=email)
    with pooled_daemon(fake, [email], "ag-thr-") as d:
        fake.fail_next("RESOURCE_EXHAUSTED", 2, email=email)
        first = _chat(d, "one")
        assert first.status_code == 429, first.text
        assert "retry-after" not in first.headers
        assert not _account(d, email)["cooldowns"]
        second = _chat(d, "two")
        # The account now rests: the answer says until when.
        assert second.status_code == 503 and "until" in second.text, second.text
        acc = _account(d, email)
        assert acc["state"] == "cooling_down", acc
        assert "gemini-3-flash" in acc["cooldowns"], acc["cooldowns"]
        assert "THROTTLED" in json.dumps(acc["cooldowns"]), acc["cooldowns"]
        n = len(fake.calls)
        third = _chat(d, "three")
        assert third.status_code in (429, 503), third.text
        assert int(third.headers["retry-after"]) > 60
        assert _inference(fake, n) == []


def test_a_retry_on_the_same_account_has_its_own_request_id(daemon: Daemon, fake: FakeGoogle) -> None:
    """§5.1: requestId is unique per attempt; a sub-second rate limit is waited
    out on the same account (§9.2), and that second attempt is a new request."""
    fake.fail_next("RATE_LIMIT_EXCEEDED", 1)
    n = len(fake.calls)
    assert _chat(daemon, "once more").status_code == 200
    first, second = _inference(fake, n)
    assert (first.status, second.status) == (429, 200) and first.email == second.email
    assert first.body["requestId"] != second.body["requestId"]
    assert first.body["request"]["sessionId"] == second.body["request"]["sessionId"]


@pytest.mark.parametrize("kind", ["NOT_FOUND", "INVALID_ARGUMENT"])
def test_client_errors_touch_no_account_and_try_no_other(daemon: Daemon, fake: FakeGoogle, kind: str) -> None:
    fake.fail_next(kind, 1)
    n = len(fake.calls)
    resp = _one_request(daemon)
    assert 400 <= resp.status_code < 500, resp.text
    assert len(_inference(fake, n)) == 1  # no failover on 400/404 (§1.2)
    assert all(_account(daemon, e)["state"] == "active" for e in (A, B))
