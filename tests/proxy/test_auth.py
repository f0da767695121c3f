"""Client authentication on the proxy listener (issue 2).

Every auth mode x every way of sending the key x exempt and protected paths,
401 bodies in the caller's protocol shape, path-normalisation attacks sent as
raw request lines, near-miss 404s, and the proxy key's rotation.

One daemon serves the module; modes are switched through the admin API while
it runs (which also shows that a mode change applies at once).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from daemon.proxy import auth as auth_mod
from tests.conftest import Daemon, free_port
from tests.fakes.google import FakeGoogle
from tests.service.test_daemon import daemon_in_tmp, raw_http, serving_config, settled

KEY_RE = re.compile(r"^sk-[0-9a-f]{32}$")
WRONG = "sk-wrong-0123456789abcdef"


@pytest.fixture(scope="module")
def gate(fake: FakeGoogle) -> Iterator[Daemon]:
    with daemon_in_tmp(serving_config(free_port(), fake)) as d:
        assert settled(d)["proxy"]["state"] == "running"
        yield d


def set_mode(d: Daemon, auth_mode: str, lan: bool) -> tuple[str, int]:
    """Set the auth mode (applies at once) and LAN access (applies on restart)."""
    d.admin("PUT", "/config/proxy.auth_mode", json={"value": auth_mode})
    p = d.status["proxy"]
    if p["allow_lan_access"] != lan or p["state"] != "running":
        d.admin("PUT", "/config/proxy.allow_lan_access", json={"value": str(lan).lower()})
        d.admin("POST", "/proxy/restart")
    p = d.status["proxy"]
    assert (p["state"], p["host"], p["restart_pending"]) == (
        "running",
        "0.0.0.0" if lan else "127.0.0.1",
        False,
    )
    return d.api_key, p["port"]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


# (method, path, json body or None, protocol); GETs pass with 200, POSTs of
# an empty body with 400 (so nothing ever reaches an upstream).
ROUTES = [
    ("GET", "/healthz", None, "health"),
    ("GET", "/health", None, "health"),
    ("GET", "/v1/models", None, "openai"),
    ("POST", "/v1/chat/completions", {}, "openai"),
    ("POST", "/v1/messages", {}, "anthropic"),
    ("GET", "/v1beta/models", None, "gemini"),
    ("POST", "/v1beta/models/gemini-3-flash:generateContent", {}, "gemini"),
]

# name -> (headers, query) given the key; whether it should authenticate is decided in `valid`.
FORMS: dict[str, Any] = {
    "none": lambda k: ({}, {}),
    "bearer": lambda k: ({"Authorization": f"Bearer {k}"}, {}),
    "bearer-lowercase": lambda k: ({"Authorization": f"bearer {k}"}, {}),
    "bare-authorization": lambda k: ({"Authorization": k}, {}),
    "x-api-key": lambda k: ({"x-api-key": k}, {}),
    "x-goog-api-key": lambda k: ({"x-goog-api-key": k}, {}),
    "query-key": lambda k: ({}, {"key": k}),
    "wrong-bearer": lambda k: ({"Authorization": f"Bearer {WRONG}"}, {}),
    "wrong-x-api-key": lambda k: ({"x-api-key": WRONG}, {}),
    "wrong-query-key": lambda k: ({}, {"key": WRONG}),
}


def valid(form: str, path: str) -> bool:
    if form == "query-key":
        return path.startswith("/v1beta/")  # ?key= is Google's habit only: never on /v1/*
    return form in (
        "bearer",
        "bearer-lowercase",
        "bare-authorization",
        "x-api-key",
        "x-goog-api-key",
    )


# mode id -> (proxy.auth_mode, allow_lan_access, effective mode)
MODES = {
    "off": ("off", False, "off"),
    "strict": ("strict", False, "strict"),
    "all_except_health": ("all_except_health", False, "all_except_health"),
    "auto-without-lan": ("auto", False, "off"),
    "auto-with-lan": ("auto", True, "all_except_health"),
}


def check_401_shape(protocol: str, resp: httpx.Response) -> str:
    """Assert a 401 body is in ``protocol``'s own error shape; returns the message."""
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    if protocol == "openai":
        assert set(body) == {"error"} and set(body["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }, body
        assert body["error"]["type"] == "authentication_error"
        assert body["error"]["code"] == "invalid_api_key"
        assert "Authorization: Bearer" in body["error"]["message"]
    elif protocol == "anthropic":
        assert body["type"] == "error" and set(body) == {"type", "error"}, body
        assert set(body["error"]) == {"type", "message"}, body
        assert body["error"]["type"] == "authentication_error"
        assert "x-api-key" in body["error"]["message"]
    else:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}, body
        assert (body["error"]["code"], body["error"]["status"]) == (401, "UNAUTHENTICATED")
        assert "x-goog-api-key" in body["error"]["message"]
    message: str = body["error"]["message"]
    assert "agctl config get proxy.api_key" in message
    return message


@pytest.mark.parametrize("mode_id", list(MODES))
def test_auth_matrix(gate: Daemon, client: httpx.Client, mode_id: str) -> None:
    auth_mode, lan, effective = MODES[mode_id]
    key, port = set_mode(gate, auth_mode, lan)
    assert gate.status["proxy"]["auth_mode"] == effective
    problems = []
    for method, path, body, protocol in ROUTES:
        protected = effective == "strict" or (effective == "all_except_health" and protocol != "health")
        for form, make in FORMS.items():
            headers, params = make(key)
            resp = client.request(
                method, f"http://127.0.0.1:{port}{path}", headers=headers, params=params, json=body
            )
            ok_status = 200 if body is None else 400
            want = 401 if protected and not valid(form, path) else ok_status
            if resp.status_code != want:
                problems.append(
                    f"{form:20} {method} {path}: {resp.status_code}, want {want}: {resp.text[:120]}"
                )
                continue
            if want == 401:
                message = check_401_shape("openai" if protocol == "health" else protocol, resp)
                # a ?key= off /v1beta is not read at all: "no API key was sent"
                read = form != "wrong-query-key" or path.startswith("/v1beta/")
                wrong = form.startswith("wrong") and read
                assert message.startswith("the API key is wrong" if wrong else "no API key was sent"), message
                assert key not in message and WRONG not in message
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "body", "protocol"),
    [
        ("/v1/chat/completions", {}, "openai"),
        ("/v1/models", None, "openai"),
        ("/v1/messages", {}, "anthropic"),
        ("/v1/messages/count_tokens", {}, "anthropic"),
        ("/v1beta/models", None, "gemini"),
        ("/v1beta/models/gemini-3-flash:streamGenerateContent", {}, "gemini"),
    ],
)
def test_401_in_the_callers_protocol_shape(
    gate: Daemon, client: httpx.Client, path: str, body: Any, protocol: str
) -> None:
    _, port = set_mode(gate, "strict", False)
    resp = client.request("GET" if body is None else "POST", f"http://127.0.0.1:{port}{path}", json=body)
    message = check_401_shape(protocol, resp)
    assert message.startswith("no API key was sent")
    assert resp.headers["www-authenticate"].lower().startswith("bearer")
    assert resp.headers["x-request-id"].startswith("req_")


