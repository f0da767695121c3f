"""Benchmark clients: a blocking HTTP/1.1 keep-alive client that times requests
and stamps stream chunks, and an asyncio client that holds many streams open.

Why raw sockets: the client's own cost is in every figure, direct or proxied;
a client that only writes pre-encoded bytes and reads to Content-Length (or
the chunked terminator) costs a few microseconds, where an HTTP library costs
hundreds and blurs the difference we are measuring.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass, field

# The fake writes ``<N>`` (its CLOCK_MONOTONIC ns at the write) at the start
# of each stamped chunk's text; a JSON encoder may escape the angle brackets.
STAMP = re.compile(rb"(?:<|\\u003c)(\d{6,})(?:>|\\u003e)")
RECV_SIZE = 256 * 1024


class HTTPError(Exception):
    pass


def build_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class StreamTiming:
    """One stream as the client saw it (all times ``time.monotonic_ns()``)."""

    status: int = 0
    sent_ns: int = 0
    first_byte_ns: int = 0  # the status line arrived
    first_stamp_ns: int = 0  # the first chunk that carried a stamp arrived
    end_ns: int = 0
    # (stamp written by the fake, received by the client) per stamped chunk
    chunks: list[tuple[int, int]] = field(default_factory=list)
    recvs: int = 0
    body_bytes: int = 0
    error: str = ""


class Conn:
    """One keep-alive connection; requests are sequential."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.last_recv_ns = 0  # when the last recv returned
        self.recv_count = 0

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.create_connection((self.host, self.port), timeout=self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = s
            self.buf.clear()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self) -> int:
        assert self.sock is not None
        data = self.sock.recv(RECV_SIZE)
        self.last_recv_ns = time.monotonic_ns()
        self.recv_count += 1
        if not data:
            raise HTTPError("connection closed by the server")
        self.buf += data
        return len(data)

    def _head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HTTPError(f"bad status line {head[0]!r}") from None
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def request(self, raw: bytes) -> Response:
        """Send one pre-encoded request and read the whole answer."""
        for attempt in (0, 1):
            sock = self._connect()
            try:
                sock.sendall(raw)
                status, headers = self._head()
                break
            except (HTTPError, ConnectionError) as exc:
                # A keep-alive connection the server closed while idle: once more.
                self.close()
                if attempt:
                    raise HTTPError(str(exc)) from None
        body = self._body(headers)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, body, headers)

    def _body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return body
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = bytearray()
            for piece in self._chunks():
                out += piece
            return bytes(out)
        # read to close
        try:
            while self._fill():
                pass
        except HTTPError:
            pass
        body = bytes(self.buf)
        self.close()
        return body

    def _chunks(self):  # type: ignore[no-untyped-def]
        """Chunked body pieces as they complete (blocking on the socket)."""
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(bytes(self.buf[:eol]).split(b";")[0], 16)
            if size == 0:
                while len(self.buf) < eol + 4:
                    self._fill()
                del self.buf[: eol + 4]
                return
            while len(self.buf) < eol + 2 + size + 2:
                self._fill()
            piece = bytes(self.buf[eol + 2 : eol + 2 + size])
            del self.buf[: eol + 2 + size + 2]
            yield piece

    def stream(self, raw: bytes) -> StreamTiming:
        """Send a stream request; timestamp the arrival of every stamped chunk.

        Arrival is when ``recv`` returned the bytes that completed the chunk,
        so chunks that a proxy holds back and sends together share one
        arrival time and show up as a larger delay."""
        t = StreamTiming()
        recvs0 = self.recv_count
        try:
            for attempt in (0, 1):
                sock = self._connect()
                t.sent_ns = time.monotonic_ns()
                try:
                    sock.sendall(raw)
                    while self.buf.find(b"\r\n\r\n") < 0:
                        self._fill()
                        if not t.first_byte_ns:
                            t.first_byte_ns = self.last_recv_ns
                    break
                except (HTTPError, ConnectionError):
                    # A keep-alive connection the server closed while idle: once more.
                    self.close()
                    t.first_byte_ns = 0
                    if attempt:
                        raise
            t.status, headers = self._head()
            if t.status != 200:
                t.error = f"HTTP {t.status}: {self._body(headers)[:300]!r}"
                return t
            if "chunked" not in headers.get("transfer-encoding", "").lower():
                body = self._body(headers)
                now = time.monotonic_ns()
                t.chunks = [(int(m.group(1)), now) for m in STAMP.finditer(body)]
                t.body_bytes = len(body)
            else:
                tail = b""
                # Each piece gets the time of the recv that completed it: pieces
                # a proxy held back and sent together share one arrival time.
                for piece in self._chunks():
                    data = tail + piece
                    last = 0
                    now = self.last_recv_ns
                    for m in STAMP.finditer(data):
                        t.chunks.append((int(m.group(1)), now))
                        last = m.end()
                    # keep a possibly cut stamp for the next piece
                    tail = data[max(last, len(data) - 40) :]
                    t.body_bytes += len(piece)
            if t.chunks:
                t.first_stamp_ns = t.chunks[0][1]
            if headers.get("connection", "").lower() == "close":
                self.close()
        except (HTTPError, OSError) as exc:
            t.error = f"{type(exc).__name__}: {exc}"
            self.close()
        t.end_ns = time.monotonic_ns()
        t.recvs = self.recv_count - recvs0
        return t


# --------------------------------------------------------------------------- many streams


@dataclass
class HeldStreams:
    """Counters of :func:`hold_streams`, read while it runs."""

    opened: int = 0  # connected and request sent
    open_now: int = 0  # the first data event arrived and the stream is still open
    first_events: int = 0  # streams whose first data event ever arrived
    finished: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


async def _hold_one(host: str, port: int, raw: bytes, st: HeldStreams, stop: asyncio.Event) -> None:
    writer = None
    got_first = False
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        await writer.drain()
        st.opened += 1
        seen = bytearray()
        while not stop.is_set():
            read = asyncio.ensure_future(reader.read(65536))
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                break
            stopped.cancel()
            data = read.result()
            if not data:
                break
            if not got_first:
                seen += data
                if seen.startswith(b"HTTP/1.1 ") and not seen.startswith(b"HTTP/1.1 200"):
                    line = bytes(seen.split(b"\r\n", 1)[0]).decode("latin-1")
                    raise HTTPError(line)
                if b"data:" in seen:
                    got_first = True
                    st.first_events += 1
                    st.open_now += 1
                    seen.clear()
        st.finished += 1
    except Exception as exc:  # counted and reported, never raised
        st.failed += 1
        key = f"{type(exc).__name__}: {str(exc)[:80]}"
        st.errors[key] = st.errors.get(key, 0) + 1
    finally:
        if got_first:
            st.open_now -= 1
        if writer is not None:
            writer.close()


async def hold_streams(
    host: str,
    port: int,
    raw: bytes,
    n: int,
    st: HeldStreams,
    stop: asyncio.Event,
    ramp_per_s: float = 500.0,
) -> None:
    """Open ``n`` streams (``ramp_per_s`` a second) and hold them until ``stop``.

    ``st.open_now`` is the number of streams open with data flowing."""
    tasks = []
    for i in range(n):
        if stop.is_set():
            break
        tasks.append(asyncio.ensure_future(_hold_one(host, port, raw, st, stop)))
        if ramp_per_s and i % 50 == 49:
            await asyncio.sleep(50 / ramp_per_s)
    await asyncio.gather(*tasks, return_exceptions=True)
