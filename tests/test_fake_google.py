"""The fake Google (tests/fakes/google.py) behaves as UPSTREAM.md says, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fakes.google import (
    ANTIGRAVITY_CLIENT_ID,
    SKIP_SIGNATURE,
    FakeGoogle,
    Reply,
    count_tokens,
    go_duration,
)

GEMINI = "gemini-3-flash"
CLAUDE = "claude-sonnet-4-5-thinking"
THINKING = {
    "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048},
    "maxOutputTokens": 8192,
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.add_account(
            email="a@example.com", refresh_token="1//rt-a", project="proj-a", tier="PRO"
        )
        fake.add_account(
            email="b@example.com", refresh_token="1//rt-b", project="proj-b", tier="FREE"
        )
        fake.add_account(
            email="c@example.com", refresh_token="1//rt-c", project="proj-c", tier="ULTRA"
        )
        yield fake


@pytest.fixture
def fake(server: FakeGoogle) -> Iterator[FakeGoogle]:
    server.reset()
    for account in server.accounts.values():
        account.forbidden = None
        account.revoked = False
    yield server
    server.reset()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def refresh(client: httpx.Client, fake: FakeGoogle, token: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": ANTIGRAVITY_CLIENT_ID,
        "client_secret": "test-secret",
        **extra,
    }
    return client.post(fake.token_url, data=form)


def bearer(fake: FakeGoogle, email: str = "a@example.com") -> dict[str, str]:
    return {"authorization": "Bearer " + fake.issue_token(email)}


def envelope(
    request: dict[str, Any], model: str = GEMINI, project: str = "proj-a"
) -> dict[str, Any]:
    return {
        "project": project,
        "model": model,
        "requestId": "agent/1764000000000/0a1b2c3d",
        "userAgent": "antigravity",
        "requestType": "agent",
        "request": request,
    }


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def generate(
    client: httpx.Client, fake: FakeGoogle, request: dict[str, Any], model: str = GEMINI, **kw: Any
) -> httpx.Response:
    email = kw.pop("email", "a@example.com")
    project = kw.pop("project", fake.accounts[email].project)
    return client.post(
        fake.endpoint + "/v1internal:generateContent",
        json=envelope(request, model, project),
        headers=bearer(fake, email),
    )


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def error_message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


# ------------------------------------------------------------------ OAuth


def test_refresh_grant_issues_access_token_that_userinfo_accepts(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    fake.accounts["a@example.com"].expires_in = 1234
    r = refresh(client, fake, "1//rt-a")
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"].startswith("ya29.")
    assert body["expires_in"] == 1234 and body["token_type"] == "Bearer" and "scope" in body
    assert "refresh_token" not in body
    assert fake.token_calls == 1 and fake.accounts["a@example.com"].token_calls == 1
    assert fake.calls_to("token")[0].body["grant_type"] == "refresh_token"

    info = client.get(
        fake.userinfo_url, headers={"authorization": "Bearer " + body["access_token"]}
    )
    assert info.status_code == 200
    assert info.json()["email"] == "a@example.com" and info.json()["verified_email"] is True
    assert {"id", "name", "picture"} <= set(info.json())


def test_invalid_grant_for_unknown_and_revoked_tokens(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    r = refresh(client, fake, "1//nope")
    assert r.status_code == 400
    assert r.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }

    token = refresh(client, fake, "1//rt-b").json()["access_token"]
    fake.revoke("b@example.com")
    assert refresh(client, fake, "1//rt-b").json()["error"] == "invalid_grant"
    gone = client.get(fake.userinfo_url, headers={"authorization": "Bearer " + token})
    assert gone.status_code == 401 and gone.json()["error"]["status"] == "UNAUTHENTICATED"
    assert fake.token_calls == 3


def test_wrong_client_and_token_knobs(fake: FakeGoogle, client: httpx.Client) -> None:
    assert refresh(client, fake, "1//rt-a", client_secret="x").json() == {
        "error": "invalid_client",
        "error_description": "Unauthorized",
    }
    assert refresh(client, fake, "1//rt-a", client_id="other").status_code == 401

    fake.token_fail_status = 503
    assert refresh(client, fake, "1//rt-a").status_code == 503
    fake.token_fail_status = None
    fake.token_delay = 0.2
    start = time.perf_counter()
    assert refresh(client, fake, "1//rt-a").status_code == 200
    assert time.perf_counter() - start >= 0.19


def test_consent_redirect_and_pkce_code_exchange(fake: FakeGoogle, client: httpx.Client) -> None:
    verifier = "v" * 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect = "http://localhost:51121/oauth-callback"
    fake.consent_account = "c@example.com"
    params = {
        "client_id": ANTIGRAVITY_CLIENT_ID,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "openid https://www.googleapis.com/auth/cloud-platform",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }
    r = client.get(fake.auth_url, params=params)
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["state"] == "st4te" and query["code"].startswith("4/")
    assert fake.last_auth_params is not None and fake.last_auth_params["access_type"] == "offline"

    form = {
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": redirect,
        "client_id": ANTIGRAVITY_CLIENT_ID,
        "client_secret": "test-secret",
    }
    assert (
        client.post(fake.token_url, data={**form, "code_verifier": "wrong"}).json()["error"]
        == "invalid_grant"
    )
    mismatch = client.post(
        fake.token_url, data={**form, "redirect_uri": "http://x/", "code_verifier": verifier}
    )
    assert mismatch.json()["error"] == "redirect_uri_mismatch"
    ok = client.post(fake.token_url, data={**form, "code_verifier": verifier})
    assert ok.status_code == 200
    tokens = ok.json()
    assert (
        tokens["refresh_token"] == "1//rt-c"
        and tokens["id_token"]
        and tokens["access_token"].startswith("ya29.")
    )
    again = client.post(fake.token_url, data={**form, "code_verifier": verifier})
    assert again.json()["error"] == "invalid_grant"  # single use


def test_consent_denied_and_missing_params(fake: FakeGoogle, client: httpx.Client) -> None:
    base = {
        "client_id": ANTIGRAVITY_CLIENT_ID,
        "redirect_uri": "http://localhost:1/cb",
        "response_type": "code",
        "scope": "openid",
        "state": "s",
    }
    fake.consent_deny = True
    r = client.get(fake.auth_url, params=base)
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query) == {
        "error": ["access_denied"],
        "state": ["s"],
    }
    missing = client.get(
        fake.auth_url, params={k: v for k, v in base.items() if k != "redirect_uri"}
    )
    assert missing.status_code == 400 and "redirect_uri" in missing.text


def test_userinfo_rejects_bad_token(fake: FakeGoogle, client: httpx.Client) -> None:
    r = client.get(fake.userinfo_url, headers={"authorization": "Bearer ya29.bogus"})
    assert r.status_code == 401
    assert r.json()["error"]["message"].startswith("Request had invalid authentication credentials")


# ------------------------------------------------------------------ account methods


@pytest.mark.parametrize(
    ("email", "paid"),
    [("a@example.com", "g1-pro-tier"), ("b@example.com", None), ("c@example.com", "g1-ultra-tier")],
)
def test_load_code_assist_tier(
    fake: FakeGoogle, client: httpx.Client, email: str, paid: str | None
) -> None:
    r = client.post(
        fake.endpoint + "/v1internal:loadCodeAssist",
        json={"metadata": {"ideType": "ANTIGRAVITY"}},
        headers=bearer(fake, email),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["cloudaicompanionProject"] == fake.accounts[email].project
    assert body["currentTier"]["id"] == "standard-tier"
    assert body.get("paidTier", {}).get("id") == paid


def test_fetch_available_models_and_quota(fake: FakeGoogle, client: httpx.Client) -> None:
    acct = fake.accounts["a@example.com"]
    acct.set_quota("claude-opus-4-5-thinking", 0.25, reset_time="2030-01-01T00:00:00Z")
    url = fake.endpoint + "/v1internal:fetchAvailableModels"
    r = client.post(url, json={"project": "proj-a"}, headers=bearer(fake))
    assert r.status_code == 200
    models = r.json()["models"]
    assert {GEMINI, "gemini-2.5-pro", CLAUDE, "chat_20706"} <= set(models)
    assert models["chat_20706"]["isInternal"] is True
    assert "quotaInfo" not in models["gemini-2.5-pro"]
    assert models["claude-opus-4-5-thinking"]["quotaInfo"] == {
        "remainingFraction": 0.25,
        "resetTime": "2030-01-01T00:00:00Z",
    }
    assert {
        "displayName",
        "maxTokens",
        "maxOutputTokens",
        "supportsThinking",
        "supportsImages",
    } <= set(models[GEMINI])
    assert r.json()["deprecatedModelIds"] == {}
    wrong = client.post(url, json={"project": "proj-b"}, headers=bearer(fake))
    assert wrong.status_code == 403


def test_forbidden_accounts(fake: FakeGoogle, client: httpx.Client) -> None:
    acct = fake.accounts["b@example.com"]
    acct.forbidden = "VALIDATION_REQUIRED"
    r = generate(client, fake, {"contents": [user("hi")]}, email="b@example.com")
    assert r.status_code == 403
    error = r.json()["error"]
    assert "VALIDATION_REQUIRED" in error["message"] and acct.validation_url in error["message"]
    assert error["details"][0]["metadata"]["validation_url"] == acct.validation_url
    acct.forbidden = "TOS"
    r = client.post(
        fake.endpoint + "/v1internal:loadCodeAssist", json={}, headers=bearer(fake, "b@example.com")
    )
    assert r.status_code == 403
    assert r.json()["error"] == {
        "code": 403,
        "message": "The caller does not have permission",
        "status": "PERMISSION_DENIED",
    }


def test_v1internal_needs_valid_unexpired_token(fake: FakeGoogle, client: httpx.Client) -> None:
    body = envelope({"contents": [user("hi")]})
    url = fake.endpoint + "/v1internal:generateContent"
    assert client.post(url, json=body).status_code == 401
    headers = bearer(fake)
    assert client.post(url, json=body, headers=headers).status_code == 200
    fake.expire_tokens("a@example.com")
    r = client.post(url, json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["status"] == "UNAUTHENTICATED"
    assert r.json()["error"]["message"].startswith("Request had invalid authentication credentials")


def test_unknown_model_is_404(fake: FakeGoogle, client: httpx.Client) -> None:
    r = generate(client, fake, {"contents": [user("hi")]}, model="gpt-4o")
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }


def test_count_tokens_accepts_both_model_forms(fake: FakeGoogle, client: httpx.Client) -> None:
    request = {
        "contents": [user("count me please")],
        "systemInstruction": {"role": "user", "parts": [{"text": "be brief"}]},
    }
    expected = count_tokens(request)
    assert expected == count_tokens(
        {"contents": request["contents"], "system_instruction": request["systemInstruction"]}
    )
    for model in (GEMINI, "models/" + GEMINI):
        r = client.post(
            fake.endpoint + "/v1internal:countTokens",
            json={"request": {"model": model, **request}},
            headers=bearer(fake),
        )
        assert r.status_code == 200 and r.json() == {"totalTokens": expected}


# ------------------------------------------------------------------ generate / stream


def test_generate_default_reply(fake: FakeGoogle, client: httpx.Client) -> None:
    request = {"contents": [user("hello")]}
    r = generate(client, fake, request, email="c@example.com")
    assert r.status_code == 200
    body = r.json()
    assert body["traceId"]
    response = body["response"]
    candidate = response["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": f"Hello from {GEMINI} (c@example.com)"}]
    assert candidate["finishReason"] == "STOP"
    usage = response["usageMetadata"]
    assert usage["promptTokenCount"] == count_tokens(request)
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert response["modelVersion"] == GEMINI and response["responseId"]
    call = fake.calls[-1]
    assert (call.method, call.email, call.model, call.status) == (
        "generateContent",
        "c@example.com",
        GEMINI,
        200,
    )


def test_stream_events_arrive_separately(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script([Reply.text("one two three", chunks=3, delay=0.15)])
    arrivals: list[float] = []
    events: list[dict[str, Any]] = []
    with client.stream(
        "POST",
        fake.endpoint + "/v1internal:streamGenerateContent?alt=sse",
        json=envelope({"contents": [user("hi")]}),
        headers=bearer(fake),
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter())
                events.append(json.loads(line[6:]))
    assert len(events) == 3
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(gap > 0.1 for gap in gaps), gaps
    text = "".join(e["response"]["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text == "one two three"
    assert "finishReason" not in events[0]["response"]["candidates"][0]
    assert events[-1]["response"]["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" in events[-1]["response"]
    assert fake.streams_open == 0 and fake.streams_cancelled == 0


def test_scripts_per_account_before_global(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script([Reply.text("global")])
    fake.script([Reply.text("mine")], email="a@example.com")
    texts = []
    for _ in range(3):
        r = generate(client, fake, {"contents": [user("x")]})
        texts.append(r.json()["response"]["candidates"][0]["content"]["parts"][0]["text"])
    assert texts == ["mine", "global", f"Hello from {GEMINI} (a@example.com)"]


def test_error_reply_429_details(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script(
        [
            Reply.error(
                429,
                reason="QUOTA_EXHAUSTED",
                quota_reset_delay=5405,
                quota_reset_timestamp="2030-01-01T00:00:00Z",
                retry_delay=3.5,
                retry_after=7,
            )
        ]
    )
    r = generate(client, fake, {"contents": [user("x")]})
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    error = r.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    info, retry = error["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "QUOTA_EXHAUSTED" and info["domain"] == "cloudcode-pa.googleapis.com"
    assert info["metadata"] == {
        "model": GEMINI,
        "quotaResetDelay": "1h30m5s",
        "quotaResetTimeStamp": "2030-01-01T00:00:00Z",
    }
    assert retry == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}
    assert go_duration(0.5) == "500ms" and go_duration(42) == "42s"


def test_exhausted_quota_answers_429_by_itself(fake: FakeGoogle, client: httpx.Client) -> None:
    acct = fake.accounts["a@example.com"]
    acct.set_quota("gemini-3-pro-high", 0.0, reset_time=time.time() + 90)
    try:
        r = generate(client, fake, {"contents": [user("x")]}, model="gemini-3-pro-high")
        assert r.status_code == 429
        info = r.json()["error"]["details"][0]
        assert info["reason"] == "QUOTA_EXHAUSTED" and info["metadata"]["quotaResetDelay"] in (
            "1m30s",
            "1m29s",
        )
        assert (
            generate(client, fake, {"contents": [user("x")]}).status_code == 200
        )  # other model fine
    finally:
        acct.set_quota("gemini-3-pro-high", 1.0)


def test_drop_after_aborts_the_stream(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script([Reply.drop_after(2, Reply.text("abcdefgh", chunks=4))])
    seen = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream(
            "POST",
            fake.endpoint + "/v1internal:streamGenerateContent?alt=sse",
            json=envelope({"contents": [user("hi")]}),
            headers=bearer(fake),
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(line)
    assert len(seen) == 2
    assert fake.streams_cancelled == 0


def test_client_disconnect_is_counted(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script([Reply.text("abcdef", chunks=6, delay=0.2)])
    with client.stream(
        "POST",
        fake.endpoint + "/v1internal:streamGenerateContent?alt=sse",
        json=envelope({"contents": [user("hi")]}),
        headers=bearer(fake),
    ) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert fake.streams_open == 1
        # Leaving the block closes the response mid-stream: the client disconnects.
    deadline = time.monotonic() + 2
    while fake.streams_cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.streams_cancelled == 1 and fake.streams_open == 0


def test_empty_silence_and_max_tokens(fake: FakeGoogle, client: httpx.Client) -> None:
    url = fake.endpoint + "/v1internal:streamGenerateContent?alt=sse"
    body = envelope({"contents": [user("hi")]})
    fake.script([Reply.empty()])
    r = client.post(url, json=body, headers=bearer(fake))
    assert r.status_code == 200 and sse_events(r.text) == []

    fake.script([Reply.silence(0.3)])
    start = time.perf_counter()
    with client.stream("POST", url, json=body, headers=bearer(fake)) as r:
        headers_at = time.perf_counter() - start
        events = sse_events(r.read().decode())
    assert headers_at < 0.2 and time.perf_counter() - start >= 0.29 and events

    fake.script([Reply.max_tokens("cut off")])
    r = generate(client, fake, {"contents": [user("x")]})
    candidate = r.json()["response"]["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS" and candidate["content"]["parts"] == [
        {"text": "cut off"}
    ]

    fake.script([Reply.empty()])
    r = generate(client, fake, {"contents": [user("x")]})
    assert "parts" not in r.json()["response"]["candidates"][0]["content"]


def test_raw_reply_and_outage(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script(
        [Reply.raw({"candidates": [{"content": {"role": "model", "parts": [{"text": "r"}]}}]})]
    )
    r = generate(client, fake, {"contents": [user("x")]})
    assert r.json()["response"]["candidates"][0]["content"]["parts"] == [{"text": "r"}]
    fake.outage = 503
    assert generate(client, fake, {"contents": [user("x")]}).status_code == 503


# ------------------------------------------------------------------ request validation


def test_schema_validation_error(fake: FakeGoogle, client: httpx.Client) -> None:
    tools = [
        {
            "functionDeclarations": [
                {"name": "ok_tool", "parameters": {"type": "object", "properties": {}}},
                {
                    "name": "read_file",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "opts": {"type": "object", "additionalProperties": False},
                        },
                        "$schema": "http://json-schema.org/draft-07/schema#",
                    },
                },
            ]
        }
    ]
    r = generate(client, fake, {"contents": [user("x")], "tools": tools})
    assert r.status_code == 400
    assert error_message(r).split("\n") == [
        'Invalid JSON payload received. Unknown name "additionalProperties" at '
        "'request.tools[0].function_declarations[1].parameters.properties[1].value': "
        "Cannot find field.",
        'Invalid JSON payload received. Unknown name "$schema" at '
        "'request.tools[0].function_declarations[1].parameters': Cannot find field.",
    ]
    bad_name = [{"functionDeclarations": [{"name": "bad name!", "parameters": {"type": "object"}}]}]
    r = generate(client, fake, {"contents": [user("x")], "tools": bad_name})
    assert r.status_code == 400 and "Invalid function name" in error_message(r)


def test_snake_case_accepted_and_unknown_fields_rejected(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    request = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "hi"},
                    {"inline_data": {"mime_type": "image/png", "data": "AA=="}},
                ],
            }
        ],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "generation_config": {
            "max_output_tokens": 100,
            "thinking_config": {"include_thoughts": False},
        },
        "tools": [
            {
                "function_declarations": [
                    {"name": "f", "parameters": {"type": "OBJECT", "any_of": [{"type": "STRING"}]}}
                ]
            }
        ],
        "tool_config": {"function_calling_config": {"mode": "AUTO"}},
    }
    assert generate(client, fake, request).status_code == 200

    cache = {
        "contents": [
            {"role": "user", "parts": [{"text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ]
    }
    r = generate(client, fake, cache)
    assert r.status_code == 400
    assert error_message(r) == (
        'Invalid JSON payload received. Unknown name "cache_control" at '
        "'request.contents[0].parts[0]': Cannot find field."
    )


def test_system_instruction_string_and_empty_part(fake: FakeGoogle, client: httpx.Client) -> None:
    r = generate(client, fake, {"contents": [user("x")], "systemInstruction": "be nice"})
    assert r.status_code == 400 and "system_instruction" in error_message(r)
    r = generate(client, fake, {"contents": [{"role": "user", "parts": [{"text": "a"}, {}]}]})
    assert r.status_code == 400
    assert (
        "contents[0].parts[1].data: required oneof field 'data' must have one initialized field"
        in error_message(r)
    )
    r = generate(client, fake, {"contents": [{"role": "user", "parts": [{"text": ""}]}]})
    assert r.status_code == 400 and "oneof" in error_message(r)


# ------------------------------------------------------------------ gemini signatures


def gemini_tool_turn(
    fake: FakeGoogle, client: httpx.Client
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask the fake for a tool call; return (the model content it sent, the user turn)."""
    fake.script(
        [Reply.function_calls([("read_file", {"path": "a"}), ("read_file", {"path": "b"})])]
    )
    first = [user("read a and b")]
    r = generate(client, fake, {"contents": first, "generationConfig": THINKING})
    content = r.json()["response"]["candidates"][0]["content"]
    return content, first[0]


