"""The pool against accounts that differ from each other, end to end: the
real daemon, an OpenAI client over HTTP, the fake Google (which answers a
model outside an account's catalog with 404, UPSTREAM.md §9.7, and a project
that is no longer the account's with 403 SUBSCRIPTION_REQUIRED, §9.6c).

- an account whose catalog lacks the model is never sent it while another
  account lists it: its 404 would end the request as the caller's error;
- an account whose managed project moved gets a 403, its project is read
  again (loadCodeAssist) and the same request is served on it.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.conftest import Daemon, pooled_daemon
from tests.fakes.google import FakeGoogle

CLAUDE = "claude-sonnet-4-6"


def chat(d: Daemon, model: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{d.base_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {d.api_key}"},
        timeout=30,
    )


def model_calls(fake: FakeGoogle, model: str, since: int = 0) -> list[Any]:
    return [c for c in fake.calls[since:] if c.method == "generateContent" and c.model == model]


def test_an_account_without_the_model_is_not_sent_it(fake: FakeGoogle) -> None:
    # A free account with Gemini only, beside a Pro account with the whole catalog.
    fake.add_account("cat-free@example.com", tier="FREE", models={"gemini-3-flash": {}})
    fake.add_account("cat-pro@example.com")
    with pooled_daemon(fake, ["cat-free@example.com", "cat-pro@example.com"], "ag-cat-") as d:
        since = len(fake.calls)
        for i in range(4):  # balance mode takes the two accounts in turn
            r = chat(d, CLAUDE, f"question {i}")
            assert r.status_code == 200, r.text
        calls = model_calls(fake, CLAUDE, since)
        assert [c.email for c in calls] == ["cat-pro@example.com"] * 4
        assert all(c.status == 200 for c in calls)
        # Both still serve the model they share.
        for i in range(4):
            r = chat(d, "gemini-3-flash", f"hello {i}")
            assert r.status_code == 200, r.text
        served = {c.email for c in model_calls(fake, "gemini-3-flash", since)}
        assert served == {"cat-free@example.com", "cat-pro@example.com"}


def test_a_moved_project_is_read_again_and_the_request_served(fake: FakeGoogle) -> None:
    fake.add_account("moved@example.com")
    with pooled_daemon(fake, ["moved@example.com"], "ag-moved-") as d:
        assert chat(d, CLAUDE, "before").status_code == 200
        fake.account("moved@example.com").project = "proj-moved-elsewhere"
        since = len(fake.calls)
        r = chat(d, CLAUDE, "after the move")
        assert r.status_code == 200, r.text
        seen = [(c.method, c.status) for c in fake.calls[since:] if c.api == "v1internal"]
        assert seen[0] == ("generateContent", 403), seen
        assert ("loadCodeAssist", 200) in seen and seen[-1] == ("generateContent", 200), seen
        last = model_calls(fake, CLAUDE, since)[-1]
        assert last.body["project"] == "proj-moved-elsewhere"
        (acct,) = d.admin("GET", "/accounts")["accounts"]
        assert acct["enabled"] is True
        # The next request goes out with the new project at once.
        since = len(fake.calls)
        assert chat(d, CLAUDE, "next").status_code == 200
        assert [(c.method, c.status) for c in fake.calls[since:] if c.api == "v1internal"] == [
            ("generateContent", 200)
        ]


def test_when_the_accounts_that_list_it_rest_the_others_are_not_asked(fake: FakeGoogle) -> None:
    """The Pro account (the only one with Claude) runs out of Claude quota: the
    answer says when it serves again; the free account is never sent Claude."""
    fake.add_account("rest-free@example.com", tier="FREE", models={"gemini-3-flash": {}})
    fake.add_account("rest-pro@example.com")
    with pooled_daemon(fake, ["rest-free@example.com", "rest-pro@example.com"], "ag-rest-") as d:
        fake.fail_next("QUOTA_EXHAUSTED", 1, email="rest-pro@example.com")
        since = len(fake.calls)
        r = chat(d, CLAUDE, "after the quota")
        assert r.status_code in (429, 503), r.text
        assert "until" in r.text or "reset" in r.text.lower(), r.text
        assert [c.email for c in model_calls(fake, CLAUDE, since)] == ["rest-pro@example.com"]


def test_parallel_requests_with_a_moved_project_keep_the_account(fake: FakeGoogle) -> None:
    """Several requests in flight with the old project all get the 403: one
    read of the project serves them all, and none of them counts as the 403
    coming back after that read (which would disable the account)."""
    fake.add_account("moved-par@example.com")
    with pooled_daemon(fake, ["moved-par@example.com"], "ag-movp-") as d:
        assert chat(d, CLAUDE, "before").status_code == 200
        fake.account("moved-par@example.com").project = "proj-moved-par"
        results: list[int] = []

        def one(i: int) -> None:
            results.append(chat(d, CLAUDE, f"parallel {i}").status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [200] * 4
        (acct,) = d.admin("GET", "/accounts")["accounts"]
        assert acct["enabled"] is True, acct
