"""The proxy's HTTP/1.1 connection: the limits uvicorn's httptools protocol
does not enforce (issue 17).

What uvicorn 0.55's ``HttpToolsProtocol`` does and does not do, read from
its code: it has no bound on the request line or header block (llhttp has
none either: a 128 MB header was accepted whole), no bound on the header
count, no timeout on a head or a body that never finishes (its keep-alive
timer runs only between requests), and ``limit_concurrency`` answers 503
once the connections are taken, so connections that send half a head shut
everyone else out. Its ``timeout_keep_alive`` is used as is.

So this subclass adds, reading ``[limits]`` afresh for each connection:

- ``max_head_bytes``: the bytes of a head still incomplete after each read,
  and the parsed size (URL, names and values) inside the parser's
  callbacks: 431 past either;
- ``max_headers``: 431 past it;
- ``header_timeout``: the whole head (of a new connection, or of the next
  request on a kept-alive one once its first byte is in) within that many
  seconds, else 408 (nginx ``client_header_timeout``);
- ``body_timeout``: at most that long between two reads of a body (nginx
  ``client_body_timeout``), not counting time the app paused reading;
- ``max_connections``: at the cap a new connection closes the oldest one
  that is waiting for a head (idle keep-alive or half a head: a slowloris
  cannot hold the port); when every connection is busy the new one gets 503.
  The cap is also kept below the file-descriptor limit (``fd_cap``).

Each refusal answers in the caller's protocol shape (from the path, when
known), names the limit and its config key, and goes to ``Refusals``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from daemon.config import LimitsConfig
from daemon.errors import GatewayError, HeadersTooLarge, RequestTimeout, TooManyConnections
from daemon.protocols.error_shapes import body_for, protocol_for_path
from daemon.proxy.exchange import CONNECTION_KEY
from daemon.records import Refusal
from daemon.refusals import Refusals

log = logging.getLogger(__name__)

# File descriptors kept back from client connections: the admin socket, the
# monitor database, logs, account files. Half of the rest go to clients, the
# other half to the upstream connections their requests open.
FD_RESERVE = 64
MIN_CONNECTIONS = 8
# After a refusal the connection is half-closed and what the client still
# sends is read and dropped for this long before the close: closing with
# unread bytes makes the kernel send a reset, which can destroy the answer
# before the client reads it (nginx's lingering_close does the same).
LINGER_SECONDS = 1.0
_encode = msgspec.json.Encoder().encode


def fd_cap(fd_limit: int) -> int:
    return max(MIN_CONNECTIONS, (fd_limit - FD_RESERVE) // 2)


class _LimitHit(Exception):
    def __init__(self, reason: str, err: GatewayError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.err = err


def error_bytes(path: str, err: GatewayError) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection."""
    body = _encode(body_for(protocol_for_path(path), err))
    return b"".join(
        [
            STATUS_LINE[err.status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def _close_after_answer(transport: asyncio.Transport) -> None:
    if transport.can_write_eof():
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
    else:
        transport.close()


class ConnectionGuard:
    """One per proxy listener: the live limits, the refusal log and the
    connections waiting for a head, oldest first (the ones to close when the
    cap is reached)."""

    def __init__(self, limits: Callable[[], LimitsConfig], refusals: Refusals, fd_limit: int) -> None:
        self.limits = limits
        self.refusals = refusals
        self.fd_limit = fd_limit
        self.waiting: dict[GuardedProtocol, None] = {}

    def cap(self) -> int:
        return min(self.limits().max_connections, fd_cap(self.fd_limit))

    def wait(self, conn: GuardedProtocol) -> None:
        self.waiting.pop(conn, None)
        self.waiting[conn] = None

    def busy(self, conn: GuardedProtocol) -> None:
        self.waiting.pop(conn, None)

    def evict_one(self) -> bool:
        """Close the connection that has waited longest for a head."""
        for conn in self.waiting:
            del self.waiting[conn]
            conn.evict()
            return True
        return False

    def protocol_class(self) -> type[GuardedProtocol]:
        return type("ProxyProtocol", (GuardedProtocol,), {"guard": self})


class GuardedProtocol(HttpToolsProtocol):
    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lim = self.guard.limits()
        self.timeout_keep_alive = self.lim.keepalive_timeout
        self.in_head = True
        self.head_bytes = 0  # raw bytes of reads that ended inside a head
        self.head_size = 0  # URL + header names and values, as parsed
        self.header_count = 0
        self.done = False  # refused or evicted: nothing more is read
        self.rejected = False  # refused at connect: never a uvicorn connection
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_mode = ""
        self.lost = False
        # Tasks awaiting a whole answer for this connection's request
        # (exchange.until_disconnect): cancelled when the connection is lost;
        # the value says whether the loss cancelled it.
        self.watched: dict[asyncio.Task[Any], bool] = {}

    # ---------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        if len(self.connections) >= guard.cap() and not guard.evict_one():
            self.rejected = self.done = True
            self.transport = transport
            cap = guard.cap()
            err = TooManyConnections(
                f"the proxy has {len(self.connections)} open connections, all busy, and its limit is "
                f"{cap} (limits.max_connections, and half the file descriptors left); try again, "
                "or raise limits.max_connections"
            )
            transport.write(error_bytes("/", err))
            _close_after_answer(transport)
            peer = transport.get_extra_info("peername")
            self._count("connections", err, str(peer[0]) if isinstance(peer, tuple) else "", "/")
            return
        super().connection_made(transport)
        guard.wait(self)
        self.last_read = self.loop.time()
        self._arm("head", self.lim.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.rejected:
            return
        self.lost = True
        self._cancel_timer()
        self.guard.busy(self)
        super().connection_lost(exc)
        for task in self.watched:
            if not task.done():
                task.cancel()
                self.watched[task] = True

    # ------------------------------------------- exchange.Disconnects, for the app

    def watch(self, task: asyncio.Task[Any]) -> bool:
        if self.lost or self.done:
            return False
        self.watched[task] = False
        return True

    def unwatch(self, task: asyncio.Task[Any]) -> bool:
        return self.watched.pop(task, False)

    def evict(self) -> None:
        """Closed to make room for a new connection (it was waiting for a head)."""
        self.done = True
        self._cancel_timer()
        self.transport.close()
        err = TooManyConnections(
            f"closed to make room for a new connection: {self.guard.cap()} are open, the limit "
            "(limits.max_connections, and half the file descriptors left); this one was waiting "
            "for a request head"
        )
        self._count("connections", err, self.client[0] if self.client else "", self._path_hint())

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.last_read = self.loop.time()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket here (ws="none")
            return
        except httptools.HttpParserError as exc:
            hit = exc.__context__
            if isinstance(hit, _LimitHit):
                self._refuse(hit.reason, hit.err)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            self.done = True
            return
        if self.in_head and not self.done:
            self.head_bytes += len(data)
            if self.head_bytes > self.lim.max_head_bytes:
                self._refuse("head_too_large", self._head_error())

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = self.head_size = self.header_count = 0
        if self.timer_mode != "head":
            self._arm("head", self.lim.header_timeout)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.head_size += len(url)
        if self.head_size > self.lim.max_head_bytes:
            raise _LimitHit("head_too_large", self._head_error())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.lim.max_headers:
            raise _LimitHit(
                "too_many_headers",
                HeadersTooLarge(
                    f"the request has more than {self.lim.max_headers} headers (limits.max_headers); "
                    "send fewer, or raise limits.max_headers"
                ),
            )
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.lim.max_head_bytes:
            raise _LimitHit("head_too_large", self._head_error())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._cancel_timer()
        self.guard.busy(self)
        self.scope[CONNECTION_KEY] = self  # type: ignore[literal-required]
        super().on_headers_complete()
        self._arm("body", self.lim.body_timeout)

    def on_message_complete(self) -> None:
        if self.timer_mode == "body":
            self._cancel_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None and not self.done:
            self.guard.wait(self)  # idle until the next request: may be closed for room

    # ---------------------------------------------------------------- timers

    def _arm(self, mode: str, seconds: float) -> None:
        self._cancel_timer()
        self.timer_mode = mode
        self.timer = self.loop.call_later(seconds, self._on_timer)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_mode = ""

    def _on_timer(self) -> None:
        mode, self.timer, self.timer_mode = self.timer_mode, None, ""
        if self.done or self.transport.is_closing():
            return
        if mode == "head" and self.in_head:
            t = self.lim.header_timeout
            self._refuse(
                "header_timeout",
                RequestTimeout(
                    f"the request head did not arrive within {t:g} s (limits.header_timeout); "
                    "send it faster, or raise limits.header_timeout"
                ),
            )
        elif mode == "body":
            t = self.lim.body_timeout
            quiet = self.loop.time() - self.last_read
            if self.flow.read_paused or quiet < t:
                self._arm("body", t if self.flow.read_paused else t - quiet)
                return
            self._refuse(
                "body_timeout",
                RequestTimeout(
                    f"no request body bytes arrived for {t:g} s (limits.body_timeout); "
                    "send the body without pauses, or raise limits.body_timeout"
                ),
            )

    # ---------------------------------------------------------------- refusing

    def _head_error(self) -> GatewayError:
        n = self.lim.max_head_bytes
        return HeadersTooLarge(
            f"the request line and headers are over {n} bytes (limits.max_head_bytes); "
            "send smaller headers, or raise limits.max_head_bytes"
        )

    def _path_hint(self) -> str:
        url = bytes(getattr(self, "url", b"") or b"")[:200].decode("latin-1")
        return url.partition("?")[0] or "/"

    def _refuse(self, reason: str, err: GatewayError) -> None:
        self.done = True
        self._cancel_timer()
        self.guard.busy(self)
        cycle = self.cycle
        if reason == "body_timeout":
            can_write = cycle is not None and not cycle.response_started
        else:
            can_write = cycle is None or cycle.response_complete
        path = self._path_hint()
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() sees the client gone
            cycle.message_event.set()
        if can_write:
            self.transport.write(error_bytes(path, err))
            _close_after_answer(self.transport)
        else:
            self.transport.close()
        self._count(reason, err, self.client[0] if self.client else "", path)

    def _count(self, reason: str, err: GatewayError, client: str, path: str) -> None:
        self.guard.refusals.refuse(
            Refusal(
                reason=reason,
                status=err.status,
                kind=err.kind,
                message=err.message,
                client=client,
                protocol=protocol_for_path(path),
            )
        )
