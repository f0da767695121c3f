"""Issue 8, security: auth bypass corpus, the admin socket, secrets in logs.

Requests go out over raw sockets so that nothing (httpx, urllib) normalises
the request target or the headers on the way. The rule checked for every
request without the key: nothing but the health endpoint (and only in
``all_except_health``) answers 2xx or 3xx.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon, base_config, free_port
from tests.fakes.google import FakeGoogle, Reply
from tests.test_reliability import TRACEBACK_MARKERS, port_of, spec, start_daemon, uid

MODEL = "gemini-3-flash"
MODES = ("strict", "all_except_health")


# ---------------------------------------------------------------- raw HTTP


@dataclass
class Answer:
    status: int  # 0: the server closed without answering
    headers: dict[str, str]
    body: bytes


def raw(port: int, request: bytes, timeout: float = 5.0) -> list[Answer]:
    """Send bytes as they are; parse every response until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except OSError:
            pass  # the server may close early on a request it rejects
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return parse_answers(got)


def parse_answers(data: bytes) -> list[Answer]:
    out: list[Answer] = []
    while data.startswith(b"HTTP/"):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, data = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    data = rest.partition(b"\r\n")[2]
                    break
                body += rest[:size]
                rest = rest[size + 2 :]
        else:
            body, data = rest, b""
        out.append(Answer(status, headers, body))
    return out or [Answer(0, {}, data)]


def request(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    close: bool = True,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def is_health(a: Answer) -> bool:
    try:
        return bool(json.loads(a.body) == {"status": "ok"})
    except ValueError:
        return False


def assert_refused(mode: str, what: str, answers: list[Answer], get_twin: list[Answer] | None = None) -> None:
    """Without the key: no 2xx/3xx, except /healthz in all_except_health.
    ``get_twin``: the answer to the same target with GET (a HEAD or OPTIONS
    that got a 2xx must have hit the health endpoint)."""
    for a in answers:
        text = a.body.decode("utf-8", "replace")
        assert not any(m in text for m in TRACEBACK_MARKERS), f"{what}: traceback text: {text[:300]}"
        if 200 <= a.status < 400:
            health = is_health(a) or (get_twin is not None and len(get_twin) == 1 and is_health(get_twin[0]))
            assert mode == "all_except_health" and health, (
                f"[{mode}] {what} -> {a.status} without the key: {text[:300]}"
            )
        elif a.status == 401:
            if a.body:  # (HEAD: none)
                assert "error" in json.loads(a.body), text
            assert "www-authenticate" in a.headers


# ---------------------------------------------------------------- the corpus

GET_TARGETS = [
    "/v1/models",
    "/v1beta/models",
    "/metrics",
    f"/v1/models/{MODEL}",
    f"/v1beta/models/{MODEL}",
    "/api/hello",
    "/v1alpha/models",
]
POST_TARGETS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    f"/v1beta/models/{MODEL}:generateContent",
    f"/v1beta/models/{MODEL}:streamGenerateContent",
    f"/v1beta/models/{MODEL}:countTokens",
    f"/v1/models/{MODEL}:generateContent",
]
HEALTH_TARGETS = ["/healthz", "/health"]


def pct_all(path: str) -> str:
    return "".join(c if c == "/" else f"%{ord(c):02X}" for c in path)


