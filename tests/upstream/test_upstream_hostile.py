"""Issue 17, hardening of the upstream client: a hostile upstream
(tests/fakes/hostile.py: gzip bomb, a stream bomb, a 100 MB SSE line, an
endless header, endless headers, a redirect, a stall) against
``HttpClient`` directly, then against the real daemon, whose account was
added through the fake Google and whose ``upstream.endpoints`` then point
at the hostile server.

Each attack must end in an upstream error that names the limit's config
key (502 in the caller's protocol shape, or an error event once a stream
has begun), leave the account as it was, and keep the daemon's peak RSS
under its baseline + 100 MB, returning to the baseline after.

No test asserts a duration: the stall's read timeout is lowered to 1 s and
only the answer is checked.
"""

from __future__ import annotations

import contextlib
import json
import resource
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from daemon import config as config_mod
from daemon.config import Config
from daemon.errors import ConfigError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from daemon.upstream.cloudcode import sse_events
from daemon.upstream.http import HttpClient
from tests.conftest import Daemon
from tests.fakes.google import FakeGoogle
from tests.fakes.hostile import HostileUpstream
from tests.test_reliability import Outcome, daemon_in_tmp, fire_sync, spec, uid

MB = 1024 * 1024
#: The daemon's RSS may grow by at most this over its baseline during an attack.
RSS_BOUND_KB = 100 * 1024
#: ... and must come back within this of its baseline after one.
RSS_SETTLE_KB = 40 * 1024
GENERATE = "/v1internal:generateContent"
STREAM = "/v1internal:streamGenerateContent?alt=sse"


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as h:
        yield h


def config(read_timeout: int = 30, **limits: int) -> Config:
    cfg = Config()
    cfg.proxy.api_key = config_mod.new_api_key()
    cfg.upstream.stream_idle_timeout = read_timeout
    cfg.proxy.request_timeout = read_timeout
    for name, value in limits.items():
        setattr(cfg.limits, name, value)
    config_mod.validate(cfg)
    return cfg


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient(config())
    yield c
    await c.aclose()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ HttpClient directly


async def test_gzip_bomb_is_cut_while_decoding(hostile: HostileUpstream, client: HttpClient) -> None:
    before = peak_rss_mb()
    with pytest.raises(UpstreamError) as info:
        await client.post(hostile.url("bomb") + GENERATE, b"{}", {})
    assert type(info.value) is UpstreamError and info.value.status == 502
    assert "limits.upstream_max_body_bytes" in info.value.message
    assert "64 MiB" in info.value.message
    # Decoded whole it would be 1 GiB (aiohttp's own read() took it all).
    assert peak_rss_mb() - before < 100, "the bomb was decoded past the limit"


async def test_gzip_bomb_on_a_stream_is_cut_at_the_line_limit(
    hostile: HostileUpstream, client: HttpClient
) -> None:
    before = peak_rss_mb()
    reply = await client.open(hostile.url("bomb") + STREAM, b"{}", {})
    try:
        with pytest.raises(UpstreamError, match=r"limits\.upstream_max_line_bytes"):
            async for _ in reply.aiter_lines():
                pass
    finally:
        await reply.aclose()
    assert peak_rss_mb() - before < 100


async def test_a_stream_bomb_of_short_lines_is_cut_past_the_body_limit(
    hostile: HostileUpstream, client: HttpClient
) -> None:
    reply = await client.open(hostile.url("sse-bomb") + STREAM, b"{}", {})
    events = []
    try:
        with pytest.raises(UpstreamError, match="decompression bomb") as info:
            async for ev in sse_events(reply):
                events.append(ev)
    finally:
        await reply.aclose()
    assert "limits.upstream_max_body_bytes" in info.value.message
    # What came before the bomb went through.
    assert events and events[0]["candidates"][0]["content"]["parts"][0]["text"] == "Hello"


async def test_a_100mb_sse_line_is_refused_at_the_limit_not_buffered(
    hostile: HostileUpstream, client: HttpClient
) -> None:
    before = peak_rss_mb()
    reply = await client.open(hostile.url("line") + STREAM, b"{}", {})
    try:
        with pytest.raises(UpstreamError) as info:
            async for _ in sse_events(reply):
                pass
    finally:
        await reply.aclose()
    assert "16 MiB" in info.value.message and "limits.upstream_max_line_bytes" in info.value.message
    assert peak_rss_mb() - before < 100
    # Unary, the same answer is a body past the body limit.
    with pytest.raises(UpstreamError, match=r"limits\.upstream_max_body_bytes"):
        await client.post(hostile.url("line") + GENERATE, b"{}", {})


