"""A hostile upstream: a raw HTTP/1.1 server on loopback that answers every
request with one attack, chosen by the first segment of its path, so a
daemon's ``upstream.endpoints`` (or a test's URL) picks the attack:
``http://127.0.0.1:PORT/bomb`` makes ``/bomb/v1internal:generateContent``
a gzip bomb.

Attacks:

- ``bomb``: 200, gzip; the body decodes to ``BOMB_BYTES`` zero bytes (about
  1 MiB on the wire, 1 GiB decoded);
- ``sse-bomb``: 200 SSE, gzip; one valid event, then endless SSE comment
  lines (each under any line limit) that decode about 1000:1;
- ``line``: 200 SSE (chunked); one ``data:`` line of ``LINE_BYTES`` (100
  MB) with no end;
- ``header``: a status line, then one header whose value never ends;
- ``headers``: a status line, then header lines that never end;
- ``redirect``: 301 to another host;
- ``stall``: 200 SSE with one valid event, then silence until the client
  hangs up.

Its own loop runs in a thread, so it serves a daemon in another process as
well as a client in the test's loop. It writes with ``drain`` (flow
control), so what it sends is what the client chose to read, and it records
how much that was per attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import threading
import zlib
from collections import defaultdict
from functools import lru_cache
from types import TracebackType

BOMB_BYTES = 1 << 30
LINE_BYTES = 100 * 1000 * 1000
_PIECE = 64 * 1024

FIRST_EVENT = json.dumps(
    {
        "response": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}}],
            "modelVersion": "hostile",
            "responseId": "hostile-1",
        },
        "traceId": "t",
    }
).encode()


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """A gzip member that decodes to ``BOMB_BYTES`` zero bytes: one deflated
    MiB of zeros repeated (after a full flush nothing refers back past it,
    so the block stands alone), the final block, and the trailer."""
    zeros = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    final = comp.flush()
    crc = 0
    for _ in range(BOMB_BYTES >> 20):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * (BOMB_BYTES >> 20) + final + struct.pack("<II", crc, BOMB_BYTES & 0xFFFFFFFF)


class HostileUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.sent: defaultdict[str, int] = defaultdict(int)  # body bytes written, per attack
        self.requests: defaultdict[str, int] = defaultdict(int)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="hostile-upstream")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, attack: str) -> str:
        return f"http://127.0.0.1:{self.port}/{attack}"

    def __enter__(self) -> HostileUpstream:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                attack = target.lstrip("/").split("/", 1)[0]
                self.requests[attack] += 1
                if not await self._attack(attack, target, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, IndexError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _body(self, attack: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.sent[attack] += len(data)
        await writer.drain()

    async def _attack(
        self, attack: str, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; True when the connection may carry another."""
        if attack == "bomb":
            body = gzip_bomb()
            ctype = "text/event-stream" if "stream" in target else "application/json"
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Encoding: gzip\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            for i in range(0, len(body), _PIECE):
                await self._body(attack, writer, body[i : i + _PIECE])
            return True
        if attack == "sse-bomb":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            first = b"data: " + FIRST_EVENT + b"\r\n\r\n"
            # Then SSE comment lines (which a client skips), each short of any
            # line limit, in blocks that gzip about 1000:1.
            block = (b": " + b"x" * 60_000 + b"\n") * 64
            piece = comp.compress(first) + comp.flush(zlib.Z_SYNC_FLUSH)
            while True:
                await self._body(attack, writer, b"%x\r\n%s\r\n" % (len(piece), piece))
                piece = comp.compress(block) + comp.flush(zlib.Z_SYNC_FLUSH)
        if attack == "line":
            ctype = "text/event-stream" if "stream" in target else "application/json"
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"%x\r\n%s\r\n" % (_PIECE, b"A" * _PIECE)
            await self._body(attack, writer, b"6\r\ndata: \r\n")
            for _ in range(LINE_BYTES // _PIECE):
                await self._body(attack, writer, chunk)
            await self._body(attack, writer, b"0\r\n\r\n")
            return False
        if attack == "header":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Endless: ")
            piece = b"a" * _PIECE
            for _ in range(LINE_BYTES // _PIECE):
                await self._body(attack, writer, piece)
            return False
        if attack == "headers":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            piece = b"".join(b"X-H-%d: v\r\n" % i for i in range(4096))
            for _ in range(LINE_BYTES // len(piece)):
                await self._body(attack, writer, piece)
            return False
        if attack == "redirect":
            writer.write(
                b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.invalid/v1internal\r\n"
                b"Content-Type: text/html\r\nContent-Length: 9\r\n\r\nredirect\n"
            )
            await writer.drain()
            return True
        if attack == "stall":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            event = b"data: " + FIRST_EVENT + b"\r\n\r\n"
            await self._body(attack, writer, b"%x\r\n%s\r\n" % (len(event), event))
            await reader.read()  # silence until the client hangs up
            return False
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return True