def path_tricks(t: str) -> list[str]:
    """Ways of writing target ``t`` (absolute path) that a careless router might
    route to ``t`` while a careless auth check sees something else."""
    rest = t[1:]
    return [
        t,
        "/" + t,
        "//" + rest,
        "/./" + rest,
        t.replace("/", "//"),
        t.replace("/", "/./"),
        "/healthz/.." + t,
        "/health/../" + rest,
        "/healthz/%2e%2e" + t,
        "/healthz/%2E%2E" + t,
        "/healthz%2f..%2f" + rest,
        "/healthz%2F%2E%2E%2F" + rest,
        "/healthz/%252e%252e" + t,
        "/healthz/%25252e%25252e" + t,
        "/healthz/%2525252e%2525252e" + t,
        "/healthz/..%2f" + rest,
        "/healthz\\..\\" + rest.replace("/", "\\"),
        "/healthz/..\\" + rest,
        "/healthz%5c..%5c" + rest,
        t + "/",
        t + "/.",
        t + ";",
        t + ";jsessionid=1",
        "/healthz;/.." + t,
        "/healthz;" + t,
        t + "%00",
        "/healthz%00/.." + t,
        t + "%20",
        t + "?",
        t + "#frag",
        "/healthz#/.." + t,
        "/healthz?/.." + t,
        "/healthz/?x=/.." + t,
        t.upper(),
        pct_all(t),
        "http://x" + t,
        "http://127.0.0.1" + t,
        "https://x:1" + t,
        "http://x/healthz/.." + t,
        "//x" + t,
        "/healthz/" + "../" * 40 + rest,
        "/healthz/" + "a/" * 3000 + "../" * 3000 + rest,
        t + "/" + "a" * 60_000,
    ]


NO_KEY_HEADERS: list[list[tuple[str, str]]] = [
    [],
    [("Authorization", "Bearer")],
    [("Authorization", "Bearer ")],
    [("Authorization", "bearer")],
    [("Authorization", "")],
    [("Authorization", "Basic " + base64.b64encode(b"user:sk-wrong-0123456789").decode())],
    [("Authorization", "Bearer sk-wrong-0123456789")],
    [("Authorization", "Bearer\tsk-wrong-0123456789")],
    [("Authorization", "Bearer sk-wrong"), ("Authorization", "Bearer ")],
    [("Authorization", "Bearer "), ("Authorization", "Bearer")],
    [("x-api-key", "")],
    [("x-api-key", "sk-wrong-0123456789")],
    [("x-goog-api-key", "sk-wrong-0123456789")],
    [("x-api-key", "sk-wrong-0123456789"), ("Authorization", "Bearer sk-wrong-0123456789")],
    [
        ("X-HTTP-Method-Override", "GET"),
        ("X-Original-URL", "/healthz"),
        ("X-Rewrite-URL", "/healthz"),
    ],
    [("X-Forwarded-For", "127.0.0.1"), ("X-Real-IP", "127.0.0.1"), ("Forwarded", "for=127.0.0.1")],
]


def misplaced_key_headers(key: str) -> list[list[tuple[str, str]]]:
    """The right key, but where it must not count (or mangled)."""
    return [
        [("Proxy-Authorization", f"Bearer {key}")],
        [("Cookie", f"key={key}; api_key={key}")],
        [("X-Authorization", f"Bearer {key}")],
        [("Api-Key", key)],
        [("X-Goog-Api-Key-Extra", key)],
        [("Authorization", f"Basic {base64.b64encode(f'x:{key}'.encode()).decode()}")],
        [("Authorization", f"Bearer {key[:-1]}")],
        [("Authorization", f"Bearer {key}x")],
        [("Authorization", f"Bearer {key.upper()}")],
        [("Authorization", f"Token {key}")],
        [("Authorization", f"Bearer Bearer {key}")],
        [("x-api-key", f"{key[:-1]}")],
        [("x-api-key", f"{key} {key}")],
    ]


def good_key_headers(key: str) -> list[list[tuple[str, str]]]:
    """Every accepted way of sending the key: must be let in."""
    return [
        [("Authorization", f"Bearer {key}")],
        [("Authorization", key)],
        [("authorization", f"bearer {key}")],
        [("AUTHORIZATION", f"BEARER {key}")],
        [("Authorization", f"Bearer   {key}")],
        [("Authorization", f"\tBearer {key}\t")],
        [("Authorization", f"Bearer {key} ")],
        [("x-api-key", key)],
        [("X-Api-Key", key)],
        [("x-goog-api-key", key)],
    ]


