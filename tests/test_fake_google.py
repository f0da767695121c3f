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
    DEFAULT_MODELS,
    ERROR_BODIES,
    HUB_USER_AGENT,
    SKIP_SIGNATURE,
    FakeGoogle,
    Reply,
    count_tokens,
    go_duration,
)

GEMINI = "gemini-3-flash"
CLAUDE = "claude-sonnet-4-6"
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
        account.reset_quota()
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


def bearer(
    fake: FakeGoogle, email: str = "a@example.com", ua: str = HUB_USER_AGENT
) -> dict[str, str]:
    return {"authorization": "Bearer " + fake.issue_token(email), "user-agent": ua}


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
    # The live shape (UPSTREAM.md §3.3): currentTier is free-tier even for paying accounts.
    assert body["currentTier"]["id"] == "free-tier"
    assert [(t["id"], t.get("isDefault")) for t in body["allowedTiers"]] == [
        ("free-tier", True),
        ("standard-tier", None),
    ]
    assert body.get("paidTier", {}).get("id") == paid
    assert "availableCredits" not in body.get("paidTier", {})


def test_load_code_assist_metadata_enums(fake: FakeGoogle, client: httpx.Client) -> None:
    url = fake.endpoint + "/v1internal:loadCodeAssist"
    for metadata in (
        {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"},
        {"ide_type": "IDE_UNSPECIFIED"},
        {"ideType": 9, "platform": 2, "pluginType": 2},
    ):
        r = client.post(url, json={"metadata": metadata}, headers=bearer(fake))
        assert r.status_code == 200, (metadata, r.text)
    r = client.post(url, json={"metadata": {"platform": "DARWIN"}}, headers=bearer(fake))
    text = (
        "Invalid value at 'metadata.platform' (type.googleapis.com/google.internal.cloud.code."
        'v1internal.ClientMetadata.Platform), "DARWIN"'
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "code": 400,
            "message": text,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "metadata.platform", "description": text}],
                }
            ],
        }
    }
    r = client.post(url, json={"metadata": {"ide_type": "CLOUD_CODE"}}, headers=bearer(fake))
    assert r.status_code == 400
    assert error_message(r).startswith("Invalid value at 'metadata.ide_type'")
    assert "ClientMetadata.IdeType), \"CLOUD_CODE\"" in error_message(r)