@pytest.mark.parametrize(
    ("attack", "key"),
    [("header", "limits.upstream_max_header_bytes"), ("headers", "limits.upstream_max_headers")],
)
async def test_an_endless_head_is_refused(
    hostile: HostileUpstream, client: HttpClient, attack: str, key: str
) -> None:
    before = peak_rss_mb()
    for call in (client.post, client.open):
        with pytest.raises(UpstreamError) as info:
            await call(hostile.url(attack) + GENERATE, b"{}", {})
        # Not "unavailable" (the next host would be no better, but it is not
        # the network), and never the header's own bytes.
        assert not isinstance(info.value, UpstreamUnavailable | UpstreamTimeout)
        assert key in info.value.message and "aaaa" not in info.value.message
    assert peak_rss_mb() - before < 100


async def test_a_redirect_is_an_upstream_error(hostile: HostileUpstream, client: HttpClient) -> None:
    for call in (client.post, client.open):
        with pytest.raises(UpstreamError) as info:
            await call(hostile.url("redirect") + GENERATE, b"{}", {})
        assert type(info.value) is UpstreamError and info.value.status == 502
        assert info.value.upstream_status == 301


async def test_a_stalled_stream_ends_in_a_timeout(hostile: HostileUpstream) -> None:
    c = HttpClient(config(read_timeout=1))
    try:
        reply = await c.open(hostile.url("stall") + STREAM, b"{}", {})
        got = []
        with pytest.raises(UpstreamTimeout):
            async for ev in sse_events(reply):
                got.append(ev)
        await reply.aclose()
        assert len(got) == 1
    finally:
        await c.aclose()


# -- the limits' edges, against a well-behaved server


class Exact:
    """Answers of exact sizes: ``/line/N`` one SSE line of N bytes of data
    (CRLF-ended), ``/body/N`` N bytes gzipped, ``/head/N`` a header of N bytes."""

    @staticmethod
    async def line(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, n, 50_000):  # in pieces, as a network delivers
            await resp.write(b"x" * min(50_000, n - i))
        await resp.write(b"\r\n\r\n")
        await resp.write_eof()
        return resp

    @staticmethod
    async def body(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        resp = web.Response(body=b"y" * n)
        resp.enable_compression(force=web.ContentCoding.gzip)
        return resp

    @staticmethod
    async def head(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(body=b"{}", headers={"x-big": "h" * (n - len("x-big"))})


@pytest.fixture
async def exact() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/line/{n}", Exact.line)
    app.router.add_post("/body/{n}", Exact.body)
    app.router.add_post("/head/{n}", Exact.head)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_limits_hold_at_their_edge(exact: str) -> None:
    line, body, head = 64 * 1024, MB, 4096
    c = HttpClient(
        config(
            upstream_max_line_bytes=line,
            upstream_max_body_bytes=body,
            upstream_max_header_bytes=head,
        )
    )
    try:
        reply = await c.open(f"{exact}/line/{line}", b"{}", {})
        assert [len(x) async for x in reply.aiter_lines()] == [line, 0]
        await reply.aclose()
        reply = await c.open(f"{exact}/line/{line + 1}", b"{}", {})
        with pytest.raises(UpstreamError, match="64 KiB"):
            async for _ in reply.aiter_lines():
                pass
        await reply.aclose()

        assert len((await c.post(f"{exact}/body/{body}", b"{}", {})).content) == body
        with pytest.raises(UpstreamError, match=r"over 1 MiB decoded.*limits\.upstream_max_body_bytes"):
            await c.post(f"{exact}/body/{body + 1}", b"{}", {})

        assert (await c.post(f"{exact}/head/{head - 100}", b"{}", {})).status_code == 200
        with pytest.raises(UpstreamError, match=r"limits\.upstream_max_header_bytes"):
            await c.post(f"{exact}/head/{head + 1}", b"{}", {})
    finally:
        await c.aclose()


def test_upstream_limits_are_validated_and_name_the_key() -> None:
    cfg = config()
    for key in (
        "limits.upstream_max_body_bytes",
        "limits.upstream_max_line_bytes",
        "limits.upstream_max_header_bytes",
        "limits.upstream_max_headers",
    ):
        assert key in config_mod.keys()
        for bad in ("0", "-1", str(1 << 40)):
            with pytest.raises(ConfigError) as info:
                config_mod.with_value(cfg, key, bad)
            assert info.value.param == key and key in info.value.message
    assert config_mod.with_value(
        cfg, "limits.upstream_max_line_bytes", "33554432"
    ).limits.upstream_max_line_bytes == (32 * MB)
    limits = Config().limits
    assert limits.upstream_max_body_bytes == 64 * MB and limits.upstream_max_line_bytes == 16 * MB
    assert limits.upstream_max_header_bytes == 16 * 1024 and limits.upstream_max_headers == 100


# ------------------------------------------------------------------ the real daemon


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0])
    return out