# Each is sent verbatim as the request line, with no key, in all_except_health mode.
ATTACKS = [
    "//v1/models",
    "///v1/models",
    "/healthz/../v1/models",
    "/health/../v1/models",
    "/healthz/%2e%2e/v1/models",
    "/healthz/%2E%2E/v1/models",
    "/healthz/.%2e/v1/models",
    "/%68ealthz/../v1/models",
    "/healthz%2F..%2Fv1/models",
    "/healthz%2f..%2fv1%2fmodels",
    "/healthz/%252e%252e/v1/models",
    "/healthz%252F..%252Fv1/models",
    "/healthz/%25252e%25252e/v1/models",
    "/healthz\\..\\v1/models",
    "/healthz%5C..%5Cv1/models",
    "/v1/models/",
    "/v1/models//",
    "/./v1/models",
    "/v1/./models",
    "/healthz/./../v1/models",
    "/healthz;/../v1/models",
    "/v1/models?x=/healthz",
    "/v1/models#/healthz",
    "/../v1/models",
    "/%2e%2e/v1/models",
    "/healthz/../../../v1/models",
    "/v1%2fmodels",
    "/healthz/..//v1/chat/completions",
    "/healthz/../v1beta/models",
    "/healthz/../v1/messages",
    "/healthz%00/../v1/models",
]


@pytest.mark.parametrize("target", ATTACKS)
def test_path_normalisation_cannot_skip_auth(gate: Daemon, target: str) -> None:
    _, port = set_mode(gate, "all_except_health", False)
    method = "POST" if target.endswith(("/completions", "/messages")) else "GET"
    status, headers, body = raw_http(port, target, method=method, body=b"{}" if method == "POST" else b"")
    assert status in (400, 401, 404), (status, body[:200])
    data = json.loads(body)
    assert "error" in data, data  # an error body of one of the protocols, never a served route
    if status == 404:
        assert data["error"]["type" if "type" in data["error"] else "status"] in (
            "not_found_error",
            "NOT_FOUND",
        )


