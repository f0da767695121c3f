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
    ERROR_STATUS,
    HUB_USER_AGENT,
    LEGACY_MODELS,
    SKIP_SIGNATURE,
    FakeGoogle,
    Reply,
    client_version,
    count_tokens,
    error_body,
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
        fake.add_account(email="a@example.com", refresh_token="1//rt-a", project="proj-a", tier="PRO")
        fake.add_account(email="b@example.com", refresh_token="1//rt-b", project="proj-b", tier="FREE")
        fake.add_account(email="c@example.com", refresh_token="1//rt-c", project="proj-c", tier="ULTRA")
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


def bearer(fake: FakeGoogle, email: str = "a@example.com", ua: str = HUB_USER_AGENT) -> dict[str, str]:
    return {"authorization": "Bearer " + fake.issue_token(email), "user-agent": ua}


def envelope(request: dict[str, Any], model: str = GEMINI, project: str = "proj-a") -> dict[str, Any]:
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

    info = client.get(fake.userinfo_url, headers={"authorization": "Bearer " + body["access_token"]})
    assert info.status_code == 200
    assert info.json()["email"] == "a@example.com" and info.json()["verified_email"] is True
    assert {"id", "name", "picture"} <= set(info.json())


def test_invalid_grant_for_unknown_and_revoked_tokens(fake: FakeGoogle, client: httpx.Client) -> None:
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
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
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
    missing = client.get(fake.auth_url, params={k: v for k, v in base.items() if k != "redirect_uri"})
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
def test_load_code_assist_tier(fake: FakeGoogle, client: httpx.Client, email: str, paid: str | None) -> None:
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
    assert 'ClientMetadata.IdeType), "CLOUD_CODE"' in error_message(r)


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
    # An exhausted bucket: proto3 JSON leaves the zero out (UPSTREAM.md §4.1).
    acct.set_quota("claude-opus-4-6-thinking", 0.0)
    models = post(client, fake, "fetchAvailableModels", {}).json()["models"]
    assert models["claude-sonnet-4-6"]["quotaInfo"] == {"resetTime": "2030-01-01T15:29:22Z"}
    per_model = post(client, fake, "retrieveUserQuota", {"project": "proj-a"}).json()
    assert "remainingFraction" not in {b["modelId"]: b for b in per_model["buckets"]}["claude-sonnet-4-6"]


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


def test_exhausted_five_hour_bucket_blocks_its_group_only(fake: FakeGoogle, client: httpx.Client) -> None:
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
    fake.script([Reply.raw({"candidates": [{"content": {"role": "model", "parts": [{"text": "r"}]}}]})])
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


def test_snake_case_accepted_and_unknown_fields_rejected(fake: FakeGoogle, client: httpx.Client) -> None:
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
        "contents": [{"role": "user", "parts": [{"text": "hi", "cache_control": {"type": "ephemeral"}}]}]
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


