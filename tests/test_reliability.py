"""Issue 8, reliability: upstream faults, client faults, crash safety, soak.

Everything runs against the real daemon (a subprocess) and the fake Google.
CI runs a short version of each test; ``AG_LONG=1`` runs the long versions
(10,000 fault requests, a 30-minute soak, 100 crash iterations) and prints
the figures. Knobs: ``AG_FAULT_REQUESTS``, ``AG_SOAK_SECONDS``,
``AG_CRASH_ITERATIONS``.

Timeouts are set small in the daemon's config so that a "hang" is cheap to
detect: ``proxy.request_timeout`` and ``upstream.stream_idle_timeout`` are
1 s, the fake's silences are 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import Daemon, base_config, free_port
from tests.fakes.google import FakeGoogle, Reply

LONG = os.environ.get("AG_LONG") == "1"
FAULT_REQUESTS = int(os.environ.get("AG_FAULT_REQUESTS", 10_000 if LONG else 300))
SOAK_SECONDS = float(os.environ.get("AG_SOAK_SECONDS", 1800))
CRASH_ITERATIONS = int(os.environ.get("AG_CRASH_ITERATIONS", 100 if LONG else 20))
CONCURRENCY = 16
CLIENT_BURST = 1000 if LONG else 100

MODEL = "gemini-3-flash"
#: proxy.request_timeout and upstream.stream_idle_timeout of the fault daemon (seconds).
UPSTREAM_TIMEOUT = 1
#: daemon.dispatch's backoff ceiling (seconds) — one per failed attempt at most.
BACKOFF_MAX = 2.0
MAX_ATTEMPTS = 4
#: The longest any request may take: every attempt times out and backs off.
HANG_BOUND = MAX_ATTEMPTS * (UPSTREAM_TIMEOUT + BACKOFF_MAX)
#: Client-side timeout: anything near it is a hang.
CLIENT_TIMEOUT = 30.0
#: Marks text a misbehaving account sends before it breaks off.
PARTIAL = "STORMPARTIAL"
#: The storm's answer that breaks off after two events.
STORM_PARTIAL_ANSWER = f"{PARTIAL} one two three four"

TRACEBACK_MARKERS = ("Traceback", 'File "')


# ---------------------------------------------------------------- daemon helpers


def uid() -> str:
    return os.urandom(4).hex()


def start_daemon(fake: FakeGoogle, home: Path, emails: list[str], **sections: dict[str, Any]) -> Daemon:
    """A daemon in ``home`` with ``emails`` (added to the fake) as accounts, proxy running."""
    d = Daemon(home)
    d.write_config(base_config(fake, free_port(), **sections))
    d.start()
    try:
        for email in emails:
            if email not in fake.accounts:
                fake.add_account(email=email)
            d.admin("POST", "/accounts", json={"refresh_token": fake.account(email).refresh_token})
        if d.status["proxy"]["state"] != "running":
            d.admin("POST", "/proxy/start")
    except BaseException:
        d.stop()
        raise
    return d


@contextlib.contextmanager
def daemon_in_tmp(fake: FakeGoogle, emails: list[str], **sections: dict[str, Any]) -> Iterator[Daemon]:
    home = Path(tempfile.mkdtemp(prefix="ag-r-", dir="/tmp"))
    d = start_daemon(fake, home, emails, **sections)
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def port_of(d: Daemon) -> int:
    return int(d.base_url.rsplit(":", 1)[1])


def fd_kinds(pid: int, proxy_port: int, upstream_port: int) -> Counter[str]:
    """The daemon's open descriptors by kind: ``client`` (accepted proxy
    connections), ``upstream`` (to the fake), ``listen``, ``tcp`` (other),
    ``unix``, ``dead`` (a socket in no table: a TCP connection the peer reset
    that the process never closed), ``file``, ``other`` (pipes, eventfds, epoll)."""
    unix = {
        line.split()[6]
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
        if len(line.split()) > 6
    }
    tcp: dict[str, tuple[int, int]] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                lport = int(cols[1].rsplit(":", 1)[1], 16)
                rport = int(cols[2].rsplit(":", 1)[1], 16)
                tcp[cols[9]] = (lport, rport)
    out: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inode = target[8:-1]
            ports = tcp.get(inode)
            if ports is None:
                out["unix" if inode in unix else "dead"] += 1
            elif ports[1] == 0:
                out["listen"] += 1
            elif ports[0] == proxy_port:
                out["client"] += 1
            elif ports[1] == upstream_port:
                out["upstream"] += 1
            else:
                out["tcp"] += 1
        elif target.startswith("/"):
            out["file"] += 1
        else:
            out["other"] += 1
    return out


# ---------------------------------------------------------------- the three protocols

PROTOCOLS = ("openai", "anthropic", "gemini")


@dataclass
class Spec:
    protocol: str
    stream: bool
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def spec(protocol: str, stream: bool, key: str, text: str = "hello", model: str = MODEL) -> Spec:
    msgs = [{"role": "user", "content": text}]
    if protocol == "openai":
        return Spec(
            protocol,
            stream,
            "/v1/chat/completions",
            {"authorization": f"Bearer {key}"},
            {"model": model, "stream": stream, "messages": msgs},
        )
    if protocol == "anthropic":
        return Spec(
            protocol,
            stream,
            "/v1/messages",
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
            {"model": model, "max_tokens": 256, "stream": stream, "messages": msgs},
        )
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return Spec(
        protocol,
        stream,
        f"/v1beta/models/{model}:{method}",
        {"x-goog-api-key": key},
        {"contents": [{"role": "user", "parts": [{"text": text}]}]},
    )


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an SSE body; comments skipped."""
    out: list[tuple[str | None, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            out.append((name, "\n".join(data)))
    return out


def error_shape_ok(protocol: str, body: Any) -> bool:
    """The protocol's own error body (see daemon/proxy/error_shapes.py)."""
    if not isinstance(body, dict):
        return False
    if protocol == "anthropic":
        err = body.get("error")
        return (
            body.get("type") == "error"
            and isinstance(err, dict)
            and isinstance(err.get("type"), str)
            and isinstance(err.get("message"), str)
            and bool(err["message"])
        )
    err = body.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("message"), str) or not err["message"]:
        return False
    if protocol == "gemini":
        return isinstance(err.get("code"), int) and isinstance(err.get("status"), str)
    if protocol == "admin":
        return isinstance(err.get("kind"), str)
    return isinstance(err.get("type"), str) and "code" in err and "param" in err


@dataclass
class Outcome:
    """What one request got: ``ok`` (complete answer), ``stream_error`` (an
    error event after the first byte), ``error`` (a clean non-200 protocol
    error) or ``bad`` (anything else: a broken body, a traceback, a hang)."""

    kind: str
    status: int = 0
    text: str = ""
    detail: str = ""
    latency: float = 0.0


def classify(sp: Spec, status: int, raw: bytes) -> Outcome:
    body = raw.decode("utf-8", "replace")
    if any(m in body for m in TRACEBACK_MARKERS):
        return Outcome("bad", status, detail=f"traceback text in body: {body[:300]}")
    if status != 200:
        try:
            parsed = json.loads(body)
        except ValueError:
            return Outcome("bad", status, detail=f"non-JSON error body: {body[:300]}")
        if not error_shape_ok(sp.protocol, parsed):
            return Outcome("bad", status, detail=f"wrong error shape: {body[:300]}")
        return Outcome("error", status, detail=body[:300])
    try:
        if not sp.stream:
            return _classify_whole(sp.protocol, json.loads(body))
        return _classify_stream(sp.protocol, sse_events(body))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Outcome("bad", status, detail=f"{type(exc).__name__}: {exc}: {body[:300]}")


def _classify_whole(protocol: str, data: Any) -> Outcome:
    if protocol == "openai":
        choice = data["choices"][0]
        text, done = choice["message"]["content"] or "", choice.get("finish_reason")
    elif protocol == "anthropic":
        text = "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
        done = data.get("stop_reason")
    else:
        cand = data["candidates"][0]
        text = "".join(p.get("text", "") for p in cand["content"]["parts"] if not p.get("thought"))
        done = cand.get("finishReason")
    if not text or not done:
        return Outcome("bad", 200, text, detail=f"incomplete answer: {json.dumps(data)[:300]}")
    return Outcome("ok", 200, text)


def _classify_stream(protocol: str, events: list[tuple[str | None, str]]) -> Outcome:
    text: list[str] = []
    done = False
    for name, data in events:
        if protocol == "openai":
            if data == "[DONE]":
                continue
            obj = json.loads(data)
            if "error" in obj:
                if not error_shape_ok("openai", obj):
                    return Outcome("bad", 200, detail=f"bad error event {data[:200]}")
                return Outcome("stream_error", 200, "".join(text), detail=data[:300])
            for ch in obj.get("choices") or []:
                text.append((ch.get("delta") or {}).get("content") or "")
                done = done or bool(ch.get("finish_reason"))
        elif protocol == "anthropic":
            obj = json.loads(data)
            if name == "error" or obj.get("type") == "error":
                if name != "error" or not error_shape_ok("anthropic", obj):
                    return Outcome("bad", 200, detail=f"bad error event {name} {data[:200]}")
                return Outcome("stream_error", 200, "".join(text), detail=data[:300])
            if obj.get("type") == "content_block_delta":
                text.append(obj["delta"].get("text", ""))
            done = done or obj.get("type") == "message_stop"
        else:
            obj = json.loads(data)
            if "error" in obj:
                if not error_shape_ok("gemini", obj):
                    return Outcome("bad", 200, detail=f"bad error event {data[:200]}")
                return Outcome("stream_error", 200, "".join(text), detail=data[:300])
            for cand in obj.get("candidates") or []:
                for p in (cand.get("content") or {}).get("parts") or []:
                    if not p.get("thought"):
                        text.append(p.get("text", ""))
                done = done or bool(cand.get("finishReason"))
    if protocol == "openai" and (not events or events[-1][1] != "[DONE]"):
        return Outcome("bad", 200, "".join(text), detail="stream did not end with [DONE]")
    if not done or not "".join(text):
        return Outcome("bad", 200, "".join(text), detail=f"incomplete stream: {events[-3:]}")
    return Outcome("ok", 200, "".join(text))


async def fire(client: httpx.AsyncClient, sp: Spec, timeout: float = CLIENT_TIMEOUT) -> Outcome:
    t0 = time.monotonic()
    try:
        r = await client.post(sp.path, json=sp.body, headers=sp.headers, timeout=timeout)
        out = classify(sp, r.status_code, r.content)
    except httpx.TimeoutException:
        out = Outcome("bad", detail="hang: the client timed out")
    except httpx.HTTPError as exc:
        out = Outcome("bad", detail=f"transport error {type(exc).__name__}: {exc}")
    out.latency = time.monotonic() - t0
    return out


def fire_sync(d: Daemon, sp: Spec, timeout: float = CLIENT_TIMEOUT) -> Outcome:
    async def one() -> Outcome:
        async with httpx.AsyncClient(base_url=d.base_url) as client:
            return await fire(client, sp, timeout)

    return asyncio.run(one())


@dataclass
class Tally:
    outcomes: list[tuple[Spec, Outcome]] = field(default_factory=list)

    def kinds(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for _, o in self.outcomes:
            c[o.kind if o.kind != "error" else f"error {o.status}"] += 1
        return c

    def max_latency(self) -> float:
        return max((o.latency for _, o in self.outcomes), default=0.0)


async def run_load(
    d: Daemon,
    specs: list[Spec],
    concurrency: int = CONCURRENCY,
    on_progress: Callable[[int], None] | None = None,
) -> Tally:
    tally = Tally()
    sem = asyncio.Semaphore(concurrency)
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=d.base_url, limits=limits) as client:

        async def one(sp: Spec) -> None:
            nonlocal done
            async with sem:
                out = await fire(client, sp)
            tally.outcomes.append((sp, out))
            done += 1
            if on_progress is not None:
                on_progress(done)

        await asyncio.gather(*(one(sp) for sp in specs))
    return tally


def mixed_specs(key: str, n: int, start: int = 0) -> list[Spec]:
    combos = [(p, s) for p in PROTOCOLS for s in (False, True)]
    return [spec(*combos[i % len(combos)], key, text=f"request {start + i}") for i in range(n)]


# ---------------------------------------------------------------- faults: 3 accounts, 2 misbehave


def _storm_429(n: int) -> list[Reply]:
    # 5xx first: a 429 cools the account down, and a fast phase can end
    # before the cooldown does (then the storm would never reach its 5xx).
    cycle = [
        Reply.error(500),
        Reply.error(503),
        Reply.error(429, reason="RATE_LIMIT_EXCEEDED", retry_delay=0.2),
        Reply.error(429, reason="MODEL_CAPACITY_EXHAUSTED"),
        Reply.error(429, reason="MODEL_CAPACITY_EXHAUSTED", retry_after=1),
        Reply.error(429, reason="QUOTA_EXHAUSTED", quota_reset_delay=1),
        Reply.error(429),
    ]
    return [cycle[i % len(cycle)] for i in range(n)]


def _storm_resets(n: int) -> list[Reply]:
    partial = Reply.text(STORM_PARTIAL_ANSWER, chunks=4)
    cycle = [
        Reply.drop_after(0),
        Reply.drop_after(2, then=partial),
        Reply.error(529),
        Reply.drop_after(0),
        Reply.error(502),
    ]
    return [cycle[i % len(cycle)] for i in range(n)]


def _storm_silence(n: int) -> list[Reply]:
    cycle = [
        Reply.silence(2 * UPSTREAM_TIMEOUT),
        Reply.error(503),
        Reply.text("slow but in time a b c d", chunks=4, delay=0.25),  # slow upstream, not silent
        Reply.silence(2 * UPSTREAM_TIMEOUT),
        Reply.drop_after(0),
    ]
    return [cycle[i % len(cycle)] for i in range(n)]


def _faults_seen(fake: FakeGoogle, storm: str) -> Counter[str]:
    """What the upstream did in one phase, from the fake's records (a failed
    token call names no account: only the second one needs tokens here)."""
    seen: Counter[str] = Counter()
    for c in fake.calls:
        if c.method == "token" and c.status:
            seen[{500: "token endpoint 500", 400: "invalid_grant"}.get(c.status, f"token {c.status}")] += 1
        elif c.email == storm and c.method in ("generateContent", "streamGenerateContent"):
            code = c.status or 0
            seen["storm 429" if code == 429 else "storm 5xx" if code >= 500 else f"storm {code}"] += 1
    seen["storm streams cancelled"] = fake.streams_cancelled
    return +seen


def _next_phase(d: Daemon, fake: FakeGoogle, storm: str) -> None:
    """Each phase starts from a clean slate for the storm account (a cooldown
    left by the last phase must not hide it from the next one)."""
    fake.reset()
    d.admin("POST", f"/accounts/{storm}/reset")


FAULT_CONFIG: dict[str, dict[str, Any]] = {
    "proxy": {"auth_mode": "strict", "request_timeout": UPSTREAM_TIMEOUT, "stream_keepalive": 0.5},
    "upstream": {"stream_idle_timeout": UPSTREAM_TIMEOUT, "connect_timeout": 2},
    "scheduling": {"max_attempts": MAX_ATTEMPTS, "rate_limit_cooldown": 1},
}


def test_faults_two_of_three_accounts_misbehave(fake: FakeGoogle) -> None:
    """~N mixed requests (OpenAI / Anthropic / Gemini, stream and not) at
    concurrency 16 while one account storms (429s, 5xx, resets, silence) and
    another has its token endpoint down, then is revoked mid-run. Every
    request is served (the third account is healthy) except streams that broke
    after the first byte, which end with the protocol's error event; nothing
    takes longer than the configured timeouts allow."""
    fake.reset()
    tag = uid()
    storm, flaky, good = (f"rel-{n}-{tag}@example.com" for n in ("storm", "revoked", "good"))
    per_phase = max(1, FAULT_REQUESTS // 3)
    with daemon_in_tmp(fake, [storm, flaky, good], **FAULT_CONFIG) as d:
        key = d.api_key
        pid = d.proc.pid if d.proc else 0
        fd0, rss0 = fd_count(pid), rss_kib(pid)
        tallies: list[Tally] = []
        faults: list[Counter[str]] = []
        try:
            # Phase 1: 429 storms and 5xx; the second account's token is dead
            # and the token endpoint answers 500.
            _next_phase(d, fake, storm)
            fake.script(_storm_429(per_phase), email=storm)
            fake.expire_tokens(flaky)
            fake.token_fail_status = 500
            tallies.append(asyncio.run(run_load(d, mixed_specs(key, per_phase))))
            faults.append(_faults_seen(fake, storm))
            _next_phase(d, fake, storm)

            # Phase 2: resets before and after the first byte; the token endpoint
            # is back, and the second account is revoked half-way, mid-flight.
            fake.script(_storm_resets(per_phase), email=storm)

            def revoke_half_way(done: int) -> None:
                if done == per_phase // 2:
                    fake.revoke(flaky)

            tallies.append(
                asyncio.run(run_load(d, mixed_specs(key, per_phase, per_phase), on_progress=revoke_half_way))
            )
            faults.append(_faults_seen(fake, storm))
            _next_phase(d, fake, storm)

            # Phase 3: silent and slow upstreams.
            fake.script(_storm_silence(per_phase), email=storm)
            tallies.append(asyncio.run(run_load(d, mixed_specs(key, per_phase, 2 * per_phase))))
            faults.append(_faults_seen(fake, storm))
            assert wait_for(lambda: fake.streams_open == 0, 5), (
                f"{fake.streams_open} upstream streams left open"
            )
            fd1, rss1 = fd_count(pid), rss_kib(pid)
            accounts = {a["email"]: a for a in d.admin("GET", "/accounts")["accounts"]}
            health = httpx.get(d.base_url + "/healthz", headers={"authorization": f"Bearer {key}"})
            log = d.log()
        finally:
            fake.reset()

    all_outcomes = [x for t in tallies for x in t.outcomes]
    kinds: Counter[str] = sum((t.kinds() for t in tallies), Counter())
    max_lat = max(t.max_latency() for t in tallies)
    p50 = statistics.median(o.latency for _, o in all_outcomes)
    figures = (
        f"fault run: {len(all_outcomes)} requests, kinds {dict(kinds)}, "
        f"latency p50 {p50 * 1000:.0f} ms max {max_lat:.2f}s, upstream faults by phase "
        f"{[dict(f) for f in faults]}, "
        f"fd {fd0}->{fd1}, RSS {rss0}->{rss1} KiB"
    )
    print(figures)

    bad = [(s.protocol, s.stream, o.detail) for s, o in all_outcomes if o.kind == "bad"]
    assert not bad, f"{len(bad)} broken answers, e.g. {bad[:5]}\n{figures}"
    # One account is healthy: every request could be served, so none got an
    # error before the first byte ...
    errors = [(s.protocol, s.stream, o.status, o.detail) for s, o in all_outcomes if o.kind == "error"]
    assert not errors, f"{len(errors)} requests not served, e.g. {errors[:5]}\n{figures}"
    # ... and a stream error event only ever follows bytes of the account that broke off.
    stray = [
        (s.protocol, o.text, o.detail)
        for s, o in all_outcomes
        # (an event in flight when the upstream resets may be lost: a prefix is enough)
        if o.kind == "stream_error" and not (o.text and STORM_PARTIAL_ANSWER.startswith(o.text))
    ]
    assert not stray, f"stream errors not caused by a mid-stream reset: {stray[:5]}"
    assert kinds["ok"] >= len(all_outcomes) - kinds["stream_error"]
    assert max_lat <= HANG_BOUND, f"a request took {max_lat:.2f}s (bound {HANG_BOUND}s)\n{figures}"

    # The faults really happened, in every phase.
    assert faults[0]["storm 429"] and faults[0]["storm 5xx"] and faults[0]["token endpoint 500"]
    assert faults[1]["storm 200"] and faults[1]["storm 5xx"] and faults[1]["invalid_grant"]
    assert faults[2]["storm 200"] and faults[2]["storm streams cancelled"]
    # The storm never disables an account; the revoked one is out, with the reason.
    assert accounts[storm]["enabled"] and accounts[good]["enabled"]
    assert not accounts[flaky]["enabled"] and "invalid_grant" in accounts[flaky]["disabled_reason"]
    assert health.status_code == 200
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:3000]
    assert fd1 <= fd0 + 24, figures  # pooled upstream connections at most


# ---------------------------------------------------------------- resets before / after the first byte


@pytest.fixture(scope="module")
def pair(fake: FakeGoogle) -> Iterator[tuple[Daemon, str, str]]:
    """A daemon with two accounts (flaky, good); generous timeouts."""
    fake.reset()
    tag = uid()
    flaky, good = f"pair-flaky-{tag}@example.com", f"pair-good-{tag}@example.com"
    with daemon_in_tmp(
        fake,
        [flaky, good],
        proxy={"auth_mode": "strict", "request_timeout": 10, "stream_keepalive": 0.5},
        upstream={"stream_idle_timeout": 10},
    ) as d:
        yield d, flaky, good
    fake.reset()


@pytest.fixture
def two(pair: tuple[Daemon, str, str], fake: FakeGoogle) -> Iterator[tuple[Daemon, str, str]]:
    d = pair[0]
    fake.reset()
    for acct in d.admin("GET", "/accounts")["accounts"]:
        if not acct["enabled"]:
            d.admin("POST", f"/accounts/{acct['id']}/enable")
        d.admin("POST", f"/accounts/{acct['id']}/reset")
    yield pair
    fake.reset()


def _upstream_calls(fake: FakeGoogle, email: str) -> int:
    return sum(
        1 for c in fake.calls if c.email == email and c.method in ("generateContent", "streamGenerateContent")
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_reset_before_first_byte_fails_over(
    two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str, stream: bool
) -> None:
    d, flaky, good = two
    fake.script([Reply.drop_after(0)] * 8, email=flaky)
    key = d.api_key
    for i in range(4):
        out = fire_sync(d, spec(protocol, stream, key, text=f"reset before {i}"))
        assert out.kind == "ok", out
    # Balance mode alternates: the flaky account was tried (and broke) at least once.
    assert _upstream_calls(fake, flaky) >= 1
    assert _upstream_calls(fake, good) == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reset_after_first_byte_is_a_protocol_error_event(
    two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str
) -> None:
    d, flaky, good = two
    partial = Reply.drop_after(2, then=Reply.text(f"{PARTIAL} alpha beta gamma delta", chunks=4))
    for email in (flaky, good):
        fake.script([partial], email=email)
    out = fire_sync(d, spec(protocol, True, d.api_key))
    assert out.kind == "stream_error", out
    # The bytes before the break went out: at least the first event (an event
    # in flight when the upstream resets may be lost with the connection, as
    # TCP drops unread data on RST).
    assert out.text and f"{PARTIAL} alpha beta gamma delta".startswith(out.text), out
    # Not retried on the other account after bytes went out.
    assert _upstream_calls(fake, flaky) + _upstream_calls(fake, good) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_stream_fails_over(two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str) -> None:
    d, flaky, good = two
    fake.script([Reply.empty()] * 8, email=flaky)
    for i in range(4):
        out = fire_sync(d, spec(protocol, True, d.api_key, text=f"empty {i}"))
        assert out.kind == "ok", out
    assert _upstream_calls(fake, flaky) >= 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_whole_answer_fails_over(two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str) -> None:
    d, flaky, good = two
    fake.script([Reply.empty()] * 8, email=flaky)
    for i in range(4):
        out = fire_sync(d, spec(protocol, False, d.api_key, text=f"empty {i}"))
        assert out.kind == "ok", out
    assert _upstream_calls(fake, flaky) >= 1


def test_token_endpoint_down_is_not_hammered(two: tuple[Daemon, str, str], fake: FakeGoogle) -> None:
    d, flaky, _ = two
    fake.expire_tokens(flaky)
    fake.token_fail_status = 500
    tally = asyncio.run(run_load(d, mixed_specs(d.api_key, 48)))
    assert tally.kinds() == Counter({"ok": 48})  # served by the other account
    token_calls = len(fake.calls_to("token"))
    # One refresh, or a few spread over time: not one per request.
    assert token_calls <= 4, f"{token_calls} token endpoint calls for 48 requests"


def test_token_endpoint_down_does_not_leak_memory(two: tuple[Daemon, str, str], fake: FakeGoogle) -> None:
    d, flaky, _ = two
    pid = d.proc.pid if d.proc else 0
    fake.expire_tokens(flaky)
    fake.token_fail_status = 500
    key = d.api_key
    rounds = []
    for r in range(3):
        specs = [spec(PROTOCOLS[i % 3], False, key, text=f"leak {r} {i}") for i in range(500)]
        tally = asyncio.run(run_load(d, specs))
        assert tally.kinds() == Counter({"ok": 500})
        rounds.append(rss_kib(pid))
    grown = rounds[-1] - rounds[0]  # after a warm-up round
    print(f"token endpoint down: RSS by round {rounds} KiB")
    assert grown < 2.5 * 1024, f"RSS grew {grown} KiB over 1,000 requests"


# ---------------------------------------------------------------- client faults


def raw_request(d: Daemon | int, sp: Spec, *, rcvbuf: int | None = None) -> socket.socket:
    """Send ``sp`` over a raw socket to a daemon (or a port) and return it (nothing read yet)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", d if isinstance(d, int) else port_of(d)))
    payload = json.dumps(sp.body).encode()
    head = f"POST {sp.path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(payload)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in sp.headers.items())
    s.sendall(head.encode() + b"\r\n" + payload)
    return s


def read_until(s: socket.socket, marker: bytes, limit: float = 10.0) -> bytes:
    s.settimeout(limit)
    got = b""
    deadline = time.monotonic() + limit
    while marker not in got and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def abort(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), like a killed client."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_disconnect_before_upstream_answers_cancels_stream(
    two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str
) -> None:
    """The upstream thinks silently; the client leaves. The daemon notices no
    later than its next keepalive (proxy.stream_keepalive, 0.5 s here) and
    closes the upstream stream."""
    d, _, _ = two
    fake.script([Reply.silence(4)] * 2)
    s = raw_request(d, spec(protocol, True, d.api_key))
    try:
        assert wait_for(lambda: fake.streams_open == 1, 5)
        abort(s)
        # The daemon's timeouts are 10 s, the silence 4 s: only the disconnect ends it early.
        assert wait_for(lambda: fake.streams_cancelled >= 1, 0.5 + 1.5), "upstream call not cancelled"
        assert wait_for(lambda: fake.streams_open == 0, 1)
    finally:
        s.close()
        wait_for(lambda: fake.streams_open == 0, 5)  # leave nothing running for the next test


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_disconnect_before_whole_answer_cancels_upstream(
    two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str
) -> None:
    d, _, _ = two
    fake.script([Reply.silence(2.5)] * 2)
    # Rows are told apart by id (the log may hold more rows than one page).
    before = max((r["id"] for r in d.admin("GET", "/logs", params={"n": 50})["rows"]), default=0)
    s = raw_request(d, spec(protocol, False, d.api_key))
    t0 = time.monotonic()
    assert wait_for(lambda: bool(fake.calls_to("generateContent")), 5)
    time.sleep(0.2)
    abort(s)
    left = time.monotonic() - t0

    # The row of THIS request (another test's late request may land after it).
    def mine() -> dict[str, Any] | None:
        rows = d.admin("GET", "/logs", params={"n": 50})["rows"]
        return next((r for r in rows if r["id"] > before and r["status"] == 499), None)

    assert wait_for(lambda: mine() is not None, 6)
    last = mine()
    assert last is not None
    # Cancelled: the request ends (499) when the client left, not when the upstream answered.
    assert last["latency_ms"] < (left + 1.0) * 1000, last


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stage", ["first_chunk", "mid_stream"])
def test_disconnect_mid_stream_cancels_upstream(
    two: tuple[Daemon, str, str], fake: FakeGoogle, protocol: str, stage: str
) -> None:
    d, _, _ = two
    fake.script([Reply.text("w " * 40, chunks=40, delay=0.05)])
    s = raw_request(d, spec(protocol, True, d.api_key))
    want = 1 if stage == "first_chunk" else 10
    got = b""
    s.settimeout(10)
    marker = b"data:" if protocol != "anthropic" else b"content_block_delta"
    while got.count(marker) < want:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    abort(s)
    assert wait_for(lambda: fake.streams_cancelled >= 1, 3), "upstream stream not cancelled"
    assert wait_for(lambda: fake.streams_open == 0, 3)
    assert fire_sync(d, spec(protocol, True, d.api_key)).kind == "ok"


def _disconnecting_client(port: int, key: str, i: int) -> None:
    """One client that goes away at stage ``i % 4``."""
    stage = i % 4
    protocol = PROTOCOLS[i % 3]
    sp = spec(protocol, True, key, text=f"burst {i}")
    if stage == 0:  # half the request body, then gone
        s = socket.create_connection(("127.0.0.1", port))
        payload = json.dumps(sp.body).encode()
        head = f"POST {sp.path} HTTP/1.1\r\nHost: x\r\ncontent-length: {len(payload)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in sp.headers.items())
        s.sendall(head.encode() + b"\r\n" + payload[: len(payload) // 2])
        time.sleep(0.01)
        abort(s)
        return
    s = raw_request(port, sp)
    try:
        if stage == 1:  # before anything came back
            time.sleep(0.02)
        elif stage == 2:  # after the response head and first bytes
            read_until(s, b"data:", 5)
        else:  # mid-stream
            got = b""
            s.settimeout(5)
            while got.count(b"data:") < 5:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    finally:
        abort(s)


def test_burst_of_disconnecting_clients_leaks_nothing(two: tuple[Daemon, str, str], fake: FakeGoogle) -> None:
    """100 clients that go away at every stage: no client connection, upstream
    stream or other descriptor is left behind, and the daemon still serves."""
    d, _, _ = two
    key = d.api_key
    pid = d.proc.pid if d.proc else 0
    ports = (port_of(d), int(fake.base_url.rsplit(":", 1)[1]))
    # Warm up: the upstream connection pool and the daemon's lazy imports.
    warm = asyncio.run(run_load(d, mixed_specs(key, 48)))
    assert warm.kinds() == Counter({"ok": 48})
    assert wait_for(lambda: fd_kinds(pid, *ports)["client"] == 0, 5)
    kinds0, rss0 = fd_kinds(pid, *ports), rss_kib(pid)
    n = CLIENT_BURST
    fake.script([Reply.text("z " * 30, chunks=30, delay=0.03)] * (2 * n))
    threads = [threading.Thread(target=_disconnecting_client, args=(ports[0], key, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert wait_for(lambda: fake.streams_open == 0, 10), f"{fake.streams_open} upstream streams still open"
    cancelled = fake.streams_cancelled
    fake.reset()
    # Still serves ...
    after = asyncio.run(run_load(d, mixed_specs(key, 48)))
    assert after.kinds() == Counter({"ok": 48})

    # ... and every client connection is closed, nothing else is left over
    # (idle upstream keep-alive connections are pooled: bounded, not a leak).
    def settled() -> bool:
        k = fd_kinds(pid, *ports)
        return k["client"] == 0 and all(
            k[x] <= kinds0[x] + 2 for x in ("file", "unix", "dead", "other", "listen", "tcp")
        )

    ok = wait_for(settled, 5)
    kinds1, rss1 = fd_kinds(pid, *ports), rss_kib(pid)
    print(
        f"disconnect burst: {n} clients, upstream streams cancelled {cancelled}, "
        f"fds {sum(kinds0.values())}->{sum(kinds1.values())} {dict(kinds0)} -> {dict(kinds1)}, "
        f"RSS {rss0}->{rss1} KiB"
    )
    assert ok, f"descriptors left over: {dict(kinds0)} -> {dict(kinds1)}"
    assert kinds1["upstream"] <= 128  # idle keep-alive ones: no more than the burst opened
    assert cancelled >= n // 4  # the mid-stream half at least
    assert rss1 - rss0 < 50 * 1024
    log = d.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 300 :][:3000]


def test_slow_reader_does_not_stall_others(two: tuple[Daemon, str, str], fake: FakeGoogle) -> None:
    """One client reads a big stream one byte per 50 ms; 48 others are served
    meanwhile as fast as ever."""
    d, _, _ = two
    key = d.api_key
    baseline = asyncio.run(run_load(d, mixed_specs(key, 24), concurrency=8))
    assert baseline.kinds() == Counter({"ok": 24})
    fake.script([Reply.text("y" * (256 * 1024) * 128, chunks=128)])  # 32 MiB: more than every buffer holds
    s = raw_request(d, spec("gemini", True, key), rcvbuf=4096)
    stop = threading.Event()
    slow_bytes = 0

    def trickle() -> None:
        nonlocal slow_bytes
        s.settimeout(5)
        while not stop.is_set():
            chunk = s.recv(1)
            if not chunk:
                return
            slow_bytes += 1
            time.sleep(0.05)

    reader = threading.Thread(target=trickle)
    reader.start()
    try:
        assert wait_for(lambda: fake.streams_open == 1, 5)
        time.sleep(0.5)  # the daemon's send buffer towards the slow client is full now
        during = asyncio.run(run_load(d, mixed_specs(key, 48), concurrency=8))
    finally:
        stop.set()
        reader.join(10)
        abort(s)
    assert during.kinds() == Counter({"ok": 48}), during.kinds()
    assert slow_bytes > 10
    base_max, during_max = baseline.max_latency(), during.max_latency()
    print(
        f"slow reader: others' max latency {base_max * 1000:.0f} ms before, {during_max * 1000:.0f} ms during"
    )
    assert during_max < max(1.0, 10 * base_max)
    assert wait_for(lambda: fake.streams_open == 0, 5)


# ---------------------------------------------------------------- crash safety


_CONFIG_KEYS: list[tuple[str, Callable[[int], str]]] = [
    ("proxy.request_timeout", lambda i: str(30 + i)),
    ("scheduling.rate_limit_cooldown", lambda i: str(5 + i)),
    ("models.crash-alias", lambda i: f"gemini-3-flash-{i}" if i % 2 else "gemini-3-flash"),
    ("monitor.retention_days", lambda i: str(1 + i % 50)),
]


def _writer_threads(
    d: Daemon, ids: list[str], stop: threading.Event, errors: list[str]
) -> list[threading.Thread]:
    """Fire config writes (the real agctl and the admin API) and account writes."""

    def agctl_loop() -> None:
        i = 0
        while not stop.is_set():
            key, value = _CONFIG_KEYS[i % len(_CONFIG_KEYS)]
            with contextlib.suppress(Exception):
                d.ctl("config", "set", key, value(i), timeout=10)
            i += 1

    def admin_loop() -> None:
        i = 0
        while not stop.is_set():
            ref = ids[i % len(ids)]
            action = ("refresh", "disable", "enable", "reset")[i % 4]
            if i % 5 == 4:
                req = ("PUT", "/config/scheduling.sticky_ttl", {"value": str(60 + i)})
            elif i % 7 == 6:
                req = ("POST", "/key/rotate", {})
            else:
                req = ("POST", f"/accounts/{ref}/{action}", {"reason": f"crash test {i}"})
            try:
                unix_http(d.socket, *req)
            except OSError:
                return  # the daemon was killed
            i += 1

    return [
        threading.Thread(target=agctl_loop),
        threading.Thread(target=admin_loop),
        threading.Thread(target=admin_loop),
    ]


def unix_http(path: Path, method: str, target: str, body: Any) -> int:
    """One admin request over a fresh Unix socket connection (closed, whatever
    happens: httpx leaks the socket of a refused connect, which the
    warnings-are-errors setting would turn into a failure)."""
    payload = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    if not got.startswith(b"HTTP/1.1 "):
        raise ConnectionResetError("no answer")
    return int(got[9:12])


def _unix_connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def start_over_stale_socket(home: Path) -> Daemon:
    """Start a daemon in ``home`` and wait until its own admin socket answers
    (conftest's wait_ready would try httpx on the stale socket first)."""
    d = Daemon(home)
    d.start(wait=False)
    deadline = time.monotonic() + 20
    while not _unix_connects(d.socket):
        assert d.proc is not None
        if d.proc.poll() is not None or time.monotonic() > deadline:
            d.stop()
            raise AssertionError(f"the daemon did not restart:\n{d.log()[-3000:]}")
        time.sleep(0.02)
    return d


def _check_files(home: Path, ids: set[str]) -> None:
    from daemon import config as config_mod
    from daemon.accounts.store import Account

    cfg, _ = config_mod.load(home / "config.toml")  # parses and validates, or raises
    assert cfg.proxy.api_key.startswith("sk-")
    acct_dir = home / "data" / "accounts"
    found = {}
    for path in acct_dir.glob("*.json"):
        acct = msgspec.json.decode(path.read_bytes(), type=Account)
        assert acct.id == path.stem
        assert acct.refresh_token.startswith("1//")
        found[acct.id] = acct
    assert set(found) == ids, f"accounts on disk {set(found)} != {ids}"
    for path in acct_dir.iterdir():
        assert path.suffix in (".json", ".tmp"), path
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


def test_kill9_during_writes_never_corrupts(fake: FakeGoogle) -> None:
    fake.reset()
    tag = uid()
    emails = [f"crash-{n}-{tag}@example.com" for n in range(2)]
    home = Path(tempfile.mkdtemp(prefix="ag-k-", dir="/tmp"))
    rng = random.Random(8)
    try:
        d = start_daemon(fake, home, emails, proxy={"auth_mode": "strict"})
        ids = {a["id"] for a in d.admin("GET", "/accounts")["accounts"]}
        d.stop()
        for i in range(CRASH_ITERATIONS):
            if i:
                assert (home / "run" / "agctl.sock").exists(), (
                    "the killed daemon's socket should be left behind"
                )
            d = start_over_stale_socket(home)  # replaces the stale socket
            st = d.admin("GET", "/accounts")
            assert {a["id"] for a in st["accounts"]} == ids and not st["broken_files"], st
            stop = threading.Event()
            errors: list[str] = []
            threads = _writer_threads(d, sorted(ids), stop, errors)
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.4))
            assert d.proc is not None
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)
            stop.set()
            for t in threads:
                t.join(15)
            d.stop()
            _check_files(home, ids)
        # Last start: everything readable by the daemon itself, temp files ignored.
        d = start_over_stale_socket(home)
        try:
            st = d.admin("GET", "/accounts")
            assert {a["id"] for a in st["accounts"]} == ids and not st["broken_files"], st
            assert d.admin("GET", "/status")["daemon"]["pid"] == d.proc.pid  # type: ignore[union-attr]
            for a in st["accounts"]:
                if not a["enabled"]:
                    d.admin("POST", f"/accounts/{a['id']}/enable")
            res = d.ctl("config", "get", "proxy.request_timeout")
            assert res.returncode == 0, res.stderr
            if d.status["proxy"]["state"] != "running":
                d.admin("POST", "/proxy/start")
            assert fire_sync(d, spec("openai", False, d.api_key)).kind == "ok"
        finally:
            d.stop()
        leftovers = [p.name for p in (home / "data" / "accounts").glob(".*.tmp")] + [
            p.name for p in home.glob(".*.tmp")
        ]
        print(f"crash loop: {CRASH_ITERATIONS} kill -9s, temp files left behind: {len(leftovers)}")
        assert not leftovers, f"temp files of unfinished writes survived a start: {leftovers}"
    finally:
        fake.reset()
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------- soak (AG_LONG only)