def responses_for(content: dict[str, Any]) -> dict[str, Any]:
    parts = []
    for part in content["parts"]:
        if "functionCall" in part:
            call = part["functionCall"]
            result: dict[str, Any] = {"name": call["name"], "response": {"output": "ok"}}
            if "id" in call:
                result["id"] = call["id"]
            parts.append({"functionResponse": result})
    return {"role": "user", "parts": parts}


def test_gemini_signature_on_first_call_and_round_trip(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    content, question = gemini_tool_turn(fake, client)
    calls = [p for p in content["parts"] if "functionCall" in p]
    assert len(calls) == 2 and "thoughtSignature" in calls[0] and "thoughtSignature" not in calls[1]
    assert (
        content["parts"][0].get("thought") is True
    )  # includeThoughts: the thought text comes first
    history = {
        "contents": [question, content, responses_for(content)],
        "generationConfig": THINKING,
    }
    assert generate(client, fake, history).status_code == 200


def test_gemini_missing_signature(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = gemini_tool_turn(fake, client)
    stripped = {
        "role": "model",
        "parts": [
            {k: v for k, v in p.items() if k != "thoughtSignature"} for p in content["parts"]
        ],
    }
    r = generate(client, fake, {"contents": [question, stripped, responses_for(content)]})
    assert r.status_code == 400
    assert error_message(r) == (
        "Function call is missing a thought_signature in functionCall parts. This is required "
        "for tools to work correctly, and missing thought_signature may lead to degraded model "
        "performance. Additional data, function call `default_api:read_file` , position 2. "
        "Please refer to "
        "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
    )
    # The same history in an OLD turn (a new user text follows) is not validated.
    later = {
        "contents": [
            question,
            stripped,
            responses_for(content),
            {"role": "model", "parts": [{"text": "done"}]},
            user("next"),
        ]
    }
    assert generate(client, fake, later).status_code == 200
    # The documented escape hatch.
    skipped = {"role": "model", "parts": [dict(p) for p in stripped["parts"]]}
    next(p for p in skipped["parts"] if "functionCall" in p)["thoughtSignature"] = SKIP_SIGNATURE
    assert (
        generate(
            client, fake, {"contents": [question, skipped, responses_for(content)]}
        ).status_code
        == 200
    )


def test_signatures_are_bytes(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = gemini_tool_turn(fake, client)
    resent = json.loads(json.dumps(content))
    first = next(p for p in resent["parts"] if "functionCall" in p)
    raw = base64.b64decode(first["thoughtSignature"])
    # The google-genai SDK sends bytes back URL-safe and unpadded: still the same signature.
    first["thoughtSignature"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    contents = [question, resent, responses_for(content)]
    assert generate(client, fake, {"contents": contents}).status_code == 200
    # The skip value is bytes too: its standard-alphabet spelling is accepted.
    first["thoughtSignature"] = base64.b64encode(base64.urlsafe_b64decode(SKIP_SIGNATURE)).decode()
    assert generate(client, fake, {"contents": contents}).status_code == 200
    first["thoughtSignature"] = "not base64!"
    r = generate(client, fake, {"contents": contents})
    assert r.status_code == 400
    assert error_message(r) == (
        "Invalid value at 'request.contents[1].parts[1].thought_signature' (TYPE_BYTES), "
        'Base64 decoding failed for "not base64!"'
    )


def test_gemini_corrupted_signature(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = gemini_tool_turn(fake, client)
    altered = json.loads(json.dumps(content))
    first = next(p for p in altered["parts"] if "functionCall" in p)
    first["thoughtSignature"] = first["thoughtSignature"][:-4] + "AAAA"
    r = generate(client, fake, {"contents": [question, altered, responses_for(content)]})
    assert r.status_code == 400 and error_message(r) == "Corrupted thought signature."
    # A Claude signature is foreign to Gemini.
    first["thoughtSignature"] = fake.sign(CLAUDE, thought="t")
    r = generate(client, fake, {"contents": [question, altered, responses_for(content)]})
    assert error_message(r) == "Corrupted thought signature."
    # check_signatures=False turns the rules off.
    fake.check_signatures = False
    assert (
        generate(
            client, fake, {"contents": [question, altered, responses_for(content)]}
        ).status_code
        == 200
    )


def test_gemini_thinking_text_reply_signs_last_part(fake: FakeGoogle, client: httpx.Client) -> None:
    r = generate(client, fake, {"contents": [user("hi")], "generationConfig": THINKING})
    parts = r.json()["response"]["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and "thoughtSignature" not in parts[0]
    assert "thoughtSignature" in parts[-1] and parts[-1]["text"].startswith("Hello from")
    assert "thoughtsTokenCount" in r.json()["response"]["usageMetadata"]


# ------------------------------------------------------------------ claude rules


def claude_tool_turn(
    fake: FakeGoogle, client: httpx.Client
) -> tuple[dict[str, Any], dict[str, Any]]:
    fake.script([Reply.function_call("get_weather", {"city": "Paris"})])
    question = user("weather?")
    r = generate(client, fake, {"contents": [question], "generationConfig": THINKING}, model=CLAUDE)
    assert r.status_code == 200, r.text
    return r.json()["response"]["candidates"][0]["content"], question


def claude_error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    inner = json.loads(error_message(response))
    assert inner["type"] == "error" and inner["error"]["type"] == "invalid_request_error"
    return str(inner["error"]["message"])


def test_claude_valid_tool_round_trip(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = claude_tool_turn(fake, client)
    thought, call = content["parts"]
    assert thought["thought"] is True and thought["thoughtSignature"] and thought["text"]
    assert call["functionCall"]["id"].startswith("toolu_vrtx_")
    history = {
        "contents": [question, content, responses_for(content)],
        "generationConfig": THINKING,
    }
    r = generate(client, fake, history, model=CLAUDE)
    assert r.status_code == 200, r.text


def test_claude_thinking_errors(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = claude_tool_turn(fake, client)
    thought, call = content["parts"]

    def send(model_parts: list[dict[str, Any]]) -> httpx.Response:
        contents = [question, {"role": "model", "parts": model_parts}, responses_for(content)]
        return generate(
            client, fake, {"contents": contents, "generationConfig": THINKING}, model=CLAUDE
        )

    unsigned = {k: v for k, v in thought.items() if k != "thoughtSignature"}
    assert (
        claude_error(send([unsigned, call]))
        == "messages.1.content.0.thinking.signature: Field required"
    )
    forged = {**thought, "text": thought["text"] + " (edited)"}
    assert (
        claude_error(send([forged, call]))
        == "messages.1.content.0: Invalid `signature` in `thinking` block"
    )
    foreign = {**thought, "thoughtSignature": fake.sign(GEMINI)}
    assert "Invalid `signature` in `thinking` block" in claude_error(send([foreign, call]))
    empty = {**thought, "text": ""}
    assert (
        claude_error(send([empty, call]))
        == "messages.1.content.0.thinking.thinking: Field required"
    )
    message = claude_error(send([call]))
    assert message.startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with a "
        "thinking block"
    )
    # Without thinking none of these apply.
    contents = [question, {"role": "model", "parts": [call]}, responses_for(content)]
    assert generate(client, fake, {"contents": contents}, model=CLAUDE).status_code == 200


def test_claude_structural_errors(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = claude_tool_turn(fake, client)
    prefill = {"contents": [question, {"role": "model", "parts": [{"text": "Sure"}]}]}
    assert claude_error(generate(client, fake, prefill, model=CLAUDE)).startswith(
        "This model does not support assistant message prefill"
    )
    budget = {"contents": [question], "generationConfig": {**THINKING, "maxOutputTokens": 1000}}
    assert "`max_tokens` must be greater than `thinking.budget_tokens`" in claude_error(
        generate(client, fake, budget, model=CLAUDE)
    )

    def ask(results: dict[str, Any]) -> str:
        contents = [question, content, results]
        return claude_error(
            generate(
                client, fake, {"contents": contents, "generationConfig": THINKING}, model=CLAUDE
            )
        )

    extra = responses_for(content)
    foreign = {
        "functionResponse": {"name": "get_weather", "id": "toolu_vrtx_other", "response": {}}
    }
    extra["parts"].append(foreign)
    assert ask(extra).startswith(
        "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: "
        "toolu_vrtx_other."
    )
    unanswered = {"role": "user", "parts": [foreign]}
    assert ask(unanswered).startswith(
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after"
    )
    no_name = responses_for(content)
    del no_name["parts"][0]["functionResponse"]["name"]
    r = generate(client, fake, {"contents": [question, content, no_name]}, model=CLAUDE)
    assert r.status_code == 400 and "function_response.name" in error_message(r)


def test_claude_stream_thinking_shape(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.script([Reply.thinking("Let me think hard.", then_text="Answer.", chunks=2)])
    r = client.post(
        fake.endpoint + "/v1internal:streamGenerateContent?alt=sse",
        json=envelope({"contents": [user("q")], "generationConfig": THINKING}, model=CLAUDE),
        headers=bearer(fake),
    )
    parts = [
        p for e in sse_events(r.text) for p in e["response"]["candidates"][0]["content"]["parts"]
    ]
    assert parts[0] == {"text": "Let me th", "thought": True} and parts[1] == {
        "text": "ink hard.",
        "thought": True,
    }
    assert parts[2] == {"thought": True, "text": ""}
    assert set(parts[3]) == {"thought", "thoughtSignature"}
    assert "".join(p["text"] for p in parts[4:]) == "Answer."
    # Merged back (identical text + the closing signature) it is accepted.
    merged = {
        "text": "Let me think hard.",
        "thought": True,
        "thoughtSignature": parts[3]["thoughtSignature"],
    }
    contents = [user("q"), {"role": "model", "parts": [merged, {"text": "Answer."}]}, user("more")]
    assert (
        generate(
            client, fake, {"contents": contents, "generationConfig": THINKING}, model=CLAUDE
        ).status_code
        == 200
    )


# ------------------------------------------------------------------ public Gemini API and async use


def test_public_gemini_api(fake: FakeGoogle, client: httpx.Client) -> None:
    url = fake.base_url + f"/v1beta/models/{GEMINI}"
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generation_config": {"max_output_tokens": 10},
    }
    r = client.post(url + ":generateContent", json=body, headers={"x-goog-api-key": "anything"})
    assert r.status_code == 200
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Hello from")
    fake.script([Reply.text("abc", chunks=3)])
    r = client.post(url + ":streamGenerateContent", params={"alt": "sse", "key": "k"}, json=body)
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in sse_events(r.text)] == [
        "a",
        "b",
        "c",
    ]
    assert client.post(url + ":generateContent", json=body).status_code == 403  # no key at all


async def test_usable_from_async_tests(fake: FakeGoogle) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            fake.endpoint + "/v1internal:generateContent",
            json=envelope({"contents": [user("hi")]}),
            headers=bearer(fake),
        )
    assert r.status_code == 200


def test_stream_variants(fake: FakeGoogle, client: httpx.Client) -> None:
    body = envelope({"contents": [user("hi")], "generationConfig": THINKING})
    url = fake.endpoint + "/v1internal:streamGenerateContent"
    # Without alt=sse Google streams one JSON array.
    fake.script([Reply.text("xy", chunks=2)])
    r = client.post(url, json=body, headers=bearer(fake))
    assert [e["response"]["candidates"][0]["content"]["parts"][-1]["text"] for e in r.json()][
        -2:
    ] == [
        "x",
        "y",
    ]
    # Gemini "carrier": the signature comes on an extra empty-text part, which may be sent back.
    fake.script([Reply.thinking("hmm", then_text="ok", carrier=True)])
    r = client.post(url + "?alt=sse", json=body, headers=bearer(fake))
    parts = [
        p for e in sse_events(r.text) for p in e["response"]["candidates"][0]["content"]["parts"]
    ]
    assert parts[-1]["text"] == "" and parts[-1]["thoughtSignature"]
    history = [user("hi"), {"role": "model", "parts": parts}, user("again")]
    assert generate(client, fake, {"contents": history}).status_code == 200
    # A scripted error on a stream is a plain JSON error answer.
    fake.script([Reply.error(503)])
    r = client.post(url + "?alt=sse", json=body, headers=bearer(fake))
    assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"


def test_public_count_tokens(fake: FakeGoogle, client: httpx.Client) -> None:
    request = {"contents": [user("how many?")]}
    r = client.post(
        fake.base_url + f"/v1beta/models/{GEMINI}:countTokens",
        json=request,
        headers={"x-goog-api-key": "k"},
    )
    assert r.json() == {"totalTokens": count_tokens(request)}
