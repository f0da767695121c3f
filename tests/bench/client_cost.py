"""What one upstream call costs the daemon's own upstream client, in CPU.

    python tests/bench/client_cost.py [--requests N] [--rounds K]

One process, one event loop (uvloop): a loopback server that answers every
request with the same canned generateContent answer (one write, no parsing
beyond the end of the head), and the daemon's ``HttpClient`` calling it from
16 tasks at once, then the same calls through a bare ``aiohttp.ClientSession``
with aiohttp's defaults. The figure is the process's CPU time per call, the
canned server's small share included (the same in both), so the two rows
compare: what aiohttp costs per call on this machine, and what the daemon's
wrapper (bounds, error mapping, the reused-connection retry) adds to it.
The rounds alternate between the two, and the medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from daemon.config import Config  # noqa: E402
from daemon.upstream.http import HttpClient  # noqa: E402

CONCURRENCY = 16
ANSWER = (
    b'{"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"' + b"x" * 800 + b'"}]}}]}}'
)
REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)
BODY = (
    b'{"project":"p","model":"m","request":{"contents":[{"role":"user","parts":[{"text":"'
    + b"y" * 1000
    + b'"}]}]}}'
)
HEADERS = {
    "authorization": "Bearer ya29.bench",
    "content-type": "application/json",
    "user-agent": "antigravity/hub/2.9.0 darwin/arm64",
}


class Canned(asyncio.Protocol):
    """Answers each request head (the body comes in the same segment here)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            length = (
                int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                if b"content-length" in head
                else 0
            )
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.transport.write(REPLY)  # type: ignore[attr-defined]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(call: Callable[[], Awaitable[None]], n: int) -> float:
    """CPU µs per call, ``n`` calls from CONCURRENCY tasks (after a warm-up)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(worker(50) for _ in range(CONCURRENCY)))
    c0 = cpu_seconds()
    await asyncio.gather(*(worker(n // CONCURRENCY) for _ in range(CONCURRENCY)))
    return 1e6 * (cpu_seconds() - c0) / (n // CONCURRENCY * CONCURRENCY)


async def run(requests: int, rounds: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1internal:generateContent"
    ours = HttpClient(Config())
    bare = aiohttp.ClientSession()

    async def via_ours() -> None:
        reply = await ours.post(url, BODY, HEADERS)
        assert reply.status_code == 200 and len(reply.content) == len(ANSWER)

    async def via_bare() -> None:
        async with bare.post(url, data=BODY, headers=HEADERS) as resp:
            assert resp.status == 200 and len(await resp.read()) == len(ANSWER)

    out: dict[str, list[float]] = {"HttpClient": [], "bare aiohttp": []}
    try:
        for _ in range(rounds):
            out["HttpClient"].append(await measure(via_ours, requests))
            out["bare aiohttp"].append(await measure(via_bare, requests))
    finally:
        await ours.aclose()
        await bare.close()
        server.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20_000, help="calls per round and client")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    results = uvloop.run(run(args.requests, args.rounds))
    took = time.monotonic() - t0
    print(f"{args.requests} calls x {args.rounds} rounds each, {CONCURRENCY} at a time ({took:.0f} s):")
    for name, values in results.items():
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"  {name:14} {statistics.median(values):6.1f} CPU µs per call (rounds {spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