def reset_peak(pid: int) -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so each attack's peak
    is its own."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def hd(fake: FakeGoogle, hostile: HostileUpstream) -> Iterator[dict[str, Any]]:
    """A daemon with one account (added through the fake Google), a warmed-up
    baseline RSS; the stall's read timeout 1 s."""
    email = f"hostile-{uid()}@example.com"
    with daemon_in_tmp(
        fake,
        [email],
        proxy={"auth_mode": "strict", "request_timeout": 1, "stream_keepalive": 0.5},
        upstream={"stream_idle_timeout": 1},
    ) as d:
        assert d.proc is not None
        key = d.api_key
        for protocol in ("openai", "anthropic", "gemini"):
            for stream in (True, False):
                out = fire_sync(d, spec(protocol, stream, key))
                assert out.kind == "ok", out
        yield {"d": d, "key": key, "pid": d.proc.pid, "baseline": status_kb(d.proc.pid)["VmRSS"]}


def point_at(d: Daemon, url: str) -> None:
    d.admin("PUT", "/config/upstream.endpoints", json={"value": json.dumps([url])})


def accounts(d: Daemon) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = d.admin("GET", "/accounts")["accounts"]
    return listed


ATTACKS = [
    # (attack, stream, what the caller gets, the words in it)
    ("bomb", False, "error 502", "limits.upstream_max_body_bytes"),
    ("bomb", True, "error 502", "limits.upstream_max_line_bytes"),
    ("sse-bomb", True, "stream_error", "decompression bomb"),
    ("line", True, "error 502", "limits.upstream_max_line_bytes"),
    ("line", False, "error 502", "limits.upstream_max_body_bytes"),
    ("header", False, "error 502", "limits.upstream_max_header_bytes"),
    ("header", True, "error 502", "limits.upstream_max_header_bytes"),
    ("headers", True, "error 502", "limits.upstream_max_headers"),
    ("redirect", False, "error 502", "redirect"),
    ("redirect", True, "error 502", "redirect"),
    ("stall", True, "stream_error", "silent"),
    ("stall", False, "error 504", "sent nothing"),
]


def state(a: dict[str, Any]) -> tuple[Any, ...]:
    return (a["id"], a["enabled"], a["state"], a["disabled_reason"], a["cooldowns"])


def kind(out: Outcome) -> str:
    return out.kind if out.kind != "error" else f"error {out.status}"


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize(("attack", "stream", "expect", "words"), ATTACKS)
def test_hostile_upstream_against_the_daemon(
    hd: dict[str, Any],
    hostile: HostileUpstream,
    fake: FakeGoogle,
    protocol: str,
    attack: str,
    stream: bool,
    expect: str,
    words: str,
) -> None:
    d: Daemon = hd["d"]
    pid: int = hd["pid"]
    before_accounts = accounts(d)
    point_at(d, hostile.url(attack))
    reset_peak(pid)
    try:
        out = fire_sync(d, spec(protocol, stream, hd["key"], text=f"{attack} {protocol}"))
        peak = status_kb(pid)["VmHWM"]
    finally:
        point_at(d, fake.endpoint)
    # The caller's own protocol shape (classify checked it), an upstream
    # status (never a 4xx that blames the caller), the limit named.
    assert kind(out) == expect, out
    assert words in out.detail, out
    # The account is as it was: enabled, active, no cooldown (nothing was
    # blamed on it, or on the caller).
    after = accounts(d)
    assert (
        [state(a) for a in after]
        == [state(a) for a in before_accounts]
        == [(a["id"], True, "active", "", {}) for a in after]
    )
    # Memory: the attack's peak under baseline + 100 MB, and back after.
    assert peak - hd["baseline"] < RSS_BOUND_KB, (attack, peak, hd["baseline"])
    settled = status_kb(pid)["VmRSS"]
    print(
        f"\n{attack:9} {protocol:9} stream={stream!s:5} RSS baseline {hd['baseline'] / 1024:.0f} MB, "
        f"attack peak {peak / 1024:.0f} MB, after {settled / 1024:.0f} MB"
    )
    assert settled - hd["baseline"] < RSS_SETTLE_KB, (attack, settled, hd["baseline"])
    # The daemon still serves.
    assert fire_sync(d, spec(protocol, stream, hd["key"])).kind == "ok"
