"""Issue 17, hardening of the proxy listener: each attack against the real
daemon (oversized and numerous headers, slowloris, CSRF-style posts, foreign
Host, cross-site Origin, an unauthenticated flood, bad keys), and property
tests on the validators behind them (``daemon.guards``, ``daemon.config``).

Raw sockets carry the attacks, so nothing on the client side fixes them up.
No test asserts a duration: timeouts are lowered to 1 s where one must fire,
and the test only checks what the daemon answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from daemon import config as config_mod
from daemon.errors import ConfigError
from daemon.guards import (
    FORM_TYPES,
    host_allowed,
    json_content_type,
    key_problem,
    normalize_origin,
    origin_allowed,
    same_origin,
    split_host,
)
from daemon.records import Refusal
from daemon.refusals import MAX_PAIRS, OVERFLOW_CLIENT, WINDOW, Refusals
from tests.conftest import Daemon, _bin, base_config, free_port
from tests.fakes.google import FakeGoogle
from tests.proxy.test_security import Answer, parse_answers
from tests.test_reliability import port_of, spec, start_daemon, uid

EVIL = "https://evil.example"
# As in test_fuzz: keep Hypothesis' cache out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "antigravity-hypothesis")
PROP = settings(database=None, deadline=None, max_examples=200, derandomize=True)

# ---------------------------------------------------------------- raw HTTP


def head(method: str, target: str, headers: list[tuple[str, str]], host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(
    port: int,
    path: str,
    body: bytes,
    headers: list[tuple[str, str]],
    host: str = "127.0.0.1",
) -> Answer:
    hs = [*headers, ("Content-Length", str(len(body))), ("Connection", "close")]
    return exchange(port, head("POST", path, hs, host) + body)


def exchange(port: int, data: bytes, timeout: float = 15.0) -> Answer:
    """Send ``data``; read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        return read_all(s)[0]


def read_all(s: socket.socket) -> list[Answer]:
    got = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := s.recv(65536):
            got += chunk
    return parse_answers(got)