def gemini_tool_turn(fake: FakeGoogle, client: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask the fake for a tool call; return (the model content it sent, the user turn)."""
    fake.script([Reply.function_calls([("read_file", {"path": "a"}), ("read_file", {"path": "b"})])])
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


def test_gemini_signature_on_first_call_and_round_trip(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = gemini_tool_turn(fake, client)
    calls = [p for p in content["parts"] if "functionCall" in p]
    assert len(calls) == 2 and "thoughtSignature" in calls[0] and "thoughtSignature" not in calls[1]
    assert content["parts"][0].get("thought") is True  # includeThoughts: the thought text comes first
    history = {
        "contents": [question, content, responses_for(content)],
        "generationConfig": THINKING,
    }
    assert generate(client, fake, history).status_code == 200


def test_gemini_missing_signature(fake: FakeGoogle, client: httpx.Client) -> None:
    content, question = gemini_tool_turn(fake, client)
    stripped = {
        "role": "model",
        "parts": [{k: v for k, v in p.items() if k != "thoughtSignature"} for p in content["parts"]],
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
        generate(client, fake, {"contents": [question, skipped, responses_for(content)]}).status_code == 200
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
        generate(client, fake, {"contents": [question, altered, responses_for(content)]}).status_code == 200
    )


def test_gemini_thinking_text_reply_signs_last_part(fake: FakeGoogle, client: httpx.Client) -> None:
    r = generate(client, fake, {"contents": [user("hi")], "generationConfig": THINKING})
    parts = r.json()["response"]["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and "thoughtSignature" not in parts[0]
    assert "thoughtSignature" in parts[-1] and parts[-1]["text"].startswith("Hello from")
    assert "thoughtsTokenCount" in r.json()["response"]["usageMetadata"]


# ------------------------------------------------------------------ claude rules


def claude_tool_turn(fake: FakeGoogle, client: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
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
        return generate(client, fake, {"contents": contents, "generationConfig": THINKING}, model=CLAUDE)

    unsigned = {k: v for k, v in thought.items() if k != "thoughtSignature"}
    assert claude_error(send([unsigned, call])) == "messages.1.content.0.thinking.signature: Field required"
    forged = {**thought, "text": thought["text"] + " (edited)"}
    assert (
        claude_error(send([forged, call])) == "messages.1.content.0: Invalid `signature` in `thinking` block"
    )
    foreign = {**thought, "thoughtSignature": fake.sign(GEMINI)}
    assert "Invalid `signature` in `thinking` block" in claude_error(send([foreign, call]))
    empty = {**thought, "text": ""}
    assert claude_error(send([empty, call])) == "messages.1.content.0.thinking.thinking: Field required"
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
            generate(client, fake, {"contents": contents, "generationConfig": THINKING}, model=CLAUDE)
        )

    extra = responses_for(content)
    foreign = {"functionResponse": {"name": "get_weather", "id": "toolu_vrtx_other", "response": {}}}
    extra["parts"].append(foreign)
    assert ask(extra).startswith(
        "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_vrtx_other."
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
    parts = [p for e in sse_events(r.text) for p in e["response"]["candidates"][0]["content"]["parts"]]
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
        generate(client, fake, {"contents": contents, "generationConfig": THINKING}, model=CLAUDE).status_code
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
    assert [e["response"]["candidates"][0]["content"]["parts"][-1]["text"] for e in r.json()][-2:] == [
        "x",
        "y",
    ]
    # Gemini "carrier": the signature comes on an extra empty-text part, which may be sent back.
    fake.script([Reply.thinking("hmm", then_text="ok", carrier=True)])
    r = client.post(url + "?alt=sse", json=body, headers=bearer(fake))
    parts = [p for e in sse_events(r.text) for p in e["response"]["candidates"][0]["content"]["parts"]]
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


# ------------------------------------------------------------------ late-2026: version gates


@pytest.mark.parametrize(
    ("ua", "status"),
    [
        ("antigravity/1.15.8 linux/amd64", 503),  # what the daemon sent in 2025
        ("antigravity/1.21.9 darwin/arm64", 503),
        ("antigravity/cli/1.0.13 (aidev_client; os_type=darwin; arch=arm64)", 503),
        ("python-httpx/0.28", 503),
        ("antigravity/1.107.0 darwin/arm64", 200),
        ("antigravity/cli/1.1.18 linux/amd64", 200),
        ("antigravity/hub/2.9.1 darwin/arm64", 200),
        ("antigravity/hub/2.9.1 darwin/arm64 google-api-nodejs-client/10.3.0", 200),
    ],
)
def test_unsupported_client_versions_get_503(
    fake: FakeGoogle, client: httpx.Client, ua: str, status: int
) -> None:
    headers = bearer(fake, ua=ua)
    for method in ("generateContent", "streamGenerateContent?alt=sse"):
        r = client.post(
            f"{fake.endpoint}/v1internal:{method}",
            json=envelope({"contents": [user("hi")]}),
            headers=headers,
        )
        assert r.status_code == status, (ua, method, r.text)
        if status == 503:
            assert r.json() == {
                "error": {
                    "code": 503,
                    "message": "This version of Antigravity is no longer supported. Please upgrade "
                    "to receive the latest features.",
                    "status": "UNAVAILABLE",
                }
            }
            assert r.json() == ERROR_BODIES["VERSION_UNSUPPORTED"]
    count = client.post(
        fake.endpoint + "/v1internal:countTokens",
        json={"request": {"contents": [user("hi")]}},
        headers=headers,
    )
    assert count.status_code == status
    # Account methods are not gated (the probes of 2026-07 used a 1.15.8 UA).
    assert (
        client.post(fake.endpoint + "/v1internal:loadCodeAssist", json={}, headers=headers).status_code == 200
    )


def test_new_models_need_hub_2_9(fake: FakeGoogle, client: httpx.Client) -> None:
    url = fake.endpoint + "/v1internal:generateContent"
    body = envelope({"contents": [user("hi")]}, model="gemini-3.7-flash-high")
    old = bearer(fake, ua="antigravity/hub/2.8.1 darwin/arm64")
    r = client.post(url, json=body, headers=old)
    assert r.status_code == 404 and r.json() == ERROR_BODIES["NOT_FOUND"]
    assert client.post(url, json=body, headers=bearer(fake)).status_code == 200
    # The tiered id and older models are not gated.
    tiered = envelope({"contents": [user("hi")]}, model="gemini-3.7-flash-tiered")
    assert client.post(url, json=tiered, headers=old).status_code == 200
    # Knobs: which models, and the floor.
    fake.gated_models = {"gemini-3.7-flash-tiered"}
    assert client.post(url, json=tiered, headers=old).status_code == 404
    fake.gated_min_version = "2.8.0"
    assert client.post(url, json=tiered, headers=old).status_code == 200
    fake.min_supported_version = "2.9.0"
    assert client.post(url, json=tiered, headers=old).status_code == 503
    fake.version_gate = False
    legacy = bearer(fake, ua="antigravity/1.15.8 linux/amd64")
    assert client.post(url, json=body, headers=legacy).status_code == 200
    fake.reset()
    assert fake.version_gate is True and fake.gated_min_version == "2.9.0"


def test_constructor_flags_for_the_old_world(client: httpx.Client) -> None:
    with FakeGoogle(version_gate=False, default_models=LEGACY_MODELS) as old:
        old.add_account("old@example.com")
        legacy = bearer(old, "old@example.com", ua="antigravity/1.15.8 linux/amd64")
        body = envelope({"contents": [user("hi")]}, model="claude-sonnet-4-5-thinking", project="proj-old")
        r = client.post(old.endpoint + "/v1internal:generateContent", json=body, headers=legacy)
        assert r.status_code == 200, r.text
        models = client.post(
            old.endpoint + "/v1internal:fetchAvailableModels", json={}, headers=legacy
        ).json()
        assert set(models["models"]) == set(LEGACY_MODELS)
        assert models["deprecatedModelIds"] == {} and "defaultAgentModelId" not in models
        old.reset()
        assert old.version_gate is False


def test_client_version_parsing() -> None:
    assert client_version("antigravity/hub/2.9.1 darwin/arm64") == ("hub", (2, 9, 1))
    assert client_version("antigravity/cli/1.1.12 windows/amd64") == ("cli", (1, 1, 12))
    assert client_version("antigravity/cli/1.0.13 (aidev_client; os_type=darwin)") == (
        "cli",
        (1, 0, 13),
    )
    assert client_version("antigravity/1.15.8 linux/amd64") == ("legacy", (1, 15, 8))
    assert client_version("Antigravity/4.3.0 (Macintosh; Intel Mac OS X 10_15_7)") == (
        "legacy",
        (4, 3, 0),
    )
    assert client_version("GeminiCLI/1.0.0/gemini-2.5-pro (linux; x64)") is None


# ------------------------------------------------------------------ late-2026: onboarding


@pytest.mark.parametrize("polling", ["repost", "operation"])
def test_fresh_account_onboarding(fake: FakeGoogle, client: httpx.Client, polling: str) -> None:
    email = f"fresh-{polling}@example.com"
    fake.add_account(email, project=f"proj-new-{polling}", tier="PRO", fresh=True)
    load = post(client, fake, "loadCodeAssist", {"metadata": {"ideType": "ANTIGRAVITY"}}, email)
    body = load.json()
    assert load.status_code == 200 and "cloudaicompanionProject" not in body
    assert body["currentTier"]["id"] == "free-tier" and body["paidTier"]["id"] == "g1-pro-tier"
    # Inference without the managed project is refused.
    r = generate(client, fake, {"contents": [user("hi")]}, email=email, project=f"proj-new-{polling}")
    assert r.status_code == 403 and r.json() == ERROR_BODIES["SUBSCRIPTION_REQUIRED"]
    r = generate(client, fake, {"contents": [user("hi")]}, email=email, project="")
    assert r.status_code == 400
    # Bad onboardUser bodies: the bare 400 of the live probe.
    bare = {
        "error": {
            "code": 400,
            "message": "Request contains an invalid argument.",
            "status": "INVALID_ARGUMENT",
        }
    }
    metadata = {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
    for bad in (
        {},
        {"metadata": metadata},
        {"tierId": "legacy-standard-tier", "metadata": metadata},
        {"tierId": "free-tier"},
    ):
        r = post(client, fake, "onboardUser", bad, email)
        assert r.status_code == 400 and r.json() == bare, bad
    r = post(client, fake, "onboardUser", {"tierId": "free-tier", "metadata": {"platform": "X"}}, email)
    assert r.status_code == 400 and "metadata.platform" in error_message(r)
    # First answer: a pending operation.
    start = {"tier_id": "free-tier", "metadata": {"ide_type": "ANTIGRAVITY", "ide_version": "2.9.1"}}
    first = post(client, fake, "onboardUser", start, email).json()
    assert first["done"] is False and first["name"].startswith("operations/")
    if polling == "repost":
        done = post(client, fake, "onboardUser", start, email).json()
    else:
        done = client.get(f"{fake.endpoint}/v1internal/{first['name']}", headers=bearer(fake, email))
        assert done.status_code == 200
        done = done.json()
    assert done["done"] is True and done["name"] == first["name"]
    response = done["response"]
    assert response["@type"].endswith("v1internal.OnboardUserResponse")
    assert response["cloudaicompanionProject"]["id"] == f"proj-new-{polling}"
    load = post(client, fake, "loadCodeAssist", {"metadata": {"ideType": "ANTIGRAVITY"}}, email)
    assert load.json()["cloudaicompanionProject"] == f"proj-new-{polling}"
    r = generate(client, fake, {"contents": [user("hi")]}, email=email)
    assert r.status_code == 200
    # Another account cannot read the operation; an unknown one is 404.
    other = client.get(f"{fake.endpoint}/v1internal/{first['name']}", headers=bearer(fake))
    assert other.status_code == 404


def test_onboarding_done_at_once(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.onboard_pending = 0
    fake.add_account("quick@example.com", fresh=True)
    start = {"tierId": "free-tier", "metadata": {"ideType": "ANTIGRAVITY"}}
    done = post(client, fake, "onboardUser", start, "quick@example.com").json()
    assert done["done"] is True
    assert done["response"]["cloudaicompanionProject"]["id"] == "proj-quick"
    # An onboarded account answers done at once, like the live capture.
    again = post(client, fake, "onboardUser", start, "a@example.com").json()
    assert again == {
        "done": True,
        "response": {
            "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
            "cloudaicompanionProject": {"id": "proj-a", "name": "proj-a"},
            "releaseChannel": {"type": "EXPERIMENTAL", "name": "Preview Channel"},
        },
    }
    # standard-tier needs the user's own project.
    standard = {"tierId": "standard-tier", "metadata": {"ideType": "ANTIGRAVITY"}}
    assert post(client, fake, "onboardUser", standard, "a@example.com").status_code == 400


# ------------------------------------------------------------------ late-2026: error knobs


@pytest.mark.parametrize("kind", sorted(ERROR_BODIES))
def test_fail_next_answers_the_captured_bodies(fake: FakeGoogle, client: httpx.Client, kind: str) -> None:
    model = "claude-opus-4-6-thinking"
    fake.fail_next(kind, 2, email="a@example.com", model=model)
    request = {"contents": [user("x")]}
    assert generate(client, fake, request).status_code == 200  # another model: untouched
    assert generate(client, fake, request, model=model, email="c@example.com").status_code == 200
    status, expected = error_body(
        kind, model=model, project="proj-a", validation_url=fake.accounts["a@example.com"].validation_url
    )
    for _ in range(2):
        r = generate(client, fake, request, model=model)
        assert r.status_code == status == ERROR_STATUS[kind]
        got, want = r.json(), json.loads(json.dumps(expected))
        if "quotaResetTimeStamp" in r.text:  # stamps are counted from now when injected
            for body in (got, want):
                body["error"]["details"][0]["metadata"].pop("quotaResetTimeStamp")
        assert got == want
    assert generate(client, fake, request, model=model).status_code == 200


def test_error_bodies_are_the_captures() -> None:
    assert ERROR_BODIES["TOS_VIOLATION"]["error"]["details"][0]["metadata"]["appeal_url"] == (
        "https://forms.gle/hGzM9MEUv2azZsrb9"
    )
    assert ERROR_BODIES["RESOURCE_EXHAUSTED"] == {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    weekly = ERROR_BODIES["QUOTA_EXHAUSTED_WEEKLY"]["error"]
    assert weekly["message"] == (
        "Individual quota reached. Contact your administrator to enable overages. Resets in 71h15m27s."
    )
    assert weekly["details"][0]["metadata"]["quotaResetDelay"] == "71h15m27.791609974s"
    assert weekly["details"][1] == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "256527.791609974s",
    }
    rate = ERROR_BODIES["RATE_LIMIT_EXCEEDED"]["error"]
    assert rate["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert rate["message"].endswith("Your quota will reset after 0s.")
    assert ERROR_BODIES["MODEL_CAPACITY_EXHAUSTED"]["error"]["message"] == (
        "No capacity available for model gemini-3.1-flash-image on the server"
    )
    assert ERROR_STATUS["MODEL_CAPACITY_EXHAUSTED"] == 503
    assert ERROR_STATUS["MODEL_CAPACITY_EXHAUSTED_429"] == 429
    old = ERROR_BODIES["VALIDATION_REQUIRED_OLD"]["error"]
    assert old["message"].startswith("To continue, verify your account at\n\nhttps://")
    assert ERROR_BODIES["SERVICE_DISABLED"]["error"]["details"][0]["reason"] == "SERVICE_DISABLED"
    assert ERROR_BODIES["UNAUTHENTICATED"]["error"]["status"] == "UNAUTHENTICATED"
    with pytest.raises(KeyError):
        error_body("NO_SUCH_THING")


# ------------------------------------------------------------------ late-2026: strictness


def test_x_goog_user_project_is_service_disabled(fake: FakeGoogle, client: httpx.Client) -> None:
    headers = {**bearer(fake), "x-goog-user-project": "proj-a"}
    for method, body in (
        ("generateContent", envelope({"contents": [user("x")]})),
        ("loadCodeAssist", {"metadata": {"ideType": "ANTIGRAVITY"}}),
    ):
        r = client.post(f"{fake.endpoint}/v1internal:{method}", json=body, headers=headers)
        assert r.status_code == 403
        assert r.json() == error_body("SERVICE_DISABLED", project="proj-a")[1]
        assert "Cloud Code Private API has not been used in project proj-a" in error_message(r)


def claude_tools(decl: dict[str, Any], mode: str = "AUTO") -> dict[str, Any]:
    return {
        "contents": [user("x")],
        "tools": [{"functionDeclarations": [{"name": "ok", "parameters": OK_SCHEMA}, decl]}],
        "toolConfig": {"functionCallingConfig": {"mode": mode}},
    }


OK_SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


def test_claude_tool_schemas(fake: FakeGoogle, client: httpx.Client) -> None:
    def ask(decl: dict[str, Any], mode: str = "AUTO", model: str = CLAUDE) -> httpx.Response:
        return generate(client, fake, claude_tools(decl, mode), model=model)

    assert ask({"name": "t", "parameters": OK_SCHEMA}, "VALIDATED").status_code == 200
    json_schema = {"name": "t", "parametersJsonSchema": OK_SCHEMA}
    assert claude_error(ask(json_schema)) == "tools.1.custom.input_schema: Field required"
    assert claude_error(ask({"name": "t"})) == "tools.1.custom.input_schema: Field required"
    assert ask(json_schema, model=GEMINI).status_code == 200  # Gemini takes either
    fancy = {"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}
    assert claude_error(ask({"name": "t", "parameters": fancy})) == (
        "tools.1.custom.input_schema: JSON schema is invalid. It must match JSON Schema draft "
        "2020-12 (https://json-schema.org/draft/2020-12). Learn more about tool use at "
        "https://docs.claude.com/en/docs/tool-use."
    )
    assert ask({"name": "t", "parameters": fancy}, model=GEMINI).status_code == 200
    empty = {"name": "t", "parameters": {"type": "object"}}
    assert ask(empty).status_code == 200
    r = ask(empty, "VALIDATED")
    assert r.status_code == 400 and r.json() == ERROR_BODIES["INVALID_ARGUMENT"]


def test_output_and_thinking_limits(fake: FakeGoogle, client: httpx.Client) -> None:
    def ask(model: str, gen: dict[str, Any]) -> httpx.Response:
        return generate(client, fake, {"contents": [user("x")], "generationConfig": gen}, model=model)

    assert ask(GEMINI, {"maxOutputTokens": 65536}).status_code == 200
    r = ask(GEMINI, {"maxOutputTokens": 65537})
    assert r.status_code == 400 and "maxOutputTokens value of 65537" in error_message(r)
    assert ask("gemini-pro-agent", {"maxOutputTokens": 65536}).status_code == 400
    assert ask("gpt-oss-120b-medium", {"maxOutputTokens": 32769}).status_code == 400
    assert claude_error(ask(CLAUDE, {"maxOutputTokens": 64001})).startswith("max_tokens: 64001 > 64000")
    budget = {"maxOutputTokens": 4096, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 4096}}
    assert "`max_tokens` must be greater than `thinking.budget_tokens`" in claude_error(ask(CLAUDE, budget))
    # Gemini 3: a budget or a level (either case), never both.
    for tc in ({"thinkingBudget": -1}, {"thinkingLevel": "high"}, {"thinking_level": "LOW"}):
        assert ask(GEMINI, {"thinkingConfig": {"includeThoughts": True, **tc}}).status_code == 200, tc
    both = {"thinkingConfig": {"thinkingBudget": 1000, "thinkingLevel": "low"}}
    r = ask(GEMINI, both)
    assert r.status_code == 400 and "cannot be set at the same time" in error_message(r)
    r = ask(GEMINI, {"thinkingConfig": {"thinkingLevel": "extreme"}})
    assert r.status_code == 400 and "thinking_level" in error_message(r)


def test_web_search(fake: FakeGoogle, client: httpx.Client) -> None:
    request = {
        "contents": [user("weather in Paris")],
        "tools": [{"googleSearch": {"enhancedContent": {"imageSearch": {"maxResultCount": 5}}}}],
        "generationConfig": {"candidateCount": 1},
    }
    body = {
        "model": "gemini-3.1-flash-lite",
        "requestType": "web_search",
        "project": "proj-a",
        "userAgent": "antigravity",
        "request": request,
    }  # no requestId: CPA leaves it out
    url = fake.endpoint + "/v1internal:generateContent"
    r = client.post(url, json=body, headers=bearer(fake))
    assert r.status_code == 200, r.text
    candidate = r.json()["response"]["candidates"][0]
    grounding = candidate["groundingMetadata"]
    assert grounding["webSearchQueries"] == ["weather in Paris"]
    assert grounding["groundingChunks"][0]["web"]["uri"].startswith("https://")
    assert grounding["groundingSupports"][0]["groundingChunkIndices"] == [0]
    fake.script([Reply.search("Sunny.", [("https://example.org/r", "example.org")])])
    candidate = client.post(url, json=body, headers=bearer(fake)).json()["response"]["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "Sunny."}]
    assert candidate["groundingMetadata"]["groundingChunks"] == [
        {"web": {"uri": "https://example.org/r", "title": "example.org"}}
    ]
    # Search and functions in one request: 400.
    mixed = dict(request, tools=[*request["tools"], {"functionDeclarations": [{"name": "f"}]}])
    r = client.post(url, json={**body, "request": mixed}, headers=bearer(fake))
    assert r.status_code == 400


def test_image_generation(fake: FakeGoogle, client: httpx.Client) -> None:
    body = envelope({"contents": [user("a red square")]}, model="gemini-3.1-flash-image")
    body["requestType"] = "image_gen"
    body["requestId"] = "image_gen/1764000000000/0f0e0d0c-0b0a-4909-8807-060504030201/12"
    r = client.post(fake.endpoint + "/v1internal:generateContent", json=body, headers=bearer(fake))
    assert r.status_code == 200
    (part,) = r.json()["response"]["candidates"][0]["content"]["parts"]
    assert part["inlineData"]["mimeType"] == "image/png"
    assert base64.b64decode(part["inlineData"]["data"]).startswith(b"\x89PNG")


def test_count_tokens_without_model(fake: FakeGoogle, client: httpx.Client) -> None:
    request = {"contents": [user("count me")]}
    r = post(client, fake, "countTokens", {"request": request})
    assert r.status_code == 200 and r.json() == {"totalTokens": count_tokens(request)}
    r = post(client, fake, "countTokens", {"request": {"model": "claude-sonnet-4-5", **request}})
    assert r.status_code == 404  # a retired id


def test_deprecated_id_requestable_or_not(fake: FakeGoogle, client: httpx.Client) -> None:
    request = {"contents": [user("x")]}
    assert generate(client, fake, request, model="gemini-3.1-pro-high").status_code == 200
    fake.deprecated_status = 400
    assert generate(client, fake, request, model="gemini-3.1-pro-high").status_code == 400
    assert generate(client, fake, request, model="gemini-pro-agent").status_code == 200


def test_envelope_rules(fake: FakeGoogle, client: httpx.Client) -> None:
    url = fake.endpoint + "/v1internal:generateContent"
    body = envelope({"contents": [user("x")]})
    r = client.post(url, json={**body, "surprise": 1}, headers=bearer(fake))
    assert r.status_code == 400 and 'Unknown name "surprise"' in error_message(r)
    snake = {k: v for k, v in body.items() if k not in ("userAgent", "requestType")}
    snake |= {"user_agent": "antigravity", "request_type": "agent"}
    assert client.post(url, json=snake, headers=bearer(fake)).status_code == 200


def test_esf_headers_and_sse_errors(fake: FakeGoogle, client: httpx.Client) -> None:
    r = generate(client, fake, {"contents": [user("x")]})
    assert r.headers["server"] == "ESF"
    assert r.headers["x-cloudaicompanion-trace-id"] == r.json()["traceId"]
    r = post(client, fake, "loadCodeAssist", {})
    assert r.headers["server"] == "ESF" and r.headers["x-cloudaicompanion-trace-id"]
    stream_url = fake.endpoint + "/v1internal:streamGenerateContent?alt=sse"
    # Errors of stream calls: JSON bodies labelled text/event-stream.
    r = client.post(stream_url, json=envelope({"contents": [user("x")]}, model="nope"), headers=bearer(fake))
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/event-stream")
    assert r.json() == ERROR_BODIES["NOT_FOUND"] and r.headers["server"] == "ESF"
    fake.script([Reply.error(429, reason="RATE_LIMIT_EXCEEDED")])
    r = client.post(stream_url, json=envelope({"contents": [user("x")]}), headers=bearer(fake))
    assert r.status_code == 429 and r.headers["content-type"].startswith("text/event-stream")
    fake.fail_next("MODEL_CAPACITY_EXHAUSTED")
    r = client.post(stream_url, json=envelope({"contents": [user("x")]}), headers=bearer(fake))
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/event-stream")
    r = client.post(stream_url, json=envelope({"contents": [user("x")]}), headers=bearer(fake))
    assert r.status_code == 200 and r.headers["x-cloudaicompanion-trace-id"]
    assert sse_events(r.text)[0]["traceId"] == r.headers["x-cloudaicompanion-trace-id"]