@pytest.mark.skipif(not LONG, reason="long run: set AG_LONG=1 (AG_SOAK_SECONDS, default 1800)")
def test_soak_mixed_streaming_load_is_flat(fake: FakeGoogle) -> None:
    """Mixed streaming load for AG_SOAK_SECONDS: RSS and open fds stay flat."""
    fake.reset()
    tag = uid()
    emails = [f"soak-{n}-{tag}@example.com" for n in range(3)]
    samples: list[tuple[float, int, int]] = []
    with daemon_in_tmp(fake, emails, proxy={"auth_mode": "strict"}) as d:
        key = d.api_key
        pid = d.proc.pid if d.proc else 0
        t_end = time.monotonic() + SOAK_SECONDS
        total: Counter[str] = Counter()
        i = 0
        max_lat = 0.0
        while time.monotonic() < t_end:
            # Some streams come with spacing, some upstream faults, all drained.
            good = Reply.text("s " * 20, chunks=10, delay=0.01)
            fake.script(
                [
                    Reply.error(503) if n % 20 == 7 else Reply.drop_after(0) if n % 20 == 17 else good
                    for n in range(240)
                ]
            )
            tally = asyncio.run(run_load(d, mixed_specs(key, 240, i)))
            i += 240
            total += tally.kinds()
            max_lat = max(max_lat, tally.max_latency())
            samples.append((time.monotonic(), rss_kib(pid), fd_count(pid)))
        fake.reset()
    rss = [s[1] for s in samples]
    fds = [s[2] for s in samples]
    q = max(1, len(samples) // 4)
    early, late = statistics.median(rss[q : 2 * q] or rss), statistics.median(rss[-q:])
    print(
        f"soak: {SOAK_SECONDS:.0f}s, {i} requests {dict(total)}, max latency {max_lat:.2f}s, "
        f"RSS {rss[0]}->{rss[-1]} KiB (median 2nd quarter {early}, last quarter {late}), "
        f"fd {fds[0]}->{fds[-1]} (max {max(fds)})"
    )
    assert total["bad"] == 0, total
    assert late <= early * 1.15 + 10 * 1024, "RSS keeps growing"
    assert max(fds[q:]) <= fds[q] + 24, "open fds keep growing"