def send_until_answered(port: int, prefix: bytes, filler: bytes, total: int) -> tuple[Answer, int]:
    """Send ``prefix`` then ``filler`` until ``total`` bytes or the server
    answers; returns the answer and how many bytes went out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(prefix)
        sent += len(prefix)
        while sent < total:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            try:
                s.sendall(filler)
            except OSError:
                break
            sent += len(filler)
        return read_all(s)[0], sent


def body_json(a: Answer) -> Any:
    return json.loads(a.body)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def refusals(d: Daemon, key: str) -> dict[str, float]:
    text = httpx.get(f"{d.base_url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("antigravity_refusals_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


# ---------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def hd(fake: FakeGoogle) -> Iterator[Daemon]:
    """The loopback default: auth_mode auto, which is off on 127.0.0.1."""
    fake.reset()
    home = Path(tempfile.mkdtemp(prefix="ag-hd-", dir="/tmp"))
    d = start_daemon(fake, home, [f"hard-{uid()}@example.com"], proxy={"auth_mode": "auto"})
    try:
        assert d.status["proxy"]["auth_mode"] == "off"
        yield d
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)
        fake.reset()


@contextlib.contextmanager
def setting(d: Daemon, key: str, value: str) -> Iterator[None]:
    old = d.admin("GET", f"/config/{key}")["value"]
    d.admin("PUT", f"/config/{key}", json={"value": value})
    try:
        yield
    finally:
        restore = json.dumps(old) if isinstance(old, list) else str(old)
        d.admin("PUT", f"/config/{key}", json={"value": restore})


CHAT = json.dumps(spec("openai", False, "").body).encode()
JSON = [("Content-Type", "application/json")]


def test_a_normal_request_passes_every_check(hd: Daemon) -> None:
    a = post(port_of(hd), "/v1/chat/completions", CHAT, JSON)
    assert a.status == 200, a.body[:300]


# ---------------------------------------------------------------- heads


def test_oversized_head_is_431_and_memory_stays_bounded(hd: Daemon) -> None:
    assert hd.proc is not None
    port = port_of(hd)
    before = rss_kb(hd.proc.pid)
    prefix = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    answer, sent = send_until_answered(port, prefix, b"a" * 65536, 64 * 1024 * 1024)
    assert answer.status == 431, answer
    err = body_json(answer)
    assert err["type"] == "error" and "limits.max_head_bytes" in err["error"]["message"]  # Anthropic shape
    assert sent < 64 * 1024 * 1024, "the daemon read the whole 64 MB header before answering"
    # Many header lines that add up past the limit (each one small).
    many = "".join(f"X-H{i % 90}: {'b' * 900}\r\n" for i in range(90))
    a = exchange(port, f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n".encode())
    assert a.status == 431 and "limits.max_head_bytes" in a.body.decode()
    # A request line alone over the limit.
    a = exchange(port, b"GET /" + b"u" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert a.status == 431
    # Memory: the refused head was never held whole.
    assert rss_kb(hd.proc.pid) - before < 50 * 1024
    # Under the limit passes.
    a = exchange(port, head("GET", "/v1/models", [("X-Ok", "c" * 30_000), ("Connection", "close")]))
    assert a.status == 200, a.body[:200]


def test_too_many_headers_is_431(hd: Daemon) -> None:
    port = port_of(hd)
    hs = [(f"X-N{i}", "1") for i in range(150)] + [("Connection", "close")]
    a = exchange(port, head("GET", "/v1/models", hs))
    assert a.status == 431
    msg = body_json(a)["error"]["message"]
    assert "100" in msg and "limits.max_headers" in msg
    hs = [(f"X-N{i}", "1") for i in range(90)] + [("Connection", "close")]
    assert exchange(port, head("GET", "/v1/models", hs)).status == 200
    with setting(hd, "limits.max_headers", "200"):
        hs = [(f"X-N{i}", "1") for i in range(150)] + [("Connection", "close")]
        assert exchange(port, head("GET", "/v1/models", hs)).status == 200


def test_header_and_body_timeouts_answer_408(hd: Daemon) -> None:
    port = port_of(hd)
    with setting(hd, "limits.header_timeout", "1"):
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(
                b"POST /v1beta/models/gemini-3-flash:generateContent HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: "
            )
            (a,) = read_all(s)
        assert a.status == 408
        err = body_json(a)["error"]
        assert err["status"] == "DEADLINE_EXCEEDED" and "limits.header_timeout" in err["message"]  # Gemini
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:  # not a byte sent
            (a,) = read_all(s)
        assert a.status == 408
    with setting(hd, "limits.body_timeout", "1"):
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(head("POST", "/v1/chat/completions", [*JSON, ("Content-Length", "100")]) + b'{"mo')
            (a,) = read_all(s)
        assert a.status == 408 and "limits.body_timeout" in a.body.decode()
    assert refusals(hd, hd.api_key).get("header_timeout", 0) >= 2


def half_heads(port: int, n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
        socks.append(s)
    return socks


def test_slowloris_does_not_starve_the_proxy_or_the_admin_socket(hd: Daemon) -> None:
    port = port_of(hd)
    socks = half_heads(port, 300)
    try:
        assert post(port, "/v1/chat/completions", CHAT, JSON).status == 200
        res = hd.ctl("status")
        assert res.returncode == 0, res.stderr
        # At the connection cap, a new connection closes the oldest one still
        # waiting for its head.
        with setting(hd, "limits.max_connections", "40"):
            socks += half_heads(port, 100)
            assert post(port, "/v1/chat/completions", CHAT, JSON).status == 200
            assert hd.ctl("status").returncode == 0
            with httpx.Client(base_url=hd.base_url, timeout=30) as c:
                assert c.get("/v1/models").status_code == 200
    finally:
        for s in socks:
            s.close()
    assert refusals(hd, hd.api_key).get("connections", 0) > 0


def test_fd_limit_caps_connections_and_admin_keeps_answering(fake: FakeGoogle, short_tmp: Path) -> None:
    """The daemon under a hard limit of 256 descriptors: 400 half heads do
    not take the last descriptor (agctl status answers, a request passes)."""
    fake.reset()
    email = f"fd-{uid()}@example.com"
    fake.add_account(email=email)
    d = Daemon(short_tmp / "fd")
    d.write_config(base_config(fake, free_port()))
    d.home.mkdir(parents=True, exist_ok=True)

    def low_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with open(d.log_path, "ab") as log:
        d.proc = subprocess.Popen(
            [*_bin("antigravityd"), "--log-level", "DEBUG"],
            env=d.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=low_nofile,
        )
    socks: list[socket.socket] = []
    try:
        d.wait_ready()
        d.admin("POST", "/accounts", json={"refresh_token": fake.account(email).refresh_token})
        if d.status["proxy"]["state"] != "running":
            d.admin("POST", "/proxy/start")
        port = port_of(d)
        socks = half_heads(port, 400)
        assert d.ctl("status").returncode == 0
        assert post(port, "/v1/chat/completions", CHAT, JSON).status == 200
        assert d.proc is not None
        assert len(os.listdir(f"/proc/{d.proc.pid}/fd")) < 256
    finally:
        for s in socks:
            s.close()
        d.stop()
        fake.reset()


# ---------------------------------------------------------------- browsers


def test_csrf_style_posts_are_415(hd: Daemon) -> None:
    port = port_of(hd)
    cases = [
        ("/v1/chat/completions", "text/plain", "openai"),
        ("/v1/chat/completions", "text/plain;charset=UTF-8", "openai"),
        ("/v1/messages", "application/x-www-form-urlencoded", "anthropic"),
        ("/v1beta/models/gemini-3-flash:generateContent", "multipart/form-data; boundary=x", "gemini"),
    ]
    for path, ctype, proto in cases:
        a = post(port, path, CHAT, [("Content-Type", ctype)])
        assert a.status == 415, (path, ctype, a.body[:200])
        err = body_json(a)
        assert (err.get("type") == "error") == (proto == "anthropic")
        if proto == "gemini":
            assert err["error"]["status"] == "INVALID_ARGUMENT"
    # No Content-Type at all (a script; browsers send Origin, judged below): read as JSON.
    assert post(port, "/v1/chat/completions", CHAT, []).status == 200
    assert (
        post(port, "/v1/chat/completions", CHAT, [("Content-Type", "application/json; charset=utf-8")]).status
        == 200
    )


def test_cross_site_origin_is_403_unless_allowed(hd: Daemon) -> None:
    port = port_of(hd)
    own = f"http://127.0.0.1:{port}"
    for headers in (
        [("Origin", EVIL)],
        [("Origin", "null")],
        [("Origin", "http://localhost:3000")],
        [("Sec-Fetch-Site", "cross-site")],
    ):
        a = post(port, "/v1/chat/completions", CHAT, [*JSON, *headers])
        assert a.status == 403, (headers, a.body[:200])
        assert "limits.allowed_origins" in body_json(a)["error"]["message"]
    assert post(port, "/api/event_logging/batch", b"{}", [*JSON, ("Origin", EVIL)]).status == 403
    # A browser sends the port in Host, as in its own origin.
    assert post(port, "/v1/chat/completions", CHAT, [*JSON, ("Origin", own)], host=own[7:]).status == 200
    assert post(port, "/v1/chat/completions", CHAT, [*JSON, ("Sec-Fetch-Site", "same-origin")]).status == 200
    # A read is let through but a foreign page cannot read it (no CORS header).
    a = exchange(port, head("GET", "/v1/models", [("Origin", EVIL), ("Connection", "close")]))
    assert a.status == 200 and "access-control-allow-origin" not in a.headers
    pre = [("Origin", EVIL), ("Access-Control-Request-Method", "POST"), ("Connection", "close")]
    assert exchange(port, head("OPTIONS", "/v1/chat/completions", pre)).status == 403

    web = "http://localhost:3000"
    with setting(hd, "limits.allowed_origins", web):
        pre = [
            ("Origin", web),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
            ("Connection", "close"),
        ]
        a = exchange(port, head("OPTIONS", "/v1/chat/completions", pre))
        assert a.status == 204
        assert a.headers["access-control-allow-origin"] == web
        assert "POST" in a.headers["access-control-allow-methods"]
        assert "content-type" in a.headers["access-control-allow-headers"]
        a = post(port, "/v1/chat/completions", CHAT, [*JSON, ("Origin", web)])
        assert a.status == 200 and a.headers["access-control-allow-origin"] == web
        assert post(port, "/v1/chat/completions", CHAT, [*JSON, ("Origin", EVIL)]).status == 403


def test_foreign_host_is_421_in_the_callers_shape(hd: Daemon) -> None:
    port = port_of(hd)
    a = post(port, "/v1/chat/completions", CHAT, JSON, host="evil.example")
    assert a.status == 421 and "limits.allowed_hosts" in body_json(a)["error"]["message"]
    a = post(port, "/v1/messages", CHAT, JSON, host=f"rebind.evil.example:{port}")
    assert a.status == 421 and body_json(a)["type"] == "error"
    a = exchange(port, head("GET", "/metrics", [("Connection", "close")], host="evil.example"))
    assert a.status == 421
    for ok in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "10.1.2.3:9", "mybox"):
        assert post(port, "/v1/chat/completions", CHAT, JSON, host=ok).status == 200, ok
    with setting(hd, "limits.allowed_hosts", "proxy.example"):
        assert post(port, "/v1/chat/completions", CHAT, JSON, host=f"proxy.example:{port}").status == 200
    # HTTP/1.1 without Host (nginx: 400).
    a = exchange(port, b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert a.status == 400


def test_metrics_hide_emails_without_the_key(hd: Daemon) -> None:
    assert post(port_of(hd), "/v1/chat/completions", CHAT, JSON).status == 200
    emails = [a["email"] for a in hd.admin("GET", "/accounts")["accounts"]]
    ids = [a["id"] for a in hd.admin("GET", "/accounts")["accounts"]]
    keyed = httpx.get(f"{hd.base_url}/metrics", headers={"x-api-key": hd.api_key}, timeout=10).text
    assert any(e in keyed for e in emails)
    bare = httpx.get(f"{hd.base_url}/metrics", timeout=10).text  # auth is off: answered, without emails
    assert "antigravity_tokens_total" in bare
    assert not any(e in bare for e in emails) and "@" not in bare
    assert any(i in bare for i in ids)


def test_body_limits_per_route(hd: Daemon) -> None:
    port = port_of(hd)
    with setting(hd, "limits.max_other_body_bytes", "2048"):
        a = post(port, "/api/event_logging/batch", b"x" * 4096, JSON)
        assert a.status == 413 and "limits.max_other_body_bytes" in a.body.decode()
        assert post(port, "/v1/chat/completions", CHAT + b" " * 4096, JSON).status == 200
    with setting(hd, "proxy.max_body_bytes", "4096"):  # the old key still sets the limit
        assert hd.admin("GET", "/config/limits.max_body_bytes")["value"] == 4096
        a = post(port, "/v1/chat/completions", CHAT + b" " * 5000, JSON)
        assert a.status == 413 and "limits.max_body_bytes" in a.body.decode()


# ---------------------------------------------------------------- the flood


def test_unauthenticated_flood_writes_a_bounded_number_of_rows(fake: FakeGoogle, short_tmp: Path) -> None:
    fake.reset()
    email = f"flood-{uid()}@example.com"
    d = start_daemon(fake, short_tmp / "fl", [email], proxy={"auth_mode": "strict"})
    n_keyless, n_host = 2000, 300
    try:
        with httpx.Client(base_url=d.base_url, timeout=30) as c:
            for _ in range(n_keyless):
                assert c.post("/v1/chat/completions", content=CHAT, headers=dict(JSON)).status_code == 401
            for _ in range(n_host):
                r = c.get("/v1/models", headers={"host": "evil.example"})
                assert r.status_code == 421
        counted = refusals(d, d.api_key)
        assert counted["unauthorized"] == n_keyless and counted["host"] == n_host
        assert d.proc is not None
        pid = d.proc.pid
        rss = rss_kb(pid)
    finally:
        d.stop()
        fake.reset()
    assert rss < 400 * 1024
    con = sqlite3.connect(short_tmp / "fl" / "data" / "monitor.sqlite3")
    rows = con.execute(
        "SELECT route, status, error FROM requests WHERE status IN (401, 421) ORDER BY id"
    ).fetchall()
    con.close()
    # One row for the first of each (client, reason), one summary per minute after it.
    assert 2 <= len(rows) <= 6, rows

    def stands_for(error: str) -> int:
        return int(error.split(" ", 1)[0]) if " more request(s) " in error else 1

    assert sum(stands_for(e) for r, s, e in rows if s == 401) == n_keyless
    assert sum(stands_for(e) for r, s, e in rows if s == 421) == n_host
    assert all("proxy.api_key" in e for _, s, e in rows if s == 401)


# ---------------------------------------------------------------- keys


def test_a_key_with_a_tab_is_refused_by_config_set_and_at_start(hd: Daemon, short_tmp: Path) -> None:
    bad = "sk-abc\tdef0123456789"
    res = hd.ctl("config", "set", "proxy.api_key", bad)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "proxy.api_key" in out and "tab" in out and bad not in out
    assert hd.api_key != bad
    res = hd.ctl("config", "set", "zai.api_key", "zai key with spaces")
    assert res.returncode != 0 and "zai.api_key" in res.stdout + res.stderr
    # At start: the daemon refuses and says which key.
    d = Daemon(short_tmp / "badkey")
    cfg = base_config(None, free_port())
    cfg["proxy"]["api_key"] = bad
    d.write_config(cfg)
    d.start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(30) == 1
    log = d.log()
    assert "proxy.api_key" in log and "tab" in log and bad not in log


# ---------------------------------------------------------------- property tests

_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@PROP
@given(st.text(max_size=80))
def test_key_problem_never_repeats_the_key(value: str) -> None:
    problem = key_problem(value, min_length=10)
    ok = len(value) >= 10 and all("\x21" <= c <= "\x7e" for c in value)
    assert (problem is None) == ok
    # The message depends on the length and the first bad character only: it
    # reads the same with every printable character masked (nothing leaks).
    masked = "".join("x" if "\x21" <= c <= "\x7e" else c for c in value)
    assert key_problem(masked, min_length=10) == problem


@PROP
@given(_PRINTABLE, st.sampled_from([" ", "\t", "\n", "\r", "\x00", "é", "\x7f"]), st.integers(0, 40))
def test_config_refuses_keys_with_whitespace_or_control(base: str, bad: str, at: int) -> None:
    key = ("sk-" + base + "x" * 10)[: max(10, len(base) + 3)]
    at = min(at, len(key))
    value = key[:at] + bad + key[at:]
    if not value.startswith("sk-"):
        value = "sk-" + value
    with pytest.raises(ConfigError) as exc:
        config_mod.with_value(
            config_mod.Config(proxy=config_mod.ProxyConfig(api_key="sk-good-0123456789")),
            "proxy.api_key",
            value,
        )
    assert "proxy.api_key" in exc.value.message


@PROP
@given(st.ip_addresses(), st.one_of(st.none(), st.integers(1, 65535)))
def test_ip_literal_hosts_pass(ip: Any, port: int | None) -> None:
    text = f"[{ip}]" if ip.version == 6 else str(ip)
    if port is not None:
        text += f":{port}"
    assert host_allowed(text)


_LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@PROP
@given(st.lists(_LABEL, min_size=2, max_size=4), st.one_of(st.none(), st.integers(1, 65535)))
def test_dotted_names_need_the_allow_list(labels: list[str], port: int | None) -> None:
    name = ".".join(labels)
    text = name if port is None else f"{name}:{port}"
    if labels[-1] == "localhost":
        assert host_allowed(text)
        return
    assert not host_allowed(text)
    assert host_allowed(text, [name])
    assert host_allowed(text.upper(), [name + "."])
    assert host_allowed(text, ["*"])
    if port is not None:
        assert host_allowed(text, [f"{name}:{port}"])
        assert not host_allowed(text, [f"{name}:{port % 65535 + 1}"])


@PROP
@given(st.text(max_size=60))
def test_host_parsing_never_raises_and_refuses_junk(text: str) -> None:
    parsed = split_host(text)
    allowed = host_allowed(text)
    if parsed is None:
        assert not allowed
    if any(c in text for c in "/@?# \t"):
        assert not allowed


@PROP
@given(
    st.sampled_from(["http", "https"]),
    st.lists(_LABEL, min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(1, 65535)),
)
def test_origin_normalisation(scheme: str, labels: list[str], port: int | None) -> None:
    host = ".".join(labels)
    origin = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    norm = normalize_origin(origin)
    assert norm is not None and normalize_origin(norm) == norm
    assert origin_allowed(origin.upper(), [origin])
    assert not origin_allowed(origin, [f"{scheme}://other-{host}"])
    assert normalize_origin(origin + "/path") is None
    assert same_origin(f"http://{host}:8045", f"{host}:8045")
    assert not same_origin(f"https://{host}:8045", f"{host}:8045")


@PROP
@given(st.text(max_size=40))
def test_origin_junk_is_never_allowed_by_a_list(text: str) -> None:
    if normalize_origin(text) is None:
        assert not origin_allowed(text, ["http://localhost:3000"])


@PROP
@given(st.sampled_from(sorted(FORM_TYPES)), st.text(max_size=30))
def test_form_types_are_not_json(mt: str, params: str) -> None:
    assert not json_content_type(f"{mt};{params}")
    assert not json_content_type(mt.upper())
    assert json_content_type(f"application/json;{params}")
    assert json_content_type(f"Application/JSON ; {params}")
    assert json_content_type("application/vnd.api+json")
    assert json_content_type(None)


@PROP
@given(st.text(max_size=200))
def test_content_type_check_never_raises(text: str) -> None:
    json_content_type(text)


# ---------------------------------------------------------------- units


def test_limits_are_validated_and_name_the_key() -> None:
    cfg = config_mod.Config(proxy=config_mod.ProxyConfig(api_key="sk-good-0123456789"))
    for key, value in (
        ("limits.max_head_bytes", "10"),
        ("limits.max_headers", "0"),
        ("limits.header_timeout", "0"),
        ("limits.max_connections", "0"),
        ("limits.allowed_hosts", "evil.example/path"),
        ("limits.allowed_origins", "localhost:3000"),
    ):
        with pytest.raises(ConfigError) as exc:
            config_mod.with_value(cfg, key, value)
        assert key in exc.value.message, exc.value.message
    new = config_mod.with_value(cfg, "limits.allowed_origins", "http://localhost:3000, https://app.example")
    assert new.limits.allowed_origins == ["http://localhost:3000", "https://app.example"]


def test_old_max_body_bytes_moves_to_limits(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[proxy]\napi_key = "sk-good-0123456789"\nmax_body_bytes = 5000\n')
    cfg, changed = config_mod.load(path)
    assert changed and cfg.limits.max_body_bytes == 5000
    assert config_mod.get_value(cfg, "proxy.max_body_bytes") == 5000


def test_refusals_are_aggregated_per_client_and_reason() -> None:
    now = [0.0]
    rows: list[tuple[Refusal, int]] = []
    counted: list[str] = []
    r = Refusals(
        lambda ref, n, span: rows.append((ref, n)),
        lambda ref: counted.append(ref.reason),
        clock=lambda: now[0],
    )

    def refuse(client: str, reason: str = "unauthorized") -> None:
        r.refuse(Refusal(reason=reason, status=401, kind="authentication", message="no key", client=client))

    for _ in range(5000):
        refuse("10.0.0.1")
        now[0] += 0.001
    refuse("10.0.0.1", "host")
    assert [n for _, n in rows] == [1, 1] and len(counted) == 5001
    now[0] += WINDOW + 1
    r.sweep()
    assert [n for _, n in rows] == [1, 1, 4999]
    assert rows[-1][0].message.startswith("4999 more request(s) from 10.0.0.1")
    # Many clients at once: capped; the rest share one pair.
    rows.clear()
    for i in range(MAX_PAIRS + 500):
        refuse(f"10.1.{i // 256}.{i % 256}")
    assert len(rows) == MAX_PAIRS + 1 and rows[-1][0].client == OVERFLOW_CLIENT
    r.sweep(everything=True)
    assert rows[-1][0].client == OVERFLOW_CLIENT and rows[-1][1] == 499