# ---------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def sec(fake: FakeGoogle) -> Iterator[Daemon]:
    fake.reset()
    home = Path(tempfile.mkdtemp(prefix="ag-sec-", dir="/tmp"))
    d = start_daemon(fake, home, [f"sec-{uid()}@example.com"], proxy={"auth_mode": "strict"})
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)
        fake.reset()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, sec: Daemon) -> Iterator[str]:
    sec.admin("PUT", "/config/proxy.auth_mode", json={"value": request.param})
    assert sec.status["proxy"]["auth_mode"] == request.param
    yield str(request.param)
    sec.admin("PUT", "/config/proxy.auth_mode", json={"value": "strict"})


def test_path_tricks_without_key(sec: Daemon, mode: str) -> None:
    port = port_of(sec)
    n = 0
    for t in [*GET_TARGETS, *HEALTH_TARGETS]:
        for target in path_tricks(t):
            got = raw(port, request("GET", target, []))
            assert_refused(mode, f"GET {target[:120]}", got)
            for method in ("HEAD", "OPTIONS"):
                assert_refused(mode, f"{method} {target[:120]}", raw(port, request(method, target, [])), got)
            n += 3
    for t in POST_TARGETS:
        for target in path_tricks(t):
            assert_refused(mode, f"POST {target[:120]}", raw(port, request("POST", target, [], b"{}")))
            n += 1
    for method, target in (
        ("OPTIONS", "*"),
        ("GET", "*"),
        ("CONNECT", "127.0.0.1:1"),
        ("TRACE", "/v1/models"),
        ("PROPFIND", "/v1/models"),
    ):
        assert_refused(mode, f"{method} {target}", raw(port, request(method, target, [])))
    assert n > 1000


def test_header_tricks_without_key(sec: Daemon, mode: str) -> None:
    port = port_of(sec)
    key = sec.api_key
    for headers in [*NO_KEY_HEADERS, *misplaced_key_headers(key)]:
        for t in ("/v1/models", "/v1beta/models", "/metrics", "/healthz"):
            assert_refused(mode, f"GET {t} {headers}", raw(port, request("GET", t, headers)))
        for t in (
            "/v1/chat/completions",
            "/v1/messages",
            f"/v1beta/models/{MODEL}:generateContent",
        ):
            body = json.dumps(spec("openai", False, "").body).encode()
            assert_refused(mode, f"POST {t} {headers}", raw(port, request("POST", t, headers, body)))


def test_key_in_query_counts_only_on_v1beta(sec: Daemon, mode: str) -> None:
    port = port_of(sec)
    key = sec.api_key
    refused = [
        f"/v1/models?key={key}",
        f"/v1/models?api_key={key}",
        f"/v1/models?access_token={key}",
        f"/metrics?key={key}",
        f"/v1beta/../v1/models?key={key}",
        f"/v1beta/..%2f..%2fv1/models?key={key}",
        f"/v1/models/{MODEL}?key={key}",
        f"/v1/models;key={key}",
        f"/v1/models?key={key[:-1]}",
        f"/v1beta/models?key={key}x",
        f"/v1beta/models?KEY={key}",
    ]
    for target in refused:
        assert_refused(mode, f"GET {target}", raw(port, request("GET", target, [])))
    for target in (f"/v1/messages?key={key}", f"/v1/chat/completions?key={key}"):
        assert_refused(mode, f"POST {target}", raw(port, request("POST", target, [], b"{}")))
    # Google's SDKs send it there: it counts on /v1beta.
    for target in (f"/v1beta/models?key={key}", f"/v1beta/models?alt=json&key={key}"):
        (a,) = raw(port, request("GET", target, []))
        assert a.status == 200, a.body[:200]


def test_accepted_key_forms_are_let_in(sec: Daemon, mode: str) -> None:
    port = port_of(sec)
    key = sec.api_key
    for headers in good_key_headers(key):
        (a,) = raw(port, request("GET", "/v1/models", headers))
        assert a.status == 200, (headers, a.status, a.body[:200])
    # A request target that normalises to a real route still needs (and gets) the key.
    (a,) = raw(port, request("GET", "/healthz/../v1/models", [("Authorization", f"Bearer {key}")]))
    assert a.status == 200 and b'"object":"list"' in a.body