def test_load_code_assist_credits(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.add_account("credits@example.com", tier="ULTRA", credits=25000)
    r = client.post(
        fake.endpoint + "/v1internal:loadCodeAssist",
        json={"metadata": {"ideType": "ANTIGRAVITY"}},
        headers=bearer(fake, "credits@example.com"),
    )
    assert r.json()["paidTier"]["availableCredits"] == [
        {"creditType": "GOOGLE_ONE_AI", "creditAmount": "25000", "minimumCreditAmountForUsage": "50"}
    ]


def post(
    client: httpx.Client, fake: FakeGoogle, method: str, body: Any, email: str = "a@example.com"
) -> httpx.Response:
    return client.post(f"{fake.endpoint}/v1internal:{method}", json=body, headers=bearer(fake, email))


def test_fetch_available_models_catalog(fake: FakeGoogle, client: httpx.Client) -> None:
    r = post(client, fake, "fetchAvailableModels", {"project": "proj-a"})
    assert r.status_code == 200
    body = r.json()
    assert body == post(client, fake, "fetchAvailableModels", {}).json()  # both bodies work
    models = body["models"]
    assert len(models) == 28 and set(models) == set(DEFAULT_MODELS)
    assert models["gemini-3.7-flash-medium"] | {"quotaInfo": None} == {
        "displayName": "Gemini 3.7 Flash (Medium)",
        "supportsImages": True,
        "supportsThinking": True,
        "thinkingBudget": 4000,
        "minThinkingBudget": 32,
        "recommended": True,
        "maxTokens": 1048576,
        "maxOutputTokens": 65536,
        "quotaInfo": None,
        "model": "MODEL_PLACEHOLDER_M299",
        "apiProvider": "API_PROVIDER_GOOGLE_GEMINI",
        "modelProvider": "MODEL_PROVIDER_GOOGLE",
        "supportsVideo": True,
        "tagTitle": "Fast",
        "tagDescription": "Limited time",
    }
    # Display-name traps and booleans only when true.
    assert models["gemini-3-flash-agent"]["displayName"] == "Gemini 3.5 Flash (High)"
    assert models["gemini-2.5-flash"]["displayName"] == "Gemini 3.1 Flash Lite"
    assert "supportsThinking" not in models["gemini-2.5-flash"]
    assert "displayName" not in models["gemini-3.7-flash-tiered"]
    assert models["claude-sonnet-4-6"]["displayName"] == "Claude Sonnet 4.6 (Thinking)"
    assert models["claude-opus-4-6-thinking"]["apiProvider"] == "API_PROVIDER_ANTHROPIC_VERTEX"
    assert models["claude-opus-4-6-thinking"]["modelProvider"] == "MODEL_PROVIDER_ANTHROPIC"
    assert models["gpt-oss-120b-medium"]["apiProvider"] == "API_PROVIDER_OPENAI_VERTEX"
    assert models["gpt-oss-120b-medium"]["maxOutputTokens"] == 32768
    assert models["chat_20706"]["isInternal"] is True
    assert models["chat_20706"]["apiProvider"] == "API_PROVIDER_INTERNAL"
    assert "isInternal" not in models["tab_flash_lite_preview"]
    assert models["gemini-pro-agent"]["thinkingBudget"] == 10001
    assert models["gemini-pro-agent"]["minThinkingBudget"] == 128
    assert all(v is not False for m in models.values() for v in m.values())
    # Top-level keys of the 2026-08-22 answer.
    assert body["defaultAgentModelId"] == "gemini-3.7-flash-high"
    assert body["agentModelSorts"][0]["groups"][0]["modelIds"][0] == "gemini-3.7-flash-high"
    assert body["commandModelIds"] == ["gemini-3-flash"]
    assert body["tabModelIds"] == ["chat_20706", "chat_23310"]
    assert body["imageGenerationModelIds"] == ["gemini-3.1-flash-image"]
    assert body["webSearchModelIds"] == ["gemini-3.1-flash-lite"]
    assert body["deprecatedModelIds"] == {
        "gemini-3.1-pro-high": {
            "newModelId": "gemini-pro-agent",
            "oldModelEnum": "MODEL_PLACEHOLDER_M37",
            "newModelEnum": "MODEL_PLACEHOLDER_M16",
        }
    }
    assert body["tieredModelIds"]["flash"] == ["gemini-3.7-flash-tiered"]
    assert all(isinstance(n, int) for n in body["experimentIds"])
    # A project that is not the account's, or an unknown field, is refused.
    assert post(client, fake, "fetchAvailableModels", {"project": "proj-b"}).status_code == 403
    assert post(client, fake, "fetchAvailableModels", {"metadata": {}}).status_code == 400


def test_quota_info_is_the_group_five_hour_bucket(fake: FakeGoogle, client: httpx.Client) -> None:
    acct = fake.accounts["a@example.com"]
    acct.set_bucket("gemini-5h", 0.9520131, "2030-01-01T14:57:17Z")
    acct.set_bucket("3p-5h", 0.999976, "2030-01-01T15:29:22Z")
    acct.set_bucket("gemini-weekly", 0.5, "2030-01-05T00:00:00Z")  # not shown per model
    models = post(client, fake, "fetchAvailableModels", {}).json()["models"]
    gemini = {"remainingFraction": 0.9520131, "resetTime": "2030-01-01T14:57:17Z"}
    third = {"remainingFraction": 0.999976, "resetTime": "2030-01-01T15:29:22Z"}
    for model_id, entry in models.items():
        if model_id.startswith(("chat_", "tab_")):
            assert entry["quotaInfo"] == {"remainingFraction": 1}, model_id
        elif model_id.startswith(("claude", "gpt")):
            assert entry["quotaInfo"] == third, model_id
        else:
            assert entry["quotaInfo"] == gemini, model_id
    # set_quota (the old per-model knob) moves the whole group's 5-hour bucket.
    acct.set_quota("claude-opus-4-6-thinking", 0.25)
    models = post(client, fake, "fetchAvailableModels", {}).json()["models"]
    assert models["gpt-oss-120b-medium"]["quotaInfo"]["remainingFraction"] == 0.25
    per_model = post(client, fake, "retrieveUserQuota", {"project": "proj-a"}).json()
    buckets = {b["modelId"]: b for b in per_model["buckets"]}
    assert set(buckets) == set(DEFAULT_MODELS)
    assert buckets["chat_20706"] == {
        "tokenType": "REQUESTS",
        "modelId": "chat_20706",
        "remainingFraction": 1,
    }
    assert buckets["gemini-3-flash"] == {
        "resetTime": "2030-01-01T14:57:17Z",
        "tokenType": "REQUESTS",
        "modelId": "gemini-3-flash",
        "remainingFraction": 0.9520131,
    }
    assert buckets["claude-sonnet-4-6"]["remainingFraction"] == 0.25


def test_quota_summary_shape(fake: FakeGoogle, client: httpx.Client) -> None:
    acct = fake.accounts["c@example.com"]
    acct.set_bucket("gemini-5h", 0.95, time.time() + 4 * 3600 + 23 * 60 + 30)
    acct.set_bucket("3p-weekly", 0.5, time.time() + 6 * 86400 + 23 * 3600 + 90)
    r = post(client, fake, "retrieveUserQuotaSummary", {}, email="c@example.com")
    assert r.status_code == 200
    body = r.json()
    assert body["description"].startswith("Within each group, models share a weekly limit")
    gemini, third = body["groups"]
    assert gemini["displayName"] == "Gemini Models"
    assert gemini["description"] == "Models within this group: Gemini Flash, Gemini Pro"
    assert third["displayName"] == "Claude and GPT models"
    assert [(b["bucketId"], b["window"], b["displayName"]) for b in gemini["buckets"]] == [
        ("gemini-weekly", "weekly", "Weekly Limit"),
        ("gemini-5h", "5h", "Five Hour Limit"),
    ]
    assert [b["bucketId"] for b in third["buckets"]] == ["3p-weekly", "3p-5h"]
    weekly, five = gemini["buckets"]
    assert weekly["remainingFraction"] == 1 and "description" not in weekly  # untouched
    assert weekly["resetTime"].endswith("Z")
    assert five["remainingFraction"] == 0.95
    assert five["description"] == (
        "You have used some of your 5-hour limit, it will fully refresh in 4 hours, 23 minutes."
    )
    assert third["buckets"][0]["description"] == (
        "You have used some of your weekly limit, it will fully refresh in 6 days, 23 hours."
    )
    same = post(client, fake, "retrieveUserQuotaSummary", {"project": "proj-c"}, "c@example.com")
    assert same.json()["groups"][0]["buckets"][1]["remainingFraction"] == 0.95
    text = 'Invalid JSON payload received. Unknown name "metadata": Cannot find field.'
    bad = post(client, fake, "retrieveUserQuotaSummary", {"metadata": {}}, "c@example.com")
    assert bad.status_code == 400
    assert bad.json() == {
        "error": {
            "code": 400,
            "message": text,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"description": text}],
                }
            ],
        }
    }


