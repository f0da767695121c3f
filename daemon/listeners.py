"""Sockets we bind ourselves, and uvicorn servers that serve on them.

Facts that shaped this (issue 2):
- uvicorn's ``Server.serve`` installs SIGINT/SIGTERM handlers and re-raises
  the signal afterwards; with two servers in one process that kills the
  daemon without cleanup. ``_Server`` leaves signals to the Service.
- uvicorn calls ``sys.exit`` when it cannot bind; we bind the sockets here
  and hand them over, so a taken port is an ordinary error.
- uvicorn's ``uds=`` makes the socket 0666; the admin socket is created here
  with umask 0177 inside a 0700 directory.
- every ``uvicorn.Config`` resets logging unless ``log_config=None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from daemon.errors import Conflict, GatewayError
from daemon.fsutil import ensure_private_dir

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 2048
# Where the hard limit is "unlimited" (macOS), the most a process may open.
NOFILE_FALLBACK = 10240


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (issue 17: at the
    limit, accept() fails for the admin socket too); returns the soft limit
    in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, NOFILE_FALLBACK):
        if target == resource.RLIM_INFINITY or target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class BindError(GatewayError):
    status = 500
    kind = "bind_failed"


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise BindError(f"failed to bind address {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def bind_unix(path: Path, *, own_dir: bool = True) -> socket.socket:
    """Bind the admin socket 0600 in a 0700 directory; replace a stale one,
    refuse when a live daemon answers on it.

    ``own_dir=False`` (a socket path the user chose, AGCTL_SOCKET): the
    directory is created 0700 if missing but an existing one is left as it
    is; chmod-ing it could lock others out of e.g. /tmp or $HOME."""
    if own_dir:
        ensure_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK, errno.EINVAL):
                raise
            log.info("removing stale admin socket %s", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            raise Conflict(
                f"another antigravityd is already running (its admin socket {path} answers); "
                "stop it with `agctl shutdown` first"
            )
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise BindError(f"failed to bind admin socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux
    SO_PEERCRED), or None where the OS does not say."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


class _OwnerOnlyProtocol(HttpToolsProtocol):
    """The admin socket's HTTP protocol: a connection from another user is
    closed before a byte is read. The socket's 0600 mode in a 0700 directory
    already keeps others out; this holds when that mode was loosened."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None and sock.family == socket.AF_UNIX else None
        self._refused = uid is not None and uid not in (os.getuid(), 0)
        if self._refused:
            log.warning("admin socket: refused a connection from uid %d", uid)
            transport.abort()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not getattr(self, "_refused", False):
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not getattr(self, "_refused", False):
            super().data_received(data)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The Service owns SIGINT/SIGTERM (see module docstring).
        yield


class Listener:
    """One uvicorn server on one pre-bound socket, run as a task."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        name: str,
        graceful: float = 10.0,
        protocol: type[asyncio.Protocol] | None = None,
    ) -> None:
        """``protocol``: the HTTP protocol class (the proxy's enforces
        ``[limits]``, daemon.proxy.connection); the default is httptools, and
        the owner-only check on a Unix socket."""
        self.name = name
        self.sock = sock
        owner_only = sock.family == socket.AF_UNIX
        http: type[asyncio.Protocol] | str = "httptools"
        if protocol is not None:
            http = protocol
        elif owner_only:
            http = _OwnerOnlyProtocol
        cfg = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, round(graceful)),
            timeout_keep_alive=75,
            server_header=False,
            # A local daemon: X-Forwarded-For from a loopback client is not
            # to be believed (it would name the client in the request log).
            proxy_headers=False,
            date_header=False,
            http=http,
            loop="none",
            ws="none",
        )
        self.server = _Server(cfg)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name=self.name)
        while not self.server.started:
            if self.task.done():
                exc = self.task.exception() if not self.task.cancelled() else None
                raise BindError(f"{self.name} failed to start: {exc or 'server exited'}")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            try:
                await self.task
            except (Exception, SystemExit) as exc:  # uvicorn may sys.exit on errors
                log.warning("%s stopped with %r", self.name, exc)
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()