def test_ambiguous_credentials(sec: Daemon, mode: str) -> None:
    """Two credentials, one right: documented behaviour (the Authorization
    header wins, the last one if repeated). Never a way in without the key."""
    port = port_of(sec)
    key = sec.api_key
    wrong = "sk-wrong-0123456789"
    cases = {
        "x-api-key right, Authorization wrong": [
            ("x-api-key", key),
            ("Authorization", f"Bearer {wrong}"),
        ],
        "Authorization right, x-api-key wrong": [
            ("Authorization", f"Bearer {key}"),
            ("x-api-key", wrong),
        ],
        "Authorization wrong then right": [
            ("Authorization", f"Bearer {wrong}"),
            ("Authorization", f"Bearer {key}"),
        ],
        "Authorization right then wrong": [
            ("Authorization", f"Bearer {key}"),
            ("Authorization", f"Bearer {wrong}"),
        ],
    }
    seen = {}
    for name, headers in cases.items():
        (a,) = raw(port, request("GET", "/v1/models", headers))
        assert a.status in (200, 401), (name, a.status)
        seen[name] = a.status
    print(f"[{mode}] ambiguous credentials: {seen}")


def test_pipelined_and_smuggled_requests_are_each_checked(sec: Daemon, mode: str) -> None:
    port = port_of(sec)
    pipelined = request("GET", "/healthz", [], close=False) + request("GET", "/v1/models", [])
    answers = raw(port, pipelined)
    assert_refused(mode, "pipelined /healthz then /v1/models", answers)
    assert answers[-1].status == 401, answers
    inner = request("GET", "/v1/models", [])
    smuggles = [
        # CL + TE: the body "is" a second request for one reading of the message.
        f"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {len(inner) + 5}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + inner,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n0\r\n\r\n" + inner,
        f"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        f"Content-Length: {len(inner)}\r\n\r\n".encode()
        + inner,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n" + inner,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n Authorization: Bearer nope\r\n\r\n" + inner,
        b"GET /v1/models HTTP/1.0\r\n\r\n",
        b"GET /v1/models\r\n\r\n",
        b"GET /v1/models HTTP/2.0\r\nHost: x\r\n\r\n",
    ]
    for i, payload in enumerate(smuggles):
        assert_refused(mode, f"smuggle {i}", raw(port, payload))


def test_strict_mode_guards_health_too(sec: Daemon) -> None:
    sec.admin("PUT", "/config/proxy.auth_mode", json={"value": "strict"})
    port = port_of(sec)
    for t in ("/healthz", "/health", "//healthz", "/healthz/", "/v1/../healthz"):
        (a,) = raw(port, request("GET", t, []))
        assert a.status == 401, (t, a.status)


# ---------------------------------------------------------------- the admin socket


@pytest.fixture
def lone(fake: FakeGoogle, make_daemon: Any) -> Daemon:
    fake.reset()
    d: Daemon = make_daemon(base_config(fake, free_port(), proxy={"auth_mode": "strict"}))
    return d


def test_admin_socket_is_private(lone: Daemon) -> None:
    st_sock = os.stat(lone.socket)
    st_dir = os.stat(lone.socket.parent)
    assert stat.S_ISSOCK(st_sock.st_mode)
    assert stat.S_IMODE(st_sock.st_mode) == 0o600, oct(st_sock.st_mode)
    assert stat.S_IMODE(st_dir.st_mode) == 0o700, oct(st_dir.st_mode)
    assert st_sock.st_uid == os.getuid() and st_dir.st_uid == os.getuid()
    lone.admin("PUT", "/config/proxy.request_timeout", json={"value": "77"})  # the daemon writes config.toml
    for f in (lone.home / "config.toml", *(lone.home / "data").glob("**/*")):
        if f.is_file():
            assert stat.S_IMODE(os.stat(f).st_mode) & 0o077 == 0, f"{f} is readable by others"