def test_normalised_path_is_what_gets_routed(gate: Daemon) -> None:
    key, port = set_mode(gate, "all_except_health", False)
    for target in (
        "//v1/models",
        "/healthz/../v1/models",
        "/healthz%2F..%2Fv1/models",
        "/v1/models/",
    ):
        status, _, body = raw_http(port, target, headers={"Authorization": f"Bearer {key}"})
        assert status == 200, (target, body[:200])
        assert json.loads(body)["object"] == "list"
    for target in ("//healthz", "/healthz/", "/v1/../healthz", "/%68ealthz"):
        status, _, body = raw_http(port, target)
        assert (status, json.loads(body)) == (200, {"status": "ok"}), target


@pytest.mark.parametrize(
    ("path", "method", "hint"),
    [
        ("/chat/completions", "POST", "set the OpenAI base URL to {base}/v1"),
        ("/models", "GET", "set the OpenAI base URL to {base}/v1"),
        ("/messages", "POST", "set the Anthropic base URL to {base}"),
        ("/v1/v1/chat/completions", "POST", "use {base}/v1 for OpenAI clients"),
        ("/models/gemini-3-flash:generateContent", "POST", "set the base URL to {base}"),
    ],
)
def test_near_miss_404_names_the_base_url(
    gate: Daemon, client: httpx.Client, path: str, method: str, hint: str
) -> None:
    key, port = set_mode(gate, "strict", False)
    base = f"http://127.0.0.1:{port}"
    resp = client.request(
        method, base + path, headers={"x-api-key": key}, json={} if method == "POST" else None
    )
    assert resp.status_code == 404, resp.text
    message = resp.json()["error"]["message"]
    assert hint.format(base=base) in message, message
    # without a key it is a 401 first: a 404 must not tell a stranger which routes exist
    assert client.request(method, base + path, json={} if method == "POST" else None).status_code == 401


def test_key_rotate_and_set(gate: Daemon, client: httpx.Client) -> None:
    old, port = set_mode(gate, "strict", False)
    url = f"http://127.0.0.1:{port}/v1/models"
    assert client.get(url, headers={"Authorization": f"Bearer {old}"}).status_code == 200

    res = gate.ctl("key", "rotate")
    assert res.returncode == 0, res.stderr
    new = gate.api_key
    assert KEY_RE.match(new) and new != old
    assert new in res.stdout and "old key stopped working" in res.stdout
    assert client.get(url, headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get(url, headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert f'api_key = "{new}"' in (gate.home / "config.toml").read_text()

    newer = gate.ctl_json("key", "rotate")["api_key"]
    assert KEY_RE.match(newer) and newer != new
    assert client.get(url, headers={"x-api-key": new}).status_code == 401
    assert client.get(url, headers={"x-api-key": newer}).status_code == 200

    res = gate.ctl("config", "set", "proxy.api_key", "sk-chosen-by-me-42")
    assert res.returncode == 0, res.stderr
    assert "sk-chosen-by-me-42" not in res.stdout  # a secret is not echoed
    assert client.get(url, headers={"x-api-key": newer}).status_code == 401
    assert client.get(url, headers={"x-api-key": "sk-chosen-by-me-42"}).status_code == 200


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("/v1/models", "/v1/models"),
        ("//v1//models", "/v1/models"),
        ("/healthz/../v1/models", "/v1/models"),
        ("/healthz/%2e%2e/v1/models", "/v1/models"),
        ("/healthz/%252e%252e/v1/models", "/v1/models"),
        ("/healthz\\..\\v1/models", "/v1/models"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/v1/models/", "/v1/models"),
        ("/./v1/./models", "/v1/models"),
        ("", "/"),
        ("/", "/"),
    ],
)
def test_normalize_path(raw: str, want: str) -> None:
    assert auth_mod.normalize_path(raw) == want


def test_key_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    assert auth_mod.key_matches("sk-abc", "sk-abc")
    assert not auth_mod.key_matches("sk-abd", "sk-abc")
    assert not auth_mod.key_matches(None, "sk-abc")
    assert seen == [(b"sk-abc", b"sk-abc"), (b"sk-abd", b"sk-abc")]