def test_forbidden_accounts(fake: FakeGoogle, client: httpx.Client) -> None:
    acct = fake.accounts["b@example.com"]
    acct.forbidden = "VALIDATION_REQUIRED"
    r = generate(client, fake, {"contents": [user("hi")]}, email="b@example.com")
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["message"] == "Verify your account to continue."
    info, help_links = error["details"]
    assert info["reason"] == "VALIDATION_REQUIRED"
    assert info["metadata"]["validation_url"] == acct.validation_url
    assert help_links["links"][0] == {"description": "Verify your account", "url": acct.validation_url}
    acct.forbidden = "TOS_VIOLATION"
    r = post(client, fake, "loadCodeAssist", {}, email="b@example.com")
    assert r.status_code == 403 and r.json() == ERROR_BODIES["TOS_VIOLATION"]
    acct.forbidden = "TOS"  # the old knob: a bare permission denial
    r = post(client, fake, "loadCodeAssist", {}, email="b@example.com")
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


def test_exhausted_five_hour_bucket_blocks_its_group_only(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    acct = fake.accounts["a@example.com"]
    acct.set_bucket("3p-5h", 0.0, reset_time=time.time() + 90)
    request = {"contents": [user("x")]}
    for model in ("claude-opus-4-6-thinking", CLAUDE, "gpt-oss-120b-medium"):
        r = generate(client, fake, request, model=model)
        assert r.status_code == 429, model
        error = r.json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert error["message"] in (
            "You have exhausted your capacity on this model. Your quota will reset after 1m29s.",
            "You have exhausted your capacity on this model. Your quota will reset after 1m30s.",
        )
        info, retry = error["details"]
        assert info["reason"] == "QUOTA_EXHAUSTED" and info["domain"] == "cloudcode-pa.googleapis.com"
        assert info["metadata"]["model"] == model and info["metadata"]["uiMessage"] == "true"
        assert info["metadata"]["quotaResetDelay"].startswith("1m")
        assert info["metadata"]["quotaResetTimeStamp"].endswith("Z")
        assert retry["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
        assert 85 < float(retry["retryDelay"].rstrip("s")) <= 90
    # The other group still works.
    assert generate(client, fake, request, model="gemini-3.1-pro-low").status_code == 200
    # A bucket whose reset time passed is full again.
    acct.set_bucket("3p-5h", 0.0, reset_time=time.time() - 1)
    assert generate(client, fake, request, model=CLAUDE).status_code == 200


def test_exhausted_weekly_bucket_wins_over_a_full_five_hour_one(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    acct = fake.accounts["a@example.com"]
    acct.set_bucket("gemini-weekly", 0.0, reset_time=time.time() + 71 * 3600 + 15 * 60 + 27.5)
    r = generate(client, fake, {"contents": [user("x")]}, model="gemini-3.1-pro-low")
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["message"] in {
        f"Individual quota reached. Contact your administrator to enable overages. Resets in {d}."
        for d in ("71h15m27s", "71h15m26s")
    }
    assert error["details"][0]["metadata"]["quotaResetDelay"].startswith("71h15m2")
    assert acct.bucket("gemini-5h").fraction == 1  # the 5-hour bucket is full, yet blocked
    assert generate(client, fake, {"contents": [user("x")]}, model=CLAUDE).status_code == 200
    # Google One AI credits pay for calls when quota is gone (UPSTREAM.md §4.4).
    body = envelope({"contents": [user("x")]}, model="gemini-3.1-pro-low")
    body["enabledCreditTypes"] = ["GOOGLE_ONE_AI"]
    url = fake.endpoint + "/v1internal:generateContent"
    r = client.post(url, json=body, headers=bearer(fake))
    assert r.status_code == 429
    assert r.json()["error"]["details"][0]["reason"] == "INSUFFICIENT_G1_CREDITS_BALANCE"
    acct.credits = 25000
    try:
        r = client.post(url, json=body, headers=bearer(fake))
        assert r.status_code == 200 and fake.calls[-1].credits is True
        body["enabledCreditTypes"] = ["PIXIE_DUST"]
        r = client.post(url, json=body, headers=bearer(fake))
        assert r.status_code == 400 and "enabled_credit_types[0]" in error_message(r)
    finally:
        acct.credits = None


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