OTHER_UID = 65534  # nobody
PROBE = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": type(exc).__name__})); sys.exit()
try:
    s.sendall(b"GET /status HTTP/1.1\\r\\nHost: d\\r\\nConnection: close\\r\\n\\r\\n")
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
except OSError as exc:
    print(json.dumps({"connect": "ok", "io": type(exc).__name__})); sys.exit()
print(json.dumps({"connect": "ok", "answer": got[:12].decode("latin-1")}))
"""


def probe_as_other_user(path: Path) -> dict[str, str]:
    res = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", PROBE, str(path)],
        user=OTHER_UID,
        group=OTHER_UID,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=20,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    out: dict[str, str] = json.loads(res.stdout)
    return out


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
    reason="needs root to act as another user",
)


@needs_root
def test_admin_socket_refuses_other_users(lone: Daemon) -> None:
    """Layer by layer: the 0700 run dir, then the 0600 socket, each alone keeps
    another user out (the home above is opened for traversal on purpose)."""
    home, run, sock = lone.home, lone.socket.parent, lone.socket
    os.chmod(home.parent, 0o711)  # the test's temp dirs: open for traversal
    os.chmod(home, 0o711)
    assert probe_as_other_user(sock) == {"connect": "PermissionError"}  # run/ is 0700
    os.chmod(run, 0o711)
    try:
        assert probe_as_other_user(sock) == {"connect": "PermissionError"}  # the socket is 0600
    finally:
        os.chmod(run, 0o700)
    assert lone.admin("GET", "/status")["daemon"]["pid"]


@needs_root
def test_admin_socket_checks_peer_credentials(lone: Daemon) -> None:
    home, run, sock = lone.home, lone.socket.parent, lone.socket
    os.chmod(home.parent, 0o711)
    os.chmod(home, 0o711)
    os.chmod(run, 0o711)
    os.chmod(sock, 0o666)
    try:
        got = probe_as_other_user(sock)
    finally:
        os.chmod(sock, 0o600)
        os.chmod(run, 0o700)
    # Defence in depth: the daemon itself refuses a peer with another uid.
    assert got.get("answer", "") != "HTTP/1.1 200", got


# ---------------------------------------------------------------- no secret in logs


def test_no_secret_in_logs_or_monitor(fake: FakeGoogle, short_tmp: Path) -> None:
    """A full run — accounts added (agctl), requests on every protocol and
    every way of sending the key, upstream failures, token refreshes, a
    revoked account, a rotated key, bodies logged — then no key or token in
    the daemon log, agctl's outputs or the monitor database."""
    fake.reset()
    tag = uid()
    emails = [f"leak-{n}-{tag}@example.com" for n in range(3)]
    refresh = {e: "1//0g" + secrets.token_urlsafe(48).replace("-", "A").replace("_", "B") for e in emails}
    for e in emails:
        fake.add_account(email=e, refresh_token=refresh[e])
    home = short_tmp / "leak"
    d = Daemon(home)
    d.write_config(
        base_config(fake, free_port(), proxy={"auth_mode": "strict"}, monitor={"log_bodies": True})
    )
    outputs: list[str] = []
    keys: list[str] = []
    access: set[str] = set()

    def ctl(*args: str, keep: bool = True) -> str:
        res = d.ctl(*args)
        if keep:
            outputs.append(f"{res.stdout}\n{res.stderr}")  # (not the command line: it may hold a token)
        return res.stdout

    try:
        d.start()
        for e in emails:
            ctl("accounts", "add", "--refresh-token", refresh[e])
        if d.status["proxy"]["state"] != "running":
            d.admin("POST", "/proxy/start")
        key = d.api_key
        keys.append(key)
        base = d.base_url
        with httpx.Client(base_url=base, timeout=30) as c:
            for proto in ("openai", "anthropic", "gemini"):
                for stream in (False, True):
                    sp = spec(proto, stream, key, text=f"my key is {key}, do not tell")
                    assert c.post(sp.path, json=sp.body, headers=sp.headers).status_code == 200
            c.get("/v1beta/models", params={"key": key})
            c.post(
                f"/v1beta/models/{MODEL}:generateContent?key={key}",
                json=spec("gemini", False, key).body,
            )
            c.get("/v1/models", headers={"authorization": f"Bearer {key}x"})  # wrong keys
            c.get("/v1/models", headers={"x-api-key": key[:-2]})
            auth = {"authorization": f"Bearer {key}"}
            chat = spec("openai", False, key).body
            # Upstream trouble: 429s, 5xx, an expired token (refresh), then a revoked account.
            for e in emails:
                fake.script(
                    [
                        Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay=0.5),
                        Reply.error(500),
                    ],
                    email=e,
                )
            for _ in range(4):
                c.post("/v1/chat/completions", json=chat, headers=auth)
            fake.reset()
            for a in d.admin("GET", "/accounts")["accounts"]:
                d.admin("POST", f"/accounts/{a['id']}/reset")
            d.admin("POST", "/accounts-refresh")
            for e in emails:  # only this daemon's: the session's fake serves others too
                fake.expire_tokens(e)
            assert c.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
            fake.revoke(emails[0])
            for _ in range(4):
                c.post("/v1/chat/completions", json=chat, headers=auth)
            fake.token_fail_status = 500
            fake.expire_tokens(emails[1])
            for _ in range(3):
                c.post("/v1/messages", json=spec("anthropic", True, key).body, headers=auth)
            fake.token_fail_status = None
        ctl("accounts", "refresh")
        for e in emails:
            ctl("accounts", "refresh", e)
        for args in (
            ("status",),
            ("accounts", "list"),
            ("logs", "-n", "100"),
            ("stats",),
            ("config", "show"),
            ("monitor",),
        ):
            ctl(*args)
            ctl(*args, "--json")
        # A rotated key: the new one is printed by `key rotate` (on purpose) and nowhere else.
        rotated = ctl("key", "rotate", "--json", keep=False)
        keys.append(d.api_key)
        assert keys[-1] in rotated
        ctl("logs", "-n", "100", "--json")
        for path in (home / "data" / "accounts").glob("*.json"):
            tok = json.loads(path.read_bytes()).get("access_token")
            if tok:
                access.add(tok)
    finally:
        d.stop()
        fake.reset()
    # Every access token the daemon ever used (the fake saw them all).
    access |= {
        c.headers.get("authorization", "")[7:]
        for c in fake.calls
        if c.headers.get("authorization", "").startswith("Bearer ya29.")
    }
    access.discard("")
    assert access and all(t.startswith("ya29.") for t in access)
    secrets_ = {
        **{f"api key {i}": k for i, k in enumerate(keys)},
        **{f"refresh token {e}": t for e, t in refresh.items()},
    }
    secrets_ |= {f"access token {t[:9]}": t for t in access}
    places = {"daemon log": d.log().encode(), "agctl output": "\n".join(outputs).encode()}
    data = home / "data"
    for name in ("monitor.sqlite3", "monitor.sqlite3-wal", "monitor.sqlite3-shm"):
        if (data / name).exists():
            places[name] = (data / name).read_bytes()
    db = places["monitor.sqlite3"] + places.get("monitor.sqlite3-wal", b"")
    assert b"leak-" in db and b"do not tell" in db  # rows and (redacted) bodies were written
    leaks = []
    for where, blob in places.items():
        for what, value in secrets_.items():
            for needle in {value, value[-16:]}:
                if needle.encode() in blob:
                    at = blob.find(needle.encode())
                    leaks.append(f"{what} in {where}: ...{blob[max(0, at - 80) : at + 40]!r}")
    assert not leaks, "\n".join(leaks)
